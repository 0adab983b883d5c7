from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from nerava.ledger.v1 import ledger_pb2_grpc
from nerava.merchants.v1 import merchants_pb2_grpc
from sqlalchemy.ext.asyncio import AsyncEngine

from services.common.db import create_engine
from tests.merchants.helpers import Merchants, Store
from tests.support.mesh import Mesh
from tests.support.people import NewPerson, Person


@pytest.fixture
async def sessions_engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(database_url, "sessions")
    yield engine
    await engine.dispose()


@pytest.fixture
async def merchants_engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(database_url, "merchants")
    yield engine
    await engine.dispose()


@pytest.fixture
def merchants(mesh: Mesh, sessions_engine: AsyncEngine) -> Merchants:
    return Merchants(
        merchants_pb2_grpc.MerchantsServiceStub(mesh.channels["merchants"]),
        ledger_pb2_grpc.LedgerServiceStub(mesh.channels["ledger"]),
        sessions_engine,
    )


@pytest.fixture
async def owner(person: NewPerson) -> Person:
    """A merchant-role user (the store's owner)."""
    return await person("merchant")


@pytest.fixture
async def shop(merchants: Merchants, admin: Person, owner: Person) -> Store:
    """An active store of `owner`, linked (primary) to a charger 80 m away."""
    return await merchants.create_store(admin, owner)
