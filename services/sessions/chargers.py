"""The chargers catalog: search by text and position, the nearest charger to a point, and bulk import.

Distances are true great-circle distances (haversine on a sphere of radius 6 371 000 m), never a bounding box
alone (🐞 the original matched "within 500 m" by a box, up to ~707 m on the diagonal). A position search takes
the chargers inside the bounding box of its circle from the GiST index on `geo_point` (which includes the id,
so this is an index-only scan), keeps those whose great-circle distance is within the radius
(`great_circle_m`, an SQL function of migration 0002 that computes exactly what :func:`great_circle_m` computes
here), and reads the table only for the page it answers. The statements are built once per shape and
prepared by asyncpg.

Every function takes an AsyncEngine or an AsyncConnection: the poll's state machine matches a charger inside
its own transaction, the API reads on the engine.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import functools
import json
import logging
import math
from collections.abc import AsyncIterator, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from services.common import audit
from services.common.errors import NotFound
from services.common.flags import PLACES_GEOCODING, Flags
from services.sessions.adapters.places import GeocoderError, Place, PlacesGeocoder
from services.sessions.reasons import Reason
from services.sessions.store import chargers

log = logging.getLogger(__name__)

EARTH_RADIUS_M = 6_371_000.0
SOURCES = ("nrel", "osm", "manual")
# Ids of imported NREL and OSM stations are "<source>-<external id>"; a manual record's id is its external
# id, which therefore may not start with one of these (ids stay unique across sources).
SOURCE_PREFIXES = ("nrel-", "osm-")
# Slack added to each side of a bounding box, degrees (~1 cm): float rounding must never drop a charger
# that is within the radius by the exact distance.
_BOX_SLACK_DEG = 1e-7

_COLUMNS = (
    chargers.c.id,
    chargers.c.source,
    chargers.c.external_id,
    chargers.c.name,
    chargers.c.lat,
    chargers.c.lng,
    chargers.c.network_name,
    chargers.c.power_kw,
    chargers.c.num_evse,
    chargers.c.connector_types,
    chargers.c.pricing_per_kwh_cents,
    chargers.c.address,
    chargers.c.city,
    chargers.c.state,
    chargers.c.zone_id,
    chargers.c.status,
)

ConnOrEngine = AsyncConnection | AsyncEngine


@dataclasses.dataclass(frozen=True)
class ChargerRow:
    """One charger of the catalog; `distance_m` is its great-circle distance from the query's point, if any."""

    id: str
    source: str
    external_id: str
    name: str
    lat: float
    lng: float
    network_name: str = ""
    power_kw: float | None = None
    num_evse: int | None = None
    connector_types: tuple[str, ...] = ()
    pricing_per_kwh_cents: int | None = None
    address: str = ""
    city: str = ""
    state: str = ""
    zone_id: str = ""
    status: str = "unknown"
    distance_m: float | None = None

    @classmethod
    def from_row(cls, row: sa.RowMapping) -> ChargerRow:
        values = {field.name: row[field.name] for field in dataclasses.fields(cls) if field.name in row}
        values["connector_types"] = tuple(row["connector_types"] or ())
        return cls(**values)


@dataclasses.dataclass(frozen=True)
class ImportCounts:
    created: int
    updated: int
    unchanged: int


@dataclasses.dataclass(frozen=True)
class Box:
    """A longitude/latitude rectangle, degrees, west ≤ east (never crossing the antimeridian)."""

    west: float
    south: float
    east: float
    north: float


# --- geometry ------------------------------------------------------------------------------------------------


def great_circle_m(lat1: float, lng1: float, lat2: float, lng2: float) -> float:
    """Great-circle distance in metres between two points in degrees (haversine, spherical Earth)."""
    a = (
        math.sin(math.radians(lat2 - lat1) / 2) ** 2
        + math.cos(math.radians(lat1)) * math.cos(math.radians(lat2)) * math.sin(math.radians(lng2 - lng1) / 2) ** 2
    )
    return 2 * EARTH_RADIUS_M * math.asin(min(1.0, math.sqrt(a)))


def bounding_boxes(lat: float, lng: float, radius_m: float) -> list[Box]:
    """Boxes that together contain every point within `radius_m` (great-circle) of (lat, lng): one box, or two
    when the circle crosses the antimeridian; all longitudes when it contains a pole."""
    delta = radius_m / EARTH_RADIUS_M  # angular radius, radians
    dlat = math.degrees(delta) + _BOX_SLACK_DEG
    south, north = lat - dlat, lat + dlat
    if delta >= math.pi / 2 or south <= -90 or north >= 90:
        return [Box(-180.0, max(south, -90.0), 180.0, min(north, 90.0))]
    # The widest longitude of a spherical cap that does not contain a pole.
    spread = math.sin(delta) / math.cos(math.radians(lat))
    dlng = (math.degrees(math.asin(spread)) if spread < 1 else 180.0) + _BOX_SLACK_DEG
    west, east = lng - dlng, lng + dlng
    if dlng >= 180:
        return [Box(-180.0, south, 180.0, north)]
    if west < -180:
        return [Box(west + 360, south, 180.0, north), Box(-180.0, south, east, north)]
    if east > 180:
        return [Box(west, south, 180.0, north), Box(-180.0, south, east - 360, north)]
    return [Box(west, south, east, north)]


# --- reads ---------------------------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def _connected(conn_or_engine: ConnOrEngine, *, write: bool = False) -> AsyncIterator[AsyncConnection]:
    """The caller's connection as it is (its transaction is the caller's), or one from the engine."""
    if isinstance(conn_or_engine, AsyncConnection):
        yield conn_or_engine
    elif write:
        async with conn_or_engine.begin() as conn:
            yield conn
    else:
        async with conn_or_engine.connect() as conn:
            yield conn


# A point's coordinates as the index holds them: geo_point is point(lng, lat).
_INDEXED_DISTANCE = "great_circle_m(:lat, :lng, geo_point[1], geo_point[0])"
_CHARGER_COLUMNS = ", ".join(f"charger.{column.name}" for column in _COLUMNS)


@functools.cache
def _near_statement(boxes: int, text: bool) -> sa.TextClause:
    """Chargers within :radius of (:lat, :lng), nearest first, as one statement: the ids and distances come
    from the GiST index alone (geo_point INCLUDE id: an index-only scan, no table page read per candidate),
    then only the page's rows are read. With a text query the candidates are also matched against `search`."""
    in_boxes = " OR ".join(f"geo_point <@ box(point(:w{i}, :s{i}), point(:e{i}, :n{i}))" for i in range(boxes))
    return sa.text(
        f"""
        SELECT {_CHARGER_COLUMNS}, near.distance_m
          FROM (SELECT id, {_INDEXED_DISTANCE} AS distance_m
                  FROM chargers
                 WHERE ({in_boxes})
                   AND {_INDEXED_DISTANCE} <= :radius
                   {"AND search @@ charger_prefix_query(:q)" if text else ""}
                 ORDER BY distance_m, id
                 LIMIT :limit OFFSET :offset) AS near
          JOIN chargers AS charger ON charger.id = near.id
         ORDER BY near.distance_m, charger.id
        """
    )


_TEXT_STATEMENT = sa.text(
    f"""
    SELECT {_CHARGER_COLUMNS}
      FROM chargers AS charger
     WHERE charger.search @@ charger_prefix_query(:q)
     ORDER BY charger.name, charger.id
     LIMIT :limit OFFSET :offset
    """
)


def _near_parameters(lat: float, lng: float, radius_m: float) -> tuple[int, dict[str, Any]]:
    boxes = bounding_boxes(lat, lng, radius_m)
    parameters: dict[str, Any] = {"lat": float(lat), "lng": float(lng), "radius": float(radius_m)}
    for i, box in enumerate(boxes):
        parameters |= {f"w{i}": box.west, f"s{i}": box.south, f"e{i}": box.east, f"n{i}": box.north}
    return len(boxes), parameters


def search_statement(
    *, text: str, near: tuple[float, float] | None, radius_m: float, limit: int, offset: int = 0
) -> tuple[sa.TextClause, dict[str, Any]]:
    """The statement and parameters of a search: chargers matching `text` (ignored when blank) and, with `near`,
    within `radius_m` of it, nearest first; without a point, by name. At least one of the two is needed."""
    parameters: dict[str, Any] = {"limit": limit, "offset": offset}
    has_text = bool(text.strip())
    if has_text:
        parameters["q"] = text
    if near is not None:
        boxes, geo = _near_parameters(near[0], near[1], radius_m)
        return _near_statement(boxes, has_text), parameters | geo
    if not has_text:
        raise ValueError("a search needs a text or a point")
    return _TEXT_STATEMENT, parameters


async def search_chargers(
    conn_or_engine: ConnOrEngine,
    *,
    text: str = "",
    near: tuple[float, float] | None = None,
    radius_m: float = 25_000,
    limit: int = 20,
    offset: int = 0,
) -> list[ChargerRow]:
    statement, parameters = search_statement(text=text, near=near, radius_m=radius_m, limit=limit, offset=offset)
    async with _connected(conn_or_engine) as conn:
        rows = (await conn.execute(statement, parameters)).mappings().all()
    return [ChargerRow.from_row(row) for row in rows]


@dataclasses.dataclass(frozen=True)
class SearchResult:
    """A page of a driver's search (`limit` rows asked, so one more than the page says there is another) and the
    place its text named, if it was geocoded."""

    chargers: list[ChargerRow]
    place: Place | None


class ChargerSearch:
    """The driver's charger search: a text that names a place ("Austin airport", geocoded by Google Places when the
    flag and a geocoder allow) searches around that place; any other text matches charger names and addresses."""

    def __init__(self, reads: AsyncEngine, flags: Flags, geocoder: PlacesGeocoder | None = None) -> None:
        self._reads = reads
        self._flags = flags
        self._geocoder = geocoder

    async def search(
        self, text: str, near: tuple[float, float] | None, *, radius_m: float, limit: int, offset: int
    ) -> SearchResult:
        place = await self._geocode(text, near)
        if place is not None:
            # A place the text names: the chargers around it, nearest first.
            text, near = "", (place.lat, place.lng)
        found = await search_chargers(self._reads, text=text, near=near, radius_m=radius_m, limit=limit, offset=offset)
        return SearchResult(found, place)

    async def _geocode(self, text: str, near: tuple[float, float] | None) -> Place | None:
        """The place a search text names (biased towards the driver's position), or None: no text, no geocoder,
        no such place, or Google not answering — the search then matches charger names and addresses."""
        if self._geocoder is None or not text.strip() or not await self._flags.enabled(PLACES_GEOCODING):
            return None
        try:
            return await self._geocoder.locate(text, near=near)
        except GeocoderError as error:
            log.warning("charger search without geocoding: %s", error, extra={"retryable": error.retryable})
            return None


def nearest_statement(lat: float, lng: float, within_m: float) -> tuple[sa.TextClause, dict[str, Any]]:
    return search_statement(text="", near=(lat, lng), radius_m=within_m, limit=1)


# Radii tried in turn by a wide nearest-charger search: in a city the first finds one among a few candidates,
# instead of computing the distance of every charger in a 25 km box. Correct at each step: a charger found
# within r is nearer than any charger outside r.
_NEAREST_STEPS_M = (1_000.0, 5_000.0)


async def nearest_charger(
    conn_or_engine: ConnOrEngine, lat: float, lng: float, within_m: float = 500.0
) -> ChargerRow | None:
    """The charger nearest to (lat, lng) by great-circle distance, if one is within `within_m` metres (a
    charger exactly at `within_m` counts); ties go to the smaller id."""
    radii = [r for r in _NEAREST_STEPS_M if r < within_m] + [within_m]
    async with _connected(conn_or_engine) as conn:
        for radius in radii:
            statement, parameters = nearest_statement(lat, lng, radius)
            row = (await conn.execute(statement, parameters)).mappings().first()
            if row is not None:
                return ChargerRow.from_row(row)
    return None


async def get_charger(conn_or_engine: ConnOrEngine, charger_id: str) -> ChargerRow | None:
    async with _connected(conn_or_engine) as conn:
        row = (await conn.execute(sa.select(*_COLUMNS).where(chargers.c.id == charger_id))).mappings().first()
    return None if row is None else ChargerRow.from_row(row)


@dataclasses.dataclass(frozen=True)
class ChargerActivity:
    """A charger's recent sessions, as its detail sheet shows them."""

    ended_sessions: int = 0  # sessions that ended in the window
    unique_drivers: int = 0  # drivers with a session in the window (ended in it, or still active)
    avg_duration_min: float = 0.0  # mean duration of the ended ones; 0 without
    drivers_charging_now: int = 0  # drivers with an active session matched to the charger
    mean_quality_score: int | None = None  # of the ended ones that have a score; None without


ACTIVITY_WINDOW = datetime.timedelta(days=30)

_ACTIVITY = sa.text(
    """
    SELECT count(*) FILTER (WHERE session_end IS NOT NULL) AS ended_sessions,
           count(DISTINCT driver_id) AS unique_drivers,
           coalesce(avg(duration_minutes) FILTER (WHERE session_end IS NOT NULL), 0) AS avg_duration_min,
           count(DISTINCT driver_id) FILTER (WHERE session_end IS NULL) AS drivers_charging_now,
           avg(quality_score) FILTER (WHERE session_end IS NOT NULL) AS mean_quality_score
      FROM charging_sessions
     WHERE charger_id = :charger_id AND (session_end IS NULL OR session_end >= :since)
    """
)


async def charger_activity(
    conn_or_engine: ConnOrEngine, charger_id: str, now: datetime.datetime, window: datetime.timedelta = ACTIVITY_WINDOW
) -> ChargerActivity:
    """The charger's charging sessions of the `window` before `now`."""
    async with _connected(conn_or_engine) as conn:
        row = (await conn.execute(_ACTIVITY, {"charger_id": charger_id, "since": now - window})).one()
    return ChargerActivity(
        ended_sessions=int(row.ended_sessions),
        unique_drivers=int(row.unique_drivers),
        avg_duration_min=round(float(row.avg_duration_min), 1),
        drivers_charging_now=int(row.drivers_charging_now),
        mean_quality_score=None if row.mean_quality_score is None else round(float(row.mean_quality_score)),
    )


DRIVE_SPEED_M_PER_MIN = 40_000 / 60  # the detail sheet's rough drive time: 40 km/h


@dataclasses.dataclass(frozen=True)
class ChargerDetail:
    """A charger's detail sheet: the record, its recent sessions, and how far it is from the driver (when the
    driver's position is known)."""

    charger: ChargerRow
    activity: ChargerActivity
    distance_m: float | None = None
    drive_time_min: int | None = None


async def charger_detail(
    conn_or_engine: ConnOrEngine, charger_id: str, now: datetime.datetime, near: tuple[float, float] | None
) -> ChargerDetail:
    """Raises CHARGER_NOT_FOUND for an id the catalog does not hold."""
    row = await get_charger(conn_or_engine, charger_id)
    if row is None:
        raise NotFound(Reason.CHARGER_NOT_FOUND, "no charger with that id", {"charger_id": charger_id})
    activity = await charger_activity(conn_or_engine, row.id, now)
    if near is None:
        return ChargerDetail(row, activity)
    distance = great_circle_m(near[0], near[1], row.lat, row.lng)
    return ChargerDetail(row, activity, round(distance, 1), math.ceil(distance / DRIVE_SPEED_M_PER_MIN))


# --- the console: browse and utilization ---------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Utilization:
    """Sessions started at a charger in a window."""

    total_sessions: int = 0
    unique_drivers: int = 0
    avg_duration_min: float = 0.0  # of those that ended; 0 without


async def utilization(
    conn_or_engine: ConnOrEngine, charger_ids: Sequence[str], since: datetime.datetime
) -> dict[str, Utilization]:
    """Per charger id (those without sessions left out): the sessions that started there since `since`."""
    if not charger_ids:
        return {}
    query = sa.text(
        """
        SELECT charger_id,
               count(*) AS total_sessions,
               count(DISTINCT driver_id) AS unique_drivers,
               coalesce(avg(duration_minutes) FILTER (WHERE session_end IS NOT NULL), 0) AS avg_duration_min
          FROM charging_sessions
         WHERE charger_id = ANY(:ids) AND session_start >= :since
         GROUP BY charger_id
        """
    )
    async with _connected(conn_or_engine) as conn:
        rows = (await conn.execute(query, {"ids": list(charger_ids), "since": since})).all()
    return {
        row.charger_id: Utilization(
            int(row.total_sessions), int(row.unique_drivers), round(float(row.avg_duration_min), 1)
        )
        for row in rows
    }


@dataclasses.dataclass(frozen=True)
class SessionsSummary:
    """Sessions started at a set of chargers in a window, taken together."""

    total_sessions: int
    unique_drivers: int
    avg_duration_min: float | None  # of those that ended; None without
    avg_kwh: float | None  # of those with a reading; None without
    hours: list[tuple[int, int]]  # (local hour, sessions), busiest first


async def summarize_sessions(
    conn_or_engine: ConnOrEngine, charger_ids: Sequence[str], since: datetime.datetime, time_zone: str
) -> SessionsSummary:
    """What merchants' insights show of the chargers by a store; hours of day counted in `time_zone`."""
    totals = sa.text(
        """
        SELECT count(*) AS total_sessions,
               count(DISTINCT driver_id) AS unique_drivers,
               avg(duration_minutes) FILTER (WHERE session_end IS NOT NULL) AS avg_duration_min,
               avg(kwh_delivered) AS avg_kwh
          FROM charging_sessions
         WHERE charger_id = ANY(:ids) AND session_start >= :since
        """
    )
    hours = sa.text(
        """
        SELECT extract(hour FROM session_start AT TIME ZONE :zone)::int AS hour, count(*) AS sessions
          FROM charging_sessions
         WHERE charger_id = ANY(:ids) AND session_start >= :since
         GROUP BY 1
         ORDER BY 2 DESC, 1
        """
    )
    parameters = {"ids": list(charger_ids), "since": since, "zone": time_zone}
    async with _connected(conn_or_engine) as conn:
        row = (await conn.execute(totals, parameters)).one()
        by_hour = [(int(r.hour), int(r.sessions)) for r in await conn.execute(hours, parameters)]
    return SessionsSummary(
        total_sessions=int(row.total_sessions),
        unique_drivers=int(row.unique_drivers),
        avg_duration_min=None if row.avg_duration_min is None else round(float(row.avg_duration_min), 1),
        avg_kwh=None if row.avg_kwh is None else round(float(row.avg_kwh), 1),
        hours=by_hour,
    )


async def browse_chargers(
    conn_or_engine: ConnOrEngine, *, search: str, network: str, state: str, limit: int, offset: int
) -> tuple[list[ChargerRow], int]:
    """A page of the catalog by name (then id) matching every filter, and the count of all matches."""
    where: list[Any] = []
    if search.strip():
        where.append(
            chargers.c.search.op("@@")(sa.func.plainto_tsquery(sa.literal_column("'simple'::regconfig"), search))
        )
    if network.strip():
        where.append(sa.func.lower(chargers.c.network_name) == network.strip().lower())
    if state.strip():
        where.append(sa.func.upper(chargers.c.state) == state.strip().upper())
    async with _connected(conn_or_engine) as conn:
        total = (await conn.execute(sa.select(sa.func.count()).select_from(chargers).where(*where))).scalar_one()
        page = (
            await conn.execute(
                sa.select(*_COLUMNS).where(*where).order_by(chargers.c.name, chargers.c.id).offset(offset).limit(limit)
            )
        ).mappings()
        return [ChargerRow.from_row(row) for row in page], int(total)


@dataclasses.dataclass(frozen=True)
class BrowsedCharger:
    """One charger of the console's explorer with the sessions started there in the window."""

    charger: ChargerRow
    use: Utilization


async def browse(
    conn_or_engine: ConnOrEngine,
    *,
    search: str,
    network: str,
    state: str,
    limit: int,
    offset: int,
    since: datetime.datetime,
) -> tuple[list[BrowsedCharger], int]:
    """The console's charger explorer: a page of the catalog (browse_chargers) with each charger's utilization
    since `since`, and the count of all matches."""
    rows, total = await browse_chargers(
        conn_or_engine, search=search, network=network, state=state, limit=limit, offset=offset
    )
    use = await utilization(conn_or_engine, [row.id for row in rows], since)
    return [BrowsedCharger(row, use.get(row.id, Utilization())) for row in rows], total


# --- import --------------------------------------------------------------------------------------------------


def charger_id(source: str, external_id: str) -> str:
    """The catalog id of a record: "<source>-<external id>" for NREL and OSM, the external id for manual."""
    return external_id if source == "manual" else f"{source}-{external_id}"


@dataclasses.dataclass(frozen=True)
class ChargerRecord:
    """One charger as an import brings it; None where the source does not know the figure."""

    external_id: str
    name: str
    lat: float
    lng: float
    network_name: str = ""
    power_kw: float | None = None
    num_evse: int | None = None
    connector_types: tuple[str, ...] = ()
    pricing_per_kwh_cents: int | None = None
    address: str = ""
    city: str = ""
    state: str = ""
    zone_id: str = ""


def _record_json(source: str, record: ChargerRecord) -> dict[str, Any]:
    return dataclasses.asdict(record) | {
        "id": charger_id(source, record.external_id),
        "connector_types": list(record.connector_types),
    }


# The columns a record sets; status, created_at and the derived columns are the catalog's own.
_RECORD_COLUMNS = (
    "name",
    "lat",
    "lng",
    "network_name",
    "power_kw",
    "num_evse",
    "connector_types",
    "pricing_per_kwh_cents",
    "address",
    "city",
    "state",
    "zone_id",
)

# One statement: the records as a recordset, inserted in external-id order (concurrent imports lock rows in
# the same order), an existing charger updated only when a value differs. `xmax = 0` tells a row this
# statement inserted from one it updated; rows left unchanged are not returned at all.
_UPSERT = sa.text(
    f"""
    WITH input AS (
        SELECT * FROM jsonb_to_recordset(CAST(:records AS jsonb)) AS incoming(
            id text, external_id text, name text, lat float8, lng float8, network_name text, power_kw float8,
            num_evse int, connector_types text[], pricing_per_kwh_cents int, address text, city text, state text,
            zone_id text)
    ), written AS (
        INSERT INTO chargers AS charger (id, source, external_id, {", ".join(_RECORD_COLUMNS)})
        SELECT id, CAST(:source AS text), external_id, {", ".join(_RECORD_COLUMNS)} FROM input ORDER BY external_id
        ON CONFLICT (source, external_id) DO UPDATE
           SET {", ".join(f"{column} = excluded.{column}" for column in _RECORD_COLUMNS)}, updated_at = now()
         WHERE ({", ".join(f"charger.{column}" for column in _RECORD_COLUMNS)})
               IS DISTINCT FROM ({", ".join(f"excluded.{column}" for column in _RECORD_COLUMNS)})
        RETURNING charger.xmax = 0 AS created
    )
    SELECT count(*) FILTER (WHERE created) AS created, count(*) FILTER (WHERE NOT created) AS updated
      FROM written
    """
)


async def import_chargers(conn_or_engine: ConnOrEngine, source: str, records: Sequence[ChargerRecord]) -> ImportCounts:
    """Upserts the records, keyed by (source, external_id); a repeat changes nothing. The records are valid
    (the contract's rules) and their external ids unique; a manual id must not start with a source prefix.
    With an engine the import is its own transaction; with a connection it joins the caller's."""
    if source not in SOURCES:
        raise ValueError(f"unknown source {source!r}")
    if not records:
        return ImportCounts(0, 0, 0)
    payload = json.dumps([_record_json(source, record) for record in records])
    async with _connected(conn_or_engine, write=True) as conn:
        row = (await conn.execute(_UPSERT, {"records": payload, "source": source})).one()
    created, updated = int(row.created), int(row.updated)
    return ImportCounts(created=created, updated=updated, unchanged=len(records) - created - updated)


async def import_audited(engine: AsyncEngine, source: str, records: Sequence[ChargerRecord]) -> ImportCounts:
    """An admin's import: the upsert and its audit entry in one transaction."""
    async with engine.begin() as conn:
        counts = await import_chargers(conn, source, records)
        await audit.record(conn, "chargers.import", f"source:{source}", created=counts.created, updated=counts.updated)
    return counts
