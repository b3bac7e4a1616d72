"""Shared helpers of the ferrocorn test suite.

* ``Server`` starts the server under test as a subprocess and waits for its
  ``Listening at:`` lines (a reader thread and a deadline, no polling), keeps
  every stdout/stderr line, and stops it with a signal.
* ``RawConnection`` is a tiny HTTP/1.1 client over a plain socket, for what
  http.client hides: pipelining, interim 100 responses, chunk boundaries,
  incomplete bodies and connections the server closes.
* ``differs_on_gunicorn`` marks a test whose expectation is ferrocorn's own
  (a message, a header) when the suite is pointed at gunicorn with
  ``FERROCORN_TEST_SERVER=gunicorn`` to check the tests themselves.
"""

import importlib.util
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

SERVER_KIND = os.environ.get("FERROCORN_TEST_SERVER", "ferrocorn")
IS_GUNICORN = SERVER_KIND == "gunicorn"
REPO = Path(__file__).resolve().parents[2]
APPS_DIR = REPO / "tests" / "apps"
DJANGO_DIR = APPS_DIR / "djangoproject"
STARTUP_TIMEOUT = 30.0
LISTENING_RE = re.compile(r"Listening at: (\S+)")


def differs_on_gunicorn(reason):
    """Expect this test to fail against gunicorn (strictly), for ``reason``."""
    return pytest.mark.xfail(IS_GUNICORN, reason=f"gunicorn differs: {reason}", strict=True)


def base_command():
    """The argv prefix that runs the server under test."""
    if IS_GUNICORN:
        exe = shutil.which("gunicorn")
        cmd = [exe] if exe else [sys.executable, "-m", "gunicorn"]
        # The sync worker has no keep-alive; gthread is what ferrocorn mirrors.
        return cmd + ["--worker-class", "gthread", "--log-level", "info", "--no-control-socket"]
    exe = shutil.which("ferrocorn")
    if exe:
        return [exe]
    if importlib.util.find_spec("ferrocorn") is not None:
        return [sys.executable, "-m", "ferrocorn"]
    pytest.fail(
        "ferrocorn is not installed: no `ferrocorn` on PATH and no `ferrocorn` module",
        pytrace=False,
    )


def server_env(extra=None):
    env = dict(os.environ)
    env.pop("GUNICORN_CMD_ARGS", None)
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    if extra:
        env.update(extra)
    return env


def run_cli(args, timeout=30, cwd=None, env=None):
    """Runs the server command to completion (for flags and startup errors)."""
    return subprocess.run(
        base_command() + list(args),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        check=False,
        text=True,
        timeout=timeout,
        cwd=cwd or REPO,
        env=server_env(env),
    )


def pattern_bytes(size):
    """The deterministic content that the test apps generate (same function)."""
    block = bytes(range(256))
    return (block * (size // 256 + 1))[:size]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Stopped:
    code: int
    out: str
    err: str
    seconds: float


class _Reader(threading.Thread):
    """Collects the lines of one pipe and wakes whoever waits for a line."""

    def __init__(self, pipe, cond):
        super().__init__(daemon=True)
        self.pipe = pipe
        self.cond = cond
        self.lines = []
        self.eof = False

    def run(self):
        try:
            for raw in iter(self.pipe.readline, b""):
                with self.cond:
                    self.lines.append(raw.decode("utf-8", "replace").rstrip("\r\n"))
                    self.cond.notify_all()
        finally:
            self.pipe.close()
            with self.cond:
                self.eof = True
                self.cond.notify_all()


class Server:
    """The server under test, running ``APP`` with ``args`` as a subprocess.

    ``binds`` defaults to ``["127.0.0.1:0"]``; the constructor returns once a
    ``Listening at:`` address was logged for every bind.
    """

    def __init__(
        self, app, args=(), binds=None, env=None, chdir=APPS_DIR, pass_fds=(), wait=True, cwd=REPO
    ):
        self.binds = ["127.0.0.1:0"] if binds is None else list(binds)
        cmd = base_command()
        if chdir is not None:
            cmd += ["--chdir", str(chdir)]
        for b in self.binds:
            cmd += ["--bind", b]
        cmd += [str(a) for a in args] + ([app] if app else [])
        self.cmd = cmd
        self.started = time.monotonic()
        self.proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=cwd,
            env=server_env(env),
            pass_fds=pass_fds,
            start_new_session=True,
        )
        self._cond = threading.Condition()
        self._out = _Reader(self.proc.stdout, self._cond)
        self._err = _Reader(self.proc.stderr, self._cond)
        self._out.start()
        self._err.start()
        self.addresses = []
        if wait:
            self.wait_listening()

    # -- output ---------------------------------------------------------------

    @property
    def err_lines(self):
        with self._cond:
            return list(self._err.lines)

    @property
    def out_lines(self):
        with self._cond:
            return list(self._out.lines)

    def err_text(self, since=0):
        return "\n".join(self.err_lines[since:])

    def out_text(self, since=0):
        return "\n".join(self.out_lines[since:])

    def log_mark(self):
        """Index of the next stderr line, for ``wait_for_log(since=...)``."""
        return len(self.err_lines)

    def _describe(self):
        return (
            f"command: {self.cmd}\nexit code: {self.proc.poll()}\n"
            f"--- stderr ---\n{self.err_text()}\n--- stdout ---\n{self.out_text()}"
        )

    def _wait_line(self, pattern, timeout, since, stream):
        regex = re.compile(pattern)
        reader = self._err if stream == "err" else self._out
        deadline = time.monotonic() + timeout
        index = since
        with self._cond:
            while True:
                while index < len(reader.lines):
                    m = regex.search(reader.lines[index])
                    index += 1
                    if m:
                        return m, index
                if reader.eof:
                    raise AssertionError(
                        f"{stream} closed before a line matched {pattern!r}\n{self._describe()}"
                    )
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(
                        f"no {stream} line matched {pattern!r} in {timeout} s\n{self._describe()}"
                    )
                self._cond.wait(remaining)

    def wait_for_line(self, pattern, timeout=10.0, since=0, stream="err"):
        """Waits until a line of ``stream`` matches ``pattern``; returns the match."""
        return self._wait_line(pattern, timeout, since, stream)[0]

    def wait_for_log(self, pattern, timeout=10.0, since=0):
        """Waits for a stderr (error log) line matching ``pattern``."""
        return self._wait_line(pattern, timeout, since, "err")[0]

    def wait_listening(self):
        """Waits until a ``Listening at:`` address was logged for every bind."""
        index = 0
        deadline = time.monotonic() + STARTUP_TIMEOUT
        # With no --bind the address comes from a config file or PORT: one listener.
        while len(self.addresses) < max(1, len(self.binds)):
            m, index = self._wait_line(
                LISTENING_RE.pattern, max(0.0, deadline - time.monotonic()), index, "err"
            )
            # gunicorn joins several listeners with commas on one line
            self.addresses.extend(a for a in m.group(1).split(",") if a)

    @property
    def tcp_addresses(self):
        return [a for a in self.addresses if a.startswith("http://")]

    @property
    def host(self):
        return re.match(r"http://(\[.*\]|[^:]+):(\d+)$", self.tcp_addresses[0]).group(1)

    @property
    def port(self):
        return int(re.match(r"http://(\[.*\]|[^:]+):(\d+)$", self.tcp_addresses[0]).group(2))

    @property
    def url(self):
        return f"http://{self.host}:{self.port}"

    @property
    def pid(self):
        return self.proc.pid

    # -- stopping -------------------------------------------------------------

    def send_signal(self, sig):
        self.proc.send_signal(sig)

    def wait(self, timeout):
        """Waits for the exit; returns a Stopped with everything it printed."""
        code = self.proc.wait(timeout=timeout)
        self._out.join(5)
        self._err.join(5)
        return Stopped(code, self.out_text(), self.err_text(), time.monotonic() - self.started)

    def stop(self, sig=signal.SIGTERM, timeout=40.0):
        """Sends ``sig`` and waits for the exit."""
        if self.proc.poll() is None:
            self.send_signal(sig)
        return self.wait(timeout)

    def kill(self):
        """Kills the server's whole session (gunicorn workers too)."""
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        else:
            # the master is gone; make sure no worker of it survives
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        self.proc.wait(10)
        self._out.join(5)
        self._err.join(5)


class LogFifo:
    """A FIFO to pass as ``--error-logfile``, read as the server writes it (no polling)."""

    def __init__(self, path):
        os.mkfifo(path)
        self.path = path
        self.lines = []
        self._listening = threading.Event()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self):
        with open(self.path, encoding="utf-8", errors="replace") as f:
            for line in f:
                self.lines.append(line.rstrip("\n"))
                if "Listening at:" in line:
                    self._listening.set()

    def wait_port(self, server, timeout=30):
        """The port of the first ``Listening at:`` line written to the FIFO."""
        assert self._listening.wait(timeout), f"log: {self.lines}\nstderr: {server.err_text()}"
        found = re.search(r"Listening at: http://127\.0\.0\.1:(\d+)", "\n".join(self.lines))
        return int(found.group(1))

    def join(self, timeout=10):
        """Waits until the server closed the FIFO."""
        self._reader.join(timeout)


class ServerFactory:
    """Starts servers and kills every one of them on ``close()``."""

    def __init__(self):
        self.servers = []

    def __call__(self, app="wsgi_apps", args=(), **kwargs):
        server = Server(app, args, **kwargs)
        self.servers.append(server)
        return server

    def close(self):
        for server in self.servers:
            server.kill()


# -----------------------------------------------------------------------------
# raw HTTP


@dataclass
class RawResponse:
    version: str
    status: int
    reason: str
    headers: list = field(default_factory=list)
    body: bytes = b""
    chunks: list = field(default_factory=list)
    complete: bool = True

    def header(self, name):
        values = self.header_all(name)
        return values[0] if values else None

    def header_all(self, name):
        return [v for k, v in self.headers if k.lower() == name.lower()]


class RawConnection:
    """An HTTP/1.1 connection over a plain socket (TCP or unix)."""

    def __init__(self, port=None, host="127.0.0.1", unix_path=None, timeout=10.0):
        if unix_path is not None:
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.sock.settimeout(timeout)
            self.sock.connect(unix_path)
            self.host_header = "localhost"
        else:
            self.sock = socket.create_connection((host, port), timeout=timeout)
            self.host_header = f"{host}:{port}"
        self.file = self.sock.makefile("rb")

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        self.file.close()
        self.sock.close()

    def settimeout(self, timeout):
        self.sock.settimeout(timeout)

    def send(self, data):
        self.sock.sendall(data)

    def build(self, method, target, headers=(), body=b"", version="HTTP/1.1", host=True):
        lines = [f"{method} {target} {version}"]
        if host:
            lines.append(f"Host: {self.host_header}")
        lines += [f"{k}: {v}" for k, v in headers]
        if body and not any(
            k.lower() in ("content-length", "transfer-encoding") for k, _ in headers
        ):
            lines.append(f"Content-Length: {len(body)}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body

    def request(self, method, target, headers=(), body=b"", version="HTTP/1.1"):
        """Sends one request and reads its (final) response."""
        self.send(self.build(method, target, headers, body, version))
        return self.read_response(method)

    def read_response(self, method="GET"):
        """Reads one response; an interim 1xx response is returned as it is."""
        status_line = self.file.readline()
        if not status_line:
            raise ConnectionError("connection closed before a status line")
        version, status, reason = (
            status_line.decode("latin-1").rstrip("\r\n").split(" ", 2) + [""]
        )[:3]
        resp = RawResponse(version, int(status), reason)
        while True:
            line = self.file.readline()
            if not line:
                raise ConnectionError("connection closed inside the headers")
            if line in (b"\r\n", b"\n"):
                break
            name, _, value = line.decode("latin-1").partition(":")
            resp.headers.append((name.strip(), value.strip()))
        if method == "HEAD" or resp.status in (204, 304) or 100 <= resp.status < 200:
            return resp
        te = (resp.header("Transfer-Encoding") or "").lower()
        length = resp.header("Content-Length")
        if "chunked" in te:
            self._read_chunked(resp)
        elif length is not None:
            resp.body = self.file.read(int(length))
            resp.complete = len(resp.body) == int(length)
        else:
            resp.body = self.file.read()
        return resp

    def _read_chunked(self, resp):
        body = []
        resp.complete = False
        while True:
            size_line = self.file.readline()
            if not size_line.endswith(b"\n"):
                break
            size = int(size_line.split(b";")[0].strip(), 16)
            if size == 0:
                while True:
                    trailer = self.file.readline()
                    if trailer in (b"\r\n", b"\n"):
                        resp.complete = True
                        break
                    if not trailer:
                        break
                break
            data = self.file.read(size)
            if len(data) < size:
                if data:
                    resp.chunks.append(data)
                    body.append(data)
                break
            resp.chunks.append(data)
            body.append(data)
            if self.file.read(2) != b"\r\n":
                break
        resp.body = b"".join(body)

    def read_chunk(self):
        """Reads one chunk of a chunked body whose headers were read with
        ``read_head``; returns b"" for the last chunk."""
        size = int(self.file.readline().split(b";")[0].strip(), 16)
        if size == 0:
            self.file.readline()
            return b""
        data = self.file.read(size)
        assert self.file.read(2) == b"\r\n"
        return data

    def read_head(self):
        """Reads only the status line and headers of a response."""
        status_line = self.file.readline()
        if not status_line:
            raise ConnectionError("connection closed before a status line")
        version, status, reason = (
            status_line.decode("latin-1").rstrip("\r\n").split(" ", 2) + [""]
        )[:3]
        resp = RawResponse(version, int(status), reason)
        while True:
            line = self.file.readline()
            if line in (b"\r\n", b"\n", b""):
                break
            name, _, value = line.decode("latin-1").partition(":")
            resp.headers.append((name.strip(), value.strip()))
        return resp

    def is_closed_by_peer(self, timeout=5.0):
        """True once the server closed the connection (EOF or reset) within
        ``timeout``; False if it is still open. Raises if data arrives."""
        self.sock.settimeout(timeout)
        try:
            data = self.sock.recv(1)
        except socket.timeout:  # TimeoutError on Python >= 3.10
            return False
        except ConnectionResetError:
            return True
        if data:
            raise AssertionError(f"unexpected data on the connection: {data!r}")
        return True
