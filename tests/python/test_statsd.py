"""StatsD and DogStatsD: a UDP (or Unix datagram) socket in the test receives what the server
sends, and the lines are checked against gunicorn's names and wire format (``gunicorn.requests``,
``gunicorn.request.duration``, ``gunicorn.request.status.<code>``, ``gunicorn.workers``,
``gunicorn.log.*``), with ``--statsd-prefix`` and ``--dogstatsd-tags``. The same tests pass
against gunicorn (``FERROCORN_TEST_SERVER=gunicorn``), which is what proves the names match.
"""

import http.client
import re
import socket
import time

import pytest

DURATION = re.compile(r"^(?P<prefix>.*)gunicorn\.request\.duration:\d+(\.\d+)?\|ms(?P<tags>.*)$")


class Collector:
    """A datagram socket that keeps every line it receives."""

    def __init__(self, family=socket.AF_INET, path=None):
        self.sock = socket.socket(family, socket.SOCK_DGRAM)
        if path:
            self.sock.bind(str(path))
            self.address = f"unix:{path}"
        else:
            self.sock.bind(("127.0.0.1", 0))
            self.address = f"127.0.0.1:{self.sock.getsockname()[1]}"
        self.lines = []

    def wait_for(self, predicate, timeout=10.0):
        """Receives until ``predicate(lines)`` holds; returns the lines."""
        deadline = time.monotonic() + timeout
        while not predicate(self.lines):
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"not seen in {timeout} s; got {self.lines}"
            self.sock.settimeout(remaining)
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                continue
            # Several metrics may share a datagram, one per line.
            self.lines.extend(data.decode("ascii").split("\n"))
        return self.lines

    def close(self):
        self.sock.close()


@pytest.fixture
def collector():
    c = Collector()
    yield c
    c.close()


HOOKS = """
def when_ready(server):
    server.log.error("an error line for statsd")
    server.log.warning("a warning line for statsd")
    server.log.critical("a critical line for statsd")
"""


def get(server, path):
    conn = http.client.HTTPConnection(server.host, server.port, timeout=10)
    conn.request("GET", path)
    resp = conn.getresponse()
    resp.read()
    conn.close()
    return resp.status


def test_requests_durations_statuses_and_workers(server_factory, collector):
    server = server_factory("wsgi_apps", ["--statsd-host", collector.address])
    assert get(server, "/fixed") == 200
    assert get(server, "/status?code=404") == 404
    lines = collector.wait_for(
        lambda ls: (
            ls.count("gunicorn.requests:1|c|@1.0") >= 2
            and "gunicorn.request.status.404:1|c|@1.0" in ls
        )
    )
    assert "gunicorn.request.status.200:1|c|@1.0" in lines
    assert len([line for line in lines if DURATION.match(line)]) >= 2
    # One worker (gunicorn: one process; ferrocorn: one pool thread).
    assert "gunicorn.workers:1|g" in lines
    server.stop()


def test_prefix_and_dogstatsd_tags(server_factory, collector):
    args = ["--statsd-host", collector.address, "--statsd-prefix", "shop"]
    args += ["--dogstatsd-tags", "env:test,role:web"]
    server = server_factory("wsgi_apps", args)
    assert get(server, "/status?code=201") == 201
    tags = "|#env:test,role:web"
    lines = collector.wait_for(lambda ls: f"shop.gunicorn.request.status.201:1|c|@1.0{tags}" in ls)
    assert f"shop.gunicorn.requests:1|c|@1.0{tags}" in lines
    durations = [m for m in map(DURATION.match, lines) if m]
    assert durations
    assert all(m["prefix"] == "shop." and m["tags"] == tags for m in durations)
    # Every line has the prefix and the tags.
    assert all(line.startswith("shop.gunicorn.") and line.endswith(tags) for line in lines)
    server.stop()


def test_error_log_lines_count(server_factory, collector, tmp_path):
    conf = tmp_path / "statsd.conf.py"
    conf.write_text(HOOKS)
    server = server_factory("wsgi_apps", ["-c", conf, "--statsd-host", collector.address])
    collector.wait_for(
        lambda ls: (
            {
                "gunicorn.log.error:1|c|@1.0",
                "gunicorn.log.warning:1|c|@1.0",
                "gunicorn.log.critical:1|c|@1.0",
            }
            <= set(ls)
        )
    )
    # An app that raises: gunicorn's `log.exception("Error handling request ...")`.
    assert get(server, "/raise-before") == 500
    lines = collector.wait_for(lambda ls: "gunicorn.request.status.500:1|c|@1.0" in ls)
    lines = collector.wait_for(lambda ls: "gunicorn.log.exception:1|c|@1.0" in ls)
    assert lines.count("gunicorn.log.exception:1|c|@1.0") == 1
    assert lines.count("gunicorn.log.error:1|c|@1.0") == 1
    server.stop()


def test_unix_datagram_socket(server_factory, tmp_path):
    c = Collector(socket.AF_UNIX, tmp_path / "statsd.sock")
    try:
        server = server_factory("wsgi_apps", ["--statsd-host", c.address])
        assert get(server, "/fixed") == 200
        c.wait_for(lambda ls: "gunicorn.request.status.200:1|c|@1.0" in ls)
        server.stop()
    finally:
        c.close()
