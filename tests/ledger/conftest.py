from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from nerava.ledger.v1 import ledger_pb2_grpc
from sqlalchemy.ext.asyncio import AsyncEngine

from services.common.db import create_engine
from tests.ledger.helpers import Ledger
from tests.support.mesh import Mesh


@pytest.fixture
def ledger(mesh: Mesh) -> Ledger:
    return Ledger(ledger_pb2_grpc.LedgerServiceStub(mesh.channels["ledger"]))


@pytest.fixture
async def ledger_engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(database_url, "ledger")
    yield engine
    await engine.dispose()
