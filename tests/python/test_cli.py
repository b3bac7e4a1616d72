"""Command line: flag errors, --version, --help, app loading errors, the
startup log, --pythonpath, --error-logfile, several binds and a bind address
that is already in use."""

import os
import re
import socket
import subprocess
import sys
import time
import urllib.request

import pytest
from helpers import APPS_DIR, REPO, LogFifo, differs_on_gunicorn, free_port, run_cli

LOG_LINE_RE = re.compile(
    r"^\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d [+-]\d{4}\] \[(\d+)\] \[([A-Z]+)\] (.*)$"
)


def nonblank_lines(text):
    return [line for line in text.splitlines() if line.strip()]


def get(url, timeout=10):
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        return resp.status, resp.read()


# -- flags ----------------------------------------------------------------------


def test_invalid_worker_count_exits_2_naming_flag_and_value():
    result = run_cli(["--workers", "two", "wsgi_apps"])
    assert result.returncode == 2, result.stderr
    assert "--workers" in result.stderr
    assert "two" in result.stderr


@differs_on_gunicorn("argparse prints the usage line before the error")
def test_invalid_worker_count_is_a_single_stderr_line():
    result = run_cli(["--workers", "two", "wsgi_apps"])
    assert result.returncode == 2
    assert len(nonblank_lines(result.stderr)) == 1, result.stderr


def test_unknown_flag_exits_2_naming_it():
    result = run_cli(["--no-such-flag", "wsgi_apps"])
    assert result.returncode == 2, result.stderr
    assert "--no-such-flag" in result.stderr


@differs_on_gunicorn("prints 'gunicorn (version X)'")
def test_version_prints_the_package_version():
    cargo_toml = (REPO / "Cargo.toml").read_text()
    cargo_version = re.search(r'^version = "([^"]+)"', cargo_toml, re.MULTILINE).group(1)
    result = run_cli(["--version"])
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"ferrocorn {cargo_version}"


def test_help_lists_every_documented_option():
    result = run_cli(["--help"])
    assert result.returncode == 0, result.stderr
    for option in [
        "--bind",
        "--workers",
        "--threads",
        "--backlog",
        "--graceful-timeout",
        "--keep-alive",
        "--chdir",
        "--pythonpath",
        "--log-level",
        "--access-logfile",
        "--error-logfile",
        "--version",
    ]:
        assert option in result.stdout, f"{option} missing from --help"


# -- loading the app --------------------------------------------------------------


def load_error(app, chdir=APPS_DIR):
    return run_cli(["--chdir", str(chdir), "--bind", "127.0.0.1:0", app])


def test_module_that_cannot_be_imported_shows_traceback():
    result = load_error("no_such_module_xyz:app")
    assert result.returncode != 0
    assert "Traceback (most recent call last)" in result.stderr
    assert "ModuleNotFoundError: No module named 'no_such_module_xyz'" in result.stderr


@differs_on_gunicorn("a worker that fails to boot makes gunicorn exit 3")
def test_module_that_cannot_be_imported_exits_4():
    result = load_error("no_such_module_xyz:app")
    assert result.returncode == 4, result.stderr


def test_module_raising_on_import_shows_its_traceback(tmp_path):
    (tmp_path / "broken_app.py").write_text("x = 1\nraise ZeroDivisionError('broken at import')\n")
    result = load_error("broken_app", chdir=tmp_path)
    assert result.returncode != 0
    assert "Traceback (most recent call last)" in result.stderr
    assert 'broken_app.py", line 2' in result.stderr
    assert "ZeroDivisionError: broken at import" in result.stderr


@differs_on_gunicorn("a worker that fails to boot makes gunicorn exit 3")
def test_module_raising_on_import_exits_4(tmp_path):
    (tmp_path / "broken_app.py").write_text("raise ZeroDivisionError('broken at import')\n")
    result = load_error("broken_app", chdir=tmp_path)
    assert result.returncode == 4, result.stderr


@differs_on_gunicorn("gunicorn prints no hint after the traceback")
def test_import_error_gives_a_hint_about_the_python_path():
    result = load_error("no_such_module_xyz:app")
    assert result.returncode != 0
    after_traceback = result.stderr.split("ModuleNotFoundError", 1)[1]
    assert re.search(r"--chdir|--pythonpath|PYTHONPATH|sys\.path", after_traceback), result.stderr


def test_missing_attribute_exits_4_with_message():
    result = load_error("wsgi_apps:nope")
    assert result.returncode == 4, result.stderr
    assert "Failed to find attribute 'nope' in 'wsgi_apps'." in result.stderr


def test_pythonpath_takes_comma_separated_directories(server_factory, tmp_path):
    first = tmp_path / "first"
    second = tmp_path / "second"
    first.mkdir()
    second.mkdir()
    (first / "pp_app.py").write_text(
        "from pp_helper import TEXT\n"
        "def app(environ, start_response):\n"
        "    start_response('200 OK', [('Content-Type', 'text/plain')])\n"
        "    return [TEXT]\n"
    )
    (second / "pp_helper.py").write_text("TEXT = b'from the python path'\n")
    server = server_factory("pp_app:app", ["--pythonpath", f"{first},{second}"], chdir=None)
    assert get(server.url + "/") == (200, b"from the python path")


def test_chdir_changes_the_working_directory(server_factory, tmp_path):
    (tmp_path / "cwd_app.py").write_text(
        "import os\n"
        "def application(environ, start_response):\n"
        "    start_response('200 OK', [('Content-Type', 'text/plain')])\n"
        "    return [os.getcwd().encode()]\n"
    )
    server = server_factory("cwd_app", chdir=tmp_path)
    status, body = get(server.url + "/")
    assert status == 200
    assert os.path.samefile(body.decode(), tmp_path)


def test_backlog_and_log_level_flags_are_accepted(server_factory):
    server = server_factory("wsgi_apps", ["--backlog", "16", "--log-level", "debug"])
    assert get(server.url + "/ok")[0] == 200


def test_log_level_warning_hides_info_lines(server_factory):
    # With no INFO line to wait for, bind an inherited socket: it listens
    # already, so the request waits in its backlog until the server serves it.
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        port = listener.getsockname()[1]
        fd = listener.fileno()
        server = server_factory(
            "wsgi_apps",
            ["--log-level", "warning"],
            binds=[f"fd://{fd}"],
            pass_fds=[fd],
            wait=False,
        )
    assert get(f"http://127.0.0.1:{port}/ok", timeout=30)[0] == 200
    stopped = server.stop()
    assert stopped.code == 0
    assert "[INFO]" not in stopped.err
    assert "Listening at:" not in stopped.err


# -- startup log --------------------------------------------------------------------


def test_startup_log_lines_have_gunicorns_format(server_factory):
    server = server_factory("wsgi_apps")
    listening = [line for line in server.err_lines if "Listening at:" in line]
    assert listening, server.err_text()
    m = LOG_LINE_RE.match(listening[0])
    assert m, listening[0]
    assert m.group(2) == "INFO"
    assert m.group(3) == f"Listening at: http://127.0.0.1:{server.port} ({server.pid})"
    assert int(m.group(1)) == server.pid
    assert server.port != 0


@differs_on_gunicorn("logs 'Starting gunicorn' and 'Using worker: gthread'")
def test_startup_log_names_ferrocorn_and_its_worker(server_factory):
    server = server_factory("wsgi_apps")
    server.wait_for_log(r"\[INFO\] Using worker: threads$")
    text = server.err_text()
    assert re.search(r"\[INFO\] Starting ferrocorn \d+\.\d+\.\d+", text), text


def test_every_bind_is_listened_on_and_logged(server_factory):
    server = server_factory("wsgi_apps", binds=["127.0.0.1:0", "localhost:0"])
    assert len(server.tcp_addresses) == 2, server.err_text()
    for address in server.tcp_addresses:
        assert get(address + "/hello")[0] == 200


def test_ipv6_bind(server_factory):
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
    except OSError:
        pytest.skip("no IPv6 loopback here")
    server = server_factory("wsgi_apps", binds=["[::1]:0"])
    assert server.addresses[0].startswith("http://[::1]:"), server.addresses
    status, body = get(f"{server.addresses[0]}/v6")
    assert status == 200
    assert b'"REMOTE_ADDR": "::1"' in body


def test_error_logfile_receives_the_log_instead_of_stderr(server_factory, tmp_path):
    log = LogFifo(tmp_path / "error.log")
    server = server_factory("wsgi_apps", ["--error-logfile", str(log.path)], wait=False)
    port = log.wait_port(server)
    assert get(f"http://127.0.0.1:{port}/ok")[0] == 200
    stopped = server.stop()
    log.join()
    assert stopped.code == 0
    assert "Listening at:" not in stopped.err
    assert any("Shutting down: Master" in line for line in log.lines), log.lines


# -- bind errors ----------------------------------------------------------------------


def test_address_in_use_retries_then_exits_1():
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        port = blocker.getsockname()[1]
        started = time.monotonic()
        result = run_cli(
            ["--chdir", str(APPS_DIR), "--bind", f"127.0.0.1:{port}", "wsgi_apps"], timeout=45
        )
        elapsed = time.monotonic() - started
    assert result.returncode == 1, result.stderr
    in_use = [line for line in result.stderr.splitlines() if "Connection in use:" in line]
    assert in_use, result.stderr
    assert str(port) in in_use[0]
    # gunicorn's behaviour: a few retries one second apart before giving up
    assert len(in_use) >= 3, result.stderr
    assert 3.0 <= elapsed < 20.0


def test_explicit_port_is_used(server_factory):
    port = free_port()
    server = server_factory("wsgi_apps", binds=[f"127.0.0.1:{port}"])
    assert server.port == port


# -- environment and entry points ---------------------------------------------------


def test_python_dash_m_runs_the_same_cli():
    # Runs ferrocorn's own module whatever server the suite is pointed at.
    result = subprocess.run(
        [sys.executable, "-m", "ferrocorn", "--version"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("ferrocorn ")


def test_port_env_binds_every_interface_when_no_bind_is_given(server_factory):
    server = server_factory("wsgi_apps", binds=[], env={"PORT": "0"}, wait=False)
    m = server.wait_for_log(r"Listening at: http://0\.0\.0\.0:(\d+) ", timeout=30)
    port = int(m.group(1))
    assert port != 0
    assert get(f"http://127.0.0.1:{port}/ok")[0] == 200


@differs_on_gunicorn("gunicorn logs one 'Booting worker' line per process")
def test_web_concurrency_sets_the_pool_size(server_factory):
    server = server_factory("wsgi_apps", ["--threads", "2"], env={"WEB_CONCURRENCY": "3"})
    server.wait_for_log(r"Booting worker pool with 6 threads \(3 workers x 2 threads\)")
