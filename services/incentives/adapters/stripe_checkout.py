"""Stripe Checkout for campaign funding: the hosted page where a sponsor pays a campaign's gross budget.

Built on the official `stripe` package, used only through its async methods over its httpx client so a
slow Stripe never blocks the event loop. Every exception the library raises becomes one of ours in a single
place (`_translate`), so nothing above this module knows about Stripe's error classes.

The contract with the ledger. When the payment completes, Stripe sends checkout.session.completed to the
ledger's webhook (HandleStripeEvent), which books the money from the session alone: `amount_total` is the
gross, and the metadata written here says what it is for —

    type               "campaign_funding"
    campaign_id        the campaign (also the session's client_reference_id)
    platform_fee_bps   the platform fee, basis points of the gross, as a decimal string ("2000" = 20 %)
    reward_currency    "CURRENCY_CASH_CENTS" or "CURRENCY_NOVA_POINTS": the ledger Currency enum name of the
                       campaign's budget account (cash campaigns pay cents, Nova campaigns pay points)

The same metadata goes on the PaymentIntent (`payment_intent_data.metadata`), so a later refund or dispute
can be traced to the campaign too. The ledger then tells incentives (RecordCampaignFunding, through its
outbox) what it booked.
"""

from __future__ import annotations

import datetime
import logging
from collections.abc import Coroutine, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Final, Self, TypeVar

import stripe
from stripe.params.checkout import SessionCreateParams

_log = logging.getLogger(__name__)

_T = TypeVar("_T")

DEFAULT_BASE_URL: Final = "https://api.stripe.com"

# metadata.type of a campaign funding checkout; the ledger ignores completed checkouts of any other type.
CAMPAIGN_FUNDING: Final = "campaign_funding"
# metadata.reward_currency values: the names of the ledger's Currency enum a campaign budget may hold.
REWARD_CURRENCIES: Final = frozenset({"CURRENCY_CASH_CENTS", "CURRENCY_NOVA_POINTS"})
MAX_FEE_BPS: Final = 10_000

# Product name on the Checkout page.
_CAMPAIGN_BUDGET_PRODUCT: Final = "Nerava campaign budget"


class PaymentsError(Exception):
    """Stripe could not do what was asked. Subclasses say whether asking again can help.

    `http_status`, `code` (Stripe's `error.code`, else its `error.type`) and `request_id` are kept for logs
    and support tickets with Stripe.
    """

    retryable: bool = False

    def __init__(
        self,
        message: str,
        *,
        http_status: int | None = None,
        code: str | None = None,
        request_id: str | None = None,
    ) -> None:
        super().__init__(message)
        self.http_status = http_status
        self.code = code
        self.request_id = request_id


class PaymentsUnavailable(PaymentsError):
    """No usable answer — timeout, connection error, 5xx, 409, 429 — or Stripe is not usable with our
    configuration (401/403: a missing or wrong secret key). Retryable once the cause is gone.

    A create call may have been executed before the answer was lost: retry it with the same idempotency key
    to get the same session rather than a second one."""

    retryable = True


class PaymentsRefused(PaymentsError):
    """Stripe answered and said no (4xx other than 401/403/409/429): invalid parameters, an unknown session,
    an idempotency key reused with other parameters (`code` "idempotency_error"). Asking again unchanged
    gets the same answer."""


@dataclass(frozen=True, slots=True)
class CheckoutSession:
    """A new hosted Checkout page; the payer is sent to `url` until `expires_at`."""

    session_id: str
    url: str
    expires_at: datetime.datetime | None


@dataclass(frozen=True, slots=True)
class CheckoutState:
    """A Checkout session as Stripe reports it now."""

    session_id: str
    status: str  # "open", "complete" or "expired"
    payment_status: str  # "unpaid", "paid" or "no_payment_required"
    url: str | None  # None once the session can no longer be visited
    expires_at: datetime.datetime | None
    amount_total: int | None
    metadata: Mapping[str, str] = field(default_factory=dict)

    def is_open(self, now: datetime.datetime) -> bool:
        """The payer can still use `url` (Stripe expires sessions a little after `expires_at`, so the clock
        decides first)."""
        return self.status == "open" and self.url is not None and (self.expires_at is None or now < self.expires_at)


def funding_metadata(campaign_id: str, platform_fee_bps: int, reward_currency: str) -> dict[str, str]:
    """The metadata of a campaign funding checkout (see the module docstring): exactly these four keys."""
    return {
        "type": CAMPAIGN_FUNDING,
        "campaign_id": campaign_id,
        "platform_fee_bps": str(platform_fee_bps),
        "reward_currency": reward_currency,
    }


class StripeCheckout:
    """Incentives' Stripe client: one long-lived `stripe.StripeClient` over one httpx connection pool.

    `max_network_retries` is the library's own retry of timeouts, connection errors, 409 and 5xx with
    exponential backoff; it is safe because every POST carries an Idempotency-Key (the caller's, else the
    library's own, reused on each retry). `timeout` applies to each attempt.
    """

    def __init__(
        self,
        *,
        api_key: str,
        base_url: str = DEFAULT_BASE_URL,
        timeout: float = 10.0,
        max_network_retries: int = 2,
        currency: str = "usd",
    ) -> None:
        if not api_key:
            raise ValueError("a Stripe secret key is required")
        # allow_sync_methods stays False: a synchronous call would block the event loop, and the library
        # then refuses it instead of quietly doing it.
        self._http_client = stripe.HTTPXClient(timeout=timeout)
        self._stripe = stripe.StripeClient(
            api_key,
            base_addresses={"api": base_url.rstrip("/")},
            http_client=self._http_client,
            max_network_retries=max_network_retries,
        )
        self._currency = currency

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Release connections; call once at shutdown."""
        # stripe 16 leaves close_async unannotated; it returns None.
        await self._http_client.close_async()  # type: ignore[no-untyped-call]

    async def create_checkout_session(
        self,
        *,
        campaign_id: str,
        gross_cents: int,
        platform_fee_bps: int,
        reward_currency: str,
        success_url: str,
        cancel_url: str,
        idempotency_key: str | None,
    ) -> CheckoutSession:
        """A Checkout page charging `gross_cents` (the fee included) as one line item.

        Pass `idempotency_key` (e.g. derived from the FundCampaign request id) so that a retry after
        PaymentsUnavailable returns the same session instead of opening a second one; Stripe keeps keys for
        at least 24 hours. The same key with other arguments is PaymentsRefused (code "idempotency_error").
        """
        if gross_cents <= 0:
            raise ValueError(f"a checkout amount must be positive, got {gross_cents}")
        if not 0 <= platform_fee_bps <= MAX_FEE_BPS:
            raise ValueError(f"the platform fee must be 0 to {MAX_FEE_BPS} bps, got {platform_fee_bps}")
        if reward_currency not in REWARD_CURRENCIES:
            raise ValueError(f"reward_currency must be one of {sorted(REWARD_CURRENCIES)}, got {reward_currency!r}")
        if not campaign_id:
            raise ValueError("a campaign id is required")
        metadata = funding_metadata(campaign_id, platform_fee_bps, reward_currency)
        params: SessionCreateParams = {
            "mode": "payment",
            "line_items": [
                {
                    "quantity": 1,
                    "price_data": {
                        "currency": self._currency,
                        "unit_amount": gross_cents,
                        "product_data": {"name": _CAMPAIGN_BUDGET_PRODUCT},
                    },
                }
            ],
            "success_url": success_url,
            "cancel_url": cancel_url,
            "client_reference_id": campaign_id,
            "metadata": metadata,
            "payment_intent_data": {"metadata": metadata},
        }
        options: stripe.RequestOptions = {"idempotency_key": idempotency_key} if idempotency_key else {}
        session = await self._call(
            "create checkout session", self._stripe.v1.checkout.sessions.create_async(params, options)
        )
        if session.url is None:
            # Hosted payment-mode sessions always have a URL; without one there is nowhere to send the payer,
            # and asking again would get the same session.
            raise PaymentsRefused(f"Stripe checkout session {session.id} has no URL")
        _log.info("Stripe checkout session created", extra={"campaign_id": campaign_id, "session_id": session.id})
        return CheckoutSession(session_id=session.id, url=session.url, expires_at=_time(_field(session, "expires_at")))

    async def get_checkout_session(self, session_id: str) -> CheckoutState:
        """The session as Stripe has it now: whether its page is still open, whether it was paid."""
        if not session_id:
            raise ValueError("a checkout session id is required")
        session = await self._call(
            "retrieve checkout session", self._stripe.v1.checkout.sessions.retrieve_async(session_id)
        )
        metadata = _field(session, "metadata")
        amount = _field(session, "amount_total")
        return CheckoutState(
            session_id=session.id,
            status=str(_field(session, "status") or ""),
            payment_status=str(_field(session, "payment_status") or ""),
            url=url if isinstance(url := _field(session, "url"), str) else None,
            expires_at=_time(_field(session, "expires_at")),
            amount_total=amount if isinstance(amount, int) else None,
            metadata=(
                {str(k): str(v) for k, v in metadata.to_dict().items()}
                if isinstance(metadata, stripe.StripeObject)
                else {}
            ),
        )

    # -- the boundary ------------------------------------------------------------------------

    async def _call(self, operation: str, request: Coroutine[Any, Any, _T]) -> _T:
        """Await one Stripe request; the only place library exceptions are caught."""
        try:
            return await request
        except stripe.StripeError as error:
            raise _translate(error, operation) from error


def _translate(error: stripe.StripeError, operation: str) -> PaymentsError:
    """Map any exception of the stripe library to ours. The one place that knows Stripe's classes."""
    detail = error.error
    code = error.code or (detail.code if detail is not None and "code" in detail else None)
    error_type = detail.type if detail is not None and "type" in detail else None
    fields: dict[str, Any] = {
        "http_status": error.http_status,
        "code": code or error_type,
        "request_id": error.request_id,
    }
    message = f"Stripe {operation}: {error.user_message or type(error).__name__}"
    if isinstance(
        error,
        stripe.APIConnectionError | stripe.RateLimitError | stripe.AuthenticationError | stripe.PermissionError,
    ):
        # No answer, "slow down", or a secret key Stripe does not accept: payments are not usable right now,
        # and the sponsor can do nothing about it.
        return PaymentsUnavailable(message, **fields)
    if isinstance(error, stripe.APIError):
        # 5xx, 409 (the same idempotency key still running) and unreadable answers.
        return PaymentsUnavailable(message, **fields)
    status = error.http_status
    if status is None or status >= 500:
        return PaymentsUnavailable(message, **fields)
    return PaymentsRefused(message, **fields)


def _field(obj: stripe.StripeObject, name: str) -> object:
    """`obj.name`, or None when Stripe left the field out of its answer."""
    # StripeObject is not a dict (no .get) and raises KeyError for a field it does not have.
    try:
        return obj[name]
    except KeyError:
        return None


def _time(value: object) -> datetime.datetime | None:
    """A Unix timestamp from Stripe as an aware UTC datetime."""
    if isinstance(value, int) and not isinstance(value, bool):
        return datetime.datetime.fromtimestamp(value, datetime.UTC)
    return None
