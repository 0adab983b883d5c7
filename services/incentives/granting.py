"""Paying for charging sessions: the evaluation of an ended session (at most one grant, budget and caps consumed
in the grant's transaction), the grant's credit in the ledger (outbox, keyed by the grant id), and clawbacks.

Concurrency, in one place:
- The targeting rules are judged in memory; what must be exact under concurrency is one PL/pgSQL call,
  evaluate_session() (migrations/versions/0002), in the same transaction as the stored answer.
- Every evaluation of a driver's session runs under a transaction-level advisory lock on the driver. It makes
  the session's idempotency check and the driver's caps exact (count, then insert, with no other grant of
  this driver in between) and costs nothing across drivers.
- The budget and the campaign's session count are consumed by one conditional UPDATE of the campaign row
  (`spent + reward ≤ budget`, `sessions_granted < max_sessions`, status active, inside the dates): the row lock
  serialises concurrent grants of one campaign, and a grant that does not fit is refused by the database,
  never by a value read earlier. The CHECK constraints of the table repeat those invariants.
- A transaction holds at most the driver lock and one campaign row, always in that order: no deadlocks.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import json
import logging
import uuid
from collections.abc import Awaitable, Callable, Iterator, Sequence
from typing import Any

import asyncpg
import prometheus_client
import sqlalchemy as sa
from nerava.incentives.v1 import incentives_pb2 as pb
from opentelemetry import propagate
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from services.common import audit
from services.common.db import single_statement_reads
from services.common.errors import Aborted, FailedPrecondition, NotFound
from services.common.outbox import OutboxMessage, OutboxRelay, PermanentDeliveryError
from services.incentives import domain, store
from services.incentives.index import CampaignIndex
from services.incentives.peers import CreditRefused, DriverEmails, GrantCredits
from services.incentives.reasons import Reason

log = logging.getLogger(__name__)

EVALUATIONS = prometheus_client.Counter(
    "nerava_incentives_evaluations_total", "Ended sessions evaluated (replays excluded), by outcome.", ["outcome"]
)
GRANTED = prometheus_client.Counter(
    "nerava_incentives_granted_total", "Rewards granted, cents or Nova points, by reward kind.", ["reward_kind"]
)
CANDIDATES_TRIED = prometheus_client.Histogram(
    "nerava_incentives_candidates_tried",
    "Campaigns tried per evaluated session (what the index left to test).",
    buckets=(0, 1, 2, 4, 8, 16, 32, 64, 128, 256),
)

GRANT_CREDIT_TOPIC = "grant.credit"


@dataclasses.dataclass(frozen=True)
class EndedSession:
    """An ended charging session to evaluate: what the rules look at, and the session as sessions sent it, byte for
    byte (stored with the evaluation: a repeat that differs is refused, and the sponsors' dry run replays it)."""

    session_id: str
    end_sequence: int  # > 1: a reopened session ended again
    facts: domain.SessionFacts
    snapshot: bytes


@dataclasses.dataclass(frozen=True)
class SessionEvaluation:
    """What an evaluation decided (or, replayed, had decided): the outcome, the grant if one was made, and every
    campaign tried, in order, up to and including the one that paid."""

    outcome: pb.EvaluationOutcome
    reputation_points_awarded: int
    replayed: bool
    grant: store.Row | None  # the grants row, with its campaign_name
    candidates: list[domain.CandidateOutcome]


@dataclasses.dataclass(frozen=True)
class Clawback:
    grant: store.Row  # the grants row after the clawback (or the earlier one's)
    campaign_name: str
    campaign_remaining_cents: int


@dataclasses.dataclass(frozen=True)
class DriverStanding:
    reputation: domain.Reputation
    streak_days: int


class Granting:
    def __init__(
        self,
        engine: AsyncEngine,
        pool: asyncpg.Pool,
        index: CampaignIndex,
        credits: GrantCredits,
        *,
        emails: DriverEmails | None = None,
        clock: Callable[[], datetime.datetime] = lambda: datetime.datetime.now(datetime.UTC),
        refund_closed: Callable[[uuid.UUID], Awaitable[object]] | None = None,
    ) -> None:
        self._engine = engine
        # Refunds what a closed (canceled, ended) campaign has left: budget a clawback or a FAILED grant returns
        # to such a campaign goes on to its sponsor at once (funding.refund_closed).
        self._refund_closed = refund_closed
        self._reads = single_statement_reads(engine)
        self._pool = pool
        self._index = index
        self._credits = credits
        self._emails = emails
        self._clock = clock
        self.relay: OutboxRelay | None = None

    # --- evaluation ----------------------------------------------------------------------------------------

    async def evaluate(self, session: EndedSession) -> SessionEvaluation:
        """At most one grant for an ended session, and why each campaign tried did not pay. The rules are
        judged here, in memory; budget, session count and caps in the database (evaluate_session())."""
        if session.end_sequence > 1:
            await self._reverse_earlier_grant(session)
        facts = session.facts
        now = self._clock()
        ids = self._index.candidate_ids_for(facts)
        if self._index.any_email_allowlist(ids):
            facts = dataclasses.replace(facts, driver_email=await self.driver_email(facts.driver_id))
        evaluable = facts.duration_minutes >= domain.MIN_EVALUATED_DURATION_MINUTES
        base_points = domain.reputation_points_for_session(None, facts.duration_minutes, facts.quality_score)
        carrier: dict[str, str] = {}
        propagate.inject(carrier)
        fixed = _Call(
            session_id=uuid.UUID(session.session_id),
            end_sequence=session.end_sequence,
            driver_id=facts.driver_id,
            snapshot=session.snapshot,
            started_at=facts.started_at,
            ended_at=facts.ended_at,
            duration_minutes=facts.duration_minutes,
            charger_id=facts.charger_id,
            evaluable=evaluable,
            base_points=base_points,
            now=now,
            grant_id=uuid.uuid4(),
            trace=json.dumps(carrier),
        )
        place = domain.Place(facts.charger_id, facts.charger_network, facts.zone_id, facts.lat, facts.lng)
        row, reply = await self._decide(fixed, lambda: self._index.ranked(ids, now, place), facts)
        if row["kind"] == "replay" and row["conflict"]:
            raise Aborted(
                Reason.IDEMPOTENCY_KEY_REUSED,
                "this session and end_sequence were evaluated with a different snapshot",
                {"session_id": session.session_id, "end_sequence": str(session.end_sequence)},
            )
        if not reply.replayed:
            EVALUATIONS.labels(pb.EvaluationOutcome.Name(reply.outcome)).inc()
            CANDIDATES_TRIED.observe(len(reply.candidates))
            if reply.outcome == pb.EVALUATION_OUTCOME_GRANTED and reply.grant is not None:
                GRANTED.labels(pb.RewardKind.Name(reply.grant["reward_kind"])).inc(reply.grant["amount_cents"])
                if self.relay is not None:
                    self.relay.wake()
        if row["exhausted"]:
            self._index.changed()  # it leaves the index; budget spending alone changes nothing there
        return reply

    async def _reverse_earlier_grant(self, session: EndedSession) -> None:
        """A reopened session ended again: DOMAIN reverses the grant of its earlier end before evaluating it anew.
        When the driver already spent that reward the ledger cannot reverse it; it then stands, and
        evaluate_session() answers PREVIOUS_GRANT_KEPT (never a second grant for one charging)."""
        grants = store.grants
        async with self._reads.connect() as conn:
            earlier = (
                await conn.execute(
                    sa.select(grants.c.id).where(
                        grants.c.session_id == uuid.UUID(session.session_id),
                        grants.c.end_sequence < session.end_sequence,
                        store.LIVE_GRANT,
                    )
                )
            ).scalar_one_or_none()
        if earlier is None:
            return
        try:
            # A fixed request id: a retried evaluation repeats the same clawback.
            await self.claw_back(earlier, "charging session reopened", uuid.uuid5(earlier, "reopened"), "sessions")
        except FailedPrecondition as refused:
            if refused.reason != "GRANT_ALREADY_SPENT":
                raise

    async def _decide(
        self,
        call: _Call,
        ranked: Callable[[], Iterator[domain.CampaignCandidate]],
        facts: domain.SessionFacts,
    ) -> tuple[asyncpg.Record, SessionEvaluation]:
        """evaluate_session() decides and writes, in one statement (one round trip, atomic on its own).

        The rules are judged lazily, in evaluation order, until a batch of candidates whose rules pass is found;
        only if none of those can pay (caps, budget) are more judged and the call repeated with them all. Most
        sessions are paid by the first candidate that matches, so the rules of the campaigns after it are
        never evaluated."""
        attempt = 0
        while True:
            judged: list[dict[str, Any]] = []
            remaining = ranked()
            try:
                async with self._pool.acquire() as conn:
                    while True:
                        passing = _judge_more(remaining, facts, judged)
                        final = passing < CANDIDATE_BATCH
                        tried = [
                            {"k": k, "i": entry["i"], "day": entry["day"]}
                            for k, entry in enumerate(judged, start=1)
                            if entry["f"] == 0
                        ]
                        row = await conn.fetchrow(
                            _EVALUATE, *call.arguments(json.dumps(judged), json.dumps(tried), len(judged), final=final)
                        )
                        assert row is not None
                        if row["kind"] != "continue":
                            return row, _answer(row, judged)
            except (asyncpg.DeadlockDetectedError, asyncpg.SerializationError):
                # PostgreSQL asking us to try again; the driver lock makes this rare.
                attempt += 1
                if attempt == 5:
                    raise
                await asyncio.sleep(0.01 * attempt)

    async def driver_email(self, driver_id: str) -> str:
        """The driver's email (for allowlists that name emails); "" when unknown."""
        if self._emails is None:
            return ""
        return await self._emails.email(driver_id)

    # --- the ledger credit (outbox relay) ------------------------------------------------------------------

    async def deliver_credit(self, message: OutboxMessage) -> None:
        """Posts a grant's ledger transfer (idempotent on the grant id) and marks the grant granted."""
        grant_id = uuid.UUID(str(message.payload["grant_id"]))
        # The relay runs beside the evaluations on the same event loop: plain asyncpg keeps it cheap.
        record = await self._pool.fetchrow(_GRANT_TO_CREDIT, grant_id)
        row = None if record is None else dict(record)
        if row is None:
            raise PermanentDeliveryError(f"grant {grant_id} does not exist")
        transfer_id = await self._credits.deliver(grant_id, row)
        await self._pool.execute(_MARK_GRANTED, grant_id, uuid.UUID(transfer_id))

    async def fail_grant(self, message: OutboxMessage, error: BaseException) -> None:
        """The outbox gave up on a grant's credit. Refused for good by the ledger: the grant is FAILED, its
        budget and session count go back to the campaign (its caps and reputation count only live grants).
        Given up after its bounded retries without a definitive answer (the ledger unreachable): the ledger may
        or may not hold the transfer, so nothing is undone; the row goes to the dead-letter list, the grant stays
        PENDING (the reconciliation reports it as stuck) until a person replays it (`make outbox`)."""
        if not isinstance(error, CreditRefused):
            log.error("grant credit given up without a refusal; dead-lettered", extra={"grant_id": message.key})
            return
        grant_id = uuid.UUID(str(message.payload["grant_id"]))
        async with self._engine.begin() as conn:
            failed = (
                await conn.execute(
                    sa.update(store.grants)
                    .where(store.grants.c.id == grant_id, store.grants.c.status == pb.GRANT_STATUS_PENDING)
                    .values(status=pb.GRANT_STATUS_FAILED, clawback_reason=str(error)[:500])
                    .returning(store.grants.c.amount_cents, store.grants.c.campaign_id)
                )
            ).first()
            if failed is not None:
                await _return_to_budget(conn, failed.campaign_id, failed.amount_cents)
        if failed is not None:
            log.error("grant failed: the ledger refused its credit", extra={"grant_id": str(grant_id)})
            self._index.changed()
            await self._refund_if_closed(failed.campaign_id)

    async def _refund_if_closed(self, campaign_id: uuid.UUID) -> None:
        """Budget just came back to a campaign: if it is closed, the sponsor gets it now. A ledger that does not
        answer leaves it to the ending worker (funding.refund_ended), which refunds closed campaigns' remainders."""
        if self._refund_closed is None:
            return
        try:
            await self._refund_closed(campaign_id)
        except Exception:
            log.warning("refund of a closed campaign's returned budget left to the worker", exc_info=True)

    # --- clawback ------------------------------------------------------------------------------------------

    async def claw_back(self, grant_id: uuid.UUID, reason: str, request_id: uuid.UUID, actor: str) -> Clawback:
        async with self._engine.connect() as conn:
            row = (
                (
                    await conn.execute(
                        sa.select(
                            store.grants,
                            store.campaigns.c.name,
                            store.campaigns.c.budget_cents,
                            store.campaigns.c.spent_cents,
                            store.campaigns.c.refunded_cents,
                        )
                        .join(store.campaigns, store.campaigns.c.id == store.grants.c.campaign_id)
                        .where(store.grants.c.id == grant_id)
                    )
                )
                .mappings()
                .first()
            )
        if row is None:
            raise NotFound(Reason.GRANT_NOT_FOUND, "no grant with that id", {"grant_id": str(grant_id)})
        if row["status"] == pb.GRANT_STATUS_FAILED:
            raise FailedPrecondition(
                Reason.GRANT_FAILED,
                "the ledger never credited this grant; there is nothing to claw back",
                {"grant_id": str(grant_id)},
            )
        if row["status"] == pb.GRANT_STATUS_CLAWED_BACK:
            return Clawback(row, row["name"], int(row["budget_cents"] - row["spent_cents"] - row["refunded_cents"]))
        # The credit may still sit in the outbox: posting it here is the same idempotent request, so the ledger
        # answers the one transfer whichever of us comes first. A credited grant names its transfer: not posted
        # again.
        transfer_id = row["ledger_transfer_id"]
        if transfer_id is None:
            try:
                transfer_id = await self._credits.credit(grant_id, row)
            except CreditRefused as refused:
                # The ledger refuses the credit itself (and remembers it): the grant never paid; it fails.
                await self.fail_grant(
                    OutboxMessage(0, GRANT_CREDIT_TOPIC, str(grant_id), {"grant_id": str(grant_id)}, 0), refused
                )
                raise FailedPrecondition(
                    Reason.GRANT_FAILED,
                    "the ledger refused this grant's credit; it failed and its budget was returned",
                    {"grant_id": str(grant_id)},
                ) from refused
        await self._credits.reverse(grant_id, str(transfer_id), str(row["campaign_id"]), reason, actor)
        async with self._engine.begin() as conn:
            updated = (
                await conn.execute(
                    sa.update(store.grants)
                    .where(
                        store.grants.c.id == grant_id,
                        store.grants.c.status.in_([pb.GRANT_STATUS_PENDING, pb.GRANT_STATUS_GRANTED]),
                    )
                    .values(
                        status=pb.GRANT_STATUS_CLAWED_BACK,
                        ledger_transfer_id=uuid.UUID(str(transfer_id)),
                        clawed_back_at=sa.func.now(),
                        clawback_reason=reason,
                        clawback_request_id=request_id,
                        clawed_back_by=actor,
                    )
                    .returning(store.grants.c.amount_cents)
                )
            ).first()
            if updated is not None:
                await _return_to_budget(conn, row["campaign_id"], updated.amount_cents)
                await audit.record(
                    conn, "grant.clawback", f"grant:{grant_id}", reason, amount_cents=updated.amount_cents
                )
        if updated is not None:
            await self._refund_if_closed(row["campaign_id"])
        async with self._engine.connect() as conn:
            final = (
                (
                    await conn.execute(
                        store.GRANT_WITH_CAMPAIGN_NAME.add_columns(
                            store.campaigns.c.budget_cents,
                            store.campaigns.c.spent_cents,
                            store.campaigns.c.refunded_cents,
                        ).where(store.grants.c.id == grant_id)
                    )
                )
                .mappings()
                .one()
            )
        # The returned reward may have made an exhausted campaign active again: like every admin action that
        # changes what pays, the answer comes once this process's index knows (a session evaluated right after
        # must not miss the campaign).
        await self._index.refresh()
        return Clawback(
            final,
            final["campaign_name"],
            int(final["budget_cents"] - final["spent_cents"] - final["refunded_cents"]),
        )


async def _return_to_budget(conn: AsyncConnection, campaign_id: uuid.UUID, amount: int) -> None:
    """A grant that no longer counts (clawed back, failed) gives its reward and its session back; the refund may
    let an exhausted campaign pay again."""
    reward = store.campaigns.c.cost_per_session_cents
    await conn.execute(
        sa.update(store.campaigns)
        .where(store.campaigns.c.id == campaign_id)
        .values(
            spent_cents=store.campaigns.c.spent_cents - amount,
            sessions_granted=store.campaigns.c.sessions_granted - 1,
            status=sa.case(
                (
                    sa.and_(
                        store.campaigns.c.status == pb.CAMPAIGN_STATUS_EXHAUSTED,
                        store.campaigns.c.budget_cents
                        - store.campaigns.c.refunded_cents
                        - (store.campaigns.c.spent_cents - amount)
                        >= reward,
                        sa.or_(
                            store.campaigns.c.max_sessions.is_(None),
                            store.campaigns.c.sessions_granted - 1 < store.campaigns.c.max_sessions,
                        ),
                    ),
                    pb.CAMPAIGN_STATUS_ACTIVE,
                ),
                else_=store.campaigns.c.status,
            ),
        )
    )


_EVALUATE = (
    "SELECT * FROM evaluate_session($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13::jsonb, $14, $15, $16,"
    " $17::jsonb)"
)
# Candidates whose rules pass, judged before asking the database: one usually pays; more only cost rule checks.
CANDIDATE_BATCH = 4
_GRANT_TO_CREDIT = "SELECT * FROM grants WHERE id = $1"
_MARK_GRANTED = (
    f"UPDATE grants SET status = {pb.GRANT_STATUS_GRANTED}, ledger_transfer_id = $2"
    f" WHERE id = $1 AND status = {pb.GRANT_STATUS_PENDING}"
)


def _answer(row: asyncpg.Record, judged: list[dict[str, Any]]) -> SessionEvaluation:
    """The answer, from what evaluate_session() decided or had stored (a repeat gets the same answer): the
    judged list (this call's, or the stored one on a replay) down to `through`, with the database's verdicts on
    caps and budget merged in by position."""
    kind = row["kind"]
    if row["verdicts"] is not None:
        entries = json.loads(row["judged"]) if kind == "replay" else judged
        verdicts: dict[str, dict[str, Any]] = json.loads(row["verdicts"])
        listed = [{**entry, **verdicts.get(str(k), {})} for k, entry in enumerate(entries[: row["through"]], start=1)]
    else:  # evaluations stored before migration 0003 hold the assembled list
        listed = json.loads(row["candidates"] or "[]")
    return SessionEvaluation(
        outcome=row["outcome"],
        reputation_points_awarded=row["points"],
        replayed=kind == "replay",
        grant=None if row["grant_row"] is None else _grant_from_json(json.loads(row["grant_row"])),
        candidates=[
            domain.CandidateOutcome(
                tried["i"], tried["n"], tried["p"], None if tried["f"] == 0 else domain.Failure(tried["f"], tried["d"])
            )
            for tried in listed
        ],
    )


def _judge_more(
    remaining: Iterator[domain.CampaignCandidate], facts: domain.SessionFacts, judged: list[dict[str, Any]]
) -> int:
    """Judges candidates in order, appending each to `judged`, until CANDIDATE_BATCH more pass their rules;
    returns how many passed."""
    passing = 0
    for candidate in remaining:
        failure = domain.first_failed_rule(candidate.rules, facts, candidate.time_zone)
        entry: dict[str, Any] = {"i": candidate.campaign_id, "n": candidate.name, "p": candidate.priority}
        if failure is None:
            entry.update(f=0, d="", day=domain.local_day(facts.started_at, candidate.time_zone).isoformat())
        else:
            entry.update(f=failure.rule, d=failure.detail)
        judged.append(entry)
        if failure is None:
            passing += 1
            if passing == CANDIDATE_BATCH:
                break
    return passing


@dataclasses.dataclass(frozen=True)
class _Call:
    """The arguments of evaluate_session() that do not depend on the candidates judged."""

    session_id: uuid.UUID
    end_sequence: int
    driver_id: str
    snapshot: bytes
    started_at: datetime.datetime
    ended_at: datetime.datetime
    duration_minutes: int
    charger_id: str
    evaluable: bool
    base_points: int
    now: datetime.datetime
    grant_id: uuid.UUID
    trace: str

    def arguments(self, judged: str, passing: str, count: int, *, final: bool) -> tuple[Any, ...]:
        return (
            self.session_id,
            self.end_sequence,
            self.driver_id,
            self.snapshot,
            self.started_at,
            self.ended_at,
            self.duration_minutes,
            self.charger_id,
            self.evaluable,
            self.base_points,
            self.now,
            judged,
            passing,
            count,
            final,
            self.grant_id,
            self.trace,
        )


def _grant_from_json(value: dict[str, Any]) -> dict[str, Any]:
    """A grants row (plus campaign_name) from what to_jsonb() prints."""
    for key in ("granted_at", "created_at", "clawed_back_at"):
        if value.get(key) is not None:
            value[key] = datetime.datetime.fromisoformat(value[key])
    return value


# How far back a driver's streak of charging days is read.
STREAK_LOOKBACK_DAYS = 400


async def reputation(
    engine: AsyncEngine, driver_id: str, tz: datetime.tzinfo, now: datetime.datetime
) -> DriverStanding:
    """The driver's reputation: credited grants plus base points, and their streak of charging days in ``tz``."""
    async with engine.connect() as conn:
        # Only what the ledger credited: a PENDING grant may still fail, and the driver must not see reputation
        # rise for a reward that then never comes.
        granted = await store.credited_grant_cents(conn, driver_id)
        base = await store.base_points(conn, driver_id)
        ends = await store.session_ends(
            conn,
            driver_id,
            min_duration_minutes=domain.MIN_EVALUATED_DURATION_MINUTES,
            since=now - datetime.timedelta(days=STREAK_LOOKBACK_DAYS),
        )
    days = {domain.local_day(end, tz) for end in ends}
    return DriverStanding(domain.reputation(granted + base), domain.streak_days(days, domain.local_day(now, tz)))


async def session_grants(engine: AsyncEngine, session_ids: list[uuid.UUID]) -> Sequence[sa.RowMapping]:
    """Each session's grant (a grants row with its campaign_name) as sessions, and so the driver, see it: only
    what the ledger credited or a clawback reversed."""
    async with engine.connect() as conn:
        return await store.shown_session_grants(conn, session_ids)
