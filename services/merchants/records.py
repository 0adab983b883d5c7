"""What the merchants cores share: the Square token cipher, loading a merchant, the ownership rule.

Ownership: a merchant-role user acts only on the stores they own, an admin on all. A store the caller may not
see answers MERCHANT_NOT_FOUND, so ids of other merchants' stores are not confirmed to exist.
"""

from __future__ import annotations

import datetime
import urllib.parse
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from cryptography.fernet import Fernet, MultiFernet
from nerava.merchants.v1 import merchants_pb2 as pb
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from services.common.context import Caller
from services.common.errors import FailedPrecondition, NotFound, Unavailable
from services.common.interceptors import Owned
from services.merchants import domain, store
from services.merchants.reasons import Reason

DRIVER, MERCHANT, ADMIN, ADMIN_READONLY = "driver", "merchant", "admin", "admin_readonly"

_STATUS_NAMES = {
    pb.MERCHANT_STATUS_PENDING: "pending",
    pb.MERCHANT_STATUS_ACTIVE: "active",
    pb.MERCHANT_STATUS_PAUSED: "paused",
    pb.MERCHANT_STATUS_SUSPENDED: "suspended",
}


def token_cipher(keys: str) -> MultiFernet:
    """SQUARE_TOKEN_KEYS: Fernet keys, comma-separated, the first one encrypts (rotation keeps the others)."""
    return MultiFernet([Fernet(key.strip().encode()) for key in keys.split(",") if key.strip()])


def charger_not_found(charger_id: str) -> NotFound:
    return NotFound(Reason.CHARGER_NOT_FOUND, "no charger with that id", {"charger_id": charger_id})


def merchant_not_found(merchant_id: str) -> NotFound:
    return NotFound(Reason.MERCHANT_NOT_FOUND, "no merchant with that id", {"merchant_id": merchant_id})


def is_admin(caller: Caller) -> bool:
    return caller.has_any({ADMIN, ADMIN_READONLY})


async def load_merchant(conn: AsyncConnection, merchant_id: str, *, for_update: bool = False) -> Any:
    query = sa.select(store.merchants).where(store.merchants.c.id == merchant_id)
    if for_update:
        query = query.with_for_update()
    return (await conn.execute(query)).first()


# A merchant's store: another merchant's is MERCHANT_NOT_FOUND (admins reach every one, see manages).
STORE = Owned("store", "merchant_id", frozenset({MERCHANT}), "MERCHANT_NOT_FOUND")


def manages(row: Any, caller: Caller, *, write: bool) -> bool:
    """The caller may act on this store: its owner, or an admin — for a change, a write admin only (a read-only
    admin reads every store and changes none)."""
    admin = caller.has_any({ADMIN}) if write else is_admin(caller)
    return row is not None and (admin or (caller.user_id is not None and row.owner_user_id == caller.user_id))


async def owned_merchant(
    conn: AsyncConnection, merchant_id: str, caller: Caller, *, write: bool = False, for_update: bool = False
) -> Any:
    """The merchant, if the caller may read it (`write`: change it); MERCHANT_NOT_FOUND otherwise."""
    row = await load_merchant(conn, merchant_id, for_update=for_update)
    if not manages(row, caller, write=write):
        raise merchant_not_found(merchant_id)
    return row


async def active_merchant(conn: AsyncConnection, merchant_id: str) -> Any:
    """A merchant drivers may use: MERCHANT_NOT_FOUND when unknown or pending, MERCHANT_NOT_ACTIVE when paused
    or suspended."""
    row = await load_merchant(conn, merchant_id)
    if row is None or row.status == pb.MERCHANT_STATUS_PENDING:
        raise merchant_not_found(merchant_id)
    if row.status != pb.MERCHANT_STATUS_ACTIVE:
        raise FailedPrecondition(
            Reason.MERCHANT_NOT_ACTIVE,
            f"the merchant is {_STATUS_NAMES.get(row.status, 'not active')}",
            {"merchant_id": merchant_id},
        )
    return row


async def insert_merchant(conn: AsyncConnection, values: dict[str, Any]) -> Any:
    """Inserts a new store with the first free short code for its name (domain.short_code_candidates) and
    returns its row; a short code taken concurrently moves on to the next one. Other conflicts (place id,
    request id) raise IntegrityError to the caller."""
    base = domain.short_code_base(values["name"])
    taken = set(
        (
            await conn.execute(
                sa.select(store.merchants.c.short_code).where(store.merchants.c.short_code.like(f"{base[:2]}%"))
            )
        ).scalars()
    )
    for short_code in (code for code in domain.short_code_candidates(values["name"]) if code not in taken):
        try:
            async with conn.begin_nested():
                return (
                    await conn.execute(
                        sa.insert(store.merchants).values(**values, short_code=short_code).returning(*store.merchants.c)
                    )
                ).one()
        except IntegrityError as error:
            if "merchants_short_code" not in str(error.orig):
                raise
    raise Unavailable(Reason.CONFLICT_RETRY, "no free short code for this store name; retry")


def perk_of(row: Any) -> domain.Perk:
    return domain.merchant_perk(row.custom_perk_cents, row.recommended_perk_cents, row.perk_label)


def opening_periods(row: Any) -> list[domain.OpeningPeriod]:
    return [domain.OpeningPeriod(p["day_of_week"], p["open_minute"], p["close_minute"]) for p in row.opening_periods]


def open_status(row: Any, now: datetime.datetime) -> tuple[bool, str | None]:
    return domain.open_status(opening_periods(row), row.time_zone, now)


def checkout_url(page_url: str, token: str) -> str:
    """The page a phone opens from the store's QR code (not the JSON API behind it); `page_url` is
    MerchantsSettings.checkout_page_url, a template with `{token}`."""
    return page_url.replace("{token}", urllib.parse.quote(token, safe=""))


def periods_json(periods: Sequence[domain.OpeningPeriod]) -> list[dict[str, int]]:
    return [
        {"day_of_week": p.day_of_week, "open_minute": p.open_minute, "close_minute": p.close_minute} for p in periods
    ]
