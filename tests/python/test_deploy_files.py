"""docker/compose.yaml and docker/k8s/*.yaml: parsed with PyYAML and checked against each other,
against docker/Dockerfile and docker/nginx.conf, and against ferrocorn's own command line.

No Kubernetes or compose runs here: what is checked is what a typo would silently break. Probes
reach the --metrics-bind port, the Service and HPA find the Deployment, KILL comes after the
preStop sleep plus --graceful-timeout, the socket compose shares is the one nginx.conf names,
and every argument is one ferrocorn accepts (``--print-config``). test_container.py runs the
image itself, test_nginx.py the nginx configs.
"""

import re

import pytest
from helpers import REPO, run_cli

yaml = pytest.importorskip("yaml")

DOCKER = REPO / "docker"
K8S = DOCKER / "k8s"


def load(path):
    with open(path) as f:
        return yaml.safe_load(f)


def flag(args, name):
    """The value after ``name`` in an argv list (None when absent)."""
    return args[args.index(name) + 1] if name in args else None


def port_of(address):
    return int(address.rsplit(":", 1)[1])


def dockerfile_arg(name):
    m = re.search(rf"^ARG {name}=(\S+)$", (DOCKER / "Dockerfile").read_text(), re.MULTILINE)
    assert m, f"docker/Dockerfile has no default for ARG {name}"
    return m.group(1)


def accepted_by_ferrocorn(args):
    """Runs ferrocorn with ``args`` and --print-config, which imports the app: the demo app
    stands in for the last argument. Returns the exit code and stderr."""
    chdir = ["--chdir", str(REPO / "examples")]
    result = run_cli([*args[:-1], *chdir, "--print-config", "hello:app"])
    return result.returncode, result.stderr


# -- compose ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def compose():
    return load(DOCKER / "compose.yaml")


def test_compose_builds_the_dockerfile_from_the_repository(compose):
    build = compose["services"]["app"]["build"]
    context = (DOCKER / build["context"]).resolve()
    assert context == REPO
    assert (context / build["dockerfile"]).is_file()
    assert (context / build["args"]["APP_DIR"]).is_dir()


def test_compose_shares_the_socket_nginx_conf_names(compose):
    app, nginx = compose["services"]["app"], compose["services"]["nginx"]
    bind = flag(app["command"], "--bind")
    assert bind.startswith("unix:")
    socket_dir = bind[len("unix:") :].rsplit("/", 1)[0]
    shared = {v.split(":")[0] for v in app["volumes"]} & {v.split(":")[0] for v in nginx["volumes"]}
    assert shared == {"socket"} and "socket" in compose["volumes"]
    assert f"socket:{socket_dir}" in app["volumes"]
    assert f"socket:{socket_dir}" in nginx["volumes"]
    conf_mount = next(v for v in nginx["volumes"] if v.startswith("./nginx.conf:"))
    assert conf_mount.split(":")[1] == "/etc/nginx/conf.d/default.conf"
    assert f"server {bind} " in (DOCKER / "nginx.conf").read_text()
    # The Dockerfile makes that directory its user's, so the first mount copies its owner.
    assert (
        f"mkdir -p {socket_dir} && chown ferrocorn:ferrocorn {socket_dir}"
        in (DOCKER / "Dockerfile").read_text()
    )
    assert nginx["depends_on"]["app"]["condition"] == "service_healthy"


def test_compose_stop_and_keep_alive_timing(compose):
    app = compose["services"]["app"]
    graceful = int(flag(app["command"], "--graceful-timeout"))
    grace = int(re.fullmatch(r"(\d+)s", app["stop_grace_period"]).group(1))
    assert grace > graceful
    # nginx must close an idle upstream connection before ferrocorn does.
    nginx_idle = re.search(r"keepalive_timeout (\d+)s;", (DOCKER / "nginx.conf").read_text())
    assert int(flag(app["command"], "--keep-alive")) > int(nginx_idle.group(1))


def test_compose_healthcheck_asks_the_metrics_bind(compose):
    app = compose["services"]["app"]
    metrics = flag(app["command"], "--metrics-bind")
    script = app["healthcheck"]["test"][-1]
    assert f"http://{metrics}/ready" in script


def test_compose_command_is_accepted_by_ferrocorn(compose):
    code, err = accepted_by_ferrocorn(list(compose["services"]["app"]["command"]))
    assert code == 0, err


# -- kubernetes -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def k8s():
    docs = {}
    for path in sorted(K8S.glob("*.yaml")):
        doc = load(path)
        docs[doc["kind"]] = doc
    return docs


@pytest.fixture(scope="module")
def container(k8s):
    (c,) = k8s["Deployment"]["spec"]["template"]["spec"]["containers"]
    return c


def test_kustomization_lists_every_manifest(k8s):
    listed = set(k8s["Kustomization"]["resources"])
    assert listed == {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}


def test_labels_selectors_and_the_hpa_target(k8s):
    deployment = k8s["Deployment"]
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert k8s["Service"]["spec"]["selector"].items() <= labels.items()
    target = k8s["HorizontalPodAutoscaler"]["spec"]["scaleTargetRef"]
    assert (target["apiVersion"], target["kind"], target["name"]) == (
        deployment["apiVersion"],
        "Deployment",
        deployment["metadata"]["name"],
    )


def test_ports_and_probes_match_the_arguments(k8s, container):
    args = container["args"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports["http"] == port_of(flag(args, "--bind"))
    assert ports["metrics"] == port_of(flag(args, "--metrics-bind"))
    for probe, path in [
        ("readinessProbe", "/ready"),
        ("livenessProbe", "/health"),
        ("startupProbe", "/ready"),
    ]:
        get = container[probe]["httpGet"]
        assert (get["path"], ports[get["port"]]) == (path, ports["metrics"]), probe
    assert k8s["Service"]["spec"]["ports"][0]["targetPort"] in ports
    annotations = k8s["Deployment"]["spec"]["template"]["metadata"]["annotations"]
    assert int(annotations["prometheus.io/port"]) == ports["metrics"]


def test_kill_comes_after_the_prestop_sleep_and_the_graceful_timeout(k8s, container):
    pod = k8s["Deployment"]["spec"]["template"]["spec"]
    sleep_cmd = container["lifecycle"]["preStop"]["exec"]["command"]
    assert sleep_cmd[0] == "sleep"
    graceful = int(flag(container["args"], "--graceful-timeout"))
    assert pod["terminationGracePeriodSeconds"] > int(sleep_cmd[1]) + graceful


def test_the_pod_runs_as_the_images_user_with_cpu_requests_for_the_hpa(k8s, container):
    pod = k8s["Deployment"]["spec"]["template"]["spec"]
    uid = int(dockerfile_arg("APP_UID"))
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == uid
    assert container["resources"]["requests"]["cpu"]
    metric = k8s["HorizontalPodAutoscaler"]["spec"]["metrics"][0]["resource"]
    assert metric["name"] == "cpu"


def test_deployment_args_are_accepted_by_ferrocorn(container):
    code, err = accepted_by_ferrocorn(list(container["args"]))
    assert code == 0, err
