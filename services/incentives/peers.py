"""The other Nerava services as the incentives cores see them: each call through its stub, its answer as a plain
value and its gRPC errors mapped once to this service's reasons, so that no core imports grpc or a peer's
messages (as merchants' peers.py does).

sessions  the charger directory (where a charger is, for the driver listing at it)
accounts  a driver's email (for allowlists that name emails)
ledger    campaign budgets (platform funding, refunds to the sponsor) and grants (the credit, its clawback)

Where a core tells the ledger's answers apart (refused for good, unanswered, or an error that is neither), the
methods below keep the distinction: a specific DomainError or result, and the peer's own error raised as it came
where the core let it through before (the outbox relay retries it).
"""

from __future__ import annotations

import dataclasses
import uuid

import grpc
from nerava.accounts.v1 import accounts_pb2, accounts_pb2_grpc
from nerava.incentives.v1 import incentives_pb2 as pb
from nerava.ledger.v1 import ledger_pb2, ledger_pb2_grpc
from nerava.sessions.v1 import sessions_pb2, sessions_pb2_grpc

from services.common.errors import FailedPrecondition, NotFound, Unavailable
from services.common.outbox import PermanentDeliveryError
from services.incentives import domain, store
from services.incentives.reasons import Reason

# --- sessions ------------------------------------------------------------------------------------------------


class ChargerDirectory:
    """The sessions service, which owns chargers."""

    def __init__(self, sessions: sessions_pb2_grpc.SessionsServiceAsyncStub) -> None:
        self._sessions = sessions

    async def place(self, charger_id: str) -> domain.Place:
        """Where the charger is, as the rules read a place; CHARGER_NOT_FOUND when the directory does not know it
        (any other error of the directory raised as it came)."""
        try:
            charger = await self._sessions.GetCharger(sessions_pb2.GetChargerRequest(charger_id=charger_id))
        except grpc.aio.AioRpcError as error:
            if error.code() == grpc.StatusCode.NOT_FOUND:
                raise NotFound(
                    Reason.CHARGER_NOT_FOUND, "no charger with that id", {"charger_id": charger_id}
                ) from error
            raise
        return domain.Place(
            charger_id=charger_id,
            network=charger.network_name,
            zone_id=charger.zone_id,
            lat=charger.lat,
            lng=charger.lng,
        )


# --- accounts ------------------------------------------------------------------------------------------------


class DriverEmails:
    """The accounts service, which knows drivers' emails."""

    def __init__(self, accounts: accounts_pb2_grpc.AccountsServiceAsyncStub) -> None:
        self._accounts = accounts

    async def email(self, driver_id: str) -> str:
        """The driver's email, "" for a driver accounts does not know; ACCOUNTS_UNAVAILABLE when it does not
        answer."""
        try:
            reply = await self._accounts.GetUser(accounts_pb2.GetUserRequest(user_id=driver_id))
        except grpc.aio.AioRpcError as error:
            if error.code() == grpc.StatusCode.NOT_FOUND:
                return ""
            # Judging the allowlist without the email could refuse a driver who is on it; sessions retries.
            raise Unavailable(Reason.ACCOUNTS_UNAVAILABLE, "the driver's email could not be read; retry") from error
        return reply.user.email


# --- ledger --------------------------------------------------------------------------------------------------

_CURRENCY: dict[int, ledger_pb2.Currency] = {
    pb.REWARD_KIND_CASH: ledger_pb2.CURRENCY_CASH_CENTS,
    pb.REWARD_KIND_NOVA: ledger_pb2.CURRENCY_NOVA_POINTS,
}
_DRIVER_ACCOUNT: dict[int, ledger_pb2.AccountType] = {
    pb.REWARD_KIND_CASH: ledger_pb2.ACCOUNT_TYPE_DRIVER_CASH,
    pb.REWARD_KIND_NOVA: ledger_pb2.ACCOUNT_TYPE_DRIVER_NOVA,
}
PLATFORM_OWNER = "platform"
LEDGER_SCOPE_KEY_PREFIX = "grant:"
CLAWBACK_KEY_PREFIX = "clawback:"


def currency_name(reward_kind: int) -> str:
    """The ledger's name of the currency of a campaign's budget account and of its grants ("CURRENCY_CASH_CENTS";
    1 Nova = 1 cent, so amounts are equal): what the Stripe checkout tells the ledger the budget is in."""
    return ledger_pb2.Currency.Name(_CURRENCY[reward_kind])


def _budget_account(campaign_id: str, reward_kind: int) -> ledger_pb2.AccountRef:
    currency = _CURRENCY[reward_kind]
    return ledger_pb2.AccountRef(type=ledger_pb2.ACCOUNT_TYPE_CAMPAIGN_BUDGET, owner_id=campaign_id, currency=currency)


def _ledger_unavailable() -> Unavailable:
    return Unavailable(Reason.LEDGER_UNAVAILABLE, "the ledger did not answer; retry")


@dataclasses.dataclass(frozen=True, slots=True)
class PlatformFunding:
    """The platform's funding of a campaign: `amount` (the net budget, no fee) into its budget account, keyed by
    the campaign (`idempotency_key`), audited with the admin and their reason."""

    idempotency_key: str
    campaign_id: str
    campaign_name: str
    reward_kind: int
    amount: int
    actor_id: str
    reason: str


@dataclasses.dataclass(frozen=True, slots=True)
class LandedFunding:
    """A campaign funding transfer the ledger holds: its id, what it moved and the admin who asked for it."""

    transfer_id: str
    amount: int
    actor_id: str


@dataclasses.dataclass(frozen=True, slots=True)
class BudgetRefund:
    """What a refund of a campaign's budget moved; `replayed`: the key's first answer (the refund asked before)."""

    refunded_cents: int
    replayed: bool


class CampaignBudgets:
    """The ledger's campaign budget accounts: the platform's funding, refunds of what is left to the sponsor."""

    def __init__(self, ledger: ledger_pb2_grpc.LedgerServiceAsyncStub) -> None:
        self._ledger = ledger

    async def fund_from_platform(self, funding: PlatformFunding) -> bool:
        """Posts the platform's funding transfer; False when the ledger holds another request under its key
        (ABORTED: an earlier attempt under another actor or reason), LEDGER_UNAVAILABLE on any other error."""
        currency = _CURRENCY[funding.reward_kind]
        try:
            await self._ledger.PostTransfer(
                ledger_pb2.PostTransferRequest(
                    idempotency_key=funding.idempotency_key,
                    kind=ledger_pb2.TRANSFER_KIND_CAMPAIGN_FUNDING,
                    currency=currency,
                    amount=funding.amount,
                    from_account=ledger_pb2.AccountRef(
                        type=ledger_pb2.ACCOUNT_TYPE_EXTERNAL_FUNDING, owner_id=PLATFORM_OWNER, currency=currency
                    ),
                    to_account=_budget_account(funding.campaign_id, funding.reward_kind),
                    metadata=ledger_pb2.TransferMetadata(
                        campaign_id=funding.campaign_id,
                        campaign_name=funding.campaign_name[:200],
                        actor_id=funding.actor_id,
                        reason=funding.reason[:500],
                        description="Funded by the platform",
                    ),
                )
            )
        except grpc.aio.AioRpcError as error:
            if error.code() != grpc.StatusCode.ABORTED:
                raise _ledger_unavailable() from error
            return False
        return True

    async def landed_funding(self, campaign_id: str, reward_kind: int, idempotency_key: str) -> LandedFunding | None:
        """The campaign funding transfer into the campaign's budget the ledger holds under `idempotency_key`, None
        when it holds none; LEDGER_UNAVAILABLE when it does not answer."""
        try:
            listed = await self._ledger.ListTransfers(
                ledger_pb2.ListTransfersRequest(
                    account=_budget_account(campaign_id, reward_kind),
                    kinds=[ledger_pb2.TRANSFER_KIND_CAMPAIGN_FUNDING],
                    page_size=500,
                )
            )
        except grpc.aio.AioRpcError as error:
            raise _ledger_unavailable() from error
        landed = next((t for t in listed.transfers if t.idempotency_key == idempotency_key), None)
        if landed is None:
            return None
        return LandedFunding(landed.id, int(landed.amount), landed.metadata.actor_id)

    async def refund(
        self,
        *,
        idempotency_key: str,
        campaign_id: str,
        reward_kind: int,
        amount: int,
        reason: str,
        kept_checkout_session_id: str,
    ) -> BudgetRefund:
        """Refunds up to `amount` of the campaign's budget to its sponsor, against the payment the campaign kept
        ("" when the platform funded it); LEDGER_UNAVAILABLE when the ledger did not refund."""
        try:
            reply = await self._ledger.RefundCampaignBudget(
                ledger_pb2.RefundCampaignBudgetRequest(
                    idempotency_key=idempotency_key,
                    campaign_id=campaign_id,
                    currency=_CURRENCY[reward_kind],
                    amount_cents=amount,
                    reason=reason,
                    kept_checkout_session_id=kept_checkout_session_id,
                )
            )
        except grpc.aio.AioRpcError as error:
            raise Unavailable(Reason.LEDGER_UNAVAILABLE, "the ledger did not refund the budget; retry") from error
        return BudgetRefund(int(reply.refunded_cents), reply.replayed)


class CreditRefused(PermanentDeliveryError):
    """The ledger refused a grant's credit for good, and remembers it (FAILED_PRECONDITION): the grant fails."""


def grant_transfer_request(grant: store.Row) -> ledger_pb2.PostTransferRequest:
    """The ledger transfer of a grant. Built only from the grant's row — the names it carries are those the grant
    stored when it was granted, never the campaign's current ones — so every attempt (the relay's, a replay's, a
    clawback's) sends the identical request and the ledger's idempotency answers the original transfer."""
    kind = grant["reward_kind"]
    currency = _CURRENCY[kind]
    return ledger_pb2.PostTransferRequest(
        idempotency_key=f"{LEDGER_SCOPE_KEY_PREFIX}{grant['id']}",
        kind=ledger_pb2.TRANSFER_KIND_CAMPAIGN_GRANT,
        currency=currency,
        amount=grant["amount_cents"],
        from_account=_budget_account(str(grant["campaign_id"]), kind),
        to_account=ledger_pb2.AccountRef(type=_DRIVER_ACCOUNT[kind], owner_id=grant["driver_id"], currency=currency),
        metadata=ledger_pb2.TransferMetadata(
            campaign_id=str(grant["campaign_id"]),
            campaign_name=grant["credit_campaign_name"][:200],
            sponsor_id=grant["credit_sponsor_id"],
            sponsor_name=grant["credit_sponsor_name"][:200],
            grant_id=str(grant["id"]),
            session_id=str(grant["session_id"]),
            description=f"Earned from {grant['credit_campaign_name']}"[:300],
        ),
    )


def _refused(grant_id: uuid.UUID, error: grpc.aio.AioRpcError) -> CreditRefused:
    return CreditRefused(f"ledger refused grant {grant_id}: {error.details()}")


def _unanswered(error: grpc.aio.AioRpcError) -> Exception:
    """What a clawback raises for a ledger error it does not handle: LEDGER_UNAVAILABLE when asking again may
    help, else the error itself."""
    if error.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
        return Unavailable(Reason.LEDGER_UNAVAILABLE, "the ledger did not answer; retry with the same request_id")
    return error


class GrantCredits:
    """The ledger's CAMPAIGN_GRANT transfers, campaign budget → the driver's account, and their reversals."""

    def __init__(self, ledger: ledger_pb2_grpc.LedgerServiceAsyncStub) -> None:
        self._ledger = ledger

    async def deliver(self, grant_id: uuid.UUID, grant: store.Row) -> str:
        """The outbox relay's delivery of the grant's credit: the transfer's id. CreditRefused (the grant fails)
        when the ledger refused it for good; PermanentDeliveryError (parked, never failed) when it refused it
        without remembering a refusal; the ledger's error as it came (the relay tries again) when it did not
        answer."""
        try:
            reply = await self._ledger.PostTransfer(grant_transfer_request(grant))
        except grpc.aio.AioRpcError as error:
            if error.code() == grpc.StatusCode.FAILED_PRECONDITION:
                # No budget account, or not enough in it. The ledger remembers a refused key and answers the
                # same refusal to every retry, so retrying cannot help: the grant fails (fail_grant).
                raise _refused(grant_id, error) from error
            if error.code() in (
                # ABORTED (IDEMPOTENCY_KEY_REUSED): the ledger holds another request under this grant's key (the
                # request is built from the grant's stored row, so this is not a rename), so the driver may well be
                # credited: parked, never failed. INVALID_ARGUMENT, PERMISSION_DENIED: nothing remembered, a replay
                # may credit.
                grpc.StatusCode.INVALID_ARGUMENT,
                grpc.StatusCode.ABORTED,
                grpc.StatusCode.PERMISSION_DENIED,
            ):
                raise PermanentDeliveryError(f"ledger refused grant {grant_id}: {error.details()}") from error
            # UNAVAILABLE, deadlines: try again later.
            raise
        return reply.transfer.id

    async def credit(self, grant_id: uuid.UUID, grant: store.Row) -> str:
        """The same credit posted by a clawback (the credit may still sit in the outbox): the transfer's id.
        CreditRefused when the ledger refused it for good; LEDGER_UNAVAILABLE when asking again may help; any
        other error of the ledger as it came."""
        try:
            return (await self._ledger.PostTransfer(grant_transfer_request(grant))).transfer.id
        except grpc.aio.AioRpcError as error:
            if error.code() == grpc.StatusCode.FAILED_PRECONDITION:
                raise _refused(grant_id, error) from error
            raise _unanswered(error) from error

    async def reverse(self, grant_id: uuid.UUID, transfer_id: str, campaign_id: str, reason: str, actor: str) -> None:
        """Reverses the grant's credit (keyed by the grant: a retry repeats the same reversal); GRANT_ALREADY_SPENT
        when the ledger cannot, LEDGER_UNAVAILABLE when asking again may help; any other error as it came."""
        try:
            await self._ledger.ReverseTransfer(
                ledger_pb2.ReverseTransferRequest(
                    idempotency_key=f"{CLAWBACK_KEY_PREFIX}{grant_id}",
                    transfer_id=transfer_id,
                    reason=reason,
                    metadata=ledger_pb2.TransferMetadata(
                        grant_id=str(grant_id), campaign_id=campaign_id, reason=reason[:500], actor_id=actor
                    ),
                )
            )
        except grpc.aio.AioRpcError as error:
            if error.code() == grpc.StatusCode.FAILED_PRECONDITION:
                raise FailedPrecondition(
                    Reason.GRANT_ALREADY_SPENT,
                    "the driver already spent or withdrew this reward; the ledger cannot reverse it",
                    {"grant_id": str(grant_id)},
                ) from error
            raise _unanswered(error) from error
