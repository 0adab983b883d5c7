"""Drivers' favorites (stores and chargers) and their votes on a store's amenities.

The core (`Favorites`) takes the driver's id from the handler (api.py), which maps the contract onto it.
"""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from services.common.errors import NotFound, Unavailable
from services.merchants import store
from services.merchants.peers import ChargerDirectory
from services.merchants.records import merchant_not_found

MERCHANT_FAVORITE, CHARGER_FAVORITE = "merchant", "charger"
VOTES = {"up": 1, "down": -1}
FAVORITES_SHOWN = 200


# --- queries (the tables are in store.py) -------------------------------------------------------------------


async def vote_amenity(conn: AsyncConnection, merchant_id: str, amenity: str, driver_id: str, vote: int) -> None:
    """The driver's vote, replacing theirs."""
    await conn.execute(
        pg_insert(store.amenity_votes)
        .values(merchant_id=merchant_id, amenity=amenity, driver_id=driver_id, vote=vote)
        .on_conflict_do_update(
            index_elements=[
                store.amenity_votes.c.merchant_id,
                store.amenity_votes.c.amenity,
                store.amenity_votes.c.driver_id,
            ],
            set_={"vote": vote},
        )
    )


async def amenity_counts(conn: AsyncConnection, merchant_id: str) -> dict[str, tuple[int, int]]:
    """Amenity → (up votes, down votes) of a store; an amenity nobody voted on is absent."""
    rows = await conn.execute(
        sa.select(
            store.amenity_votes.c.amenity,
            sa.func.count().filter(store.amenity_votes.c.vote > 0).label("up"),
            sa.func.count().filter(store.amenity_votes.c.vote < 0).label("down"),
        )
        .where(store.amenity_votes.c.merchant_id == merchant_id)
        .group_by(store.amenity_votes.c.amenity)
    )
    return {row.amenity: (row.up, row.down) for row in rows}


async def set_favorite(conn: AsyncConnection, driver_id: str, kind: str, target_id: str, favorite: bool) -> None:
    """Adds or removes one favorite; doing it twice changes nothing."""
    if favorite:
        await conn.execute(
            pg_insert(store.favorites)
            .values(driver_id=driver_id, kind=kind, target_id=target_id)
            .on_conflict_do_nothing()
        )
    else:
        await conn.execute(
            sa.delete(store.favorites).where(
                store.favorites.c.driver_id == driver_id,
                store.favorites.c.kind == kind,
                store.favorites.c.target_id == target_id,
            )
        )


async def favorite_stores(conn: AsyncConnection, driver_id: str) -> Sequence[Any]:
    """The driver's favorite stores with what a list shows of them, most recently added first."""
    query = (
        sa.select(
            store.favorites.c.created_at,
            store.merchants.c.id,
            store.merchants.c.name,
            store.merchants.c.category,
            store.merchants.c.photo_urls,
        )
        .select_from(store.favorites.join(store.merchants, store.merchants.c.id == store.favorites.c.target_id))
        .where(store.favorites.c.driver_id == driver_id, store.favorites.c.kind == MERCHANT_FAVORITE)
        .order_by(store.favorites.c.created_at.desc(), store.merchants.c.id)
        .limit(FAVORITES_SHOWN)
    )
    return (await conn.execute(query)).all()


async def favorite_charger_ids(conn: AsyncConnection, driver_id: str) -> list[tuple[str, datetime.datetime]]:
    query = (
        sa.select(store.favorites.c.target_id, store.favorites.c.created_at)
        .where(store.favorites.c.driver_id == driver_id, store.favorites.c.kind == CHARGER_FAVORITE)
        .order_by(store.favorites.c.created_at.desc(), store.favorites.c.target_id)
        .limit(FAVORITES_SHOWN)
    )
    return [(row.target_id, row.created_at) for row in await conn.execute(query)]


async def store_exists(conn: AsyncConnection, merchant_id: str) -> bool:
    known = (await conn.execute(sa.select(store.merchants.c.id).where(store.merchants.c.id == merchant_id))).first()
    return known is not None


@dataclasses.dataclass(frozen=True, slots=True)
class FavoriteCharger:
    charger_id: str
    # "" while the charger directory does not answer: the list still shows the favorite.
    name: str
    added_at: datetime.datetime


class Favorites:
    """A driver's favorites and amenity votes; the driver is the caller, named by the handler."""

    def __init__(self, engine: AsyncEngine, reads: AsyncEngine, chargers: ChargerDirectory) -> None:
        self._engine = engine
        self._reads = reads
        self._chargers = chargers

    async def vote(self, driver_id: str, merchant_id: str, amenity: str, vote_type: str) -> tuple[int, int]:
        """The driver's vote ("up" or "down") on the store's amenity, replacing theirs; the amenity's (up votes,
        down votes) after it."""
        async with self._engine.begin() as conn:
            await self._existing_store(conn, merchant_id)
            await vote_amenity(conn, merchant_id, amenity, driver_id, VOTES[vote_type])
            return (await amenity_counts(conn, merchant_id))[amenity]

    async def stores(self, driver_id: str) -> Sequence[Any]:
        async with self._reads.connect() as conn:
            return await favorite_stores(conn, driver_id)

    async def add_store(self, driver_id: str, merchant_id: str) -> None:
        async with self._engine.begin() as conn:
            await self._existing_store(conn, merchant_id)
            await set_favorite(conn, driver_id, MERCHANT_FAVORITE, merchant_id, True)

    async def remove_store(self, driver_id: str, merchant_id: str) -> None:
        async with self._engine.begin() as conn:
            await set_favorite(conn, driver_id, MERCHANT_FAVORITE, merchant_id, False)

    async def chargers(self, driver_id: str) -> list[FavoriteCharger]:
        """The driver's favorite chargers, most recently added first, named by the charger directory."""
        async with self._reads.connect() as conn:
            favorites = await favorite_charger_ids(conn, driver_id)
        listed = []
        for charger_id, added in favorites:
            try:
                name = (await self._chargers.charger(charger_id)).name
            except (NotFound, Unavailable):
                name = ""  # the list still shows the favorite; its name comes back with the directory
            listed.append(FavoriteCharger(charger_id, name, added))
        return listed

    async def add_charger(self, driver_id: str, charger_id: str) -> None:
        await self._chargers.charger(charger_id)  # CHARGER_NOT_FOUND for a charger nobody knows
        async with self._engine.begin() as conn:
            await set_favorite(conn, driver_id, CHARGER_FAVORITE, charger_id, True)

    async def remove_charger(self, driver_id: str, charger_id: str) -> None:
        async with self._engine.begin() as conn:
            await set_favorite(conn, driver_id, CHARGER_FAVORITE, charger_id, False)

    async def _existing_store(self, conn: AsyncConnection, merchant_id: str) -> None:
        if not await store_exists(conn, merchant_id):
            raise merchant_not_found(merchant_id)


__all__ = ["Favorites", "amenity_counts"]
