"""Reads of the double-entry core that the posting RPCs and the service callers need: a reservation's accounts,
the transfer a reversal mirrors, an account, and an account's transfers. Posting itself goes through
store.TransferWriter (post_transfer(), migrations/versions/0002). Transport-free."""

from __future__ import annotations

import dataclasses
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
class TransferPage:
    rows: list[Any]  # store.account_transfer_rows' rows
    next_before: int | None


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

    async def account(self, key: store.AccountKey) -> Any:
        async with self._reads.connect() as conn:
            row = await store.account_row(conn, key)
        if row is None:
            raise NotFound(Reason.ACCOUNT_NOT_FOUND, "no transfer has touched this account yet")
        return row

    async def of_account(
        self, key: store.AccountKey, size: int, before: int | None, kinds: Sequence[int]
    ) -> TransferPage:
        async with self._reads.connect() as conn:
            rows = await store.account_transfer_rows(conn, key, size, before, kinds)
        page, more = rows[:size], len(rows) > size
        return TransferPage(rows=page, next_before=page[-1].entry_id if more else None)
