"""RunReconciliation: the money invariants across the ledger's, incentives' and merchants' schemas and Stripe
(services/reconcile/checks.py), run when an admin asks, dated by the clock. Transport-free."""

from __future__ import annotations

import datetime
from collections.abc import Callable

from sqlalchemy.ext.asyncio import AsyncEngine

from services.common.errors import Unavailable
from services.ledger.adapters.stripe_payouts import StripeUnavailable
from services.ledger.reasons import Reason
from services.reconcile.checks import Report, StripeReads, reconcile


class Reconciliation:
    def __init__(self, engine: AsyncEngine, stripe: StripeReads, clock: Callable[[], datetime.datetime]) -> None:
        self._engine = engine
        self._stripe = stripe
        self._clock = clock

    async def run(self, since: datetime.datetime | None) -> Report:
        """Every invariant over what was created since `since` (everything when None)."""
        try:
            return await reconcile(self._engine, self._stripe, now=self._clock(), since=since)
        except StripeUnavailable as exc:
            # The payment and payout checks ask Stripe; without an answer the run proves nothing: retry.
            raise Unavailable(Reason.STRIPE_UNAVAILABLE, "Stripe did not answer; try again") from exc
