"""PEP 3333 as apps see it: the environ (keys, values, SCRIPT_NAME, decoded
PATH_INFO, joined and dropped headers), wsgi.input's methods, write(),
wsgi.file_wrapper, close() called exactly once, exc_info, broken apps
answered with 500 while the server keeps serving, threading.local state
that lasts across requests, and app factories."""

import concurrent.futures
import hashlib
import io
import json
import os
import re
import socket
import tempfile
import time
import urllib.parse
from collections import Counter, defaultdict

import pytest
import requests
from helpers import IS_GUNICORN, RawConnection, differs_on_gunicorn, pattern_bytes


def echo(server, path="/echo", **kwargs):
    resp = requests.request(kwargs.pop("method", "GET"), server.url + path, timeout=10, **kwargs)
    assert resp.status_code == 200, resp.text
    return resp.json()


# -- environ ---------------------------------------------------------------------------


def test_environ_core_keys(wsgi_server):
    with RawConnection(wsgi_server.port) as conn:
        client_port = conn.sock.getsockname()[1]
        resp = conn.request("GET", "/some/path?x=1&y=%20two", headers=[("X-Custom", "value 1")])
    env = json.loads(resp.body)["environ"]
    assert env["REQUEST_METHOD"] == "GET"
    assert env["SCRIPT_NAME"] == ""
    assert env["PATH_INFO"] == "/some/path"
    assert env["QUERY_STRING"] == "x=1&y=%20two"
    assert env["RAW_URI"] == "/some/path?x=1&y=%20two"
    assert env["SERVER_NAME"] == "127.0.0.1"
    assert env["SERVER_PORT"] == str(wsgi_server.port)
    assert env["SERVER_PROTOCOL"] == "HTTP/1.1"
    assert env["REMOTE_ADDR"] == "127.0.0.1"
    assert env["REMOTE_PORT"] == str(client_port)
    assert env["HTTP_HOST"] == f"127.0.0.1:{wsgi_server.port}"
    assert env["HTTP_X_CUSTOM"] == "value 1"
    assert env["wsgi.url_scheme"] == "http"
    assert env["wsgi.version"] == [1, 0]
    assert env["wsgi.run_once"] is False
    assert isinstance(env["wsgi.multithread"], bool)
    assert isinstance(env["wsgi.multiprocess"], bool)
    assert env["wsgi.input_terminated"] is True
    assert "CONTENT_TYPE" not in env or env["CONTENT_TYPE"] == ""
    assert "CONTENT_LENGTH" not in env or env["CONTENT_LENGTH"] in ("", "0")
    # The template the environ is copied from holds a placeholder for each of these keys and
    # padding it drops again: no placeholder or padding may reach the app.
    assert [k for k, v in env.items() if v is None] == []
    assert [k for k in env if k.startswith("ferrocorn.")] == []


def test_environ_has_the_wsgi_objects(wsgi_server):
    data = echo(wsgi_server)
    assert data["has_file_wrapper"]
    assert data["errors_has_write"]
    assert data["errors_has_flush"]
    assert data["input_has_read"]


@differs_on_gunicorn("SERVER_SOFTWARE is gunicorn/X")
def test_server_software_is_ferrocorn(wsgi_server):
    assert re.fullmatch(r"ferrocorn/\d+\.\d+\.\d+", echo(wsgi_server)["environ"]["SERVER_SOFTWARE"])


def test_multithread_is_true_with_threads(wsgi_server):
    assert echo(wsgi_server)["environ"]["wsgi.multithread"] is True


def test_content_type_and_length_are_not_http_keys(wsgi_server):
    env = echo(
        wsgi_server, method="POST", data=b'{"a": 1}', headers={"Content-Type": "application/json"}
    )["environ"]
    assert env["REQUEST_METHOD"] == "POST"
    assert env["CONTENT_TYPE"] == "application/json"
    assert env["CONTENT_LENGTH"] == "8"
    assert "HTTP_CONTENT_TYPE" not in env
    assert "HTTP_CONTENT_LENGTH" not in env


def test_every_header_value_is_a_str(wsgi_server):
    env = echo(wsgi_server, headers={"X-Latin": "caf\xe9"})["environ"]
    assert env["HTTP_X_LATIN"] == "caf\xe9"
    assert all(isinstance(v, str) for k, v in env.items() if k.startswith("HTTP_"))


def test_path_info_is_percent_decoded_as_latin_1(wsgi_server):
    with RawConnection(wsgi_server.port) as conn:
        resp = conn.request("GET", "/caf%C3%A9/a%20b/%2F/%7E?q=%C3%A9")
    env = json.loads(resp.body)["environ"]
    assert env["PATH_INFO"] == b"/caf\xc3\xa9/a b///~".decode("latin-1")
    assert env["RAW_URI"] == "/caf%C3%A9/a%20b/%2F/%7E?q=%C3%A9"
    assert env["QUERY_STRING"] == "q=%C3%A9"


def test_script_name_comes_from_the_environment(server_factory):
    server = server_factory("wsgi_apps", env={"SCRIPT_NAME": "/prefix"})
    data = echo(server, "/prefix/some/thing?a=b")
    assert data["environ"]["SCRIPT_NAME"] == "/prefix"
    assert data["environ"]["PATH_INFO"] == "/some/thing"
    assert data["environ"]["RAW_URI"] == "/prefix/some/thing?a=b"


def test_repeated_headers_are_joined_with_commas(wsgi_server):
    with RawConnection(wsgi_server.port) as conn:
        resp = conn.request(
            "GET", "/echo", headers=[("X-Multi", "a"), ("X-Multi", "b"), ("x-multi", "c")]
        )
    assert json.loads(resp.body)["environ"]["HTTP_X_MULTI"] == "a,b,c"


def test_header_names_with_underscores_are_dropped(wsgi_server):
    with RawConnection(wsgi_server.port) as conn:
        resp = conn.request(
            "GET",
            "/echo",
            headers=[
                ("X-Auth-User", "alice"),
                ("X_Auth_User", "mallory"),
                ("Only_Underscore", "1"),
            ],
        )
    env = json.loads(resp.body)["environ"]
    assert env["HTTP_X_AUTH_USER"] == "alice"
    assert "HTTP_ONLY_UNDERSCORE" not in env
    assert "mallory" not in json.dumps(env)


def test_request_methods_are_passed_through(wsgi_server):
    for method in ("PUT", "DELETE", "PATCH", "OPTIONS"):
        env = echo(wsgi_server, method=method, data=b"x")["environ"]
        assert env["REQUEST_METHOD"] == method


# -- wsgi.input ---------------------------------------------------------------------------

BODY = b"first line\nsecond line is longer\n\nfourth\r\nno newline at the end"


def expected(ops, body=BODY):
    """The same calls on io.BytesIO, the reference file semantics."""
    f = io.BytesIO(body)
    results = []
    for op in ops.split(","):
        name, _, arg = op.partition(":")
        args = (int(arg),) if arg else ()
        value = list(f) if name == "iter" else getattr(f, name)(*args)
        results.append(
            [v.decode("latin-1") for v in value]
            if isinstance(value, list)
            else value.decode("latin-1")
        )
    return results


@pytest.mark.parametrize(
    "ops",
    [
        "read",
        "read:5,read:7,read",
        "read:0,read:1000,read",
        "read:-1",
        "readline,readline,readline,readline,readline,readline",
        "readline:4,readline:4,readline:100,readline",
        "readline:0,readline",
        "readlines",
        "readline,readlines",
        "iter",
        "read:3,iter",
        "readline,read:5,readline,read",
    ],
)
@pytest.mark.parametrize("chunked", [False, True], ids=["length", "chunked"])
def test_wsgi_input_methods_match_file_semantics(wsgi_server, ops, chunked):
    data = iter([BODY[:7], BODY[7:30], BODY[30:]]) if chunked else BODY
    resp = requests.post(f"{wsgi_server.url}/input?ops={ops}", data=data, timeout=10)
    assert resp.status_code == 200, resp.text
    assert resp.json()["results"] == expected(ops)


@differs_on_gunicorn("gunicorn's readlines() ignores the size hint")
def test_readlines_hint_stops_after_enough_lines(wsgi_server):
    ops = "readlines:15,read"
    resp = requests.post(f"{wsgi_server.url}/input?ops={ops}", data=BODY, timeout=10)
    assert resp.json()["results"] == expected(ops)


def test_reading_past_the_end_returns_empty_bytes(wsgi_server):
    ops = "read,read,read:10,readline,readlines"
    resp = requests.post(f"{wsgi_server.url}/input?ops={ops}", data=b"tiny", timeout=10)
    assert resp.json()["results"] == ["tiny", "", "", "", []]


def test_wsgi_input_without_a_body_is_empty(wsgi_server):
    resp = requests.get(f"{wsgi_server.url}/input?ops=read,readline", timeout=10)
    assert resp.json()["results"] == ["", ""]


# -- responses -------------------------------------------------------------------------------


def test_write_callable_output_comes_before_the_iterable(wsgi_server):
    resp = requests.get(wsgi_server.url + "/write", timeout=10)
    assert resp.status_code == 200
    assert resp.content == b"hello world!"


@pytest.mark.parametrize("kind", ["file", "bytesio"])
@pytest.mark.parametrize("size", [0, 1, 8192, 1_000_003])
def test_file_wrapper_serves_the_whole_file(wsgi_server, size, kind):
    resp = requests.get(f"{wsgi_server.url}/file?size={size}&kind={kind}", timeout=20)
    assert resp.status_code == 200
    assert resp.headers["Content-Length"] == str(size)
    assert len(resp.content) == size
    assert hashlib.sha256(resp.content).digest() == hashlib.sha256(pattern_bytes(size)).digest()


def test_factory_with_literal_arguments(server_factory):
    server = server_factory("wsgi_apps:factory('from the command line')")
    resp = requests.get(server.url + "/", timeout=10)
    assert resp.text == "factory:from the command line"


def test_callable_name_defaults_to_application(server_factory):
    server = server_factory("wsgi_apps")
    assert requests.get(server.url + "/fixed", timeout=10).text == "fixed body in a list"


def test_named_callable(server_factory):
    server = server_factory("wsgi_apps:write_app")
    assert requests.get(server.url + "/anything", timeout=10).text == "hello world!"


# -- exc_info and start_response checks --------------------------------------------------------


@differs_on_gunicorn("keeps the first headers and adds the new ones (PEP 3333 says replace)")
def test_exc_info_replaces_the_unsent_headers(wsgi_server):
    resp = requests.get(wsgi_server.url + "/exc-info", timeout=10)
    assert resp.status_code == 500
    assert resp.text == "app-handled-error"
    assert "X-Stale" not in resp.headers


def test_exc_info_after_the_headers_were_sent_aborts_the_response(wsgi_server):
    with RawConnection(wsgi_server.port, timeout=5) as conn:
        resp = conn.request("GET", "/exc-info-late")
    assert resp.status == 200
    assert resp.body.startswith(b"partial body\n")
    assert b"must not be sent" not in resp.body
    assert not resp.complete


def test_start_response_twice_without_exc_info_is_an_error(wsgi_server):
    resp = requests.get(wsgi_server.url + "/twice", timeout=10)
    assert resp.status_code == 500
    assert "twice" not in resp.text


@pytest.mark.parametrize("path", ["/bad-status", "/bad-header"])
def test_invalid_status_or_header_is_a_500(wsgi_server, path):
    with RawConnection(wsgi_server.port) as conn:
        resp = conn.request("GET", path)
    assert resp.status == 500
    assert resp.header("Injected") is None
    assert b"bad" not in resp.body
    assert requests.get(wsgi_server.url + "/fixed", timeout=10).status_code == 200


# -- broken apps ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path, logged",
    [
        ("/raise-before", r"RuntimeError: boom-before-start-response"),
        pytest.param(
            "/returns-str",
            r"\[ERROR\]",
            marks=differs_on_gunicorn("sends 200 headers before checking the items, then aborts"),
        ),
        ("/non-iterable", r"\[ERROR\]"),
        ("/no-start-response", r"\[ERROR\]"),
    ],
)
def test_broken_app_gets_500_and_the_server_keeps_serving(wsgi_server, path, logged):
    mark = wsgi_server.log_mark()
    resp = requests.get(wsgi_server.url + path, timeout=10)
    assert resp.status_code == 500
    assert "this is a str" not in resp.text
    assert "start_response was never called" not in resp.text
    wsgi_server.wait_for_log(logged, since=mark)
    assert requests.get(wsgi_server.url + "/fixed", timeout=10).status_code == 200


def test_exception_before_start_response_logs_a_traceback(wsgi_server):
    mark = wsgi_server.log_mark()
    assert requests.get(wsgi_server.url + "/raise-before", timeout=10).status_code == 500
    wsgi_server.wait_for_log(r"RuntimeError: boom-before-start-response", since=mark)
    text = wsgi_server.err_text(mark)
    assert "Traceback (most recent call last)" in text
    assert 'wsgi_apps.py", line' in text
    assert "in raise_before" in text


def test_exception_mid_body_aborts_the_chunked_body(wsgi_server):
    mark = wsgi_server.log_mark()
    with RawConnection(wsgi_server.port, timeout=5) as conn:
        resp = conn.request("GET", "/raise-mid-body")
    assert resp.status == 200
    assert resp.header("Transfer-Encoding") == "chunked"
    assert resp.body == b"first chunk\n"
    assert not resp.complete, "the body must not end like a complete one"
    wsgi_server.wait_for_log(r"RuntimeError: boom-mid-body", since=mark)
    assert requests.get(wsgi_server.url + "/fixed", timeout=10).status_code == 200


def test_many_errors_do_not_stop_the_server(wsgi_server):
    for _ in range(20):
        assert requests.get(wsgi_server.url + "/raise-before", timeout=10).status_code == 500
    assert requests.get(wsgi_server.url + "/fixed", timeout=10).status_code == 200


# -- close() -----------------------------------------------------------------------------------


def read_close_log(path):
    events = defaultdict(list)
    if path.exists():
        for line in path.read_text().splitlines():
            req_id, _, event = line.partition(" ")
            events[req_id].append(event)
    return events


def test_close_is_called_exactly_once(server_factory, tmp_path):
    log = tmp_path / "close.log"
    server = server_factory(
        "wsgi_apps", ["--threads", "2"], env={"FERROCORN_TEST_CLOSE_LOG": str(log)}
    )

    ok = requests.get(server.url + "/closing?id=ok&n=3", timeout=10)
    assert ok.text == "item 0\nitem 1\nitem 2\n"

    # What the client gets here is test_exception_mid_body_aborts_the_chunked_body's
    # business; this test only counts close() calls.
    with RawConnection(server.port, timeout=5) as conn:
        try:
            raised = conn.request("GET", "/closing?id=raise&mode=raise&n=3")
        except ConnectionError:
            raised = None
    assert raised is None or not raised.complete

    # A client that goes away in the middle of a long stream.
    with RawConnection(server.port, timeout=5) as conn:
        conn.send(conn.build("GET", "/closing?id=gone&n=600&delay=0.05"))
        assert conn.read_head().status == 200
        assert conn.read_chunk() == b"item 0\n"
        conn.sock.setsockopt(
            socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00"
        )
    # The server must notice, stop iterating and call close() long before
    # the 30 s the stream would take.
    deadline = time.monotonic() + 10
    while "close" not in read_close_log(log)["gone"]:
        assert time.monotonic() < deadline, (
            f"close() not called after the client left: {read_close_log(log)['gone']}"
        )
        time.sleep(0.05)

    stopped = server.stop()
    assert stopped.code == 0
    events = read_close_log(log)
    assert events["ok"] == ["yield 0", "yield 1", "yield 2", "close"]
    assert events["raise"] == ["yield 0", "raise", "close"]
    assert Counter(events["gone"])["close"] == 1
    assert events["gone"][-1] == "close"
    assert len(events["gone"]) < 100


def test_close_is_called_for_head_requests(server_factory, tmp_path):
    log = tmp_path / "close.log"
    server = server_factory("wsgi_apps", env={"FERROCORN_TEST_CLOSE_LOG": str(log)})
    resp = requests.head(server.url + "/closing?id=head&n=2", timeout=10)
    assert resp.status_code == 200
    assert server.stop().code == 0
    assert Counter(read_close_log(log)["head"])["close"] == 1


# -- threads -------------------------------------------------------------------------------------


def test_thread_local_state_survives_across_requests(server_factory):
    server = server_factory("wsgi_apps", ["--workers", "1", "--threads", "1"])
    answers = [requests.get(server.url + "/thread-local", timeout=10).json() for _ in range(5)]
    assert {a["thread"] for a in answers} == {answers[0]["thread"]}
    assert {a["local_id"] for a in answers} == {answers[0]["local_id"]}
    assert [a["count"] for a in answers] == [1, 2, 3, 4, 5]


def test_thread_local_state_per_pool_thread(server_factory):
    server = server_factory("wsgi_apps", ["--workers", "1", "--threads", "4"])

    def call(_):
        return requests.get(server.url + "/thread-local?delay=0.05", timeout=20).json()

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(call, range(40)))
    by_local = defaultdict(list)
    for a in answers:
        by_local[a["local_id"]].append(a)
    assert 2 <= len(by_local) <= 4, by_local.keys()
    for seen in by_local.values():
        assert len({a["thread"] for a in seen}) == 1
        assert sorted(a["count"] for a in seen) == list(range(1, len(seen) + 1))


@pytest.mark.parametrize("workers, threads", [(1, 4), (2, 2)])
def test_requests_run_concurrently_on_the_thread_pool(server_factory, workers, threads):
    server = server_factory("wsgi_apps", ["--workers", str(workers), "--threads", str(threads)])
    started = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        results = list(
            pool.map(lambda _: requests.get(server.url + "/slow?s=1", timeout=20), range(4))
        )
    elapsed = time.monotonic() - started
    assert [r.status_code for r in results] == [200] * 4
    assert elapsed < 3.0, (
        f"4 one-second requests on {workers}x{threads} threads took {elapsed:.1f} s"
    )


def test_unicode_query_string_round_trip(wsgi_server):
    query = urllib.parse.urlencode({"name": "Zoë", "k": "a&b"})
    env = echo(wsgi_server, f"/q?{query}")["environ"]
    assert env["QUERY_STRING"] == query
    assert urllib.parse.parse_qs(env["QUERY_STRING"]) == {"name": ["Zoë"], "k": ["a&b"]}


# -- the pool ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "workers,threads",
    [(1, 4), pytest.param(2, 2, marks=differs_on_gunicorn("its workers are processes"))],
)
def test_blocked_requests_run_concurrently_up_to_the_pool_size(server_factory, workers, threads):
    # Each request waits inside the app until all four are there at once: they can only meet if
    # the pool runs four blocked requests side by side.
    server = server_factory("wsgi_apps", ["--workers", workers, "--threads", threads])
    url = f"{server.url}/rendezvous?n=4&id=w{workers}t{threads}"
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(lambda _: requests.get(url, timeout=30), range(4)))
    assert [(a.status_code, a.text) for a in answers] == [(200, "met")] * 4


def test_a_quick_request_is_served_while_the_others_block(server_factory):
    server = server_factory("wsgi_apps", ["--threads", "3"])
    url = f"{server.url}/rendezvous?n=3&id=quick"
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        waiting = [pool.submit(requests.get, url, timeout=30) for _ in range(2)]
        # Two threads are blocked in the app; the third serves this one, then joins them.
        assert requests.get(f"{server.url}/fixed", timeout=10).status_code == 200
        last = requests.get(url, timeout=30)
        answers = [w.result() for w in waiting] + [last]
    assert [(a.status_code, a.text) for a in answers] == [(200, "met")] * 3


def download_burst(server, url, size):
    """64 concurrent downloads of `url`, every body checked; returns the server's thread count
    before the burst and the most seen during it."""
    expected = hashlib.sha256(pattern_bytes(size)).digest()
    assert requests.get(url, timeout=20).status_code == 200
    tasks = f"/proc/{server.pid}/task"
    before = len(os.listdir(tasks))

    def download():
        resp = requests.get(url, timeout=60)
        return resp.status_code, hashlib.sha256(resp.content).digest()

    peak = before
    with concurrent.futures.ThreadPoolExecutor(64) as clients:
        pending = [clients.submit(download) for _ in range(64)]
        while not all(f.done() for f in pending):
            peak = max(peak, len(os.listdir(tasks)))
        answers = [f.result() for f in pending]
    assert answers == [(200, expected)] * 64
    return before, peak


@pytest.mark.skipif(IS_GUNICORN, reason="ferrocorn's file readers")
def test_a_burst_of_downloads_reads_files_on_a_bounded_set_of_threads(server_factory):
    server = server_factory("wsgi_apps", ["--threads", "4"])
    size = 4 * 1024 * 1024
    # Evicted from the page cache, every block is read from the disk by a blocking thread.
    before, peak = download_burst(server, f"{server.url}/file?size={size}&cache=drop", size)
    # Tokio starts a reader whenever none is idle; the runtime bounds them at 16.
    assert peak <= before + 16, f"{peak} threads during the burst, {before} before"


def reads_without_waiting(directory):
    """Whether files in `directory` can be read with RWF_NOWAIT (Linux 4.14+, most filesystems)."""
    with tempfile.TemporaryFile(dir=directory) as f:
        f.write(b"x")
        f.flush()
        try:
            return os.preadv(f.fileno(), [bytearray(1)], 0, os.RWF_NOWAIT) == 1
        except OSError:
            return False


@pytest.mark.skipif(IS_GUNICORN, reason="ferrocorn's file readers")
def test_cached_files_are_downloaded_without_starting_a_thread(server_factory):
    if not reads_without_waiting(tempfile.gettempdir()):
        pytest.skip("the temporary directory's filesystem cannot read without waiting")
    server = server_factory("wsgi_apps", ["--threads", "4"])
    size = 4 * 1024 * 1024
    # The app's file was just written: the page cache has it, so the connections copy it
    # themselves rather than hand each block to a blocking thread.
    before, peak = download_burst(server, f"{server.url}/file?size={size}", size)
    assert peak == before, f"{peak} threads during the burst, {before} before"
