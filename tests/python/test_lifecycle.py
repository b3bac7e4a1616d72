"""Server lifecycle: graceful SIGTERM (in-flight requests finish, idle
keep-alive connections close at once, new requests are not served), the
graceful timeout, quick SIGINT/SIGQUIT, the access log, wsgi.errors, and
binding to a unix socket or an inherited file descriptor."""

import concurrent.futures
import re
import signal
import socket
import time

import pytest
import requests
from helpers import RawConnection, differs_on_gunicorn

ACCESS_RE = re.compile(
    r"^(?P<h>\S+) (?P<l>\S+) (?P<u>\S+) \[(?P<t>\d\d/[A-Z][a-z]{2}/\d{4}:\d\d:\d\d:\d\d [+-]\d{4})\] "
    r'"(?P<r>[^"]*)" (?P<s>\d{3}) (?P<b>\S+) "(?P<f>[^"]*)" "(?P<a>[^"]*)"$'
)


def start_slow_request(pool, server, seconds):
    """Starts /slow?s= in the background; returns once the app is running it."""
    mark = server.log_mark()
    future = pool.submit(requests.get, f"{server.url}/slow?s={seconds}", timeout=30)
    server.wait_for_log(r"slow request started", since=mark)
    return future


# -- SIGTERM ------------------------------------------------------------------------------


def test_sigterm_without_requests_exits_0_with_the_shutdown_log(server_factory):
    server = server_factory("wsgi_apps")
    stopped = server.stop(signal.SIGTERM, timeout=10)
    assert stopped.code == 0, stopped.err
    assert re.search(r"\[INFO\] Handling signal: term", stopped.err), stopped.err
    assert re.search(r"\[INFO\] Shutting down: Master", stopped.err), stopped.err


def test_sigterm_lets_an_in_flight_slow_request_finish(server_factory):
    server = server_factory("wsgi_apps", ["--threads", "2", "--graceful-timeout", "20"])
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        future = start_slow_request(pool, server, 2)
        signalled = time.monotonic()
        server.send_signal(signal.SIGTERM)
        server.wait_for_log(r"Handling signal: term")
        resp = future.result()
    assert resp.status_code == 200
    assert resp.text == "slept 2.0"
    stopped = server.wait(20)
    assert stopped.code == 0
    assert time.monotonic() - signalled >= 1.5
    assert "Shutting down: Master" in stopped.err
    term = stopped.err.index("Handling signal: term")
    assert stopped.err.index("Shutting down: Master") > term


def test_sigterm_lets_an_in_flight_stream_finish(server_factory):
    server = server_factory("wsgi_apps", ["--threads", "2", "--graceful-timeout", "20"])
    with RawConnection(server.port, timeout=10) as conn:
        conn.send(conn.build("GET", "/stream?n=6&delay=0.3"))
        assert conn.read_head().status == 200
        assert conn.read_chunk() == b"chunk 0\n"
        server.send_signal(signal.SIGTERM)
        server.wait_for_log(r"Handling signal: term")
        rest = []
        while chunk := conn.read_chunk():
            rest.append(chunk)
    assert rest == [f"chunk {i}\n".encode() for i in range(1, 6)]
    stopped = server.wait(20)
    assert stopped.code == 0
    assert "Shutting down: Master" in stopped.err


def test_no_new_request_is_served_after_sigterm(server_factory):
    server = server_factory("wsgi_apps", ["--threads", "2", "--graceful-timeout", "20"])
    with RawConnection(server.port, timeout=10) as conn:
        conn.send(conn.build("GET", "/stream?n=8&delay=0.3"))
        assert conn.read_head().status == 200
        assert conn.read_chunk() == b"chunk 0\n"
        server.send_signal(signal.SIGTERM)
        server.wait_for_log(r"Handling signal: term")
        conn.read_chunk()  # the stream goes on for ~2 s more
        try:
            with RawConnection(server.port, timeout=10) as late:
                late.send(late.build("GET", "/fixed"))
                answer = late.file.readline()
        except (ConnectionRefusedError, ConnectionResetError, BrokenPipeError):
            answer = b""
        assert not answer.startswith(b"HTTP/1.1 200"), "a request was served after SIGTERM"
        while conn.read_chunk():
            pass
    assert server.wait(20).code == 0


def test_idle_keep_alive_connection_is_closed_at_once_on_sigterm(server_factory):
    server = server_factory("wsgi_apps", ["--keep-alive", "30", "--graceful-timeout", "20"])
    with RawConnection(server.port) as conn:
        assert conn.request("GET", "/fixed").status == 200
        signalled = time.monotonic()
        server.send_signal(signal.SIGTERM)
        assert conn.is_closed_by_peer(5), "idle keep-alive connection still open 5 s after SIGTERM"
    stopped = server.wait(10)
    assert stopped.code == 0
    assert time.monotonic() - signalled < 5


def test_graceful_timeout_bounds_the_shutdown(server_factory):
    server = server_factory("wsgi_apps", ["--threads", "2", "--graceful-timeout", "1"])
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        future = start_slow_request(pool, server, 15)
        signalled = time.monotonic()
        server.send_signal(signal.SIGTERM)
        server.wait(10)
        elapsed = time.monotonic() - signalled
        with pytest.raises(requests.RequestException):
            future.result()
    assert elapsed < 6, f"shutdown took {elapsed:.1f} s with --graceful-timeout 1"


# -- SIGINT / SIGQUIT ------------------------------------------------------------------------


QUICK_SIGNALS = pytest.mark.parametrize(
    "sig", [signal.SIGINT, signal.SIGQUIT], ids=["SIGINT", "SIGQUIT"]
)


@QUICK_SIGNALS
def test_quick_shutdown_signal_when_idle(server_factory, sig):
    server = server_factory("wsgi_apps")
    assert requests.get(server.url + "/fixed", timeout=10).status_code == 200
    stopped = server.stop(sig, timeout=10)
    assert stopped.code == 0, stopped.err
    assert stopped.err.count("Listening at:") == 1


@QUICK_SIGNALS
@differs_on_gunicorn("the gthread worker's exit waits for its busy threads")
def test_quick_shutdown_signal_does_not_wait_for_requests(server_factory, sig):
    server = server_factory("wsgi_apps", ["--threads", "2", "--graceful-timeout", "30"])
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        future = start_slow_request(pool, server, 15)
        signalled = time.monotonic()
        server.send_signal(sig)
        stopped = server.wait(10)
        elapsed = time.monotonic() - signalled
        with pytest.raises(requests.RequestException):
            future.result()
    assert stopped.code == 0, stopped.err
    assert elapsed < 3, f"{sig.name} took {elapsed:.1f} s"


# -- logs --------------------------------------------------------------------------------------


def test_access_log_on_stdout_has_gunicorns_format(server_factory):
    server = server_factory("wsgi_apps", ["--access-logfile", "-"])
    resp = requests.get(
        server.url + "/fixed?a=1&b=two",
        headers={"User-Agent": "test-agent/1.0", "Referer": "http://example.test/from"},
        timeout=10,
    )
    assert resp.status_code == 200
    line = server.wait_for_line(r"GET /fixed", stream="out").string
    m = ACCESS_RE.match(line)
    assert m, line
    assert m["h"] == "127.0.0.1"
    assert (m["l"], m["u"]) == ("-", "-")
    assert m["r"] == "GET /fixed?a=1&b=two HTTP/1.1"
    assert m["s"] == "200"
    assert m["b"] == str(len(b"fixed body in a list"))
    assert m["f"] == "http://example.test/from"
    assert m["a"] == "test-agent/1.0"


def test_access_log_shows_status_and_dashes(server_factory):
    server = server_factory("wsgi_apps", ["--access-logfile", "-"])
    with RawConnection(server.port) as conn:
        resp = conn.request("POST", "/raise-before", body=b"abc")
    assert resp.status == 500
    m = ACCESS_RE.match(server.wait_for_line(r"POST /raise-before", stream="out").string)
    assert m
    assert m["r"] == "POST /raise-before HTTP/1.1"
    assert m["s"] == "500"
    assert (m["f"], m["a"]) == ("-", "-")
    # nothing from the access log goes to the error log
    assert not any("POST /raise-before HTTP/1.1" in line for line in server.err_lines)


def test_access_log_to_a_file(server_factory, tmp_path):
    log = tmp_path / "access.log"
    server = server_factory("wsgi_apps", ["--access-logfile", str(log)])
    for path in ("/one", "/two"):
        assert requests.get(server.url + path, timeout=10).status_code == 200
    assert server.stop().code == 0
    lines = log.read_text().splitlines()
    assert [ACCESS_RE.match(line)["r"] for line in lines] == [
        "GET /one HTTP/1.1",
        "GET /two HTTP/1.1",
    ]


def test_no_access_log_by_default(server_factory):
    server = server_factory("wsgi_apps")
    assert requests.get(server.url + "/quiet-path", timeout=10).status_code == 200
    stopped = server.stop()
    assert "/quiet-path" not in stopped.out
    assert "/quiet-path" not in stopped.err


def test_wsgi_errors_goes_to_the_error_log(server_factory):
    server = server_factory("wsgi_apps")
    mark = server.log_mark()
    assert requests.get(server.url + "/slow?s=0", timeout=10).status_code == 200
    server.wait_for_log(r"slow request started \(0\.0 s\)", since=mark)


# -- binds -------------------------------------------------------------------------------------


def test_unix_socket_bind(server_factory, tmp_path):
    path = tmp_path / "ferrocorn.sock"
    server = server_factory("wsgi_apps", binds=[f"unix:{path}"])
    assert server.addresses == [f"unix:{path}"]
    with RawConnection(unix_path=str(path)) as conn:
        resp = conn.request("GET", "/over/unix?x=1")
        assert resp.status == 200
        assert b'"PATH_INFO": "/over/unix"' in resp.body
        again = conn.request("GET", "/fixed")
        assert again.body == b"fixed body in a list"
    assert server.stop().code == 0


def test_unix_socket_path_can_be_reused_after_a_stop(server_factory, tmp_path):
    path = tmp_path / "reuse.sock"
    first = server_factory("wsgi_apps", binds=[f"unix:{path}"])
    first.kill()  # no clean-up: the socket file may be left behind
    second = server_factory("wsgi_apps", binds=[f"unix:{path}"])
    with RawConnection(unix_path=str(path)) as conn:
        assert conn.request("GET", "/fixed").status == 200
    assert second.stop().code == 0


def test_unix_and_tcp_binds_together(server_factory, tmp_path):
    path = tmp_path / "both.sock"
    server = server_factory("wsgi_apps", binds=[f"unix:{path}", "127.0.0.1:0"])
    assert f"unix:{path}" in server.addresses
    assert requests.get(server.url + "/fixed", timeout=10).status_code == 200
    with RawConnection(unix_path=str(path)) as conn:
        assert conn.request("GET", "/fixed").status == 200


def test_fd_bind_uses_an_inherited_socket(server_factory):
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        port = listener.getsockname()[1]
        fd = listener.fileno()
        server = server_factory("wsgi_apps", binds=[f"fd://{fd}"], pass_fds=[fd])
    assert server.addresses == [f"http://127.0.0.1:{port}"]
    resp = requests.get(f"http://127.0.0.1:{port}/inherited", timeout=10)
    assert resp.status_code == 200
    assert resp.json()["environ"]["PATH_INFO"] == "/inherited"
    assert server.stop().code == 0
