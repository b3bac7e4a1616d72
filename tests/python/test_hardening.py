"""Hostile clients and broken apps: --timeout (504, WORKER TIMEOUT with the
Python stack, RequestTimeout raised in the app, a stuck thread replaced),
--queue-size (503 with Retry-After), and --worker-connections (new clients
wait in the backlog instead of being refused)."""

import os
import resource
import selectors
import socket
import time
import urllib.error
import urllib.request

import pytest
from helpers import IS_GUNICORN, RawConnection

pytestmark = pytest.mark.skipif(IS_GUNICORN, reason="ferrocorn's own limits")


def get(url, timeout=30):
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status, resp.read(), dict(resp.headers)
    except urllib.error.HTTPError as err:
        return err.code, err.read(), dict(err.headers)


# -- --timeout -------------------------------------------------------------------------


def test_a_request_past_the_timeout_gets_504_and_a_worker_timeout_log(server_factory):
    server = server_factory("wsgi_apps", ["--timeout", "1", "--threads", "1"])
    started = time.monotonic()
    status, _, _ = get(f"{server.url}/spin?s=20")
    assert status == 504
    assert time.monotonic() - started < 10
    line = server.wait_for_log(r"WORKER TIMEOUT \(pid:\d+\) GET /spin\?s=20 ran past").string
    assert "raising RequestTimeout" in line
    # The stack of the stuck thread follows, down to the app's own line.
    server.wait_for_log(r"in spin$")
    # The exception freed the only thread: the server keeps serving at once.
    assert get(f"{server.url}/x", timeout=5)[0] == 200
    assert "Abandoned" not in server.err_text()


def test_the_app_sees_request_timeout_raised_in_its_thread(server_factory):
    server = server_factory("wsgi_apps", ["--timeout", "1", "--threads", "1"])
    assert get(f"{server.url}/spin?s=20")[0] == 504
    # The interrupted app's exception is logged like any error the app raises.
    server.wait_for_log(r"^ferrocorn\.RequestTimeout")


def test_apps_can_name_request_timeout():
    import ferrocorn

    assert issubclass(ferrocorn.RequestTimeout, BaseException)
    assert not issubclass(ferrocorn.RequestTimeout, Exception)


def test_a_thread_that_ignores_the_timeout_is_replaced(server_factory):
    server = server_factory(
        "wsgi_apps", ["--timeout", "1", "--graceful-timeout", "1", "--threads", "1"]
    )
    assert get(f"{server.url}/stubborn?s=15")[0] == 504
    server.wait_for_log(r"abandoning it and starting a replacement")
    # The replacement serves while the stubborn thread still spins.
    started = time.monotonic()
    assert get(f"{server.url}/x", timeout=10)[0] == 200
    assert time.monotonic() - started < 5


def test_timeout_zero_lets_requests_run(server_factory):
    server = server_factory("wsgi_apps", ["--timeout", "0"])
    assert get(f"{server.url}/slow?s=1.5")[:2] == (200, b"slept 1.5")


# -- --queue-size ----------------------------------------------------------------------


def test_beyond_the_queue_the_server_answers_503_with_retry_after(server_factory):
    server = server_factory("wsgi_apps", ["--threads", "1", "--queue-size", "1"])
    # Hold the only thread for two seconds.
    holder = RawConnection(server.port)
    holder.send(b"GET /slow?s=2 HTTP/1.1\r\nHost: x\r\n\r\n")
    server.wait_for_log(r"slow request started")

    # Of two more requests one waits in the queue and the other finds it full; which one
    # depends on which the server submits first, so wait for whichever answers.
    conns = [RawConnection(server.port) for _ in range(2)]
    for i, conn in enumerate(conns):
        conn.send(f"GET /q{i} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    with selectors.DefaultSelector() as sel:
        for conn in conns:
            sel.register(conn.sock, selectors.EVENT_READ, conn)
        ready = sel.select(timeout=10)
    assert len(ready) == 1, "exactly one request is refused at once"
    refused = ready[0][0].data
    resp = refused.read_response()
    assert resp.status == 503
    assert ("Retry-After", "1") in [(k.title(), v) for k, v in resp.headers]

    # The queued one is served as soon as the thread is free.
    assert holder.read_response().status == 200
    queued = next(c for c in conns if c is not refused)
    assert queued.read_response().status == 200
    for conn in (holder, *conns):
        conn.close()


# -- --worker-connections --------------------------------------------------------------


def test_past_worker_connections_new_clients_wait_instead_of_failing(server_factory):
    server = server_factory(
        "wsgi_apps", ["--worker-connections", "2", "--keep-alive", "30", "--threads", "2"]
    )
    held = []
    for _ in range(2):
        conn = RawConnection(server.port)
        conn.send(b"GET /x HTTP/1.1\r\nHost: x\r\n\r\n")
        assert conn.read_response().status == 200
        held.append(conn)  # idle keep-alive connections that count against the cap

    third = socket.create_connection((server.host, server.port), timeout=10)
    third.sendall(b"GET /third HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    third.settimeout(1.0)
    with pytest.raises(TimeoutError):
        third.recv(1)  # connected (kernel backlog) but not accepted: no answer yet
    held[0].close()
    third.settimeout(10)
    data = b""
    while chunk := third.recv(65536):
        data += chunk
    third.close()
    held[1].close()
    assert data.startswith(b"HTTP/1.1 200 ")


# -- --limit-request-body --------------------------------------------------------------


def body_request(path, body, chunked=False):
    head = f"POST {path} HTTP/1.1\r\nHost: x\r\n"
    if chunked:
        chunks = b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in (body[:60], body[60:]) if c)
        return (head + "Transfer-Encoding: chunked\r\n\r\n").encode() + chunks + b"0\r\n\r\n"
    return (head + f"Content-Length: {len(body)}\r\n\r\n").encode() + body


def test_a_body_over_limit_request_body_gets_413_before_the_app_runs(server_factory):
    server = server_factory("wsgi_apps", ["--limit-request-body", "100", "--access-logfile", "-"])
    with RawConnection(server.port) as conn:
        conn.send(body_request("/echo", b"x" * 100))
        assert conn.read_response().status == 200
    with RawConnection(server.port) as conn:
        # Only the head is sent: the answer must not wait for a body it refuses.
        conn.send(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 101\r\n\r\n")
        resp = conn.read_response()
        assert resp.status == 413
        assert ("connection", "close") in [(k.lower(), v.lower()) for k, v in resp.headers]


def test_a_chunked_body_growing_past_the_limit_fails_the_apps_read(server_factory):
    server = server_factory("wsgi_apps", ["--limit-request-body", "100"])
    with RawConnection(server.port) as conn:
        conn.send(body_request("/echo", b"y" * 100, chunked=True))
        assert conn.read_response().status == 200
    with RawConnection(server.port) as conn:
        conn.send(body_request("/echo", b"y" * 101, chunked=True))
        assert conn.read_response().status == 413
    # The app's read raised an OSError naming the limit.
    server.wait_for_log(r"OSError: .*--limit-request-body")


# -- request smuggling ----------------------------------------------------------------

SMUGGLED = b"GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n"
POST = b"POST /echo HTTP/1.1\r\nHost: x\r\n"

SMUGGLING = {
    "cl-and-te": POST + b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    "te-and-cl": POST + b"Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n",
    "two-cl-differ": POST + b"Content-Length: 0\r\nContent-Length: 36\r\n\r\n",
    "two-cl-same": POST + b"Content-Length: 0\r\nContent-Length: 0\r\n\r\n",
    "cl-list": POST + b"Content-Length: 0, 0\r\n\r\n",
    "cl-plus": POST + b"Content-Length: +0\r\n\r\n",
    "two-hosts": b"GET /echo HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n",
    "two-content-types": POST
    + b"Content-Type: a/b\r\nContent-Type: c/d\r\nContent-Length: 0\r\n\r\n",
    "chunk-size-space": POST + b"Transfer-Encoding: chunked\r\n\r\n0 \r\n\r\n",
    "chunk-size-hex-prefix": POST + b"Transfer-Encoding: chunked\r\n\r\n0x0\r\n\r\n",
    "chunk-size-sign": POST + b"Transfer-Encoding: chunked\r\n\r\n-0\r\n\r\n",
    "chunked-twice": POST + b"Transfer-Encoding: chunked, chunked\r\n\r\n0\r\n\r\n",
    "obs-fold": b"GET /echo HTTP/1.1\r\nHost: x\r\nX-A: a\r\n b\r\n\r\n",
    "bare-lf": b"GET /echo HTTP/1.1\nHost: x\n\n",
    "bare-cr": b"GET /echo HTTP/1.1\rHost: x\r\n\r\n",
    "nul-in-value": b"GET /echo HTTP/1.1\r\nHost: x\r\nX-A: a\x00b\r\n\r\n",
    "ctl-in-value": b"GET /echo HTTP/1.1\r\nHost: x\r\nX-A: a\x01b\r\n\r\n",
    "del-in-value": b"GET /echo HTTP/1.1\r\nHost: x\r\nX-A: a\x7fb\r\n\r\n",
    "space-before-colon": b"GET /echo HTTP/1.1\r\nHost: x\r\nX-A : b\r\n\r\n",
    "lowercase-method": b"get /echo HTTP/1.1\r\nHost: x\r\n\r\n",
}


@pytest.mark.parametrize("name", sorted(SMUGGLING))
def test_ambiguous_framing_gets_400_one_answer_and_a_closed_connection(wsgi_server, name):
    with socket.create_connection(("127.0.0.1", wsgi_server.port), timeout=10) as s:
        s.sendall(SMUGGLING[name] + SMUGGLED)
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    assert data.startswith(b"HTTP/1.1 400 "), data[:200]
    # One answer, then the connection closes: the smuggled request is never served.
    assert data.count(b"HTTP/1.") == 1, data
    assert b"smuggled" not in data


# -- slow clients ------------------------------------------------------------------------


def unread_download(server, path):
    """A connection that asks for `path` and never reads the answer (a tiny receive buffer)."""
    s = socket.create_connection(("127.0.0.1", server.port), timeout=20)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    return s


def test_a_thousand_stalled_clients_do_not_stop_others_being_served(server_factory):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 4096 <= hard or hard == resource.RLIM_INFINITY:
        resource.setrlimit(resource.RLIMIT_NOFILE, (4096, hard))
    server = server_factory(
        "wsgi_apps", ["--threads", "2", "--keep-alive", "60", "--worker-connections", "2000"]
    )
    stalled = []
    try:
        for _ in range(10):
            # A download far larger than the socket buffers.
            stalled.append(unread_download(server, "/file?size=8000000"))
        for _ in range(990):
            # Half of a small upload, then nothing.
            s = socket.create_connection(("127.0.0.1", server.port), timeout=10)
            s.sendall(
                b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n" + b"u" * 500
            )
            stalled.append(s)
        started = time.monotonic()
        status, body, _ = get(f"{server.url}/fixed", timeout=20)
        assert (status, body) == (200, b"fixed body in a list")
        assert time.monotonic() - started < 5
    finally:
        for s in stalled:
            s.close()


def test_a_trickled_upload_reaches_the_app_whole(server_factory):
    server = server_factory("wsgi_apps", ["--threads", "1"])
    with RawConnection(server.port) as conn:
        conn.send(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 6\r\n\r\n")
        for byte in b"abcdef":
            conn.send(bytes([byte]))
        resp = conn.read_response()
    assert resp.status == 200
    assert b'"body": "abcdef"' in resp.body


def test_a_client_that_stops_reading_a_stream_is_cut_off_after_the_timeout(server_factory):
    server = server_factory("wsgi_apps", ["--threads", "1", "--timeout", "1"])
    # 64 MiB from a generator, on a connection the client keeps open.
    stalled = unread_download(server, "/stream?n=1024&size=65536")
    assert stalled.recv(16).startswith(b"HTTP/1.1 200")  # streaming has begun
    try:
        # Another thread serves meanwhile...
        assert get(f"{server.url}/fixed", timeout=20)[0] == 200
        # ...and the stalled stream's thread ends: --timeout cut the connection off.
        deadline = time.monotonic() + 15
        while len(pool_threads(server.pid)) > 1:
            assert time.monotonic() < deadline, pool_threads(server.pid)
            time.sleep(0.1)
    finally:
        stalled.close()


@pytest.mark.parametrize("sent", [1000, 300_000])
def test_a_client_leaving_mid_upload_makes_the_apps_read_raise_oserror(server_factory, sent):
    server = server_factory("wsgi_apps", ["--threads", "1"])
    s = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    s.sendall(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\n" + b"z" * sent)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    s.close()
    server.wait_for_log(r"OSError: client disconnected while sending the request body")
    # The thread is free again.
    assert get(f"{server.url}/fixed", timeout=10)[0] == 200


def test_a_slowloris_head_is_cut_off_at_the_header_timeout(server_factory):
    server = server_factory("wsgi_apps", ["--keep-alive", "1"])
    s = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    s.settimeout(0.2)
    started = time.monotonic()
    head = b"GET / HTTP/1.1\r\nHost: x\r\n" + b"X-Slow: " + b"a" * 200
    closed = False
    try:
        for byte in head:  # one byte every 0.2 s: it would take 40 s to finish the head
            try:
                s.sendall(bytes([byte]))
                if s.recv(1) == b"":
                    closed = True
                    break
            except TimeoutError:
                continue
            except OSError:
                closed = True
                break
    finally:
        s.close()
    assert closed
    assert time.monotonic() - started < 5


def test_a_large_upload_that_stalls_times_out_with_408(server_factory):
    server = server_factory("wsgi_apps", ["--threads", "1", "--timeout", "1"])
    with RawConnection(server.port, timeout=10) as conn:
        # Larger than what is read before dispatch: the app's read waits for the rest.
        conn.send(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\n")
        conn.send(b"v" * 100_000)
        resp = conn.read_response()
    # 408 from the stalled read, or 504 if the request's own --timeout struck first: both
    # timers count the same second.
    assert resp.status in (408, 504)
    # Either way the app's read fails and the thread is freed.
    server.wait_for_log(r"OSError: (no request body bytes for 1 s|client disconnected)")
    status, _, _ = get(f"{server.url}/fixed", timeout=10)
    assert status == 200, server.err_text()


def pool_threads(pid):
    """The ferrocorn-py-* threads of the server process."""
    names = []
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{task}/comm") as f:
                names.append(f.read().strip())
        except OSError:
            pass  # the thread ended while we looked
    return [n for n in names if n.startswith("ferrocorn-py")]


def test_clients_that_stop_reading_streams_do_not_take_the_pool(server_factory):
    server = server_factory("wsgi_apps", ["--threads", "2", "--timeout", "60"])
    server.wait_for_log(r"Booting worker pool")  # the pool starts after the listeners
    deadline = time.monotonic() + 10
    while len(pool_threads(server.pid)) < 2:  # a new thread names itself once it runs
        assert time.monotonic() < deadline, pool_threads(server.pid)
        time.sleep(0.01)
    stalled = []
    try:
        for _ in range(8):
            # 64 MiB from a generator: each holds its thread while it waits.
            stalled.append(unread_download(server, "/stream?n=1024&size=65536"))
        for s in stalled:
            assert s.recv(16).startswith(b"HTTP/1.1 200")  # every stream has begun
        started = time.monotonic()
        assert get(f"{server.url}/fixed", timeout=20)[0] == 200
        assert time.monotonic() - started < 3
    finally:
        for s in stalled:
            s.close()
    # The threads that waited on those clients leave once their streams end.
    deadline = time.monotonic() + 20
    while len(pool_threads(server.pid)) > 2:
        assert time.monotonic() < deadline, pool_threads(server.pid)
        time.sleep(0.1)
    assert get(f"{server.url}/fixed", timeout=10)[0] == 200


def test_large_uploads_that_trickle_do_not_take_the_pool(server_factory):
    server = server_factory("wsgi_apps", ["--threads", "2", "--timeout", "60"])
    stalled = []
    try:
        for _ in range(8):
            # Larger than what is read before dispatch: the app's read waits for the rest.
            s = socket.create_connection(("127.0.0.1", server.port), timeout=20)
            s.sendall(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\n")
            s.sendall(b"w" * 100_000)
            stalled.append(s)
        started = time.monotonic()
        assert get(f"{server.url}/fixed", timeout=20)[0] == 200
        assert time.monotonic() - started < 8
    finally:
        for s in stalled:
            s.close()
