"""The soak app: `/` answers a small 200, `/raise` raises inside the app, `/count` tells totals.

The load generator (benches/soak/soak.lua) decides which requests go to `/raise`, so the 10 %
share is exact and the same on every run. `/count` lets run.sh compare what the server handled
with what wrk counted; run.sh asks it only before and after the load.
"""

import threading

BODY = b"Hello, World!"
HEADERS = [("Content-Type", "text/plain"), ("Content-Length", str(len(BODY)))]

# The pool runs this on several threads; `+=` alone could lose counts between them.
_lock = threading.Lock()
_seen = {"ok": 0, "raised": 0}


class SoakError(Exception):
    """Raised on purpose: the server must answer 500 and keep serving."""


def app(environ, start_response):
    path = environ["PATH_INFO"]
    if path == "/count":
        with _lock:
            body = f"ok {_seen['ok']} raised {_seen['raised']}\n".encode()
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [body]
    kind = "raised" if path == "/raise" else "ok"
    with _lock:
        _seen[kind] += 1
        n = _seen[kind]
    if kind == "raised":
        raise SoakError(f"raise #{n}, on purpose")
    start_response("200 OK", HEADERS)
    return [BODY]
