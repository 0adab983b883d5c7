"""Reads of the double-entry core that the posting RPCs and the service callers need: a reservation's accounts,
the transfer a reversal mirrors, an account, and an account's transfers. Posting itself goes through
store.TransferWriter (post_transfer(), migrations/versions/0002). Transport-free."""

from __future__ import annotations

import dataclasses
import datetime
import uuid
from collections.abc import Sequence
from typing import Any

from nerava.ledger.v1 import ledger_pb2 as pb
from sqlalchemy.ext.asyncio import AsyncEngine

from services.common.errors import InvalidArgument, NotFound
from services.ledger import store
from services.ledger.reasons import Reason


@dataclasses.dataclass(frozen=True)
class Reservation:
    in_flight: store.AccountKey
    source: store.AccountKey
    destination: store.AccountKey


@dataclasses.dataclass(frozen=True)
class Reversible:
    """A single-phase transfer that is no reversal itself: what a reversal mirrors."""

    currency: int
    from_account: store.AccountKey
    to_account: store.AccountKey


@dataclasses.dataclass(frozen=True)
class Account:
    """An account's balance and running totals."""

    balance: int
    debits_total: int
    credits_total: int
    opened_at: datetime.datetime
    updated_at: datetime.datetime


@dataclasses.dataclass(frozen=True)
class Transfer:
    """A transfer as an account's history shows it; the accounts carry the transfer's currency."""

    id: uuid.UUID
    idempotency_key: str
    kind: int
    phase: int
    currency: int
    amount: int
    from_account: store.AccountKey
    to_account: store.AccountKey
    metadata: dict[str, Any]  # as recorded at posting time (JSON)
    reversal_of: uuid.UUID | None
    reservation_id: uuid.UUID | None
    pending_to: store.AccountKey | None  # a reservation's destination
    reservation_state: int | None  # a reservation's, None for other transfers
    created_at: datetime.datetime


@dataclasses.dataclass(frozen=True)
class TransferPage:
    transfers: list[Transfer]
    next_before: int | None  # the entry id to continue before, when more transfers follow this page


def _transfer(row: Any) -> Transfer:
    """A row of store.account_transfer_rows."""
    currency = row.currency
    return Transfer(
        id=row.id,
        idempotency_key=row.idempotency_key,
        kind=row.kind,
        phase=row.phase,
        currency=currency,
        amount=row.amount,
        from_account=store.AccountKey(row.from_type, row.from_owner, currency),
        to_account=store.AccountKey(row.to_type, row.to_owner, currency),
        metadata=row.metadata,
        reversal_of=row.reversal_of,
        reservation_id=row.reservation_id,
        pending_to=(
            store.AccountKey(row.pending_type, row.pending_owner, currency) if row.pending_type is not None else None
        ),
        reservation_state=row.reservation_state,
        created_at=row.created_at,
    )


class TransferReads:
    """`reads` runs single statements (no transaction needed)."""

    def __init__(self, reads: AsyncEngine) -> None:
        self._reads = reads

    async def reservation(self, transfer_id: str) -> Reservation:
        async with self._reads.connect() as conn:
            row = await store.reservation_accounts(conn, uuid.UUID(transfer_id))
        if row is None:
            raise NotFound(Reason.TRANSFER_NOT_FOUND, f"no reservation {transfer_id}")
        cash = pb.CURRENCY_CASH_CENTS
        return Reservation(
            in_flight=store.AccountKey(row.in_flight_type, row.in_flight_owner, cash),
            source=store.AccountKey(row.source_type, row.source_owner, cash),
            destination=store.AccountKey(row.pending_type, row.pending_owner, cash),
        )

    async def reversible(self, transfer_id: str) -> Reversible:
        async with self._reads.connect() as conn:
            original = await store.transfer_with_accounts(conn, uuid.UUID(transfer_id))
        if original is None:
            raise NotFound(Reason.TRANSFER_NOT_FOUND, f"no transfer {transfer_id}")
        if original.phase != pb.TRANSFER_PHASE_SINGLE or original.kind == pb.TRANSFER_KIND_REVERSAL:
            raise InvalidArgument(
                [("transfer_id", "only single-phase transfers that are not reversals themselves can be reversed")],
                reason=Reason.REVERSAL_MISMATCH,
            )
        currency = original.currency
        return Reversible(
            currency=currency,
            from_account=store.AccountKey(original.from_type, original.from_owner, currency),
            to_account=store.AccountKey(original.to_type, original.to_owner, currency),
        )

    async def account(self, key: store.AccountKey) -> Account:
        async with self._reads.connect() as conn:
            row = await store.account_row(conn, key)
        if row is None:
            raise NotFound(Reason.ACCOUNT_NOT_FOUND, "no transfer has touched this account yet")
        return Account(row.balance, row.debits_total, row.credits_total, row.opened_at, row.updated_at)

    async def of_account(
        self, key: store.AccountKey, size: int, before: int | None, kinds: Sequence[int]
    ) -> TransferPage:
        async with self._reads.connect() as conn:
            rows = await store.account_transfer_rows(conn, key, size, before, kinds)
        page, more = rows[:size], len(rows) > size
        return TransferPage([_transfer(row) for row in page], next_before=page[-1].entry_id if more else None)
