"""The Dockerfile, checked the other way round: no container engine runs here, so the file is
parsed and compared with what it must agree with — pyproject.toml (package, extras, console
script, Python version), the settings (ports), the CLI (commands) and the `docker` and Kubernetes
examples in docs/operations.md."""

from __future__ import annotations

import json
import re
import shlex
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from sparc_video.api.server import EXPORT_SERVICE, SHUTDOWN_GRACE_S
from sparc_video.cli.main import main, parse_args
from sparc_video.core.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
OPERATIONS_DOC = (ROOT / "docs" / "operations.md").read_text()
BUILD_TOOLS = ("build-essential", "gcc", "g++", "make", "clang", "cmake", "pkg-config")
ROLES = ("serve", "worker")


@dataclass
class Instruction:
    keyword: str
    args: str
    stage: int


@dataclass
class Dockerfile:
    instructions: list[Instruction]
    stage_names: list[str]
    args: dict[str, str]

    def stage(self, index: int) -> list[Instruction]:
        return [i for i in self.instructions if i.stage == index]

    def all(self, keyword: str, stage: int | None = None) -> list[str]:
        return [
            i.args
            for i in self.instructions
            if i.keyword == keyword and (stage is None or i.stage == stage)
        ]

    def expand(self, text: str) -> str:
        return re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: self.args.get(m[1] or m[2], m[0]), text)


def parse_dockerfile(text: str) -> Dockerfile:
    logical: list[str] = []
    current = ""
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("#") or (not line and not current):
            continue
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        logical.append(current + line)
        current = ""
    instructions, names, args = [], [], {}
    stage = -1
    for line in logical:
        keyword, _, rest = line.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            stage += 1
            match = re.search(r"\s+AS\s+(\S+)\s*$", rest, re.IGNORECASE)
            names.append(match[1] if match else str(stage))
        if keyword == "ARG":
            name, _, default = rest.strip().partition("=")
            args[name] = default.strip('"')
        instructions.append(Instruction(keyword, rest.strip(), stage))
    return Dockerfile(instructions, names, args)


DOCKERFILE = parse_dockerfile((ROOT / "Dockerfile").read_text())
FINAL = len(DOCKERFILE.stage_names) - 1


def exec_form(args: str) -> list[str]:
    value = json.loads(args)
    assert isinstance(value, list), f"{args!r}: use the exec (JSON) form"
    return [str(v) for v in value]


def key_values(args: str) -> dict[str, str]:
    return {key: value for key, _, value in (p.partition("=") for p in shlex.split(args))}


def port_defaults() -> dict[str, int]:
    """Every `*_port` setting's default: what the image has to expose."""
    defaults = Settings()
    return {
        name: getattr(defaults, name)
        for name in Settings.model_fields
        if name.endswith("_port") and getattr(defaults, name)
    }


def exposed() -> set[int]:
    return {int(p.split("/")[0]) for args in DOCKERFILE.all("EXPOSE") for p in args.split()}


def test_multi_stage_on_a_slim_python_that_pyproject_allows() -> None:
    bases = [DOCKERFILE.expand(a.split()[0]) for a in DOCKERFILE.all("FROM")]
    assert len(bases) >= 2, "multi-stage: build, then a clean runtime"
    required = re.fullmatch(r">=\s*(\d+)\.(\d+)", PYPROJECT["project"]["requires-python"])
    assert required, "the test understands only requires-python >=X.Y"
    for base in bases:
        match = re.fullmatch(r"python:(\d+)\.(\d+)-slim(-\w+)?", base)
        assert match, f"{base}: want an official slim Python image"
        assert (int(match[1]), int(match[2])) >= (int(required[1]), int(required[2]))
    assert len(set(bases)) == 1, "the virtualenv is copied, so both stages need one Python"


def test_build_stage_installs_the_project_as_pyproject_describes() -> None:
    (venv_copy,) = [c for c in DOCKERFILE.all("COPY", FINAL) if c.startswith("--from=")]
    build = DOCKERFILE.stage_names.index(venv_copy.removeprefix("--from=").split()[0])
    installs = [r for r in DOCKERFILE.all("RUN", build) if re.search(r"\bpip install\b", r)]
    assert len(installs) == 1, installs
    targets = [t for t in shlex.split(installs[0]) if t == "." or t.startswith(".[")]
    assert targets, f"{installs[0]}: must install the project itself"
    extras = set(re.findall(r"\w[\w-]*", targets[0].removeprefix(".")))
    assert extras <= set(PYPROJECT["project"].get("optional-dependencies", {}))
    assert "test" not in extras

    copied = {
        src.rstrip("/")
        for args in DOCKERFILE.all("COPY", build)
        for src in shlex.split(args)[:-1]
        if not src.startswith("--")
    }
    setuptools = PYPROJECT["tool"]["setuptools"]
    package_dirs = setuptools.get("package-dir", {})
    needed = {"pyproject.toml", PYPROJECT["project"]["readme"]}
    for package in setuptools["packages"]:
        needed.add(package_dirs.get(package, package.replace(".", "/")).split("/")[0])
    assert needed <= copied, f"not copied into the build: {needed - copied}"

    # .dockerignore is an allow-list: everything out, then what the build copies back in.
    ignore = [
        line
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line and not line.startswith("#")
    ]
    assert ignore[0] == "*"
    for path in needed:
        assert f"!{path}" in ignore or f"!{path}/" in ignore, f".dockerignore drops {path}"


def test_final_stage_has_no_build_tools_and_runs_unprivileged() -> None:
    for run in DOCKERFILE.all("RUN", FINAL):
        assert "pip install" not in run, "the runtime copies the built virtualenv instead"
        for install in re.findall(r"(?:apt-get|apt|apk) (?:install|add)([^&;|]*)", run):
            packages = [p for p in install.split() if not p.startswith("-")]
            tools = [p for p in packages if p in BUILD_TOOLS or p.endswith("-dev")]
            assert not tools, f"build tools in the final stage: {tools}"
    copies = DOCKERFILE.all("COPY", FINAL)
    assert any(c.startswith("--from=") and "/opt/venv" in c for c in copies), copies
    env = {k: v for args in DOCKERFILE.all("ENV", FINAL) for k, v in key_values(args).items()}
    assert env["PATH"].split(":")[0] == "/opt/venv/bin"
    users = DOCKERFILE.all("USER", FINAL)
    assert users, "the runtime must not run as root"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0")


def test_entrypoint_is_the_console_script_and_commands_exist() -> None:
    scripts = PYPROJECT["project"]["scripts"]
    entrypoint = exec_form(DOCKERFILE.all("ENTRYPOINT", FINAL)[-1])
    assert len(entrypoint) == 1 and entrypoint[0] in scripts
    assert scripts[entrypoint[0]] == "sparc_video.cli.main:main"
    command = exec_form(DOCKERFILE.all("CMD", FINAL)[-1])
    assert command == ["serve"]
    for role in ROLES:
        assert parse_args([role]).info_name == role


def test_ports_stop_signal_and_labels() -> None:
    ports = port_defaults()
    assert {"grpc_port", "http_port"} <= set(ports)
    missing = {name: port for name, port in ports.items() if port not in exposed()}
    assert not missing, f"settings' default ports not EXPOSEd: {missing}"
    assert DOCKERFILE.all("STOPSIGNAL", FINAL) == ["SIGTERM"]
    labels = {
        k: DOCKERFILE.expand(v)
        for args in DOCKERFILE.all("LABEL", FINAL)
        for k, v in key_values(args).items()
    }
    prefix = "org.opencontainers.image."
    assert {f"{prefix}{k}" for k in ("title", "description", "version", "revision")} <= set(labels)
    assert labels[f"{prefix}title"] == PYPROJECT["project"]["name"]
    assert labels[f"{prefix}version"] == PYPROJECT["project"]["version"]


def operations_section(title: str) -> str:
    match = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", OPERATIONS_DOC, re.M | re.S)
    assert match, f"docs/operations.md has no '## {title}' section"
    return match[1]


def code_blocks(section: str, language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", section, re.S)


def shell_commands(block: str) -> list[list[str]]:
    commands = []
    for line in block.replace("\\\n", " ").splitlines():
        line = line.split(" #")[0].strip()
        if line and not line.startswith("#"):
            commands.append(shlex.split(line))
    return commands


IMAGE = f"{PYPROJECT['project']['name']}:{PYPROJECT['project']['version']}"


def test_documented_docker_commands_match_the_image() -> None:
    commands = shell_commands(code_blocks(operations_section("Container image"), "sh")[0])
    builds = [c for c in commands if c[:2] == ["docker", "build"]]
    assert builds and IMAGE in builds[0] and builds[0][-1] == "."
    runs = [c for c in commands if c[:2] == ["docker", "run"]]
    roles = []
    for run in runs:
        image_at = run.index(IMAGE)
        role = run[image_at + 1 :]
        assert role and role[0] in (*ROLES, "migrate"), run
        roles.append(role[0])
        parse_args(role)
        for i, arg in enumerate(run):
            if arg == "-p":
                assert int(run[i + 1].split(":")[1]) in exposed(), run
        env = {run[i + 1].split("=")[0] for i, arg in enumerate(run) if arg == "-e"}
        # Every role reaches the system of record.
        assert env & {"DATABASE_URL", "DATABASE_URL_FILE"}, run
        if role[0] == "migrate":
            continue
        # Both roles refuse to start without the shared signing key.
        assert env & {"MANIFEST_SIGNING_KEY", "MANIFEST_SIGNING_KEY_FILE"}, run
        if role[0] == "serve" and env & {"AUTH_TOKENS", "AUTH_TOKENS_FILE"}:
            # Clients send tokens only over TLS: a server taking tokens terminates it.
            assert {"GRPC_TLS_CERT_FILE", "GRPC_TLS_KEY_FILE"} <= env, run
    assert set(roles) == {*ROLES, "migrate"}
    # The schema is upgraded first: serve and worker refuse a schema older than theirs.
    assert roles.index("migrate") < min(roles.index(role) for role in ROLES)


def kubernetes_objects() -> dict[tuple[str, str], dict[str, Any]]:
    blocks = code_blocks(operations_section("Kubernetes"), "yaml")
    assert len(blocks) == 1
    return {
        (doc["kind"], doc["metadata"]["name"]): doc for doc in yaml.safe_load_all(blocks[0]) if doc
    }


def test_documented_kubernetes_example_matches_image_settings_and_shutdown() -> None:
    objects = kubernetes_objects()
    defaults = Settings()
    ports = port_defaults()
    deployments = {name: doc for (kind, name), doc in objects.items() if kind == "Deployment"}
    assert set(deployments) == {"sparc-video-server", "sparc-video-worker"}

    def pod(name: str) -> tuple[dict[str, Any], dict[str, Any], dict[str, str]]:
        template = deployments[name]["spec"]["template"]
        (container,) = template["spec"]["containers"]
        assert container["image"] == IMAGE
        for port in container.get("ports", []):
            assert port["containerPort"] in exposed()
        return template["spec"], container, template["metadata"]["annotations"]

    spec, server, annotations = pod("sparc-video-server")
    assert server["args"] == ["serve"]
    assert server["readinessProbe"]["grpc"] == {
        "port": defaults.grpc_port,
        "service": EXPORT_SERVICE,
    }
    assert server["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": defaults.http_port}
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/port"] == str(defaults.http_port)
    assert spec["terminationGracePeriodSeconds"] > SHUTDOWN_GRACE_S

    spec, worker, annotations = pod("sparc-video-worker")
    assert worker["args"] == ["worker"]
    env = {e["name"]: e["value"] for e in worker.get("env", [])}
    grace = int(env.get("WORKER_SHUTDOWN_GRACE", defaults.worker_shutdown_grace_s))
    assert spec["terminationGracePeriodSeconds"] >= grace + 5
    assert annotations["prometheus.io/scrape"] == "true"
    if "worker_metrics_port" in ports:
        metrics_port = ports["worker_metrics_port"]
        assert annotations["prometheus.io/port"] == str(metrics_port)
        assert worker["livenessProbe"]["httpGet"]["port"] == metrics_port

    # The schema upgrade runs as a Job, with the database URL from the shared Secret.
    (migrate,) = [doc for (kind, _), doc in objects.items() if kind == "Job"]
    (job,) = migrate["spec"]["template"]["spec"]["containers"]
    assert job["image"] == IMAGE and job["args"] == ["migrate"]
    assert {
        "name": "DATABASE_URL",
        "valueFrom": {"secretKeyRef": {"name": "sparc-video", "key": "DATABASE_URL"}},
    } in job["env"]
    parse_args(job["args"])

    hpa = objects[("HorizontalPodAutoscaler", "sparc-video-worker")]
    assert hpa["spec"]["scaleTargetRef"]["name"] == "sparc-video-worker"
    (metric,) = hpa["spec"]["metrics"]
    assert metric["external"]["metric"]["selector"] == {"matchLabels": {"state": "queued"}}


def test_documented_pools_fit_postgres_default_max_connections() -> None:
    """The arithmetic docs/operations.md (Database, pool sizing) asks for, on its own manifests
    at their largest: under 100 connections less PostgreSQL's 3 reserved for superusers."""
    objects = kubernetes_objects()
    default = Settings().database_pool_max_size

    def pool_size(name: str) -> int:
        (container,) = objects[("Deployment", name)]["spec"]["template"]["spec"]["containers"]
        env = {e["name"]: e["value"] for e in container.get("env", []) if "value" in e}
        return int(env.get("DATABASE_POOL_MAX_SIZE", default))

    def surge(name: str) -> int:
        strategy = objects[("Deployment", name)]["spec"]["strategy"]["rollingUpdate"]
        assert isinstance(strategy["maxSurge"], int), "a count, so the sum can be checked"
        return int(strategy["maxSurge"])

    servers = objects[("Deployment", "sparc-video-server")]["spec"]["replicas"]
    servers += surge("sparc-video-server")
    workers = objects[("HorizontalPodAutoscaler", "sparc-video-worker")]["spec"]["maxReplicas"]
    workers += surge("sparc-video-worker")
    # A server's pool plus its health-check connection; a worker's pool; the migration Job.
    total = servers * (pool_size("sparc-video-server") + 1)
    total += workers * pool_size("sparc-video-worker") + 1
    assert total <= 100 - 3, total
    assert f"= {total} ≤ 97" in operations_section("Database")


@pytest.mark.parametrize("role", ROLES)
def test_roles_list_their_environment(role: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([role, "--help"]) == 0
    assert "REDIS_URL" in capsys.readouterr().out


def test_documented_recorder_manifest_serves_live_view_through_a_headless_service() -> None:
    """docs/recording.md: each recorder pod advertises its name under a headless Service whose
    ports are the live ports its environment sets, all EXPOSEd by the image."""
    text = (ROOT / "docs" / "recording.md").read_text()
    (block,) = code_blocks(text[text.index("### Kubernetes") :], "yaml")
    objects = {(d["kind"], d["metadata"]["name"]): d for d in yaml.safe_load_all(block) if d}
    recorder = objects[("StatefulSet", "sparc-video-recorder")]
    service = objects[("Service", recorder["spec"]["serviceName"])]
    assert service["spec"]["clusterIP"] == "None"
    assert service["spec"]["selector"] == recorder["spec"]["selector"]["matchLabels"]
    (container,) = recorder["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e.get("value", "") for e in container["env"]}
    live = {int(env["RECORDER_LIVE_GRPC_PORT"]), int(env["RECORDER_LIVE_HTTP_PORT"])}
    assert live == {p["port"] for p in service["spec"]["ports"]}
    assert live <= {p["containerPort"] for p in container["ports"]} and live <= exposed()
    assert f".{service['metadata']['name']}." in env["RECORDER_ADVERTISE_ADDRESS"]
