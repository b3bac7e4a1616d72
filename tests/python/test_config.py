"""Configuration end to end: a real gunicorn.conf.py (settings and hooks),
ferrocorn.conf.py, -c file:/python:, GUNICORN_CMD_ARGS / FERROCORN_CMD_ARGS,
PORT / WEB_CONCURRENCY, the precedence between them, --print-config,
--check-config, config errors and their exit statuses, settings accepted but
not yet supported, -e, the request-limit flags, the access log against
gunicorn's own line, --capture-output and Python logging configs."""

import json
import re
import shutil
import socket
import subprocess
import textwrap
import urllib.request

import pytest
from helpers import (
    APPS_DIR,
    IS_GUNICORN,
    LogFifo,
    RawConnection,
    base_command,
    free_port,
    run_cli,
    server_env,
)

pytestmark = pytest.mark.skipif(IS_GUNICORN, reason="ferrocorn's configuration tests")

GUNICORN_CONF = """\
import multiprocessing

bind = ["127.0.0.1:0"]
workers = 2
threads = 3
backlog = 512
timeout = 90
keepalive = 5
loglevel = "debug"
accesslog = "-"
access_log_format = '%(h)s "%(r)s" %(s)s'
raw_env = ["CONF_GREETING=hello from the config"]
forwarded_allow_ips = ["10.0.0.1", "10.0.0.2"]
secure_scheme_headers = {"X-SCHEME": "https"}
limit_request_field_size = 4096
preload_app = True
sendfile = False
pythonpath = "{apps}"
wsgi_app = "wsgi_apps"
CPU_COUNT = multiprocessing.cpu_count()  # not a setting: ignored


def on_starting(server):
    server.log.info("starting")


def when_ready(server):
    pass


def post_request(worker, req, environ, resp):
    pass


def worker_exit(server, worker):
    pass
"""


def write(path, text):
    path.write_text(textwrap.dedent(text))
    return path


def print_config(args, cwd, env=None):
    # --print-config imports the app too: let it find tests/apps.
    result = run_cli(["--print-config", "--pythonpath", str(APPS_DIR), *args], cwd=cwd, env=env)
    assert result.returncode == 0, result.stderr
    settings = {}
    for line in result.stdout.splitlines():
        name, _, value = line.partition(" = ")
        settings[name.strip()] = value
    return settings


def get(url, timeout=10):
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        return resp.status, resp.read()


@pytest.fixture
def project(tmp_path):
    """A directory with a gunicorn.conf.py, as a project being moved from gunicorn has."""
    write(tmp_path / "gunicorn.conf.py", GUNICORN_CONF.replace("{apps}", str(APPS_DIR)))
    return tmp_path


# -- the config file -------------------------------------------------------------


def test_print_config_resolves_a_real_gunicorn_conf_py(project):
    s = print_config([], cwd=project)
    assert s["config"] == str(project / "gunicorn.conf.py")
    assert s["bind"] == "['127.0.0.1:0']"
    assert (s["workers"], s["threads"], s["backlog"]) == ("2", "3", "512")
    assert (s["timeout"], s["keepalive"], s["loglevel"]) == ("90", "5", "debug")
    assert s["access_log_format"] == '%(h)s "%(r)s" %(s)s'
    assert s["raw_env"] == "['CONF_GREETING=hello from the config']"
    assert s["forwarded_allow_ips"] == "10.0.0.1,10.0.0.2"
    assert s["secure_scheme_headers"] == "X-SCHEME=https"
    assert s["limit_request_field_size"] == "4096"
    assert (s["preload_app"], s["sendfile"]) == ("True", "False")
    assert s["wsgi_app"] == "wsgi_apps"
    assert s["on_starting"] == "<on_starting()>"
    assert s["post_request"] == "<post_request()>"
    assert s["pre_fork"] == "None"
    assert "CPU_COUNT" not in s
    # Defaults the file leaves alone.
    assert (s["graceful_timeout"], s["limit_request_line"], s["worker_class"]) == (
        "30",
        "4094",
        "sync",
    )
    names = list(s)
    assert names == sorted(names)


def test_the_config_file_serves_and_its_hooks_run(project, server_factory):
    server = server_factory(None, binds=[], chdir=None, cwd=project)
    assert get(f"{server.url}/os-environ?CONF_GREETING")[1] == b'{"value": "hello from the config"}'
    line = server.wait_for_line(
        r'"GET /os-environ\?CONF_GREETING HTTP/1.1" 200', stream="out"
    ).string
    assert line == '127.0.0.1 "GET /os-environ?CONF_GREETING HTTP/1.1" 200'
    server.wait_for_log(r"Booting worker pool with 6 threads \(2 workers x 3 threads\)")
    log = server.err_text()
    # on_starting logged through server.log, before the server listened.
    assert re.search(r"\[INFO\] starting\n.*Listening at:", log), log
    # Supported settings are not named as unsupported.
    assert "is accepted but not yet supported" not in log, log


def test_ferrocorn_conf_py_is_preferred_to_gunicorn_conf_py(project):
    write(project / "ferrocorn.conf.py", "workers = 7\n")
    s = print_config(["wsgi_apps"], cwd=project)
    assert s["config"] == str(project / "ferrocorn.conf.py")
    assert s["workers"] == "7"
    assert s["threads"] == "1"


def test_c_names_a_file_or_a_python_module(tmp_path):
    write(tmp_path / "settings.txt", "workers = 3\n")
    assert print_config(["-c", "file:settings.txt", "wsgi_apps"], cwd=tmp_path)["workers"] == "3"
    write(tmp_path / "myconf.py", "threads = 9\n")
    s = print_config(
        ["-c", "python:myconf", "wsgi_apps"], cwd=tmp_path, env={"PYTHONPATH": str(tmp_path)}
    )
    assert s["threads"] == "9"


def test_a_config_file_with_a_syntax_error_exits_1_with_its_traceback(tmp_path):
    write(tmp_path / "gunicorn.conf.py", "workers = (\n")
    result = run_cli(["wsgi_apps"], cwd=tmp_path)
    assert result.returncode == 1
    lines = result.stderr.splitlines()
    assert lines[0] == f"Failed to read config file: {tmp_path / 'gunicorn.conf.py'}"
    assert "SyntaxError" in result.stderr


def test_a_config_file_that_raises_exits_1_with_its_traceback(tmp_path):
    write(tmp_path / "conf.py", "import nonexistent_module_xyz\n")
    result = run_cli(["-c", "conf.py", "wsgi_apps"], cwd=tmp_path)
    assert result.returncode == 1
    assert "Failed to read config file: conf.py" in result.stderr
    assert "Traceback (most recent call last)" in result.stderr
    assert "nonexistent_module_xyz" in result.stderr


def test_a_missing_config_file_exits_1(tmp_path):
    result = run_cli(["-c", "nope.py", "wsgi_apps"], cwd=tmp_path)
    assert result.returncode == 1
    assert "nope.py" in result.stderr


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("workers = 'x'", "Invalid value for workers: 'x'"),
        ("threads = 0", "Invalid value for threads: 0"),
        ("bind = ['fd://nope']", "Invalid value for bind: ['fd://nope']"),
        ("reload = 'sometimes'", "Invalid value for reload: 'sometimes'"),
        ("header_map = 'keep'", "Invalid value for header_map: 'keep'"),
        ("raw_env = ['NOEQUALS']", "Invalid value for raw_env: ['NOEQUALS']"),
        ("def pre_fork(server): pass", "Invalid value for pre_fork"),
        ("on_exit = 'not.a.module.hook'", "Invalid value for on_exit"),
    ],
)
def test_an_invalid_value_in_the_config_file_exits_1_naming_the_setting(tmp_path, source, message):
    write(tmp_path / "gunicorn.conf.py", source + "\n")
    result = run_cli(["wsgi_apps"], cwd=tmp_path)
    assert result.returncode == 1, result.stderr
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_other_worker_classes_exit_2_explaining_ferrocorn_runs_threads(tmp_path):
    for args in (["-k", "gevent"], ["--worker-class", "eventlet"]):
        result = run_cli([*args, "wsgi_apps"], cwd=tmp_path)
        assert result.returncode == 2
        assert "threads" in result.stderr and args[1] in result.stderr
    write(tmp_path / "gunicorn.conf.py", "worker_class = 'tornado'\n")
    result = run_cli(["wsgi_apps"], cwd=tmp_path)
    assert result.returncode == 2
    assert "'tornado' is not supported" in result.stderr
    write(tmp_path / "gunicorn.conf.py", "worker_class = 'gthread'\n")
    assert print_config(["wsgi_apps"], cwd=tmp_path)["worker_class"] == "gthread"


# -- environment and precedence ---------------------------------------------------------


def test_precedence_file_then_gunicorn_then_ferrocorn_cmd_args_then_command_line(
    project, server_factory
):
    env = {
        "GUNICORN_CMD_ARGS": "--threads 4 --workers 3 --access-logformat '%(s)s %(m)s'",
        "FERROCORN_CMD_ARGS": "--threads 5",
        "WEB_CONCURRENCY": "8",
    }
    s = print_config(["-w", "1"], cwd=project, env=env)
    assert (s["workers"], s["threads"]) == ("1", "5")
    assert s["access_log_format"] == "%(s)s %(m)s"
    assert s["backlog"] == "512"  # only the file sets it
    server = server_factory(None, ["-w", "1"], binds=[], chdir=None, cwd=project, env=env)
    server.wait_for_log(r"Booting worker pool with 5 threads \(1 workers x 5 threads\)")
    assert get(f"{server.url}/x")[0] == 200
    assert server.wait_for_line(r"^200 GET$", stream="out").string == "200 GET"


def test_a_command_line_bind_replaces_the_config_files_binds(project):
    s = print_config(["-b", "unix:/tmp/x.sock"], cwd=project)
    assert s["bind"] == "['unix:/tmp/x.sock']"


def test_port_and_web_concurrency_are_defaults_below_the_config_file(tmp_path, server_factory):
    port = free_port()
    env = {"PORT": str(port), "WEB_CONCURRENCY": "3"}
    server = server_factory("wsgi_apps", binds=[], env=env)
    assert server.addresses == [f"http://0.0.0.0:{port}"]
    server.wait_for_log(r"\(3 workers x 1 threads\)")
    write(tmp_path / "gunicorn.conf.py", "workers = 2\nbind = '127.0.0.1:0'\n")
    s = print_config(["wsgi_apps"], cwd=tmp_path, env=env)
    assert (s["workers"], s["bind"]) == ("2", "['127.0.0.1:0']")


def test_forwarded_allow_ips_comes_from_the_environment(tmp_path):
    s = print_config(["wsgi_apps"], cwd=tmp_path, env={"FORWARDED_ALLOW_IPS": "10.1.0.0/16"})
    assert s["forwarded_allow_ips"] == "10.1.0.0/16"


def test_bad_cmd_args_exit_2_naming_the_variable(tmp_path):
    result = run_cli(["wsgi_apps"], cwd=tmp_path, env={"GUNICORN_CMD_ARGS": "--threads=many"})
    assert result.returncode == 2
    assert "GUNICORN_CMD_ARGS" in result.stderr and "many" in result.stderr
    result = run_cli(["wsgi_apps"], cwd=tmp_path, env={"FERROCORN_CMD_ARGS": "-b 'unclosed"})
    assert result.returncode == 2
    assert "FERROCORN_CMD_ARGS" in result.stderr


# -- modes -------------------------------------------------------------------------------


def test_check_config_loads_the_app_and_exits_0_or_1(tmp_path):
    ok = run_cli(["--check-config", "--chdir", str(APPS_DIR), "wsgi_apps"], cwd=tmp_path)
    assert (ok.returncode, ok.stdout) == (0, "")
    bad = run_cli(["--check-config", "--chdir", str(APPS_DIR), "no_such_module_xyz"], cwd=tmp_path)
    assert bad.returncode == 1
    assert "Error while loading the application" in bad.stderr
    assert "no_such_module_xyz" in bad.stderr


def test_print_config_also_checks_the_app(tmp_path):
    result = run_cli(["--print-config", "no_such_module_xyz"], cwd=tmp_path)
    assert result.returncode == 1
    assert "wsgi_app" in result.stdout


# -- settings at work --------------------------------------------------------------------


def test_raw_env_sets_the_process_environment_for_the_app(server_factory):
    server = server_factory("wsgi_apps", ["-e", "FOO=bar=baz", "--env", "EMPTY="])
    assert json.loads(get(f"{server.url}/os-environ?FOO")[1]) == {"value": "bar=baz"}
    assert json.loads(get(f"{server.url}/os-environ?EMPTY")[1]) == {"value": ""}


def test_limit_request_flags_answer_like_gunicorn(server_factory):
    server = server_factory(
        "wsgi_apps",
        [
            "--limit-request-line",
            "64",
            "--limit-request-fields",
            "3",
            "--limit-request-field_size",
            "100",
        ],
    )

    def status(request):
        with RawConnection(server.port) as conn:
            conn.send(request)
            return conn.read_response().status

    assert status(b"GET /" + b"a" * 40 + b" HTTP/1.1\r\nHost: x\r\n\r\n") == 200
    assert status(b"GET /" + b"a" * 80 + b" HTTP/1.1\r\nHost: x\r\n\r\n") == 400
    assert status(b"GET / HTTP/1.1\r\nHost: x\r\nA: 1\r\nB: 2\r\n\r\n") == 200
    assert status(b"GET / HTTP/1.1\r\nHost: x\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n") == 431
    assert status(b"GET / HTTP/1.1\r\nHost: x\r\nA: " + b"v" * 120 + b"\r\n\r\n") == 431


ACCESS_FORMAT = (
    '%(h)s %(l)s %(u)s "%(r)s" %(s)s %(m)s %(U)s %(q)s %(H)s %(b)s %(B)s "%(f)s" "%(a)s" '
    "%({x-id}i)s %({content-type}o)s %({path_info}e)s %({wsgi.url_scheme}e)s %({nope}e)s 100%%"
)


def access_lines(cmd_prefix, tmp_path, name):
    """Serves tests/apps/wsgi_apps with `cmd_prefix`, sends fixed requests, returns the lines."""
    log = tmp_path / f"{name}.log"
    port = free_port()
    proc = subprocess.Popen(
        [
            *cmd_prefix,
            "--chdir",
            str(APPS_DIR),
            "-b",
            f"127.0.0.1:{port}",
            "--access-logfile",
            str(log),
            "--access-logformat",
            ACCESS_FORMAT,
            "wsgi_apps",
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=server_env(),
        text=True,
    )
    try:
        for line in proc.stdout:
            if "Listening at:" in line:
                break
        requests = [
            (
                b"GET /fixed/a%20b/%C3%A9?x=1&y=%22 HTTP/1.1\r\nHost: h\r\n"
                b"Authorization: Basic Ym9iOnB3\r\n"
                b"X-Id: 7\r\nX-Id: 8\r\nReferer: http://r/\r\nUser-Agent: t/1\r\n\r\n"
            ),
            b"HEAD /status/404 HTTP/1.1\r\nHost: h\r\n\r\n",
            b"POST /fixed HTTP/1.0\r\nContent-Length: 3\r\n\r\nabc",
        ]
        for raw in requests:
            with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
                s.sendall(raw)
                s.shutdown(socket.SHUT_WR)
                while s.recv(65536):
                    pass
    finally:
        proc.terminate()
        proc.wait(30)
        proc.stdout.close()
    return log.read_text().splitlines()


@pytest.mark.skipif(shutil.which("gunicorn") is None, reason="gunicorn is not installed")
def test_access_log_lines_are_byte_identical_to_gunicorns(tmp_path):
    ours = access_lines(base_command(), tmp_path, "ferrocorn")
    theirs = access_lines(
        [shutil.which("gunicorn"), "-k", "gthread", "--no-control-socket"], tmp_path, "gunicorn"
    )
    assert len(ours) == 3
    assert ours == theirs


def test_default_access_log_time_is_strftime_local_time(server_factory):
    server = server_factory("wsgi_apps", ["--access-logfile", "-"], env={"TZ": "Asia/Kolkata"})
    get(f"{server.url}/x")
    line = server.wait_for_line(r'"GET /x HTTP/1.1"', stream="out").string
    assert re.search(r"\[\d\d/[A-Z][a-z]{2}/\d{4}:\d\d:\d\d:\d\d \+0530\]", line), line
    assert "+0530] [" in server.err_text().splitlines()[0]


def test_capture_output_sends_the_apps_prints_to_the_error_log(server_factory, tmp_path):
    log = LogFifo(tmp_path / "error.log")
    server = server_factory(
        "wsgi_apps", ["--capture-output", "--error-logfile", str(log.path)], wait=False
    )
    port = log.wait_port(server)
    assert get(f"http://127.0.0.1:{port}/print?m1")[1] == b"printed"
    stopped = server.stop()
    log.join()
    assert stopped.code == 0
    assert "app stdout m1" in log.lines and "app stderr m1" in log.lines, log.lines
    assert "app stdout" not in stopped.out and "app stderr" not in stopped.err


def test_logconfig_dict_routes_both_logs_through_python_logging(tmp_path, server_factory):
    write(
        tmp_path / "gunicorn.conf.py",
        """\
        logconfig_dict = {
            "root": {"level": "WARNING", "handlers": []},
            "formatters": {"tagged": {"format": "TAGGED %(name)s %(levelname)s %(message)s"}},
            "handlers": {
                "out": {"class": "logging.StreamHandler", "formatter": "tagged",
                        "stream": "ext://sys.stderr"},
            },
            "loggers": {
                "gunicorn.error": {"handlers": ["out"], "level": "INFO", "propagate": False},
                "gunicorn.access": {"handlers": ["out"], "level": "INFO", "propagate": False},
            },
        }
        """,
    )
    server = server_factory("wsgi_apps", cwd=tmp_path)
    assert "TAGGED gunicorn.error INFO Starting ferrocorn" in server.err_text()
    get(f"{server.url}/logged")
    line = server.wait_for_line(r"TAGGED gunicorn.access INFO .*GET /logged").string
    assert '"GET /logged HTTP/1.1" 200' in line


def test_log_config_json_file(tmp_path, server_factory):
    conf = tmp_path / "logging.json"
    conf.write_text(
        json.dumps(
            {
                "version": 1,
                "root": {"level": "WARNING", "handlers": []},
                "formatters": {"j": {"format": "JSONCONF %(name)s %(message)s"}},
                "handlers": {
                    "h": {
                        "class": "logging.StreamHandler",
                        "formatter": "j",
                        "stream": "ext://sys.stderr",
                    }
                },
                "loggers": {
                    "gunicorn.error": {"handlers": ["h"], "level": "INFO", "propagate": False}
                },
            }
        )
    )
    server = server_factory("wsgi_apps", ["--log-config-json", str(conf)])
    assert "JSONCONF gunicorn.error Listening at:" in server.err_text()


def test_log_config_ini_file(tmp_path, server_factory):
    conf = tmp_path / "logging.ini"
    conf.write_text(
        textwrap.dedent(
            """\
            [loggers]
            keys=root,error,access

            [handlers]
            keys=err

            [formatters]
            keys=ini

            [logger_root]
            level=WARNING
            handlers=

            [logger_error]
            level=INFO
            handlers=err
            propagate=0
            qualname=gunicorn.error

            [logger_access]
            level=INFO
            handlers=err
            propagate=0
            qualname=gunicorn.access

            [handler_err]
            class=StreamHandler
            formatter=ini
            args=(sys.stderr,)

            [formatter_ini]
            format=INI %(name)s %(message)s
            """
        )
    )
    server = server_factory("wsgi_apps", ["--log-config", str(conf)])
    assert "INI gunicorn.error Listening at:" in server.err_text()
    get(f"{server.url}/ini")
    server.wait_for_line(r'INI gunicorn\.access .*"GET /ini HTTP/1\.1" 200')
