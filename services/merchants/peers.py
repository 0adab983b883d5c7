"""The other Nerava services as the merchants cores see them: each call through its stub, its answer as a plain
value and its gRPC errors mapped once to this service's reasons, so that no core imports grpc or a peer's
messages (the peers' own adapters, as adapters/ holds the third parties').

sessions  the charger directory (a charger's name and place) and where a driver captured an intent
ledger    a driver's spendable Nova
accounts  emailing the funnel's claim link
"""

from __future__ import annotations

import dataclasses

import grpc
from nerava.accounts.v1 import accounts_pb2, accounts_pb2_grpc
from nerava.ledger.v1 import ledger_pb2, ledger_pb2_grpc
from nerava.sessions.v1 import sessions_pb2, sessions_pb2_grpc

from services.common.errors import FailedPrecondition, PermissionDenied, Unavailable, peer_reason
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

    async def intent_position(self, session_id: str) -> IntentPosition | None:
        """None for an unknown or expired session, or when sessions does not answer: callers do without it."""
        try:
            intent = await self._sessions.GetIntentSession(sessions_pb2.GetIntentSessionRequest(session_id=session_id))
        except grpc.aio.AioRpcError:
            return None
        return IntentPosition(intent.driver_id, intent.lat, intent.lng)


class NovaBalances:
    """The ledger's driver Nova accounts."""

    def __init__(self, ledger: ledger_pb2_grpc.LedgerServiceAsyncStub) -> None:
        self._ledger = ledger

    async def balance(self, driver_id: str) -> int:
        """The driver's spendable Nova (0 before their first credit); LEDGER_UNAVAILABLE when the ledger is
        down."""
        account = ledger_pb2.AccountRef(
            type=ledger_pb2.ACCOUNT_TYPE_DRIVER_NOVA, owner_id=driver_id, currency=ledger_pb2.CURRENCY_NOVA_POINTS
        )
        try:
            reply = await self._ledger.GetAccount(ledger_pb2.GetAccountRequest(account=account))
        except grpc.aio.AioRpcError as error:
            if error.code() == grpc.StatusCode.NOT_FOUND:
                return 0
            raise Unavailable(Reason.LEDGER_UNAVAILABLE, "the ledger did not answer; retry") from None
        return reply.account.balance


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
