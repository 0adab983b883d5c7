"""Merchant fee periods: a month's redemption fees (accrued by a trigger on every REDEMPTION transfer,
migrations/versions/0004), and their close ACCRUING → INVOICED → PAID. Transport-free."""

from __future__ import annotations

import dataclasses
import datetime
import logging
from collections.abc import Callable

from nerava.ledger.v1 import ledger_pb2 as pb
from sqlalchemy.ext.asyncio import AsyncEngine

from services.common import audit
from services.common.errors import FailedPrecondition
from services.ledger import domain, store
from services.ledger.reasons import Reason

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class FeePeriod:
    merchant_id: str
    first_day: datetime.date
    last_day: datetime.date
    nova_redeemed: int
    fee_cents: int
    redemption_count: int
    status: int


def _period(merchant_id: str, month: str, row: store.FeePeriodRow | None) -> FeePeriod:
    """A period row, or zeros and ACCRUING for a month nothing was redeemed in."""
    first, last = domain.month_bounds(month)
    return FeePeriod(
        merchant_id=merchant_id,
        first_day=first,
        last_day=last,
        nova_redeemed=row.nova_redeemed if row else 0,
        fee_cents=row.fee_cents if row else 0,
        redemption_count=row.redemption_count if row else 0,
        status=row.status if row else pb.FEE_PERIOD_STATUS_ACCRUING,
    )


class FeePeriods:
    """`reads` runs single statements; `engine` holds the close's transaction."""

    def __init__(self, engine: AsyncEngine, reads: AsyncEngine, clock: Callable[[], datetime.datetime]) -> None:
        self._engine = engine
        self._reads = reads
        self._clock = clock

    async def get(self, merchant_id: str, month: str) -> FeePeriod:
        """The period of `month` ("YYYY-MM"; the current UTC month when empty)."""
        month = month or self._clock().strftime("%Y-%m")
        first, _ = domain.month_bounds(month)
        async with self._reads.connect() as conn:
            row = await store.fee_period_row(conn, merchant_id, first)
        return _period(merchant_id, month, row)

    async def close(self, merchant_id: str, month: str, status: int) -> FeePeriod:
        """Moves the month's period to `status` (INVOICED or PAID), once; asking again for the status it has is
        answered with the period as it is."""
        first, _ = domain.month_bounds(month)
        async with self._engine.begin() as conn:
            # A month nothing was redeemed in can be invoiced too (at zero): later redemptions then go to the
            # next month. The row lock orders this close against concurrent accruals.
            row = await store.lock_fee_period(conn, merchant_id, first)
            if row.status != status:
                if domain.FEE_PERIOD_NEXT.get(row.status) != status:
                    name = pb.FeePeriodStatus.Name(row.status)
                    raise FailedPrecondition(
                        Reason.FEE_PERIOD_TRANSITION_INVALID,
                        f"a fee period moves ACCRUING → INVOICED → PAID; this one is {name}",
                        {"status": name},
                    )
                row = await store.set_fee_period_status(conn, merchant_id, first, status)
                await audit.record(
                    conn,
                    "fee_period.close",
                    f"merchant:{merchant_id}",
                    month=month,
                    status=pb.FeePeriodStatus.Name(status),
                )
        log.info("merchant fee period closed", extra={"merchant_id": merchant_id, "month": month, "status": row.status})
        return _period(merchant_id, month, row)
