from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from nerava.incentives.v1 import incentives_pb2_grpc
from nerava.ledger.v1 import ledger_pb2_grpc
from sqlalchemy.ext.asyncio import AsyncEngine

from services.common.db import create_engine
from tests.incentives.helpers import Incentives
from tests.support.mesh import Mesh
from tests.support.people import NewPerson, Person


@pytest.fixture
def incentives(mesh: Mesh) -> Incentives:
    return Incentives(
        incentives_pb2_grpc.IncentivesServiceStub(mesh.channels["incentives"]),
        ledger_pb2_grpc.LedgerServiceStub(mesh.channels["ledger"]),
    )


@pytest.fixture
async def incentives_engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(database_url, "incentives")
    yield engine
    await engine.dispose()


@pytest.fixture
async def sponsor(person: NewPerson) -> Person:
    return await person("sponsor")
