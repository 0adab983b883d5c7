"""Drivers' favorites (stores and chargers) and their votes on a store's amenities.

The core is plain functions over a connection (the queries beside their tables); FavoriteRpcs only maps the
contract onto them and checks access.
"""

from __future__ import annotations

import datetime
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from nerava.merchants.v1 import merchants_pb2 as pb
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from services.common.context import current_caller
from services.common.errors import NotFound, Unavailable
from services.common.interceptors import OWN_DATA, Access
from services.merchants import store
from services.merchants.records import DRIVER, Resources, merchant_not_found, timestamp

# The driver's own votes and favorites; the merchants and chargers they name are the public catalog's.
_DRIVERS_OWN = Access.role(DRIVER).not_owned(OWN_DATA)

ACCESS: dict[str, Access] = {
    "VoteAmenity": _DRIVERS_OWN,
    "ListFavoriteMerchants": _DRIVERS_OWN,
    "AddFavoriteMerchant": _DRIVERS_OWN,
    "RemoveFavoriteMerchant": _DRIVERS_OWN,
    "ListFavoriteChargers": _DRIVERS_OWN,
    "AddFavoriteCharger": _DRIVERS_OWN,
    "RemoveFavoriteCharger": _DRIVERS_OWN,
}

MERCHANT_FAVORITE, CHARGER_FAVORITE = "merchant", "charger"
VOTES = {"up": 1, "down": -1}
FAVORITES_SHOWN = 200


# --- the core ------------------------------------------------------------------------------------------------


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


def amenities_message(counts: dict[str, tuple[int, int]]) -> pb.Amenities:
    def votes(amenity: str) -> pb.AmenityVotes:
        up, down = counts.get(amenity, (0, 0))
        return pb.AmenityVotes(upvotes=up, downvotes=down)

    return pb.Amenities(bathroom=votes("bathroom"), wifi=votes("wifi"))


# --- the contract --------------------------------------------------------------------------------------------


def _driver() -> str:
    return current_caller().user_id or ""


async def store_exists(conn: AsyncConnection, merchant_id: str) -> bool:
    known = (await conn.execute(sa.select(store.merchants.c.id).where(store.merchants.c.id == merchant_id))).first()
    return known is not None


class FavoriteRpcs(Resources):
    async def VoteAmenity(self, request: pb.VoteAmenityRequest, context: Any) -> pb.VoteAmenityResponse:
        async with self.engine.begin() as conn:
            await self._existing_store(conn, request.merchant_id)
            await vote_amenity(conn, request.merchant_id, request.amenity, _driver(), VOTES[request.vote_type])
            up, down = (await amenity_counts(conn, request.merchant_id))[request.amenity]
        return pb.VoteAmenityResponse(ok=True, upvotes=up, downvotes=down)

    async def ListFavoriteMerchants(
        self, request: pb.ListFavoriteMerchantsRequest, context: Any
    ) -> pb.ListFavoriteMerchantsResponse:
        async with self.reads.connect() as conn:
            rows = await favorite_stores(conn, _driver())
        return pb.ListFavoriteMerchantsResponse(
            favorites=[
                pb.FavoriteMerchant(
                    merchant_id=row.id,
                    name=row.name,
                    category=row.category,
                    photo_url=next(iter(row.photo_urls), ""),
                    favorited_at=timestamp(row.created_at),
                )
                for row in rows
            ]
        )

    async def AddFavoriteMerchant(
        self, request: pb.AddFavoriteMerchantRequest, context: Any
    ) -> pb.AddFavoriteMerchantResponse:
        async with self.engine.begin() as conn:
            await self._existing_store(conn, request.merchant_id)
            await set_favorite(conn, _driver(), MERCHANT_FAVORITE, request.merchant_id, True)
        return pb.AddFavoriteMerchantResponse(ok=True, favorited=True)

    async def RemoveFavoriteMerchant(
        self, request: pb.RemoveFavoriteMerchantRequest, context: Any
    ) -> pb.RemoveFavoriteMerchantResponse:
        async with self.engine.begin() as conn:
            await set_favorite(conn, _driver(), MERCHANT_FAVORITE, request.merchant_id, False)
        return pb.RemoveFavoriteMerchantResponse(ok=True, favorited=False)

    async def ListFavoriteChargers(
        self, request: pb.ListFavoriteChargersRequest, context: Any
    ) -> pb.ListFavoriteChargersResponse:
        async with self.reads.connect() as conn:
            favorites = await favorite_charger_ids(conn, _driver())
        listed = pb.ListFavoriteChargersResponse()
        for charger_id, added in favorites:
            try:
                name = (await self.directory_charger(charger_id)).name
            except (NotFound, Unavailable):
                name = ""  # the list still shows the favorite; its name comes back with the directory
            listed.favorites.add(charger_id=charger_id, name=name, favorited_at=timestamp(added))
        return listed

    async def AddFavoriteCharger(
        self, request: pb.AddFavoriteChargerRequest, context: Any
    ) -> pb.AddFavoriteChargerResponse:
        await self.directory_charger(request.charger_id)  # CHARGER_NOT_FOUND for a charger nobody knows
        async with self.engine.begin() as conn:
            await set_favorite(conn, _driver(), CHARGER_FAVORITE, request.charger_id, True)
        return pb.AddFavoriteChargerResponse(ok=True, favorited=True)

    async def RemoveFavoriteCharger(
        self, request: pb.RemoveFavoriteChargerRequest, context: Any
    ) -> pb.RemoveFavoriteChargerResponse:
        async with self.engine.begin() as conn:
            await set_favorite(conn, _driver(), CHARGER_FAVORITE, request.charger_id, False)
        return pb.RemoveFavoriteChargerResponse(ok=True, favorited=False)

    async def _existing_store(self, conn: AsyncConnection, merchant_id: str) -> None:
        if not await store_exists(conn, merchant_id):
            raise merchant_not_found(merchant_id)


__all__ = ["ACCESS", "FavoriteRpcs", "amenities_message", "amenity_counts"]
