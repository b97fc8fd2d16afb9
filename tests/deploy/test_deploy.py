"""deploy/: the files parse, the manifests validate against the Kubernetes
schema, the compose file and manifests pass options `sfu serve` knows, and
every metric the Grafana dashboard queries exists in a real /metrics scrape."""

from __future__ import annotations

import json
import re
import shlex
import socket
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import kubernetes_validate
import pytest
import yaml
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families

from signaling.app import ServerConfig, create_app
from signaling.auth import KeyStore
from signaling.cli import build_parser

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
DASHBOARD = DEPLOY / "grafana" / "dashboards" / "sfu.json"
METRIC_RE = re.compile(r"\b(sfu_[a-z0-9_]+|process_[a-z0-9_]+)\b")
# Options being added to `sfu serve` by other work: used by the deploy files,
# not checked here.
NOT_CHECKED_OPTIONS = {"--rtc-ports", "--log-format"}
SFU_SERVICES = {"sfu-a": ("a", "172.28.0.11"), "sfu-b": ("b", "172.28.0.12")}


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def walk_panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in panels:
        yield panel
        yield from walk_panels(panel.get("panels", []))


def dashboard_exprs(dashboard: dict[str, Any]) -> list[str]:
    return [
        target["expr"]
        for panel in walk_panels(dashboard["panels"])
        for target in panel.get("targets", [])
        if "expr" in target
    ]


def serve_argv(args: list[str]) -> list[str]:
    """`args` without the options not checked here (and their values)."""
    out: list[str] = []
    skip = False
    for arg in args:
        if skip:
            skip = False
            continue
        name = arg.split("=", 1)[0]
        if name in NOT_CHECKED_OPTIONS:
            skip = "=" not in arg
            continue
        out.append(arg)
    return out


# --- the dashboard against a real node ------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
async def metrics_url() -> AsyncIterator[str]:
    """A node in this event loop, as tests/integration/conftest.py starts one."""
    port = free_port()
    config = ServerConfig(
        host="127.0.0.1", port=port, keys=KeyStore.dev(), rtc_hosts=("127.0.0.1",), dev=True
    )
    runner = web.AppRunner(create_app(config), handle_signals=False)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}/metrics"
    finally:
        await runner.cleanup()


def test_dashboard_is_a_grafana_dashboard() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["schemaVersion"] == 39
    assert dashboard["uid"] and dashboard["title"]
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    node = variables["node"]
    query = node["query"]["query"] if isinstance(node["query"], dict) else node["query"]
    assert query == "label_values(sfu_participants, node)"
    assert node["multi"] and node["includeAll"]

    panels = [p for p in walk_panels(dashboard["panels"]) if p["type"] != "row"]
    assert len(panels) >= 20
    ids = [p["id"] for p in walk_panels(dashboard["panels"])]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    for panel in panels:
        assert panel["type"] in ("timeseries", "stat"), panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            expr = target["expr"]
            names = METRIC_RE.findall(expr)
            assert names, (panel["title"], expr)
            # Every selector is filtered by the node variable, every legend names the node.
            unfiltered = re.findall(r"\b(?:sfu|process)_[a-z0-9_]+\b(?!\{node=~\"\$node\")", expr)
            assert not unfiltered, (panel["title"], expr)
            assert "{{node}}" in target["legendFormat"], (panel["title"], target)
            for opening, closing in ("()", "{}", "[]"):
                assert expr.count(opening) == expr.count(closing), (panel["title"], expr)

    # Panels do not overlap on the 24-column grid.
    cells: dict[tuple[int, int], str] = {}
    for panel in walk_panels(dashboard["panels"]):
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
        for x in range(grid["x"], grid["x"] + grid["w"]):
            for y in range(grid["y"], grid["y"] + grid["h"]):
                assert (x, y) not in cells, (panel["title"], cells[(x, y)])
                cells[(x, y)] = panel["title"]


async def test_every_dashboard_metric_exists_in_a_real_scrape(metrics_url: str) -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    referenced = {name for expr in dashboard_exprs(dashboard) for name in METRIC_RE.findall(expr)}
    for variable in dashboard["templating"]["list"]:
        query = variable.get("query")
        query = query.get("query", "") if isinstance(query, dict) else str(query or "")
        referenced |= set(METRIC_RE.findall(query))
    assert len(referenced) >= 30

    async with aiohttp.ClientSession() as http, http.get(metrics_url) as response:
        assert response.status == 200
        text = await response.text()
    exposed: set[str] = set()
    for family in text_string_to_metric_families(text):
        exposed.add(family.name)
        exposed.update(sample.name for sample in family.samples)
    assert "sfu_rtp_forwarded_bytes_total" in exposed
    assert "process_cpu_seconds_total" in exposed
    missing = sorted(referenced - exposed)
    assert not missing, f"the dashboard queries metrics the node does not expose: {missing}"


# --- compose, Prometheus, Grafana ---------------------------------------------------


def test_compose_file() -> None:
    compose = load_yaml(DEPLOY / "docker-compose.yml")
    services = compose["services"]
    assert set(services) >= {"redis", "sfu-a", "sfu-b", "prometheus", "grafana"}
    assert services["redis"]["image"].startswith("redis:7")
    subnet = compose["networks"]["sfu"]["ipam"]["config"][0]["subnet"]
    assert subnet == "172.28.0.0/24"
    for name, (node_id, ip) in SFU_SERVICES.items():
        service = services[name]
        assert service["build"]["dockerfile"] == "deploy/Dockerfile"
        assert (DEPLOY / service["build"]["context"] / service["build"]["dockerfile"]).is_file()
        assert "SFU_KEYS" in service["environment"]
        assert "healthcheck" in service
        command = [str(arg) for arg in service["command"]]
        assert "--redis-url" in command
        option = dict(zip(command, command[1:], strict=False))
        assert option["--redis-url"] == "redis://redis:6379/0"
        assert option["--node-id"] == node_id
        assert option["--relay-host"] == option["--rtc-host"] == ip
        assert service["networks"]["sfu"]["ipv4_address"] == ip
        assert "--rtc-ports" in option and "--announce-ip" in option
        # Every other option is one `sfu serve` knows, with a valid value.
        argv = [arg.replace("${SFU_ANNOUNCE_IP:-127.0.0.1}", "127.0.0.1") for arg in command]
        args = build_parser().parse_args(["serve", *serve_argv(argv)])
        assert args.host == "0.0.0.0" and args.port == 8080
    for service in ("prometheus", "grafana"):
        for volume in services[service]["volumes"]:
            source = volume.split(":")[0]
            assert (DEPLOY / source).exists(), volume


def test_prometheus_scrapes_both_nodes() -> None:
    config = load_yaml(DEPLOY / "prometheus" / "prometheus.yml")
    targets: dict[str, str] = {}
    for job in config["scrape_configs"]:
        assert job.get("metrics_path", "/metrics") == "/metrics"
        assert job.get("scrape_interval", config["global"]["scrape_interval"]) == "5s"
        for static in job["static_configs"]:
            for target in static["targets"]:
                targets[target] = static.get("labels", {}).get("node", "")
    assert targets == {"sfu-a:8080": "a", "sfu-b:8080": "b"}


def test_grafana_provisioning() -> None:
    provisioning = DEPLOY / "grafana" / "provisioning"
    datasources = load_yaml(provisioning / "datasources" / "prometheus.yml")
    (source,) = datasources["datasources"]
    assert source["type"] == "prometheus"
    assert source["url"] == "http://prometheus:9090"
    dashboards = load_yaml(provisioning / "dashboards" / "sfu.yml")
    (provider,) = dashboards["providers"]
    assert provider["type"] == "file"
    # compose mounts deploy/grafana/dashboards there.
    compose = load_yaml(DEPLOY / "docker-compose.yml")
    mounts = dict(v.split(":")[:2] for v in compose["services"]["grafana"]["volumes"])
    assert mounts["./grafana/dashboards"] == provider["options"]["path"]
    assert (DEPLOY / "grafana" / "dashboards" / "sfu.json").is_file()


# --- Kubernetes -------------------------------------------------------------------------

MANIFESTS = sorted((DEPLOY / "kubernetes").glob("*.yaml"))


def manifest_documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: p.name)
def test_manifest_validates(path: Path) -> None:
    version = kubernetes_validate.latest_version()
    documents = manifest_documents(path)
    assert documents
    for document in documents:
        # Raises ValidationError (bad field, unknown field in strict mode) or
        # SchemaNotFoundError (a kind the schema does not know, e.g. a CRD).
        kubernetes_validate.validate(document, version, strict=True)


def test_kubernetes_deployment() -> None:
    assert {p.name for p in MANIFESTS} >= {
        "configmap.yaml",
        "deployment.yaml",
        "service.yaml",
        "redis.yaml",
    }
    (config,) = manifest_documents(DEPLOY / "kubernetes" / "configmap.yaml")
    (deployment,) = manifest_documents(DEPLOY / "kubernetes" / "deployment.yaml")
    pod = deployment["spec"]["template"]["spec"]
    assert pod["hostNetwork"] is True
    assert pod["dnsPolicy"] == "ClusterFirstWithHostNet"
    assert pod["securityContext"]["runAsNonRoot"] is True
    anti = pod["affinity"]["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert anti[0]["topologyKey"] == "kubernetes.io/hostname"
    (container,) = pod["containers"]
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert "preStop" in container["lifecycle"]
    assert pod["terminationGracePeriodSeconds"] == 30
    assert container["resources"]["requests"]["cpu"] == "1"

    env = {e["name"]: e.get("valueFrom", {}) for e in container["env"]}
    assert env["SFU_KEYS"]["secretKeyRef"]["name"] == "sfu-keys"
    assert env["HOST_IP"]["fieldRef"]["fieldPath"] == "status.hostIP"
    assert env["POD_IP"]["fieldRef"]["fieldPath"] == "status.podIP"
    assert env["POD_NAME"]["fieldRef"]["fieldPath"] == "metadata.name"
    for name, source in env.items():
        if "configMapKeyRef" in source:
            assert source["configMapKeyRef"]["name"] == config["metadata"]["name"]
            assert source["configMapKeyRef"]["key"] in config["data"], name

    # $(VAR) expanded as the kubelet would, then parsed by `sfu serve`.
    values = {
        **config["data"],
        "POD_NAME": "sfu-abc",
        "POD_IP": "10.0.0.5",
        "HOST_IP": "10.0.0.5",
    }
    args = container["args"]
    option = dict(zip(args, args[1:], strict=False))
    assert option["--announce-ip"] == "$(HOST_IP)"
    assert option["--rtc-host"] == option["--relay-host"] == "$(POD_IP)"
    assert option["--node-id"] == "$(POD_NAME)"
    expanded = [re.sub(r"\$\((\w+)\)", lambda m: values[m.group(1)], arg) for arg in args]
    parsed = build_parser().parse_args(["serve", *serve_argv(expanded)])
    assert parsed.redis_url == config["data"]["SFU_REDIS_URL"]
    assert parsed.relay_port == int(config["data"]["SFU_RELAY_PORT"])
    relay_ports = [p["containerPort"] for p in container["ports"] if p["protocol"] == "UDP"]
    assert relay_ports == [parsed.relay_port]

    (service,) = manifest_documents(DEPLOY / "kubernetes" / "service.yaml")
    assert [(p["port"], p.get("protocol", "TCP")) for p in service["spec"]["ports"]] == [
        (8080, "TCP")
    ]
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]


# --- the Dockerfile ---------------------------------------------------------------------


def dockerfile_instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined, comments dropped."""
    lines = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    joined = "\n".join(lines).replace("\\\n", " ")
    out = []
    for line in joined.splitlines():
        if line.strip():
            instruction, _, rest = line.strip().partition(" ")
            out.append((instruction.upper(), rest.strip()))
    return out


def test_dockerfile() -> None:
    text = (DEPLOY / "Dockerfile").read_text()
    assert "--dev" not in text
    instructions = dockerfile_instructions(text)
    stages = [i for i, (name, _) in enumerate(instructions) if name == "FROM"]
    assert len(stages) >= 2, "multi-stage: compilers stay in the build stage"
    final = instructions[stages[-1] :]
    assert final[0][1] == "python:3.11-slim"
    assert all(
        "build-essential" not in args and "gcc" not in args for name, args in final if name == "RUN"
    )
    assert any(name == "RUN" and "pip install '.[fast]'" in args for name, args in instructions)
    users = [args for name, args in final if name == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0")
    (healthcheck,) = [args for name, args in final if name == "HEALTHCHECK"]
    _options, _, command = healthcheck.partition("CMD ")
    probe = json.loads(command)
    assert probe[:2] == ["python", "-c"] and "/healthz" in probe[2] and "urllib" in probe[2]
    compile(probe[2], "HEALTHCHECK", "exec")
    exposed = " ".join(args for name, args in final if name == "EXPOSE").split()
    assert "8080/tcp" in exposed or "8080" in exposed
    assert any(port.endswith("/udp") and "-" in port for port in exposed)
    (entrypoint,) = [args for name, args in final if name == "ENTRYPOINT"]
    assert json.loads(entrypoint) == ["sfu", "serve"]
    (cmd,) = [args for name, args in final if name == "CMD"]
    assert json.loads(cmd) == ["--host", "0.0.0.0", "--port", "8080"]
    # What the build copies exists (the context is the repository root), and
    # the Dockerfile's ignore file lets it in.
    ignore = (DEPLOY / "Dockerfile.dockerignore").read_text().split()
    for name, args in instructions:
        if name == "COPY" and "--from" not in args:
            *sources, _ = shlex.split(args)
            for source in sources:
                assert (ROOT / source).exists(), source
                assert f"!{source}" in ignore, source
