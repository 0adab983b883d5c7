"""deploy/k8s: every overlay renders, passes kubernetes-validate --strict and the deployment policies; each policy is
shown to fail on a rendered copy that breaks it; the overlays' own promises (dev: one replica, in-cluster PostgreSQL
and Redis; prod: external Secrets, replica bounds from the capacity model, tracing)."""

from __future__ import annotations

import ast
import base64
import copy
import json
import pathlib
import re
import subprocess
import sys
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import pytest

from gateway import redoc
from gateway import render as gw
from services.common.config import SERVICE_NAMES
from tools import capacity, k8s_check
from tools.k8s_check import K8sObject

Objects = list[K8sObject]


def _find(objects: Objects, kind: str, name: str) -> K8sObject:
    [found] = [obj for obj in objects if obj["kind"] == kind and obj["metadata"]["name"] == name]
    return found


def _prefixed(objects: Objects, kind: str, prefix: str) -> K8sObject:
    """A generated ConfigMap or Secret: its name carries a content hash after the prefix."""
    pattern = re.compile(rf"{re.escape(prefix)}-[a-z0-9]{{10}}")
    [found] = [obj for obj in objects if obj["kind"] == kind and pattern.fullmatch(obj["metadata"]["name"])]
    return found


def _container(objects: Objects, kind: str, name: str, container: str | None = None) -> K8sObject:
    spec = _find(objects, kind, name)["spec"]["template"]["spec"]
    found: list[K8sObject] = [item for item in spec["containers"] if container is None or item["name"] == container]
    [only] = found
    return only


def _envoy(objects: Objects) -> dict[str, Any]:
    config, problems = k8s_check._envoy_config(objects)
    assert config is not None, problems
    return config


def _runtime_env(objects: Objects) -> dict[str, str]:
    data: dict[str, str] = _prefixed(objects, "ConfigMap", "nerava-runtime")["data"]
    return data


# ---------------------------------------------------------------------------------------------------------------------
# Rendering, schemas, policies


def test_generated_files_match_the_gateway_renderer_and_gen() -> None:
    stale = k8s_check.stale_generated_files()
    assert not stale, f"stale: {[str(p) for p in stale]}; run `python -m tools.k8s_check --write`"


def test_every_component_is_used_by_an_overlay() -> None:
    components = {path.name for path in (k8s_check.K8S / "components").iterdir() if path.is_dir()}
    used = {
        line.strip().removeprefix("- ../../components/")
        for overlay in k8s_check.OVERLAYS
        for line in (k8s_check.K8S / "overlays" / overlay / "kustomization.yaml").read_text().splitlines()
        if line.strip().startswith("- ../../components/")
    }
    assert components == used == {"autoscaling", "monitoring", "network-policies", "tracing"}


@pytest.mark.parametrize("overlay", k8s_check.OVERLAYS)
def test_overlay_passes_kubernetes_validate_strict(rendered: dict[str, Objects], overlay: str) -> None:
    assert k8s_check.schema_errors(rendered[overlay]) == []


def test_strict_schema_validation_rejects_an_unknown_field(rendered: dict[str, Objects]) -> None:
    deployment = copy.deepcopy(_find(rendered["prod"], "Deployment", "sessions"))
    deployment["spec"]["template"]["spec"]["enableServiceLink"] = False
    hpa = copy.deepcopy(_find(rendered["prod"], "HorizontalPodAutoscaler", "gateway"))
    hpa["spec"]["maxReplica"] = 3
    errors = k8s_check.schema_errors([deployment, hpa])
    assert len(errors) == 2
    assert "Deployment/sessions" in errors[0] and "enableServiceLink" in errors[0]
    assert "HorizontalPodAutoscaler/gateway" in errors[1] and "maxReplica" in errors[1]


@pytest.mark.parametrize("overlay", k8s_check.OVERLAYS)
def test_overlay_complies_with_the_deployment_policies(rendered: dict[str, Objects], overlay: str) -> None:
    assert k8s_check.policy_violations(rendered[overlay]) == []


# ---------------------------------------------------------------------------------------------------------------------
# Each policy fails on a copy that breaks it


@pytest.mark.parametrize(
    ("overlay", "kind", "name", "container", "probe"),
    [
        ("prod", "Deployment", "sessions", "sessions", "readinessProbe"),
        ("prod", "Deployment", "ledger", "ledger", "livenessProbe"),
        ("prod", "Deployment", "gateway", "envoy", "readinessProbe"),
        ("prod", "Deployment", "otel-collector", "collector", "livenessProbe"),
        ("dev", "StatefulSet", "postgres", "postgres", "readinessProbe"),
        ("dev", "Deployment", "redis", "redis", "livenessProbe"),
    ],
)
def test_policy_fails_when_a_probe_is_removed(
    rendered: dict[str, Objects], overlay: str, kind: str, name: str, container: str, probe: str
) -> None:
    objects = copy.deepcopy(rendered[overlay])
    del _container(objects, kind, name, container)[probe]
    violations = k8s_check.policy_violations(objects)
    assert f"{kind}/{name} container {container}: no {probe}" in violations
    # The rendered original is untouched and clean.
    assert k8s_check.policy_violations(rendered[overlay]) == []


def test_policy_fails_when_a_service_probe_is_not_native_grpc(rendered: dict[str, Objects]) -> None:
    objects = copy.deepcopy(rendered["prod"])
    _container(objects, "Deployment", "incentives")["livenessProbe"] = {"tcpSocket": {"port": 50051}}
    assert k8s_check.policy_violations(objects) == [
        "Deployment/incentives: livenessProbe is not a native gRPC probe on port 50051"
    ]


def _drop(path: str) -> Callable[[K8sObject], None]:
    """Deletes a dotted path inside a container."""

    def mutate(container: K8sObject) -> None:
        *parents, leaf = path.split(".")
        target = container
        for key in parents:
            target = target[key]
        del target[leaf]

    return mutate


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (_drop("resources.limits"), "no cpu in resources.limits"),
        (_drop("resources.requests.memory"), "no memory in resources.requests"),
        (_drop("securityContext.readOnlyRootFilesystem"), "securityContext.readOnlyRootFilesystem is not true"),
        (_drop("securityContext.allowPrivilegeEscalation"), "securityContext.allowPrivilegeEscalation is not false"),
        (_drop("securityContext.capabilities"), "securityContext.capabilities.drop lacks ALL"),
    ],
)
def test_policy_fails_without_resources_or_the_security_context(
    rendered: dict[str, Objects], mutate: Callable[[K8sObject], None], expected: str
) -> None:
    objects = copy.deepcopy(rendered["prod"])
    mutate(_container(objects, "Deployment", "ledger"))
    assert f"Deployment/ledger container ledger: {expected}" in k8s_check.policy_violations(objects)


def test_policy_fails_for_a_root_pod_and_an_init_container_without_limits(rendered: dict[str, Objects]) -> None:
    objects = copy.deepcopy(rendered["dev"])
    spec = _find(objects, "Deployment", "accounts")["spec"]["template"]["spec"]
    spec["securityContext"]["runAsNonRoot"] = False
    del spec["securityContext"]["seccompProfile"]
    del spec["initContainers"][0]["resources"]["limits"]["memory"]
    violations = k8s_check.policy_violations(objects)
    assert "Deployment/accounts container accounts: runAsNonRoot is not true" in violations
    assert "Deployment/accounts container accounts: no RuntimeDefault seccompProfile" in violations
    assert "Deployment/accounts initContainer wait-for-schema: no memory in resources.limits" in violations


@pytest.mark.parametrize(
    ("kind", "name", "expected"),
    [
        ("HorizontalPodAutoscaler", "sessions", "Deployment/sessions: no HorizontalPodAutoscaler"),
        ("HorizontalPodAutoscaler", "gateway", "Deployment/gateway: no HorizontalPodAutoscaler"),
        ("PodDisruptionBudget", "ledger", "Deployment/ledger: no PodDisruptionBudget"),
        ("NetworkPolicy", "merchants", "Deployment/merchants: no NetworkPolicy"),
        ("NetworkPolicy", "gateway", "Deployment/gateway: no NetworkPolicy"),
        ("Service", "incentives", "service incentives: no Service"),
        (
            "Job",
            "accounts-migrations",
            "service accounts: no Job running `services.common.migrations upgrade accounts`",
        ),
    ],
)
def test_policy_fails_when_a_service_lacks_an_object(
    rendered: dict[str, Objects], kind: str, name: str, expected: str
) -> None:
    assert expected in k8s_check.policy_violations(k8s_check.without(rendered["prod"], kind, name))


def test_policy_fails_when_an_hpa_has_no_behaviour(rendered: dict[str, Objects]) -> None:
    objects = copy.deepcopy(rendered["prod"])
    del _find(objects, "HorizontalPodAutoscaler", "sessions")["spec"]["behavior"]["scaleDown"]
    assert k8s_check.policy_violations(objects) == [
        "HorizontalPodAutoscaler/sessions: no scale-up and scale-down behaviour"
    ]


def test_policy_fails_when_an_envoy_cluster_points_at_a_service_that_is_not_headless(
    rendered: dict[str, Objects],
) -> None:
    objects = copy.deepcopy(rendered["prod"])
    del _find(objects, "Service", "ledger")["spec"]["clusterIP"]
    violations = k8s_check.policy_violations(objects)
    assert "envoy cluster ledger: Service ledger is not headless" in violations
    assert any(v.startswith("Service/ledger: not headless") for v in violations)


def _rewrite_envoy(objects: Objects, change: Callable[[dict[str, Any]], None]) -> None:
    config_map = _prefixed(objects, "ConfigMap", "gateway-envoy")
    config = json.loads(config_map["data"]["envoy.json"])
    change(config)
    config_map["data"]["envoy.json"] = json.dumps(config)


def _cluster(config: dict[str, Any], name: str) -> dict[str, Any]:
    found: list[dict[str, Any]] = [
        cluster for cluster in config["static_resources"]["clusters"] if cluster["name"] == name
    ]
    [only] = found
    return only


def _address(cluster: dict[str, Any]) -> dict[str, Any]:
    address: dict[str, Any] = cluster["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"][
        "socket_address"
    ]
    return address


def test_policy_fails_when_an_envoy_cluster_names_no_service_or_is_static(rendered: dict[str, Objects]) -> None:
    objects = copy.deepcopy(rendered["dev"])

    def change(config: dict[str, Any]) -> None:
        _address(_cluster(config, "sessions"))["address"] = "session.nerava.svc.cluster.local"
        incentives = _cluster(config, "incentives")
        incentives["type"] = "STATIC"
        _address(incentives)["address"] = "10.0.0.7"
        _cluster(config, "ledger")["type"] = "LOGICAL_DNS"

    _rewrite_envoy(objects, change)
    assert k8s_check.policy_violations(objects) == [
        "envoy cluster sessions: session.nerava.svc.cluster.local names no rendered Service",
        "envoy cluster incentives: STATIC 10.0.0.7:50051 is not STRICT_DNS over a Service name",
        "envoy cluster ledger: LOGICAL_DNS ledger.nerava.svc.cluster.local:50051 is not STRICT_DNS over a Service name",
    ]


def test_policy_fails_when_a_new_caller_is_not_admitted(rendered: dict[str, Objects]) -> None:
    callers = k8s_check.service_callers()
    callers["merchants"] = {"ledger"}  # as if the ledger began calling merchants
    assert k8s_check.policy_violations(rendered["prod"], callers) == [
        "NetworkPolicy of merchants: does not admit ledger on port 50051"
    ]


def test_policy_fails_when_a_network_policy_admits_everyone(rendered: dict[str, Objects]) -> None:
    objects = copy.deepcopy(rendered["prod"])
    _find(objects, "NetworkPolicy", "ledger")["spec"]["ingress"].append({"ports": [{"port": 50051}]})
    _find(objects, "NetworkPolicy", "accounts")["spec"]["ingress"][0]["from"].append(
        {"podSelector": {"matchLabels": {"app.kubernetes.io/part-of": "nerava"}}}
    )
    violations = k8s_check.policy_violations(objects)
    assert "NetworkPolicy of ledger: a rule admits every source" in violations
    assert "NetworkPolicy of accounts: admits pods other than the gateway and named callers" in violations


def test_policy_fails_without_max_connection_age_or_a_grace_period_to_drain(rendered: dict[str, Objects]) -> None:
    objects = copy.deepcopy(rendered["prod"])
    del _runtime_env(objects)["GRPC_MAX_CONNECTION_AGE_SECONDS"]
    _find(objects, "Deployment", "sessions")["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] = 20
    violations = k8s_check.policy_violations(objects)
    for service in SERVICE_NAMES:
        assert (
            f"Deployment/{service}: GRPC_MAX_CONNECTION_AGE_SECONDS is not set (clients never rebalance)" in violations
        )
    assert any(v.startswith("Deployment/sessions: terminationGracePeriodSeconds <") for v in violations)


def test_policy_fails_for_a_floating_image_or_a_missing_config_map(rendered: dict[str, Objects]) -> None:
    objects = copy.deepcopy(rendered["prod"])
    _container(objects, "Deployment", "otel-collector")["image"] = "otel/opentelemetry-collector-contrib:latest"
    _container(objects, "Deployment", "accounts")["envFrom"][1]["configMapRef"]["name"] = "accounts-settings"
    violations = k8s_check.policy_violations(objects)
    collector = "Deployment/otel-collector container collector"
    assert f"{collector}: image 'otel/opentelemetry-collector-contrib:latest' has no fixed tag" in violations
    assert "Deployment/accounts: ConfigMap accounts-settings is not rendered" in violations


# ---------------------------------------------------------------------------------------------------------------------
# What the manifests promise


def test_services_are_headless_and_envoy_balances_each_request_over_them(rendered: dict[str, Objects]) -> None:
    for objects in rendered.values():
        config = _envoy(objects)
        for service in SERVICE_NAMES:
            assert _find(objects, "Service", service)["spec"]["clusterIP"] == "None"
            cluster = _cluster(config, service)
            assert cluster["type"] == "STRICT_DNS"
            assert cluster["lb_policy"] == "ROUND_ROBIN"
            assert _address(cluster) == {"address": f"{service}.nerava.svc.cluster.local", "port_value": 50051}


def test_peers_dial_the_headless_services_and_servers_bound_connection_age(rendered: dict[str, Objects]) -> None:
    env = _runtime_env(rendered["prod"])
    for service in SERVICE_NAMES:
        assert env[f"{service.upper()}_ADDR"] == f"dns:///{service}.nerava.svc.cluster.local:50051"
    # services/common/server.py reads it; a minute bounds how long a client ignores a new replica.
    assert 0 < int(env["GRPC_MAX_CONNECTION_AGE_SECONDS"]) <= 300


def test_every_setting_the_manifests_give_a_service_is_one_it_reads(rendered: dict[str, Objects]) -> None:
    """A renamed variable must not leave the manifests setting something nobody reads."""
    code = "\n".join(path.read_text() for path in (k8s_check.ROOT / "services").rglob("*.py"))
    per_service = {f"{s.upper()}_{suffix}" for s in SERVICE_NAMES for suffix in ("PORT", "METRICS_PORT", "ADDR")}
    objects = rendered["dev"]
    names: set[str] = set()
    for service in SERVICE_NAMES:
        for source in _container(objects, "Deployment", service)["envFrom"]:
            ref = source.get("configMapRef") or source.get("secretRef")
            found = [
                o for o in objects if o["kind"] in ("ConfigMap", "Secret") and o["metadata"]["name"] == ref["name"]
            ]
            if not found and ref["name"] in k8s_check.EXTERNAL_SECRETS:
                continue  # created by hand even in dev (the service-token secret): nothing rendered to check
            [obj] = found
            names |= set(obj.get("data", {}))
    unread = sorted(
        name
        for name in names - per_service
        if f'"{name}"' not in code and not name.startswith("OTEL_")  # OTEL_* are read by the OpenTelemetry SDK
    )
    assert unread == []


# What each service reads (the first argument of every Env read in its config.py and services/common/config.py;
# the per-service <SERVICE>_PORT/_ADDR/... names are f-strings and checked above) that the manifests leave at the
# code's default on purpose: tuning and limits whose default is production's value. A setting a service reads is
# either set in deploy/k8s (a ConfigMap, or a Secret in the prod overlay's list) or named here: one added to a
# config.py without either fails test_prod_sets_every_setting_a_service_reads.
LEFT_AT_DEFAULT: frozenset[str] = frozenset(
    {"ACCESS_TOKEN_TTL_S", "REFRESH_TOKEN_TTL_S"}
    # accounts: the login-code limits; the stub provider stays off (only the dev overlay switches it on).
    | {"OTP_STUB_ENABLED", "OTP_STARTS_PER_IDENTITY", "OTP_STARTS_PER_IP", "OTP_START_WINDOW_S"}
    | {"OTP_MAX_WRONG_CODES", "OTP_WRONG_CODE_WINDOW_S", "OTP_LOCKOUT_S"}
    # sessions: push freshness, the session watcher, the partitions' retention and upkeep.
    | {"PUSH_MAX_AGE_S", "SESSION_WATCH_INTERVAL_S", "SESSION_STALE_AFTER_S", "GOOGLE_PLACES_TIMEOUT_S"}
    | {"SESSION_RETENTION_MONTHS", "SESSION_PARTITION_MONTHS_AHEAD", "SESSION_PARTITION_MAINTENANCE_S"}
    # incentives and the ledger: Stripe's timeouts and retries, the workers' periods, the outbox.
    | {"STRIPE_TIMEOUT_S", "STRIPE_MAX_RETRIES", "CAMPAIGN_INDEX_POLL_S", "END_CAMPAIGNS_EVERY_S"}
    | {"PAYOUT_RECONCILE_AFTER_S", "MONEY_RECONCILE_EVERY_S", "MONEY_RECONCILE_WINDOW_H"}
    | {"OUTBOX_POLL_S", "OUTBOX_MAX_BACKOFF_S", "OUTBOX_MAX_ATTEMPTS"}
    # merchants: Square's timeout and the workers' periods.
    | {"SQUARE_TIMEOUT_S", "REDEMPTION_SETTLE_AFTER_S", "REDEMPTION_SETTLE_EVERY_S", "EXPIRE_EXCLUSIVES_EVERY_S"}
    # accounts, sessions, merchants: how often expired single-use states are swept (services/common/sweeps.py).
    | {"EXPIRED_STATE_SWEEP_S"}
)


def _settings_read(service: str) -> tuple[set[str], set[str]]:
    """The variables a service's settings read (its config.py and services/common/config.py): every call's first
    string argument in capitals (env.str("NAME", ...), _not_negative(env, "NAME", ...)), and those of them read
    with env.secret."""
    read: set[str] = set()
    secrets: set[str] = set()
    for path in (k8s_check.ROOT / "services" / service / "config.py", k8s_check.ROOT / "services/common/config.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Call):
                continue
            names = [arg.value for arg in node.args if isinstance(arg, ast.Constant) and isinstance(arg.value, str)]
            if names and re.fullmatch(r"[A-Z][A-Z0-9_]+", names[0]):
                read.add(names[0])
                if isinstance(node.func, ast.Attribute) and node.func.attr == "secret":
                    secrets.add(names[0])
    return read, secrets


def _prod_secret_keys() -> dict[str, set[str]]:
    """The keys the prod overlay's kustomization.yaml lists for each Secret created outside the repository."""
    text = (k8s_check.K8S / "overlays" / "prod" / "kustomization.yaml").read_text()
    block = text.split("# Secrets the namespace must hold", 1)[1].split("\n#\n", 1)[0]
    keys: dict[str, set[str]] = {}
    current = None
    for line in block.splitlines()[1:]:
        first = line.removeprefix("#   ").split(" ", 1)[0]
        if first in k8s_check.EXTERNAL_SECRETS:
            current = keys.setdefault(first, set())
        assert current is not None, line
        current |= set(re.findall(r"\b[A-Z][A-Z0-9_]{2,}\b", line))
    return keys


def _env_sources(objects: Objects, service: str, kind: str) -> list[str]:
    ref = {"ConfigMap": "configMapRef", "Secret": "secretRef"}[kind]
    return [source[ref]["name"] for source in _container(objects, "Deployment", service)["envFrom"] if ref in source]


def _config_map_keys(objects: Objects, service: str) -> set[str]:
    """The settings a service's pods get from ConfigMaps."""
    return {
        key for name in _env_sources(objects, service, "ConfigMap") for key in _find(objects, "ConfigMap", name)["data"]
    }


def test_prod_sets_every_setting_a_service_reads(rendered: dict[str, Objects]) -> None:
    """Sign-in client ids, the SendGrid key, the apps' URLs…: a production deploy must not run on the code's
    development defaults (localhost URLs) or with a feature silently off because nobody listed its setting."""
    secret_keys = _prod_secret_keys()
    assert set(secret_keys) == k8s_check.EXTERNAL_SECRETS
    read_anywhere: set[str] = set()
    for service in SERVICE_NAMES:
        read, read_as_secret = _settings_read(service)
        read_anywhere |= read
        config_maps = _config_map_keys(rendered["prod"], service)
        secrets = {key for name in _env_sources(rendered["prod"], service, "Secret") for key in secret_keys[name]}
        missing = sorted(read - config_maps - secrets - LEFT_AT_DEFAULT)
        assert missing == [], f"{service} reads {missing}: set them in deploy/k8s or add them to LEFT_AT_DEFAULT"
        # A secret is delivered by a Secret, never by a ConfigMap.
        for name in read_as_secret:
            assert name in secrets and name not in config_maps, f"{service}: {name} is a secret"
        assert not (LEFT_AT_DEFAULT & (config_maps | secrets)), "set in the manifests: not left at its default"
    assert sorted(LEFT_AT_DEFAULT - read_anywhere) == [], "in LEFT_AT_DEFAULT but read by no service"
    # A dev ConfigMap carries no secret either (the development values are in the overlay's Secrets).
    every_secret: set[str] = set().union(*secret_keys.values())
    for service in SERVICE_NAMES:
        config_maps = _config_map_keys(rendered["dev"], service)
        assert not (config_maps & every_secret), f"{service}: {sorted(config_maps & every_secret)} in a ConfigMap"


def test_prod_signs_in_against_the_providers_and_mails_claim_links_through_sendgrid(
    rendered: dict[str, Objects],
) -> None:
    objects = rendered["prod"]
    accounts = _prefixed(objects, "ConfigMap", "accounts-config")["data"]
    assert accounts["GOOGLE_JWKS_URL"] == "https://www.googleapis.com/oauth2/v3/certs"
    assert accounts["APPLE_JWKS_URL"] == "https://appleid.apple.com/auth/keys"
    assert accounts["SENDGRID_API_BASE"] == "https://api.sendgrid.com"
    listed = _prod_secret_keys()["accounts-secrets"]
    assert {"GOOGLE_CLIENT_IDS", "APPLE_CLIENT_IDS", "MERCHANT_GOOGLE_CLIENT_IDS", "SENDGRID_API_KEY"} <= listed
    # The portal a claim link opens is the one merchants serves the preview from.
    merchants = _prefixed(objects, "ConfigMap", "merchants-config")["data"]
    assert accounts["MERCHANT_PORTAL_URL"] == merchants["MERCHANT_PORTAL_URL"]
    # No URL a production service is given points at a developer's machine.
    for obj in objects:
        # nerava-runtime and the <service>-config maps (not the gateway's bootstrap, which names its own listeners).
        if obj["kind"] == "ConfigMap" and obj["metadata"]["name"].split("-")[0] in {*SERVICE_NAMES, "nerava"}:
            for name, value in obj["data"].items():
                assert "localhost" not in value and "127.0.0.1" not in value, f"{name}={value}"


def test_prod_hpas_allow_more_than_25_gateway_and_sessions_pods(rendered: dict[str, Objects]) -> None:
    bounds = k8s_check.hpa_bounds(rendered["prod"])
    assert bounds["gateway"][1] > 25
    assert bounds["sessions"][1] > 25
    assert set(bounds) == {*SERVICE_NAMES, "gateway"}
    assert all(minimum >= 3 for minimum, _ in bounds.values())


def test_prod_hpas_cover_the_capacity_model_at_a_million_drivers(rendered: dict[str, Objects]) -> None:
    bounds = k8s_check.hpa_bounds(rendered["prod"])
    for name, needed in capacity.max_replicas_needed(capacity.load()).items():
        assert bounds[name][1] >= needed, f"{name}: maxReplicas {bounds[name][1]} < {needed} (docs/capacity.md)"


def test_prod_reads_every_secret_from_outside_the_repository(rendered: dict[str, Objects]) -> None:
    objects = rendered["prod"]
    assert [obj for obj in objects if obj["kind"] == "Secret"] == []
    referenced = {
        source["secretRef"]["name"]
        for obj in objects
        if obj["kind"] in k8s_check.WORKLOAD_KINDS
        for container in obj["spec"]["template"]["spec"].get("initContainers", [])
        + obj["spec"]["template"]["spec"]["containers"]
        for source in container.get("envFrom", [])
        if "secretRef" in source
    }
    assert referenced == k8s_check.EXTERNAL_SECRETS
    listed = (k8s_check.K8S / "overlays" / "prod" / "kustomization.yaml").read_text()
    for name in referenced:
        assert f"#   {name} " in listed, f"{name} is not in the prod overlay's list of Secrets"


def test_prod_traces_through_a_collector_at_one_percent(rendered: dict[str, Objects]) -> None:
    objects = rendered["prod"]
    env = _runtime_env(objects)
    assert env["OTLP_ENDPOINT"] == "otel-collector.nerava.svc.cluster.local:4317"
    assert env["OTEL_TRACES_SAMPLER"] == "parentbased_traceidratio"
    tracing = _envoy(objects)["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"][
        "tracing"
    ]
    assert tracing["random_sampling"] == {"value": 1.0}
    assert _find(objects, "Service", "otel-collector")["spec"]["clusterIP"] == "None"
    assert "OTLP_ENDPOINT" not in _runtime_env(rendered["dev"])
    with pytest.raises(ValueError, match="trace_sampling_percent"):
        gw.GatewaySettings.kubernetes(trace_sampling_percent=101)


def test_dev_runs_one_replica_of_everything_with_postgres_and_redis_in_the_cluster(
    rendered: dict[str, Objects],
) -> None:
    objects = rendered["dev"]
    assert set(k8s_check.hpa_bounds(objects).values()) == {(1, 1)}
    assert _find(objects, "StatefulSet", "postgres")["spec"]["replicas"] == 1
    assert _find(objects, "Deployment", "redis")["spec"]["replicas"] == 1

    def secret(prefix: str, key: str) -> str:
        return base64.b64decode(_prefixed(objects, "Secret", prefix)["data"][key]).decode()

    database = urlsplit(secret("nerava-database", "DATABASE_URL"))
    assert database.hostname == "postgres.nerava.svc.cluster.local"
    assert database.port == 5432
    assert database.password == secret("postgres-credentials", "POSTGRES_PASSWORD")
    assert urlsplit(secret("nerava-redis", "REDIS_URL")).hostname == "redis.nerava.svc.cluster.local"
    assert _find(objects, "Service", "postgres")["spec"]["ports"][0]["port"] == 5432
    assert _find(objects, "Service", "redis")["spec"]["ports"][0]["port"] == 6379


def test_migrations_run_as_jobs_and_service_pods_wait_for_their_schema(rendered: dict[str, Objects]) -> None:
    objects = rendered["prod"]
    for service in SERVICE_NAMES:
        job = _find(objects, "Job", f"{service}-migrations")
        [migrate] = job["spec"]["template"]["spec"]["containers"]
        assert migrate["args"] == ["services.common.migrations", "upgrade", service]
        assert migrate["envFrom"] == [{"secretRef": {"name": "nerava-database-migrations"}}]
        [wait] = _find(objects, "Deployment", service)["spec"]["template"]["spec"]["initContainers"]
        assert wait["args"][:2] == ["deploy.wait_for_schema", service]
        assert wait["image"] == migrate["image"] == _container(objects, "Deployment", service)["image"]


def test_descriptor_set_config_map_is_the_generated_one(rendered: dict[str, Objects]) -> None:
    config_map = _prefixed(rendered["prod"], "ConfigMap", "gateway-descriptors")
    descriptor = base64.b64decode(config_map["binaryData"]["nerava.binpb"])
    assert descriptor == gw.DEFAULT_DESCRIPTOR.read_bytes()
    transcoder_path = pathlib.PurePosixPath(gw.KUBERNETES_DESCRIPTOR_PATH)
    mounts = _container(rendered["prod"], "Deployment", "gateway")["volumeMounts"]
    assert str(transcoder_path.parent) in [mount["mountPath"] for mount in mounts]


def test_committed_envoy_bootstraps_pass_envoy_validate(tmp_path: pathlib.Path) -> None:
    """The two bootstraps the ConfigMaps carry, with the descriptor path pointed at gen/ (the pod's mount is not
    here) and the docs at this checkout's files (the image's are not here): what Envoy in the cluster loads."""
    envoy = pathlib.Path(sys.executable).parent / "envoy"
    for name in ("base/gateway/envoy.json", "components/tracing/envoy-tracing.json"):
        text = (k8s_check.K8S / name).read_text()
        path = tmp_path / pathlib.Path(name).name
        text = text.replace(gw.KUBERNETES_DESCRIPTOR_PATH, str(gw.DEFAULT_DESCRIPTOR))
        text = text.replace(gw.KUBERNETES_OPENAPI_PATH, gw.ApiDocs().openapi_file)
        path.write_text(text.replace(gw.KUBERNETES_REDOC_PATH, str(redoc.ensure())))
        result = subprocess.run(
            [str(envoy), "--mode", "validate", "-c", str(path), "--log-level", "warn"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert result.returncode == 0, f"{name}:\n{result.stdout[-2000:]}{result.stderr[-2000:]}"
