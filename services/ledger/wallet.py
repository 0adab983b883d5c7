"""The driver's wallet: balances and totals, the cash statement, and the timeline of what was earned and spent.
Transport-free: the servicer turns these answers into messages."""

from __future__ import annotations

import dataclasses
from typing import Any

from nerava.ledger.v1 import ledger_pb2 as pb
from sqlalchemy.ext.asyncio import AsyncEngine

from services.ledger import domain, store


@dataclasses.dataclass(frozen=True)
class WalletBalance:
    available_cents: int
    pending_cents: int
    total_earned_cents: int
    total_withdrawn_cents: int
    nova_balance: int
    onboarding_complete: bool

    @property
    def can_withdraw(self) -> bool:
        return self.available_cents >= domain.MINIMUM_WITHDRAWAL_CENTS


@dataclasses.dataclass(frozen=True)
class CashEntry:
    """One line of the cash statement, in the app's words (description absent when unknown)."""

    id: int
    amount_cents: int
    balance_after_cents: int
    transaction_type: str
    created_at: Any
    description: str | None
    campaign_name: str | None
    sponsor_name: str | None


@dataclasses.dataclass(frozen=True)
class CashStatement:
    entries: list[CashEntry]
    count: int
    # The id to continue before, when more entries follow this page.
    next_before: int | None


class Wallet:
    """Reads only; `reads` is an engine whose connections run single statements (no transaction needed)."""

    def __init__(self, reads: AsyncEngine) -> None:
        self._reads = reads

    async def balance(self, driver_id: str) -> WalletBalance:
        async with self._reads.connect() as conn:
            held = await store.driver_balances(conn, driver_id)
            earned, withdrawn = await store.driver_cash_totals(conn, driver_id)
            onboarding_complete = await store.onboarding_complete(conn, driver_id)
        return WalletBalance(
            available_cents=int(held.get(pb.ACCOUNT_TYPE_DRIVER_CASH, 0)),
            pending_cents=int(held.get(pb.ACCOUNT_TYPE_PAYOUTS_IN_FLIGHT, 0)),
            total_earned_cents=earned,
            total_withdrawn_cents=withdrawn,
            nova_balance=int(held.get(pb.ACCOUNT_TYPE_DRIVER_NOVA, 0)),
            onboarding_complete=onboarding_complete,
        )

    async def cash_statement(self, driver_id: str, size: int, before: int | None, offset: int) -> CashStatement:
        async with self._reads.connect() as conn:
            rows, count = await store.cash_entry_rows(conn, driver_id, size, before, offset)
        page, more = rows[:size], len(rows) > size
        entries = []
        for row in page:
            # A clawback shows the campaign and sponsor of the grant it takes back.
            meta: dict[str, str] = {**(row.original_metadata or {}), **(row.metadata or {})}
            kind, description = domain.cash_entry_description(row.kind, row.phase, row.amount, meta)
            entries.append(
                CashEntry(
                    id=row.id,
                    amount_cents=row.amount,
                    balance_after_cents=row.balance_after,
                    transaction_type=kind,
                    created_at=row.created_at,
                    # Unknown is absent, never "": only what the transfers' metadata recorded at posting time.
                    description=description or None,
                    campaign_name=meta.get("campaign_name") or None,
                    sponsor_name=meta.get("sponsor_name") or None,
                )
            )
        return CashStatement(entries=entries, count=count, next_before=page[-1].id if more else None)

    async def timeline(self, driver_id: str, limit: int) -> list[tuple[domain.TimelineEntry, Any]]:
        """(entry, created_at) newest first, as store.wallet_timeline_rows orders them."""
        async with self._reads.connect() as conn:
            rows = await store.wallet_timeline_rows(conn, driver_id, limit)
        return [
            (
                domain.TimelineEntry(
                    transfer_id=str(row.transfer_id),
                    amount=row.amount,
                    currency=row.currency,
                    kind=row.kind,
                    metadata=row.metadata or {},
                    original_kind=row.original_kind,
                    original_metadata=row.original_metadata or {},
                ),
                row.created_at,
            )
            for row in rows
        ]
