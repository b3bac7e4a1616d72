"""systemd integration: socket activation (LISTEN_FDS/LISTEN_PID and a listening socket at fd
3) and sd_notify (READY=1 once listening, STOPPING=1 on SIGTERM) over a real AF_UNIX datagram
socket.

The server is started through a small Python wrapper that moves the inherited socket to fd 3,
sets LISTEN_FDS=1 and LISTEN_PID to its own pid and execs the server command: ``exec`` keeps
the pid, so LISTEN_PID names the server itself, as systemd does."""

import os
import signal
import socket
import sys
import tempfile

import helpers
import pytest
import requests
from helpers import differs_on_gunicorn, free_port, processes_args


@pytest.fixture
def listener():
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    yield sock
    sock.close()


# Puts the socket given as argv[1] at fd 3, sets LISTEN_FDS/LISTEN_PID (argv[2], "self" for
# the exec'd process's own pid) and execs the rest of argv, as systemd starts a service.
ACTIVATE = """
import os, sys
fd, listen_pid, argv = int(sys.argv[1]), sys.argv[2], sys.argv[3:]
if fd != 3:
    os.dup2(fd, 3)
    os.close(fd)
os.environ["LISTEN_FDS"] = "1"
os.environ["LISTEN_PID"] = str(os.getpid()) if listen_pid == "self" else listen_pid
os.execvp(argv[0], argv)
"""


def activated(monkeypatch, sock, listen_pid="self"):
    """Makes the next Server start as systemd would start it with ``sock`` (fd 3); returns
    the ``pass_fds`` for it."""
    plain = helpers.base_command
    wrapper = [sys.executable, "-c", ACTIVATE, str(sock.fileno()), str(listen_pid)]
    monkeypatch.setattr(helpers, "base_command", lambda: [*wrapper, *plain()])
    return [sock.fileno()]


def test_socket_activation_serves_on_the_socket_at_fd_3(server_factory, listener, monkeypatch):
    port = listener.getsockname()[1]
    fds = activated(monkeypatch, listener)
    server = server_factory("lifecycle.procinfo", binds=[], pass_fds=fds)
    listener.close()  # the server holds the only copy now
    assert server.addresses == [f"http://127.0.0.1:{port}"]
    answer = requests.get(f"http://127.0.0.1:{port}/", timeout=10).json()
    assert server.pid in (answer["pid"], answer["ppid"])
    stopped = server.stop()
    assert stopped.code == 0, stopped.err


def test_socket_activation_variables_do_not_reach_the_app(server_factory, listener, monkeypatch):
    port = listener.getsockname()[1]
    server = server_factory(
        "lifecycle.procinfo", binds=[], pass_fds=activated(monkeypatch, listener)
    )
    for name in ("LISTEN_FDS", "LISTEN_PID"):
        resp = requests.get(f"http://127.0.0.1:{port}/env?{name}", timeout=10)
        assert resp.json() == {"value": None}, name
    assert server.stop().code == 0


def test_listen_fds_meant_for_another_process_is_ignored(server_factory, listener, monkeypatch):
    # LISTEN_PID names the test's own pid: the server must not take fd 3, and binds --bind
    fds = activated(monkeypatch, listener, listen_pid=os.getpid())
    server = server_factory("lifecycle.procinfo", pass_fds=fds)
    assert server.port != listener.getsockname()[1]
    assert requests.get(server.url + "/", timeout=10).status_code == 200
    assert server.stop().code == 0


# -- sd_notify ----------------------------------------------------------------------------


@pytest.fixture(params=["path", "abstract"])
def notify_socket(request):
    """A bound AF_UNIX datagram socket and the NOTIFY_SOCKET value naming it."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.settimeout(15)
    with tempfile.TemporaryDirectory(prefix="fc-notify-") as directory:
        if request.param == "path":
            address = os.path.join(directory, "notify.sock")
            sock.bind(address)
        else:
            name = f"ferrocorn-test-{os.getpid()}-{id(sock)}"
            sock.bind("\0" + name)
            address = "@" + name
        yield sock, address
        sock.close()


def receive_until(sock, wanted):
    """Reads datagrams until one has the ``wanted`` line; returns every message read."""
    messages = []
    while True:
        try:
            message = sock.recv(4096).decode()
        except TimeoutError:
            raise AssertionError(f"no {wanted} notification; got {messages}") from None
        messages.append(message)
        if wanted in message.splitlines():
            return messages


def queued(sock):
    """Every datagram already waiting on ``sock``."""
    sock.setblocking(False)
    messages = []
    while True:
        try:
            messages.append(sock.recv(4096).decode())
        except BlockingIOError:
            return messages


@pytest.mark.parametrize("processes", [1, 2], ids=["one-process", "two-processes"])
def test_sd_notify_ready_once_listening(server_factory, notify_socket, processes):
    # READY=1 must not come before the server takes connections: a request made as soon as it
    # arrives (to a port chosen here, not read from the log) is answered. With worker
    # processes, only the main process speaks to systemd, once a worker serves.
    sock, address = notify_socket
    port = free_port()
    server = server_factory(
        "lifecycle.procinfo",
        [*processes_args(processes)] if processes > 1 else [],
        binds=[f"127.0.0.1:{port}"],
        env={"NOTIFY_SOCKET": address},
        wait=False,
    )
    messages = receive_until(sock, "READY=1")
    assert requests.get(f"http://127.0.0.1:{port}/", timeout=10).status_code == 200
    server.wait_listening()
    assert server.stop().code == 0
    messages += queued(sock)
    ready = [m for m in messages if "READY=1" in m.splitlines()]
    assert len(ready) == 1, messages


@differs_on_gunicorn("gunicorn sends READY=1 only, nothing when it stops")
def test_sd_notify_stopping_on_sigterm(server_factory, notify_socket):
    sock, address = notify_socket
    server = server_factory("lifecycle.procinfo", env={"NOTIFY_SOCKET": address})
    receive_until(sock, "READY=1")
    server.send_signal(signal.SIGTERM)
    assert server.wait(20).code == 0
    # the server exited: whatever it sent is queued already
    messages = queued(sock)
    assert any("STOPPING=1" in m.splitlines() for m in messages), messages
    assert not any("READY=1" in m.splitlines() for m in messages), messages
