"""Every end-to-end module ends with the cross-service reconciliation over what it created: the money it moved
agrees between incentives, merchants, the ledger and (the fake) Stripe."""

from __future__ import annotations

import datetime
from collections.abc import AsyncIterator

import pytest

from fakes.stripe import FakeStripe
from services.common.db import create_engine
from tests.support.mesh import Mesh
from tests.support.reconcile import reconciled


@pytest.fixture(scope="module", autouse=True)
async def money_reconciles(mesh: Mesh, database_url: str, stripe_fake: FakeStripe) -> AsyncIterator[None]:
    started = datetime.datetime.now(datetime.UTC)
    yield
    engine = create_engine(database_url, "ledger", pool_size=1, max_overflow=0)
    try:
        report = await reconciled(engine, stripe_fake, since=started)
    finally:
        await engine.dispose()
    assert report.holds, "\n".join(report.lines())
