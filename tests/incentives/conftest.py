from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from nerava.incentives.v1 import incentives_pb2_grpc
from nerava.ledger.v1 import ledger_pb2_grpc
from sqlalchemy.ext.asyncio import AsyncEngine

from fakes.twilio_verify import FakeTwilioVerify
from services.accounts.seed import ensure_phone_user
from services.common.db import create_engine
from tests.incentives.helpers import Incentives, Person
from tests.support.mesh import Mesh
from tests.support.rpc import phone_login, random_phone

NewPerson = Callable[..., Awaitable[Person]]


@pytest.fixture
def incentives(mesh: Mesh) -> Incentives:
    return Incentives(
        incentives_pb2_grpc.IncentivesServiceStub(mesh.channels["incentives"]),
        ledger_pb2_grpc.LedgerServiceStub(mesh.channels["ledger"]),
    )


@pytest.fixture
async def accounts_engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(database_url, "accounts")
    yield engine
    await engine.dispose()


@pytest.fixture
async def incentives_engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(database_url, "incentives")
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
async def sponsor(person: NewPerson) -> Person:
    return await person("sponsor")


@pytest.fixture
async def admin(person: NewPerson) -> Person:
    return await person("admin")


@pytest.fixture
async def driver(person: NewPerson) -> Person:
    return await person()
