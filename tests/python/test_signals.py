"""Signals under load: a graceful SIGTERM drains everything already sent (the listen backlog
too) and refuses the rest, a second SIGINT makes it quick, SIGHUP reloads code and config with
zero failed requests (and survives code that does not import), SIGUSR1 reopens the log files,
SIGTTIN/SIGTTOU resize the thread pool, SIGWINCH is ignored.

The load tests classify what a client sees (``helpers.Outcome``). Over a connection per
request, a request written before the signal must get a complete 200, and afterwards the only
accepted failure is a refused connection: the server closed its listener. Over kept-alive
connections one more failure is tolerated: a request written on a reused connection that the
server closed, as idle, while the request was on its way, so that not one byte of a response
came back. A client cannot tell when its request crossed the server's decision to close, and
RFC 9112 (9.3.1) lets it retry such a request on a new connection, which is what
urllib3/requests and browsers do; a partial response, or a reset after bytes arrived, is never
tolerated. Each client can meet that race once (it then reconnects to a closed or draining
listener), so there are at most as many of them as clients.
"""

import concurrent.futures
import json
import os
import re
import signal
import time

import pytest
import requests
from helpers import (
    APPS_DIR,
    IS_GUNICORN,
    Load,
    PatientLogFifo,
    RawConnection,
    booted_pids,
    differs_on_gunicorn,
    is_running,
    poll_until,
    thread_names,
)

VERSIONED = (APPS_DIR / "lifecycle" / "versioned.py").read_text()
VERSION_LINE = 'VERSION = "v0"'


def write_version(directory, version, source=None):
    """Writes versioned.py serving ``version`` into ``directory`` (atomically: a reload never
    reads half a file)."""
    assert VERSION_LINE in VERSIONED
    text = (
        source if source is not None else VERSIONED.replace(VERSION_LINE, f'VERSION = "{version}"')
    )
    tmp = directory / "versioned.py.tmp"
    tmp.write_text(text)
    os.replace(tmp, directory / "versioned.py")


def start_slow_request(pool, server, seconds):
    """Starts /slow?s= in the background; returns once the app is running it."""
    mark = server.log_mark()
    future = pool.submit(requests.get, f"{server.url}/slow?s={seconds}", timeout=30)
    server.wait_for_log(r"slow request started", since=mark)
    return future


def fetch_json(server, path, timeout=10):
    resp = requests.get(server.url + path, timeout=timeout)
    assert resp.status_code == 200, resp.text
    return resp.json()


# -- SIGTERM ------------------------------------------------------------------------------


@differs_on_gunicorn(
    "the gthread worker decides keep-alive before the app runs: a request in flight at "
    "SIGTERM is answered without Connection: close, and the connection lingers 2 s"
)
def test_sigterm_answers_an_in_flight_keep_alive_request_with_connection_close(server_factory):
    server = server_factory("lifecycle.procinfo", ["--threads", "2", "--keep-alive", "30"])
    with RawConnection(server.port, timeout=15) as conn:
        mark = server.log_mark()
        conn.send(conn.build("GET", "/slow?s=1"))
        server.wait_for_log(r"slow request started", since=mark)
        server.send_signal(signal.SIGTERM)
        server.wait_for_log(r"Handling signal: term")
        resp = conn.read_response()
        assert (resp.status, resp.body) == (200, b"slept 1.0")
        assert resp.header("Connection") == "close", resp.headers
        assert conn.is_closed_by_peer(5)
    assert server.wait(20).code == 0


@differs_on_gunicorn(
    "gunicorn closes its listeners at once: connections left in the backlog are reset"
)
def test_sigterm_serves_connections_waiting_in_the_backlog(server_factory):
    # One thread and one connection at a time: while /slow runs, the next connections stay in
    # the listen backlog, with their requests sent. They were sent before the signal.
    server = server_factory(
        "lifecycle.procinfo",
        ["--threads", "1", "--worker-connections", "1", "--graceful-timeout", "20"],
    )
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        slow = start_slow_request(pool, server, 1.5)
        waiting = [RawConnection(server.port, timeout=15) for _ in range(3)]
        try:
            for i, conn in enumerate(waiting):
                conn.send(conn.build("GET", f"/env?WAITING_{i}"))
            server.send_signal(signal.SIGTERM)
            server.wait_for_log(r"Handling signal: term")
            answers = [conn.read_response() for conn in waiting]
        finally:
            for conn in waiting:
                conn.close()
        assert slow.result().status_code == 200
    assert [(a.status, a.body) for a in answers] == [(200, b'{"value": null}')] * 3
    stopped = server.wait(20)
    assert stopped.code == 0, stopped.err
    assert "Shutting down: Master" in stopped.err


def run_sigterm_under_load(server_factory, keep_alive):
    server = server_factory(
        "lifecycle.procinfo",
        ["--threads", "4", "--keep-alive", "30", "--graceful-timeout", "20"],
    )
    load = Load(server.port, "/?sleep=0.02", clients=8, keep_alive=keep_alive)
    try:
        load.wait_until(lambda outs: sum(o.ok for o in outs) >= 100, what="100 answers")
        signalled = time.monotonic()
        server.send_signal(signal.SIGTERM)
        server.wait_for_log(r"Handling signal: term")
        draining = time.monotonic()
        stopped = server.wait(20)
        # the clients go on until they meet the closed listener
        load.wait_for(lambda o: o.started > signalled and o.error == "refused", 10)
    finally:
        outcomes = load.stop()
    before = [o for o in outcomes if o.sent is not None and o.sent < signalled]
    after = [o for o in outcomes if o not in before]
    print(f"before SIGTERM: {Load.summary(before)}\nafter: {Load.summary(after)}")
    assert stopped.code == 0, stopped.err
    assert "Shutting down: Master" in stopped.err
    return before, after, draining


@differs_on_gunicorn(
    "gunicorn resets the connections that reach its listen backlog while it drains"
)
def test_sigterm_under_load_answers_every_request_sent_before_it(server_factory):
    before, after, _ = run_sigterm_under_load(server_factory, keep_alive=False)
    assert len(before) >= 100
    assert all(o.ok for o in before), Load.summary(before)
    assert all(o.ok or o.error == "refused" for o in after), Load.summary(after)


@differs_on_gunicorn(
    "gunicorn resets the connections that reach its listen backlog while it drains"
)
def test_sigterm_under_keep_alive_load_only_drops_requests_racing_an_idle_close(server_factory):
    before, after, draining = run_sigterm_under_load(server_factory, keep_alive=True)
    outcomes = before + after
    raced = [o for o in outcomes if o.error == "no-response" and o.reused]
    print(f"requests that raced an idle close: {len(raced)}")
    assert len(before) >= 100
    assert all(o.ok or o in raced for o in before), Load.summary(before)
    assert all(o.ok or o in raced or o.error == "refused" for o in after), Load.summary(after)
    assert len(raced) <= 8
    # responses to requests sent once the server was draining tell the client to go
    drained = [o for o in after if o.ok and o.sent > draining]
    assert all(o.header("Connection") == "close" for o in drained), drained


def test_second_sigint_during_a_graceful_stop_makes_it_quick(server_factory):
    server = server_factory("lifecycle.procinfo", ["--threads", "2", "--graceful-timeout", "30"])
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        slow = start_slow_request(pool, server, 20)
        server.send_signal(signal.SIGTERM)
        server.wait_for_log(r"Handling signal: term")
        # a graceful stop would wait the 20 s of /slow
        interrupted = time.monotonic()
        server.send_signal(signal.SIGINT)
        stopped = server.wait(15)
        elapsed = time.monotonic() - interrupted
        with pytest.raises(requests.RequestException):
            slow.result()
    # gunicorn gives the workers 2 s after a quick stop, then kills them
    assert elapsed < 3.5, f"the second signal took {elapsed:.1f} s to stop the server"
    assert stopped.code == 0, stopped.err


# -- signals that do not stop the server ---------------------------------------------------


@pytest.mark.parametrize("sig", ["HUP", "USR1", "TTIN", "TTOU", "WINCH"])
def test_signal_is_logged_and_the_server_keeps_serving(server_factory, sig):
    server = server_factory("lifecycle.procinfo", ["--threads", "2"])
    mark = server.log_mark()
    server.send_signal(getattr(signal, f"SIG{sig}"))
    server.wait_for_log(rf"\[INFO\] Handling signal: {sig.lower()}$", since=mark)
    assert fetch_json(server, "/")["pid"]
    assert server.proc.poll() is None
    stopped = server.stop()
    assert stopped.code == 0, stopped.err


# -- SIGHUP -----------------------------------------------------------------------------


def test_sighup_reloads_new_code_five_times_under_load_without_a_failed_request(
    server_factory, tmp_path
):
    write_version(tmp_path, "v0")
    server = server_factory(
        "versioned", ["--threads", "4", "--graceful-timeout", "20"], chdir=tmp_path
    )
    generations = booted_pids(server, 1)
    load = Load(server.port, "/?sleep=0.01", clients=6)
    try:
        load.wait_for(lambda o: o.ok and o.body == b"v0", what="v0 served")
        for i in range(1, 6):
            version = f"v{i}".encode()
            write_version(tmp_path, f"v{i}")
            mark, since = server.log_mark(), load.mark()
            server.send_signal(signal.SIGHUP)
            server.wait_for_log(r"Hang up: Master", since=mark)
            # a new generation process boots and serves the new code
            (pid,) = booted_pids(server, 1, since=mark)
            assert pid not in generations
            generations.append(pid)
            load.wait_for(
                lambda o, v=version, p=str(pid): o.body == v and o.header("X-Pid") == p,
                15,
                since,
                f"v{i} served by pid {pid}",
            )
            assert server.proc.poll() is None, "the main process exited on SIGHUP"
    finally:
        outcomes = load.stop()
    print(Load.summary(outcomes))
    assert all(o.ok for o in outcomes), Load.summary(outcomes)
    assert {o.body for o in outcomes} <= {f"v{i}".encode() for i in range(6)}
    # the old generations drain and exit (but the main process, if it was one); the last
    # one serves alone
    old = [pid for pid in generations[:-1] if pid != server.pid]
    poll_until(lambda: not [p for p in old if is_running(p)], what="the old generations' exit")
    for _ in range(10):
        resp = requests.get(server.url, timeout=10)
        assert (resp.text, resp.headers["X-Pid"]) == ("v5", str(generations[-1]))
    stopped = server.stop()
    assert stopped.code == 0, stopped.err
    assert stopped.err.count("Hang up: Master") == 5


@differs_on_gunicorn("a worker that fails to boot on SIGHUP halts the whole gunicorn server")
def test_sighup_with_code_that_fails_to_import_keeps_the_old_code_serving(server_factory, tmp_path):
    write_version(tmp_path, "v1")
    server = server_factory("versioned", ["--threads", "4"], chdir=tmp_path)
    load = Load(server.port, "/", clients=4, pause=0.01)
    try:
        load.wait_for(lambda o: o.ok and o.body == b"v1", what="v1 served")
        write_version(tmp_path, None, source='VERSION = "v2"\ndef application(:\n')
        mark = server.log_mark()
        server.send_signal(signal.SIGHUP)
        server.wait_for_log(r"Hang up: Master", since=mark)
        server.wait_for_log(r"SyntaxError", timeout=15, since=mark)
        since = load.mark()
        load.wait_count(50, since=since)
        assert server.proc.poll() is None, "the server exited after a failed reload"
        assert requests.get(server.url, timeout=10).text == "v1"
        # fixed code is picked up by the next SIGHUP
        write_version(tmp_path, "v3")
        mark, since = server.log_mark(), load.mark()
        server.send_signal(signal.SIGHUP)
        server.wait_for_log(r"Hang up: Master", since=mark)
        load.wait_for(lambda o: o.body == b"v3", 15, since, "v3 served")
    finally:
        outcomes = load.stop()
    assert all(o.ok for o in outcomes), Load.summary(outcomes)
    assert {o.body for o in outcomes} <= {b"v1", b"v3"}
    assert server.stop().code == 0


def test_sighup_rereads_the_config_file(server_factory, tmp_path):
    conf = tmp_path / "reload.conf.py"
    conf.write_text('raw_env = ["LIFECYCLE_MARK=first"]\n')
    server = server_factory("lifecycle.procinfo", ["-c", conf, "--threads", "2"])
    assert fetch_json(server, "/env?LIFECYCLE_MARK") == {"value": "first"}
    conf.write_text('raw_env = ["LIFECYCLE_MARK=second"]\n')
    mark = server.log_mark()
    server.send_signal(signal.SIGHUP)
    server.wait_for_log(r"Hang up: Master", since=mark)
    poll_until(
        lambda: fetch_json(server, "/env?LIFECYCLE_MARK")["value"] == "second",
        what="the new raw_env in the app",
    )
    assert server.proc.poll() is None
    assert server.stop().code == 0


# -- SIGUSR1 ------------------------------------------------------------------------------


def rotate_and_reopen(server, log):
    """Moves the access log away as logrotate does, sends USR1, and waits until new lines go
    to a new file at the same path; returns the moved file."""
    rotated = log.with_name(log.name + ".1")
    assert requests.get(server.url + "/before-rename", timeout=10).status_code == 200
    poll_until(lambda: "/before-rename" in log.read_text(), what="the first access line")
    os.rename(log, rotated)
    mark = server.log_mark()
    server.send_signal(signal.SIGUSR1)
    server.wait_for_log(r"Handling signal: usr1", since=mark)

    def reopened():
        assert requests.get(server.url + "/after-reopen", timeout=10).status_code == 200
        return log.exists() and "/after-reopen" in log.read_text()

    poll_until(reopened, what="an access line in a new access.log")
    return rotated


def test_sigusr1_reopens_the_access_log(server_factory, tmp_path):
    log = tmp_path / "access.log"
    server = server_factory("lifecycle.procinfo", ["--access-logfile", log])
    rotated = rotate_and_reopen(server, log)
    assert "/before-rename" in rotated.read_text()
    assert "/before-rename" not in log.read_text()
    assert server.stop().code == 0


def test_sigusr1_reopens_a_python_logging_file_handler(server_factory, tmp_path):
    log = tmp_path / "access.log"
    config = {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"plain": {"format": "%(message)s"}},
        "handlers": {
            "console": {
                "class": "logging.StreamHandler",
                "stream": "ext://sys.stderr",
                "formatter": "plain",
            },
            "access_file": {
                "class": "logging.FileHandler",
                "filename": str(log),
                "formatter": "plain",
            },
        },
        "root": {"level": "INFO", "handlers": ["console"]},
        "loggers": {
            "gunicorn.error": {"handlers": ["console"], "level": "INFO", "propagate": False},
            "gunicorn.access": {
                "handlers": ["access_file"],
                "level": "INFO",
                "propagate": False,
            },
        },
    }
    config_file = tmp_path / "logging.json"
    config_file.write_text(json.dumps(config))
    server = server_factory("lifecycle.procinfo", ["--log-config-json", config_file])
    rotated = rotate_and_reopen(server, log)
    assert "/after-reopen" not in rotated.read_text()
    assert server.stop().code == 0


def test_sigusr1_reopens_the_error_log(server_factory, tmp_path):
    # The error log starts as a FIFO this test reads; renamed away, it keeps receiving lines
    # until the server reopens the path, which makes a new, regular file there. The FIFO's EOF
    # says that every process of the server let go of it.
    path = tmp_path / "error.log"
    fifo = PatientLogFifo(path)
    server = server_factory("lifecycle.procinfo", ["--error-logfile", path], wait=False)
    port = fifo.wait_port(server)
    os.rename(path, tmp_path / "error.log.fifo")
    server.send_signal(signal.SIGUSR1)
    fifo.join(15)
    assert not fifo._reader.is_alive(), f"the old error log is still open: {fifo.lines}"
    assert any("Handling signal: usr1" in line for line in fifo.lines), fifo.lines
    resp = requests.get(f"http://127.0.0.1:{port}/log?msg=written-after-reopen", timeout=10)
    assert resp.status_code == 200
    poll_until(
        lambda: path.is_file() and "written-after-reopen" in path.read_text(),
        what="the app's wsgi.errors line in the new error log",
    )
    assert server.stop().code == 0


# -- SIGTTIN / SIGTTOU ------------------------------------------------------------------------


def pool_threads(server):
    return sorted(n for n in thread_names(server.pid) if re.fullmatch(r"ferrocorn-py-\d+", n))


@pytest.mark.skipif(IS_GUNICORN, reason="gunicorn adds and removes worker processes instead")
def test_ttin_and_ttou_grow_and_shrink_the_thread_pool_but_not_below_one(server_factory):
    server = server_factory("lifecycle.procinfo", ["--threads", "2"])

    def threads_become(count):
        poll_until(lambda: len(pool_threads(server)) == count, what=f"{count} pool threads")

    threads_become(2)
    server.send_signal(signal.SIGTTIN)
    threads_become(3)
    assert fetch_json(server, "/")["pid"]
    for _ in range(2):
        # the same signal sent twice before it is handled counts once: one at a time
        mark = server.log_mark()
        server.send_signal(signal.SIGTTOU)
        server.wait_for_log(r"Handling signal: ttou", since=mark)
    threads_become(1)
    mark = server.log_mark()
    server.send_signal(signal.SIGTTOU)
    server.wait_for_log(r"Handling signal: ttou", since=mark)
    # the last thread stays and serves
    assert fetch_json(server, "/")["pid"]
    assert len(pool_threads(server)) == 1
    assert server.stop().code == 0
