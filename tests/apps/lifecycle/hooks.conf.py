# ruff: noqa: N999 - named like gunicorn.conf.py, read as a file, never imported
"""A config file whose server hooks record every call, for test_hooks.py.

Each hook appends one JSON line to the file named by the HOOK_LOG environment variable (nothing
when it is unset): ``hook`` (its name), ``pid`` (the process it ran in) and what hook code
commonly reads from its arguments, as gunicorn names it: ``server.cfg.bind``,
``server.cfg.workers`` and ``server.pid``; ``worker.pid`` and ``worker.age``; ``req.method``,
``req.path``, ``req.query``, ``req.uri`` and ``req.headers``; ``resp.status`` and
``resp.status_code``. An attribute that cannot be read is recorded as ``"<Error: ...>"``, so a
missing one shows in the test's assertion instead of breaking the hook.

``pre_request`` raises for the path /boom-pre and ``post_request`` for /boom-post.
"""

import json
import os


def _plain(value):
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return repr(value)


def _read(obj, dotted):
    try:
        for name in dotted.split("."):
            obj = getattr(obj, name)
    except Exception as e:  # noqa: BLE001 - recorded for the test to show
        return f"<{type(e).__name__}: {e}>"
    return _plain(obj)


def _record(hook, **fields):
    path = os.environ.get("HOOK_LOG")
    if not path:
        return
    line = json.dumps({"hook": hook, "pid": os.getpid(), **fields}) + "\n"
    # one write(2) in O_APPEND mode per line: lines of several processes do not interleave
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


def _server(server):
    return {
        "bind": _read(server, "cfg.bind"),
        "workers": _read(server, "cfg.workers"),
        "server_pid": _read(server, "pid"),
    }


def _worker(worker):
    return {"worker_pid": _read(worker, "pid"), "worker_age": _read(worker, "age")}


def _request(req):
    return {
        "method": _read(req, "method"),
        "path": _read(req, "path"),
        "query": _read(req, "query"),
        "uri": _read(req, "uri"),
        "headers": _read(req, "headers"),
    }


def on_starting(server):
    _record("on_starting", **_server(server))


def when_ready(server):
    _record("when_ready", **_server(server))


def on_reload(server):
    _record("on_reload", **_server(server))


def pre_fork(server, worker):
    _record("pre_fork", **_server(server), **_worker(worker))


def post_fork(server, worker):
    _record("post_fork", **_server(server), **_worker(worker))


def post_worker_init(worker):
    _record("post_worker_init", **_worker(worker))


def pre_request(worker, req):
    _record("pre_request", **_worker(worker), **_request(req))
    if req.path == "/boom-pre":
        raise RuntimeError("pre_request hook fails on purpose")


def post_request(worker, req, environ, resp):
    _record(
        "post_request",
        **_worker(worker),
        **_request(req),
        path_info=environ.get("PATH_INFO"),
        status=_read(resp, "status"),
        status_code=_read(resp, "status_code"),
    )
    if req.path == "/boom-post":
        raise RuntimeError("post_request hook fails on purpose")


def worker_int(worker):
    _record("worker_int", **_worker(worker))


def worker_abort(worker):
    _record("worker_abort", **_worker(worker))


def nworkers_changed(server, new_value, old_value):
    _record("nworkers_changed", **_server(server), new=new_value, old=old_value)


def child_exit(server, worker):
    _record("child_exit", **_server(server), **_worker(worker))


def worker_exit(server, worker):
    _record("worker_exit", **_server(server), **_worker(worker))


def on_exit(server):
    _record("on_exit", **_server(server))
