"""incentives: the evaluation's candidate list travels as text, not as jsonb

Revision ID: 0003
Revises: 0002

EvaluateSession judges the targeting rules in the service and lists every candidate in its answer — for a
session no campaign pays, a few hundred at 10,000 active campaigns. Until now evaluate_session() received that
list as jsonb, re-assembled it with the database's verdicts and sent it back, so each entry was parsed, copied
and printed by PostgreSQL and parsed again by the service. Now the service sends the list as text, which the
database stores verbatim for replays (`evaluations.judged`) without parsing it, plus only the candidates whose
rules passed (`p_passing`: position, id, local day) — the ones it tries for caps and budget. It answers with its
verdicts by position (`verdicts`) and how far down the list the answer goes (`through`: the winner's position, or
the whole list); the service merges them into the answer it already holds. Evaluations written before this
migration keep their assembled `candidates` and replay from them.
"""

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

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
    p_judged text,
    p_passing jsonb,
    p_count int,
    p_final boolean,
    p_grant_id uuid,
    p_trace jsonb
) RETURNS TABLE (kind text, conflict boolean, outcome smallint, judged text, verdicts jsonb, through int,
                 candidates jsonb, grant_row jsonb, points int, exhausted boolean)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    v_done evaluations%ROWTYPE;
    v_latest int;
    v_kept grants%ROWTYPE;
    v_verdicts jsonb := '{}'::jsonb;
    v_entry jsonb;
    v_position int;
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
        RETURN QUERY SELECT 'replay'::text, v_done.snapshot <> p_snapshot, v_done.outcome, v_done.judged,
            v_done.verdicts, v_done.through, v_done.candidates,
            (SELECT to_jsonb(g) || jsonb_build_object('campaign_name', c.name)
               FROM grants g JOIN campaigns c ON c.id = g.campaign_id WHERE g.id = v_done.grant_id),
            v_done.points_awarded, false;
        RETURN;
    END IF;
    SELECT max(e.end_sequence) INTO v_latest FROM evaluations e WHERE e.session_id = p_session_id;
    IF v_latest > p_end_sequence THEN
        RETURN QUERY SELECT 'superseded'::text, false, 4::smallint, NULL::text, NULL::jsonb, 0, '[]'::jsonb,
            NULL::jsonb, 0, false;
        RETURN;
    END IF;

    -- Reopened and ended again, and the earlier grant could not be reversed (the caller tried): it stands.
    SELECT * INTO v_kept FROM grants g WHERE g.session_id = p_session_id AND g.status <> 3;
    IF FOUND THEN
        INSERT INTO evaluations (session_id, end_sequence, driver_id, snapshot, outcome, grant_id, base_points,
                                 session_start, session_end, duration_minutes)
        VALUES (p_session_id, p_end_sequence, p_driver_id, p_snapshot, 5, v_kept.id, 0,
                p_session_start, p_session_end, p_duration_minutes);
        RETURN QUERY SELECT 'kept'::text, false, 5::smallint, NULL::text, NULL::jsonb, 0, '[]'::jsonb,
            to_jsonb(v_kept) || jsonb_build_object('campaign_name', (SELECT c.name FROM campaigns c WHERE c.id = v_kept.campaign_id)),
            0, false;
        RETURN;
    END IF;

    IF NOT p_evaluable THEN
        INSERT INTO evaluations (session_id, end_sequence, driver_id, snapshot, outcome, base_points,
                                 session_start, session_end, duration_minutes)
        VALUES (p_session_id, p_end_sequence, p_driver_id, p_snapshot, 3, 0,
                p_session_start, p_session_end, p_duration_minutes);
        RETURN QUERY SELECT 'too_short'::text, false, 3::smallint, NULL::text, NULL::jsonb, 0, '[]'::jsonb,
            NULL::jsonb, 0, false;
        RETURN;
    END IF;

    -- Only the candidates whose rules passed are tried (p_passing: their position in the judged list, id and
    -- local day); their verdicts are kept by position. The judged list itself is stored as the caller wrote it
    -- and never parsed here: the caller merges the verdicts into its answer.
    FOR v_entry IN SELECT e.value FROM jsonb_array_elements(p_passing) e
    LOOP
        v_position := (v_entry->>'k')::int;
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
                INSERT INTO evaluations (session_id, end_sequence, driver_id, snapshot, outcome, grant_id, base_points,
                                         session_start, session_end, duration_minutes, judged, verdicts, through,
                                         points_awarded)
                VALUES (p_session_id, p_end_sequence, p_driver_id, p_snapshot, 1, p_grant_id, 0,
                        p_session_start, p_session_end, p_duration_minutes, p_judged, v_verdicts, v_position,
                        v_won.cost_per_session_cents);
                RETURN QUERY SELECT 'granted'::text, false, 1::smallint, NULL::text, v_verdicts, v_position,
                    NULL::jsonb,
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
        RETURN QUERY SELECT 'continue'::text, false, 0::smallint, NULL::text, NULL::jsonb, 0, NULL::jsonb,
            NULL::jsonb, 0, false;
        RETURN;
    END IF;
    INSERT INTO evaluations (session_id, end_sequence, driver_id, snapshot, outcome, base_points,
                             session_start, session_end, duration_minutes, judged, verdicts, through, points_awarded)
    VALUES (p_session_id, p_end_sequence, p_driver_id, p_snapshot, 2, p_base_points,
            p_session_start, p_session_end, p_duration_minutes, p_judged, v_verdicts, p_count, p_base_points);
    RETURN QUERY SELECT 'no_match'::text, false, 2::smallint, NULL::text, v_verdicts, p_count, NULL::jsonb,
        NULL::jsonb, p_base_points, false;
END $$
"""


def upgrade() -> None:
    op.execute("ALTER TABLE evaluations ADD COLUMN judged text, ADD COLUMN verdicts jsonb, ADD COLUMN through int")
    op.execute("DROP FUNCTION evaluate_session")
    op.execute("DROP FUNCTION evaluation_candidates")
    op.execute(EVALUATE_SESSION)


def downgrade() -> None:
    from importlib import import_module

    previous = import_module("services.incentives.migrations.versions.0002_campaigns_grants")
    op.execute("DROP FUNCTION evaluate_session")
    op.execute(previous.EVALUATION_CANDIDATES)
    op.execute(previous.EVALUATE_SESSION)
    # Evaluations written in the meantime replay without their candidate list.
    op.execute("ALTER TABLE evaluations DROP COLUMN judged, DROP COLUMN verdicts, DROP COLUMN through")
