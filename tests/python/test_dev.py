"""Local development: ``--dev`` and ``--reload``, as a developer on a laptop meets them.

A temporary copy of the test Django project is served with ``ferrocorn --dev`` and no APP
(found from manage.py); its files are edited while clients keep requesting: the new code
answers within 2 s, a syntax error answers with its traceback, fixing it recovers, and no
request meets a refused or dropped connection. Also: a plain WSGI app that is broken from the
start, ``--reload-extra-file`` globs under both engines, the compact access log (colored only
on a terminal and without ``NO_COLOR``), the banner, Django's static files in ``--dev``, and
the one-line error for a port in use. gunicorn has none of ``--dev``: the module is skipped
when the suite runs against it.
"""

import os
import platform
import pty
import re
import shutil
import socket
import subprocess
import time

import pytest
import requests
from helpers import (
    APPS_DIR,
    DJANGO_DIR,
    IS_GUNICORN,
    LISTENING_RE,
    Load,
    base_command,
    run_cli,
    server_env,
)

pytestmark = pytest.mark.skipif(IS_GUNICORN, reason="--dev and the traceback page are ferrocorn's")

RELOAD_WITHIN = 2.0

HELLO_VIEW = """

def hello(request):
    return HttpResponse("{text}", content_type="text/plain")
"""


def django_copy(root, text="version 1"):
    """A copy of the test Django project with a ``/hello/`` view answering ``text``."""
    proj = root / "proj"
    shutil.copytree(DJANGO_DIR, proj, ignore=shutil.ignore_patterns("__pycache__"))
    views = proj / "notes" / "views.py"
    views.write_text(views.read_text() + HELLO_VIEW.format(text=text))
    urls = proj / "notes" / "urls.py"
    urls.write_text(
        urls.read_text().replace(
            'path("", views.index, name="index"),',
            'path("", views.index, name="index"),\n    path("hello/", views.hello),',
        )
    )
    return proj


def edit(path, old, new):
    text = path.read_text()
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new))


@pytest.fixture
def serve(server_factory, tmp_path):
    """Starts the server in ``cwd`` with ``args`` (APP included only if given)."""

    def start(cwd, args, env=None):
        extra = {"FERROCORN_DJANGO_DATA_DIR": str(tmp_path)}
        extra.update(env or {})
        return server_factory(None, args, chdir=None, cwd=cwd, env=extra)

    return start


def test_a_view_edited_while_serving_reloads_and_a_syntax_error_shows_its_traceback(
    serve, tmp_path
):
    proj = django_copy(tmp_path)
    views = proj / "notes" / "views.py"
    server = serve(proj, ["--dev"])
    fresh = Load(server.port, "/hello/", clients=3, keep_alive=False, pause=0.01)
    # A browser: keeps its connection, and sends again on a new one when the server closed the
    # idle one just as it was used.
    kept = Load(server.port, "/hello/", clients=3, keep_alive=True, pause=0.01, retry_reused=True)
    loads = [fresh, kept]
    try:
        for load in loads:
            load.wait_for(lambda o: o.body == b"version 1", what="the first version")

        seen = []

        def served_within(text, what):
            changed = time.monotonic()
            log = server.log_mark()
            marks = [load.mark() for load in loads]
            server.wait_for_log("Worker reloading:", since=log)
            seen.append(time.monotonic())
            for load, mark in zip(loads, marks):
                first = load.wait_for(
                    lambda o, t=changed: o.sent and o.sent > t and text in o.body,
                    since=mark,
                    timeout=10,
                    what=what,
                )
                assert first.finished - changed < RELOAD_WITHIN, (
                    f"{what} took {first.finished - changed:.2f} s"
                )

        edit(views, "version 1", "version 2")
        served_within(b"version 2", "the edited view")

        edit(views, "def hello(request):", "def hello(request:")
        served_within(b"SyntaxError", "the traceback page")
        page = requests.get(server.url + "/hello/", timeout=10)
        assert page.status_code == 500
        assert page.headers["Content-Type"] == "text/plain; charset=utf-8"
        assert "the app failed to import" in page.text
        assert f'File "{views}", line' in page.text
        assert "SyntaxError" in page.text
        html = requests.get(server.url + "/", headers={"Accept": "text/html"}, timeout=10)
        assert html.status_code == 500
        assert html.headers["Content-Type"] == "text/html; charset=utf-8"
        assert "<pre>" in html.text and "def hello(request:" in html.text
        server.wait_for_log("The app failed to load")

        edit(views, "def hello(request:", "def hello(request):")
        edit(views, "version 2", "version 3")
        served_within(b"version 3", "the fixed view")
    finally:
        outcomes = [o for load in loads for o in load.stop()]

    failed = [o for o in outcomes if o.error]
    assert not failed, Load.summary(outcomes)
    # The old code stops answering as soon as the new worker imports (a new interpreter
    # starts first): no request sent half a second after the reload was logged got it, on a
    # new connection or a kept one.
    for start, old in zip(seen, (b"version 1", b"version 2", b"SyntaxError")):
        stale = [o for o in outcomes if o.sent and o.sent > start + 0.5 and old in o.body]
        assert not stale, f"{len(stale)} requests sent after the reload got {old!r}"
    assert server.proc.poll() is None
    assert re.search(r"Worker reloading: .*views\.py modified", server.err_text())


BROKEN_APP = """\
def application(environ, start_response)
    pass
"""

FIXED_APP = """\
def application(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"fixed"]
"""


def test_an_app_broken_from_the_start_serves_its_traceback_until_fixed(serve, tmp_path):
    (tmp_path / "app.py").write_text(BROKEN_APP)
    server = serve(tmp_path, ["--reload", "app:application"])
    resp = requests.get(server.url + "/anything", timeout=10)
    assert resp.status_code == 500
    assert "SyntaxError" in resp.text and "app.py" in resp.text
    assert resp.headers["Cache-Control"] == "no-store"
    mark = server.log_mark()
    (tmp_path / "app.py").write_text(FIXED_APP)
    server.wait_for_log(r"Worker reloading: .*app\.py modified", since=mark)

    def fixed():
        return requests.get(server.url + "/", timeout=10).text == "fixed"

    deadline = time.monotonic() + RELOAD_WITHIN + 3
    while not fixed():
        assert time.monotonic() < deadline, server.err_text()
        time.sleep(0.05)


TEMPLATE_APP = """\
from pathlib import Path

GREETING = Path("templates/site/greeting.txt").read_text()


def application(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [GREETING.encode()]
"""


@pytest.mark.parametrize("engine", ["auto", "poll", "inotify"])
def test_extra_files_given_as_a_glob_reload_under_each_engine(serve, tmp_path, engine):
    (tmp_path / "templates" / "site").mkdir(parents=True)
    (tmp_path / "templates" / "site" / "greeting.txt").write_text("hello")
    (tmp_path / "app.py").write_text(TEMPLATE_APP)
    server = serve(
        tmp_path,
        [
            "--reload",
            "--reload-engine",
            engine,
            "--reload-extra-file",
            "templates/**/*.txt",
            "app:application",
        ],
    )
    assert requests.get(server.url, timeout=10).text == "hello"
    mark = server.log_mark()
    # A file the glob does not match changes nothing.
    (tmp_path / "templates" / "site" / "notes.md").write_text("ignored")
    (tmp_path / "templates" / "site" / "greeting.txt").write_text("bonjour")
    server.wait_for_log(r"Worker reloading: .*greeting\.txt modified", since=mark)
    assert "notes.md" not in server.err_text(mark)
    deadline = time.monotonic() + 10
    while requests.get(server.url, timeout=10).text != "bonjour":
        assert time.monotonic() < deadline, server.err_text()
        time.sleep(0.05)


def test_dev_banner_and_compact_access_log_without_a_terminal(serve, tmp_path):
    proj = django_copy(tmp_path)
    server = serve(proj, ["--dev"], env={"FERROCORN_DJANGO_DEBUG": "1"})
    server.wait_for_log(r"Quit with Ctrl-C")
    text = server.err_text()
    import django

    assert f"Python {platform.python_version()}, Django {django.get_version()}" in text
    assert "App:    myproject.wsgi:application" in text
    assert "found by manage.py: DJANGO_SETTINGS_MODULE=myproject.settings" in text
    assert "Pool:   4 threads (1 workers x 4 threads)" in text
    assert re.search(r"Reload: on \(inotify\), watching \d+ files", text)
    assert f"Open:   http://127.0.0.1:{server.port}/" in text
    assert "[DEBUG]" in text, "--dev logs at debug level"
    mark = server.log_mark()
    assert requests.get(server.url + "/hello/?x=1", timeout=10).text == "version 1"
    line = server.wait_for_log(r"GET /hello/", since=mark).string
    assert re.fullmatch(r"\d\d:\d\d:\d\d 200 GET /hello/\?x=1 \d+\.\dms 9B", line), line
    assert "\x1b[" not in server.err_text(), "colors without a terminal"


def read_pty_until(fd, pattern, timeout=30.0):
    """Reads a pty's output until ``pattern`` matches it; returns everything read."""
    out = b""
    deadline = time.monotonic() + timeout
    regex = re.compile(pattern)
    while not regex.search(out):
        assert time.monotonic() < deadline, out.decode(errors="replace")
        import select

        ready, _, _ = select.select([fd], [], [], 0.5)
        if ready:
            try:
                out += os.read(fd, 65536)
            except OSError:
                break
    return out


@pytest.mark.parametrize("no_color", [False, True])
def test_on_a_terminal_the_status_is_colored_by_class_unless_no_color(tmp_path, no_color):
    (tmp_path / "app.py").write_text(
        "def application(environ, start_response):\n"
        "    status = '404 Not Found' if environ['PATH_INFO'] == '/missing' else '200 OK'\n"
        "    start_response(status, [('Content-Type', 'text/plain')])\n"
        "    return [b'x']\n"
    )
    master, slave = pty.openpty()
    env = server_env({"NO_COLOR": "1"})
    if not no_color:
        del env["NO_COLOR"]
    proc = subprocess.Popen(
        [*base_command(), "--dev", "-b", "127.0.0.1:0", "app:application"],
        cwd=tmp_path,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=slave,
        start_new_session=True,
    )
    os.close(slave)
    try:
        out = read_pty_until(master, rb"Quit with Ctrl-C")
        port = int(LISTENING_RE.search(out.decode()).group(1).rsplit(":", 1)[1])
        requests.get(f"http://127.0.0.1:{port}/", timeout=10)
        requests.get(f"http://127.0.0.1:{port}/missing", timeout=10)
        out += read_pty_until(master, rb"GET /missing")
    finally:
        os.killpg(proc.pid, 9)
        proc.wait(10)
        os.close(master)
    text = out.decode(errors="replace")
    if no_color:
        assert "\x1b[" not in text
        assert re.search(r" 200 GET / ", text) and re.search(r" 404 GET /missing ", text)
    else:
        assert "\x1b[32m200\x1b[0m GET / " in text
        assert "\x1b[33m404\x1b[0m GET /missing " in text
        # The URL is a terminal hyperlink.
        assert f"\x1b]8;;http://127.0.0.1:{port}/\x1b\\" in text


def test_dev_serves_django_static_files_like_runserver(serve, tmp_path):
    import django

    base_css = os.path.join(
        os.path.dirname(django.__file__), "contrib", "admin", "static", "admin", "css", "base.css"
    )
    proj = django_copy(tmp_path)
    server = serve(proj, ["--dev"], env={"FERROCORN_DJANGO_DEBUG": "1"})
    resp = requests.get(server.url + "/static/admin/css/base.css", timeout=10)
    assert resp.status_code == 200
    assert resp.headers["Content-Type"].startswith("text/css")
    with open(base_css, "rb") as f:
        assert resp.content == f.read()


def test_without_dev_or_debug_django_static_files_are_not_served(serve, tmp_path):
    proj = django_copy(tmp_path)
    prod = serve(proj, ["myproject.wsgi"], env={"FERROCORN_DJANGO_DEBUG": "1"})
    assert requests.get(prod.url + "/static/admin/css/base.css", timeout=10).status_code == 404
    no_debug = serve(proj, ["--dev"])
    assert requests.get(no_debug.url + "/static/admin/css/base.css", timeout=10).status_code == 404


def test_no_app_beside_manage_py_serves_the_project_without_dev(serve, tmp_path):
    proj = django_copy(tmp_path)
    server = serve(proj, [])
    assert requests.get(server.url + "/hello/", timeout=10).text == "version 1"


def test_a_port_in_use_is_one_line_naming_its_owner():
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = run_cli(
            ["--dev", "--chdir", str(APPS_DIR), "-b", f"127.0.0.1:{port}", "wsgi_apps"]
        )
    assert result.returncode == 1, result.stderr
    wanted = f"Port {port} is in use (by pid {os.getpid()}): pass --bind to use another."
    errors = [line for line in result.stderr.splitlines() if "[ERROR]" in line]
    assert len(errors) == 1 and errors[0].endswith(wanted), result.stderr
    assert "Retrying" not in result.stderr


def test_reload_keeps_the_socket_so_no_connection_is_refused(serve, tmp_path):
    """Ten reloads in a row with clients on fresh connections: none refused or dropped."""
    (tmp_path / "app.py").write_text(FIXED_APP.replace("fixed", "v0"))
    server = serve(tmp_path, ["--reload", "--threads", "2", "app:application"])
    load = Load(server.port, "/", clients=4, keep_alive=False, pause=0.005)
    try:
        load.wait_for(lambda o: o.body == b"v0")
        for i in range(1, 11):
            mark = load.mark()
            (tmp_path / "app.py").write_text(FIXED_APP.replace("fixed", f"v{i}"))
            load.wait_for(lambda o, i=i: o.body == f"v{i}".encode(), since=mark, timeout=10)
    finally:
        outcomes = load.stop()
    assert not [o for o in outcomes if o.error], Load.summary(outcomes)
    # One reload per change: a save is one event burst, and a replaced worker reports no more.
    assert server.err_text().count("Worker reloading:") == 10, server.err_text()


def test_a_module_that_does_not_exist_yet_is_served_once_created(serve, tmp_path):
    server = serve(tmp_path, ["--reload", "hello:application"])
    resp = requests.get(server.url, timeout=10)
    assert resp.status_code == 500 and "No module named 'hello'" in resp.text
    (tmp_path / "hello.py").write_text(FIXED_APP)
    deadline = time.monotonic() + 10
    while requests.get(server.url, timeout=10).text != "fixed":
        assert time.monotonic() < deadline, server.err_text()
        time.sleep(0.05)


def test_a_config_file_broken_by_an_edit_leaves_the_old_code_serving(serve, tmp_path):
    (tmp_path / "app.py").write_text(FIXED_APP.replace("fixed", "old"))
    conf = tmp_path / "gunicorn.conf.py"
    conf.write_text("workers = 1\n")
    server = serve(tmp_path, ["--reload", "app:application"])
    load = Load(server.port, "/", clients=2, keep_alive=False, pause=0.01)
    try:
        load.wait_for(lambda o: o.body == b"old")
        mark = server.log_mark()
        conf.write_text("workers = \n")
        server.wait_for_log(r"Worker reloading: .*gunicorn\.conf\.py modified", since=mark)
        server.wait_for_log(r"Worker \(pid:\d+\) exited with code 1", since=mark)
        during = load.mark()
        load.wait_count(20, since=during)
        assert all(o.body == b"old" for o in load.outcomes[during:]), Load.summary(load.outcomes)
        conf.write_text("workers = 1\n")
        (tmp_path / "app.py").write_text(FIXED_APP.replace("fixed", "new"))
        load.wait_for(lambda o: o.body == b"new", since=during, timeout=10)
    finally:
        outcomes = load.stop()
    assert not [o for o in outcomes if o.error], Load.summary(outcomes)


STANDALONE_DJANGO = """\
import django
from django.conf import settings

settings.configure(DEBUG=True, TEMPLATES=[{"BACKEND": "django.template.backends.django.DjangoTemplates"}])
django.setup()

from django.template import engines


def application(environ, start_response):
    page = engines["django"].from_string("hello {{ who }}").render({"who": "world"})
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [page.encode()]
"""


def test_dev_leaves_an_app_using_django_templates_alone(serve, tmp_path):
    (tmp_path / "app.py").write_text(STANDALONE_DJANGO)
    server = serve(tmp_path, ["--dev", "app:application"])
    resp = requests.get(server.url, timeout=10)
    assert (resp.status_code, resp.text) == (200, "hello world")
