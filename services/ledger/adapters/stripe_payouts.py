"""Stripe for the ledger: Express accounts for drivers, transfers for payouts, and webhook signature checks
(the webhook also carries campaign funding: incentives opens the Checkout, services/incentives/adapters/
stripe_checkout.py, and the ledger books the completed payment).

Built on the official `stripe` package, used only through its async methods over its httpx client so a
slow Stripe never blocks the event loop. Every exception the library raises becomes one of ours in a
single place (`_translate`), so nothing above this module knows about Stripe's error classes.

Money moves like this (see DOMAIN.md, Payouts): the ledger debits the wallet, then `create_transfer`
moves the amount from the platform balance into the driver's Express account, keyed by the payout id so
that any retry (ours or the library's) can never pay twice. When the answer to that call is lost the
outcome is unknown; `find_transfer_by_payout` is how reconciliation finds out what really happened.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Coroutine
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Final, Self, TypeVar

import stripe
from stripe.params import AccountCreateParams, RefundCreateParams, TransferCreateParams

_log = logging.getLogger(__name__)

_T = TypeVar("_T")

DEFAULT_BASE_URL: Final = "https://api.stripe.com"
DEFAULT_WEBHOOK_TOLERANCE_S: Final = 300

# Stripe's largest page: reconciliation reads every transfer of one payout's group in as few calls as
# possible (normally the group holds exactly one transfer).
_LIST_PAGE_SIZE: Final = 100

# Miscellaneous personal services: what the original backend declared for drivers, kept so Stripe's
# risk review sees the same business profile as before.
_DRIVER_MCC: Final = "7299"


class StripeAdapterError(Exception):
    """Stripe could not do what was asked. Subclasses say whether asking again can help.

    `http_status`, `code` (Stripe's `error.code`), `error_type` (Stripe's `error.type`) and
    `request_id` are kept for logs, metrics and support tickets with Stripe.
    """

    retryable: bool = False

    def __init__(
        self,
        message: str,
        *,
        http_status: int | None = None,
        code: str | None = None,
        error_type: str | None = None,
        request_id: str | None = None,
    ) -> None:
        super().__init__(message)
        self.http_status = http_status
        self.code = code
        self.error_type = error_type
        self.request_id = request_id


class StripeUnavailable(StripeAdapterError):
    """No usable answer: timeout, connection error, 5xx, 409 (a request with the same idempotency key
    is still running) or 429. Retryable.

    The outcome of a create call is UNKNOWN: Stripe may have executed the request before the answer was
    lost (a timeout, a dropped connection and a 500 all look the same from here). For a transfer, retry
    with the same payout id (Stripe replays the saved result) or reconcile with
    `find_transfer_by_payout`; never assume that nothing happened.
    """

    retryable = True


class StripeRefused(StripeAdapterError):
    """Stripe answered and said no (4xx): invalid request, insufficient platform balance, an account
    that cannot receive transfers, bad credentials, an idempotency key reused with other parameters.
    Asking again unchanged gets the same answer; `code` tells which refusal it was (falling back to
    Stripe's error type when Stripe gives no code, as for 401 and idempotency errors)."""


class StripeSignatureInvalid(StripeAdapterError):
    """A webhook whose Stripe-Signature does not match its body and our secret, or is too old: treat
    the request as forged or replayed and do not act on it."""


@dataclass(frozen=True, slots=True)
class AccountStatus:
    """Where a driver's Express account stands, as Stripe reports it now."""

    account_id: str
    details_submitted: bool
    payouts_enabled: bool
    charges_enabled: bool
    transfers_active: bool

    @property
    def onboarding_complete(self) -> bool:
        # A transfer to the account succeeds only once its transfers capability is active; submitted
        # details alone may still be under verification, so they do not make the driver payable.
        return self.transfers_active


@dataclass(frozen=True, slots=True)
class StripeTransfer:
    """A transfer to a connected account as Stripe reports it."""

    transfer_id: str
    amount_cents: int
    payout_id: str | None  # metadata.payout_id, written by create_transfer
    reversed: bool


@dataclass(frozen=True, slots=True)
class CheckoutPayment:
    """A Checkout session's payment as Stripe reports it."""

    session_id: str
    paid: bool
    amount_cents: int | None
    payment_intent_id: str | None


class StripePayouts:
    """The ledger's Stripe client: one long-lived `stripe.StripeClient` over one httpx connection pool.

    `max_network_retries` is the library's own retry of timeouts, connection errors, 409 and 5xx with
    exponential backoff. It is safe for every call here: the library sends an Idempotency-Key with every
    POST (the payout id for transfers, its own random key otherwise) and reuses it on each retry.
    `timeout` applies to each attempt, so a call can take up to about
    (max_network_retries + 1) * timeout plus backoff before StripeUnavailable.
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
        # allow_sync_methods stays False: any synchronous call would block the event loop, and the
        # library then refuses it instead of quietly doing it.
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

    # -- Express accounts --------------------------------------------------------------------

    async def create_express_account(
        self, driver_id: str, email: str | None, *, idempotency_key: str | None = None
    ) -> str:
        """Create a US Express account for a driver and return its id ("acct_…").

        Pass `idempotency_key` (for example the id of the ledger row that records the request) to make a
        retry after StripeUnavailable return the same account instead of creating a second one; Stripe
        keeps keys for at least 24 hours.
        """
        params: AccountCreateParams = {
            "type": "express",
            "country": "US",
            "business_type": "individual",
            # Both, as the original requested: US Express accounts are onboarded for card payments
            # and transfers together.
            "capabilities": {
                "transfers": {"requested": True},
                "card_payments": {"requested": True},
            },
            "business_profile": {"mcc": _DRIVER_MCC},
            "metadata": {"driver_id": driver_id},
        }
        if email:
            params["email"] = email
        options: stripe.RequestOptions = {"idempotency_key": idempotency_key} if idempotency_key else {}
        account = await self._call(
            "create Express account",
            self._stripe.v1.accounts.create_async(params, options),
        )
        _log.info("Stripe Express account created", extra={"driver_id": driver_id, "stripe_account": account.id})
        return account.id

    async def create_account_link(self, account_id: str, refresh_url: str, return_url: str) -> str:
        """A single-use onboarding URL for the account's holder; it expires within minutes, so create it
        right before redirecting and create a new one when Stripe sends the driver to `refresh_url`."""
        link = await self._call(
            "create account link",
            self._stripe.v1.account_links.create_async(
                {
                    "account": account_id,
                    "refresh_url": refresh_url,
                    "return_url": return_url,
                    "type": "account_onboarding",
                }
            ),
        )
        return link.url

    async def get_account_status(self, account_id: str) -> AccountStatus:
        account = await self._call("retrieve account", self._stripe.v1.accounts.retrieve_async(account_id))
        # Fields Stripe leaves out of the JSON are missing attributes on a StripeObject, not None, so
        # read them through _field rather than trusting the type hints.
        capabilities = _field(account, "capabilities")
        transfers = _field(capabilities, "transfers") if isinstance(capabilities, stripe.StripeObject) else None
        return AccountStatus(
            account_id=account.id,
            details_submitted=_field(account, "details_submitted") is True,
            payouts_enabled=_field(account, "payouts_enabled") is True,
            charges_enabled=_field(account, "charges_enabled") is True,
            transfers_active=transfers == "active",
        )

    # -- transfers ---------------------------------------------------------------------------

    async def create_transfer(self, amount_cents: int, destination_account: str, payout_id: str) -> str:
        """Move `amount_cents` from the platform balance to the driver's account; return the transfer id.

        The payout id is the Idempotency-Key: repeating the call with the same arguments returns the
        same transfer (Stripe replays its saved answer), and repeating it with other arguments is
        refused (StripeRefused, code "idempotency_error") rather than paying again. It is also the
        transfer's `transfer_group` and `metadata.payout_id`, which is how `find_transfer_by_payout`
        finds it later.

        StripeUnavailable means the transfer may or may not exist; see `find_transfer_by_payout`.
        """
        if amount_cents <= 0:
            raise ValueError(f"a transfer amount must be positive, got {amount_cents}")
        params: TransferCreateParams = {
            "amount": amount_cents,
            "currency": self._currency,
            "destination": destination_account,
            "transfer_group": payout_id,
            "metadata": {"payout_id": payout_id},
        }
        transfer = await self._call(
            "create transfer",
            self._stripe.v1.transfers.create_async(params, {"idempotency_key": payout_id}),
        )
        response = transfer.last_response
        replayed = response is not None and response.headers.get("idempotent-replayed") == "true"
        _log.info(
            "Stripe transfer %s",
            "replayed" if replayed else "created",
            extra={"payout_id": payout_id, "transfer_id": transfer.id, "stripe_account": destination_account},
        )
        return transfer.id

    async def create_refund(self, payment_intent_id: str, amount_cents: int, refund_id: str) -> str:
        """Return `amount_cents` of a campaign payment to the sponsor; the refund's id at Stripe.

        `refund_id` (the ledger's payment_refunds row) is the Idempotency-Key and `metadata.refund_id`: a
        repeated call returns the same refund instead of refunding twice. StripeRefused with code
        "charge_already_refunded" or "amount_too_large" means Stripe holds less than the ledger thinks: a
        person has to look."""
        if amount_cents <= 0:
            raise ValueError(f"a refund amount must be positive, got {amount_cents}")
        params: RefundCreateParams = {
            "payment_intent": payment_intent_id,
            "amount": amount_cents,
            "metadata": {"refund_id": refund_id},
        }
        refund = await self._call(
            "create refund", self._stripe.v1.refunds.create_async(params, {"idempotency_key": f"refund:{refund_id}"})
        )
        _log.info("Stripe refund", extra={"refund_id": refund_id, "stripe_refund_id": refund.id})
        return refund.id

    # -- reads for the reconciliation (services/reconcile) ------------------------------------

    async def transfer_state(self, transfer_id: str) -> StripeTransfer | None:
        """A transfer as Stripe has it; None when Stripe has no such transfer."""
        try:
            transfer = await self._call("retrieve transfer", self._stripe.v1.transfers.retrieve_async(transfer_id))
        except StripeRefused as exc:
            if exc.http_status == 404:  # Stripe's "no such object"
                return None
            raise
        metadata = _field(transfer, "metadata")
        payout_id = _field(metadata, "payout_id") if isinstance(metadata, stripe.StripeObject) else None
        return StripeTransfer(
            transfer_id=transfer.id,
            amount_cents=int(transfer.amount),
            payout_id=str(payout_id) if payout_id is not None else None,
            reversed=bool(_field(transfer, "reversed")),
        )

    async def checkout_payment(self, session_id: str) -> CheckoutPayment | None:
        """A Checkout session's payment as Stripe has it; None when Stripe has no such session."""
        try:
            session = await self._call(
                "retrieve checkout session", self._stripe.v1.checkout.sessions.retrieve_async(session_id)
            )
        except StripeRefused as exc:
            if exc.http_status == 404:  # Stripe's "no such object"
                return None
            raise
        amount = _field(session, "amount_total")
        intent = _field(session, "payment_intent")
        return CheckoutPayment(
            session_id=session.id,
            paid=_field(session, "payment_status") == "paid",
            amount_cents=amount if isinstance(amount, int) else None,
            payment_intent_id=intent if isinstance(intent, str) else None,
        )

    async def refunded_cents(self, payment_intent_id: str) -> int:
        """What Stripe's refunds of this payment returned so far."""

        async def total() -> int:
            page = await self._stripe.v1.refunds.list_async(
                {"payment_intent": payment_intent_id, "limit": _LIST_PAGE_SIZE}
            )
            refunded = 0
            async for refund in page.auto_paging_iter():
                refunded += int(refund.amount)
            return refunded

        return await self._call("list refunds", total())

    async def find_transfer_by_payout(self, payout_id: str) -> str | None:
        """The id of the transfer made for `payout_id`, or None when Stripe has none.

        Reads Stripe's transfer list filtered server-side by `transfer_group` (set to the payout id at
        creation) and keeps only transfers whose `metadata.payout_id` matches. This is a read: unlike
        replaying the create with the same idempotency key it can never create a transfer, it does not
        need the original amount and destination, and it keeps working after Stripe forgets the key
        (24 hours on).

        None is final only once no request for this payout can still be executing: call it after the
        attempt's full timeout (retries included) has passed. Within 24 hours, re-sending
        `create_transfer` with the same payout id is the other way to settle it.
        """
        matches = await self._call("list transfers", self._transfers_of_payout(payout_id))
        if not matches:
            return None
        if len(matches) > 1:
            # Only possible if a transfer was created outside this adapter or after the idempotency key
            # expired: the driver was paid more than once and a human has to look.
            _log.error(
                "several Stripe transfers for one payout",
                extra={"payout_id": payout_id, "transfer_ids": [transfer_id for _, transfer_id in matches]},
            )
        # The earliest is the one the original request made.
        return min(matches)[1]

    async def _transfers_of_payout(self, payout_id: str) -> list[tuple[int, str]]:
        page = await self._stripe.v1.transfers.list_async({"transfer_group": payout_id, "limit": _LIST_PAGE_SIZE})
        matches: list[tuple[int, str]] = []
        async for transfer in page.auto_paging_iter():
            metadata = _field(transfer, "metadata")
            if isinstance(metadata, stripe.StripeObject) and _field(metadata, "payout_id") == payout_id:
                matches.append((transfer.created, transfer.id))
        return matches

    # -- webhooks ----------------------------------------------------------------------------

    @staticmethod
    def verify_webhook(
        payload: bytes,
        signature_header: str,
        secret: str,
        tolerance_s: int = DEFAULT_WEBHOOK_TOLERANCE_S,
    ) -> dict[str, Any]:
        """Check a webhook's Stripe-Signature with Stripe's own verifier and return the event as a dict.

        `payload` must be the raw request body, byte for byte: the signature covers those bytes, and
        re-serialised JSON does not match. Raises StripeSignatureInvalid for a missing, malformed or
        wrong signature, a body that was changed, and a timestamp older than `tolerance_s` (which is
        what stops a captured webhook from being replayed later). Synchronous: it does no I/O.
        """
        if not secret:
            # A configuration error, not a bad request: fail loudly instead of rejecting every webhook.
            raise ValueError("the Stripe webhook signing secret is not configured")
        if tolerance_s <= 0:
            # Stripe's verifier treats 0 as "do not check the age", which would accept replays forever.
            raise ValueError(f"webhook tolerance must be positive, got {tolerance_s}")
        try:
            text = payload.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise StripeSignatureInvalid("webhook body is not UTF-8, so Stripe did not sign it") from exc
        try:
            stripe.WebhookSignature.verify_header(text, signature_header, secret, tolerance_s)
        except stripe.StripeError as error:
            raise _translate(error, "verify webhook") from error
        try:
            event: object = json.loads(text)
        except ValueError as exc:
            raise StripeSignatureInvalid("signed webhook body is not JSON") from exc
        if not isinstance(event, dict) or event.get("object") != "event" or not isinstance(event.get("type"), str):
            raise StripeSignatureInvalid("signed webhook body is not a Stripe event")
        return event

    # -- the boundary ------------------------------------------------------------------------

    async def _call(self, operation: str, request: Coroutine[Any, Any, _T]) -> _T:
        """Await one Stripe request; the only place library exceptions are caught."""
        try:
            return await request
        except stripe.StripeError as error:
            raise _translate(error, operation) from error


def _translate(error: stripe.StripeError, operation: str) -> StripeAdapterError:
    """Map any exception of the stripe library to ours. The one place that knows Stripe's classes."""
    detail = error.error
    code = error.code or (detail.code if detail is not None and "code" in detail else None)
    error_type = detail.type if detail is not None and "type" in detail else None
    fields: dict[str, Any] = {
        "http_status": error.http_status,
        "code": code or error_type,
        "error_type": error_type,
        "request_id": error.request_id,
    }
    message = f"Stripe {operation}: {error.user_message or type(error).__name__}"
    if isinstance(error, stripe.SignatureVerificationError):
        return StripeSignatureInvalid(message)
    if isinstance(error, stripe.APIConnectionError | stripe.RateLimitError):
        # No answer (timeout, refused or reset connection, response lost) or "slow down".
        return StripeUnavailable(message, **fields)
    if isinstance(error, stripe.APIError):
        # 5xx, 409 (same idempotency key still running, lock timeout) and unreadable answers: the
        # library raises APIError for every status it has no class for.
        return StripeUnavailable(message, **fields)
    status = error.http_status
    if status is None or status >= 500:
        return StripeUnavailable(message, **fields)
    # Invalid request, card, authentication, permission and idempotency errors: 4xx, Stripe decided.
    return StripeRefused(message, **fields)


def _field(obj: stripe.StripeObject, name: str) -> object:
    """`obj.name`, or None when Stripe left the field out of its answer."""
    # StripeObject is not a dict (no .get) and raises KeyError for a field it does not have.
    try:
        return obj[name]
    except KeyError:
        return None
