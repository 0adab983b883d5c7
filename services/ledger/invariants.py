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
        SELECT a.currency, sum(e.amount) AS total FROM entries e JOIN accounts a ON a.id = e.account_id
        GROUP BY a.currency HAVING sum(e.amount) <> 0""",
    "balances of a currency do not sum to zero": """
        SELECT currency, sum(balance) AS total FROM accounts GROUP BY currency HAVING sum(balance) <> 0""",
    "transfer without exactly one debit and one credit of its amount": """
        SELECT t.id FROM transfers t
        LEFT JOIN entries d ON d.transfer_id = t.id AND d.account_id = t.from_account_id AND d.amount = -t.amount
        LEFT JOIN entries c ON c.transfer_id = t.id AND c.account_id = t.to_account_id AND c.amount = t.amount
        WHERE d.id IS NULL OR c.id IS NULL OR (SELECT count(*) FROM entries x WHERE x.transfer_id = t.id) <> 2""",
    "account balance differs from the sum of its entries": """
        SELECT a.id, a.balance, coalesce(sum(e.amount), 0) AS entries_sum,
               a.debits_total, coalesce(-sum(e.amount) FILTER (WHERE e.amount < 0), 0) AS debits,
               a.credits_total, coalesce(sum(e.amount) FILTER (WHERE e.amount > 0), 0) AS credits
        FROM accounts a LEFT JOIN entries e ON e.account_id = a.id
        GROUP BY a.id
        HAVING a.balance <> coalesce(sum(e.amount), 0)
            OR a.debits_total <> coalesce(-sum(e.amount) FILTER (WHERE e.amount < 0), 0)
            OR a.credits_total <> coalesce(sum(e.amount) FILTER (WHERE e.amount > 0), 0)""",
    "account below zero": "SELECT id, type, owner_id, balance FROM accounts WHERE balance < 0 AND NOT may_go_negative",
    "entry balance_after does not follow from the previous entry": """
        SELECT id FROM (
            SELECT e.id, e.balance_after,
                   e.amount + coalesce(lag(e.balance_after) OVER (PARTITION BY e.account_id ORDER BY e.id), 0)
                   AS expected
            FROM entries e) s
        WHERE balance_after <> expected""",
    "redemption without its merchant-fee accrual": f"""
        SELECT t.id FROM transfers t LEFT JOIN merchant_fee_accruals f ON f.transfer_id = t.id
        WHERE t.kind = {pb.TRANSFER_KIND_REDEMPTION} AND f.transfer_id IS NULL""",
    "merchant fee period differs from the sum of its accruals": """
        SELECT p.merchant_id, p.period_start FROM merchant_fee_periods p
        LEFT JOIN merchant_fee_accruals f ON f.merchant_id = p.merchant_id AND f.period_start = p.period_start
        GROUP BY p.merchant_id, p.period_start
        HAVING p.nova_redeemed <> coalesce(sum(f.nova_redeemed), 0) OR p.fee_cents <> coalesce(sum(f.fee_cents), 0)
            OR p.redemption_count <> count(f.transfer_id)""",
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
