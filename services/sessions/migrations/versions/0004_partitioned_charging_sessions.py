"""sessions: charging_sessions partitioned by month of session_start, its active-session table, its archive

Revision ID: 0004
Revises: 0003

Layout after this revision (all in the service's schema):

- `charging_sessions` is a declarative partitioned table, RANGE (session_start), one partition per calendar
  month in UTC named `charging_sessions_pYYYYMM`, plus `charging_sessions_default` for a reading stamped
  outside every monthly partition: an insert never fails for want of a partition.
  `charging_sessions_ensure_partitions(at, months_ahead)` creates the partitions of the month before `at`,
  its month and the `months_ahead` next ones (the migration calls it, the worker keeps calling it);
  `charging_sessions_create_month(t)` creates the partition of t's month, moving any rows of that month out of
  the default partition first, so creating a partition never fails either. New partitions are built outside the
  table and ATTACHed, which locks the parent only in SHARE UPDATE EXCLUSIVE mode (CREATE TABLE … PARTITION OF
  would take ACCESS EXCLUSIVE and stop every reader for the moment).
- The primary key is (id, session_start): a unique index on a partitioned table must contain the partition key.
  Its per-partition index leads with id, so a lookup by id alone is one index probe per partition, and the
  service's own updates name session_start as well, which prunes them to one partition. Ids are still unique:
  they are random UUIDs (122 bits) made by the service, and session_start never changes.
- One active session per driver and vehicle can no longer be a partial unique index (it would have to contain
  session_start, i.e. only forbid two active sessions starting at the same instant). It is now the primary key
  of the small, unpartitioned `charging_sessions_active` (driver_id, vehicle_id) → (session_id,
  session_start), kept by triggers on charging_sessions in the same transaction as the change: a second active
  session of a driver and vehicle fails with a unique violation of `charging_sessions_one_active`, exactly as
  the index did, whatever the path or the replica, and concurrent opens wait for each other on that key. Its
  foreign key to charging_sessions (ON UPDATE CASCADE, ON DELETE CASCADE) means a marker never outlives nor
  loses its session, and that a partition still holding an active session cannot be detached.
- `charging_sessions_archive`: where the retention job (services/sessions/retention.py) copies the rows of an
  expired partition before dropping it.

Existing rows are copied into the new table (their months' partitions created first). That holds an ACCESS
EXCLUSIVE lock on the table for the copy: fine at the table's size today; a far bigger table would be moved
month by month instead. The downgrade puts every row back into one plain table, archived ones included.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql as pg

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

COLUMNS = (
    "id, driver_id, vehicle_id, source, session_start, session_end, duration_minutes, charger_id, charger_name, "
    "charger_network, zone_id, connector_type, power_kw, max_power_kw, kwh_delivered, verified, lat, lng, "
    "battery_start_pct, battery_end_pct, quality_score, ended_reason, location_trail, last_telemetry_at, "
    "end_sequence, created_at, updated_at"
)
MONTHS_AHEAD = 3  # the worker keeps its own (configured) number of months ahead


def _columns() -> list[sa.Column[object]]:
    """charging_sessions' columns as revision 0003 made them (same order: the copies below rely on it)."""
    return [
        sa.Column("id", pg.UUID(as_uuid=True), nullable=False),
        sa.Column("driver_id", sa.Text, nullable=False),
        sa.Column("vehicle_id", sa.Text, nullable=False),
        sa.Column("source", sa.SmallInteger, nullable=False),
        sa.Column("session_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("session_end", sa.DateTime(timezone=True)),
        sa.Column("duration_minutes", sa.Integer),
        sa.Column("charger_id", sa.Text, nullable=False, server_default=""),
        sa.Column("charger_name", sa.Text, nullable=False, server_default=""),
        sa.Column("charger_network", sa.Text, nullable=False, server_default=""),
        sa.Column("zone_id", sa.Text, nullable=False, server_default=""),
        sa.Column("connector_type", sa.Text, nullable=False, server_default=""),
        sa.Column("power_kw", sa.Float),
        sa.Column("max_power_kw", sa.Float),
        sa.Column("kwh_delivered", sa.Float),
        sa.Column("verified", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("lat", sa.Float),
        sa.Column("lng", sa.Float),
        sa.Column("battery_start_pct", sa.SmallInteger),
        sa.Column("battery_end_pct", sa.SmallInteger),
        sa.Column("quality_score", sa.SmallInteger),
        sa.Column("ended_reason", sa.SmallInteger),
        sa.Column("location_trail", pg.JSONB, nullable=False, server_default=sa.text("'[]'::jsonb")),
        sa.Column("last_telemetry_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("end_sequence", sa.Integer, nullable=False, server_default="0"),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    ]


def _checks() -> list[sa.CheckConstraint]:
    return [
        sa.CheckConstraint(
            "session_end IS NULL OR session_end >= session_start", name="charging_sessions_end_after_start"
        ),
        sa.CheckConstraint(
            "(session_end IS NULL) = (ended_reason IS NULL)", name="charging_sessions_ended_with_reason"
        ),
    ]


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _schema() -> str:
    schema: str = op.get_bind().execute(sa.text("SELECT current_schema()")).scalar_one()
    return schema


def _functions(schema: str) -> list[str]:
    """The trigger and partition functions. The schema is written into them (not looked up through search_path),
    so they work from any connection: psql, a Job, the service."""
    s, s_lit = _ident(schema), _literal(schema)
    lock_key = _literal(f"{schema}.charging_sessions:partitions")
    return [
        f"""
        CREATE FUNCTION {s}.charging_sessions_track_active() RETURNS trigger LANGUAGE plpgsql AS $fn$
        BEGIN
            IF TG_OP = 'UPDATE' AND OLD.session_end IS NULL THEN
                DELETE FROM {s}.charging_sessions_active WHERE session_id IN (OLD.id, NEW.id);
            ELSIF TG_OP = 'INSERT' AND NEW.session_end IS NULL THEN
                -- An update of session_start that moves an active session to another partition arrives here as an
                -- insert, while the foreign key's ON UPDATE CASCADE carries its marker along: the marker of this
                -- session is replaced, never doubled.
                DELETE FROM {s}.charging_sessions_active WHERE session_id = NEW.id;
            END IF;
            IF NEW.session_end IS NULL THEN
                -- A second active session of the driver and vehicle: unique violation of charging_sessions_one_active.
                INSERT INTO {s}.charging_sessions_active (driver_id, vehicle_id, session_id, session_start)
                VALUES (NEW.driver_id, NEW.vehicle_id, NEW.id, NEW.session_start);
            END IF;
            RETURN NULL;
        END
        $fn$
        """,
        f"""
        CREATE FUNCTION {s}.charging_sessions_create_month(t timestamptz) RETURNS text LANGUAGE plpgsql AS $fn$
        DECLARE
            month timestamp := date_trunc('month', t AT TIME ZONE 'UTC');
            lo text := to_char(month, 'YYYY-MM-DD') || ' 00:00:00+00';
            hi text := to_char(month + interval '1 month', 'YYYY-MM-DD') || ' 00:00:00+00';
            part text := 'charging_sessions_p' || to_char(month, 'YYYYMM');
            moved bigint;
        BEGIN
            PERFORM pg_advisory_xact_lock(hashtextextended({lock_key}, 0));
            IF to_regclass(format('%I.%I', {s_lit}, part)) IS NOT NULL THEN
                RETURN NULL;
            END IF;
            EXECUTE format('CREATE TABLE %I.%I (LIKE %I.charging_sessions INCLUDING DEFAULTS INCLUDING CONSTRAINTS)',
                           {s_lit}, part, {s_lit});
            -- Lets ATTACH skip its scan of the new table.
            EXECUTE format('ALTER TABLE %I.%I ADD CONSTRAINT %I CHECK (session_start >= %L AND session_start < %L)',
                           {s_lit}, part, part || '_bounds', lo, hi);
            -- Rows of that month that went to the default partition move to their own (ATTACH would refuse otherwise).
            EXECUTE format('WITH moved AS (DELETE FROM %I.charging_sessions_default '
                           'WHERE session_start >= %L AND session_start < %L RETURNING {COLUMNS}) '
                           'INSERT INTO %I.%I ({COLUMNS}) SELECT {COLUMNS} FROM moved',
                           {s_lit}, lo, hi, {s_lit}, part);
            GET DIAGNOSTICS moved = ROW_COUNT;
            EXECUTE format('ALTER TABLE %I.charging_sessions ATTACH PARTITION %I.%I FOR VALUES FROM (%L) TO (%L)',
                           {s_lit}, {s_lit}, part, lo, hi);
            EXECUTE format('ALTER TABLE %I.%I DROP CONSTRAINT %I', {s_lit}, part, part || '_bounds');
            IF moved > 0 THEN
                -- Their active markers went with the DELETE (ON DELETE CASCADE): they come back, pointing at the
                -- same (id, session_start), in the same transaction.
                EXECUTE format('INSERT INTO %I.charging_sessions_active (driver_id, vehicle_id, session_id, session_start) '
                               'SELECT driver_id, vehicle_id, id, session_start FROM %I.%I WHERE session_end IS NULL',
                               {s_lit}, {s_lit}, part);
            END IF;
            RETURN part;
        END
        $fn$
        """,
        f"""
        CREATE FUNCTION {s}.charging_sessions_ensure_partitions(at timestamptz, months_ahead integer)
        RETURNS integer LANGUAGE plpgsql AS $fn$
        DECLARE
            month timestamp := date_trunc('month', at AT TIME ZONE 'UTC');
            created integer := 0;
        BEGIN
            FOR m IN -1..months_ahead LOOP
                IF {s}.charging_sessions_create_month((month + make_interval(months => m)) AT TIME ZONE 'UTC')
                   IS NOT NULL THEN
                    created := created + 1;
                END IF;
            END LOOP;
            RETURN created;
        END
        $fn$
        """,
    ]


def upgrade() -> None:
    schema = _schema()
    # The 0003 table steps aside; its index names are taken by the new table's.
    op.rename_table("charging_sessions", "charging_sessions_0003")
    op.execute("ALTER INDEX charging_sessions_pkey RENAME TO charging_sessions_0003_pkey")
    for index in (
        "charging_sessions_one_active",
        "charging_sessions_driver_start",
        "charging_sessions_charger_end",
        "charging_sessions_active_telemetry",
    ):
        op.drop_index(index, table_name="charging_sessions_0003")

    op.create_table(
        "charging_sessions",
        *_columns(),
        sa.PrimaryKeyConstraint("id", "session_start", name="charging_sessions_pkey"),
        *_checks(),
        postgresql_partition_by="RANGE (session_start)",
    )
    # Partitioned indexes: PostgreSQL makes (and keeps making) one per partition.
    op.create_index("charging_sessions_driver_start", "charging_sessions", ["driver_id", sa.text("session_start DESC")])
    op.create_index("charging_sessions_charger_end", "charging_sessions", ["charger_id", "session_end"])
    op.create_index(
        "charging_sessions_active_telemetry",
        "charging_sessions",
        ["last_telemetry_at"],
        postgresql_where=sa.text("session_end IS NULL"),
    )
    # The active session of a driver and vehicle, found as fast as through the former unique index (not unique:
    # charging_sessions_active says that).
    op.create_index(
        "charging_sessions_active_vehicle",
        "charging_sessions",
        ["driver_id", "vehicle_id"],
        postgresql_where=sa.text("session_end IS NULL"),
    )
    op.execute("CREATE TABLE charging_sessions_default PARTITION OF charging_sessions DEFAULT")
    # Only the default partition needs this: finding the rows of a month when its partition is created.
    op.create_index("charging_sessions_default_start", "charging_sessions_default", ["session_start"])

    op.create_table(
        "charging_sessions_active",
        sa.Column("driver_id", sa.Text, nullable=False),
        sa.Column("vehicle_id", sa.Text, nullable=False),
        sa.Column("session_id", pg.UUID(as_uuid=True), nullable=False),
        sa.Column("session_start", sa.DateTime(timezone=True), nullable=False),
        # One active session per driver and vehicle (the former partial unique index's name).
        sa.PrimaryKeyConstraint("driver_id", "vehicle_id", name="charging_sessions_one_active"),
        sa.UniqueConstraint("session_id", name="charging_sessions_active_session_unique"),
        sa.ForeignKeyConstraint(
            ["session_id", "session_start"],
            ["charging_sessions.id", "charging_sessions.session_start"],
            name="charging_sessions_active_session_fkey",
            onupdate="CASCADE",
            ondelete="CASCADE",
        ),
    )
    for statement in _functions(schema):
        op.execute(statement)
    op.execute(
        "CREATE TRIGGER charging_sessions_active_on_insert AFTER INSERT ON charging_sessions FOR EACH ROW "
        "WHEN (NEW.session_end IS NULL) EXECUTE FUNCTION charging_sessions_track_active()"
    )
    # Only updates that open, end or move an active session (a reading's update names none of these columns).
    op.execute(
        "CREATE TRIGGER charging_sessions_active_on_update "
        "AFTER UPDATE OF session_end, driver_id, vehicle_id ON charging_sessions FOR EACH ROW "
        "WHEN ((OLD.session_end IS NULL) <> (NEW.session_end IS NULL) OR (NEW.session_end IS NULL AND "
        "(OLD.driver_id, OLD.vehicle_id) IS DISTINCT FROM (NEW.driver_id, NEW.vehicle_id))) "
        "EXECUTE FUNCTION charging_sessions_track_active()"
    )

    op.create_table(
        "charging_sessions_archive",
        *_columns(),
        sa.Column("archived_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.PrimaryKeyConstraint("id", name="charging_sessions_archive_pkey"),
    )
    # A driver's completed-session count (incentives' rules) still counts the archived ones.
    op.create_index("charging_sessions_archive_driver", "charging_sessions_archive", ["driver_id"])
    # Archived trails are cold: lz4 where the server has it (pglz, the default, otherwise).
    lz4 = op.get_bind().execute(
        sa.text("SELECT 'lz4' = ANY(enumvals) FROM pg_settings WHERE name = 'default_toast_compression'")
    )
    if lz4.scalar():
        op.execute("ALTER TABLE charging_sessions_archive ALTER COLUMN location_trail SET COMPRESSION lz4")

    # The existing rows: their months' partitions first, then the copy (the trigger fills charging_sessions_active).
    op.execute(
        "SELECT charging_sessions_create_month(month) FROM "
        "(SELECT DISTINCT date_trunc('month', session_start AT TIME ZONE 'UTC') AT TIME ZONE 'UTC' AS month "
        "FROM charging_sessions_0003) AS months"
    )
    op.execute(f"SELECT charging_sessions_ensure_partitions(now(), {MONTHS_AHEAD})")
    op.execute(f"INSERT INTO charging_sessions ({COLUMNS}) SELECT {COLUMNS} FROM charging_sessions_0003")
    op.drop_table("charging_sessions_0003")


def downgrade() -> None:
    op.create_table(
        "charging_sessions_0004",
        *_columns(),
        sa.PrimaryKeyConstraint("id", name="charging_sessions_0004_pkey"),
        *_checks(),
    )
    # Every session back into one table, the archived ones included: nothing is lost by going back.
    op.execute(
        f"INSERT INTO charging_sessions_0004 ({COLUMNS}) SELECT {COLUMNS} FROM charging_sessions "
        f"UNION ALL SELECT {COLUMNS} FROM charging_sessions_archive"
    )
    op.drop_table("charging_sessions_archive")
    op.drop_table("charging_sessions_active")
    op.drop_table("charging_sessions")  # with its partitions and triggers
    op.execute("DROP FUNCTION charging_sessions_ensure_partitions(timestamptz, integer)")
    op.execute("DROP FUNCTION charging_sessions_create_month(timestamptz)")
    op.execute("DROP FUNCTION charging_sessions_track_active()")
    op.rename_table("charging_sessions_0004", "charging_sessions")
    op.execute("ALTER INDEX charging_sessions_0004_pkey RENAME TO charging_sessions_pkey")
    op.create_index(
        "charging_sessions_one_active",
        "charging_sessions",
        ["driver_id", "vehicle_id"],
        unique=True,
        postgresql_where=sa.text("session_end IS NULL"),
    )
    op.create_index("charging_sessions_driver_start", "charging_sessions", ["driver_id", sa.text("session_start DESC")])
    op.create_index("charging_sessions_charger_end", "charging_sessions", ["charger_id", "session_end"])
    op.create_index(
        "charging_sessions_active_telemetry",
        "charging_sessions",
        ["last_telemetry_at"],
        postgresql_where=sa.text("session_end IS NULL"),
    )
