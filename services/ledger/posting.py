"""Posting to the double-entry core: the movements each kind of transfer makes, checked against the rules of
which accounts a kind may move value between, and post_transfer()'s refusals raised as domain errors (one
table). Transport-free: the servicer hands in the caller's scope and the request's hash."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Mapping

from nerava.ledger.v1 import ledger_pb2 as pb
from sqlalchemy.ext.asyncio import AsyncEngine

from services.common import audit
from services.common.errors import Aborted, AlreadyExists, DomainError, FailedPrecondition, InvalidArgument
from services.ledger import domain, store
from services.ledger.reasons import Reason
from services.ledger.transfers import TransferReads

_REFUSALS: Mapping[str, type[DomainError]] = {
    Reason.IDEMPOTENCY_KEY_REUSED: Aborted,
    Reason.INSUFFICIENT_BALANCE: FailedPrecondition,
    Reason.TRANSFER_NOT_RESERVED: FailedPrecondition,
    Reason.REVERSAL_EXCEEDS_TRANSFER: FailedPrecondition,
    Reason.TRANSFER_ALREADY_REVERSED: AlreadyExists,
    Reason.ACCOUNT_NOT_FOUND: FailedPrecondition,
}
_MESSAGES = {
    "IDEMPOTENCY_KEY_REUSED": "this idempotency key was used for a different request",
    "INSUFFICIENT_BALANCE": "the account does not hold enough for this transfer",
    "TRANSFER_NOT_RESERVED": "the reservation is already posted or voided",
    "REVERSAL_EXCEEDS_TRANSFER": "the reversals would exceed the original transfer",
    "TRANSFER_ALREADY_REVERSED": "the transfer is already fully reversed",
    "ACCOUNT_NOT_FOUND": "the account to debit does not exist (it has never been credited)",
}
NOVA_ISSUANCE = store.AccountKey(pb.ACCOUNT_TYPE_EXTERNAL_FUNDING, "nova-issuance", pb.CURRENCY_NOVA_POINTS)


def _raise_refusal(result: store.PostResult) -> None:
    reason = result.error_reason
    if reason is None:
        return
    error = _REFUSALS.get(reason, FailedPrecondition)
    raise error(reason, _MESSAGES.get(reason, reason), {k: str(v) for k, v in result.error_metadata.items()})


@dataclasses.dataclass(frozen=True)
class Posted:
    movement: store.Movement
    result: store.PostResult

    @property
    def merchant_fee_cents(self) -> int:
        """What the accrual trigger booked with a REDEMPTION (the same integer rule, held equal by a test)."""
        if self.movement.kind != pb.TRANSFER_KIND_REDEMPTION:
            return 0
        return domain.merchant_fee_cents(self.result.amount or 0)


@dataclasses.dataclass(frozen=True)
class Idempotent:
    """Who posts (the caller's scope, domain.scope_of), under which key, and the hash of what they asked."""

    scope: str
    key: str
    request_hash: bytes


class Posting:
    def __init__(self, engine: AsyncEngine, writer: store.TransferWriter, reads: TransferReads) -> None:
        self._engine = engine
        self._writer = writer
        self._reads = reads

    async def _post(self, request: Idempotent, movement: store.Movement) -> Posted:
        result = await self._writer.post(request.scope, request.key, request.request_hash, movement)
        _raise_refusal(result)
        return Posted(movement, result)

    async def transfer(
        self,
        request: Idempotent,
        *,
        kind: int,
        currency: int,
        amount: int,
        from_account: store.AccountKey,
        to_account: store.AccountKey,
        metadata: dict[str, str],
        up_to_available: bool,
    ) -> Posted:
        if kind == pb.TRANSFER_KIND_REVERSAL:
            raise InvalidArgument([("kind", "reversals go through ReverseTransfer, which mirrors the original")])
        if not domain.kind_allows(kind, from_account.type, to_account.type):
            raise InvalidArgument(
                [("kind", "this kind of transfer does not move value between these account types")],
                reason=Reason.TRANSFER_KIND_MISMATCH,
            )
        movement = store.Movement(
            kind=kind,
            phase=pb.TRANSFER_PHASE_SINGLE,
            currency=currency,
            amount=amount,
            from_account=from_account,
            to_account=to_account,
            metadata=metadata,
            up_to_available=up_to_available,
        )
        return await self._post(request, movement)

    async def reserve(
        self,
        request: Idempotent,
        *,
        amount: int,
        source: store.AccountKey,
        destination: store.AccountKey,
        metadata: dict[str, str],
    ) -> Posted:
        if source.type not in domain.PAYOUT_SOURCES or destination.type not in domain.PAYOUT_DESTINATIONS:
            raise InvalidArgument(
                [("from_account", "payouts reserve driver cash for an external destination")],
                reason=Reason.TRANSFER_KIND_MISMATCH,
            )
        movement = store.Movement(
            kind=pb.TRANSFER_KIND_PAYOUT,
            phase=pb.TRANSFER_PHASE_RESERVE,
            currency=pb.CURRENCY_CASH_CENTS,
            amount=amount,
            from_account=source,
            to_account=store.AccountKey(pb.ACCOUNT_TYPE_PAYOUTS_IN_FLIGHT, source.owner_id, pb.CURRENCY_CASH_CENTS),
            metadata=metadata,
            pending_to=destination,
        )
        return await self._post(request, movement)

    async def post_reserved(self, request: Idempotent, reservation_id: str, metadata: dict[str, str]) -> Posted:
        """Moves the reserved cash on to the reservation's destination."""
        return await self._settle(request, reservation_id, pb.RESERVATION_STATE_POSTED, metadata)

    async def void_reserved(self, request: Idempotent, reservation_id: str, reason: str) -> Posted:
        """Gives the reserved cash back to the account it was reserved from."""
        return await self._settle(request, reservation_id, pb.RESERVATION_STATE_VOIDED, {"reason": reason})

    async def _settle(self, request: Idempotent, reservation_id: str, state: int, metadata: dict[str, str]) -> Posted:
        reservation = await self._reads.reservation(reservation_id)
        posted = state == pb.RESERVATION_STATE_POSTED
        movement = store.Movement(
            kind=pb.TRANSFER_KIND_PAYOUT,
            phase=pb.TRANSFER_PHASE_POST if posted else pb.TRANSFER_PHASE_VOID,
            currency=pb.CURRENCY_CASH_CENTS,
            amount=None,  # all that was reserved
            from_account=reservation.in_flight,
            to_account=reservation.destination if posted else reservation.source,
            metadata=metadata,
            reservation_id=uuid.UUID(reservation_id),
            reservation_state=state,
        )
        return await self._post(request, movement)

    async def reverse(self, request: Idempotent, transfer_id: str, metadata: dict[str, str], reason: str) -> Posted:
        original = await self._reads.reversible(transfer_id)
        movement = store.Movement(
            kind=pb.TRANSFER_KIND_REVERSAL,
            phase=pb.TRANSFER_PHASE_SINGLE,
            currency=original.currency,
            amount=None,  # whatever is left of the original
            from_account=original.to_account,
            to_account=original.from_account,
            metadata={**metadata, "reason": reason},
            reversal_of=uuid.UUID(transfer_id),
        )
        return await self._post(request, movement)

    async def admin_grant(
        self, request: Idempotent, *, recipient: store.AccountKey, amount: int, reason: str, actor_id: str
    ) -> store.PostResult:
        """Nova issued to a driver's or merchant's Nova account, with an audit entry naming the recipient."""
        movement = store.Movement(
            kind=pb.TRANSFER_KIND_ADMIN_GRANT,
            phase=pb.TRANSFER_PHASE_SINGLE,
            currency=pb.CURRENCY_NOVA_POINTS,
            amount=amount,
            from_account=NOVA_ISSUANCE,
            to_account=recipient,
            # The audit trail: who granted, why. Transfers are immutable, so this record cannot be edited.
            metadata={"reason": reason, "actor_id": actor_id, "description": "Admin grant"},
        )
        owner = "driver" if recipient.type == pb.ACCOUNT_TYPE_DRIVER_NOVA else "merchant"
        # Not through the group-commit writer: the grant and its audit entry commit together. A refusal the
        # ledger remembers commits too (without an entry) and is raised after.
        async with self._engine.begin() as conn:
            result = await store.post_transfer_in_transaction(
                conn, request.scope, request.key, request.request_hash, movement
            )
            if result.error_reason is None and not result.replayed:
                await audit.record(conn, "nova.grant", f"{owner}:{recipient.owner_id}", reason, amount_nova=amount)
        _raise_refusal(result)
        return result
