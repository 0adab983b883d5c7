"""Role by RPC by ownership, generated from each service's access table: every RPC of every service is called
over real gRPC by every kind of caller, and only the callers its Access rule admits get past authorization; every
RPC whose request names an owned resource (Access.ownership, an Owned) is called on a real resource as a caller of
each owner role who does not own it, who gets the refusal the rule documents, and as its owner, who gets past it.
A new RPC gets its rows here the moment it is added (tests/test_contracts.py requires both declarations)."""

from __future__ import annotations

import importlib
from collections.abc import AsyncIterator, Mapping
from typing import Any

import grpc
import protovalidate
import pytest
from google.protobuf import descriptor_pool, message_factory
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway import public_methods, render
from services.common.config import SERVICE_NAMES
from services.common.context import ANONYMOUS, Caller
from services.common.db import create_engine
from services.common.interceptors import OWN_DATA, SERVICE_ROLE, Access, Owned
from tests.support.mesh import Mesh
from tests.support.owned import Owners, Resource
from tests.support.people import NewPerson, Person
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
    """gateway/public_methods.json is derived from the access tables; this fails while the copy is stale."""
    derived = {service: tuple(methods) for service, methods in public_methods.public_methods().items()}
    assert derived == render.PUBLIC_METHODS, "run `python -m tools.k8s_check --write`"
    for service in SERVICE_NAMES:
        service_name, access = _access(service)
        public = {method for method, rule in access.items() if rule.public}
        assert set(render.PUBLIC_METHODS.get(service_name, ())) == public, service


# --- ownership ---------------------------------------------------------------------------------------------------


def _owned_rpcs() -> list[tuple[str, str, str, Owned]]:
    """(service, its full name, method, declaration) of every RPC whose request names an owned resource."""
    found = []
    for service in SERVICE_NAMES:
        service_name, access = _access(service)
        for method, rule in sorted(access.items()):
            if isinstance(rule.ownership, Owned):
                found.append((service, service_name, method, rule.ownership))
    return found


# What a valid request needs besides the owned resource's id, for the RPCs whose contract requires more: the
# ownership check must be reached, not a validation error before it. A new owned RPC with more required fields
# fails below until it has its line here.
_VALID_REST: dict[str, dict[str, Any]] = {
    "UpdateMerchantExclusive": {"exclusive_id": "ex_000000000000"},
    "EnableMerchantExclusive": {"exclusive_id": "ex_000000000000"},
    "CreateMerchantExclusive": {"title": "A free cookie"},
    "VerifyExclusiveVisit": {"lat": 30.2672, "lng": -97.7431},
}


def _request(service_name: str, method: str, owned: Owned, resource_id: str) -> Any:
    request = _request_class(service_name, method)(**{owned.field: resource_id}, **_VALID_REST.get(method, {}))
    violations = protovalidate.Validator().collect_violations(request)
    assert not violations, f"{method}: give a valid request in _VALID_REST ({violations[0].proto.message})"
    return request


def _refused_as_documented(error: grpc.aio.AioRpcError | None, owned: Owned) -> bool:
    return error is not None and error.code() == owned.refusal and error_reason(error) == owned.reason


@pytest.fixture
async def sessions_engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(database_url, "sessions")
    yield engine
    await engine.dispose()


@pytest.mark.parametrize(
    ("service", "service_name", "method", "owned"), _owned_rpcs(), ids=[f"{rpc[2]}" for rpc in _owned_rpcs()]
)
async def test_only_the_owner_of_a_resource_gets_past_the_ownership_check(
    service: str,
    service_name: str,
    method: str,
    owned: Owned,
    mesh: Mesh,
    person: NewPerson,
    sessions_engine: AsyncEngine,
) -> None:
    resource: Resource = await Owners(mesh, person, sessions_engine).makers[owned.resource]()
    assert set(resource.owners) == owned.owners, f"the {owned.resource} maker makes owners of {owned.owners}"
    request = _request(service_name, method, owned, resource.id)
    call = mesh.channels[service].unary_unary(
        f"/{service_name}/{method}",
        request_serializer=lambda message: message.SerializeToString(),
        response_deserializer=lambda data: data,
    )

    async def outcome(who: Person) -> grpc.aio.AioRpcError | None:
        try:
            await call(request, metadata=who.auth, timeout=10)
        except grpc.aio.AioRpcError as error:
            return error
        return None

    # Strangers first: an owner's call may change the resource (cancel a campaign, end a session).
    for role in sorted(owned.owners):
        stranger = await outcome(await person(role))
        assert _refused_as_documented(stranger, owned), (
            f"{method} on another {role}'s {owned.resource}: expected {owned.refusal.name} {owned.reason}, got "
            + (f"{stranger.code().name} {error_reason(stranger)}" if stranger else "OK")
        )
    for role, owner in sorted(resource.owners.items()):
        answer = await outcome(owner)
        assert not _refused_as_documented(answer, owned), f"{method}: the owning {role} was refused"
        assert answer is None or answer.code() not in (
            grpc.StatusCode.UNAUTHENTICATED,
            grpc.StatusCode.PERMISSION_DENIED,
            grpc.StatusCode.INVALID_ARGUMENT,
        ), f"{method} as the owning {role}: {answer.code().name} {error_reason(answer)}"


def _own_data_rpcs_naming_a_user() -> list[tuple[str, str, str, str]]:
    """(service, its full name, method, field) of the RPCs declared to reach the caller's own data only whose request
    still has a field naming a user (kept for an older app, documented as ignored)."""
    found = []
    for service in SERVICE_NAMES:
        service_name, access = _access(service)
        for method, rule in sorted(access.items()):
            if rule.ownership is OWN_DATA:
                request = descriptor_pool.Default().FindMethodByName(f"{service_name}.{method}").input_type
                fields = request.fields_by_name
                found += [(service, service_name, method, f) for f in ("user_id", "driver_id") if f in fields]
    return found


@pytest.mark.parametrize(("service", "service_name", "method", "field"), _own_data_rpcs_naming_a_user())
async def test_an_own_data_rpc_ignores_another_users_id_in_its_request(
    service: str,
    service_name: str,
    method: str,
    field: str,
    mesh: Mesh,
    person: NewPerson,
    sessions_engine: AsyncEngine,
) -> None:
    other = await Owners(mesh, person, sessions_engine).driver_with_nova()
    caller = await person("driver")
    call = mesh.channels[service].unary_unary(
        f"/{service_name}/{method}",
        request_serializer=lambda message: message.SerializeToString(),
        response_deserializer=lambda data: data,
    )
    request_class = _request_class(service_name, method)
    own = await call(request_class(), metadata=caller.auth, timeout=10)
    naming_the_other = await call(request_class(**{field: other.user_id}), metadata=caller.auth, timeout=10)
    theirs = await call(request_class(), metadata=other.auth, timeout=10)
    assert own != theirs, "the other user's answer must differ for this test to show anything"
    assert naming_the_other == own
