"""Background work of a merchants process: settling PENDING redemptions whose ledger answer was lost, and
expiring exclusive sessions past their window. Safe on every replica at once (conditional updates)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

from services.merchants.checkout import CheckoutRpcs, settle_pending
from services.merchants.config import MerchantsSettings
from services.merchants.exclusives import expire_exclusives

Worker = Callable[[asyncio.Event], Coroutine[Any, Any, None]]


def worker_tasks(api: CheckoutRpcs, settings: MerchantsSettings) -> list[Worker]:
    async def settling(stop: asyncio.Event) -> None:
        await settle_pending(api, stop, settings.settle_every_s, settings.settle_after_s)

    async def expiring(stop: asyncio.Event) -> None:
        await expire_exclusives(api, stop, settings.expire_exclusives_every_s)

    return [settling, expiring]
