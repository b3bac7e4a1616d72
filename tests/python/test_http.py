"""HTTP/1.x behaviour seen on the wire: keep-alive, pipelining, HTTP/1.0,
chunked request bodies, Expect: 100-continue, bodiless responses (HEAD, 204,
304), Date and Server headers, Content-Length mismatches, streaming, and a
few requests made with curl."""

import email.utils
import hashlib
import http.client
import json
import subprocess
import time
import uuid
from datetime import datetime, timezone

import pytest
import requests
from helpers import RawConnection, differs_on_gunicorn, pattern_bytes


def echo_json(resp):
    return json.loads(resp.body if isinstance(resp.body, bytes) else resp.read())


# -- connections ---------------------------------------------------------------------


def test_keep_alive_reuses_the_connection(wsgi_server):
    conn = http.client.HTTPConnection("127.0.0.1", wsgi_server.port, timeout=10)
    try:
        ports = []
        for path in ("/one", "/two", "/three"):
            conn.request("GET", path)
            resp = conn.getresponse()
            data = json.loads(resp.read())
            assert resp.status == 200
            assert data["environ"]["PATH_INFO"] == path
            assert (resp.getheader("Connection") or "").lower() != "close"
            ports.append(data["environ"]["REMOTE_PORT"])
        assert len(set(ports)) == 1, ports
    finally:
        conn.close()


def test_pipelined_requests_are_answered_in_order(wsgi_server):
    with RawConnection(wsgi_server.port) as conn:
        conn.send(
            conn.build("GET", "/fixed")
            + conn.build("GET", "/first?x=1")
            + conn.build("POST", "/second", body=b"pipelined body")
            + conn.build("GET", "/stream?n=2")
        )
        r1 = conn.read_response()
        r2 = conn.read_response()
        r3 = conn.read_response()
        r4 = conn.read_response()
    assert (r1.status, r1.body) == (200, b"fixed body in a list")
    assert echo_json(r2)["environ"]["RAW_URI"] == "/first?x=1"
    assert echo_json(r3)["environ"]["PATH_INFO"] == "/second"
    assert echo_json(r3)["body"] == "pipelined body"
    assert r4.body == b"chunk 0\nchunk 1\n"
    assert r4.complete


def test_connection_close_request_header_closes_after_response(wsgi_server):
    with RawConnection(wsgi_server.port) as conn:
        resp = conn.request("GET", "/fixed", headers=[("Connection", "close")])
        assert resp.status == 200
        assert resp.body == b"fixed body in a list"
        assert conn.is_closed_by_peer(5)


def test_idle_keep_alive_connection_is_closed_after_keep_alive_seconds(server_factory):
    server = server_factory("wsgi_apps", ["--keep-alive", "1"])
    with RawConnection(server.port) as conn:
        assert conn.request("GET", "/fixed").status == 200
        started = time.monotonic()
        assert conn.is_closed_by_peer(10), "idle connection still open after 10 s"
        assert time.monotonic() - started >= 0.5


def test_http_1_0_response_without_length_is_close_delimited(wsgi_server):
    with RawConnection(wsgi_server.port) as conn:
        resp = conn.request("GET", "/stream?n=3", version="HTTP/1.0")
        assert resp.status == 200
        assert resp.header("Transfer-Encoding") is None
        assert resp.header("Content-Length") is None
        assert resp.body == b"chunk 0\nchunk 1\nchunk 2\n"
        assert conn.is_closed_by_peer(5)


def test_http_1_0_without_keep_alive_is_closed_after_response(wsgi_server):
    with RawConnection(wsgi_server.port) as conn:
        resp = conn.request("GET", "/fixed", version="HTTP/1.0")
        assert resp.status == 200
        assert resp.body == b"fixed body in a list"
        assert conn.is_closed_by_peer(5)


def test_malformed_request_line_gets_400(wsgi_server):
    with RawConnection(wsgi_server.port) as conn:
        conn.send(b"THIS IS NOT HTTP\r\n\r\n")
        resp = conn.read_response()
    assert resp.status == 400


# -- request bodies ---------------------------------------------------------------------


def test_chunked_request_body_is_decoded(wsgi_server):
    parts = [b"a", b"b" * 100, bytes(range(256)) * 20, b"\r\n0\r\n"]
    wire = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in parts) + b"0\r\n\r\n"
    body = b"".join(parts)
    with RawConnection(wsgi_server.port) as conn:
        resp = conn.request("POST", "/echo", headers=[("Transfer-Encoding", "chunked")], body=wire)
    data = echo_json(resp)
    assert resp.status == 200
    assert data["body_len"] == len(body)
    assert data["body_sha256"] == hashlib.sha256(body).hexdigest()
    assert data["environ"]["wsgi.input_terminated"] is True


# hyper would take this head (as an extension method); the guard refuses lowercase methods.
SMUGGLED = b"get /smuggled HTTP/1.1\r\nHost: x\r\n\r\n"


def test_a_head_right_behind_a_large_body_is_still_checked(wsgi_server):
    # Body bytes go to the parser unexamined; where the body ends, checking resumes.
    body = pattern_bytes(700_000)
    with RawConnection(wsgi_server.port) as conn:
        conn.send(conn.build("POST", "/echo", body=body) + SMUGGLED)
        first = conn.read_response()
        second = conn.read_response()
    assert first.status == 200
    assert echo_json(first)["body_sha256"] == hashlib.sha256(body).hexdigest()
    assert second.status == 400


def test_a_large_chunk_not_followed_by_crlf_fails_the_body(wsgi_server):
    data = pattern_bytes(500_000)
    wire = b"%x\r\n%sXX0\r\n\r\n" % (len(data), data)
    with RawConnection(wsgi_server.port) as conn:
        resp = conn.request("POST", "/echo", headers=[("Transfer-Encoding", "chunked")], body=wire)
    assert resp.status == 400


def test_chunked_request_body_with_large_chunks_between_small_ones(wsgi_server):
    parts = [b"x", pattern_bytes(600_000), b"y" * 3, pattern_bytes(300_001), b"z"]
    wire = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in parts) + b"0\r\n\r\n"
    body = b"".join(parts)
    with RawConnection(wsgi_server.port) as conn:
        resp = conn.request("POST", "/echo", headers=[("Transfer-Encoding", "chunked")], body=wire)
        again = conn.request("GET", "/echo")
    assert resp.status == 200
    assert echo_json(resp)["body_sha256"] == hashlib.sha256(body).hexdigest()
    assert again.status == 200


def test_chunked_request_body_from_a_generator(wsgi_server):
    pieces = [bytes([i]) * 10_000 for i in range(50)]
    resp = requests.post(wsgi_server.url + "/echo", data=iter(pieces), timeout=10)
    assert resp.status_code == 200
    assert resp.json()["body_sha256"] == hashlib.sha256(b"".join(pieces)).hexdigest()


def test_large_request_body(wsgi_server):
    body = bytes(range(256)) * 40_000  # 10 MB
    resp = requests.post(wsgi_server.url + "/echo", data=body, timeout=30)
    assert resp.status_code == 200
    assert resp.json()["body_len"] == len(body)
    assert resp.json()["body_sha256"] == hashlib.sha256(body).hexdigest()


def test_expect_100_continue_comes_before_the_body_is_sent(wsgi_server):
    body = b"sent after 100"
    with RawConnection(wsgi_server.port, timeout=5) as conn:
        conn.send(
            conn.build(
                "POST",
                "/echo",
                headers=[("Expect", "100-continue"), ("Content-Length", str(len(body)))],
            )
        )
        interim = conn.read_response("POST")  # times out if the server waits for the body
        assert interim.status == 100
        conn.send(body)
        final = conn.read_response("POST")
    assert final.status == 200
    assert echo_json(final)["body"] == "sent after 100"


def test_expect_100_continue_when_app_ignores_the_body(wsgi_server):
    with RawConnection(wsgi_server.port, timeout=5) as conn:
        conn.send(
            conn.build(
                "POST", "/fixed", headers=[("Expect", "100-continue"), ("Content-Length", "5")]
            )
        )
        resp = conn.read_response("POST")
        if resp.status == 100:
            resp = conn.read_response("POST")
    assert resp.status == 200
    assert resp.body == b"fixed body in a list"


@differs_on_gunicorn("gunicorn sends 100 Continue before the app runs")
def test_no_100_continue_when_the_app_does_not_read(wsgi_server):
    with RawConnection(wsgi_server.port, timeout=5) as conn:
        conn.send(
            conn.build(
                "POST", "/fixed", headers=[("Expect", "100-continue"), ("Content-Length", "5")]
            )
        )
        resp = conn.read_response("POST")
    assert resp.status == 200


# -- responses without a body -----------------------------------------------------------


def test_head_has_the_headers_but_no_body(wsgi_server):
    with RawConnection(wsgi_server.port) as conn:
        conn.send(conn.build("HEAD", "/file?size=1000") + conn.build("GET", "/fixed"))
        head = conn.read_response("HEAD")
        after = conn.read_response("GET")
    assert head.status == 200
    assert head.header("Content-Length") == "1000"
    # Any body bytes after the HEAD response would break the next status line.
    assert after.status == 200
    assert after.body == b"fixed body in a list"


def test_head_of_a_streamed_response_has_no_body(wsgi_server):
    with RawConnection(wsgi_server.port) as conn:
        conn.send(conn.build("HEAD", "/stream?n=3") + conn.build("GET", "/fixed"))
        head = conn.read_response("HEAD")
        after = conn.read_response("GET")
    assert head.status == 200
    assert (after.status, after.body) == (200, b"fixed body in a list")


@pytest.mark.parametrize("code", [204, 304])
def test_204_and_304_have_no_body(wsgi_server, code):
    with RawConnection(wsgi_server.port) as conn:
        conn.send(conn.build("GET", f"/status?code={code}") + conn.build("GET", "/fixed"))
        resp = conn.read_response()
        after = conn.read_response()
    assert resp.status == code
    assert resp.header("Transfer-Encoding") is None
    assert resp.header("X-Code") == str(code)
    assert (after.status, after.body) == (200, b"fixed body in a list")


def test_body_returned_for_204_is_not_sent(wsgi_server):
    with RawConnection(wsgi_server.port) as conn:
        conn.send(conn.build("GET", "/status?code=204&body=dropped") + conn.build("GET", "/fixed"))
        resp = conn.read_response()
        after = conn.read_response()
    assert resp.status == 204
    assert (after.status, after.body) == (200, b"fixed body in a list")


# -- headers -------------------------------------------------------------------------------


def test_date_header_is_present_and_current(wsgi_server):
    resp = requests.get(wsgi_server.url + "/fixed", timeout=10)
    assert resp.status_code == 200
    assert len(resp.raw.headers.getlist("Date")) == 1
    date = email.utils.parsedate_to_datetime(resp.headers["Date"])
    assert abs((datetime.now(timezone.utc) - date).total_seconds()) < 60


@differs_on_gunicorn("Server: gunicorn")
def test_server_header_is_ferrocorn(wsgi_server):
    resp = requests.get(wsgi_server.url + "/fixed", timeout=10)
    assert len(resp.raw.headers.getlist("Server")) == 1
    assert resp.headers["Server"].split("/")[0] == "ferrocorn"


def test_response_headers_are_passed_through(wsgi_server):
    with RawConnection(wsgi_server.port) as conn:
        resp = conn.request("GET", "/cookies")
    assert resp.header_all("Set-Cookie") == ["first=1; Path=/", "second=2; Path=/; HttpOnly"]
    assert resp.header("X-Custom-Header") == "Mixed Case Value"
    assert resp.body == b"cookies"


@pytest.mark.parametrize("code, reason", [(404, "Not Found"), (299, "Whatever"), (418, "Whatever")])
def test_status_line_keeps_the_apps_reason_phrase(wsgi_server, code, reason):
    with RawConnection(wsgi_server.port) as conn:
        resp = conn.request("GET", f"/status?code={code}&body=x")
    assert resp.version == "HTTP/1.1"
    assert (resp.status, resp.reason) == (code, reason)
    assert resp.body == b"x"


@differs_on_gunicorn("gunicorn sets Content-Length only for a one-item list")
def test_list_body_gets_a_content_length(wsgi_server):
    with RawConnection(wsgi_server.port) as conn:
        resp = conn.request("GET", "/fixed")
    assert resp.header("Content-Length") == str(len(b"fixed body in a list"))
    assert resp.header("Transfer-Encoding") is None


def test_generator_body_is_chunked_on_http_1_1(wsgi_server):
    with RawConnection(wsgi_server.port) as conn:
        resp = conn.request("GET", "/stream?n=3")
    assert resp.header("Transfer-Encoding") == "chunked"
    assert resp.header("Content-Length") is None
    assert resp.complete
    assert resp.body == b"chunk 0\nchunk 1\nchunk 2\n"


def test_app_content_length_is_used_without_chunking(wsgi_server):
    with RawConnection(wsgi_server.port) as conn:
        resp = conn.request("GET", "/length?declared=26&actual=26")
    assert resp.header("Content-Length") == "26"
    assert resp.header("Transfer-Encoding") is None
    assert resp.body == b"abcdefghijklmnopqrstuvwxyz"


# -- Content-Length mismatches ------------------------------------------------------------


def test_body_shorter_than_content_length_closes_the_connection(wsgi_server):
    with RawConnection(wsgi_server.port, timeout=5) as conn:
        resp = conn.request("GET", "/length?declared=20&actual=10")
        # read_response stops at EOF; a server that keeps the connection open
        # makes the read time out instead.
        assert resp.status == 200
        assert resp.body == b"abcdefghij"
        assert not resp.complete


def test_body_longer_than_content_length_is_truncated(wsgi_server):
    with RawConnection(wsgi_server.port, timeout=5) as conn:
        resp = conn.request("GET", "/length?declared=10&actual=20")
        assert resp.status == 200
        assert resp.body == b"abcdefghij"
        # Extra bytes would show up where the next response's status line is.
        try:
            conn.send(conn.build("GET", "/fixed"))
            after = conn.read_response()
        except (ConnectionError, BrokenPipeError):
            return  # closing the connection is fine too
        assert (after.status, after.body) == (200, b"fixed body in a list")


# -- streaming -------------------------------------------------------------------------------


def test_chunks_arrive_while_the_app_is_still_running(wsgi_server):
    gate = uuid.uuid4().hex
    with RawConnection(wsgi_server.port, timeout=5) as conn:
        conn.send(conn.build("GET", f"/gated?id={gate}"))
        head = conn.read_head()
        assert head.status == 200
        assert head.header("Transfer-Encoding") == "chunked"
        # The app is blocked until the release below: this chunk must have
        # been sent on its own.
        assert conn.read_chunk() == b"first\n"
        released = requests.get(f"{wsgi_server.url}/release?id={gate}", timeout=5)
        assert released.status_code == 200
        rest = b""
        while chunk := conn.read_chunk():
            rest += chunk
    assert rest == b"released\nlast\n"


def test_each_yielded_item_is_its_own_chunk(wsgi_server):
    with RawConnection(wsgi_server.port) as conn:
        resp = conn.request("GET", "/stream?n=4&delay=0.05")
    assert resp.chunks == [b"chunk 0\n", b"chunk 1\n", b"chunk 2\n", b"chunk 3\n"]


# -- curl -------------------------------------------------------------------------------------


def run_curl(curl, *args):
    return subprocess.run(
        [curl, "-sS", "--max-time", "20", *args], capture_output=True, check=False, timeout=30
    )


def test_curl_get(curl, wsgi_server):
    result = run_curl(curl, "-i", wsgi_server.url + "/fixed")
    assert result.returncode == 0, result.stderr
    head, _, body = result.stdout.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200")
    assert body == b"fixed body in a list"


def test_curl_large_upload_uses_100_continue(curl, wsgi_server, tmp_path):
    payload = bytes(range(256)) * 8192  # 2 MiB: curl sends Expect: 100-continue
    path = tmp_path / "upload.bin"
    path.write_bytes(payload)
    result = run_curl(curl, "-v", "--data-binary", f"@{path}", wsgi_server.url + "/echo")
    assert result.returncode == 0, result.stderr
    assert b"< HTTP/1.1 100 Continue" in result.stderr
    data = json.loads(result.stdout)
    assert data["body_sha256"] == hashlib.sha256(payload).hexdigest()


def test_curl_chunked_upload(curl, wsgi_server):
    payload = b"line\n" * 1000
    result = subprocess.run(
        [
            curl,
            "-sS",
            "--max-time",
            "20",
            "-H",
            "Transfer-Encoding: chunked",
            "--data-binary",
            "@-",
            wsgi_server.url + "/echo",
        ],
        input=payload,
        capture_output=True,
        check=False,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["body_len"] == len(payload)
    assert data["environ"].get("HTTP_TRANSFER_ENCODING") == "chunked"
