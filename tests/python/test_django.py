"""A real Django 5 project (tests/apps/djangoproject) served by the server:
the admin login, a CSRF-protected form, file uploads, StreamingHttpResponse,
FileResponse, and 20 concurrent requests on ``--workers 2 --threads 4``.
The fixture migrates a fresh SQLite database in a temporary directory."""

import concurrent.futures
import hashlib
import re
import subprocess
import sys
import uuid

import pytest
import requests
from helpers import DJANGO_DIR, RawConnection, pattern_bytes, server_env

ADMIN_PASSWORD = "correct horse battery staple"


def manage(env, *args):
    result = subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=DJANGO_DIR,
        env=env,
        capture_output=True,
        check=False,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, (
        f"manage.py {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"
    )
    return result


@pytest.fixture(scope="module")
def django_env(tmp_path_factory):
    """Environment of a Django project whose database was just migrated."""
    data = tmp_path_factory.mktemp("django-data")
    extra = {"FERROCORN_DJANGO_DATA_DIR": str(data), "DJANGO_SUPERUSER_PASSWORD": ADMIN_PASSWORD}
    env = server_env(extra)
    manage(env, "migrate", "--noinput")
    manage(
        env, "createsuperuser", "--noinput", "--username", "admin", "--email", "admin@example.test"
    )
    return extra


@pytest.fixture(scope="module")
def django_server(module_server_factory, django_env):
    return module_server_factory(
        "myproject.wsgi", ["--threads", "4"], chdir=DJANGO_DIR, env=django_env
    )


def csrf_token(html):
    m = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', html)
    assert m, "no CSRF token in the page"
    return m.group(1)


# -- admin -------------------------------------------------------------------------------


def test_admin_login_page(django_server):
    resp = requests.get(django_server.url + "/admin/login/", timeout=10)
    assert resp.status_code == 200
    assert "Django administration" in resp.text
    assert "csrftoken" in resp.cookies


def test_admin_redirects_anonymous_users_to_login(django_server):
    resp = requests.get(django_server.url + "/admin/", allow_redirects=False, timeout=10)
    assert resp.status_code == 302
    assert resp.headers["Location"] == "/admin/login/?next=/admin/"


def test_admin_login_with_the_superuser(django_server):
    with requests.Session() as s:
        page = s.get(django_server.url + "/admin/login/", timeout=10)
        resp = s.post(
            django_server.url + "/admin/login/?next=/admin/",
            data={
                "csrfmiddlewaretoken": csrf_token(page.text),
                "username": "admin",
                "password": ADMIN_PASSWORD,
                "next": "/admin/",
            },
            allow_redirects=False,
            timeout=10,
        )
        assert resp.status_code == 302, resp.text[:500]
        assert resp.headers["Location"] == "/admin/"
        home = s.get(django_server.url + "/admin/", timeout=10)
        assert home.status_code == 200
        assert "Site administration" in home.text
        assert "Notes" in home.text


# -- forms and CSRF ----------------------------------------------------------------------------


def test_form_post_with_csrf_token_creates_a_note(django_server):
    title = f"note {uuid.uuid4().hex[:8]}"
    with requests.Session() as s:
        page = s.get(django_server.url + "/", timeout=10)
        assert page.status_code == 200
        resp = s.post(
            django_server.url + "/",
            data={
                "csrfmiddlewaretoken": csrf_token(page.text),
                "title": title,
                "body": "written through ferrocorn",
            },
            allow_redirects=False,
            timeout=10,
        )
        assert resp.status_code == 302, resp.text[:500]
        detail = s.get(django_server.url + resp.headers["Location"], timeout=10)
        assert detail.status_code == 200
        assert detail.text.endswith(f": {title}\nwritten through ferrocorn")
        listing = s.get(django_server.url + "/", timeout=10)
        assert title in listing.text


def test_form_post_without_csrf_token_is_forbidden(django_server):
    with requests.Session() as s:
        s.get(django_server.url + "/", timeout=10)  # gets the cookie only
        resp = s.post(django_server.url + "/", data={"title": "forged"}, timeout=10)
    assert resp.status_code == 403
    assert "CSRF" in resp.text
    assert "forged" not in requests.get(django_server.url + "/", timeout=10).text


def test_form_post_without_any_cookie_is_forbidden(django_server):
    page = requests.get(django_server.url + "/", timeout=10)
    resp = requests.post(
        django_server.url + "/",
        data={"csrfmiddlewaretoken": csrf_token(page.text), "title": "no cookie"},
        timeout=10,
    )
    assert resp.status_code == 403


def test_unknown_url_is_404(django_server):
    assert requests.get(django_server.url + "/no/such/page/", timeout=10).status_code == 404


# -- uploads and downloads ------------------------------------------------------------------------


@pytest.mark.parametrize("size", [10, 3 * 1024 * 1024 + 7])
def test_file_upload(django_server, size):
    payload = pattern_bytes(size)[::-1]
    with requests.Session() as s:
        page = s.get(django_server.url + "/upload/", timeout=10)
        resp = s.post(
            django_server.url + "/upload/",
            data={"csrfmiddlewaretoken": csrf_token(page.text), "note": "héllo"},
            files={"file": ("upload.bin", payload, "application/octet-stream")},
            timeout=30,
        )
    assert resp.status_code == 200, resp.text[:500]
    assert resp.json() == {
        "name": "upload.bin",
        "size": size,
        "sha256": hashlib.sha256(payload).hexdigest(),
        "note": "héllo",
    }


def test_file_response_download(django_server):
    size = 300_000
    resp = requests.get(f"{django_server.url}/download/?size={size}", timeout=20)
    assert resp.status_code == 200
    assert resp.headers["Content-Length"] == str(size)
    assert resp.headers["Content-Disposition"] == 'attachment; filename="data.bin"'
    assert resp.content == pattern_bytes(size)


def test_streaming_response_is_streamed(django_server):
    gate = uuid.uuid4().hex
    with RawConnection(django_server.port, timeout=5) as conn:
        conn.send(conn.build("GET", f"/stream/?gate={gate}&n=3"))
        head = conn.read_head()
        assert head.status == 200
        assert head.header("Transfer-Encoding") == "chunked"
        # The view is blocked on the gate: this line was sent on its own.
        assert conn.read_chunk() == b"line 0\n"
        assert (
            requests.get(f"{django_server.url}/release/?gate={gate}", timeout=5).status_code == 200
        )
        rest = []
        while chunk := conn.read_chunk():
            rest.append(chunk)
    assert rest == [b"released\n", b"line 1\n", b"line 2\n"]


# -- concurrency ------------------------------------------------------------------------------------


def test_twenty_concurrent_requests_on_workers_and_threads(server_factory, django_env):
    server = server_factory(
        "myproject.wsgi", ["--workers", "2", "--threads", "4"], chdir=DJANGO_DIR, env=django_env
    )
    page = requests.get(server.url + "/", timeout=10)
    token, cookie = csrf_token(page.text), page.cookies["csrftoken"]
    marker = uuid.uuid4().hex[:8]

    def read(_):
        return requests.get(server.url + "/api/notes/?sleep=0.2", timeout=30)

    def write(i):
        return requests.post(
            server.url + "/",
            data={"csrfmiddlewaretoken": token, "title": f"{marker}-{i}"},
            cookies={"csrftoken": cookie},
            allow_redirects=False,
            timeout=30,
        )

    with concurrent.futures.ThreadPoolExecutor(20) as pool:
        reads = [pool.submit(read, i) for i in range(14)]
        writes = [pool.submit(write, i) for i in range(6)]
        reads = [f.result() for f in reads]
        writes = [f.result() for f in writes]
    assert [r.status_code for r in reads] == [200] * 14
    assert [w.status_code for w in writes] == [302] * 6
    assert len({r.json()["thread"] for r in reads}) >= 2, "requests were not spread over threads"
    listing = requests.get(server.url + "/", timeout=10).text
    assert all(f"{marker}-{i}" in listing for i in range(6))
