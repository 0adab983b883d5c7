"""Background work of an accounts process: deleting the expired merchant claim links (an hour past their expiry).
Safe on every replica at once (services/common/sweeps.py)."""

from __future__ import annotations

import functools

from sqlalchemy.ext.asyncio import AsyncEngine

from services.accounts import store
from services.accounts.config import AccountsSettings
from services.common.server import Worker
from services.common.sweeps import expired_state_sweeper


def worker_tasks(engine: AsyncEngine, settings: AccountsSettings) -> list[Worker]:
    delete = functools.partial(store.delete_expired_claim_links, engine)
    return [expired_state_sweeper("accounts", "merchant_claim_links", delete, settings.expired_state_sweep_s)]
