"""HTTP/2 with real clients: curl ``--http2`` over TLS (ALPN) and
``--http2-prior-knowledge`` against ``--http2-cleartext`` (HTTP/1 still served
on the same port, and only trusted peers get h2c), h2load for a short load run,
nghttp for the SETTINGS frame, streamed responses and request bodies arriving
whole, the request limits, and SIGTERM letting streams in flight finish."""

import hashlib
import json
import re
import shutil
import signal
import socket
import subprocess
import time

import pytest
from helpers import IS_GUNICORN
from tls_certs import make_certs

pytestmark = [
    pytest.mark.skipif(IS_GUNICORN, reason="ferrocorn's HTTP/2"),
    pytest.mark.skipif(
        not all(shutil.which(t) for t in ("curl", "h2load", "nghttp", "openssl")),
        reason="needs curl, h2load and nghttp (nghttp2-client) and openssl",
    ),
]

H2C = ["--http-protocols", "h1,h2", "--http2-cleartext", "prior-knowledge"]


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    return make_certs(tmp_path_factory.mktemp("certs"))


def tls_args(certs, protocols="h2,h1"):
    return [
        "--certfile", str(certs.path("rsa.pem")), "--keyfile", str(certs.path("rsa-pkcs1.key")),
        "--http-protocols", protocols,
    ]  # fmt: skip


def curl(*args, timeout=30):
    """curl's body and, after it, the HTTP version and status it saw."""
    out = subprocess.run(
        ["curl", "-sS", "-w", "\n%{http_version} %{http_code}", *args],
        capture_output=True,
        timeout=timeout,
        check=False,
    )
    body, _, tail = out.stdout.rpartition(b"\n")
    version, code = tail.decode().split()
    return body, version, int(code)


def test_curl_http2_over_tls_negotiates_h2(server_factory, certs):
    server = server_factory("wsgi_apps", [*tls_args(certs), "--access-logfile", "-"])
    url = f"https://localhost:{server.port}/echo?x=1"
    body, version, code = curl("--http2", "--cacert", str(certs.ca), url)
    assert (version, code) == ("2", 200)
    env = json.loads(body)["environ"]
    assert env["SERVER_PROTOCOL"] == "HTTP/2"
    assert env["wsgi.url_scheme"] == "https"
    # :authority becomes Host, the target its path and query, as on HTTP/1.
    assert env["HTTP_HOST"] == f"localhost:{server.port}"
    assert env["RAW_URI"] == "/echo?x=1"
    assert env["PATH_INFO"] == "/echo"
    assert env["QUERY_STRING"] == "x=1"
    server.wait_for_line(r'"GET /echo\?x=1 HTTP/2\.0" 200', stream="out")
    # A client that asks for HTTP/1.1 gets it on the same listener.
    _, version, code = curl("--http1.1", "--cacert", str(certs.ca), url)
    assert (version, code) == ("1.1", 200)


def test_without_h2_in_http_protocols_tls_stays_http1(server_factory, certs):
    server = server_factory("wsgi_apps", tls_args(certs, protocols="h1"))
    url = f"https://localhost:{server.port}/echo"
    body, version, code = curl("--http2", "--cacert", str(certs.ca), url)
    assert (version, code) == ("1.1", 200)
    assert json.loads(body)["environ"]["SERVER_PROTOCOL"] == "HTTP/1.1"


def test_prior_knowledge_h2c_and_http1_on_the_same_port(server_factory):
    server = server_factory("wsgi_apps", H2C)
    body, version, code = curl("--http2-prior-knowledge", f"{server.url}/echo")
    assert (version, code) == ("2", 200)
    env = json.loads(body)["environ"]
    assert env["SERVER_PROTOCOL"] == "HTTP/2"
    assert env["wsgi.url_scheme"] == "http"
    body, version, code = curl("--http1.1", f"{server.url}/echo")
    assert (version, code) == ("1.1", 200)
    assert json.loads(body)["environ"]["SERVER_PROTOCOL"] == "HTTP/1.1"


def test_h2c_is_for_trusted_peers_only(server_factory):
    server = server_factory("wsgi_apps", [*H2C, "--forwarded-allow-ips", "10.1.2.3"])
    # An untrusted peer's preface reaches the HTTP/1 parser, which refuses it.
    _, version, code = curl("--http2-prior-knowledge", f"{server.url}/echo")
    assert code != 200
    _, version, code = curl(f"{server.url}/echo")
    assert (version, code) == ("1.1", 200)


def test_h2c_is_off_by_default(server_factory):
    server = server_factory("wsgi_apps", ["--http-protocols", "h1,h2"])
    _, _, code = curl("--http2-prior-knowledge", f"{server.url}/echo")
    assert code != 200
    server.wait_for_log(r"HTTP/2 needs TLS \(--certfile\) or --http2-cleartext")


def test_a_streamed_response_and_a_post_body_arrive_whole(server_factory, tmp_path):
    server = server_factory("wsgi_apps", [*H2C, "--http2-initial-window-size", "70000"])
    body, version, code = curl(
        "--http2-prior-knowledge", f"{server.url}/stream?n=200&size=1000&delay=0.001"
    )
    assert (version, code) == ("2", 200)
    lines = body.split(b"\n")[:-1]
    assert len(lines) == 200
    assert all(line.startswith(f"chunk {i}".encode()) for i, line in enumerate(lines))
    assert len(body) == 200 * 1000
    upload = tmp_path / "upload.bin"
    data = bytes(range(256)) * 4000 + b"end"
    upload.write_bytes(data)
    body, version, code = curl(
        "--http2-prior-knowledge", "--data-binary", f"@{upload}", f"{server.url}/echo"
    )
    assert (version, code) == ("2", 200)
    echoed = json.loads(body)
    assert echoed["body_len"] == len(data)
    assert echoed["body_sha256"] == hashlib.sha256(data).hexdigest()


def h2load(*args):
    out = subprocess.run(
        ["h2load", *args], capture_output=True, text=True, timeout=120, check=False
    )
    text = out.stdout
    done = re.search(
        r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, "
        r"(\d+) errored, (\d+) timeout",
        text,
    )
    codes = re.search(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", text)
    assert done and codes, text + out.stderr
    return [int(g) for g in done.groups()], [int(g) for g in codes.groups()]


def test_h2load_short_run_over_tls_and_h2c_has_no_errors(server_factory, certs):
    server = server_factory("wsgi_apps", [*tls_args(certs), "--threads", "4"])
    requests, codes = h2load("-n", "2000", "-c", "10", "-m", "10", f"{server.url}/fixed")
    assert requests == [2000, 2000, 2000, 2000, 0, 0, 0]
    assert codes == [2000, 0, 0, 0]
    server = server_factory("wsgi_apps", [*H2C, "--threads", "4"])
    requests, codes = h2load("-n", "2000", "-c", "10", "-m", "10", f"{server.url}/fixed")
    assert requests == [2000, 2000, 2000, 2000, 0, 0, 0]
    assert codes == [2000, 0, 0, 0]


def test_the_settings_frame_carries_the_http2_limits(server_factory):
    server = server_factory(
        "wsgi_apps",
        [
            *H2C,
            "--http2-max-concurrent-streams", "7",
            "--http2-initial-window-size", "100000",
            "--http2-max-frame-size", "32768",
            "--http2-max-header-list-size", "20000",
        ],
    )  # fmt: skip
    out = subprocess.run(
        ["nghttp", "-nv", f"{server.url}/fixed"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    settings = out.stdout.split("recv SETTINGS", 1)[1].split("send SETTINGS")[0]
    assert "SETTINGS_MAX_CONCURRENT_STREAMS(0x03):7" in settings
    assert "SETTINGS_INITIAL_WINDOW_SIZE(0x04):100000" in settings
    assert "SETTINGS_MAX_FRAME_SIZE(0x05):32768" in settings
    assert "SETTINGS_MAX_HEADER_LIST_SIZE(0x06):20000" in settings
    # The limit holds: a client opening 50 streams before it reads the SETTINGS gets the
    # streams past 7 refused (REFUSED_STREAM); one that keeps to 7 gets every answer.
    requests, codes = h2load("-n", "200", "-c", "1", "-m", "50", f"{server.url}/fixed")
    assert requests[4] > 0 and requests[3] + requests[4] == 200
    requests, codes = h2load("-n", "200", "-c", "1", "-m", "7", f"{server.url}/fixed")
    assert requests == [200, 200, 200, 200, 0, 0, 0]
    assert codes == [200, 0, 0, 0]


def test_request_limits_hold_on_http2(server_factory):
    server = server_factory(
        "wsgi_apps", [*H2C, "--limit-request-field_size", "1000", "--limit-request-line", "500"]
    )
    _, version, code = curl(
        "--http2-prior-knowledge", "-H", "X-Big: " + "a" * 2000, f"{server.url}/echo"
    )
    assert (version, code) == ("2", 431)
    _, version, code = curl("--http2-prior-knowledge", f"{server.url}/{'a' * 600}")
    assert (version, code) == ("2", 400)
    fields = []
    for i in range(120):
        fields += ["-H", f"X-F{i}: v"]
    _, version, code = curl("--http2-prior-knowledge", *fields, f"{server.url}/echo")
    assert (version, code) == ("2", 431)
    _, version, code = curl("--http2-prior-knowledge", f"{server.url}/echo")
    assert (version, code) == ("2", 200)


def test_sigterm_lets_http2_streams_in_flight_finish(server_factory):
    server = server_factory("wsgi_apps", [*H2C, "--threads", "4"])
    urls = [f"{server.url}/stream?n=10&delay=0.2&id={i}" for i in range(3)]
    with subprocess.Popen(
        ["curl", "-sS", "--http2-prior-knowledge", "--parallel", "--parallel-immediate", *urls],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    ) as client:
        # The first chunk is out: the streams are in flight.
        first = client.stdout.read(8)
        assert first == b"chunk 0\n"
        stopped = server.stop(signal.SIGTERM, timeout=30)
        # curl -sS writes only an error line, if any, to stderr: it cannot fill its pipe.
        rest = client.stdout.read()
        err = client.stderr.read()
        client.wait(10)
    body = first + rest
    assert client.returncode == 0, err
    assert body.count(b"chunk 9\n") == 3
    assert body.count(b"chunk ") == 30
    assert stopped.code == 0


def frames(data):
    """The whole HTTP/2 frames at the start of ``data`` as (type, flags, payload), and the rest."""
    out = []
    while len(data) >= 9 and len(data) >= 9 + int.from_bytes(data[:3], "big"):
        length = int.from_bytes(data[:3], "big")
        out.append((data[3], data[4], data[9 : 9 + length]))
        data = data[9 + length :]
    return out, data


def test_an_idle_http2_connection_gets_goaway_after_the_keep_alive(server_factory):
    server = server_factory("wsgi_apps", [*H2C, "--keep-alive", "1"])
    with socket.create_connection(("127.0.0.1", server.port), timeout=15) as s:
        s.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes([0, 0, 0, 4, 0, 0, 0, 0, 0]))
        started = time.monotonic()
        kinds, pending = [], b""
        while chunk := s.recv(65536):
            got, pending = frames(pending + chunk)
            for kind, flags, payload in got:
                kinds.append(kind)
                if kind == 6 and not flags & 1:
                    # PING: answered, as any client does.
                    s.sendall(bytes([0, 0, 8, 6, 1, 0, 0, 0, 0]) + payload)
        waited = time.monotonic() - started
    assert kinds[0] == 4, kinds  # the server's SETTINGS
    assert 7 in kinds, kinds  # GOAWAY, then the close
    assert 0.9 < waited < 10


def test_http2_cleartext_true_in_a_config_file_means_prior_knowledge(server_factory, tmp_path):
    conf = tmp_path / "gunicorn.conf.py"
    conf.write_text('http_protocols = "h1,h2"\nhttp2_cleartext = True\n')
    server = server_factory("wsgi_apps", ["-c", str(conf)])
    _, version, code = curl("--http2-prior-knowledge", f"{server.url}/echo")
    assert (version, code) == ("2", 200)


def test_cookies_sent_as_separate_fields_reach_the_app_as_one(server_factory):
    # Browsers send each cookie as its own field over HTTP/2; Django and http.cookies read
    # HTTP_COOKIE split on ";".
    server = server_factory("wsgi_apps", H2C)
    out = subprocess.run(
        ["nghttp", "-H", "cookie: sessionid=abc", "-H", "cookie: csrftoken=xyz",
         f"{server.url}/echo"],
        capture_output=True, timeout=30, check=True,
    )  # fmt: skip
    env = json.loads(out.stdout)["environ"]
    assert env["HTTP_COOKIE"] == "sessionid=abc; csrftoken=xyz"
    assert env["SERVER_PROTOCOL"] == "HTTP/2"


def test_sigterm_does_not_wait_the_graceful_timeout_for_a_client_that_never_answers(
    server_factory,
):
    # An idle HTTP/2 client gone without a FIN never answers the PING that comes with GOAWAY:
    # the server gives up on it after a few seconds, not after --graceful-timeout.
    server = server_factory("wsgi_apps", [*H2C, "--graceful-timeout", "120"])
    with socket.create_connection(("127.0.0.1", server.port), timeout=15) as s:
        s.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes([0, 0, 0, 4, 0, 0, 0, 0, 0]))
        got, _ = frames(s.recv(65536))
        assert got and got[0][0] == 4, got  # the server's SETTINGS: the connection is up
        started = time.monotonic()
        stopped = server.stop(signal.SIGTERM, timeout=60)
        waited = time.monotonic() - started
    assert stopped.code == 0
    assert waited < 30, waited
