"""Session fixtures: real PostgreSQL and Redis (from DATABASE_URL / REDIS_URL, else embedded ones), a fresh
database migrated for every schema, the fake third parties, the five services over real gRPC and the
real Envoy gateway in front of them."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
import redis.asyncio as redis
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from sqlalchemy.ext.asyncio import AsyncEngine

from fakes.fleet import FakeFleet
from fakes.identity_providers import APPLE_ISSUER, GOOGLE_ISSUER, FakeIdentityProvider
from fakes.places import FakePlaces
from fakes.sendgrid import FakeSendGrid
from fakes.square import FakeSquare
from fakes.stripe import FakeStripe
from fakes.twilio_verify import FakeTwilioVerify
from services.accounts.seed import ensure_phone_user
from services.common.db import create_engine
from services.common.telemetry import init_tracing
from tests.support.database import fresh_database
from tests.support.gateway import Gateway, running_gateway
from tests.support.identity import sign_in_env
from tests.support.mesh import Mesh, mesh_env, running_mesh
from tests.support.openapi import check_answer
from tests.support.otlp import OtlpCollector, running_collector
from tests.support.people import NewPerson, Person
from tests.support.rpc import phone_login, random_phone
from tools import embedded

# A test that needs any of these fixtures needs a PostgreSQL or Redis server (and most start the mesh): it is marked
# `mesh`, and `make test-fast` (-m "not mesh") leaves it out.
INFRASTRUCTURE_FIXTURES = frozenset({"database_server_url", "redis_server_url"})


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Marks the tests that need the infrastructure, and runs the REST fuzz (tests/fuzz/test_rest_fuzz.py) last:
    the requests it makes change data others read."""
    for item in items:
        if INFRASTRUCTURE_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.mesh)
    items.sort(key=lambda item: item.nodeid.startswith("tests/fuzz/test_rest_fuzz.py"))


@pytest.fixture(scope="session")
def span_exporter() -> InMemorySpanExporter:
    exporter = InMemorySpanExporter()
    init_tracing("tests", processors=[SimpleSpanProcessor(exporter)])
    return exporter


@pytest.fixture(scope="session")
def database_server_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with embedded.postgres(tmp_path_factory.mktemp("postgres")) as url:
        yield url


@pytest.fixture(scope="session")
async def database_url(database_server_url: str) -> AsyncIterator[str]:
    """A database of its own for this run, migrated to head for every service, dropped afterwards."""
    async with fresh_database(database_server_url) as url:
        yield url


@pytest.fixture(scope="session")
def redis_server_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with embedded.redis_server(tmp_path_factory.mktemp("redis")) as url:
        yield url


@pytest.fixture(scope="session")
async def redis_url(redis_server_url: str) -> AsyncIterator[str]:
    client = redis.Redis.from_url(redis_server_url)
    await client.flushdb()
    await client.aclose()
    yield redis_server_url


@pytest.fixture(scope="session")
async def twilio() -> AsyncIterator[FakeTwilioVerify]:
    async with FakeTwilioVerify() as fake:
        yield fake


@pytest.fixture(scope="session")
async def fleet() -> AsyncIterator[FakeFleet]:
    """The local fake Tesla Fleet API + Smartcar, with scriptable cars."""
    async with FakeFleet() as server:
        yield server


@pytest.fixture(scope="session")
async def stripe_fake() -> AsyncIterator[FakeStripe]:
    async with FakeStripe() as fake:
        yield fake


@pytest.fixture(scope="session")
async def places_fake() -> AsyncIterator[FakePlaces]:
    async with FakePlaces() as fake:
        yield fake


@pytest.fixture(scope="session")
async def square_fake() -> AsyncIterator[FakeSquare]:
    async with FakeSquare(redirect_uri=SQUARE_REDIRECT_URI) as fake:
        yield fake


@pytest.fixture(scope="session")
async def google() -> AsyncIterator[FakeIdentityProvider]:
    """Google's sign-in keys (the driver app's and the merchant portal's client ids: tests.support.identity)."""
    async with FakeIdentityProvider(GOOGLE_ISSUER) as fake:
        yield fake


@pytest.fixture(scope="session")
async def apple() -> AsyncIterator[FakeIdentityProvider]:
    async with FakeIdentityProvider(APPLE_ISSUER) as fake:
        yield fake


@pytest.fixture(scope="session")
async def sendgrid() -> AsyncIterator[FakeSendGrid]:
    """Email (the merchant claim links) lands in its outbox."""
    async with FakeSendGrid() as fake:
        yield fake


TELEMETRY_SECRET = "test-fleet-telemetry-secret"
SQUARE_REDIRECT_URI = "http://portal.test/square/callback"


@pytest.fixture(scope="session")
async def mesh(
    database_url: str,
    redis_url: str,
    twilio: FakeTwilioVerify,
    stripe_fake: FakeStripe,
    square_fake: FakeSquare,
    places_fake: FakePlaces,
    fleet: FakeFleet,
    google: FakeIdentityProvider,
    apple: FakeIdentityProvider,
    sendgrid: FakeSendGrid,
    span_exporter: InMemorySpanExporter,
) -> AsyncIterator[Mesh]:
    env = mesh_env(
        database_url,
        redis_url,
        {
            "OTP_PROVIDER": "twilio",
            "TESLA_TELEMETRY_HMAC_SECRET": TELEMETRY_SECRET,
            "SMARTCAR_MANAGEMENT_TOKEN": fleet.smartcar_management_token,
            "TESLA_CLIENT_ID": fleet.tesla_client_id,
            "TESLA_CLIENT_SECRET": fleet.tesla_client_secret,
            "TESLA_API_BASE": fleet.base_url,
            "TESLA_AUTH_BASE": fleet.base_url,
            "SMARTCAR_CLIENT_ID": fleet.smartcar_client_id,
            "SMARTCAR_CLIENT_SECRET": fleet.smartcar_client_secret,
            "SMARTCAR_API_BASE": fleet.base_url,
            "SMARTCAR_AUTH_BASE": fleet.base_url,
            "SMARTCAR_CONNECT_BASE": fleet.base_url,
            # Every test signs in from the same loopback address; the per-phone limits still apply.
            "OTP_STARTS_PER_IP": "100000",
            "TWILIO_ACCOUNT_SID": twilio.account_sid,
            "TWILIO_AUTH_TOKEN": twilio.auth_token,
            "TWILIO_VERIFY_SERVICE_SID": twilio.service_sid,
            "TWILIO_VERIFY_BASE_URL": twilio.base_url,
            "STRIPE_API_BASE": stripe_fake.base_url,
            "STRIPE_API_KEY": stripe_fake.api_key,
            "STRIPE_WEBHOOK_SECRET": stripe_fake.webhook_secret,
            # A lost Stripe answer must surface fast, and reconciliation must run often, in tests.
            "STRIPE_TIMEOUT_S": "0.5",
            "STRIPE_MAX_RETRIES": "0",
            "PAYOUT_RECONCILE_INTERVAL_S": "0.2",
            "PAYOUT_RECONCILE_AFTER_S": "0",
            "GOOGLE_PLACES_API_BASE": places_fake.base_url,
            "GOOGLE_PLACES_API_KEY": places_fake.api_key,
            "GOOGLE_PLACES_TIMEOUT_S": "1",
            "SQUARE_API_BASE": square_fake.base_url,
            "SQUARE_APPLICATION_ID": square_fake.application_id,
            "SQUARE_APPLICATION_SECRET": square_fake.application_secret,
            "SQUARE_REDIRECT_URI": SQUARE_REDIRECT_URI,
            "SQUARE_TIMEOUT_S": "1",
            # A lost ledger answer leaves a redemption PENDING; in tests the worker settles it within a second.
            "REDEMPTION_SETTLE_AFTER_S": "0.5",
            "REDEMPTION_SETTLE_EVERY_S": "0.2",
            **sign_in_env(google, apple, sendgrid),
        },
    )
    async with running_mesh(env) as running:
        yield running


@pytest.fixture(scope="session")
async def otlp_collector() -> AsyncIterator[OtlpCollector]:
    async with running_collector() as collector:
        yield collector


@pytest.fixture(scope="session")
async def gateway(
    mesh: Mesh, otlp_collector: OtlpCollector, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Gateway]:
    async with running_gateway(mesh, tmp_path_factory.mktemp("envoy"), otlp_port=otlp_collector.port) as running:
        yield running


@pytest.fixture
async def accounts_engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(database_url, "accounts")
    yield engine
    await engine.dispose()


@pytest.fixture
def person(mesh: Mesh, twilio: FakeTwilioVerify, accounts_engine: AsyncEngine) -> NewPerson:
    """A new signed-in user holding the given roles (driver by default)."""

    async def make(*roles: str) -> Person:
        phone = random_phone()
        if roles:
            await ensure_phone_user(accounts_engine, phone, list(roles))
        login = await phone_login(mesh.channels["accounts"], twilio, phone)
        return Person(user_id=login.user.public_id, token=login.access_token)

    return make


@pytest.fixture
async def admin(person: NewPerson) -> Person:
    return await person("admin")


@pytest.fixture
async def driver(person: NewPerson) -> Person:
    return await person()


async def _documented(response: httpx.Response) -> None:
    await response.aread()
    check_answer(response)


@pytest.fixture
async def rest(gateway: Gateway) -> AsyncIterator[httpx.AsyncClient]:
    """A REST client through the gateway; every answer it receives is checked against gen/openapi.json."""
    async with httpx.AsyncClient(
        base_url=gateway.base_url, timeout=10, event_hooks={"response": [_documented]}
    ) as client:
        yield client
