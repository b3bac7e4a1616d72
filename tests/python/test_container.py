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
from helpers import REPO, _Reader, free_port

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
    podman(
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
        timeout=1500,
    )
    yield tag
    podman("rmi", "-f", tag, check=False)


class Container:
    """``podman run`` (attached) of ``image``: its stderr lines as they come, and its exit."""

    def __init__(self, image, args=(), env=None, port=8000):
        self.name = f"ferrocorn-test-{uuid.uuid4().hex[:12]}"
        self.host_port = free_port()
        cmd = [PODMAN, "run", "--name", self.name, "--runtime", "runc", *run_limits()]
        cmd += ["-p", f"127.0.0.1:{self.host_port}:{port}"]
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
