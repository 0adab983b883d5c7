"""Ledger invariants any operator can check: `python -m services.ledger.invariants` (exit 1 on a violation).

1. Per currency, Σ debits = Σ credits: the entries of a currency sum to zero, and so do the balances.
2. Every transfer has exactly two entries, a debit and a credit of its amount, in its accounts.
3. Every account's balance equals the sum of its entries, and its debit/credit totals match them.
4. No account that may not go negative is below zero.
5. Every REDEMPTION has its merchant-fee accrual, and each fee period's totals are the sum of its accruals.
"""

from __future__ import annotations

import asyncio
import sys

import sqlalchemy as sa
from nerava.ledger.v1 import ledger_pb2 as pb
from sqlalchemy.ext.asyncio import AsyncEngine

from services.common.config import Env
from services.common.db import create_engine

CHECKS: dict[str, str] = {
    "entries of a currency do not sum to zero": """
        SELECT account.currency, sum(entry.amount) AS total
        FROM entries AS entry JOIN accounts AS account ON account.id = entry.account_id
        GROUP BY account.currency HAVING sum(entry.amount) <> 0""",
    "balances of a currency do not sum to zero": """
        SELECT currency, sum(balance) AS total FROM accounts GROUP BY currency HAVING sum(balance) <> 0""",
    "transfer without exactly one debit and one credit of its amount": """
        SELECT transfer.id FROM transfers AS transfer
        LEFT JOIN entries AS debit ON debit.transfer_id = transfer.id AND debit.account_id = transfer.from_account_id
                                   AND debit.amount = -transfer.amount
        LEFT JOIN entries AS credit ON credit.transfer_id = transfer.id AND credit.account_id = transfer.to_account_id
                                    AND credit.amount = transfer.amount
        WHERE debit.id IS NULL OR credit.id IS NULL
           OR (SELECT count(*) FROM entries AS leg WHERE leg.transfer_id = transfer.id) <> 2""",
    "account balance differs from the sum of its entries": """
        SELECT account.id, account.balance, coalesce(sum(entry.amount), 0) AS entries_sum,
               account.debits_total, coalesce(-sum(entry.amount) FILTER (WHERE entry.amount < 0), 0) AS debits,
               account.credits_total, coalesce(sum(entry.amount) FILTER (WHERE entry.amount > 0), 0) AS credits
        FROM accounts AS account LEFT JOIN entries AS entry ON entry.account_id = account.id
        GROUP BY account.id
        HAVING account.balance <> coalesce(sum(entry.amount), 0)
            OR account.debits_total <> coalesce(-sum(entry.amount) FILTER (WHERE entry.amount < 0), 0)
            OR account.credits_total <> coalesce(sum(entry.amount) FILTER (WHERE entry.amount > 0), 0)""",
    "account below zero": "SELECT id, type, owner_id, balance FROM accounts WHERE balance < 0 AND NOT may_go_negative",
    "entry balance_after does not follow from the previous entry": """
        SELECT id FROM (
            SELECT entry.id, entry.balance_after,
                   entry.amount
                   + coalesce(lag(entry.balance_after) OVER (PARTITION BY entry.account_id ORDER BY entry.id), 0)
                   AS expected
            FROM entries AS entry) AS walked
        WHERE balance_after <> expected""",
    "redemption without its merchant-fee accrual": f"""
        SELECT transfer.id
        FROM transfers AS transfer LEFT JOIN merchant_fee_accruals AS accrual ON accrual.transfer_id = transfer.id
        WHERE transfer.kind = {pb.TRANSFER_KIND_REDEMPTION} AND accrual.transfer_id IS NULL""",
    "merchant fee period differs from the sum of its accruals": """
        SELECT period.merchant_id, period.period_start FROM merchant_fee_periods AS period
        LEFT JOIN merchant_fee_accruals AS accrual
               ON accrual.merchant_id = period.merchant_id AND accrual.period_start = period.period_start
        GROUP BY period.merchant_id, period.period_start
        HAVING period.nova_redeemed <> coalesce(sum(accrual.nova_redeemed), 0)
            OR period.fee_cents <> coalesce(sum(accrual.fee_cents), 0)
            OR period.redemption_count <> count(accrual.transfer_id)""",
}


async def violations(engine: AsyncEngine) -> list[str]:
    """One line per violated invariant (empty when the ledger is sound). Runs in one snapshot."""
    found: list[str] = []
    async with engine.connect() as conn:
        await conn.execute(sa.text("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY"))
        for name, query in CHECKS.items():
            rows = (await conn.execute(sa.text(query))).all()
            if rows:
                found.append(f"{name}: {len(rows)} rows, e.g. {tuple(rows[0])}")
    return found


async def _main() -> int:
    engine = create_engine(Env().str("LEDGER_DATABASE_URL", Env().str("DATABASE_URL")), "ledger")
    try:
        problems = await violations(engine)
    finally:
        await engine.dispose()
    for problem in problems:
        print(f"VIOLATION {problem}")
    print(f"{len(CHECKS)} invariants checked, {len(problems)} violated")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(asyncio.run(_main()))
