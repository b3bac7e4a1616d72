"""Process integration: -p/--pid (written while serving, removed on exit,
refused when another live process holds it), --reuse-port (two servers on one
port), -m/--umask for Unix socket files, what the main process keeps after a
reload, and the scheduling policy of the server's threads."""

import os
import signal
import stat
import time

import pytest
import requests
from helpers import APPS_DIR, IS_GUNICORN, differs_on_gunicorn, free_port, run_cli


def test_pid_file_holds_the_pid_while_serving_and_goes_at_exit(server_factory, tmp_path):
    pidfile = tmp_path / "ferrocorn.pid"
    server = server_factory("wsgi_apps", ["--pid", str(pidfile)])
    server.wait_for_log(r"Booting worker")
    assert pidfile.read_text() == f"{server.pid}\n"
    assert stat.S_IMODE(pidfile.stat().st_mode) == 0o644
    stopped = server.stop()
    assert stopped.code == 0
    assert not pidfile.exists()


def test_a_pid_file_of_a_live_process_is_refused(tmp_path):
    pidfile = tmp_path / "taken.pid"
    pidfile.write_text(f"{os.getpid()}\n")  # this test's own, live process
    args = ["--pid", str(pidfile), "-b", "127.0.0.1:0", "--chdir", str(APPS_DIR), "wsgi_apps"]
    result = run_cli(args, cwd=tmp_path)
    assert result.returncode == 1
    assert f"Already running on PID {os.getpid()}" in result.stderr
    assert pidfile.read_text() == f"{os.getpid()}\n"


def test_a_stale_pid_file_is_replaced(server_factory, tmp_path):
    pidfile = tmp_path / "stale.pid"
    pidfile.write_text("2147483646\n")
    server = server_factory("wsgi_apps", ["-p", str(pidfile)])
    server.wait_for_log(r"Booting worker")
    assert pidfile.read_text() == f"{server.pid}\n"


@differs_on_gunicorn("gunicorn 27 logs an empty address with --reuse-port (it binds in workers)")
def test_reuse_port_lets_two_servers_share_a_port(server_factory):
    port = free_port()
    first = server_factory("wsgi_apps", ["--reuse-port"], binds=[f"127.0.0.1:{port}"])
    second = server_factory("wsgi_apps", ["--reuse-port"], binds=[f"127.0.0.1:{port}"])
    assert first.addresses == second.addresses == [f"http://127.0.0.1:{port}"]


@pytest.mark.parametrize(("umask", "mode"), [(None, 0o777), ("0o077", 0o700), ("18", 0o755)])
def test_umask_sets_the_unix_socket_files_mode(server_factory, tmp_path, umask, mode):
    sock = tmp_path / "s.sock"
    args = ["--umask", umask] if umask else []
    server_factory("wsgi_apps", args, binds=[f"unix:{sock}"])
    assert stat.S_IMODE(sock.stat().st_mode) == mode


def rss_mib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmRSS for {pid}")


@pytest.mark.skipif(IS_GUNICORN, reason="ferrocorn's single process becomes a supervisor")
def test_after_a_reload_the_main_process_no_longer_holds_the_app(server_factory, tmp_path):
    pidfile = tmp_path / "server.pid"
    server = server_factory("lifecycle.ballast", ["-p", pidfile])
    assert requests.get(server.url, timeout=10).text == "ballast"
    assert rss_mib(server.pid) > 64  # the app's 64 MiB live in the serving process
    mark = server.log_mark()
    server.send_signal(signal.SIGHUP)
    booted = server.wait_for_log(r"Booting worker with pid: (\d+)", since=mark, timeout=30)
    worker = int(booted.group(1))
    assert worker != server.pid
    deadline = time.monotonic() + 30
    while rss_mib(server.pid) > 40:
        assert time.monotonic() < deadline, f"main process still at {rss_mib(server.pid)} MiB"
        time.sleep(0.05)
    # Same pid, same pid file, still serving through the new generation.
    assert pidfile.read_text().strip() == str(server.pid)
    assert requests.get(server.url, timeout=10).text == "ballast"
    stopped = server.stop()
    assert stopped.code == 0, stopped.err
    assert not pidfile.exists()


def test_usr2_starts_a_new_server_on_the_same_sockets_that_takes_over(server_factory, tmp_path):
    pidfile = tmp_path / "server.pid"
    server = server_factory("lifecycle.procinfo", ["-p", pidfile])
    old = server.pid
    mark = server.log_mark()
    server.send_signal(signal.SIGUSR2)
    # The new server logs its own Listening line, for the same address, under its own pid.
    line = server.wait_for_log(r"Listening at: (\S+) \((\d+)\)", since=mark, timeout=30)
    new = int(line.group(2))
    assert new != old and line.group(1) == server.addresses[0]
    second = tmp_path / "server.pid.2"
    deadline = time.monotonic() + 15
    while not (second.exists() and second.read_text().strip() == str(new)):
        assert time.monotonic() < deadline, f"no {second} naming {new}"
        time.sleep(0.02)
    assert pidfile.read_text().strip() == str(old)
    # Both serve; once the old one is stopped, the new one is the server. (Not server.stop():
    # the new server holds the old one's stderr open, so its output never ends.)
    server.send_signal(signal.SIGTERM)
    assert server.proc.wait(timeout=30) == 0, server.err_text()
    deadline = time.monotonic() + 15
    while not (pidfile.exists() and pidfile.read_text().strip() == str(new)):
        assert time.monotonic() < deadline, f"{pidfile} never named {new}"
        time.sleep(0.02)
    assert not second.exists()
    for _ in range(5):
        answer = requests.get(server.url, timeout=10).json()
        # Served by the new server itself, or (gunicorn) by one of its workers.
        assert new in (answer["pid"], answer["ppid"]), answer
    os.kill(new, signal.SIGTERM)
    deadline = time.monotonic() + 15
    while pidfile.exists():
        assert time.monotonic() < deadline, "the new server did not stop"
        time.sleep(0.02)


@pytest.mark.skipif(IS_GUNICORN, reason="--sched-batch is ferrocorn's")
@pytest.mark.skipif(not hasattr(os, "SCHED_BATCH"), reason="Linux scheduling policies")
@pytest.mark.parametrize(
    ("args", "policy"),
    [(["--sched-batch"], "SCHED_BATCH"), ([], "SCHED_OTHER")],
)
def test_every_server_thread_runs_under_sched_batch_when_asked(server_factory, args, policy):
    server = server_factory("wsgi_apps", ["--threads", "4", *args])
    # A request goes through the connection threads and a pool thread, so all have started.
    assert requests.get(server.url, timeout=10).status_code == 200
    tids = [int(t) for t in os.listdir(f"/proc/{server.pid}/task")]
    assert len(tids) >= 5  # the main thread, 4 pool threads, the runtime's
    assert {os.sched_getscheduler(t) for t in tids} == {getattr(os, policy)}
