"""incentives: campaigns, the grants they pay, and the evaluation of each ended charging session

Revision ID: 0002
Revises: 0001

Statuses and kinds are the proto enum numbers (smallint), as in the ledger. The invariants the service
relies on are constraints here, so that no code path can break them: spent never above budget, the
session count never above max_sessions, one live grant per charging session.
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql as pg

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


# What the candidate index holds: every column but the budget counters and the timestamps.
INDEXED_COLUMNS = (
    "sponsor_name",
    "sponsor_logo_url",
    "name",
    "description",
    "campaign_type",
    "status",
    "priority",
    "reward_kind",
    "cost_per_session_cents",
    "budget_cents",
    "max_sessions",
    "start_date",
    "end_date",
    "time_zone",
    "rules",
    "cap_per_day",
    "cap_per_campaign",
    "cap_per_charger",
)


def upgrade() -> None:
    op.create_table(
        "campaigns",
        sa.Column("id", pg.UUID(as_uuid=True), primary_key=True),
        sa.Column("created_by_user_id", sa.Text, nullable=False),
        sa.Column("create_request_id", pg.UUID(as_uuid=True)),
        sa.Column("sponsor_name", sa.Text, nullable=False),
        sa.Column("sponsor_email", sa.Text, nullable=False, server_default=""),
        sa.Column("sponsor_logo_url", sa.Text, nullable=False, server_default=""),
        sa.Column("sponsor_type", sa.Text, nullable=False, server_default=""),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("description", sa.Text, nullable=False, server_default=""),
        sa.Column("campaign_type", sa.Text, nullable=False, server_default="custom"),
        sa.Column("status", sa.SmallInteger, nullable=False),
        sa.Column("priority", sa.Integer, nullable=False),
        sa.Column("reward_kind", sa.SmallInteger, nullable=False),
        sa.Column(
            "cost_per_session_cents", sa.Integer, sa.CheckConstraint("cost_per_session_cents > 0"), nullable=False
        ),
        sa.Column("gross_funding_cents", sa.BigInteger, sa.CheckConstraint("gross_funding_cents > 0"), nullable=False),
        sa.Column("platform_fee_cents", sa.BigInteger, sa.CheckConstraint("platform_fee_cents >= 0"), nullable=False),
        sa.Column("budget_cents", sa.BigInteger, nullable=False),
        sa.Column("spent_cents", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("max_sessions", sa.Integer),
        sa.Column("sessions_granted", sa.Integer, nullable=False, server_default="0"),
        sa.Column("start_date", sa.DateTime(timezone=True), nullable=False),
        sa.Column("end_date", sa.DateTime(timezone=True)),
        sa.Column("time_zone", sa.Text, nullable=False),
        sa.Column("rules", pg.JSONB, nullable=False, server_default=sa.text("'{}'::jsonb")),
        sa.Column("cap_per_day", sa.Integer),
        sa.Column("cap_per_campaign", sa.Integer),
        sa.Column("cap_per_charger", sa.Integer),
        sa.Column("funding_status", sa.SmallInteger, nullable=False),
        sa.Column("checkout_session_id", sa.Text),
        sa.Column("checkout_url", sa.Text),
        sa.Column("checkout_expires_at", sa.DateTime(timezone=True)),
        sa.Column("checkout_request_id", pg.UUID(as_uuid=True)),
        sa.Column("funded_at", sa.DateTime(timezone=True)),
        sa.Column("pause_reason", sa.Text, nullable=False, server_default=""),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.CheckConstraint("spent_cents >= 0 AND spent_cents <= budget_cents", name="campaigns_spend_within_budget"),
        sa.CheckConstraint(
            "sessions_granted >= 0 AND (max_sessions IS NULL OR sessions_granted <= max_sessions)",
            name="campaigns_sessions_within_max",
        ),
        sa.CheckConstraint("end_date IS NULL OR end_date > start_date", name="campaigns_end_after_start"),
        sa.UniqueConstraint("created_by_user_id", "create_request_id", name="campaigns_create_request_unique"),
        sa.UniqueConstraint("checkout_session_id", name="campaigns_checkout_session_unique"),
    )
    # `updated_at` says when the row last changed (a trigger sets it on every UPDATE). `rules_changed_at` says
    # when anything the candidate index holds last changed — everything but the budget counters, which a grant
    # moves hundreds of times a second and which the grant's own UPDATE checks. Each process reloads into its
    # index the campaigns whose rules_changed_at moved since it last looked.
    op.add_column(
        "campaigns",
        sa.Column("rules_changed_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    )
    op.create_index("campaigns_rules_changed", "campaigns", ["rules_changed_at"])
    op.execute(
        """
        CREATE FUNCTION campaigns_touch() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            NEW.updated_at := now();
            RETURN NEW;
        END $$
        """
    )
    op.execute(
        "CREATE TRIGGER campaigns_touch BEFORE UPDATE ON campaigns FOR EACH ROW EXECUTE FUNCTION campaigns_touch()"
    )
    op.execute(
        """
        CREATE FUNCTION campaigns_rules_changed() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            NEW.rules_changed_at := now();
            RETURN NEW;
        END $$
        """
    )
    # Fires when an UPDATE sets any column but the budget counters (spent_cents, sessions_granted).
    op.execute(
        f"""
        CREATE TRIGGER campaigns_rules_changed BEFORE UPDATE OF {", ".join(INDEXED_COLUMNS)} ON campaigns
            FOR EACH ROW EXECUTE FUNCTION campaigns_rules_changed()
        """
    )
    op.create_index("campaigns_owner_created", "campaigns", ["created_by_user_id", sa.text("created_at DESC")])
    op.create_index("campaigns_created", "campaigns", [sa.text("created_at DESC"), "id"])

    op.create_table(
        "grants",
        sa.Column("id", pg.UUID(as_uuid=True), primary_key=True),
        sa.Column("session_id", pg.UUID(as_uuid=True), nullable=False),
        sa.Column("end_sequence", sa.Integer, nullable=False),
        sa.Column("campaign_id", pg.UUID(as_uuid=True), sa.ForeignKey("campaigns.id"), nullable=False),
        sa.Column("driver_id", sa.Text, nullable=False),
        sa.Column("amount_cents", sa.Integer, sa.CheckConstraint("amount_cents > 0"), nullable=False),
        sa.Column("reward_kind", sa.SmallInteger, nullable=False),
        sa.Column("status", sa.SmallInteger, nullable=False),
        sa.Column("charger_id", sa.Text, nullable=False, server_default=""),
        sa.Column("duration_minutes", sa.Integer, nullable=False),
        sa.Column("session_start", sa.DateTime(timezone=True), nullable=False),
        # The session's calendar day in the campaign's time zone: what the per-day cap counts.
        sa.Column("campaign_local_day", sa.Date, nullable=False),
        sa.Column("ledger_transfer_id", pg.UUID(as_uuid=True)),
        sa.Column("granted_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.Column("clawed_back_at", sa.DateTime(timezone=True)),
        sa.Column("clawback_reason", sa.Text, nullable=False, server_default=""),
        sa.Column("clawback_request_id", pg.UUID(as_uuid=True)),
        sa.Column("clawed_back_by", sa.Text),
    )
    # At most one grant per charging session that has not been clawed back: no stacking, no double grant.
    op.create_index(
        "grants_one_live_per_session",
        "grants",
        ["session_id"],
        unique=True,
        postgresql_where=sa.text("status <> 3"),
    )
    op.create_index("grants_session", "grants", ["session_id"])
    op.create_index("grants_campaign_created", "grants", ["campaign_id", sa.text("created_at DESC"), "id"])
    op.create_index(
        "grants_driver_campaign_live", "grants", ["driver_id", "campaign_id"], postgresql_where=sa.text("status <> 3")
    )

    op.create_table(
        "evaluations",
        sa.Column("session_id", pg.UUID(as_uuid=True), nullable=False),
        sa.Column("end_sequence", sa.Integer, nullable=False),
        sa.Column("driver_id", sa.Text, nullable=False),
        # The EndedSession as received (serialized proto): the idempotency check and the dry runs' input.
        sa.Column("snapshot", sa.LargeBinary, nullable=False),
        sa.Column("outcome", sa.SmallInteger, nullable=False),
        sa.Column("grant_id", pg.UUID(as_uuid=True), sa.ForeignKey("grants.id")),
        # What the answer listed: each campaign tried, in order, with the check it failed (0 for the one that
        # paid) — [{"i": id, "n": name, "p": priority, "f": RuleFailure, "d": detail}]. A repeat is answered
        # from it, the grant row and points_awarded.
        sa.Column("candidates", pg.JSONB, nullable=False, server_default=sa.text("'[]'::jsonb")),
        sa.Column("points_awarded", sa.Integer, nullable=False, server_default="0"),
        # +5 for a session that earned no grant (DOMAIN, Reputation); a grant's points come from the grant.
        sa.Column("base_points", sa.Integer, nullable=False, server_default="0"),
        sa.Column("session_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("session_end", sa.DateTime(timezone=True), nullable=False),
        sa.Column("duration_minutes", sa.Integer, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.PrimaryKeyConstraint("session_id", "end_sequence"),
    )
    op.create_index("evaluations_driver_end", "evaluations", ["driver_id", sa.text("session_end DESC")])
    op.create_index("evaluations_end", "evaluations", ["session_end"])
    op.execute(EVALUATION_CANDIDATES)
    op.execute(EVALUATE_SESSION)


def downgrade() -> None:
    op.execute("DROP FUNCTION evaluate_session")
    op.execute("DROP FUNCTION evaluation_candidates")
    op.execute("DROP FUNCTION campaigns_rules_changed() CASCADE")
    op.drop_table("evaluations")
    op.drop_table("grants")
    op.drop_table("campaigns")
    op.execute("DROP FUNCTION campaigns_touch()")


# The database half of EvaluateSession: one statement, atomic on its own (no transaction round trips). The
# caller has judged the targeting rules, which need time zones and geometry, for the candidates so far, in
# evaluation order: p_judged = [{"i": id, "n": name, "p": priority, "f": RuleFailure or 0 when the rules
# pass, "d": detail, "day": the session's calendar day in the campaign's zone}]. Under the driver's advisory
# lock (so that the idempotency check and the per-driver caps are exact), each candidate whose rules passed is
# tried in turn: its caps counted from the driver's live grants, then one reward of its budget and session count
# consumed by a conditional UPDATE (the row lock serialises concurrent grants; a reward that does not fit is
# refused by the WHERE, never by a value read earlier). The first that pays gets the grant, its outbox row (the
# ledger credit, keyed by the grant id) and the evaluation row, all committed together.
#
# kind: replay (this session and end_sequence were evaluated: the stored outcome, candidates, grant and points;
# `conflict` says whether the snapshot differs), superseded (a later end_sequence was evaluated), kept (a live
# grant of an earlier end stands), too_short, granted, no_match — or continue: no candidate so far could pay
# and p_final is false; nothing was written, and the caller calls again with more candidates judged.
EVALUATION_CANDIDATES = r"""
CREATE FUNCTION evaluation_candidates(p_judged jsonb, p_verdicts jsonb, p_through bigint) RETURNS jsonb
LANGUAGE sql IMMUTABLE AS $$
    -- The judged candidates up to and including position p_through, each with the database's verdict (caps,
    -- budget) where it has one, without the day the caps needed.
    SELECT coalesce(jsonb_agg((e.value - 'day') || coalesce(p_verdicts -> e.ordinality::text, '{}'::jsonb)
                              ORDER BY e.ordinality), '[]'::jsonb)
      FROM jsonb_array_elements(p_judged) WITH ORDINALITY e
     WHERE e.ordinality <= p_through
$$
"""

EVALUATE_SESSION = r"""
CREATE FUNCTION evaluate_session(
    p_session_id uuid,
    p_end_sequence int,
    p_driver_id text,
    p_snapshot bytea,
    p_session_start timestamptz,
    p_session_end timestamptz,
    p_duration_minutes int,
    p_charger_id text,
    p_evaluable boolean,
    p_base_points int,
    p_now timestamptz,
    p_judged jsonb,
    p_final boolean,
    p_grant_id uuid,
    p_trace jsonb
) RETURNS TABLE (kind text, conflict boolean, outcome smallint, candidates jsonb, grant_row jsonb, points int,
                 exhausted boolean)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    v_done evaluations%ROWTYPE;
    v_latest int;
    v_kept grants%ROWTYPE;
    v_tried jsonb;
    v_verdicts jsonb := '{}'::jsonb;
    v_last bigint := jsonb_array_length(p_judged);
    v_entry jsonb;
    v_position bigint;
    v_id uuid;
    v_caps record;
    v_usage record;
    v_won campaigns%ROWTYPE;
    v_now_row record;
    v_grant grants%ROWTYPE;
    v_failure int;
    v_detail text;
    v_exhausted boolean := false;
BEGIN
    PERFORM pg_advisory_xact_lock(hashtextextended('driver:' || p_driver_id, 0));

    SELECT * INTO v_done FROM evaluations e WHERE e.session_id = p_session_id AND e.end_sequence = p_end_sequence;
    IF FOUND THEN
        RETURN QUERY SELECT 'replay'::text, v_done.snapshot <> p_snapshot, v_done.outcome, v_done.candidates,
            (SELECT to_jsonb(g) || jsonb_build_object('campaign_name', c.name)
               FROM grants g JOIN campaigns c ON c.id = g.campaign_id WHERE g.id = v_done.grant_id),
            v_done.points_awarded, false;
        RETURN;
    END IF;
    SELECT max(e.end_sequence) INTO v_latest FROM evaluations e WHERE e.session_id = p_session_id;
    IF v_latest > p_end_sequence THEN
        RETURN QUERY SELECT 'superseded'::text, false, 4::smallint, '[]'::jsonb, NULL::jsonb, 0, false;
        RETURN;
    END IF;

    -- Reopened and ended again, and the earlier grant could not be reversed (the caller tried): it stands.
    SELECT * INTO v_kept FROM grants g WHERE g.session_id = p_session_id AND g.status <> 3;
    IF FOUND THEN
        INSERT INTO evaluations (session_id, end_sequence, driver_id, snapshot, outcome, grant_id, base_points,
                                 session_start, session_end, duration_minutes)
        VALUES (p_session_id, p_end_sequence, p_driver_id, p_snapshot, 5, v_kept.id, 0,
                p_session_start, p_session_end, p_duration_minutes);
        RETURN QUERY SELECT 'kept'::text, false, 5::smallint, '[]'::jsonb,
            to_jsonb(v_kept) || jsonb_build_object('campaign_name', (SELECT c.name FROM campaigns c WHERE c.id = v_kept.campaign_id)),
            0, false;
        RETURN;
    END IF;

    IF NOT p_evaluable THEN
        INSERT INTO evaluations (session_id, end_sequence, driver_id, snapshot, outcome, base_points,
                                 session_start, session_end, duration_minutes)
        VALUES (p_session_id, p_end_sequence, p_driver_id, p_snapshot, 3, 0,
                p_session_start, p_session_end, p_duration_minutes);
        RETURN QUERY SELECT 'too_short'::text, false, 3::smallint, '[]'::jsonb, NULL::jsonb, 0, false;
        RETURN;
    END IF;

    -- Only the candidates whose rules passed are tried; their verdicts are kept by position, and the answer's
    -- list is assembled once at the end (appending to a jsonb array in the loop would copy it every time).
    FOR v_entry, v_position IN
        SELECT e.value, e.ordinality FROM jsonb_array_elements(p_judged) WITH ORDINALITY e
         WHERE (e.value->>'f')::int = 0 ORDER BY e.ordinality
    LOOP
        v_id := (v_entry->>'i')::uuid;
        v_failure := 0;
        SELECT c.cap_per_day, c.cap_per_campaign, c.cap_per_charger INTO v_caps FROM campaigns c WHERE c.id = v_id;
        IF v_caps.cap_per_day IS NOT NULL OR v_caps.cap_per_campaign IS NOT NULL OR v_caps.cap_per_charger IS NOT NULL THEN
            SELECT count(*) FILTER (WHERE g.campaign_local_day = (v_entry->>'day')::date) AS on_day,
                   count(*) AS in_campaign,
                   count(*) FILTER (WHERE p_charger_id <> '' AND g.charger_id = p_charger_id) AS at_charger
              INTO v_usage
              FROM grants g
             WHERE g.driver_id = p_driver_id AND g.campaign_id = v_id AND g.status <> 3;
            IF v_caps.cap_per_day IS NOT NULL AND v_usage.on_day >= v_caps.cap_per_day THEN
                v_failure := 15;
                v_detail := format('driver already has %s grant(s) that day; cap %s per day', v_usage.on_day, v_caps.cap_per_day);
            ELSIF v_caps.cap_per_campaign IS NOT NULL AND v_usage.in_campaign >= v_caps.cap_per_campaign THEN
                v_failure := 16;
                v_detail := format('driver already has %s grant(s); cap %s per campaign', v_usage.in_campaign, v_caps.cap_per_campaign);
            ELSIF v_caps.cap_per_charger IS NOT NULL AND v_usage.at_charger >= v_caps.cap_per_charger THEN
                v_failure := 17;
                v_detail := format('driver already has %s grant(s) at this charger; cap %s', v_usage.at_charger, v_caps.cap_per_charger);
            END IF;
        END IF;

        IF v_failure = 0 THEN
            UPDATE campaigns c
               SET spent_cents = c.spent_cents + c.cost_per_session_cents,
                   sessions_granted = c.sessions_granted + 1
             WHERE c.id = v_id
               AND c.status = 2
               AND c.start_date <= p_now
               AND (c.end_date IS NULL OR c.end_date >= p_now)
               AND c.spent_cents + c.cost_per_session_cents <= c.budget_cents
               AND (c.max_sessions IS NULL OR c.sessions_granted < c.max_sessions)
            RETURNING c.* INTO v_won;
            IF FOUND THEN
                -- The grant that leaves less than one reward, or reaches max_sessions, exhausts the campaign.
                IF v_won.budget_cents - v_won.spent_cents < v_won.cost_per_session_cents
                   OR (v_won.max_sessions IS NOT NULL AND v_won.sessions_granted >= v_won.max_sessions) THEN
                    UPDATE campaigns c SET status = 4 WHERE c.id = v_won.id;
                    v_exhausted := true;
                END IF;
                INSERT INTO grants (id, session_id, end_sequence, campaign_id, driver_id, amount_cents, reward_kind,
                                    status, charger_id, duration_minutes, session_start, campaign_local_day)
                VALUES (p_grant_id, p_session_id, p_end_sequence, v_won.id, p_driver_id, v_won.cost_per_session_cents,
                        v_won.reward_kind, 1, p_charger_id, p_duration_minutes, p_session_start,
                        (v_entry->>'day')::date)
                RETURNING * INTO v_grant;
                INSERT INTO outbox (topic, key, payload, trace_context)
                VALUES ('grant.credit', p_grant_id::text, jsonb_build_object('grant_id', p_grant_id::text), p_trace);
                v_tried := evaluation_candidates(p_judged, v_verdicts, v_position);
                INSERT INTO evaluations (session_id, end_sequence, driver_id, snapshot, outcome, grant_id, base_points,
                                         session_start, session_end, duration_minutes, candidates, points_awarded)
                VALUES (p_session_id, p_end_sequence, p_driver_id, p_snapshot, 1, p_grant_id, 0,
                        p_session_start, p_session_end, p_duration_minutes, v_tried, v_won.cost_per_session_cents);
                RETURN QUERY SELECT 'granted'::text, false, 1::smallint, v_tried,
                    to_jsonb(v_grant) || jsonb_build_object('campaign_name', v_won.name),
                    v_won.cost_per_session_cents, v_exhausted;
                RETURN;
            END IF;
            -- Refused by the database: a concurrent grant took the last reward, or the campaign stopped.
            SELECT c.status, c.budget_cents - c.spent_cents AS remaining, c.cost_per_session_cents AS reward,
                   c.max_sessions, c.sessions_granted
              INTO v_now_row FROM campaigns c WHERE c.id = v_id;
            IF v_now_row.max_sessions IS NOT NULL AND v_now_row.sessions_granted >= v_now_row.max_sessions THEN
                v_failure := 19;
                v_detail := format('%s of at most %s sessions already granted', v_now_row.sessions_granted, v_now_row.max_sessions);
            ELSIF v_now_row.remaining < v_now_row.reward THEN
                v_failure := 18;
                v_detail := format('remaining budget %s¢ < reward %s¢', v_now_row.remaining, v_now_row.reward);
            ELSIF v_now_row.status <> 2 THEN
                -- The contract has no failure for "stopped"; for the driver it is no budget here, and says so.
                v_failure := 18;
                v_detail := 'campaign is ' || CASE v_now_row.status WHEN 3 THEN 'paused' WHEN 4 THEN 'exhausted'
                    WHEN 5 THEN 'ended' ELSE 'not active' END || ' and cannot pay now';
            ELSE
                v_failure := 18;
                v_detail := 'campaign is outside its dates and cannot pay now';
            END IF;
        END IF;
        v_verdicts := v_verdicts || jsonb_build_object(v_position::text, jsonb_build_object('f', v_failure, 'd', v_detail));
    END LOOP;

    IF NOT p_final THEN
        RETURN QUERY SELECT 'continue'::text, false, 0::smallint, NULL::jsonb, NULL::jsonb, 0, false;
        RETURN;
    END IF;
    v_tried := evaluation_candidates(p_judged, v_verdicts, v_last);
    INSERT INTO evaluations (session_id, end_sequence, driver_id, snapshot, outcome, base_points,
                             session_start, session_end, duration_minutes, candidates, points_awarded)
    VALUES (p_session_id, p_end_sequence, p_driver_id, p_snapshot, 2, p_base_points,
            p_session_start, p_session_end, p_duration_minutes, v_tried, p_base_points);
    RETURN QUERY SELECT 'no_match'::text, false, 2::smallint, v_tried, NULL::jsonb, p_base_points, false;
END $$
"""
