"""Server hooks from a config file (tests/apps/lifecycle/hooks.conf.py records every call as a
JSON line): when each one runs, in which process, with the arguments gunicorn hook code reads,
and that a hook that raises is logged without taking the request or the server down."""

import json
import os
import signal

import pytest
import requests
from helpers import (
    APPS_DIR,
    booted_pids,
    differs_on_gunicorn,
    poll_until,
    processes_args,
)

HOOKS_CONF = APPS_DIR / "lifecycle" / "hooks.conf.py"


@pytest.fixture
def hooked(server_factory, tmp_path):
    """Starts lifecycle.procinfo with hooks.conf.py; returns (server, read_records)."""
    log = tmp_path / "hooks.jsonl"

    def start(args=()):
        return server_factory(
            "lifecycle.procinfo", ["-c", HOOKS_CONF, *args], env={"HOOK_LOG": str(log)}
        )

    def records():
        if not log.exists():
            return []
        # a line still being written (no newline yet) is left for the next read
        return [json.loads(line) for line in log.read_text().split("\n")[:-1]]

    return start, records


def named(records, hook):
    return [r for r in records if r["hook"] == hook]


def index_of(records, hook):
    return next(i for i, r in enumerate(records) if r["hook"] == hook)


def wait_record(records, hook, predicate=lambda r: True, what=None, timeout=15.0):
    return poll_until(
        lambda: [r for r in named(records(), hook) if predicate(r)],
        timeout=timeout,
        what=what or f"a {hook} call",
    )


def test_hooks_of_startup_one_request_and_sigterm_in_order(hooked):
    start, records = hooked
    server = start()
    resp = requests.get(
        server.url + "/hooked/path?a=1&b=2", headers={"X-Hook-Test": "yes"}, timeout=10
    )
    assert resp.status_code == 200
    app_pid = resp.json()["pid"]
    stopped = server.stop()
    assert stopped.code == 0, stopped.err
    recs = records()
    names = [r["hook"] for r in recs]

    for hook in ("on_starting", "when_ready", "on_exit"):
        (rec,) = named(recs, hook)
        assert rec["pid"] == server.pid, rec
        assert rec["server_pid"] == server.pid, rec
        assert rec["bind"] == ["127.0.0.1:0"], rec
        assert rec["workers"] == 1, rec
    assert index_of(recs, "on_starting") < index_of(recs, "when_ready")

    # the worker that runs the app was initialised before its first request
    inits = [r for r in named(recs, "post_worker_init") if r["pid"] == app_pid]
    assert len(inits) == 1, names
    assert inits[0]["worker_pid"] == app_pid
    assert isinstance(inits[0]["worker_age"], int), inits[0]

    (pre,) = [r for r in named(recs, "pre_request") if r["path"] == "/hooked/path"]
    (post,) = [r for r in named(recs, "post_request") if r["path"] == "/hooked/path"]
    assert recs.index(inits[0]) < recs.index(pre) < recs.index(post), names
    for rec in (pre, post):
        assert rec["pid"] == rec["worker_pid"] == app_pid, rec
        assert rec["method"] == "GET"
        assert rec["query"] == "a=1&b=2"
        assert rec["uri"] == "/hooked/path?a=1&b=2"
        assert ["X-HOOK-TEST", "yes"] in rec["headers"], rec["headers"]
        assert all(name == name.upper() for name, _ in rec["headers"]), rec["headers"]
    assert post["path_info"] == "/hooked/path"
    assert post["status"] == "200 OK"
    assert post["status_code"] == 200

    # the worker exits after its last request, the server after everything
    exits = [r for r in named(recs, "worker_exit") if r["worker_pid"] == app_pid]
    assert len(exits) == 1, names
    assert recs.index(post) < recs.index(exits[0])
    assert names[-1] == "on_exit", names


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGQUIT], ids=["SIGINT", "SIGQUIT"])
def test_worker_int_on_a_quick_stop(hooked, sig):
    start, records = hooked
    server = start()
    app_pid = requests.get(server.url, timeout=10).json()["pid"]
    stopped = server.stop(sig)
    assert stopped.code == 0, stopped.err
    recs = records()
    names = [r["hook"] for r in recs]
    (interrupted,) = named(recs, "worker_int")
    assert interrupted["worker_pid"] == app_pid, interrupted
    assert names.index("worker_int") < names.index("on_exit")
    assert names[-1] == "on_exit", names


def test_on_reload_on_sighup(hooked):
    start, records = hooked
    server = start()
    mark = server.log_mark()
    server.send_signal(signal.SIGHUP)
    server.wait_for_log(r"Hang up: Master", since=mark)
    (reload,) = wait_record(records, "on_reload")
    assert reload["pid"] == reload["server_pid"] == server.pid, reload
    assert requests.get(server.url, timeout=10).status_code == 200
    assert server.stop().code == 0


def test_nworkers_changed_on_ttin_and_ttou(hooked):
    start, records = hooked
    server = start(["--threads", "2"])

    def changed_by(delta):
        return lambda r: isinstance(r["old"], int) and r["new"] == r["old"] + delta

    server.send_signal(signal.SIGTTIN)
    (grown,) = wait_record(records, "nworkers_changed", changed_by(+1), "a TTIN change")
    server.send_signal(signal.SIGTTOU)
    (shrunk,) = wait_record(records, "nworkers_changed", changed_by(-1), "a TTOU change")
    assert shrunk["old"] == grown["new"], (grown, shrunk)
    assert grown["pid"] == grown["server_pid"] == server.pid, grown
    assert server.stop().code == 0


def test_fork_hooks_and_child_exit_with_worker_processes(hooked):
    start, records = hooked
    server = start(processes_args(2))
    pids = booted_pids(server, 2)
    poll_until(
        lambda: {r["pid"] for r in named(records(), "post_worker_init")} >= set(pids),
        what="post_worker_init in both workers",
    )
    recs = records()
    forks = named(recs, "pre_fork")
    assert len(forks) == 2, forks
    assert all(r["pid"] == server.pid for r in forks), forks
    children = named(recs, "post_fork")
    assert sorted(r["pid"] for r in children) == sorted(pids), children
    assert all(r["worker_pid"] == r["pid"] for r in children), children
    assert len({r["worker_age"] for r in children}) == 2, children
    for pid in pids:
        post_fork = next(r for r in children if r["pid"] == pid)
        init = next(r for r in named(recs, "post_worker_init") if r["pid"] == pid)
        assert recs.index(post_fork) < recs.index(init)

    victim = pids[0]
    mark = server.log_mark()
    os.kill(victim, signal.SIGKILL)
    (exited,) = wait_record(records, "child_exit", lambda r: r["worker_pid"] == victim)
    assert exited["pid"] == exited["server_pid"] == server.pid, exited
    # the victim died at once: it ran no worker_exit
    assert not [r for r in named(records(), "worker_exit") if r["worker_pid"] == victim]
    # its replacement is forked with the hooks too
    (new,) = booted_pids(server, 1, since=mark)
    wait_record(records, "post_fork", lambda r: r["pid"] == new)
    assert len(named(records(), "pre_fork")) == 3
    assert server.stop().code == 0


@differs_on_gunicorn(
    "the gthread worker's heartbeat is its main loop: a long request never aborts it"
)
def test_worker_abort_when_a_request_runs_past_the_timeout(hooked):
    start, records = hooked
    server = start(["--threads", "2", "--timeout", "2"])
    app_pid = requests.get(server.url, timeout=10).json()["pid"]
    requests.get(server.url + "/spin?s=4", timeout=15)
    (aborted,) = wait_record(records, "worker_abort", timeout=4)
    assert aborted["worker_pid"] == aborted["pid"] == app_pid, aborted
    assert requests.get(server.url, timeout=10).status_code == 200


@differs_on_gunicorn("gunicorn answers 500 when pre_request raises")
def test_a_raising_pre_request_hook_is_logged_and_the_request_still_served(hooked):
    start, _ = hooked
    server = start()
    mark = server.log_mark()
    assert requests.get(server.url + "/boom-pre", timeout=10).status_code == 200
    server.wait_for_log(r"pre_request hook fails on purpose", since=mark)
    assert requests.get(server.url + "/after", timeout=10).status_code == 200
    assert server.stop().code == 0


def test_a_raising_post_request_hook_is_logged_and_the_server_keeps_serving(hooked):
    start, records = hooked
    server = start()
    mark = server.log_mark()
    assert requests.get(server.url + "/boom-post", timeout=10).status_code == 200
    server.wait_for_log(r"post_request hook fails on purpose", since=mark)
    assert requests.get(server.url + "/after", timeout=10).status_code == 200
    poll_until(
        lambda: [r["path"] for r in named(records(), "post_request")] == ["/boom-post", "/after"],
        what="post_request of both requests",
    )
    assert server.stop().code == 0
