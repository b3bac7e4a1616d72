"""``--metrics-bind``: Prometheus text scraped and parsed with ``prometheus_client``'s own
parser after real requests, liveness and readiness answers, the pool's gauges seen from a
concurrent scrape, scrapes answered while the pool is saturated, restarts, and worker
processes summed by their supervisor. Also ``--access-log-json`` and JSON-shaped
``--access-logformat`` lines parsed with ``json.loads``.
"""

import http.client
import json
import os
import signal
import socket
import threading
import time
import urllib.error
import urllib.request

import pytest
from helpers import IS_GUNICORN, differs_on_gunicorn
from prometheus_client.parser import text_string_to_metric_families

ferrocorn_only = pytest.mark.skipif(IS_GUNICORN, reason="--metrics-bind is ferrocorn's")

METRICS_RE = r"Serving metrics at: (\S+) \("


def start(server_factory, app="wsgi_apps", args=(), **kwargs):
    server = server_factory(app, ["--metrics-bind", "127.0.0.1:0", *args], **kwargs)
    server.metrics_url = server.wait_for_log(METRICS_RE).group(1)
    return server


def fetch(server, path):
    """(status, body) of GET ``path`` on the metrics bind."""
    try:
        with urllib.request.urlopen(server.metrics_url + path, timeout=5) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as err:
        with err:
            return err.code, err.read().decode()


def get(url):
    """The status of GET ``url``, its body read."""
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:
            resp.read()
            return resp.status
    except urllib.error.HTTPError as err:
        with err:
            return err.code


def scrape(server):
    """Every sample: {(name, frozenset(labels)): value}."""
    with urllib.request.urlopen(server.metrics_url + "/metrics", timeout=5) as resp:
        assert resp.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        text = resp.read().decode()
    samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            samples[(s.name, frozenset(s.labels.items()))] = s.value
    return samples


def value(samples, name, **labels):
    return samples.get((name, frozenset(labels.items())), 0)


def eventually(server, check, timeout=10.0):
    """Scrapes until ``check(samples)`` holds (a request is counted when its body has been
    handed to the connection, a moment after the client may have read it)."""
    deadline = time.monotonic() + timeout
    while True:
        samples = scrape(server)
        if check(samples):
            return samples
        assert time.monotonic() < deadline, f"never held; last scrape: {samples}"
        time.sleep(0.02)


def test_counts_bytes_and_histogram_match_what_was_sent(server_factory):
    if IS_GUNICORN:
        pytest.skip("--metrics-bind is ferrocorn's")
    server = start(server_factory)
    conn = http.client.HTTPConnection(server.host, server.port, timeout=10)
    received = 0
    statuses = []
    upload = b"x" * 1000
    for method, path, body in [
        ("GET", "/fixed", None),
        ("GET", "/status?code=404&body=nope", None),
        ("POST", "/echo", upload),
        ("GET", "/raise-before", None),
        ("GET", "/stream?n=3", None),
        ("GET", "/fixed", None),
    ]:
        conn.request(method, path, body=body)
        resp = conn.getresponse()
        received += len(resp.read())
        statuses.append(resp.status)
    conn.close()
    assert statuses == [200, 404, 200, 500, 200, 200]

    s = eventually(
        server,
        lambda s: (
            value(s, "ferrocorn_request_duration_seconds_count") == 6
            and value(s, "ferrocorn_requests_in_flight") == 0
        ),
    )
    assert value(s, "ferrocorn_requests_total", code="200", **{"class": "2xx"}) == 4
    assert value(s, "ferrocorn_requests_total", code="404", **{"class": "4xx"}) == 1
    assert value(s, "ferrocorn_requests_total", code="500", **{"class": "5xx"}) == 1
    assert value(s, "ferrocorn_response_body_bytes_total") == received
    assert value(s, "ferrocorn_request_body_bytes_total") == len(upload)
    assert value(s, "ferrocorn_request_duration_seconds_bucket", le="+Inf") == 6
    assert value(s, "ferrocorn_request_duration_seconds_sum") > 0
    # One keep-alive connection; scrapes use their own listener and are not counted.
    assert value(s, "ferrocorn_connections_accepted_total") == 1
    assert value(s, "ferrocorn_pool_threads") == 1
    assert value(s, "ferrocorn_worker_processes") == 1
    assert value(s, "ferrocorn_gil_waits_total") >= 1
    buckets = sorted(
        (float(dict(labels)["le"]), v)
        for (name, labels), v in s.items()
        if name == "ferrocorn_request_duration_seconds_bucket"
    )
    assert [v for _, v in buckets] == sorted(v for _, v in buckets), "cumulative"
    eventually(server, lambda s: value(s, "ferrocorn_connections_open") == 0)
    server.stop()


class Gates:
    """FIFOs that ``/block?gate=`` requests wait on, opened for writing (which lets the
    request go) from a thread each, so releasing never waits for the server."""

    def __init__(self, tmp_path):
        self.dir = tmp_path
        self.threads = []

    def path(self, name):
        p = self.dir / name
        if not p.exists():
            os.mkfifo(p)
        return p

    def release(self, name):
        def opener():
            with open(self.path(name), "wb"):
                pass

        t = threading.Thread(target=opener, daemon=True)
        t.start()
        self.threads.append(t)

    def join(self):
        for t in self.threads:
            t.join(10)


def blocked(server, gates, name):
    """A connection with a ``/block`` request sent on it."""
    s = socket.create_connection((server.host, server.port), timeout=10)
    s.sendall(f"GET /block?gate={gates.path(name)} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    return s


def read_until(sock, marker):
    data = b""
    while marker not in data:
        chunk = sock.recv(4096)
        assert chunk, data
        data += chunk
    return data


@ferrocorn_only
def test_in_flight_and_busy_seen_from_a_concurrent_scrape(server_factory, tmp_path):
    gates = Gates(tmp_path)
    server = start(server_factory, "metrics_app", ["--threads", "2"])
    sock = blocked(server, gates, "g")
    read_until(sock, b"started")
    # On a loaded machine the second pool thread may still be starting when the first serves.
    s = eventually(server, lambda s: value(s, "ferrocorn_pool_threads_idle") == 1)
    assert value(s, "ferrocorn_requests_in_flight") == 1
    assert value(s, "ferrocorn_pool_threads_busy") == 1
    assert value(s, "ferrocorn_connections_open") == 1
    gates.release("g")
    read_until(sock, b"released")
    s = eventually(server, lambda s: value(s, "ferrocorn_requests_in_flight") == 0)
    assert value(s, "ferrocorn_pool_threads_busy") == 0
    sock.close()
    gates.join()
    server.stop()


@ferrocorn_only
def test_scrapes_answer_while_the_pool_is_saturated(server_factory, tmp_path):
    gates = Gates(tmp_path)
    args = ["--threads", "1", "--worker-connections", "4"]
    server = start(server_factory, "metrics_app", args)
    socks = [blocked(server, gates, "g0")]
    read_until(socks[0], b"started")
    socks += [blocked(server, gates, f"g{i}") for i in range(1, 4)]
    # The one thread is held, three requests wait for it and the connection cap is reached.
    s = eventually(server, lambda s: value(s, "ferrocorn_pool_queue_depth") == 3)
    assert value(s, "ferrocorn_pool_threads_busy") == 1
    assert value(s, "ferrocorn_pool_threads_idle") == 0
    assert value(s, "ferrocorn_requests_in_flight") == 4
    assert fetch(server, "/health") == (200, "ok\n")
    assert fetch(server, "/ready") == (200, "ready\n")
    for i in range(4):
        gates.release(f"g{i}")
    for sock in socks:
        read_until(sock, b"released")
        sock.close()
    gates.join()
    server.stop()


@ferrocorn_only
def test_other_paths_and_methods(server_factory):
    server = start(server_factory)
    assert fetch(server, "/nope")[0] == 404
    req = urllib.request.Request(server.metrics_url + "/metrics", data=b"", method="POST")
    assert get(req) == 405
    server.stop()


@ferrocorn_only
def test_ready_follows_the_import_and_the_drain(server_factory, tmp_path):
    gate = tmp_path / "gate"
    os.mkfifo(gate)
    env = {"FERROCORN_TEST_IMPORT_GATE": str(gate)}
    server = start(server_factory, "slow_import", ["--graceful-timeout", "20"], env=env)
    # Listening, the app still importing.
    assert fetch(server, "/health") == (200, "ok\n")
    assert fetch(server, "/ready") == (503, "starting\n")
    with open(gate, "wb") as g:
        g.write(b"go")
    server.wait_for_log(r"Booting worker pool")
    deadline = time.monotonic() + 10
    while fetch(server, "/ready")[0] != 200:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    assert fetch(server, "/ready") == (200, "ready\n")
    server.stop()


@ferrocorn_only
def test_ready_says_draining_after_sigterm(server_factory, tmp_path):
    gates = Gates(tmp_path)
    server = start(server_factory, "metrics_app", ["--graceful-timeout", "20"])
    sock = blocked(server, gates, "drain")
    read_until(sock, b"started")
    assert fetch(server, "/ready")[0] == 200
    server.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + 10
    while fetch(server, "/ready")[0] != 503:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    assert fetch(server, "/ready") == (503, "draining\n")
    assert fetch(server, "/health") == (200, "ok\n")
    # The request in flight is still counted, and finishes.
    assert value(scrape(server), "ferrocorn_requests_in_flight") == 1
    gates.release("drain")
    read_until(sock, b"released")
    sock.close()
    gates.join()
    assert server.wait(30).code == 0


@ferrocorn_only
def test_thread_restarts_are_counted(server_factory):
    server = start(server_factory, args=["--threads", "1", "--max-requests", "2"])
    for _ in range(5):
        assert get(server.url + "/fixed") == 200
    s = eventually(server, lambda s: value(s, "ferrocorn_thread_restarts_total") >= 2)
    assert value(s, "ferrocorn_thread_restarts_total") == 2
    assert value(s, "ferrocorn_worker_restarts_total") == 0
    server.stop()


@ferrocorn_only
def test_worker_processes_are_summed_by_the_supervisor(server_factory):
    server = start(server_factory, args=["--processes", "2", "--threads", "3"])
    deadline = time.monotonic() + 20
    while fetch(server, "/ready")[0] != 200:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    pids = set()
    for _ in range(20):
        conn = http.client.HTTPConnection(server.host, server.port, timeout=10)
        conn.request("GET", "/echo")
        pids.add(json.loads(conn.getresponse().read())["pid"])
        conn.close()
    # Workers report once a second; the sum catches up.
    s = eventually(
        server,
        lambda s: (
            value(s, "ferrocorn_requests_total", code="200", **{"class": "2xx"}) == 20
            and value(s, "ferrocorn_worker_processes") == 2
        ),
    )
    assert value(s, "ferrocorn_pool_threads") == 6
    assert value(s, "ferrocorn_connections_accepted_total") == 20
    assert value(s, "ferrocorn_request_duration_seconds_count") == 20
    server.stop()


@ferrocorn_only
def test_counts_outlive_a_recycled_worker_process(server_factory):
    args = ["--processes", "2", "--max-requests", "3", "--max-requests-jitter", "0"]
    server = start(server_factory, args=args)
    deadline = time.monotonic() + 20
    while fetch(server, "/ready")[0] != 200:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    for _ in range(12):
        assert get(server.url + "/fixed") == 200
    s = eventually(
        server,
        lambda s: (
            value(s, "ferrocorn_worker_restarts_total") >= 1
            and value(s, "ferrocorn_requests_total", code="200", **{"class": "2xx"}) == 12
        ),
        timeout=30,
    )
    assert value(s, "ferrocorn_request_duration_seconds_count") == 12
    server.stop()


# ---------------------------------------------------------------------------------------------
# JSON access logs

NASTY_TARGET = b'/a"b\\c?q="x"'
NASTY_HEADERS = b'User-Agent: say "hi"\\o/\tok\r\nReferer: caf\xc3\xa9 \xff\xfe\r\n'


def nasty_request(server):
    with socket.create_connection((server.host, server.port), timeout=10) as s:
        s.sendall(
            b"GET "
            + NASTY_TARGET
            + b" HTTP/1.1\r\nHost: x\r\n"
            + NASTY_HEADERS
            + b"Connection: close\r\n\r\n"
        )
        data = b""
        while chunk := s.recv(4096):
            data += chunk
    assert data.startswith(b"HTTP/1.1 200")


def access_lines(server, n):
    deadline = time.monotonic() + 10
    while True:
        lines = [line for line in server.out_lines if line.startswith("{")]
        if len(lines) >= n:
            return [json.loads(line) for line in lines]
        assert time.monotonic() < deadline, server.out_text()
        time.sleep(0.02)


@ferrocorn_only
def test_access_log_json_escapes_everything(server_factory):
    server = server_factory("wsgi_apps", ["--access-logfile", "-", "--access-log-json"])
    nasty_request(server)
    assert get(server.url + "/status?code=404&body=no") == 404
    first, second = access_lines(server, 2)
    assert first["request"] == 'GET /a"b\\c?q="x" HTTP/1.1'
    assert first["method"] == "GET"
    assert first["path"] == '/a"b\\c'
    assert first["protocol"] == "HTTP/1.1"
    assert first["status"] == 200
    assert first["user_agent"] == 'say "hi"\\o/\tok'
    # Not UTF-8: read byte by byte as Latin-1, as the environ reads headers.
    assert first["referer"] == "caf\xc3\xa9 \xff\xfe"
    assert first["remote_addr"] == "127.0.0.1"
    assert first["user"] is None
    assert first["pid"] > 0
    assert isinstance(first["duration_us"], int)
    assert abs(first["duration_s"] - first["duration_us"] / 1e6) < 1e-6
    assert second["status"] == 404
    assert second["bytes"] == 2
    assert second["query"] == "code=404&body=no"
    assert second["referer"] is None
    server.stop()


@ferrocorn_only
def test_access_logformat_json_is_the_same_as_the_flag(server_factory):
    server = server_factory("wsgi_apps", ["--access-logfile", "-", "--access-logformat", "json"])
    assert get(server.url + "/fixed") == 200
    (line,) = access_lines(server, 1)
    assert line["status"] == 200
    assert line["bytes"] == len(b"fixed body in a list")
    server.stop()


JSON_SHAPED = '{"r": "%(r)s", "s": %(s)s, "a": "%(a)s", "f": "%(f)s", "b": %(B)s}'


def test_a_json_shaped_format_with_quotes_parses(server_factory):
    """How gunicorn users write JSON logs: quotes in atoms are escaped (gunicorn does it too)."""
    server = server_factory(
        "wsgi_apps", ["--access-logfile", "-", "--access-logformat", JSON_SHAPED]
    )
    with socket.create_connection((server.host, server.port), timeout=10) as s:
        s.sendall(
            b'GET /fixed HTTP/1.1\r\nHost: x\r\nUser-Agent: a "quoted" agent\r\n'
            b"Connection: close\r\n\r\n"
        )
        while s.recv(4096):
            pass
    (line,) = access_lines(server, 1)
    assert line == {
        "r": "GET /fixed HTTP/1.1",
        "s": 200,
        "a": 'a "quoted" agent',
        "f": "-",
        "b": len(b"fixed body in a list"),
    }
    server.stop()


@differs_on_gunicorn("it escapes only quotes, so backslashes and tabs break the JSON")
def test_a_json_shaped_format_escapes_backslashes_and_controls(server_factory):
    server = server_factory(
        "wsgi_apps", ["--access-logfile", "-", "--access-logformat", JSON_SHAPED]
    )
    nasty_request(server)
    (line,) = access_lines(server, 1)
    assert line["r"] == 'GET /a"b\\c?q="x" HTTP/1.1'
    assert line["a"] == 'say "hi"\\o/\tok'
    assert line["f"] == "caf\xc3\xa9 \xff\xfe"
    server.stop()
