"""Supervision: worker processes (ferrocorn's ``--processes P``, run as gunicorn's ``-w P`` when
the suite checks itself against gunicorn) bind once, boot, serve, are replaced when killed, stop
with the server and reload one after another on SIGHUP; an app that does not import halts the
server with exit 4; --max-requests recycles workers under load without a failed request;
--preload, -n/--name, -D/--daemon with -p, and -u/-g."""

import contextlib
import grp
import os
import pwd
import signal
import time
from pathlib import Path

import pytest
import requests
from helpers import (
    APPS_DIR,
    IS_GUNICORN,
    Load,
    PatientLogFifo,
    booted_pids,
    descendants,
    differs_on_gunicorn,
    is_running,
    poll_until,
    proc_stat,
    processes_args,
    run_cli,
)
from test_signals import write_version


def served_pids(outcomes):
    return {o.json()["pid"] for o in outcomes if o.ok}


# -- worker processes -------------------------------------------------------------------------


def test_worker_processes_are_children_that_boot_and_all_serve(server_factory):
    server = server_factory("lifecycle.procinfo", [*processes_args(2), "--threads", "2"])
    pids = booted_pids(server, 2)
    assert len(set(pids)) == 2
    assert server.pid not in pids
    for pid in pids:
        assert proc_stat(pid)[1] == server.pid, f"worker {pid} is not a child of the server"
    assert server.err_text().count("Listening at:") == 1
    load = Load(server.port, "/?sleep=0.01", clients=8)
    try:
        load.wait_until(lambda outs: len(served_pids(outs)) == 2, what="both workers serving")
    finally:
        outcomes = load.stop()
    assert all(o.ok for o in outcomes), Load.summary(outcomes)
    assert served_pids(outcomes) == set(pids)
    assert server.stop().code == 0


def test_a_killed_worker_process_is_replaced_under_load(server_factory):
    server = server_factory("lifecycle.procinfo", [*processes_args(2), "--threads", "2"])
    pids = booted_pids(server, 2)
    clients = 8
    load = Load(server.port, "/?sleep=0.02", clients=clients)
    try:
        load.wait_until(lambda outs: len(served_pids(outs)) == 2, what="both workers serving")
        victim = pids[0]
        mark, since = server.log_mark(), load.mark()
        os.kill(victim, signal.SIGKILL)
        server.wait_for_log(
            rf"Worker \(pid:{victim}\) was sent SIGKILL! Perhaps out of memory\?", since=mark
        )
        (new,) = booted_pids(server, 1, since=mark)
        load.wait_for(
            lambda o: o.ok and o.json()["pid"] == new, 15, since, "the new worker serving"
        )
        assert pids[1] in served_pids(load.outcomes[since:]), "the other worker stopped serving"
    finally:
        outcomes = load.stop()
    failed = [o for o in outcomes if not o.ok]
    print(f"requests failed by kill -9 of a worker: {len(failed)} of {len(outcomes)}")
    assert len(failed) <= clients, Load.summary(outcomes)
    assert not any(o.error == "refused" for o in failed), Load.summary(outcomes)
    assert served_pids(outcomes) == {*pids, new}
    assert proc_stat(new)[1] == server.pid
    assert server.proc.poll() is None
    assert server.stop().code == 0


@pytest.mark.skipif(IS_GUNICORN, reason="gunicorn's heartbeat runs in the worker's main loop")
def test_a_worker_process_that_stops_responding_is_killed_and_replaced(server_factory):
    server = server_factory("lifecycle.procinfo", [*processes_args(2), "--timeout", "3"])
    pids = booted_pids(server, 2)
    victim = pids[0]
    server.wait_for_log(rf"Booting worker pool .* in pid: {victim}")  # serving
    mark = server.log_mark()
    os.kill(victim, signal.SIGSTOP)  # frozen: no more reports to the supervisor
    try:
        server.wait_for_log(rf"WORKER TIMEOUT \(pid:{victim}\)", since=mark, timeout=15)
        (new,) = booted_pids(server, 1, since=mark)
    finally:
        if is_running(victim):
            # The supervisor may kill and reap it between the check and the signal.
            with contextlib.suppress(ProcessLookupError):
                os.kill(victim, signal.SIGCONT)
    poll_until(lambda: not is_running(victim), what=f"worker {victim} gone")
    assert new not in pids
    # The other worker served all along; the new one serves too.
    outcomes = [requests.get(server.url, timeout=10).json()["pid"] for _ in range(40)]
    assert set(outcomes) <= {pids[1], new}
    assert server.stop().code == 0


def test_ttin_and_ttou_add_and_remove_a_worker_process(server_factory):
    server = server_factory("lifecycle.procinfo", [*processes_args(2)])
    booted_pids(server, 2)
    mark = server.log_mark()
    server.send_signal(signal.SIGTTIN)
    booted_pids(server, 1, since=mark)
    poll_until(lambda: len(descendants(server.pid)) == 3, what="three worker processes")
    mark = server.log_mark()
    server.send_signal(signal.SIGTTOU)
    server.wait_for_log(r"Handling signal: ttou", since=mark)
    poll_until(lambda: len(descendants(server.pid)) == 2, what="two worker processes")
    assert requests.get(server.url, timeout=10).status_code == 200
    assert server.stop().code == 0


def test_sigterm_stops_the_server_and_every_worker_process(server_factory):
    server = server_factory("lifecycle.procinfo", [*processes_args(2)])
    pids = booted_pids(server, 2)
    assert requests.get(server.url, timeout=10).status_code == 200
    stopped = server.stop(signal.SIGTERM, timeout=20)
    assert stopped.code == 0, stopped.err
    assert "Shutting down: Master" in stopped.err
    left = [pid for pid in pids if is_running(pid)]
    assert not left, f"worker processes still running after the server exited: {left}"


def test_sighup_reloads_worker_processes_one_after_another_without_a_failed_request(
    server_factory, tmp_path
):
    write_version(tmp_path, "v0")
    server = server_factory("versioned", [*processes_args(2), "--threads", "2"], chdir=tmp_path)
    booted = booted_pids(server, 2)
    load = Load(server.port, "/?sleep=0.01", clients=8)
    try:
        load.wait_for(lambda o: o.ok and o.body == b"v0", what="v0 served")
        for i in (1, 2):
            version = f"v{i}".encode()
            write_version(tmp_path, f"v{i}")
            mark, since = server.log_mark(), load.mark()
            server.send_signal(signal.SIGHUP)
            server.wait_for_log(r"Hang up: Master", since=mark)
            fresh = booted_pids(server, 2, since=mark)
            assert not set(fresh) & set(booted)
            load.wait_until(
                lambda outs, v=version, f=fresh, s=since: (
                    {int(o.header("X-Pid")) for o in outs[s:] if o.body == v} == set(f)
                ),
                what=f"v{i} served by both new workers",
            )
            booted += fresh
    finally:
        outcomes = load.stop()
    print(Load.summary(outcomes))
    assert all(o.ok for o in outcomes), Load.summary(outcomes)
    retired = booted[:-2]  # all but the last two
    poll_until(lambda: not [p for p in retired if is_running(p)], what="the old workers' exit")
    assert {int(o.header("X-Pid")) for o in outcomes} <= set(booted)
    assert server.proc.poll() is None
    assert server.stop().code == 0


@pytest.mark.skipif(
    IS_GUNICORN,
    reason="gunicorn exits 3 for an import that raises, and with -w 2 the second worker's "
    "exit 4, reaped while halting, raises HaltServer again and makes gunicorn exit 1 at times",
)
@pytest.mark.parametrize("app", ["lifecycle.broken_import", "lifecycle.procinfo:no_such_app"])
def test_an_app_that_fails_to_load_in_the_workers_halts_the_server_with_exit_4(app):
    result = run_cli([*processes_args(2), "-b", "127.0.0.1:0", "--chdir", APPS_DIR, app])
    assert result.returncode == 4, result.stderr
    assert "App failed to load." in result.stderr


@differs_on_gunicorn("gunicorn exits 1 when the preloaded app fails to import")
def test_preload_that_fails_to_import_exits_4_before_any_worker_starts():
    args = ["--preload", *processes_args(2), "-b", "127.0.0.1:0", "--chdir", APPS_DIR]
    result = run_cli([*args, "lifecycle.broken_import"])
    assert result.returncode == 4, result.stderr
    assert "Booting worker" not in result.stderr
    assert "lifecycle.broken_import fails to import on purpose" in result.stderr


# -- --max-requests -----------------------------------------------------------------------


def recycle_under_load(server_factory, args):
    server = server_factory(
        "lifecycle.procinfo", ["--max-requests", "1000", "--max-requests-jitter", "50", *args]
    )
    load = Load(server.port, "/", clients=8, pause=0, total=4000)
    outcomes = load.join(60)
    print(Load.summary(outcomes))
    assert len(outcomes) == 4000
    assert all(o.ok for o in outcomes), Load.summary(outcomes)
    server.wait_for_log(r"Autorestarting worker after current request\.")
    assert server.proc.poll() is None
    assert server.stop().code == 0
    return [o.json() for o in outcomes]


def test_max_requests_recycles_workers_under_load_without_a_failed_request(server_factory):
    # Two workers (threads in ferrocorn, processes in gunicorn) share 4000 requests: one of
    # them serves at least 2000, past its 1000-1050 limit, whatever the balance.
    answers = recycle_under_load(server_factory, ["--workers", "2"])
    incarnations = {a["incarnation"] for a in answers}
    assert len(incarnations) > 2, incarnations


@pytest.mark.skipif(IS_GUNICORN, reason="gunicorn recycles worker processes, not threads")
def test_max_requests_recycles_pool_threads_in_one_process(server_factory):
    answers = recycle_under_load(server_factory, ["--threads", "2"])
    assert len({a["pid"] for a in answers}) == 1
    # the native thread id, not threading.get_ident(): glibc hands a new thread the stack
    # (and so the ident) of one that exited
    threads = {a["tid"] for a in answers}
    assert len(threads) > 2, threads


# -- process identity and daemon --------------------------------------------------------------


NAME = "lcn"  # short enough to stay whole in a 15-byte comm even behind "ferrocorn: "


def test_name_sets_the_process_title(server_factory):
    if IS_GUNICORN:
        pytest.importorskip("setproctitle", reason="gunicorn sets titles through setproctitle")
    server = server_factory("lifecycle.procinfo", ["--name", NAME])
    if IS_GUNICORN:
        cmdline = Path(f"/proc/{server.pid}/cmdline").read_bytes().replace(b"\0", b" ")
        assert NAME.encode() in cmdline, cmdline
    else:
        comm = Path(f"/proc/{server.pid}/comm").read_text().strip()
        assert NAME in comm, comm


class NoStderr:
    """Stands for the Server that LogFifo.wait_port names in its failure (a daemon has none)."""

    def err_text(self):
        return "(a daemon: no stderr)"


@pytest.fixture
def daemon_pidfile(tmp_path):
    """A pidfile path; whatever process it names at the end is killed with its group."""
    path = tmp_path / "daemon.pid"
    yield path
    try:
        pid = int(path.read_text())
    except (OSError, ValueError):
        return
    for kill in (os.killpg, os.kill):
        try:
            kill(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


def test_daemon_detaches_serves_and_stops_on_sigterm(daemon_pidfile, tmp_path):
    errlog = PatientLogFifo(tmp_path / "error.log")
    args = ["--daemon", "--pid", daemon_pidfile, "--error-logfile", errlog.path]
    args += ["-b", "127.0.0.1:0", "--chdir", APPS_DIR, "lifecycle.procinfo"]
    started = time.monotonic()
    result = run_cli(args, timeout=15)
    assert result.returncode == 0, result.stderr
    assert time.monotonic() - started < 10
    port = errlog.wait_port(NoStderr())
    pid = poll_until(
        lambda: daemon_pidfile.exists() and int(daemon_pidfile.read_text() or 0),
        what="the pidfile",
    )
    assert is_running(pid)
    answer = requests.get(f"http://127.0.0.1:{port}/", timeout=10).json()
    assert pid in (answer["pid"], answer["ppid"])
    os.kill(pid, signal.SIGTERM)
    poll_until(lambda: not is_running(pid), what="the daemon's exit")
    poll_until(lambda: not daemon_pidfile.exists(), what="the pidfile's removal")
    errlog.join(10)
    assert any("Shutting down: Master" in line for line in errlog.lines), errlog.lines


@pytest.mark.skipif(os.geteuid() != 0, reason="switching users needs root")
def test_user_and_group_switch_the_serving_process(server_factory):
    nobody = pwd.getpwnam("nobody")
    group = grp.getgrnam("nogroup")
    server = server_factory("lifecycle.whoami", ["--user", "nobody", "--group", "nogroup"])
    answer = requests.get(server.url + "/", timeout=10).text
    uid, gid, euid, egid = (int(x) for x in answer.split())
    assert (uid, euid) == (nobody.pw_uid, nobody.pw_uid), answer
    assert (gid, egid) == (group.gr_gid, group.gr_gid), answer
    assert server.stop().code == 0
