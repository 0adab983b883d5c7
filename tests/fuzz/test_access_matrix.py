"""Role by RPC, generated from each service's access table: every RPC of every service is called over real
gRPC by every kind of caller, and only the callers its Access rule admits get past authorization. A new RPC
gets its row here the moment it is added (tests/test_contracts.py already requires an access rule for it)."""

from __future__ import annotations

import importlib
from collections.abc import Mapping

import grpc
import pytest
from google.protobuf import descriptor_pool, message_factory

from gateway import render
from services.common.config import SERVICE_NAMES
from services.common.context import ANONYMOUS, Caller
from services.common.interceptors import SERVICE_ROLE, Access
from tests.support.mesh import Mesh
from tests.support.people import NewPerson
from tests.support.rpc import as_service, bearer, error_reason

ROLES = ("driver", "sponsor", "merchant", "admin", "admin_readonly")
CALLERS = ("anonymous", *ROLES, "service")


def _access(service: str) -> tuple[str, Mapping[str, Access]]:
    api = importlib.import_module(f"services.{service}.api")
    return api.SERVICE_NAME, api.ACCESS


def _caller(kind: str) -> Caller:
    if kind == "anonymous":
        return ANONYMOUS
    if kind == "service":
        return Caller(service="matrix", roles=frozenset({SERVICE_ROLE}))
    return Caller(user_id="matrix", roles=frozenset({kind}))


def _request_class(service_name: str, method: str) -> type:
    descriptor = descriptor_pool.Default().FindMethodByName(f"{service_name}.{method}")
    return message_factory.GetMessageClass(descriptor.input_type)


@pytest.fixture
async def credentials(person: NewPerson) -> dict[str, tuple[tuple[str, str], ...]]:
    metadata: dict[str, tuple[tuple[str, str], ...]] = {"anonymous": (), "service": as_service("matrix")}
    for role in ROLES:
        metadata[role] = bearer((await person(role)).token)
    return metadata


@pytest.mark.parametrize("service", SERVICE_NAMES)
async def test_only_the_callers_an_rpcs_access_rule_admits_get_past_authorization(
    service: str, mesh: Mesh, credentials: dict[str, tuple[tuple[str, str], ...]]
) -> None:
    service_name, access = _access(service)
    channel = mesh.channels[service]
    wrong: list[str] = []
    for method, rule in sorted(access.items()):
        request_class = _request_class(service_name, method)
        call = channel.unary_unary(
            f"/{service_name}/{method}",
            request_serializer=lambda message: message.SerializeToString(),
            response_deserializer=lambda data: data,
        )
        for kind in CALLERS:
            try:
                await call(request_class(), metadata=credentials[kind], timeout=10)
                outcome = "OK"
            except grpc.aio.AioRpcError as error:
                # Refusals of the access rule itself carry these reasons; an ownership check or a validation
                # error past it carries its own.
                refused = error.code() in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED) and (
                    error_reason(error) in ("UNAUTHENTICATED", "PERMISSION_DENIED")
                )
                outcome = "REFUSED" if refused else error.code().name
            admitted = rule.allows(_caller(kind))
            if admitted == (outcome == "REFUSED"):
                wrong.append(f"{method} as {kind}: rule {'admits' if admitted else 'refuses'}, got {outcome}")
    assert not wrong, "\n".join(wrong)


def test_the_gateways_public_list_is_exactly_the_public_rpcs() -> None:
    for service in SERVICE_NAMES:
        service_name, access = _access(service)
        public = {method for method, rule in access.items() if rule.public}
        assert set(render.PUBLIC_METHODS.get(service_name, ())) == public, service
