"""The other Nerava services as the merchants cores see them: each call through its stub, its answer as a plain
value and its gRPC errors mapped once to this service's reasons, so that no core imports grpc or a peer's
messages (the peers' own adapters, as adapters/ holds the third parties').

sessions  the charger directory (a charger's name and place, the charging at a store's chargers) and where a
          driver captured an intent
ledger    a driver's spendable Nova, a redemption's transfer (checkout), a store's Nova and fee period (portal)
accounts  emailing the funnel's claim link
"""

from __future__ import annotations

import dataclasses
import datetime

import grpc
from nerava.accounts.v1 import accounts_pb2, accounts_pb2_grpc
from nerava.ledger.v1 import ledger_pb2, ledger_pb2_grpc
from nerava.sessions.v1 import sessions_pb2, sessions_pb2_grpc

from services.common.errors import FailedPrecondition, PermissionDenied, Unavailable, peer_reason
from services.common.timestamps import timestamp
from services.merchants.reasons import Reason
from services.merchants.records import charger_not_found


@dataclasses.dataclass(frozen=True, slots=True)
class Charger:
    """A charger as the sessions service's directory describes it."""

    id: str
    name: str
    address: str
    network_name: str
    lat: float
    lng: float


@dataclasses.dataclass(frozen=True, slots=True)
class IntentPosition:
    """Where a driver stood when they captured a charging intent."""

    driver_id: str
    lat: float
    lng: float


@dataclasses.dataclass(frozen=True, slots=True)
class ChargingSummary:
    """Charging sessions at a set of chargers since a time (a store's linked chargers, for its owner's insights):
    the peak hours as (hour, sessions), busiest first; the averages None when no session gives one."""

    sessions: int
    unique_drivers: int
    peak_hours: list[tuple[int, int]]
    avg_duration_minutes: float | None
    avg_kwh: float | None


class ChargerDirectory:
    """The sessions service, which owns chargers and intent sessions."""

    def __init__(self, sessions: sessions_pb2_grpc.SessionsServiceAsyncStub) -> None:
        self._sessions = sessions

    async def charger(self, charger_id: str) -> Charger:
        """CHARGER_NOT_FOUND when the directory does not know it, SESSIONS_UNAVAILABLE when it does not answer."""
        try:
            found = await self._sessions.GetCharger(sessions_pb2.GetChargerRequest(charger_id=charger_id))
        except grpc.aio.AioRpcError as error:
            if error.code() == grpc.StatusCode.NOT_FOUND:
                raise charger_not_found(charger_id) from None
            raise Unavailable(Reason.SESSIONS_UNAVAILABLE, "the charger directory did not answer; retry") from None
        return Charger(found.id, found.name, found.address, found.network_name, found.lat, found.lng)

    async def charging_summary(
        self, charger_ids: list[str], since: datetime.datetime, time_zone: str, *, peak_hours: int
    ) -> ChargingSummary:
        """The sessions at `charger_ids` since `since`, the `peak_hours` busiest hours in `time_zone`;
        SESSIONS_UNAVAILABLE when sessions does not answer."""
        try:
            summary = await self._sessions.SummarizeChargerSessions(
                sessions_pb2.SummarizeChargerSessionsRequest(
                    charger_ids=charger_ids, since=timestamp(since), time_zone=time_zone
                )
            )
        except grpc.aio.AioRpcError:
            raise Unavailable(Reason.SESSIONS_UNAVAILABLE, "the sessions service did not answer; retry") from None
        return ChargingSummary(
            sessions=summary.total_sessions,
            unique_drivers=summary.unique_drivers,
            peak_hours=[(h.hour, h.sessions) for h in summary.hours[:peak_hours]],
            avg_duration_minutes=(summary.avg_duration_minutes if summary.HasField("avg_duration_minutes") else None),
            avg_kwh=summary.avg_kwh if summary.HasField("avg_kwh") else None,
        )

    async def intent_position(self, session_id: str) -> IntentPosition | None:
        """None for an unknown or expired session, or when sessions does not answer: callers do without it."""
        try:
            intent = await self._sessions.GetIntentSession(sessions_pb2.GetIntentSessionRequest(session_id=session_id))
        except grpc.aio.AioRpcError:
            return None
        return IntentPosition(intent.driver_id, intent.lat, intent.lng)


def _nova(account_type: ledger_pb2.AccountType, owner_id: str) -> ledger_pb2.AccountRef:
    return ledger_pb2.AccountRef(type=account_type, owner_id=owner_id, currency=ledger_pb2.CURRENCY_NOVA_POINTS)


def _ledger_unavailable() -> Unavailable:
    return Unavailable(Reason.LEDGER_UNAVAILABLE, "the ledger did not answer; retry")


class NovaBalances:
    """The ledger's driver Nova accounts."""

    def __init__(self, ledger: ledger_pb2_grpc.LedgerServiceAsyncStub) -> None:
        self._ledger = ledger

    async def balance(self, driver_id: str) -> int:
        """The driver's spendable Nova (0 before their first credit); LEDGER_UNAVAILABLE when the ledger is
        down."""
        account = _nova(ledger_pb2.ACCOUNT_TYPE_DRIVER_NOVA, driver_id)
        try:
            reply = await self._ledger.GetAccount(ledger_pb2.GetAccountRequest(account=account))
        except grpc.aio.AioRpcError as error:
            if error.code() == grpc.StatusCode.NOT_FOUND:
                return 0
            raise _ledger_unavailable() from None
        return reply.account.balance


@dataclasses.dataclass(frozen=True, slots=True)
class RedemptionTransfer:
    """What a redemption asks the ledger to move: up to `amount` of the driver's Nova to the store's."""

    redemption_id: str
    driver_id: str
    merchant_id: str
    merchant_name: str
    amount: int


def redemption_request(transfer: RedemptionTransfer) -> ledger_pb2.PostTransferRequest:
    """The one ledger transfer of a redemption — the same request on every attempt (its idempotency key is
    "redemption:<id>"), so the ledger replays it; `up_to_available`: the ledger takes the smaller of the amount
    and the driver's balance."""
    return ledger_pb2.PostTransferRequest(
        idempotency_key=f"redemption:{transfer.redemption_id}",
        kind=ledger_pb2.TRANSFER_KIND_REDEMPTION,
        currency=ledger_pb2.CURRENCY_NOVA_POINTS,
        amount=transfer.amount,
        up_to_available=True,
        from_account=_nova(ledger_pb2.ACCOUNT_TYPE_DRIVER_NOVA, transfer.driver_id),
        to_account=_nova(ledger_pb2.ACCOUNT_TYPE_MERCHANT_NOVA, transfer.merchant_id),
        metadata=ledger_pb2.TransferMetadata(
            merchant_id=transfer.merchant_id, merchant_name=transfer.merchant_name, redemption_id=transfer.redemption_id
        ),
    )


@dataclasses.dataclass(frozen=True, slots=True)
class TransferPosted:
    """The ledger moved `amount` (with the store's fee accrued); the driver has `driver_balance_after` left."""

    transfer_id: str
    amount: int
    merchant_fee_cents: int
    driver_balance_after: int


@dataclasses.dataclass(frozen=True, slots=True)
class TransferRefused:
    """The ledger refused for good: the driver has no (or no more) Nova (its reason, INSUFFICIENT_BALANCE or
    ACCOUNT_NOT_FOUND)."""

    reason: str


@dataclasses.dataclass(frozen=True, slots=True)
class TransferUnknown:
    """No answer that settles it (down, timed out, any other error): the transfer may or may not have been made,
    so the redemption stays pending and is asked again with the same key. `code` and `reason` for the log."""

    code: str
    reason: str | None


# Ledger refusals that are definitive for a redemption: the driver has no (or no more) Nova.
_NO_NOVA = frozenset({"INSUFFICIENT_BALANCE", "ACCOUNT_NOT_FOUND"})


class RedemptionTransfers:
    """The ledger's REDEMPTION transfers, driver Nova → store Nova."""

    def __init__(self, ledger: ledger_pb2_grpc.LedgerServiceAsyncStub) -> None:
        self._ledger = ledger

    async def post(self, transfer: RedemptionTransfer) -> TransferPosted | TransferRefused | TransferUnknown:
        """Asks the ledger for the transfer (again, with the same key: a replay answers the first outcome)."""
        try:
            reply = await self._ledger.PostTransfer(redemption_request(transfer))
        except grpc.aio.AioRpcError as error:
            reason = peer_reason(error)
            if error.code() == grpc.StatusCode.FAILED_PRECONDITION and reason in _NO_NOVA:
                return TransferRefused(reason)
            return TransferUnknown(error.code().name, reason)
        return TransferPosted(
            transfer_id=reply.transfer.id,
            amount=reply.transfer.amount,
            merchant_fee_cents=reply.merchant_fee_cents,
            driver_balance_after=reply.from_balance_after,
        )


@dataclasses.dataclass(frozen=True)
class NovaTransfer:
    """A transfer of the store's Nova account: `type` is the ledger kind in lower case, `driver_user_id` the
    driver's side ("" for grants)."""

    id: str
    type: str
    amount: int
    driver_user_id: str
    created_at: datetime.datetime | None
    metadata: dict[str, str]


@dataclasses.dataclass(frozen=True)
class FeePeriod:
    """The ledger's fee period of a month: first and last day ("YYYY-MM-DD"), status accruing/invoiced/paid."""

    start: str
    end: str
    nova_redeemed_cents: int
    fee_cents: int
    status: str


RECENT_TRANSFERS = 10
_FEE_STATUS = {
    ledger_pb2.FEE_PERIOD_STATUS_ACCRUING: "accruing",
    ledger_pb2.FEE_PERIOD_STATUS_INVOICED: "invoiced",
    ledger_pb2.FEE_PERIOD_STATUS_PAID: "paid",
}
_KIND_PREFIX = "TRANSFER_KIND_"


def transfer_type(kind: int) -> str:
    """The portal's transaction type: the ledger kind's name in lower case ("redemption", "admin_grant")."""
    name: str = ledger_pb2.TransferKind.Name(kind)  # type: ignore[arg-type]
    return name.removeprefix(_KIND_PREFIX).lower()


def nova_transfer(transfer: ledger_pb2.Transfer) -> NovaTransfer:
    """A ledger transfer of the merchant's Nova account as the portal lists it; the driver is the driver-Nova side
    of the transfer (the debited driver of a redemption), empty for grants."""
    driver = next(
        (
            side.owner_id
            for side in (transfer.from_account, transfer.to_account)
            if side.type == ledger_pb2.ACCOUNT_TYPE_DRIVER_NOVA
        ),
        "",
    )
    return NovaTransfer(
        id=transfer.id,
        type=transfer_type(transfer.kind),
        amount=transfer.amount,
        driver_user_id=driver,
        created_at=transfer.created_at.ToDatetime(datetime.UTC) if transfer.HasField("created_at") else None,
        metadata={field.name: str(value) for field, value in transfer.metadata.ListFields()},
    )


class MerchantNova:
    """The ledger's store Nova accounts and the stores' monthly fee periods (the owner's portal)."""

    def __init__(self, ledger: ledger_pb2_grpc.LedgerServiceAsyncStub) -> None:
        self._ledger = ledger

    async def account(self, merchant_id: str) -> tuple[int, list[NovaTransfer]]:
        """(balance, last transfers newest first) of the store's Nova account; (0, []) before its first transfer;
        LEDGER_UNAVAILABLE when the ledger does not answer."""
        account = _nova(ledger_pb2.ACCOUNT_TYPE_MERCHANT_NOVA, merchant_id)
        try:
            reply = await self._ledger.GetAccount(ledger_pb2.GetAccountRequest(account=account))
            listed = await self._ledger.ListTransfers(
                ledger_pb2.ListTransfersRequest(account=account, page_size=RECENT_TRANSFERS)
            )
        except grpc.aio.AioRpcError as error:
            if error.code() == grpc.StatusCode.NOT_FOUND:
                return 0, []
            raise _ledger_unavailable() from None
        return reply.account.balance, [nova_transfer(t) for t in listed.transfers]

    async def fee_period(self, merchant_id: str, month: str) -> FeePeriod:
        """The store's fee period for `month` ("YYYY-MM"; "" for the current one); LEDGER_UNAVAILABLE when the
        ledger does not answer."""
        try:
            reply = await self._ledger.GetMerchantFeePeriod(
                ledger_pb2.GetMerchantFeePeriodRequest(merchant_id=merchant_id, month=month)
            )
        except grpc.aio.AioRpcError:
            raise _ledger_unavailable() from None
        period = reply.period
        return FeePeriod(
            start=period.period_start,
            end=period.period_end,
            nova_redeemed_cents=period.nova_redeemed,
            fee_cents=period.fee_cents,
            status=_FEE_STATUS.get(period.status, "accruing"),
        )


class ClaimLinks:
    """Accounts, which checks a claimant's address against the store and emails the single-use claim link."""

    def __init__(self, accounts: accounts_pb2_grpc.AccountsServiceAsyncStub) -> None:
        self._accounts = accounts

    async def send(self, merchant_id: str, email: str) -> None:
        """CLAIM_NOT_OWNER when accounts refuses the address for the store; its own FAILED_PRECONDITION reason
        (SIGN_IN_NOT_CONFIGURED) passed on; EMAIL_UNAVAILABLE or ACCOUNTS_UNAVAILABLE when nothing was sent."""
        try:
            await self._accounts.SendMerchantClaimLink(
                accounts_pb2.SendMerchantClaimLinkRequest(merchant_id=merchant_id, email=email)
            )
        except grpc.aio.AioRpcError as error:
            reason = peer_reason(error)
            if error.code() == grpc.StatusCode.PERMISSION_DENIED:
                # The only refusal left once the store is known to be unowned: the address is not the store's.
                raise PermissionDenied(
                    Reason.CLAIM_NOT_OWNER, error.details() or "this address may not claim the store"
                ) from None
            if error.code() == grpc.StatusCode.FAILED_PRECONDITION:
                raise FailedPrecondition(reason or "SIGN_IN_NOT_CONFIGURED", error.details() or "") from None
            raise Unavailable(
                Reason.EMAIL_UNAVAILABLE if reason == "EMAIL_UNAVAILABLE" else "ACCOUNTS_UNAVAILABLE",
                "the claim link could not be sent; retry",
            ) from None
