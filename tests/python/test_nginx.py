"""The shipped nginx configs, run with Debian's nginx in front of ferrocorn on a unix socket.

examples/nginx/ferrocorn.conf (TLS in nginx, HTTP redirects) and docker/nginx.conf (compose:
plain HTTP, a load balancer's X-Forwarded-Proto passed on) are rendered into a temporary nginx
tree with only paths and ports replaced (each replaced string must be in the file, so an edit
that drops one fails here), nginx runs as the current user (``-p tmpdir -c nginx.conf``) and a
real client checks what the app sees: X-Forwarded-For/-Proto/-Host, Host, https as
``wsgi.url_scheme``, a streamed response, a 5 MiB upload, nginx's body limit, the static
location, and kept-alive upstream connections. The app is wsgi_apps behind werkzeug's ProxyFix
(tests/apps/proxied.py), as the docs recommend.
"""

import hashlib
import http.client
import json
import shutil
import ssl
import subprocess

import pytest
import requests
from helpers import APPS_DIR, REPO, free_port, pattern_bytes
from nginx_runner import NGINX, Nginx, render

OPENSSL = shutil.which("openssl")
pytestmark = pytest.mark.skipif(NGINX is None, reason="nginx is not installed")

EXAMPLE = REPO / "examples" / "nginx" / "ferrocorn.conf"
COMPOSE_CONF = REPO / "docker" / "nginx.conf"
SOCKET_IN_CONFIGS = "unix:/run/ferrocorn/ferrocorn.sock"


@pytest.fixture
def nginx_factory(tmp_path):
    started = []

    def start(site):
        n = Nginx(tmp_path, site)
        started.append(n)
        return n

    yield start
    for n in started:
        n.stop()


@pytest.fixture
def app_socket(server_factory, tmp_path):
    """ferrocorn serving tests/apps/proxied.py on a unix socket, as the configs' comments say."""
    sock = tmp_path / "ferrocorn.sock"
    server_factory(
        "proxied:app",
        ["--threads", "4", "--keep-alive", "75"],
        binds=[f"unix:{sock}"],
        chdir=APPS_DIR,
    )
    return sock


def accepted(sock):
    """The inodes of ferrocorn's accepted ends of ``sock`` (connected, not listening)."""
    inodes = set()
    with open("/proc/net/unix") as f:
        next(f)
        for line in f:
            fields = line.split()
            if len(fields) == 8 and fields[7] == str(sock) and fields[5] == "03":
                inodes.add(fields[6])
    return inodes


def echo(conn, method="GET", path="/echo", headers=None, body=None):
    conn.request(method, path, body=body, headers=headers or {})
    resp = conn.getresponse()
    data = resp.read()
    assert resp.status == 200, (resp.status, data[:500])
    return resp, json.loads(data)


@pytest.fixture
def tls_files(tmp_path):
    if OPENSSL is None:
        pytest.skip("openssl is not installed")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [OPENSSL, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2"]
        + ["-keyout", str(key), "-out", str(cert), "-subj", "/CN=example.com"]
        + ["-addext", "subjectAltName=DNS:example.com,IP:127.0.0.1"],
        check=True,
        capture_output=True,
    )
    return cert, key


@pytest.fixture
def example_site(nginx_factory, app_socket, tls_files, tmp_path):
    """examples/nginx/ferrocorn.conf: (http port, https port, CA file, static dir)."""
    cert, key = tls_files
    static = tmp_path / "static"
    static.mkdir()
    (static / "hello.txt").write_text("a static file\n")
    http_port, https_port = free_port(), free_port()
    site = render(
        EXAMPLE,
        [
            (SOCKET_IN_CONFIGS, f"unix:{app_socket}"),
            ("listen 80;", f"listen 127.0.0.1:{http_port};"),
            ("listen [::]:80;", ""),
            ("listen 443 ssl http2;", f"listen 127.0.0.1:{https_port} ssl http2;"),
            ("listen [::]:443 ssl http2;", ""),
            ("/etc/ssl/certs/example.com.pem", str(cert)),
            ("/etc/ssl/private/example.com.key", str(key)),
            ("/srv/myproject/static/", f"{static}/"),
        ],
    )
    nginx_factory(site)
    return http_port, https_port, cert, app_socket


def https_connection(port, cafile, source="127.0.0.1"):
    context = ssl.create_default_context(cafile=str(cafile))
    return http.client.HTTPSConnection(
        "127.0.0.1", port, context=context, timeout=20, source_address=(source, 0)
    )


def test_example_passes_the_client_scheme_and_host_to_the_app(example_site):
    _, https_port, cert, _ = example_site
    # From 127.0.0.2, with a forged X-Forwarded-For that nginx appends to.
    conn = https_connection(https_port, cert, source="127.0.0.2")
    _, body = echo(conn, headers={"Host": "example.com", "X-Forwarded-For": "203.0.113.9"})
    env = body["environ"]
    assert env["HTTP_X_FORWARDED_FOR"] == "203.0.113.9, 127.0.0.2"
    assert env["HTTP_X_FORWARDED_PROTO"] == "https"
    assert env["HTTP_X_FORWARDED_HOST"] == "example.com"
    assert env["HTTP_HOST"] == "example.com"
    # ferrocorn trusts its unix socket peer with X-Forwarded-Proto, and names no client itself.
    assert env["server.wsgi.url_scheme"] == "https"
    assert env["server.REMOTE_ADDR"] == ""
    # ProxyFix takes nginx's entry (the real peer), not the forged one.
    assert env["REMOTE_ADDR"] == "127.0.0.2"
    assert (env["SERVER_NAME"], env["SERVER_PORT"]) == ("example.com", "443")
    conn.close()


def test_example_redirects_plain_http_to_https(example_site):
    http_port = example_site[0]
    r = requests.get(
        f"http://127.0.0.1:{http_port}/echo?a=1",
        headers={"Host": "example.com"},
        allow_redirects=False,
        timeout=10,
    )
    assert r.status_code == 301
    assert r.headers["Location"] == "https://example.com/echo?a=1"


def test_example_streams_uploads_limits_and_static_files(example_site, tmp_path):
    _, https_port, cert, _ = example_site
    url = f"https://127.0.0.1:{https_port}"
    # verify= on each request: a session's verify loses to REQUESTS_CA_BUNDLE.
    with requests.Session() as s:
        # A streamed (chunked, unbuffered by the app) response arrives whole.
        r = s.get(url + "/stream?n=200&size=1000&delay=0.001", verify=cert, timeout=30)
        assert r.status_code == 200
        lines = r.content.split(b"\n")[:-1]
        assert len(lines) == 200 and all(len(line) == 999 for line in lines)
        assert [line.split(b".")[0] for line in lines[:3]] == [b"chunk 0", b"chunk 1", b"chunk 2"]

        # 5 MiB up, within client_max_body_size, read by the app to the last byte.
        data = pattern_bytes(5 * 1024 * 1024)
        r = s.post(url + "/echo", data=data, verify=cert, timeout=60)
        assert r.status_code == 200
        assert r.json()["body_len"] == len(data)
        assert r.json()["body_sha256"] == hashlib.sha256(data).hexdigest()

        # The static location is nginx's own: the file, with the expiry the config sets.
        r = s.get(url + "/static/hello.txt", verify=cert, timeout=10)
        assert (r.status_code, r.text) == (200, "a static file\n")
        assert r.headers["Cache-Control"] == "max-age=604800"

    # Beyond client_max_body_size nginx answers 413 from the Content-Length alone.
    conn = https_connection(https_port, cert)
    conn.putrequest("POST", "/echo")
    conn.putheader("Content-Length", str(25 * 1024 * 1024))
    conn.endheaders()
    assert conn.getresponse().status == 413
    conn.close()


def test_example_keeps_upstream_connections_alive(example_site):
    _, https_port, cert, sock = example_site
    seen = []
    for _ in range(5):
        # A new client connection each time: only the upstream side can be reused.
        conn = https_connection(https_port, cert)
        echo(conn, headers={"Host": "example.com"})
        conn.close()
        seen.append(accepted(sock))
    # One nginx worker, requests one after the other: the same connection to ferrocorn each
    # time (without `keepalive` each request would be a new one, with a new inode).
    assert len(seen[0]) == 1 and all(s == seen[0] for s in seen), seen


@pytest.fixture
def compose_site(nginx_factory, app_socket):
    port = free_port()
    site = render(
        COMPOSE_CONF,
        [(SOCKET_IN_CONFIGS, f"unix:{app_socket}"), ("listen 80;", f"listen 127.0.0.1:{port};")],
    )
    nginx_factory(site)
    return port, app_socket


def test_compose_config_passes_a_load_balancers_scheme(compose_site):
    port, sock = compose_site
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
    _, body = echo(conn, headers={"X-Forwarded-For": "198.51.100.4"})
    env = body["environ"]
    assert env["server.wsgi.url_scheme"] == "http"
    # The published port stays in Host (compose maps 8080 to nginx's 80).
    assert env["HTTP_HOST"] == f"127.0.0.1:{port}"
    assert env["HTTP_X_FORWARDED_FOR"] == "198.51.100.4, 127.0.0.1"
    assert env["REMOTE_ADDR"] == "127.0.0.1"

    _, body = echo(conn, headers={"X-Forwarded-Proto": "https"})
    assert body["environ"]["server.wsgi.url_scheme"] == "https"

    first = accepted(sock)
    data = pattern_bytes(5 * 1024 * 1024)
    _, body = echo(conn, "POST", body=data)
    assert body["body_sha256"] == hashlib.sha256(data).hexdigest()
    conn.close()
    assert len(first) == 1 and accepted(sock) == first
