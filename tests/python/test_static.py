"""``--static URL_PREFIX=DIR``: files served from Rust without the app.

Every header and status of docs/static.md over a real socket: 200 with its headers and exact
types, HEAD, 304 (If-None-Match, If-Modified-Since), 412, the three range forms (206), 416,
If-Range, several ranges, precompressed siblings (br, gzip, q=0, identity) and Vary,
directories, missing files, 405, traversal attempts sent as raw bytes, requests outside the
mount reaching the app, the access log, the config file, and startup errors. gunicorn has no
``--static``, so the module is skipped when the suite runs against it.
"""

import email.utils
import gzip
import os
import re
import subprocess
import threading
import time

import pytest
from helpers import APPS_DIR, IS_GUNICORN, RawConnection, run_cli

pytestmark = pytest.mark.skipif(IS_GUNICORN, reason="gunicorn has no --static")

MTIME = 1_700_000_000
HTTP_MTIME = email.utils.formatdate(MTIME, usegmt=True)
TEXT = "héllo, static world\n".encode()
CSS = b"body { color: #333; }\n"
JS = b"console.log('plain javascript');\n" * 20
FAKE_BR = b"pretend these are brotli bytes"
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 8
SECRET = b"TOP-SECRET-a1b2c3 (outside the static directory)\n"
BIG = bytes((i * 7 + i // 251) % 256 for i in range(3 * 1024 * 1024 + 17))


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    base = tmp_path_factory.mktemp("site")
    public = base / "public"
    public.mkdir()
    (base / "secret.txt").write_bytes(SECRET)
    (public / "hello.txt").write_bytes(TEXT)
    (public / "site.css").write_bytes(CSS)
    (public / "app.js").write_bytes(JS)
    (public / "app.js.br").write_bytes(FAKE_BR)
    (public / "app.js.gz").write_bytes(gzip.compress(JS, mtime=0))
    (public / "only-gz.css").write_bytes(CSS)
    (public / "only-gz.css.gz").write_bytes(gzip.compress(CSS, mtime=0))
    (public / "image.png").write_bytes(PNG)
    (public / "data.unknownext").write_bytes(b"\x00\x01")
    (public / "sp ace.txt").write_bytes(b"a space\n")
    (public / "big.bin").write_bytes(BIG)
    (public / "empty.txt").write_bytes(b"")
    (public / "sub").mkdir()
    (public / "sub" / "index.html").write_bytes(b"<p>no index magic</p>")
    (public / "sub" / "page.html").write_bytes(b"<p>page</p>")
    (public / "link-inside.txt").symlink_to(public / "hello.txt")
    (public / "link-out.txt").symlink_to(base / "secret.txt")
    (public / "dir-out").symlink_to(base)
    # A sibling that points out of the directory is never served either.
    (public / "evil.txt").write_bytes(b"evil plain\n")
    (public / "evil.txt.gz").symlink_to(base / "secret.txt")
    os.utime(public / "hello.txt", (MTIME, MTIME))
    return base


@pytest.fixture(scope="module")
def server(module_server_factory, site):
    return module_server_factory("wsgi_apps", ["--static", f"/static/={site / 'public'}"])


def request(server, method, target, headers=(), body=b""):
    with RawConnection(server.port) as conn:
        return conn.request(method, target, list(headers), body)


def get(server, target, headers=()):
    return request(server, "GET", target, headers)


def assert_still_in_step(conn):
    """The connection carries no stray body bytes: the next response parses."""
    resp = conn.request("GET", "/static/site.css")
    assert resp.status == 200 and resp.body == CSS


# -- 200 and its headers ----------------------------------------------------------------------


def test_a_file_with_every_header(server):
    resp = get(server, "/static/hello.txt")
    assert resp.status == 200
    assert resp.body == TEXT
    assert resp.header("Content-Type") == "text/plain; charset=utf-8"
    assert resp.header("Content-Length") == str(len(TEXT))
    assert resp.header("Last-Modified") == HTTP_MTIME
    assert re.fullmatch(r'"[0-9a-f]+-[0-9a-f]+\.[0-9a-f]+"', resp.header("ETag"))
    assert resp.header("Accept-Ranges") == "bytes"
    assert resp.header("Vary") is None
    assert resp.header("Content-Encoding") is None
    assert resp.header("Server") == "ferrocorn"
    assert resp.header("Date") is not None


@pytest.mark.parametrize(
    ("name", "content_type", "body"),
    [
        ("site.css", "text/css; charset=utf-8", CSS),
        ("app.js", "text/javascript; charset=utf-8", JS),
        ("image.png", "image/png", PNG),
        ("data.unknownext", "application/octet-stream", b"\x00\x01"),
        ("sub/page.html", "text/html; charset=utf-8", b"<p>page</p>"),
        ("empty.txt", "text/plain; charset=utf-8", b""),
    ],
)
def test_content_types_and_exact_bytes(server, name, content_type, body):
    resp = get(server, f"/static/{name}")
    assert resp.status == 200
    assert resp.header("Content-Type") == content_type
    assert resp.header("Content-Length") == str(len(body))
    assert resp.body == body


def test_percent_encoded_names_are_decoded(server):
    resp = get(server, "/static/sp%20ace.txt")
    assert (resp.status, resp.body) == (200, b"a space\n")


def test_query_strings_are_ignored(server):
    resp = get(server, "/static/site.css?v=3")
    assert (resp.status, resp.body) == (200, CSS)


def test_a_symlink_inside_the_directory_is_served(server):
    resp = get(server, "/static/link-inside.txt")
    assert (resp.status, resp.body) == (200, TEXT)


def test_a_large_file_streams_whole_and_in_ranges(server):
    resp = get(server, "/static/big.bin")
    assert resp.status == 200
    assert resp.header("Content-Length") == str(len(BIG))
    assert resp.body == BIG
    start, end = 1_000_000, 2_600_000
    resp = get(server, "/static/big.bin", [("Range", f"bytes={start}-{end}")])
    assert resp.status == 206
    assert resp.header("Content-Range") == f"bytes {start}-{end}/{len(BIG)}"
    assert resp.body == BIG[start : end + 1]


# -- HEAD -------------------------------------------------------------------------------------


def test_head_has_the_headers_of_get_and_no_body(server):
    got = get(server, "/static/app.js", [("Accept-Encoding", "gzip")])
    with RawConnection(server.port) as conn:
        head = conn.request("HEAD", "/static/app.js", [("Accept-Encoding", "gzip")])
        assert head.status == 200
        for name in (
            "Content-Type",
            "Content-Length",
            "Content-Encoding",
            "ETag",
            "Last-Modified",
            "Accept-Ranges",
            "Vary",
        ):
            assert head.header(name) == got.header(name), name
        assert_still_in_step(conn)


def test_head_ignores_range(server):
    # RFC 9110 defines Range for GET only.
    with RawConnection(server.port) as conn:
        head = conn.request("HEAD", "/static/hello.txt", [("Range", "bytes=0-1")])
        assert head.status == 200
        assert head.header("Content-Length") == str(len(TEXT))
        assert_still_in_step(conn)


# -- conditional requests ---------------------------------------------------------------------


@pytest.mark.parametrize("form", ["exact", "weak", "list", "star"])
def test_if_none_match_gives_304(server, form):
    etag = get(server, "/static/hello.txt").header("ETag")
    value = {
        "exact": etag,
        "weak": f"W/{etag}",
        "list": f'"nope", {etag}',
        "star": "*",
    }[form]
    with RawConnection(server.port) as conn:
        resp = conn.request("GET", "/static/hello.txt", [("If-None-Match", value)])
        assert resp.status == 304
        assert resp.header("ETag") == etag
        assert resp.header("Last-Modified") == HTTP_MTIME
        assert resp.header("Content-Length") is None
        assert_still_in_step(conn)


def test_if_none_match_on_head_gives_304(server):
    etag = get(server, "/static/hello.txt").header("ETag")
    with RawConnection(server.port) as conn:
        resp = conn.request("HEAD", "/static/hello.txt", [("If-None-Match", etag)])
        assert resp.status == 304
        assert_still_in_step(conn)


def test_a_stale_if_none_match_gets_the_file(server):
    resp = get(server, "/static/hello.txt", [("If-None-Match", '"stale"')])
    assert (resp.status, resp.body) == (200, TEXT)


@pytest.mark.parametrize(
    ("since", "status"),
    [(MTIME, 304), (MTIME + 3600, 304), (MTIME - 1, 200), (None, 200)],
)
def test_if_modified_since(server, since, status):
    value = email.utils.formatdate(since, usegmt=True) if since else "not a date"
    with RawConnection(server.port) as conn:
        resp = conn.request("GET", "/static/hello.txt", [("If-Modified-Since", value)])
        assert resp.status == status
        if status == 304:
            assert resp.header("Last-Modified") == HTTP_MTIME
            assert resp.header("ETag") is not None
        else:
            assert resp.body == TEXT
        assert_still_in_step(conn)


def test_if_none_match_takes_precedence_over_if_modified_since(server):
    resp = get(
        server,
        "/static/hello.txt",
        [("If-None-Match", '"stale"'), ("If-Modified-Since", HTTP_MTIME)],
    )
    assert (resp.status, resp.body) == (200, TEXT)


def test_if_match_that_fails_gives_412(server):
    resp = get(server, "/static/hello.txt", [("If-Match", '"stale"')])
    assert resp.status == 412
    assert resp.body == b""
    etag = get(server, "/static/hello.txt").header("ETag")
    assert get(server, "/static/hello.txt", [("If-Match", etag)]).status == 200


def test_etag_is_stable_across_restarts(server_factory, site):
    args = ["--static", f"/static/={site / 'public'}"]
    first = server_factory("wsgi_apps", args)
    etag = get(first, "/static/hello.txt").header("ETag")
    first.stop()
    second = server_factory("wsgi_apps", args)
    assert get(second, "/static/hello.txt").header("ETag") == etag


# -- ranges -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "start", "end"),
    [
        ("bytes=0-4", 0, 4),
        ("bytes=3-", 3, len(TEXT) - 1),
        ("bytes=-6", len(TEXT) - 6, len(TEXT) - 1),
        ("bytes=2-99999", 2, len(TEXT) - 1),
    ],
)
def test_a_single_range_gives_206(server, spec, start, end):
    resp = get(server, "/static/hello.txt", [("Range", spec)])
    assert resp.status == 206
    assert resp.header("Content-Range") == f"bytes {start}-{end}/{len(TEXT)}"
    assert resp.header("Content-Length") == str(end - start + 1)
    assert resp.header("Content-Type") == "text/plain; charset=utf-8"
    assert resp.body == TEXT[start : end + 1]


@pytest.mark.parametrize("spec", ["bytes=1000-", "bytes=1000-2000", "bytes=-0"])
def test_an_unsatisfiable_range_gives_416(server, spec):
    with RawConnection(server.port) as conn:
        resp = conn.request("GET", "/static/hello.txt", [("Range", spec)])
        assert resp.status == 416
        assert resp.header("Content-Range") == f"bytes */{len(TEXT)}"
        assert resp.body == b""
        assert_still_in_step(conn)


def test_several_ranges_get_the_whole_file(server):
    resp = get(server, "/static/hello.txt", [("Range", "bytes=0-1,4-5")])
    assert resp.status == 200
    assert resp.header("Content-Range") is None
    assert resp.body == TEXT


def test_a_malformed_range_is_ignored(server):
    resp = get(server, "/static/hello.txt", [("Range", "bytes=5-2")])
    assert (resp.status, resp.body) == (200, TEXT)


def test_if_range_with_the_current_etag_or_date_keeps_the_range(server):
    etag = get(server, "/static/hello.txt").header("ETag")
    for validator in (etag, HTTP_MTIME):
        resp = get(server, "/static/hello.txt", [("Range", "bytes=0-1"), ("If-Range", validator)])
        assert (resp.status, resp.body) == (206, TEXT[:2]), validator


def test_if_range_with_a_stale_validator_gets_the_whole_file(server):
    stale_date = email.utils.formatdate(MTIME - 60, usegmt=True)
    etag = get(server, "/static/hello.txt").header("ETag")
    for validator in ('"stale"', f"W/{etag}", stale_date):
        resp = get(server, "/static/hello.txt", [("Range", "bytes=0-1"), ("If-Range", validator)])
        assert (resp.status, resp.body) == (200, TEXT), validator


# -- precompressed siblings -------------------------------------------------------------------


def test_brotli_is_preferred_when_accepted(server):
    resp = get(server, "/static/app.js", [("Accept-Encoding", "gzip, deflate, br")])
    assert resp.status == 200
    assert resp.header("Content-Encoding") == "br"
    assert resp.header("Content-Type") == "text/javascript; charset=utf-8"
    assert resp.header("Content-Length") == str(len(FAKE_BR))
    assert resp.header("Vary") == "Accept-Encoding"
    assert resp.body == FAKE_BR


def test_gzip_when_brotli_is_not_accepted(server):
    for accept in ("gzip", "br;q=0, gzip", "gzip;q=1, br;q=0.5"):
        resp = get(server, "/static/app.js", [("Accept-Encoding", accept)])
        assert resp.header("Content-Encoding") == "gzip", accept
        assert resp.header("Vary").lower() == "accept-encoding"
        assert gzip.decompress(resp.body) == JS


def test_q0_refuses_and_identity_is_sent(server):
    for accept in ("br;q=0, gzip;q=0", "identity", "*;q=0", None):
        headers = [("Accept-Encoding", accept)] if accept is not None else []
        resp = get(server, "/static/app.js", headers)
        assert resp.header("Content-Encoding") is None, accept
        assert resp.header("Vary").lower() == "accept-encoding"
        assert resp.body == JS


def test_a_file_without_siblings_has_no_encoding_and_no_vary(server):
    resp = get(server, "/static/hello.txt", [("Accept-Encoding", "br, gzip")])
    assert resp.header("Content-Encoding") is None
    assert resp.header("Vary") is None
    assert resp.body == TEXT


def test_only_the_siblings_present_are_offered(server):
    resp = get(server, "/static/only-gz.css", [("Accept-Encoding", "br, gzip")])
    assert resp.header("Content-Encoding") == "gzip"
    assert resp.header("Content-Type") == "text/css; charset=utf-8"
    assert gzip.decompress(resp.body) == CSS


def test_each_encoding_has_its_own_etag_and_304(server):
    etags = {}
    for accept in ("br", "gzip", "identity"):
        etags[accept] = get(server, "/static/app.js", [("Accept-Encoding", accept)]).header("ETag")
    assert len(set(etags.values())) == 3, etags
    resp = get(
        server,
        "/static/app.js",
        [("Accept-Encoding", "gzip"), ("If-None-Match", etags["gzip"])],
    )
    assert resp.status == 304
    assert resp.header("Vary").lower() == "accept-encoding"
    resp = get(
        server,
        "/static/app.js",
        [("Accept-Encoding", "br"), ("If-None-Match", etags["gzip"])],
    )
    assert resp.status == 200


def test_a_range_of_a_compressed_file_counts_compressed_bytes(server):
    whole = get(server, "/static/app.js", [("Accept-Encoding", "gzip")]).body
    resp = get(server, "/static/app.js", [("Accept-Encoding", "gzip"), ("Range", "bytes=0-9")])
    assert resp.status == 206
    assert resp.header("Content-Encoding") == "gzip"
    assert resp.header("Content-Range") == f"bytes 0-9/{len(whole)}"
    assert resp.body == whole[:10]


def test_a_sibling_pointing_outside_is_not_served(server):
    resp = get(server, "/static/evil.txt", [("Accept-Encoding", "gzip")])
    assert resp.status == 200
    assert resp.header("Content-Encoding") is None
    assert resp.body == b"evil plain\n"
    assert SECRET not in resp.body


def test_curl_decodes_the_gzip_sibling(server, curl):
    out = subprocess.run(
        [curl, "-s", "--compressed", "-H", "Accept-Encoding: gzip", f"{server.url}/static/app.js"],
        capture_output=True,
        check=True,
        timeout=30,
    )
    assert out.stdout == JS


# -- what is not a file -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "target", ["/static", "/static/", "/static/sub", "/static/sub/", "/static/dir-out"]
)
def test_a_directory_is_404_and_never_listed(server, target):
    resp = get(server, target)
    assert resp.status == 404
    assert b"index" not in resp.body and b"page.html" not in resp.body


@pytest.mark.parametrize("target", ["/static/nope.txt", "/static/sub/nope", "/static/hello.txt/x"])
def test_a_missing_file_is_404(server, target):
    assert get(server, target).status == 404


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "OPTIONS", "PATCH"])
def test_other_methods_get_405_with_allow(server, method):
    with RawConnection(server.port) as conn:
        resp = conn.request(method, "/static/hello.txt", body=b"x" if method != "OPTIONS" else b"")
        assert resp.status == 405
        assert resp.header("Allow") == "GET, HEAD"
        assert TEXT not in resp.body


def test_malformed_percent_encoding_is_400(server):
    assert get(server, "/static/%zz.txt").status == 400


# -- traversal --------------------------------------------------------------------------------

TRAVERSALS = [
    "/static/../secret.txt",
    "/static/./../secret.txt",
    "/static/%2e%2e/secret.txt",
    "/static/%2E%2E/secret.txt",
    "/static/.%2e/secret.txt",
    "/static/..%2Fsecret.txt",
    "/static/..%2fsecret.txt",
    "/static/%2F..%2Fsecret.txt",
    "/static/sub/..%2F..%2Fsecret.txt",
    "/static/sub/../../secret.txt",
    "/static/..\\secret.txt",
    "/static/..%5Csecret.txt",
    "/static/..%5csecret.txt",
    "/static/secret.txt%00",
    "/static/hello.txt%00.png",
    "/static/%00/../secret.txt",
    "/static/link-out.txt",
    "/static/dir-out/secret.txt",
    "/static//etc/passwd",
    "/static/%2Fetc%2Fpasswd",
    "/static///secret.txt",
    "/static/%252e%252e/secret.txt",
    "/static/..%c0%afsecret.txt",
    "/static/../../../../../../etc/passwd",
]


@pytest.mark.parametrize("target", TRAVERSALS)
def test_traversal_attempts_never_reach_the_secret(server, target):
    with RawConnection(server.port) as conn:
        conn.send(f"GET {target} HTTP/1.1\r\nHost: x\r\n\r\n".encode("latin-1"))
        resp = conn.read_response()
    assert resp.status in (400, 404), (target, resp.status)
    assert SECRET not in resp.body
    assert b"root:" not in resp.body


def test_traversal_in_an_absolute_form_target(server):
    with RawConnection(server.port) as conn:
        conn.send(b"GET http://x/static/../secret.txt HTTP/1.1\r\nHost: x\r\n\r\n")
        resp = conn.read_response()
    assert resp.status in (400, 404)
    assert SECRET not in resp.body


# -- the app beside the mounts ----------------------------------------------------------------


@pytest.mark.parametrize("target", ["/hello", "/staticfoo/x", "/static%2Fhello.txt", "/"])
def test_requests_outside_the_mount_reach_the_app(server, target):
    resp = get(server, target)
    assert resp.status == 200
    assert resp.header("Content-Type") == "application/json"
    assert b"PATH_INFO" in resp.body


def test_static_requests_need_no_python_thread(server_factory, site):
    server = server_factory(
        "wsgi_apps",
        ["--threads", "1", "--static", f"/static/={site / 'public'}"],
    )
    done = {}
    busy = threading.Thread(target=lambda: done.setdefault("r", get(server, "/slow?s=3")))
    busy.start()
    server.wait_for_log("slow request started")
    started = time.monotonic()
    resp = get(server, "/static/hello.txt")
    took = time.monotonic() - started
    busy.join(10)
    assert (resp.status, resp.body) == (200, TEXT)
    assert took < 1.5, f"the static request waited {took:.2f} s for the busy pool"
    assert done["r"].status == 200


def test_several_mounts_longest_prefix_first(server_factory, site):
    public = site / "public"
    server = server_factory(
        "wsgi_apps",
        ["--static", f"/assets={public}", "--static", f"/assets/css/={public / 'sub'}"],
    )
    assert get(server, "/assets/hello.txt").body == TEXT
    assert get(server, "/assets/css/page.html").body == b"<p>page</p>"
    assert get(server, "/assets/css/hello.txt").status == 404


def test_worker_processes_serve_static_files(server_factory, site):
    server = server_factory(
        "wsgi_apps", ["--processes", "2", "--static", f"/static/={site / 'public'}"]
    )
    assert get(server, "/static/hello.txt").body == TEXT


# -- access log -------------------------------------------------------------------------------


def test_static_responses_are_in_the_access_log(server_factory, site):
    server = server_factory(
        "wsgi_apps",
        ["--access-logfile", "-", "--static", f"/static/={site / 'public'}"],
    )
    get(server, "/static/hello.txt")
    get(server, "/static/nope.txt")
    get(server, "/static/hello.txt", [("Range", "bytes=0-1")])
    line = server.wait_for_line(r'"GET /static/hello\.txt HTTP/1\.1" 200 ', stream="out").string
    assert re.search(
        rf'^127\.0\.0\.1 - - \[.+\] "GET /static/hello\.txt HTTP/1\.1" 200 {len(TEXT)} ', line
    )
    server.wait_for_line(r'"GET /static/nope\.txt HTTP/1\.1" 404 ', stream="out")
    server.wait_for_line(r'"GET /static/hello\.txt HTTP/1\.1" 206 2 ', stream="out")


# -- configuration ----------------------------------------------------------------------------


def test_a_config_file_sets_static_files(server_factory, site, tmp_path):
    conf = tmp_path / "ferrocorn.conf.py"
    mount = f"/files/={site / 'public'}"
    conf.write_text(f"static_files = [{mount!r}]\n")
    server = server_factory("wsgi_apps", ["-c", str(conf)])
    resp = get(server, "/files/hello.txt")
    assert (resp.status, resp.body) == (200, TEXT)


def test_a_relative_dir_is_taken_from_chdir(server_factory, site):
    server = server_factory(
        "wsgi_apps",
        ["--pythonpath", str(APPS_DIR), "--static", "/static/=public"],
        chdir=site,
    )
    assert get(server, "/static/hello.txt").body == TEXT


@pytest.mark.parametrize("value", ["static=public", "/static", "/static/="])
def test_a_bad_value_exits_2_with_one_line_naming_flag_and_value(value):
    result = run_cli(["--static", value, "wsgi_apps"])
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert "--static" in lines[0] and value in lines[0], lines[0]


def test_a_missing_dir_is_a_clear_startup_error(tmp_path):
    missing = tmp_path / "no-such-dir"
    result = run_cli(["--static", f"/static/={missing}", "wsgi_apps"])
    assert result.returncode == 1, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert "--static" in lines[0] and str(missing) in lines[0], lines[0]
    assert "No such file or directory" in lines[0]


def test_a_file_as_dir_is_refused(site):
    result = run_cli(["--static", f"/static/={site / 'secret.txt'}", "wsgi_apps"])
    assert result.returncode == 1, result.stderr
    assert "is not a directory" in result.stderr
