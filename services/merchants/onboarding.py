"""Square onboarding: OAuth connect and callback with a one-time CSRF state, tokens encrypted at rest, the
average order value → recommended perk; and the seller's access token for the checkout code.

The state. ConnectSquare stores a random state (32 bytes, base64url) bound to the caller's user id and to the
store being connected (none: a store is created or matched at the callback); it lives 10 minutes. The callback
claims it with one conditional UPDATE (unused, unexpired, issued to this caller), so of two concurrent callbacks
one wins and a state issued to someone else is never accepted — nor consumed by them. Every later outcome keeps
the state spent, except Square not answering the code exchange: then nothing happened yet, the state is released
and the same redirect may be retried (Square refuses the code then if it was spent meanwhile: OAUTH_DENIED).

Errors (reasons beyond the proto's own OAUTH_STATE_INVALID, OAUTH_DENIED and SQUARE_UNAVAILABLE marked new):
  OAUTH_STATE_INVALID  (PERMISSION_DENIED)    state unknown, expired, used, or issued to another user
  OAUTH_DENIED         (FAILED_PRECONDITION)  the merchant declined on Square (`error` given), or Square refused
                                              the authorization code (used, expired, not issued for our redirect
                                              URL) or the grant lacks the permissions asked for: connect again
  SQUARE_UNAVAILABLE   (UNAVAILABLE)          Square did not answer
  SQUARE_NO_LOCATION   (FAILED_PRECONDITION)  new: the Square account has no active location to link
  SQUARE_ACCOUNT_TAKEN (PERMISSION_DENIED)    new: the Square account is connected to a store the caller does
                                              not manage (another owner's); that store is not named
  MERCHANT_NOT_FOUND   (NOT_FOUND)            the given store is not the caller's (checked again at the callback)
`square_access_token` (for checkout) refuses with SQUARE_NOT_CONNECTED (the seller revoked the application) and
SQUARE_UNAVAILABLE (expired, and Square does not answer the refresh).

Which store the Square account ends up on, in one transaction (serialized per Square account):
  - the state's store, if it named one: the account moves there from another store of the caller's, if it was
    connected elsewhere; a store's previous Square account (another one) is disconnected;
  - else the caller's store this Square account is already connected to;
  - else a new PENDING store of the caller's, from the Square main location (an admin or the owner makes it
    ACTIVE).
A store's empty address, 0/0 position and unset ("UTC") time zone are filled from the Square location; its
recommended perk and average order value are always refreshed.
"""

from __future__ import annotations

import dataclasses
import datetime
import logging
import secrets
from collections.abc import Callable, Sequence
from typing import Any, Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import sqlalchemy as sa
from cryptography.fernet import MultiFernet
from nerava.merchants.v1 import merchants_pb2 as pb
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from services.common.context import Caller
from services.common.errors import FailedPrecondition, PermissionDenied, Unavailable
from services.common.reasons import CommonReason
from services.merchants import domain, store
from services.merchants.adapters.square import (
    SquareAccounts,
    SquareAuthError,
    SquareError,
    SquareLocation,
    SquareTokens,
    SquareUnavailable,
)
from services.merchants.catalog import new_merchant_id, new_qr_token
from services.merchants.reasons import Reason
from services.merchants.records import (
    insert_merchant,
    manages,
    merchant_not_found,
    owned_merchant,
)

_log = logging.getLogger(__name__)


STATES = store.square_oauth_states

STATE_BYTES: Final = 32
STATE_TTL: Final = datetime.timedelta(minutes=10)
# Spent and expired states are kept this long (for support), then deleted by the next ConnectSquare.
STATE_RETENTION: Final = datetime.timedelta(days=1)
# A seller's access token (30 days) is refreshed once it has less than this left.
REFRESH_AHEAD: Final = datetime.timedelta(days=1)
# A store created from a Square location without a name.
UNNAMED_STORE: Final = "Square merchant"
# The time zone a store has when nobody set one (CreateMerchant's default): Square's location may replace it.
UNSET_TIME_ZONE: Final = "UTC"


def _state_invalid() -> PermissionDenied:
    return PermissionDenied(
        Reason.OAUTH_STATE_INVALID,
        "this Square connection is unknown, expired, already finished or not yours; start again",
    )


def _account_taken() -> PermissionDenied:
    return PermissionDenied(
        Reason.SQUARE_ACCOUNT_TAKEN,
        "this Square account is connected to another owner's store; it cannot be connected here",
    )


def _square_unavailable() -> Unavailable:
    return Unavailable(Reason.SQUARE_UNAVAILABLE, "Square did not answer; try connecting again")


def _user_id(caller: Caller) -> str:
    # Access.role(...) admits signed-in users only.
    if caller.user_id is None:
        raise PermissionDenied(CommonReason.PERMISSION_DENIED, "a signed-in merchant is required")
    return caller.user_id


def _time_zone(name: str | None) -> str | None:
    """Square's IANA time zone, when this server knows it."""
    if not name:
        return None
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return None
    return name


def _place_changes(row: Any, location: SquareLocation) -> dict[str, Any]:
    """What the Square location fills in of a store: only what the store does not have."""
    changes: dict[str, Any] = {}
    if not row.address and location.address:
        changes["address"] = location.address
    if row.lat == 0 and row.lng == 0 and location.lat is not None and location.lng is not None:
        changes["lat"], changes["lng"] = location.lat, location.lng
    time_zone = _time_zone(location.timezone)
    if row.time_zone in ("", UNSET_TIME_ZONE) and time_zone is not None and time_zone != row.time_zone:
        changes["time_zone"] = time_zone
    return changes


# --- queries (the tables are in store.py) -------------------------------------------------------------------


async def new_oauth_state(
    conn: AsyncConnection, state: str, user_id: str, merchant_id: str | None
) -> datetime.datetime:
    """Stores a new OAuth state of the user (for a store, or None), dropping states long expired; its expiry."""
    await conn.execute(sa.delete(STATES).where(STATES.c.expires_at < sa.func.now() - STATE_RETENTION))
    expires_at: datetime.datetime = (
        await conn.execute(
            sa.insert(STATES)
            .values(state=state, user_id=user_id, merchant_id=merchant_id, expires_at=sa.func.now() + STATE_TTL)
            .returning(STATES.c.expires_at)
        )
    ).scalar_one()
    return expires_at


async def spend_oauth_state(conn: AsyncConnection, state: str, user_id: str) -> Any:
    """Marks the user's unexpired, unspent state spent; its row (merchant_id), or None."""
    return (
        await conn.execute(
            sa.update(STATES)
            .where(
                STATES.c.state == state,
                STATES.c.used_at.is_(None),
                STATES.c.expires_at > sa.func.now(),
                STATES.c.user_id == user_id,
            )
            .values(used_at=sa.func.now())
            .returning(STATES.c.merchant_id)
        )
    ).first()


async def unspend_oauth_state(conn: AsyncConnection, state: str, user_id: str) -> None:
    await conn.execute(
        sa.update(STATES).where(STATES.c.state == state, STATES.c.user_id == user_id).values(used_at=None)
    )


async def square_connection(conn: AsyncConnection, merchant_id: str) -> Any:
    """The store's Square connection (its tokens sealed), or None."""
    return (
        await conn.execute(
            sa.select(store.square_connections).where(store.square_connections.c.merchant_id == merchant_id)
        )
    ).first()


async def store_refreshed_tokens(
    conn: AsyncConnection, merchant_id: str, square_merchant_id: str, **sealed: Any
) -> None:
    """The refreshed (sealed) tokens, only onto the same Square account: a reconnection meanwhile has its own."""
    await conn.execute(
        sa.update(store.square_connections)
        .where(
            store.square_connections.c.merchant_id == merchant_id,
            store.square_connections.c.square_merchant_id == square_merchant_id,
        )
        .values(**sealed, updated_at=sa.func.now())
    )


async def lock_square_account(conn: AsyncConnection, square_merchant_id: str) -> None:
    await conn.execute(
        sa.select(sa.func.pg_advisory_xact_lock(sa.func.hashtext("square-connection:" + square_merchant_id)))
    )


async def store_connected_to(conn: AsyncConnection, square_merchant_id: str) -> str | None:
    """The store this Square account is connected to, or None."""
    merchant_id: str | None = (
        await conn.execute(
            sa.select(store.square_connections.c.merchant_id).where(
                store.square_connections.c.square_merchant_id == square_merchant_id
            )
        )
    ).scalar_one_or_none()
    return merchant_id


async def lock_stores(conn: AsyncConnection, merchant_ids: list[str]) -> Sequence[Any]:
    """The stores, locked in id order (so two callbacks locking the same two cannot deadlock)."""
    return (
        await conn.execute(
            sa.select(store.merchants)
            .where(store.merchants.c.id.in_(merchant_ids))
            .order_by(store.merchants.c.id)
            .with_for_update()
        )
    ).all()


async def refresh_square_store(
    conn: AsyncConnection, merchant_id: str, perk: int, aov: int | None, place_changes: dict[str, Any]
) -> Any:
    """The store with its recommended perk, average order value and `place_changes`; its row after."""
    return (
        await conn.execute(
            sa.update(store.merchants)
            .where(store.merchants.c.id == merchant_id)
            .values(
                recommended_perk_cents=perk, average_order_value_cents=aov, updated_at=sa.func.now(), **place_changes
            )
            .returning(*store.merchants.c)
        )
    ).one()


async def disconnect_other_accounts(conn: AsyncConnection, merchant_id: str, square_merchant_id: str) -> None:
    """Removes the store's connection to any Square account other than this one."""
    await conn.execute(
        sa.delete(store.square_connections).where(
            store.square_connections.c.merchant_id == merchant_id,
            store.square_connections.c.square_merchant_id != square_merchant_id,
        )
    )


async def upsert_square_connection(conn: AsyncConnection, **values: Any) -> None:
    """The Square account's connection (tokens sealed) on the store `values` names; it moves there when it was
    on another store."""
    insert = pg_insert(store.square_connections).values(**values)
    await conn.execute(
        insert.on_conflict_do_update(
            index_elements=[store.square_connections.c.square_merchant_id],
            set_={
                "merchant_id": insert.excluded.merchant_id,
                "location_id": insert.excluded.location_id,
                "access_token": insert.excluded.access_token,
                "refresh_token": insert.excluded.refresh_token,
                "expires_at": insert.excluded.expires_at,
                "connected_by_user_id": insert.excluded.connected_by_user_id,
                "connected_at": sa.func.now(),
                "updated_at": sa.func.now(),
            },
        )
    )


@dataclasses.dataclass(frozen=True, slots=True)
class ConnectionStart:
    """Where to send the merchant to grant access, and the state Square sends back, valid until `expires_at`."""

    authorization_url: str
    state: str
    expires_at: datetime.datetime


@dataclasses.dataclass(frozen=True, slots=True)
class SquareConnected:
    """The store the Square account ended up on (its row after the change), the account's average order value
    (None when Square did not give one) and the perk recommended from it."""

    store: Any
    average_order_value_cents: int | None
    recommended_perk_cents: int


def _utc_now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


class SquareOnboarding:
    """Connecting a store's Square account (the caller is handed in by the handler), and its access token for
    checkout."""

    def __init__(
        self,
        engine: AsyncEngine,
        square: SquareAccounts,
        token_cipher: MultiFernet,
        *,
        clock: Callable[[], datetime.datetime] = _utc_now,
    ) -> None:
        self._engine = engine
        self._square = square
        self.token_cipher = token_cipher
        self._clock = clock

    async def connect(self, caller: Caller, merchant_id: str) -> ConnectionStart:
        """A new OAuth state of the caller's, for their store `merchant_id` (empty: a store is created or matched
        at the callback); MERCHANT_NOT_FOUND when the store is not the caller's to change."""
        user_id = _user_id(caller)
        state = secrets.token_urlsafe(STATE_BYTES)
        async with self._engine.begin() as conn:
            state_merchant_id = None
            if merchant_id:
                state_merchant_id = (await owned_merchant(conn, merchant_id, caller, write=True)).id
            expires_at = await new_oauth_state(conn, state, user_id, state_merchant_id)
        return ConnectionStart(self._square.authorization_url(state), state, expires_at)

    async def complete(
        self, caller: Caller, state: str, code: str, error: str = "", error_description: str = ""
    ) -> SquareConnected:
        """The callback: the state spent, the code exchanged, the connection stored on its store (module
        docstring). `error` is Square's when the merchant declined."""
        user_id = _user_id(caller)
        state_merchant_id = await self._claim_oauth_state(state, user_id)
        if error:
            raise FailedPrecondition(
                Reason.OAUTH_DENIED,
                f"Square did not grant access ({error}): {error_description}".rstrip(": "),
                {"error": error},
            )
        tokens = await self._exchange_square_code(code, state, user_id)
        location = await self._square_main_location(tokens)
        try:
            aov = await self._square.average_order_value_cents(tokens.access_token, location.id, self._clock())
        except SquareError as failure:
            _log.warning(
                "Square average order value unavailable; recommending the default perk",
                extra={"square_merchant_id": tokens.square_merchant_id, "error": str(failure)},
            )
            aov = None
        perk = domain.recommended_perk_cents(aov)
        async with self._engine.begin() as conn:
            row = await self._link_square_account(
                conn, caller, state_merchant_id=state_merchant_id, tokens=tokens, location=location, aov=aov, perk=perk
            )
        _log.info(
            "Square account connected",
            extra={"merchant_id": row.id, "square_merchant_id": tokens.square_merchant_id, "location_id": location.id},
        )
        return SquareConnected(row, aov, perk)

    async def square_access_token(self, merchant_id: str) -> tuple[str, str] | None:
        """(access token, Square location id) of the store's Square connection; None when it has none.

        The access token is refreshed (and the new one stored) when it has less than a day left. If Square does
        not answer the refresh while the current token still works, that one is returned. Refusals are the
        proto's: SQUARE_NOT_CONNECTED (FAILED_PRECONDITION) when the seller revoked the application (the owner
        has to connect again), SQUARE_UNAVAILABLE (UNAVAILABLE) when the token has expired and Square does not
        answer the refresh."""
        async with self._engine.connect() as conn:
            row = await square_connection(conn, merchant_id)
        if row is None:
            return None
        access_token = self._open_square_token(row.access_token)
        now = self._clock()
        if row.expires_at is None or row.expires_at - now > REFRESH_AHEAD:
            return access_token, row.location_id
        try:
            tokens = await self._square.refresh(self._open_square_token(row.refresh_token))
        except SquareAuthError:
            _log.warning(
                "Square refused the token refresh; the seller must reconnect", extra={"merchant_id": merchant_id}
            )
            raise FailedPrecondition(
                Reason.SQUARE_NOT_CONNECTED, "the merchant's Square connection was revoked; reconnect Square"
            ) from None
        except SquareError as error:
            if row.expires_at > now:
                _log.warning(
                    "Square token refresh failed; using the current token",
                    extra={"merchant_id": merchant_id, "error": str(error)},
                )
                return access_token, row.location_id
            raise Unavailable(Reason.SQUARE_UNAVAILABLE, "Square did not answer; retry") from None
        async with self._engine.begin() as conn:
            # Only onto the same Square account: a reconnection meanwhile has tokens of its own.
            await store_refreshed_tokens(
                conn,
                merchant_id,
                row.square_merchant_id,
                access_token=self._seal_square_token(tokens.access_token),
                refresh_token=self._seal_square_token(tokens.refresh_token),
                expires_at=tokens.expires_at,
            )
        _log.info("Square access token refreshed", extra={"merchant_id": merchant_id})
        return tokens.access_token, row.location_id

    # -- the callback's steps ------------------------------------------------------------------------

    async def _claim_oauth_state(self, state: str, user_id: str) -> str | None:
        """Spend the caller's state; the store it names (None: create or match one). OAUTH_STATE_INVALID when
        it is unknown, expired, already spent or someone else's (theirs stays unspent)."""
        async with self._engine.begin() as conn:
            claimed = await spend_oauth_state(conn, state, user_id)
        if claimed is None:
            raise _state_invalid()
        merchant_id: str | None = claimed.merchant_id
        return merchant_id

    async def _exchange_square_code(self, code: str, state: str, user_id: str) -> SquareTokens:
        try:
            return await self._square.exchange_code(code)
        except SquareUnavailable:
            # Nothing was stored: the same redirect may be tried again while the state is unexpired.
            async with self._engine.begin() as conn:
                await unspend_oauth_state(conn, state, user_id)
            raise _square_unavailable() from None
        except SquareError as error:
            raise FailedPrecondition(
                Reason.OAUTH_DENIED,
                "Square refused the authorization code; connect again",
                {"square_code": error.code or ""},
            ) from None

    async def _square_main_location(self, tokens: SquareTokens) -> SquareLocation:
        try:
            location = await self._square.main_location(tokens.access_token)
        except SquareAuthError as error:
            raise FailedPrecondition(
                Reason.OAUTH_DENIED,
                "Square did not grant the access Nerava needs; connect again and allow every permission",
                {"square_code": error.code or ""},
            ) from None
        except SquareError:
            raise _square_unavailable() from None
        if location is None:
            raise FailedPrecondition(
                Reason.SQUARE_NO_LOCATION,
                "the Square account has no active location; add one in Square, then connect again",
                {"square_merchant_id": tokens.square_merchant_id},
            )
        return location

    async def _link_square_account(
        self,
        conn: AsyncConnection,
        caller: Caller,
        *,
        state_merchant_id: str | None,
        tokens: SquareTokens,
        location: SquareLocation,
        aov: int | None,
        perk: int,
    ) -> Any:
        """Store the connection on the right store (see the module docstring); the store after the change."""
        user_id = _user_id(caller)
        square_merchant_id = tokens.square_merchant_id
        # One callback at a time per Square account, so two cannot both create a store for it.
        await lock_square_account(conn, square_merchant_id)
        connected_to = await store_connected_to(conn, square_merchant_id)
        # Both stores involved are locked, in id order, so two callbacks moving accounts between them cannot
        # deadlock.
        ids = sorted({merchant_id for merchant_id in (connected_to, state_merchant_id) if merchant_id is not None})
        locked = {row.id: row for row in await lock_stores(conn, ids)}
        current = locked.get(connected_to) if connected_to is not None else None
        if current is not None and not manages(current, caller, write=True):
            raise _account_taken()
        if state_merchant_id is not None:
            # Checked again: the store may have changed hands since ConnectSquare.
            target = locked.get(state_merchant_id)
            if not manages(target, caller, write=True):
                raise merchant_not_found(state_merchant_id)
        else:
            target = current
        if target is None:
            row = await self._create_square_store(conn, user_id, location, aov, perk)
        else:
            row = await refresh_square_store(conn, target.id, perk, aov, _place_changes(target, location))
        # The store's previous Square account, if another one, is disconnected; this one moves here.
        await disconnect_other_accounts(conn, row.id, square_merchant_id)
        await upsert_square_connection(
            conn,
            merchant_id=row.id,
            square_merchant_id=square_merchant_id,
            location_id=location.id,
            access_token=self._seal_square_token(tokens.access_token),
            refresh_token=self._seal_square_token(tokens.refresh_token),
            expires_at=tokens.expires_at,
            connected_by_user_id=user_id,
        )
        return row

    async def _create_square_store(
        self, conn: AsyncConnection, user_id: str, location: SquareLocation, aov: int | None, perk: int
    ) -> Any:
        """A PENDING store of the caller's at the Square location, with a short code and a QR token as
        CreateMerchant gives them."""
        name = location.name or UNNAMED_STORE
        located = location.lat is not None and location.lng is not None
        values: dict[str, Any] = {
            "name": name,
            "lat": location.lat if located else 0.0,
            "lng": location.lng if located else 0.0,
            "address": location.address,
            "time_zone": _time_zone(location.timezone) or UNSET_TIME_ZONE,
            "recommended_perk_cents": perk,
            "average_order_value_cents": aov,
            "status": pb.MERCHANT_STATUS_PENDING,
            "owner_user_id": user_id,
        }
        return await insert_merchant(conn, {"id": new_merchant_id(), "qr_token": new_qr_token(), **values})

    # -- tokens at rest ----------------------------------------------------------------------------------

    def _seal_square_token(self, token: str) -> bytes:
        return self.token_cipher.encrypt(token.encode())

    def _open_square_token(self, sealed: bytes) -> str:
        return self.token_cipher.decrypt(bytes(sealed)).decode()
