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
        return [a for a in self.addresses if a.startswith(("http://", "https://"))]

    @property
    def host(self):
        return re.match(r"https?://(\[.*\]|[^:]+):(\d+)$", self.tcp_addresses[0]).group(1)

    @property
    def port(self):
        return int(re.match(r"https?://(\[.*\]|[^:]+):(\d+)$", self.tcp_addresses[0]).group(2))

    @property
    def url(self):
        scheme = self.tcp_addresses[0].split(":", 1)[0]
        return f"{scheme}://{self.host}:{self.port}"

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


# -----------------------------------------------------------------------------
# load and processes (the lifecycle tests)


@dataclass
class Outcome:
    """One request of a ``Load`` client.

    ``error`` says what went wrong, as far as a client can tell:

    * ``None``: a complete response arrived (``status`` and ``body`` hold it);
    * ``"refused"``: the connection was refused (nothing listens any more);
    * ``"no-response"``: the request was written, or writing it failed, and the connection
      closed or was reset before a single byte of a response came back;
    * ``"other"``: anything else (a timeout, a partial response, a reset mid-response).
    """

    client: int
    started: float
    reused: bool
    sent: float = None
    finished: float = None
    status: int = None
    headers: list = field(default_factory=list)
    body: bytes = b""
    error: str = None
    detail: str = ""
    # Sent again on a new connection after a reused one closed before any response byte.
    retried: bool = False

    @property
    def ok(self):
        return self.error is None and self.status == 200

    def header(self, name):
        return next((v for k, v in self.headers if k.lower() == name.lower()), None)

    def json(self):
        import json

        return json.loads(self.body)


class Load:
    """``clients`` threads sending ``GET path`` to a server in a loop, from construction until
    ``stop()`` (or until ``total`` requests were sent), each recording an ``Outcome``.

    With ``keep_alive`` a client keeps its connection while the server keeps it open (and opens
    a new one after a ``Connection: close`` or an error); without, it opens a new connection per
    request and sends ``Connection: close``. With ``retry_reused`` a request whose reused
    connection closes before any response byte is sent once more on a new connection, as
    browsers (and urllib3) do for an idempotent request; the outcome says ``retried``. ``pause`` seconds between two requests of a client
    keep the load modest.
    """

    def __init__(
        self,
        port,
        path="/",
        clients=8,
        keep_alive=False,
        pause=0.002,
        total=None,
        host="127.0.0.1",
        timeout=15.0,
        retry_reused=False,
    ):
        self.retry_reused = retry_reused
        self.port = port
        self.host = host
        self.path = path
        self.keep_alive = keep_alive
        self.pause = pause
        self.timeout = timeout
        self.total = total
        self.outcomes = []
        self._claimed = 0
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._client, args=(i,), daemon=True) for i in range(clients)
        ]
        for t in self._threads:
            t.start()

    # -- clients --------------------------------------------------------------

    def _claim(self):
        with self._cond:
            if self.total is not None and self._claimed >= self.total:
                return False
            self._claimed += 1
            return True

    def _record(self, outcome):
        outcome.finished = time.monotonic()
        with self._cond:
            self.outcomes.append(outcome)
            self._cond.notify_all()

    def _client(self, index):
        conn = None
        while not self._stop.is_set() and self._claim():
            out, conn = self._request(index, conn)
            if out.error == "no-response" and out.reused and self.retry_reused:
                first = out
                out, conn = self._request(index, None)
                out.retried, out.started = True, first.started
            self._record(out)
            if self.pause:
                time.sleep(self.pause)
        if conn is not None:
            conn.close()

    def _request(self, index, conn):
        """One request on ``conn`` (or a new connection): the outcome, and the connection to
        use next (``None`` once it closed)."""
        out = Outcome(client=index, started=time.monotonic(), reused=conn is not None)
        try:
            if conn is None:
                conn = RawConnection(self.port, host=self.host, timeout=self.timeout)
            headers = [] if self.keep_alive else [("Connection", "close")]
            try:
                conn.send(conn.build("GET", self.path, headers))
                out.sent = time.monotonic()
                first = conn.file.peek(1)
            except (ConnectionResetError, BrokenPipeError) as e:
                out.error, out.detail = "no-response", repr(e)
            else:
                if not first:
                    out.error, out.detail = "no-response", "closed before any response byte"
                else:
                    resp = conn.read_response()
                    out.status, out.headers, out.body = resp.status, resp.headers, resp.body
                    if not resp.complete:
                        out.error, out.detail = "other", "incomplete body"
                    elif (resp.header("Connection") or "").lower() == "close":
                        conn.close()
                        conn = None
        except ConnectionRefusedError as e:
            out.error, out.detail = "refused", repr(e)
        except (OSError, ValueError) as e:  # timeouts, resets mid-response, bad framing
            out.error, out.detail = "other", repr(e)
        if (out.error or not self.keep_alive) and conn is not None:
            conn.close()
            conn = None
        return out, conn

    # -- results --------------------------------------------------------------

    def mark(self):
        """Index of the next outcome, for ``since=``."""
        with self._cond:
            return len(self.outcomes)

    def wait_until(self, predicate, timeout=15.0, what="the load condition"):
        """Waits until ``predicate(outcomes)`` is true (checked as outcomes come in)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not predicate(self.outcomes):
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not any(t.is_alive() for t in self._threads):
                    raise AssertionError(
                        f"{what}: not reached in {timeout} s; {self.summary(self.outcomes)}"
                    )
                self._cond.wait(min(remaining, 0.5))

    def wait_for(self, predicate, timeout=15.0, since=0, what="a matching response"):
        """Waits for an outcome (from index ``since``) that ``predicate`` accepts; returns it."""
        found = []

        def check(outcomes):
            found.extend(o for o in outcomes[since:] if predicate(o))
            return bool(found)

        self.wait_until(check, timeout, what)
        return found[0]

    def wait_count(self, count, timeout=15.0, since=0):
        """Waits until ``count`` more outcomes (from index ``since``) were recorded."""
        self.wait_until(
            lambda outcomes: len(outcomes) - since >= count, timeout, f"{count} requests"
        )

    def stop(self, timeout=30.0):
        """Stops the clients (each finishes its request) and returns every outcome."""
        self._stop.set()
        for t in self._threads:
            t.join(timeout)
        assert not any(t.is_alive() for t in self._threads), "a load client did not stop"
        with self._cond:
            return list(self.outcomes)

    def join(self, timeout=60.0):
        """Waits until ``total`` requests were made; returns every outcome."""
        for t in self._threads:
            t.join(timeout)
        return self.stop()

    @staticmethod
    def summary(outcomes):
        """``N requests: {(status, error): count}`` plus the first few failures."""
        counts = {}
        for o in outcomes:
            counts[(o.status, o.error)] = counts.get((o.status, o.error), 0) + 1
        failed = [o for o in outcomes if not o.ok][:5]
        return f"{len(outcomes)} requests: {counts}; first failures: {failed}"


def processes_args(count):
    """Flags for ``count`` worker processes: ferrocorn's ``--processes`` (its workers are
    threads), gunicorn's ``--workers``."""
    return ["--workers" if IS_GUNICORN else "--processes", str(count)]


def proc_stat(pid):
    """``(state, ppid)`` from /proc/PID/stat, or None when there is no such process."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = text.rsplit(")", 1)[1].split()
    return fields[0], int(fields[1])


def is_running(pid):
    """True while the process exists and is not a zombie."""
    stat = proc_stat(pid)
    return stat is not None and stat[0] not in ("Z", "X")


def descendants(pid):
    """The pids of every live descendant of ``pid``."""
    children = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            stat = proc_stat(entry.name)
            if stat is not None and stat[0] not in ("Z", "X"):
                children.setdefault(stat[1], []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def thread_names(pid):
    """The names (comm) of the threads of ``pid`` and of its descendants."""
    names = []
    for p in [pid, *descendants(pid)]:
        for comm in Path(f"/proc/{p}/task").glob("*/comm"):
            try:
                names.append(comm.read_text().strip())
            except (FileNotFoundError, ProcessLookupError):
                pass  # the thread exited meanwhile
    return names


def poll_until(check, timeout=15.0, interval=0.05, what="the condition"):
    """Calls ``check()`` until it returns something true, for state only readable by polling
    (/proc, files); returns that value. Fails with the last value after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not reached in {timeout} s (last: {value!r})")
        time.sleep(interval)


def booted_pids(server, count, since=0, timeout=30.0):
    """The pids of the next ``count`` ``Booting worker with pid: N`` lines (from ``since``)."""
    pids = []
    index = since
    deadline = time.monotonic() + timeout
    while len(pids) < count:
        m, index = server._wait_line(
            r"Booting worker with pid: (\d+)",
            max(0.0, deadline - time.monotonic()),
            index,
            "err",
        )
        pids.append(int(m.group(1)))
    return pids


class PatientLogFifo(LogFifo):
    """A ``LogFifo`` that outlasts a writer opening and closing the FIFO before the server logs
    to it (gunicorn opens its error log once to check that it is writable, which is an EOF to
    the reader): it opens the FIFO again after an EOF until a ``Listening at:`` line came.
    After that, an EOF means that every process of the server let go of the FIFO."""

    def _read(self):
        while True:
            with open(self.path, encoding="utf-8", errors="replace") as f:
                for line in f:
                    self.lines.append(line.rstrip("\n"))
                    if "Listening at:" in line:
                        self._listening.set()
            if self._listening.is_set():
                return
