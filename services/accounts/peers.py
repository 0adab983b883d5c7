"""The other Nerava services as the accounts cores see them: each call through its stub, its answer as a plain
value and its gRPC errors mapped once to this service's reasons, so that no core imports grpc or a peer's
messages (the peers' own adapters, as adapters/ holds the third parties').

merchants  whether an address may claim a store, and making its user the owner (sign_in.py's claims)
sessions   the Tesla sign-in, which sessions runs because it holds the Tesla accounts and their vehicles
all four   their audit entries, for the merged audit log (audit_log.py)
"""

from __future__ import annotations

import dataclasses

import grpc
from nerava.audit.v1 import audit_pb2
from nerava.incentives.v1 import incentives_pb2, incentives_pb2_grpc
from nerava.ledger.v1 import ledger_pb2, ledger_pb2_grpc
from nerava.merchants.v1 import merchants_pb2, merchants_pb2_grpc
from nerava.sessions.v1 import sessions_pb2, sessions_pb2_grpc

from services.accounts.audit_log import Source
from services.accounts.reasons import Reason
from services.common.errors import NotFound, PermissionDenied, Unauthenticated, Unavailable, peer_reason


@dataclasses.dataclass(frozen=True, slots=True)
class ClaimedStore:
    """The store a claim is for, as the merchants service names it (its name for the claim email)."""

    merchant_id: str
    merchant_name: str


class MerchantClaims:
    """Asks the merchants service whether an address may claim a store, and makes its user the owner."""

    def __init__(self, merchants: merchants_pb2_grpc.MerchantsServiceAsyncStub) -> None:
        self._merchants = merchants

    async def authorize(
        self, *, email: str, merchant_id: str = "", place_id: str = "", owner_user_id: str = ""
    ) -> ClaimedStore:
        """MERCHANT_NOT_FOUND for an unknown store, MERCHANT_CLAIM_REFUSED (with the merchants service's reason)
        when the address may not claim it, MERCHANTS_UNAVAILABLE when the directory does not answer."""
        request = merchants_pb2.AuthorizeMerchantClaimRequest(
            merchant_id=merchant_id, place_id=place_id, email=email, owner_user_id=owner_user_id
        )
        try:
            claimed = await self._merchants.AuthorizeMerchantClaim(request)
        except grpc.aio.AioRpcError as error:
            if error.code() == grpc.StatusCode.NOT_FOUND:
                raise NotFound(Reason.MERCHANT_NOT_FOUND, "no such merchant store") from error
            if error.code() in (grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.FAILED_PRECONDITION):
                reason = peer_reason(error)
                raise PermissionDenied(
                    Reason.MERCHANT_CLAIM_REFUSED, error.details() or "the claim was refused", {"reason": reason}
                ) from error
            raise Unavailable(
                Reason.MERCHANTS_UNAVAILABLE, "the merchant directory did not answer; try again"
            ) from error
        return ClaimedStore(claimed.merchant_id, claimed.merchant_name)


@dataclasses.dataclass(frozen=True)
class TeslaLogin:
    """Where the app sends the driver to sign in with Tesla, and the state that comes back with the code."""

    authorization_url: str
    state: str


@dataclasses.dataclass(frozen=True)
class LinkedVehicle:
    """A car of the Tesla account a driver signed in with; None where Tesla did not say."""

    id: str
    vin: str | None
    display_name: str | None
    model: str | None
    year: int | None
    color: str | None


@dataclasses.dataclass(frozen=True)
class TeslaDriver:
    """The driver (public id) a completed Tesla sign-in is, with the Tesla account's vehicles now linked."""

    driver_id: str
    vehicles: list[LinkedVehicle]


def _linked_vehicle(vehicle: sessions_pb2.TeslaVehicle) -> LinkedVehicle:
    return LinkedVehicle(
        id=vehicle.id,
        vin=vehicle.vin or None,
        display_name=vehicle.display_name or None,
        model=vehicle.model or None,
        year=vehicle.year if vehicle.HasField("year") else None,
        color=vehicle.color or None,
    )


class TeslaSignIns:
    """The sessions service, which talks to Tesla: it starts the sign-in and completes it with Tesla's code."""

    def __init__(self, sessions: sessions_pb2_grpc.SessionsServiceAsyncStub) -> None:
        self._sessions = sessions

    async def start(self) -> TeslaLogin:
        """VEHICLES_UNAVAILABLE when sessions does not answer."""
        try:
            started = await self._sessions.StartTeslaSignIn(sessions_pb2.StartTeslaSignInRequest())
        except grpc.aio.AioRpcError as error:
            raise Unavailable(Reason.VEHICLES_UNAVAILABLE, "Tesla sign-in is not available; try again") from error
        return TeslaLogin(started.authorization_url, started.state)

    async def complete(self, code: str, state: str) -> TeslaDriver:
        """TESLA_SIGN_IN_FAILED when sessions or Tesla refuses the code or state (start again),
        VEHICLES_UNAVAILABLE when it does not answer."""
        try:
            linked = await self._sessions.CompleteTeslaSignIn(
                sessions_pb2.CompleteTeslaSignInRequest(code=code, state=state)
            )
        except grpc.aio.AioRpcError as error:
            if error.code() in (grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.FAILED_PRECONDITION):
                raise Unauthenticated(
                    Reason.TESLA_SIGN_IN_FAILED, "the Tesla sign-in did not complete; start again"
                ) from error
            raise Unavailable(Reason.VEHICLES_UNAVAILABLE, "Tesla sign-in did not answer; try again") from error
        return TeslaDriver(linked.driver_id, [_linked_vehicle(v) for v in linked.vehicles])


class PeerAuditLogs:
    """Every other service's ListAuditEntries, as sources of the merged audit log. Their errors are left to the
    merge (audit_log.MergedAuditLog), which fails the listing naming the service that did not answer."""

    def __init__(
        self,
        *,
        sessions: sessions_pb2_grpc.SessionsServiceAsyncStub,
        incentives: incentives_pb2_grpc.IncentivesServiceAsyncStub,
        ledger: ledger_pb2_grpc.LedgerServiceAsyncStub,
        merchants: merchants_pb2_grpc.MerchantsServiceAsyncStub,
    ) -> None:
        self._sessions = sessions
        self._incentives = incentives
        self._ledger = ledger
        self._merchants = merchants

    def sources(self) -> dict[str, Source]:
        """The sources by service name."""
        return {
            "sessions": self._of_sessions,
            "incentives": self._of_incentives,
            "ledger": self._of_ledger,
            "merchants": self._of_merchants,
        }

    async def _of_sessions(self, query: audit_pb2.AuditQuery) -> list[audit_pb2.AuditEntry]:
        request = sessions_pb2.ListAuditEntriesRequest(query=query)
        return list((await self._sessions.ListAuditEntries(request)).entries)

    async def _of_incentives(self, query: audit_pb2.AuditQuery) -> list[audit_pb2.AuditEntry]:
        request = incentives_pb2.ListAuditEntriesRequest(query=query)
        return list((await self._incentives.ListAuditEntries(request)).entries)

    async def _of_ledger(self, query: audit_pb2.AuditQuery) -> list[audit_pb2.AuditEntry]:
        request = ledger_pb2.ListAuditEntriesRequest(query=query)
        return list((await self._ledger.ListAuditEntries(request)).entries)

    async def _of_merchants(self, query: audit_pb2.AuditQuery) -> list[audit_pb2.AuditEntry]:
        request = merchants_pb2.ListAuditEntriesRequest(query=query)
        return list((await self._merchants.ListAuditEntries(request)).entries)
