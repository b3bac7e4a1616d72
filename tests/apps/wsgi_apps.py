"""Small, purpose-written WSGI apps that the Python test suite serves with ferrocorn.

Every app is a plain module attribute so it can be served alone
(``ferrocorn wsgi_apps:echo``), and ``application`` routes on the first path
segment so most tests need only one server (``ferrocorn wsgi_apps``):

==================  ==========================================================
path                app
==================  ==========================================================
/stream             ``stream``: ?n= chunks, ?delay= seconds apart, ?size= pad
/gated              ``gated``: one chunk, then waits for /release?id= (streaming)
/release            ``release``: opens the gate of a /gated request
/raise-before       ``raise_before``: raises before start_response
/raise-mid-body     ``raise_mid_body``: raises after the first chunk
/returns-str        ``returns_str``: returns a str instead of bytes
/non-iterable       ``non_iterable``: returns an int
/no-start-response  ``no_start_response``: never calls start_response
/bad-status         ``bad_status``: a status without a code
/bad-header         ``bad_header``: a header value with CR LF in it
/twice              ``start_response_twice``: start_response twice, no exc_info
/exc-info           ``exc_info_app``: replaces the headers via exc_info
/exc-info-late      ``exc_info_late``: exc_info after the body started
/write              ``write_app``: uses the write() callable
/file               ``file_app``: wsgi.file_wrapper, ?size=, ?kind=file|bytesio,
                    ?cache=drop (the file's pages evicted from the page cache)
/slow               ``slow``: sleeps ?s= seconds
/rendezvous         ``rendezvous``: waits until ?n= requests are in the app at once
/closing            ``closing``: records close() calls (FERROCORN_TEST_CLOSE_LOG)
/input              ``input_app``: runs wsgi.input methods named by ?ops=
/status             ``status_app``: any ?code=, body ?body=
/length             ``length_app``: Content-Length ?declared=, sends ?actual=
/fixed              ``fixed``: a list of bytes (the server adds Content-Length)
/cookies            ``cookies``: two Set-Cookie headers and a custom header
/thread-local       ``thread_local_app``: a threading.local counter
anything else       ``echo``: JSON of the environ and of the request body
==================  ==========================================================

``factory(arg)`` returns an app answering ``factory:<arg>``.
"""

import hashlib
import io
import json
import os
import sys
import tempfile
import threading
import time
from urllib.parse import parse_qs


def _query(environ):
    """The query string as a dict of single values."""
    return {k: v[-1] for k, v in parse_qs(environ.get("QUERY_STRING", "")).items()}


def _json(start_response, obj, status="200 OK"):
    body = json.dumps(obj, sort_keys=True).encode()
    start_response(
        status,
        [("Content-Type", "application/json"), ("Content-Length", str(len(body)))],
    )
    return [body]


def _text(start_response, text, status="200 OK"):
    body = text.encode() if isinstance(text, str) else text
    start_response(
        status,
        [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))],
    )
    return [body]


def pattern_bytes(size):
    """Deterministic test content: the tests compute the same bytes."""
    block = bytes(range(256))
    return (block * (size // 256 + 1))[:size]


# --------------------------------------------------------------------------
# echo


def echo(environ, start_response):
    """JSON of the environ's plain values and of the body read via wsgi.input."""
    body = environ["wsgi.input"].read()
    env = {}
    for key, value in environ.items():
        if isinstance(value, (str, bool, int)) or value is None:
            env[key] = value
        elif isinstance(value, tuple) and all(isinstance(v, int) for v in value):
            env[key] = list(value)
    errors = environ.get("wsgi.errors")
    result = {
        "environ": env,
        "has_file_wrapper": callable(environ.get("wsgi.file_wrapper")),
        "errors_has_write": callable(getattr(errors, "write", None)),
        "errors_has_flush": callable(getattr(errors, "flush", None)),
        "input_has_read": callable(getattr(environ["wsgi.input"], "read", None)),
        "body_len": len(body),
        "body_sha256": hashlib.sha256(body).hexdigest(),
        "body": body.decode("latin-1") if len(body) <= 4096 else None,
        "thread": threading.get_ident(),
        "pid": os.getpid(),
    }
    return _json(start_response, result)


# --------------------------------------------------------------------------
# streaming


def stream(environ, start_response):
    """?n= chunks of ``chunk <i>\\n`` (padded to ?size= bytes), ?delay= apart."""
    q = _query(environ)
    n = int(q.get("n", "5"))
    delay = float(q.get("delay", "0"))
    size = int(q.get("size", "0"))
    start_response("200 OK", [("Content-Type", "text/plain")])

    def generate():
        for i in range(n):
            if i and delay:
                time.sleep(delay)
            chunk = f"chunk {i}\n".encode()
            if size > len(chunk):
                chunk = chunk[:-1] + b"." * (size - len(chunk)) + b"\n"
            yield chunk

    return generate()


_gates = {}
_gates_lock = threading.Lock()


def _gate(gate_id):
    with _gates_lock:
        return _gates.setdefault(gate_id, threading.Event())


def gated(environ, start_response):
    """Sends ``first\\n``, waits (10 s at most) for /release?id=, then the rest.

    A client that gets ``first`` before it releases the gate proves that the
    server streamed the chunk instead of buffering the response.
    """
    gate = _gate(_query(environ).get("id", ""))
    start_response("200 OK", [("Content-Type", "text/plain")])

    def generate():
        yield b"first\n"
        if gate.wait(10):
            yield b"released\n"
        else:
            yield b"timed out\n"
        yield b"last\n"

    return generate()


def release(environ, start_response):
    _gate(_query(environ).get("id", "")).set()
    return _text(start_response, "ok")


# --------------------------------------------------------------------------
# broken apps


def raise_before(environ, start_response):
    raise RuntimeError("boom-before-start-response")


def raise_mid_body(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])

    def generate():
        yield b"first chunk\n"
        raise RuntimeError("boom-mid-body")

    return generate()


def returns_str(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return "this is a str, not bytes"


def non_iterable(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return 42


def no_start_response(environ, start_response):
    return [b"start_response was never called"]


def bad_status(environ, start_response):
    start_response("OK", [("Content-Type", "text/plain")])
    return [b"bad status"]


def bad_header(environ, start_response):
    start_response("200 OK", [("X-Evil", "a\r\nInjected: yes")])
    return [b"bad header"]


def start_response_twice(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    start_response("201 Created", [("Content-Type", "text/plain")])
    return [b"twice"]


def exc_info_app(environ, start_response):
    """Starts a 200, fails, and replaces it with a 500 of its own via exc_info."""
    start_response("200 OK", [("Content-Type", "text/plain"), ("X-Stale", "1")])
    try:
        raise ValueError("handled by the app")
    except ValueError:
        body = b"app-handled-error"
        start_response(
            "500 Internal Server Error",
            [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))],
            sys.exc_info(),
        )
        return [body]


def exc_info_late(environ, start_response):
    """exc_info after the headers went out: start_response must re-raise."""
    write = start_response("200 OK", [("Content-Type", "text/plain")])
    write(b"partial body\n")
    try:
        raise ValueError("late-error")
    except ValueError:
        start_response(
            "500 Internal Server Error",
            [("Content-Type", "text/plain")],
            sys.exc_info(),
        )
    return [b"must not be sent\n"]


# --------------------------------------------------------------------------
# other response styles


def write_app(environ, start_response):
    write = start_response("200 OK", [("Content-Type", "text/plain")])
    write(b"hello ")
    write(b"world")
    return [b"!"]


def file_app(environ, start_response):
    """Serves ?size= generated bytes through wsgi.file_wrapper.

    ``?kind=file`` (default) wraps a real (unlinked temporary) file, which a
    server may send with sendfile; ``?kind=bytesio`` wraps an io.BytesIO, a
    file-like object without a file descriptor. ``?cache=drop`` writes the file to
    disk and drops it from the page cache, so the server must wait for the disk.
    """
    q = _query(environ)
    size = int(q.get("size", "100000"))
    if q.get("kind", "file") == "bytesio":
        f = io.BytesIO(pattern_bytes(size))
    else:
        f = tempfile.TemporaryFile()  # noqa: SIM115 (file_wrapper closes it)
        f.write(pattern_bytes(size))
        f.seek(0)
        if q.get("cache") == "drop":
            f.flush()
            os.fsync(f.fileno())
            os.posix_fadvise(f.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)
    start_response(
        "200 OK",
        [("Content-Type", "application/octet-stream"), ("Content-Length", str(size))],
    )
    return environ["wsgi.file_wrapper"](f, 8192)


def cookies(environ, start_response):
    """Two Set-Cookie headers and a custom one: each must arrive as sent."""
    start_response(
        "200 OK",
        [
            ("Content-Type", "text/plain"),
            ("Set-Cookie", "first=1; Path=/"),
            ("Set-Cookie", "second=2; Path=/; HttpOnly"),
            ("X-Custom-Header", "Mixed Case Value"),
        ],
    )
    return [b"cookies"]


_rendezvous_lock = threading.Lock()
_rendezvous = {}


def rendezvous(environ, start_response):
    """Waits (up to 10 s) until ?n= requests with the same ?id= are inside the app together:
    200 if they met, 504 if this one waited alone. Only a server that runs blocked requests
    concurrently lets them meet."""
    q = _query(environ)
    n, key = int(q.get("n", "2")), q.get("id", "")
    with _rendezvous_lock:
        barrier = _rendezvous.setdefault(key, threading.Barrier(n))
    try:
        barrier.wait(timeout=10)
    except threading.BrokenBarrierError:
        return _text(start_response, "alone", status="504 Gateway Timeout")
    return _text(start_response, "met")


def slow(environ, start_response):
    """Sleeps ?s= seconds; first writes ``slow request started`` to wsgi.errors."""
    seconds = float(_query(environ).get("s", "1"))
    errors = environ["wsgi.errors"]
    errors.write(f"slow request started ({seconds} s)\n")
    errors.flush()
    time.sleep(seconds)
    return _text(start_response, f"slept {seconds}")


def spin(environ, start_response):
    """Runs Python bytecode for ?s= seconds (interruptible, unlike time.sleep)."""
    end = time.monotonic() + float(_query(environ).get("s", "1"))
    while time.monotonic() < end:
        pass
    return _text(start_response, "spun")


def stubborn(environ, start_response):
    """Spins ?s= seconds and swallows every exception raised into it, even BaseException."""
    end = time.monotonic() + float(_query(environ).get("s", "1"))
    while time.monotonic() < end:
        try:
            while time.monotonic() < end:
                pass
        except BaseException:  # noqa: BLE001, S110 - the point is to ignore RequestTimeout
            pass
    return _text(start_response, "survived")


def status_app(environ, start_response):
    q = _query(environ)
    code = int(q.get("code", "200"))
    reasons = {200: "OK", 204: "No Content", 304: "Not Modified", 404: "Not Found"}
    # other codes get the reason "Whatever", to see that it is passed through
    body = q.get("body", "").encode()
    start_response(f"{code} {reasons.get(code, 'Whatever')}", [("X-Code", str(code))])
    return [body] if body else []


def length_app(environ, start_response):
    """Declares Content-Length ?declared= and sends ?actual= bytes (two chunks)."""
    q = _query(environ)
    declared = int(q["declared"])
    actual = int(q["actual"])
    data = b"abcdefghijklmnopqrstuvwxyz" * (actual // 26 + 1)
    data = data[:actual]
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(declared))])
    half = len(data) // 2
    return iter([data[:half], data[half:]])


def fixed(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"fixed ", b"body ", b"in a list"]


# --------------------------------------------------------------------------
# close() tracking


def _close_log(line):
    path = os.environ.get("FERROCORN_TEST_CLOSE_LOG")
    if path:
        with open(path, "a") as f:
            f.write(line + "\n")


class _Closing:
    """An iterable with close(); every event goes to FERROCORN_TEST_CLOSE_LOG."""

    def __init__(self, req_id, mode, n, delay):
        self.req_id = req_id
        self.mode = mode
        self.n = n
        self.delay = delay

    def __iter__(self):
        for i in range(self.n):
            if i and self.delay:
                time.sleep(self.delay)
            if self.mode == "raise" and i == 1:
                _close_log(f"{self.req_id} raise")
                raise RuntimeError("boom-in-closing-iterable")
            _close_log(f"{self.req_id} yield {i}")
            yield f"item {i}\n".encode()

    def close(self):
        _close_log(f"{self.req_id} close")


def closing(environ, start_response):
    """?id= names the request; ?mode=ok|raise; ?n= items; ?delay= between them."""
    q = _query(environ)
    start_response("200 OK", [("Content-Type", "text/plain")])
    return _Closing(
        q.get("id", "-"), q.get("mode", "ok"), int(q.get("n", "3")), float(q.get("delay", "0"))
    )


# --------------------------------------------------------------------------
# wsgi.input


def input_app(environ, start_response):
    """Runs wsgi.input calls named in ?ops= (comma-separated) and reports them.

    An op is ``read``, ``read:N``, ``readline``, ``readline:N``, ``readlines``,
    ``readlines:N`` or ``iter``; each result is latin-1 text (or a list of it).
    """
    stream_ = environ["wsgi.input"]
    results = []
    for op in _query(environ).get("ops", "read").split(","):
        name, _, arg = op.partition(":")
        args = (int(arg),) if arg else ()
        if name == "iter":
            value = list(stream_)
        else:
            value = getattr(stream_, name)(*args)
        if isinstance(value, list):
            results.append([v.decode("latin-1") for v in value])
        else:
            results.append(value.decode("latin-1"))
    return _json(start_response, {"results": results})


# --------------------------------------------------------------------------
# threads and factories

_local = threading.local()
_local_ids = iter(range(1, 1_000_000))
_local_ids_lock = threading.Lock()


def thread_local_app(environ, start_response):
    """Counts requests in a threading.local; a fresh local gets a new id."""
    if not hasattr(_local, "id"):
        with _local_ids_lock:
            _local.id = next(_local_ids)
        _local.count = 0
    _local.count += 1
    delay = float(_query(environ).get("delay", "0"))
    if delay:
        time.sleep(delay)
    return _json(
        start_response,
        {"thread": threading.get_ident(), "local_id": _local.id, "count": _local.count},
    )


def factory(arg):
    """``wsgi_apps:factory('x')`` serves an app answering ``factory:x``."""

    def app(environ, start_response):
        return _text(start_response, f"factory:{arg}")

    return app


# --------------------------------------------------------------------------
# router


def os_environ(environ, start_response):
    """The process environment variable named by the query string."""
    return _json(start_response, {"value": os.environ.get(environ.get("QUERY_STRING", ""))})


def prints(environ, start_response):
    """Prints the query string to stdout and to stderr (for --capture-output)."""
    marker = environ.get("QUERY_STRING", "")
    print(f"app stdout {marker}", flush=True)
    print(f"app stderr {marker}", file=sys.stderr, flush=True)
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"printed"]


ROUTES = {
    "os-environ": os_environ,
    "print": prints,
    "stream": stream,
    "rendezvous": rendezvous,
    "gated": gated,
    "release": release,
    "raise-before": raise_before,
    "raise-mid-body": raise_mid_body,
    "returns-str": returns_str,
    "non-iterable": non_iterable,
    "no-start-response": no_start_response,
    "bad-status": bad_status,
    "bad-header": bad_header,
    "twice": start_response_twice,
    "exc-info": exc_info_app,
    "exc-info-late": exc_info_late,
    "write": write_app,
    "file": file_app,
    "slow": slow,
    "spin": spin,
    "stubborn": stubborn,
    "closing": closing,
    "input": input_app,
    "status": status_app,
    "length": length_app,
    "fixed": fixed,
    "cookies": cookies,
    "thread-local": thread_local_app,
}


def application(environ, start_response):
    first = environ.get("PATH_INFO", "").lstrip("/").split("/", 1)[0]
    return ROUTES.get(first, echo)(environ, start_response)
