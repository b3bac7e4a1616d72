"""Serves VERSION, a constant set by module-level code.

The reload tests copy this file into a temporary directory and rewrite the VERSION line of the
copy before each SIGHUP (``VERSION = "v0"`` is the line they replace), so the body tells which
code generation answered. ``?sleep=`` seconds keep a request in flight for a while.
"""

import os
import time

VERSION = "v0"


def application(environ, start_response):
    query = environ.get("QUERY_STRING", "")
    if query.startswith("sleep="):
        time.sleep(float(query[len("sleep=") :]))
    body = VERSION.encode()
    start_response(
        "200 OK",
        [
            ("Content-Type", "text/plain"),
            ("Content-Length", str(len(body))),
            ("X-Pid", str(os.getpid())),
        ],
    )
    return [body]
