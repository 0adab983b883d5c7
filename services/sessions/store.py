"""Tables of the sessions schema (created by migrations/versions). The outbox is here from the start because
every cross-service effect of this service goes through it; the chargers catalog is the second table."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg

from services.common.outbox import outbox_table

metadata = sa.MetaData()
outbox = outbox_table(metadata)


class Point(sa.types.UserDefinedType[Any]):
    """PostgreSQL's geometric `point` (x = longitude, y = latitude here). Only ever written by the database."""

    cache_ok = True

    def get_col_spec(self, **kw: Any) -> str:
        return "POINT"


chargers = sa.Table(
    "chargers",
    metadata,
    sa.Column("id", sa.Text, primary_key=True),
    sa.Column("source", sa.Text, nullable=False),
    sa.Column("external_id", sa.Text, nullable=False),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("lat", sa.Float(53), nullable=False),
    sa.Column("lng", sa.Float(53), nullable=False),
    sa.Column("network_name", sa.Text, nullable=False, server_default=""),
    sa.Column("power_kw", sa.Float(53)),
    sa.Column("num_evse", sa.Integer),
    sa.Column("connector_types", pg.ARRAY(sa.Text), nullable=False, server_default="{}"),
    sa.Column("pricing_per_kwh_cents", sa.Integer),
    sa.Column("address", sa.Text, nullable=False, server_default=""),
    sa.Column("city", sa.Text, nullable=False, server_default=""),
    sa.Column("state", sa.Text, nullable=False, server_default=""),
    sa.Column("zone_id", sa.Text, nullable=False, server_default=""),
    sa.Column("status", sa.Text, nullable=False, server_default="unknown"),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    sa.Column("geo_point", Point, sa.Computed("point(lng, lat)", persisted=True), nullable=False),
    sa.Column(
        "search",
        pg.TSVECTOR,
        sa.Computed(
            "to_tsvector('simple'::regconfig, name || ' ' || network_name || ' ' || address || ' ' || city)",
            persisted=True,
        ),
        nullable=False,
    ),
    sa.UniqueConstraint("source", "external_id", name="chargers_source_external_id_unique"),
)
