"""Tells which process and thread served a request, for the lifecycle tests.

==============  ============================================================================
path            answer
==============  ============================================================================
/env?NAME       JSON ``{"value": os.environ.get(NAME)}``
/slow?s=        writes ``slow request started`` to wsgi.errors, sleeps ?s= seconds
/spin?s=        runs Python bytecode for ?s= seconds (a timeout can interrupt it)
/log?msg=       writes ?msg= to wsgi.errors
anything else   JSON of the serving process and thread (below); ?sleep= seconds first
==============  ============================================================================

The process and thread JSON has ``pid``, ``ppid``, ``thread`` (``threading.get_ident()``),
``tid`` (``threading.get_native_id()``), ``uid``/``gid``/``euid``/``egid`` and
``incarnation``: ``pid:tid:n`` where ``n`` numbers the ``threading.local`` of the thread. A
thread ident can come back for a new thread (glibc reuses the stacks of exited threads), so
``incarnation`` is what tells a recycled pool thread from the one it replaced.
"""

import itertools
import json
import os
import threading
import time
from urllib.parse import parse_qs

_local = threading.local()
_local_numbers = itertools.count(1)
_local_lock = threading.Lock()


def _query(environ):
    return {k: v[-1] for k, v in parse_qs(environ.get("QUERY_STRING", "")).items()}


def _respond(start_response, obj):
    body = json.dumps(obj, sort_keys=True).encode() if not isinstance(obj, bytes) else obj
    start_response(
        "200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
    )
    return [body]


def _incarnation():
    if not hasattr(_local, "number"):
        with _local_lock:
            _local.number = next(_local_numbers)
    return f"{os.getpid()}:{threading.get_native_id()}:{_local.number}"


def application(environ, start_response):
    path = environ.get("PATH_INFO", "")
    query = _query(environ)
    errors = environ["wsgi.errors"]
    if path == "/env":
        return _respond(start_response, {"value": os.environ.get(environ["QUERY_STRING"])})
    if path == "/slow":
        seconds = float(query.get("s", "1"))
        errors.write(f"slow request started ({seconds} s)\n")
        errors.flush()
        time.sleep(seconds)
        return _respond(start_response, f"slept {seconds}".encode())
    if path == "/spin":
        end = time.monotonic() + float(query.get("s", "1"))
        while time.monotonic() < end:
            pass
        return _respond(start_response, b"spun")
    if path == "/log":
        errors.write(query.get("msg", "") + "\n")
        errors.flush()
        return _respond(start_response, b"logged")
    if "sleep" in query:
        time.sleep(float(query["sleep"]))
    return _respond(
        start_response,
        {
            "pid": os.getpid(),
            "ppid": os.getppid(),
            "thread": threading.get_ident(),
            "tid": threading.get_native_id(),
            "incarnation": _incarnation(),
            "uid": os.getuid(),
            "gid": os.getgid(),
            "euid": os.geteuid(),
            "egid": os.getegid(),
        },
    )
