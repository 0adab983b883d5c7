"""The driver's Stripe Express account: creating it (once per driver), the onboarding link, and its status as
Stripe last reported it. Transport-free."""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
from collections.abc import Callable, Sequence

from sqlalchemy.ext.asyncio import AsyncEngine

from services.common.errors import FailedPrecondition, InvalidArgument, Unavailable
from services.ledger import store
from services.ledger.adapters.stripe_payouts import AccountStatus, StripePayouts, StripeRefused, StripeUnavailable
from services.ledger.reasons import Reason

# Stripe account links are single-use and expire after a few minutes.
ACCOUNT_LINK_LIFETIME = datetime.timedelta(minutes=5)


@dataclasses.dataclass(frozen=True)
class ExpressAccount:
    stripe_account_id: str
    created: bool  # False: the driver had one already
    onboarding_complete: bool


class StripeOnboarding:
    """`reads` runs single statements; `engine` holds the writes and the creation lock's connection."""

    def __init__(
        self,
        engine: AsyncEngine,
        reads: AsyncEngine,
        stripe: StripePayouts,
        redirect_origins: Sequence[str],
        clock: Callable[[], datetime.datetime],
    ) -> None:
        self._engine = engine
        self._reads = reads
        self._stripe = stripe
        self._redirect_origins = redirect_origins
        self._clock = clock

    async def _account(self, driver_id: str) -> store.StripeAccountRow | None:
        async with self._reads.connect() as conn:
            return await store.stripe_account(conn, driver_id)

    async def create_account(self, driver_id: str, email: str) -> ExpressAccount:
        existing = await self._account(driver_id)
        if existing is None:
            # One creation per driver at a time (a double tap, two devices): the lock is held across the Stripe
            # call, on a connection of its own, so the second caller finds the account the first one stored.
            # Session-level: if this process dies, PostgreSQL ends the connection and frees the lock.
            async with store.advisory_lock(self._engine, f"stripe-account:{driver_id}"):
                existing = await self._account(driver_id)
                if existing is None:
                    return await self._create(driver_id, email)
        return ExpressAccount(existing.stripe_account_id, created=False, onboarding_complete=existing.transfers_active)

    async def _create(self, driver_id: str, email: str) -> ExpressAccount:
        # Keyed by driver and email: a retry after a lost answer gets the same Express account; a retry with
        # another email is another request to Stripe, not a reuse of the key with other parameters (which
        # Stripe refuses for 24 hours).
        email_key = hashlib.sha256(email.strip().lower().encode()).hexdigest()[:16]
        try:
            account_id = await self._stripe.create_express_account(
                driver_id, email or None, idempotency_key=f"express-account:{driver_id}:{email_key}"
            )
        except StripeUnavailable as exc:
            raise Unavailable(Reason.STRIPE_UNAVAILABLE, "Stripe did not answer; try again") from exc
        except StripeRefused as exc:
            raise FailedPrecondition(
                Reason.STRIPE_ACCOUNT_REFUSED, f"Stripe refused to create the account: {exc}"
            ) from exc
        async with self._engine.begin() as conn:
            await store.insert_stripe_account(conn, driver_id, account_id)
        return ExpressAccount(account_id, created=True, onboarding_complete=False)

    async def account_link(self, driver_id: str, refresh_url: str, return_url: str) -> tuple[str, datetime.datetime]:
        """(url, when it expires) of a Stripe onboarding link; both URLs must point at the driver app."""
        for field, url in (("return_url", return_url), ("refresh_url", refresh_url)):
            if not any(url == origin or url.startswith(origin + "/") for origin in self._redirect_origins):
                raise InvalidArgument([(field, "must point at the driver app")], reason=Reason.REDIRECT_URL_NOT_ALLOWED)
        account = await self._account(driver_id)
        if account is None:
            raise FailedPrecondition(Reason.STRIPE_ACCOUNT_MISSING, "create the Stripe account first")
        try:
            url = await self._stripe.create_account_link(account.stripe_account_id, refresh_url, return_url)
        except StripeUnavailable as exc:
            raise Unavailable(Reason.STRIPE_UNAVAILABLE, "Stripe did not answer; try again") from exc
        return url, self._clock() + ACCOUNT_LINK_LIFETIME

    async def status(self, driver_id: str) -> AccountStatus | None:
        """What Stripe says of the driver's account now (and recorded), or None when the driver has none."""
        account = await self._account(driver_id)
        if account is None:
            return None
        try:
            status = await self._stripe.get_account_status(account.stripe_account_id)
        except StripeUnavailable as exc:
            raise Unavailable(Reason.STRIPE_UNAVAILABLE, "Stripe did not answer; try again") from exc
        await self.record_status(
            account.stripe_account_id,
            details_submitted=status.details_submitted,
            payouts_enabled=status.payouts_enabled,
            charges_enabled=status.charges_enabled,
            transfers_active=status.transfers_active,
        )
        return status

    async def record_status(self, stripe_account_id: str, **flags: bool) -> None:
        async with self._engine.begin() as conn:
            await store.update_stripe_account(conn, stripe_account_id, **flags)
