"""The driver's account card: what their charging sessions add up to (this service's rows) beside the money the
ledger holds for them (read from the ledger, never recomputed here)."""

from __future__ import annotations

import dataclasses
import datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from services.sessions.peers import Wallets
from services.sessions.store import charging_sessions

# kg of CO₂ avoided per kWh charged: a gasoline car's emissions over the distance a kWh drives (~3.5 mi at
# ~0.35 kg/mi ≈ 1.2 kg) minus the US grid's emissions for that kWh (~0.4 kg), rounded down to stay modest.
CO2_KG_PER_KWH = 0.4
STREAK_LOOKBACK_DAYS = 366


@dataclasses.dataclass(frozen=True)
class SessionTotals:
    sessions: int = 0
    kwh: float = 0.0
    first_start: datetime.datetime | None = None
    favorite_charger: tuple[str, str, int] | None = None  # (id, name, ended sessions there)
    streak_days: int = 0


def streak(days: set[datetime.date], today: datetime.date) -> int:
    """Consecutive days ending today with an ended session; 0 without one today."""
    count = 0
    while today - datetime.timedelta(days=count) in days:
        count += 1
    return count


async def session_totals(engine: AsyncEngine, driver_id: str, now: datetime.datetime) -> SessionTotals:
    ended = sa.and_(charging_sessions.c.driver_id == driver_id, charging_sessions.c.session_end.is_not(None))
    totals = sa.select(
        sa.func.count(),
        sa.func.coalesce(sa.func.sum(charging_sessions.c.kwh_delivered), 0.0),
        sa.func.min(charging_sessions.c.session_start),
    ).where(ended)
    favorite = (
        sa.select(charging_sessions.c.charger_id, sa.func.max(charging_sessions.c.charger_name), sa.func.count())
        .where(ended, charging_sessions.c.charger_id != "")
        .group_by(charging_sessions.c.charger_id)
        .order_by(
            sa.func.count().desc(), sa.func.max(charging_sessions.c.session_end).desc(), charging_sessions.c.charger_id
        )
        .limit(1)
    )
    utc_day = sa.cast(sa.func.timezone("UTC", charging_sessions.c.session_start), sa.Date)
    days = (
        sa.select(utc_day)
        .where(ended, charging_sessions.c.session_start >= now - datetime.timedelta(days=STREAK_LOOKBACK_DAYS))
        .distinct()
    )
    async with engine.connect() as conn:
        count, kwh, first_start = (await conn.execute(totals)).one()
        top = (await conn.execute(favorite)).first()
        session_days = set((await conn.execute(days)).scalars())
    return SessionTotals(
        sessions=int(count),
        kwh=round(float(kwh), 3),
        first_start=first_start,
        favorite_charger=None if top is None else (top[0], top[1], int(top[2])),
        streak_days=streak(session_days, now.astimezone(datetime.UTC).date()),
    )


@dataclasses.dataclass(frozen=True)
class AccountCard:
    """The account card: the driver's session totals and what the ledger says they earned."""

    totals: SessionTotals
    total_earned_cents: int
    nova_balance: int

    @property
    def co2_avoided_kg(self) -> float:
        return round(self.totals.kwh * CO2_KG_PER_KWH, 1)


class AccountCards:
    def __init__(self, reads: AsyncEngine, wallets: Wallets) -> None:
        self._reads = reads
        self._wallets = wallets

    async def card(self, driver_id: str, now: datetime.datetime) -> AccountCard:
        """Raises LEDGER_UNAVAILABLE when the ledger does not answer (the card is not shown without the money)."""
        wallet = await self._wallets.wallet(driver_id)
        totals = await session_totals(self._reads, driver_id, now)
        return AccountCard(totals, wallet.total_earned_cents, wallet.nova_balance)
