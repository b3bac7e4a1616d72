"""docker/Dockerfile built and run with podman, as the Kubernetes and compose examples run it.

The image is built with ``podman build --isolation chroot`` from base images made by
docker/podman-base-images.sh (debootstrap + ``podman import``, cached between runs; no registry
is needed) and run with ``--runtime runc``; the app is tests/apps/container/app.py. The tests
check what a deployment relies on: ferrocorn is PID 1 and not root, PORT / WEB_CONCURRENCY /
``*_CMD_ARGS`` configure it, TERM drains a request in flight and exits 0, INT stops at once.
Skipped without podman (scripts/test installs it); needs root (debootstrap, rootful podman).
The commands are the ones docker/README.md documents.
"""

import json
import os
import re
import resource
import shutil
import subprocess
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
import yaml
from helpers import REPO, RawConnection, _Reader, free_port, poll_until, run_cli
from nginx_runner import NGINX, Nginx, render

PODMAN = shutil.which("podman")
# The first test builds the image: debootstrap, the Rust release build and the pip installs.
pytestmark = [
    pytest.mark.skipif(PODMAN is None, reason="podman is not installed"),
    pytest.mark.skipif(os.geteuid() != 0, reason="the podman tests run as root"),
    pytest.mark.timeout(1800),
]
APP_UID = 10001


def podman(*args, timeout=600, check=True):
    proc = subprocess.run(
        [PODMAN, *args], capture_output=True, text=True, timeout=timeout, check=False
    )
    if check:
        assert proc.returncode == 0, f"podman {' '.join(args)}\n{proc.stderr[-6000:]}"
    return proc


def run_limits():
    """``--ulimit`` flags within this process's hard limits.

    podman asks runc for 1048576 open files by default, which it cannot set without
    CAP_SYS_RESOURCE (missing in some sandboxes); conmon itself caps processes at 32768.
    """
    flags = []
    for name, limit, cap in [
        ("nofile", resource.RLIMIT_NOFILE, 65536),
        ("nproc", resource.RLIMIT_NPROC, 16384),
    ]:
        hard = resource.getrlimit(limit)[1]
        value = cap if hard == resource.RLIM_INFINITY else min(hard, cap)
        flags += ["--ulimit", f"{name}={value}:{value}"]
    return flags


@pytest.fixture(scope="module")
def image():
    """The image of docker/Dockerfile with the test app; removed afterwards (not the bases)."""
    bases = subprocess.run(
        [str(REPO / "docker" / "podman-base-images.sh")],
        capture_output=True,
        text=True,
        timeout=1500,
        check=False,
    )
    assert bases.returncode == 0, bases.stderr[-6000:]
    build_args = []
    for line in bases.stdout.split():
        build_args += ["--build-arg", line]
    tag = f"localhost/ferrocorn-test:{uuid.uuid4().hex[:12]}"
    # --layers=false: no intermediate images are left behind; the cargo cache mounts stay.
    build = [
        "build",
        "--isolation",
        "chroot",
        "--layers=false",
        *build_args,
        "--build-arg",
        "APP_DIR=tests/apps/container",
        "-f",
        str(REPO / "docker" / "Dockerfile"),
        "-t",
        tag,
        str(REPO),
    ]
    result = podman(*build, timeout=1500, check=False)
    if "sealing memfd copy" in result.stderr:
        # buildah's chroot isolation re-executes podman from a sealed memfd copy; sealing
        # failed once with EBUSY here (a transient kernel refusal, not the Dockerfile).
        result = podman(*build, timeout=1500, check=False)
    assert result.returncode == 0, result.stderr[-6000:]
    yield tag
    podman("rmi", "-f", tag, check=False)


class Container:
    """``podman run`` (attached) of ``image``: its stderr lines as they come, and its exit.
    ``ports`` are published on free host ports (``host_ports``); ``flags`` go to podman."""

    def __init__(self, image, args=(), env=None, port=8000, ports=(), flags=()):
        self.name = f"ferrocorn-test-{uuid.uuid4().hex[:12]}"
        self.host_ports = {p: free_port() for p in ([port] if port else []) + list(ports)}
        self.host_port = self.host_ports.get(port)
        cmd = [PODMAN, "run", "--name", self.name, "--runtime", "runc", *run_limits(), *flags]
        for inside, outside in self.host_ports.items():
            cmd += ["-p", f"127.0.0.1:{outside}:{inside}"]
        for key, value in (env or {}).items():
            cmd += ["-e", f"{key}={value}"]
        self.cmd = cmd + [image, *args]
        self.proc = subprocess.Popen(
            self.cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        self._cond = threading.Condition()
        self._out = _Reader(self.proc.stdout, self._cond)
        self._err = _Reader(self.proc.stderr, self._cond)
        self._out.start()
        self._err.start()

    @property
    def url(self):
        return f"http://127.0.0.1:{self.host_port}"

    def log(self):
        with self._cond:
            return "\n".join(self._err.lines + self._out.lines)

    def wait_for_line(self, pattern, timeout=60.0):
        """Waits for a stderr line matching ``pattern`` (the server logs there); returns it."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for line in self._err.lines:
                    if m := regex.search(line):
                        return m
                remaining = deadline - time.monotonic()
                if self._err.eof or remaining <= 0:
                    raise AssertionError(
                        f"no line matched {pattern!r}\ncommand: {self.cmd}\n{self.log()}"
                    )
                self._cond.wait(remaining)

    def kill(self, signal_name):
        podman("kill", "--signal", signal_name, self.name)

    def wait(self, timeout=60):
        """The exit code (of ``podman run``, which is the container's)."""
        code = self.proc.wait(timeout)
        self._err.join(5)
        self._out.join(5)
        return code

    def remove(self):
        if self.proc.poll() is None:
            podman("kill", self.name, check=False)
            self.proc.wait(30)
        podman("rm", "-f", self.name, check=False)


@pytest.fixture
def containers():
    started = []

    def run(*args, **kwargs):
        c = Container(*args, **kwargs)
        started.append(c)
        return c

    yield run
    for c in started:
        c.remove()


def test_the_image_serves_as_non_root_pid_1_and_drains_on_sigterm(image, containers):
    c = containers(image, ["app:app"], env={"PORT": "8080", "WEB_CONCURRENCY": "3"}, port=8080)
    c.wait_for_line(r"Listening at: http://0\.0\.0\.0:8080 ")
    c.wait_for_line(r"Booting worker pool with 3 threads \(3 workers x 1 threads\)")

    page = requests.get(c.url + "/", timeout=10)
    assert page.status_code == 200
    assert "Hello from a container" in page.text
    who = requests.get(c.url + "/whoami", timeout=10).json()
    # The server itself is PID 1 (no shell in between) and runs as the image's user.
    assert who == {"uid": APP_UID, "gid": APP_UID, "pid": 1, "cwd": "/app"}
    assert podman("exec", c.name, "id", "-u").stdout.strip() == str(APP_UID)

    with ThreadPoolExecutor(1) as pool:
        slow = pool.submit(requests.get, c.url + "/slow?seconds=3", timeout=30)
        c.wait_for_line(r"slow request started")
        c.kill("TERM")
        killed = time.monotonic()
        response = slow.result()
        answered = time.monotonic()
    assert response.status_code == 200
    assert response.text == "slept 3.0"
    assert response.headers["Connection"] == "close"
    assert c.wait() == 0
    assert answered > killed
    log = c.log()
    assert "Handling signal: term" in log
    assert "Shutting down: Master" in log
    inspected = json.loads(podman("inspect", c.name).stdout)[0]["State"]
    assert (inspected["Status"], inspected["ExitCode"]) == ("exited", 0)


def test_env_settings_and_a_quick_sigint_as_pid_1(image, containers):
    # PORT unset: the image's PORT=8000. GUNICORN_CMD_ARGS and FERROCORN_CMD_ARGS both count.
    c = containers(
        image,
        ["app:app"],
        env={"GUNICORN_CMD_ARGS": "--threads 2", "FERROCORN_CMD_ARGS": "--graceful-timeout 25"},
    )
    c.wait_for_line(r"Listening at: http://0\.0\.0\.0:8000 ")
    c.wait_for_line(r"Booting worker pool with 2 threads \(1 workers x 2 threads\)")
    assert requests.get(c.url + "/", timeout=10).status_code == 200
    with ThreadPoolExecutor(1) as pool:
        slow = pool.submit(requests.get, c.url + "/slow?seconds=20", timeout=40)
        c.wait_for_line(r"slow request started")
        c.kill("INT")
        # A quick stop does not wait for the request (it would answer after 20 s).
        assert c.wait() == 0
        with pytest.raises(requests.RequestException):
            slow.result()
    assert "Handling signal: int" in c.log()


def test_sigterm_with_worker_processes_under_pid_1(image, containers):
    c = containers(image, ["--processes", "2", "app:app"])
    c.wait_for_line(r"Listening at: http://0\.0\.0\.0:8000 ")
    c.wait_for_line(r"Booting worker pool")
    pids = {requests.get(c.url + "/whoami", timeout=10).json()["pid"] for _ in range(8)}
    assert 1 not in pids  # the supervisor is PID 1, the app runs in its children
    with ThreadPoolExecutor(1) as pool:
        slow = pool.submit(requests.get, c.url + "/slow?seconds=2", timeout=30)
        c.wait_for_line(r"slow request started")
        c.kill("TERM")
        assert slow.result().text == "slept 2.0"
    assert c.wait() == 0
    assert "Shutting down: Master" in c.log()


def ferrocorn_args(args, app="app:app"):
    """A shipped argument list for the test image: its app last, and without --metrics-bind
    while this ferrocorn does not have it yet (the metrics work adds it)."""
    args = list(args[:-1]) + [app]
    if "--metrics-bind" in args and "--metrics-bind" not in run_cli(["--help"]).stdout:
        i = args.index("--metrics-bind")
        del args[i : i + 2]
    return args


@pytest.fixture
def volume():
    name = f"ferrocorn-test-{uuid.uuid4().hex[:12]}"
    podman("volume", "create", name)
    yield name
    podman("volume", "rm", "-f", name, check=False)


@pytest.mark.skipif(NGINX is None, reason="nginx is not installed")
def test_the_compose_app_service_behind_nginx_over_the_shared_socket(
    image, containers, volume, tmp_path
):
    """docker/compose.yaml's app service (command, environment, volume) with this image, and
    docker/nginx.conf in nginx on the host reaching the socket through the volume."""
    app = yaml.safe_load((REPO / "docker" / "compose.yaml").read_text())["services"]["app"]
    mount = next(v for v in app["volumes"] if v.startswith("socket:"))
    socket_dir = mount.split(":")[1]
    c = containers(
        image,
        ferrocorn_args(app["command"]),
        env=app["environment"],
        port=None,
        flags=["-v", f"{volume}:{socket_dir}"],
    )
    c.wait_for_line(rf"Listening at: unix:{socket_dir}/ferrocorn.sock ")
    host_dir = podman("volume", "inspect", volume, "--format", "{{.Mountpoint}}").stdout.strip()
    sock = os.path.join(host_dir, "ferrocorn.sock")
    # Made by the server's user, in the directory the image gave that user; anyone may connect.
    st = os.stat(sock)
    assert (st.st_uid, st.st_mode & 0o777) == (APP_UID, 0o777)
    assert os.stat(host_dir).st_uid == APP_UID

    port = free_port()
    site = render(
        REPO / "docker" / "nginx.conf",
        [
            (f"unix:{socket_dir}/ferrocorn.sock", f"unix:{sock}"),
            ("listen 80;", f"listen 127.0.0.1:{port};"),
        ],
    )
    nginx = Nginx(tmp_path, site)
    try:
        page = requests.get(f"http://127.0.0.1:{port}/", timeout=10)
        assert page.status_code == 200 and "Hello from a container" in page.text
        who = requests.get(f"http://127.0.0.1:{port}/whoami", timeout=10).json()
        assert (who["uid"], who["pid"]) == (APP_UID, 1)
    finally:
        nginx.stop()
    c.kill("TERM")
    assert c.wait() == 0
    # A restarted container (compose's `restart:`) binds the socket in the same volume again.
    again = containers(
        image,
        ferrocorn_args(app["command"]),
        env=app["environment"],
        port=None,
        flags=["-v", f"{volume}:{socket_dir}"],
    )
    again.wait_for_line(rf"Listening at: unix:{socket_dir}/ferrocorn.sock ")
    with RawConnection(unix_path=sock) as conn:
        assert json.loads(conn.request("GET", "/whoami").body)["uid"] == APP_UID


def test_the_k8s_pod_spec_read_only_as_non_root(image, containers):
    """docker/k8s/deployment.yaml's container (args, env, securityContext, the /tmp emptyDir,
    the preStop command) under podman: what a kubelet would start."""
    deployment = yaml.safe_load((REPO / "docker" / "k8s" / "deployment.yaml").read_text())
    pod = deployment["spec"]["template"]["spec"]
    (spec,) = pod["containers"]
    security = spec["securityContext"]
    assert security["readOnlyRootFilesystem"] and security["capabilities"]["drop"] == ["ALL"]
    flags = ["--read-only", "--cap-drop", "ALL", "--security-opt", "no-new-privileges"]
    flags += [
        "--user",
        f"{pod['securityContext']['runAsUser']}:{pod['securityContext']['runAsGroup']}",
    ]
    flags += [arg for m in spec["volumeMounts"] for arg in ("--tmpfs", m["mountPath"])]
    ports = {p["name"]: p["containerPort"] for p in spec["ports"]}
    args = ferrocorn_args(spec["args"])
    metrics = "--metrics-bind" in args
    c = containers(
        image,
        args,
        env={e["name"]: e["value"] for e in spec["env"]},
        port=ports["http"],
        ports=[ports["metrics"]] if metrics else [],
        flags=flags,
    )
    c.wait_for_line(rf"Listening at: http://0\.0\.0\.0:{ports['http']} ")
    assert requests.get(c.url + "/", timeout=10).status_code == 200
    probe_url = f"http://127.0.0.1:{c.host_ports.get(ports['metrics'])}"
    ready_url = probe_url + spec["readinessProbe"]["httpGet"]["path"]
    if metrics:
        assert requests.get(probe_url + spec["livenessProbe"]["httpGet"]["path"], timeout=5).ok
        # Readiness is state the kubelet polls for, and so does this test.
        poll_until(lambda: requests.get(ready_url, timeout=5).ok, what="/ready answering 200")
    # The preStop hook's command exists in the image.
    prestop = spec["lifecycle"]["preStop"]["exec"]["command"]
    assert podman("exec", c.name, prestop[0], "0").returncode == 0

    with ThreadPoolExecutor(1) as pool:
        slow = pool.submit(requests.get, c.url + "/slow?seconds=2", timeout=30)
        c.wait_for_line(r"slow request started")
        c.kill("TERM")
        if metrics:
            c.wait_for_line(r"Handling signal: term")
            assert requests.get(ready_url, timeout=5).status_code == 503
        assert slow.result().text == "slept 2.0"
    assert c.wait(timeout=pod["terminationGracePeriodSeconds"]) == 0
