"""Feature flags: the REST contract of the first implementation, a toggle seen by every replica within seconds
(two independent cached clients, each following Redis), and the switches the services read through them."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import grpc
import httpx
import pytest
import redis.asyncio as redis
from google.api import httpbody_pb2
from nerava.accounts.v1 import accounts_pb2, accounts_pb2_grpc
from nerava.sessions.v1 import sessions_pb2, sessions_pb2_grpc

from services.common.flags import CHANGED_CHANNEL, PLACES_GEOCODING, TELEMETRY_INGESTION, FlagDefinition, Flags
from tests.support.eventually import eventually
from tests.support.mesh import Mesh
from tests.support.people import Person
from tests.support.rpc import as_service, error_reason


async def _set(mesh: Mesh, admin: Person, flag: FlagDefinition, enabled: bool) -> None:
    stub = accounts_pb2_grpc.AccountsServiceStub(mesh.channels["accounts"])
    await stub.ToggleFlag(
        accounts_pb2.ToggleFlagRequest(name=flag.name, enabled=enabled, reason="flag test"), metadata=admin.auth
    )


@pytest.fixture
async def restore_flags(mesh: Mesh, admin: Person) -> AsyncIterator[None]:
    """Every flag back to its default after the test: the mesh (and its environment) is shared by all tests."""
    yield
    for flag in (TELEMETRY_INGESTION, PLACES_GEOCODING):
        await _set(mesh, admin, flag, flag.default)


def _reason(reply: httpx.Response) -> str:
    return next((d["reason"] for d in reply.json().get("details", []) if d.get("@type", "").endswith("ErrorInfo")), "")


class _Replica:
    """A process's flag cache: reads accounts over gRPC with the service token, follows Redis on its own."""

    def __init__(self, mesh: Mesh, redis_url: str, ttl_s: float, clock: list[float]) -> None:
        stub = accounts_pb2_grpc.AccountsServiceStub(mesh.channels["accounts"])
        self.fetches = 0

        async def fetch() -> dict[str, bool]:
            self.fetches += 1
            reply = await stub.ListFlags(accounts_pb2.ListFlagsRequest(), metadata=as_service("sessions"))
            return {f.name: f.enabled for f in reply.flags}

        self.flags = Flags(fetch, ttl_s=ttl_s, clock=lambda: clock[0])
        self.redis = redis.Redis.from_url(redis_url)
        self.stop = asyncio.Event()
        self.task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> _Replica:
        self.task = asyncio.create_task(self.flags.follow(self.redis, self.stop))
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.stop.set()
        if self.task is not None:
            await self.task
        await self.redis.aclose()


@pytest.mark.usefixtures("restore_flags")
async def test_the_flags_answer_as_the_first_implementation_and_only_admins_toggle(
    rest: httpx.AsyncClient, admin: Person, driver: Person
) -> None:
    listed = await rest.get("/v1/flags")
    assert listed.status_code == 200, listed.text
    flags = {f["name"]: f for f in listed.json()["flags"]}
    assert set(flags) == {"telemetry_ingestion", "places_geocoding"}
    assert flags["places_geocoding"]["environment"] == "development"
    toggled = await rest.post("/v1/flags/places_geocoding/toggle", json={"reason": "maps quota"}, headers=admin.headers)
    assert toggled.status_code == 200, toggled.text
    assert toggled.json()["flag"]["enabled"] is (not flags["places_geocoding"]["enabled"])
    assert toggled.json()["flag"]["updated_by"] == admin.user_id
    one = await rest.get("/v1/flags/places_geocoding")
    assert one.json()["flag"]["enabled"] is toggled.json()["flag"]["enabled"]
    refused = await rest.post("/v1/flags/places_geocoding/toggle", json={"reason": "mine"}, headers=driver.headers)
    assert refused.status_code == 403
    unknown = await rest.get("/v1/flags/no_such_flag")
    assert (unknown.status_code, _reason(unknown)) == (404, "FLAG_NOT_FOUND")
    audited = await rest.get(
        "/v1/admin/audit", params={"action": "flag.toggle", "target": "flag:places_geocoding"}, headers=admin.headers
    )
    assert audited.status_code == 200, audited.text
    assert audited.json()["entries"][0]["reason"] == "maps quota"


@pytest.mark.usefixtures("restore_flags")
async def test_a_toggle_reaches_two_replicas_through_redis_without_waiting_for_their_cache(
    mesh: Mesh, redis_url: str, admin: Person
) -> None:
    clock = [0.0]  # frozen: a cache never expires by time here, only the announcement can refresh it
    listening = redis.Redis.from_url(redis_url)
    before = await _subscribers(listening)
    try:
        async with (
            _Replica(mesh, redis_url, ttl_s=3600, clock=clock) as first,
            _Replica(mesh, redis_url, ttl_s=3600, clock=clock) as second,
        ):
            await eventually(lambda: _subscribed(listening, before + 2))
            for replica in (first, second):
                assert await replica.flags.enabled(TELEMETRY_INGESTION) is True
            await _set(mesh, admin, TELEMETRY_INGESTION, False)
            await eventually(lambda: _sees(first, TELEMETRY_INGESTION, False))
            await eventually(lambda: _sees(second, TELEMETRY_INGESTION, False))
    finally:
        await listening.aclose()


async def _subscribed(client: redis.Redis, at_least: int) -> None:
    # At least: other runs sharing this Redis may subscribe too.
    assert await _subscribers(client) >= at_least


async def _subscribers(client: redis.Redis) -> int:
    counts = await client.pubsub_numsub(CHANGED_CHANNEL)
    return int(counts[0][1]) if counts else 0


async def _sees(replica: _Replica, flag: FlagDefinition, value: bool) -> None:
    assert await replica.flags.enabled(flag) is value


@pytest.mark.usefixtures("restore_flags")
async def test_a_lost_announcement_is_made_up_by_the_cache_ttl(mesh: Mesh, admin: Person) -> None:
    clock = [0.0]
    stub = accounts_pb2_grpc.AccountsServiceStub(mesh.channels["accounts"])

    async def fetch() -> dict[str, bool]:
        reply = await stub.ListFlags(accounts_pb2.ListFlagsRequest())
        return {f.name: f.enabled for f in reply.flags}

    unsubscribed = Flags(fetch, ttl_s=5, clock=lambda: clock[0])  # follows nothing: every message is lost
    assert await unsubscribed.enabled(PLACES_GEOCODING) is True
    await _set(mesh, admin, PLACES_GEOCODING, False)
    clock[0] = 4.9
    assert await unsubscribed.enabled(PLACES_GEOCODING) is True  # still cached
    clock[0] = 5.0
    assert await unsubscribed.enabled(PLACES_GEOCODING) is False


async def test_a_flag_read_never_fails_when_accounts_does_not_answer() -> None:
    clock = [0.0]

    async def unreachable() -> dict[str, bool]:
        raise ConnectionError("accounts does not answer")

    flags = Flags(unreachable, ttl_s=5, clock=lambda: clock[0])
    assert await flags.enabled(TELEMETRY_INGESTION) is TELEMETRY_INGESTION.default


@pytest.mark.usefixtures("restore_flags")
async def test_sessions_stops_ingesting_telemetry_when_the_flag_is_off(mesh: Mesh, admin: Person) -> None:
    sessions = sessions_pb2_grpc.SessionsServiceStub(mesh.channels["sessions"])
    push = sessions_pb2.IngestTelemetryRequest(
        http_body=httpbody_pb2.HttpBody(
            content_type="application/json", data=b'{"vin": "%s"}' % uuid.uuid4().hex.encode()
        )
    )

    async def refused_with(reason: str) -> None:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await sessions.IngestTelemetry(push)
        assert error_reason(caught.value) == reason

    await refused_with("SIGNATURE_INVALID")  # on: the push reaches the signature check (unsigned here)
    await _set(mesh, admin, TELEMETRY_INGESTION, False)
    await eventually(lambda: refused_with("INGESTION_DISABLED"))
    await _set(mesh, admin, TELEMETRY_INGESTION, True)
    await eventually(lambda: refused_with("SIGNATURE_INVALID"))
