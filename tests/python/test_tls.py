"""TLS with rustls under gunicorn's flags, tested with Python's ``ssl`` and curl
against certificates made with ``openssl`` at test time: every key format
(PKCS#1, PKCS#8, SEC1), files that do not load (exit 1, one line naming the
file), client certificates (``--cert-reqs 1|2`` with ``--ca-certs``; the
certificate reaches the environ as ``SSL_CLIENT_CERT``), ``--ciphers``,
``--tls-min-version`` and SIGHUP re-reading the certificate."""

import http.client
import json
import shutil
import signal
import ssl
import subprocess
import time

import pytest
from helpers import IS_GUNICORN, booted_pids, run_cli
from tls_certs import make_certs

pytestmark = [
    pytest.mark.skipif(IS_GUNICORN, reason="ferrocorn's TLS flags and environ names"),
    pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command"),
]


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    return make_certs(tmp_path_factory.mktemp("certs"))


def tls_args(certs, cert="rsa.pem", key="rsa-pkcs8.key", *more):
    return ["--certfile", str(certs.path(cert)), "--keyfile", str(certs.path(key)), *more]


def client_context(certs, client_cert=False, max_version=None):
    ctx = ssl.create_default_context(cafile=str(certs.ca))
    if client_cert:
        ctx.load_cert_chain(str(certs.path("client.pem")), str(certs.path("client.key")))
    if max_version:
        ctx.maximum_version = max_version
    return ctx


def get(server, ctx, path="/echo", host="localhost"):
    """One HTTPS GET: (status, echo JSON or body, the TLS session's cipher tuple, peer cert)."""
    conn = http.client.HTTPSConnection(host, server.port, context=ctx, timeout=10)
    try:
        conn.connect()
        # Read first: a response with `Connection: close` takes the socket away.
        cipher = conn.sock.cipher()
        peer = conn.sock.getpeercert()
        conn.request("GET", path)
        resp = conn.getresponse()
        body = resp.read()
    finally:
        conn.close()
    try:
        body = json.loads(body)
    except ValueError:
        pass
    return resp.status, body, cipher, peer


def serial(peer):
    return int(peer["serialNumber"], 16)


def test_https_with_python_ssl_and_curl_verifying_the_test_ca(server_factory, certs):
    server = server_factory("wsgi_apps", tls_args(certs))
    assert server.url.startswith("https://127.0.0.1:")
    status, body, _, peer = get(server, client_context(certs))
    assert status == 200
    env = body["environ"]
    assert env["wsgi.url_scheme"] == "https"
    assert env["HTTPS"] == "on"
    assert "SSL_CLIENT_CERT" not in env
    assert env["SERVER_PROTOCOL"] == "HTTP/1.1"
    assert serial(peer) == 1001
    out = subprocess.run(
        ["curl", "-sS", "--cacert", str(certs.ca), f"https://localhost:{server.port}/echo"],
        capture_output=True,
        timeout=20,
        check=True,
    )
    assert json.loads(out.stdout)["environ"]["wsgi.url_scheme"] == "https"
    # A client that does not trust the CA fails the handshake.
    with pytest.raises(ssl.SSLCertVerificationError):
        get(server, ssl.create_default_context())


@pytest.mark.parametrize(
    "cert,key",
    [
        ("rsa.pem", "rsa-pkcs1.key"),
        ("rsa.pem", "rsa-pkcs8.key"),
        ("ec.pem", "ec-sec1.key"),
        ("ec.pem", "ec-pkcs8.key"),
    ],
)
def test_each_key_format_is_served(server_factory, certs, cert, key):
    server = server_factory("wsgi_apps", tls_args(certs, cert, key))
    status, _, _, peer = get(server, client_context(certs))
    assert status == 200
    assert serial(peer) == (1001 if cert == "rsa.pem" else 2001)


def test_the_key_may_sit_in_the_certificate_file(server_factory, certs, tmp_path):
    both = tmp_path / "both.pem"
    both.write_bytes(certs.path("ec.pem").read_bytes() + certs.path("ec-sec1.key").read_bytes())
    server = server_factory("wsgi_apps", ["--certfile", str(both)])
    assert get(server, client_context(certs))[0] == 200


@pytest.mark.parametrize(
    "case,message",
    [
        ("missing-cert", "Cannot read certfile"),
        ("empty-cert", "No certificate in certfile"),
        ("no-key", "No private key"),
        ("mismatch", "does not match the certificate"),
        ("missing-ca", "Cannot read ca_certs"),
    ],
)
def test_files_that_do_not_load_exit_1_with_one_line_naming_the_file(
    certs, tmp_path, case, message
):
    empty = tmp_path / "empty.pem"
    empty.write_text("")
    missing = tmp_path / "missing.pem"
    cert, key, more = certs.path("rsa.pem"), certs.path("rsa-pkcs8.key"), []
    named = {
        "missing-cert": missing,
        "empty-cert": empty,
        "no-key": cert,
        "mismatch": certs.path("ec-sec1.key"),
        "missing-ca": missing,
    }[case]
    if case in ("missing-cert", "empty-cert"):
        cert = named
    elif case in ("no-key", "mismatch"):
        key = named
    else:
        more = ["--ca-certs", str(missing), "--cert-reqs", "2"]
    args = ["--certfile", str(cert), "--keyfile", str(key), *more, "wsgi_apps"]
    result = run_cli(["--bind", "127.0.0.1:0", *args], cwd=tmp_path)
    assert result.returncode == 1, result.stderr
    lines = [line for line in result.stderr.splitlines() if message in line]
    assert len(lines) == 1, result.stderr
    assert str(named) in lines[0]
    assert "Listening at" not in result.stderr


def test_cert_reqs_2_refuses_a_client_without_a_certificate(server_factory, certs):
    server = server_factory(
        "wsgi_apps", tls_args(certs, "rsa.pem", "rsa-pkcs8.key", "--ca-certs", str(certs.ca),
                              "--cert-reqs", "2")
    )  # fmt: skip
    # With TLS 1.3 the client learns of the refusal on its first read.
    with pytest.raises((ssl.SSLError, ConnectionError)):
        get(server, client_context(certs))
    status, body, _, _ = get(server, client_context(certs, client_cert=True))
    assert status == 200
    sent = ssl.PEM_cert_to_DER_cert(certs.path("client.pem").read_text())
    seen = body["environ"]["SSL_CLIENT_CERT"]
    assert seen.startswith("-----BEGIN CERTIFICATE-----\n")
    assert ssl.PEM_cert_to_DER_cert(seen) == sent


def test_cert_reqs_1_serves_clients_with_and_without_a_certificate(server_factory, certs):
    server = server_factory(
        "wsgi_apps", tls_args(certs, "rsa.pem", "rsa-pkcs8.key", "--ca-certs", str(certs.ca),
                              "--cert-reqs", "1")
    )  # fmt: skip
    status, body, _, _ = get(server, client_context(certs))
    assert status == 200
    assert "SSL_CLIENT_CERT" not in body["environ"]
    status, body, _, _ = get(server, client_context(certs, client_cert=True))
    assert status == 200
    assert "SSL_CLIENT_CERT" in body["environ"]


def test_a_client_certificate_from_another_ca_is_refused(server_factory, certs, tmp_path):
    other = make_certs(tmp_path)
    server = server_factory(
        "wsgi_apps", tls_args(certs, "rsa.pem", "rsa-pkcs8.key", "--ca-certs", str(certs.ca),
                              "--cert-reqs", "1")
    )  # fmt: skip
    ctx = client_context(certs)
    ctx.load_cert_chain(str(other.path("client.pem")), str(other.path("client.key")))
    with pytest.raises((ssl.SSLError, ConnectionError)):
        get(server, ctx)


def test_cert_reqs_without_ca_certs_is_refused(certs, tmp_path):
    result = run_cli(["--bind", "127.0.0.1:0", *tls_args(certs), "--cert-reqs", "2", "wsgi_apps"])
    assert result.returncode == 1
    assert "--ca-certs" in result.stderr


def test_a_mapped_cipher_restricts_the_negotiated_suite(server_factory, certs):
    server = server_factory(
        "wsgi_apps", tls_args(certs, "rsa.pem", "rsa-pkcs8.key", "--ciphers",
                              "ECDHE-RSA-CHACHA20-POLY1305:TLS_CHACHA20_POLY1305_SHA256")
    )  # fmt: skip
    _, _, cipher, _ = get(server, client_context(certs))
    assert cipher[:2] == ("TLS_CHACHA20_POLY1305_SHA256", "TLSv1.3")
    _, _, cipher, _ = get(server, client_context(certs, max_version=ssl.TLSVersion.TLSv1_2))
    assert cipher[:2] == ("ECDHE-RSA-CHACHA20-POLY1305", "TLSv1.2")
    # A client that offers none of them is refused.
    ctx = client_context(certs, max_version=ssl.TLSVersion.TLSv1_2)
    ctx.set_ciphers("ECDHE-RSA-AES128-GCM-SHA256")
    with pytest.raises(ssl.SSLError):
        get(server, ctx)


def test_an_unknown_cipher_exits_2_naming_it(tmp_path, certs):
    result = run_cli(
        ["--bind", "127.0.0.1:0", *tls_args(certs), "--ciphers", "HIGH:NO-SUCH-CIPHER", "wsgi_apps"]
    )
    assert result.returncode == 2
    assert "'NO-SUCH-CIPHER'" in result.stderr
    # Real OpenSSL ciphers rustls does not implement, and nothing else: nothing is left.
    result = run_cli(
        ["--bind", "127.0.0.1:0", *tls_args(certs), "--ciphers", "RC4:DES-CBC3-SHA", "wsgi_apps"]
    )
    assert result.returncode == 2
    assert "does not implement RC4, DES-CBC3-SHA" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


# Mozilla's "intermediate" server configuration, as gunicorn users paste it.
MOZILLA_INTERMEDIATE = (
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:"
    "ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305:"
    "DHE-RSA-AES128-GCM-SHA256:DHE-RSA-AES256-GCM-SHA384:DHE-RSA-CHACHA20-POLY1305"
)


def test_a_pasted_openssl_list_serves_what_rustls_has_and_names_the_rest(server_factory, certs):
    # OpenSSL (so gunicorn) leaves out what it cannot use; so does ferrocorn, and says so.
    server = server_factory("wsgi_apps", [*tls_args(certs), "--ciphers", MOZILLA_INTERMEDIATE])
    _, _, cipher, _ = get(server, client_context(certs, max_version=ssl.TLSVersion.TLSv1_2))
    assert cipher[:2] == ("ECDHE-RSA-AES128-GCM-SHA256", "TLSv1.2")
    warning = [line for line in server.err_lines if "ciphers:" in line]
    assert len(warning) == 1, server.err_lines
    assert (
        "DHE-RSA-AES128-GCM-SHA256, DHE-RSA-AES256-GCM-SHA384, DHE-RSA-CHACHA20-POLY1305"
        in (warning[0])
    )


def test_min_version_1_3_refuses_a_tls_1_2_client(server_factory, certs):
    server = server_factory("wsgi_apps", tls_args(certs) + ["--tls-min-version", "1.3"])
    with pytest.raises(ssl.SSLError):
        get(server, client_context(certs, max_version=ssl.TLSVersion.TLSv1_2))
    _, _, cipher, _ = get(server, client_context(certs))
    assert cipher[1] == "TLSv1.3"
    # TLS 1.2 is accepted by default.
    server = server_factory("wsgi_apps", tls_args(certs))
    _, _, cipher, _ = get(server, client_context(certs, max_version=ssl.TLSVersion.TLSv1_2))
    assert cipher[1] == "TLSv1.2"


def serial_served(server, certs, want, timeout=30.0):
    """New connections until one is served the certificate with serial ``want``."""
    deadline = time.monotonic() + timeout
    seen = None
    while time.monotonic() < deadline:
        seen = serial(get(server, client_context(certs))[3])
        if seen == want:
            return
    raise AssertionError(f"serial {want} never served; last {seen}\n{server.err_text()}")


def test_sighup_rereads_the_certificate_and_a_bad_one_keeps_the_old(
    server_factory, certs, tmp_path
):
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    shutil.copy(certs.path("rsa.pem"), cert)
    shutil.copy(certs.path("rsa-pkcs1.key"), key)
    server = server_factory("wsgi_apps", ["--certfile", str(cert), "--keyfile", str(key)])
    assert serial(get(server, client_context(certs))[3]) == 1001
    pid = get(server, client_context(certs))[1]["pid"]
    assert pid == server.pid

    # A renewed certificate (same key, new serial) is served after SIGHUP.
    shutil.copy(certs.sign(str(key), "renewed.pem", 1002), cert)
    mark = server.log_mark()
    server.send_signal(signal.SIGHUP)
    booted_pids(server, 1, since=mark)
    serial_served(server, certs, 1002)
    assert server.proc.poll() is None

    # A broken one is refused with an error; the running certificate stays.
    cert.write_text("not a certificate\n")
    mark = server.log_mark()
    server.send_signal(signal.SIGHUP)
    server.wait_for_log(r"No certificate in certfile .*cert\.pem", since=mark, timeout=15)
    assert serial(get(server, client_context(certs))[3]) == 1002
    assert server.proc.poll() is None
    assert server.stop().code == 0
