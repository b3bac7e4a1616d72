"""Proxy trust over real sockets: secure_scheme_headers → wsgi.url_scheme only
from --forwarded-allow-ips peers (and Unix-socket peers), contradictory scheme
headers → 400, --header-map drop/refuse/dangerous, and --forwarder-headers
letting a trusted proxy set SCRIPT_NAME."""

import json
import textwrap

import pytest
from helpers import RawConnection, differs_on_gunicorn


def environ(server, headers=(), path="/echo", unix_path=None):
    """The echo app's environ for one GET with ``headers``, or the status if not 200."""
    lines = [f"GET {path} HTTP/1.1", "Host: example.test", "Connection: close"]
    lines += [f"{k}: {v}" for k, v in headers]
    raw = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    if unix_path:
        conn = RawConnection(unix_path=unix_path)
    else:
        conn = RawConnection(server.port)
    with conn:
        conn.send(raw)
        resp = conn.read_response()
    if resp.status != 200:
        return resp.status
    return json.loads(resp.body)["environ"]


def test_a_trusted_proxy_sets_https_with_gunicorns_default_headers(server_factory):
    server = server_factory("wsgi_apps")
    assert environ(server)["wsgi.url_scheme"] == "http"
    for header, value in [
        ("X-Forwarded-Proto", "https"),
        ("X-Forwarded-Ssl", "on"),
        ("X-Forwarded-Protocol", "ssl"),
    ]:
        env = environ(server, [(header, value)])
        assert env["wsgi.url_scheme"] == "https", header
        # A TCP listener names itself, whatever the scheme (as in gunicorn).
        assert env["SERVER_PORT"] == str(server.port)
    assert environ(server, [("X-Forwarded-Proto", "http")])["wsgi.url_scheme"] == "http"


def test_an_untrusted_peer_cannot_claim_https(server_factory):
    server = server_factory("wsgi_apps", ["--forwarded-allow-ips", "10.20.30.40,192.168.0.0/16"])
    env = environ(server, [("X-Forwarded-Proto", "https")])
    assert env["wsgi.url_scheme"] == "http"
    # The header itself still reaches the app, as in gunicorn.
    assert env["HTTP_X_FORWARDED_PROTO"] == "https"


def test_forwarded_allow_ips_from_the_environment(server_factory):
    server = server_factory("wsgi_apps", env={"FORWARDED_ALLOW_IPS": "10.20.30.40"})
    assert environ(server, [("X-Forwarded-Proto", "https")])["wsgi.url_scheme"] == "http"
    server = server_factory("wsgi_apps", env={"FORWARDED_ALLOW_IPS": "127.0.0.0/8"})
    assert environ(server, [("X-Forwarded-Proto", "https")])["wsgi.url_scheme"] == "https"


def test_contradictory_scheme_headers_get_400_and_never_reach_the_app(server_factory):
    server = server_factory("wsgi_apps", ["--access-logfile", "-"])
    status = environ(server, [("X-Forwarded-Proto", "https"), ("X-Forwarded-Ssl", "off")])
    assert status == 400
    assert (
        environ(server, [("X-Forwarded-Proto", "https"), ("X-Forwarded-Ssl", "on")])[
            "wsgi.url_scheme"
        ]
        == "https"
    )


def test_secure_scheme_headers_from_a_config_file(server_factory, tmp_path):
    conf = tmp_path / "gunicorn.conf.py"
    conf.write_text(
        textwrap.dedent(
            """\
            secure_scheme_headers = {"X-SCHEME": "https"}
            forwarded_allow_ips = "*"
            """
        )
    )
    server = server_factory("wsgi_apps", ["-c", str(conf)])
    assert environ(server, [("X-Scheme", "https")])["wsgi.url_scheme"] == "https"
    # The defaults were replaced, not extended.
    assert environ(server, [("X-Forwarded-Proto", "https")])["wsgi.url_scheme"] == "http"


def test_unix_socket_peers_are_trusted(server_factory, tmp_path):
    sock = tmp_path / "s.sock"
    server = server_factory("wsgi_apps", binds=[f"unix:{sock}"])
    env = environ(server, [("X-Forwarded-Proto", "https")], unix_path=str(sock))
    assert env["wsgi.url_scheme"] == "https"
    # Behind a Unix socket the Host header names the server, with the scheme's port.
    assert (env["SERVER_NAME"], env["SERVER_PORT"]) == ("example.test", "443")


def test_header_map_drop_is_the_default(server_factory):
    server = server_factory("wsgi_apps")
    env = environ(server, [("X-Forwarded-For", "1.1.1.1"), ("X_Forwarded_For", "6.6.6.6")])
    assert env["HTTP_X_FORWARDED_FOR"] == "1.1.1.1"


def test_header_map_refuse_answers_400(server_factory):
    server = server_factory("wsgi_apps", ["--header-map", "refuse"])
    assert environ(server, [("X_Evil", "1")]) == 400
    assert environ(server, [("X-Fine", "1")])["HTTP_X_FINE"] == "1"


def test_header_map_dangerous_maps_underscores_like_dashes(server_factory):
    server = server_factory("wsgi_apps", ["--header-map", "dangerous"])
    env = environ(server, [("X_Custom", "u")])
    assert env["HTTP_X_CUSTOM"] == "u"


@differs_on_gunicorn("gunicorn answers a SCRIPT_NAME outside the path with 400, ferrocorn 404")
def test_a_trusted_proxy_may_set_script_name(server_factory):
    server = server_factory("wsgi_apps")
    env = environ(server, [("SCRIPT_NAME", "/mount")], path="/mount/echo")
    assert (env["SCRIPT_NAME"], env["PATH_INFO"]) == ("/mount", "/echo")
    assert environ(server, [("SCRIPT_NAME", "/mount")], path="/elsewhere") == 404


def test_an_untrusted_peer_cannot_set_script_name(server_factory):
    server = server_factory("wsgi_apps", ["--forwarded-allow-ips", "10.0.0.1"])
    env = environ(server, [("SCRIPT_NAME", "/mount")], path="/mount/echo")
    assert (env["SCRIPT_NAME"], env["PATH_INFO"]) == ("", "/mount/echo")
    assert "HTTP_SCRIPT_NAME" not in env


@pytest.mark.parametrize("mode", ["drop", "refuse", "dangerous"])
def test_forwarder_headers_star_trusts_every_underscore_header(server_factory, mode):
    server = server_factory("wsgi_apps", ["--forwarder-headers", "*", "--header-map", mode])
    assert environ(server, [("X_Real_Ip", "9.9.9.9")])["HTTP_X_REAL_IP"] == "9.9.9.9"


# -- the PROXY protocol ------------------------------------------------------------------

V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"


def v2_header(src, dst, sport, dport):
    body = bytes(map(int, src.split("."))) + bytes(map(int, dst.split(".")))
    body += sport.to_bytes(2, "big") + dport.to_bytes(2, "big")
    return V2_SIGNATURE + bytes([0x21, 0x11]) + len(body).to_bytes(2, "big") + body


def raw_exchange(server, data):
    import socket

    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as s:
        s.sendall(data)
        out = b""
        while chunk := s.recv(65536):
            out += chunk
    return out


GET_ECHO = b"GET /echo HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"


def echoed_environ(response):
    head, _, body = response.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 "), response[:300]
    if b"chunked" in head.lower():
        body = b"".join(body.split(b"\r\n")[1::2])
    return json.loads(body)["environ"]


def test_a_proxy_protocol_v1_header_names_the_client(server_factory):
    # The bare flag means `auto` (gunicorn 23 spelled it so); a value must then not follow.
    server = server_factory("wsgi_apps", ["--proxy-protocol", "--threads", "2"])
    header = b"PROXY TCP4 203.0.113.7 198.51.100.1 40123 443\r\n"
    env = echoed_environ(raw_exchange(server, header + GET_ECHO))
    assert (env["REMOTE_ADDR"], env["REMOTE_PORT"]) == ("203.0.113.7", "40123")
    # The server is still named by the socket it listens on, as in gunicorn.
    assert (env["SERVER_NAME"], env["SERVER_PORT"]) == ("127.0.0.1", str(server.port))
    # Without a header the connection is served as sent.
    env = echoed_environ(raw_exchange(server, GET_ECHO))
    assert env["REMOTE_ADDR"] == "127.0.0.1"


def test_a_proxy_protocol_v2_header_names_the_client(server_factory):
    server = server_factory("wsgi_apps", ["--proxy-protocol", "v2"])
    header = v2_header("192.0.2.55", "192.0.2.1", 5555, 8443)
    env = echoed_environ(raw_exchange(server, header + GET_ECHO))
    assert (env["REMOTE_ADDR"], env["REMOTE_PORT"]) == ("192.0.2.55", "5555")


def test_a_malformed_proxy_header_gets_400_and_a_closed_connection(server_factory):
    server = server_factory("wsgi_apps", ["--proxy-protocol", "auto"])
    out = raw_exchange(server, b"PROXY TCP4 not-an-ip 1.2.3.4 1 2\r\n" + GET_ECHO)
    assert out.startswith(b"HTTP/1.1 400 ")
    assert out.count(b"HTTP/1.1") == 1


def test_a_peer_outside_proxy_allow_from_cannot_send_a_proxy_header(server_factory):
    server = server_factory(
        "wsgi_apps", ["--proxy-protocol", "v1", "--proxy-allow-from", "10.9.9.9"]
    )
    out = raw_exchange(server, b"PROXY TCP4 203.0.113.7 198.51.100.1 1 2\r\n" + GET_ECHO)
    assert out.startswith(b"HTTP/1.1 4"), out[:100]
    assert b"203.0.113.7" not in out
