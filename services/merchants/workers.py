"""Background work of a merchants process: settling PENDING redemptions whose ledger answer was lost, expiring
exclusive sessions past their window, and deleting expired Square OAuth states. Safe on every replica at once
(conditional updates; the sweep skips locked rows). Each loop calls a core (checkout's `Settlement`, exclusives'
expiry) or its table's query (the sweep), never the servicer."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Coroutine
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from services.common.sweeps import expired_state_sweeper
from services.merchants import store
from services.merchants.checkout import Settlement, settle_pending
from services.merchants.config import MerchantsSettings
from services.merchants.exclusives import expire_exclusives

Worker = Callable[[asyncio.Event], Coroutine[Any, Any, None]]


def worker_tasks(settlement: Settlement, engine: AsyncEngine, settings: MerchantsSettings) -> list[Worker]:
    async def settling(stop: asyncio.Event) -> None:
        await settle_pending(settlement, stop, settings.settle_every_s, settings.settle_after_s)

    async def expiring(stop: asyncio.Event) -> None:
        await expire_exclusives(engine, stop, settings.expire_exclusives_every_s)

    sweeping = expired_state_sweeper(
        "merchants",
        "square_oauth_states",
        functools.partial(store.delete_expired_square_oauth_states, engine),
        settings.expired_state_sweep_s,
    )
    return [settling, expiring, sweeping]
