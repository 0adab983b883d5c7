"""Background loops of the ledger: reconciliation of payouts whose Stripe answer was lost."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import logging

from services.ledger.payouts import Payouts

log = logging.getLogger(__name__)


async def reconcile_payouts(payouts: Payouts, stop: asyncio.Event, interval_s: float, after_s: float) -> None:
    """Every ``interval_s``, asks Stripe about payouts that have been `unknown` for ``after_s``. Every replica
    may run it: settling is a conditional update, and re-sending a transfer reuses its idempotency key."""
    while not stop.is_set():
        try:
            settled = await payouts.reconcile_unknown(older_than=datetime.timedelta(seconds=after_s))
            if settled:
                log.info("payouts reconciled", extra={"settled": settled})
        except Exception:
            log.exception("payout reconciliation failed; retrying next interval")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=interval_s)
