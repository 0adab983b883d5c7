"""Paying for charging sessions: the evaluation of an ended session (at most one grant, budget and caps consumed
in the grant's transaction), the grant's credit in the ledger (outbox, keyed by the grant id), and clawbacks.

Concurrency, in one place:
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
import logging
import uuid
from collections.abc import Callable, Iterable

import grpc
import prometheus_client
import sqlalchemy as sa
from nerava.accounts.v1 import accounts_pb2, accounts_pb2_grpc
from nerava.incentives.v1 import incentives_pb2 as pb
from nerava.ledger.v1 import ledger_pb2, ledger_pb2_grpc
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from services.common.errors import Aborted, FailedPrecondition, NotFound, Unavailable
from services.common.outbox import OutboxMessage, OutboxRelay, PermanentDeliveryError, enqueue
from services.incentives import domain, store
from services.incentives.index import CampaignIndex, IndexedCampaign

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
LEDGER_SCOPE_KEY_PREFIX = "grant:"
CLAWBACK_KEY_PREFIX = "clawback:"
C = store.campaigns
G = store.grants
E = store.evaluations

_CURRENCY: dict[int, int] = {
    pb.REWARD_KIND_CASH: ledger_pb2.CURRENCY_CASH_CENTS,
    pb.REWARD_KIND_NOVA: ledger_pb2.CURRENCY_NOVA_POINTS,
}
_DRIVER_ACCOUNT: dict[int, int] = {
    pb.REWARD_KIND_CASH: ledger_pb2.ACCOUNT_TYPE_DRIVER_CASH,
    pb.REWARD_KIND_NOVA: ledger_pb2.ACCOUNT_TYPE_DRIVER_NOVA,
}


def ledger_currency(reward_kind: int) -> int:
    """The currency of a campaign's budget account and of its grants (1 Nova = 1 cent, so amounts are equal)."""
    return _CURRENCY[reward_kind]


def grant_transfer_request(grant: sa.RowMapping, campaign: sa.RowMapping) -> ledger_pb2.PostTransferRequest:
    """The ledger transfer of a grant. Built only from stored rows, so every attempt (the relay's, a
    clawback's) sends the identical request and the ledger's idempotency answers the original transfer."""
    kind = grant["reward_kind"]
    currency = _CURRENCY[kind]
    return ledger_pb2.PostTransferRequest(
        idempotency_key=f"{LEDGER_SCOPE_KEY_PREFIX}{grant['id']}",
        kind=ledger_pb2.TRANSFER_KIND_CAMPAIGN_GRANT,
        currency=currency,  # type: ignore[arg-type]
        amount=grant["amount_cents"],
        from_account=ledger_pb2.AccountRef(
            type=ledger_pb2.ACCOUNT_TYPE_CAMPAIGN_BUDGET,
            owner_id=str(grant["campaign_id"]),
            currency=currency,  # type: ignore[arg-type]
        ),
        to_account=ledger_pb2.AccountRef(
            type=_DRIVER_ACCOUNT[kind],  # type: ignore[arg-type]
            owner_id=grant["driver_id"],
            currency=currency,  # type: ignore[arg-type]
        ),
        metadata=ledger_pb2.TransferMetadata(
            campaign_id=str(grant["campaign_id"]),
            campaign_name=campaign["name"][:200],
            sponsor_id=campaign["created_by_user_id"],
            sponsor_name=campaign["sponsor_name"][:200],
            grant_id=str(grant["id"]),
            session_id=str(grant["session_id"]),
            description=f"Earned from {campaign['name']}"[:300],
        ),
    )


@dataclasses.dataclass(frozen=True)
class EvaluationResult:
    response: pb.EvaluateSessionResponse
    campaign_changed: bool  # a grant consumed budget: the index should look again


class Granting:
    def __init__(
        self,
        engine: AsyncEngine,
        index: CampaignIndex,
        ledger: ledger_pb2_grpc.LedgerServiceAsyncStub,
        *,
        accounts: accounts_pb2_grpc.AccountsServiceAsyncStub | None = None,
        clock: Callable[[], datetime.datetime] = lambda: datetime.datetime.now(datetime.UTC),
    ) -> None:
        self._engine = engine
        self._index = index
        self._ledger = ledger
        self._accounts = accounts
        self._clock = clock
        self.relay: OutboxRelay | None = None

    # --- evaluation ----------------------------------------------------------------------------------------

    async def evaluate(self, session: pb.EndedSession) -> pb.EvaluateSessionResponse:
        snapshot = session.SerializeToString(deterministic=True)
        facts = domain.SessionFacts.from_proto(session, driver_email=await self._email_if_needed(session))
        for attempt in range(5):
            try:
                result = await self._evaluate_once(session, snapshot, facts)
                break
            except sa.exc.DBAPIError as exc:
                # A deadlock or serialization failure is PostgreSQL asking us to try again; anything else is real.
                if getattr(exc.orig, "sqlstate", None) not in ("40001", "40P01") or attempt == 4:
                    raise
                await asyncio.sleep(0.01 * (attempt + 1))
        reply = result.response
        if not reply.replayed:
            EVALUATIONS.labels(pb.EvaluationOutcome.Name(reply.outcome)).inc()
            CANDIDATES_TRIED.observe(len(reply.candidates))
            if reply.outcome == pb.EVALUATION_OUTCOME_GRANTED:
                GRANTED.labels(pb.RewardKind.Name(reply.grant.reward_kind)).inc(reply.grant.amount_cents)
        granted = result.response.outcome == pb.EVALUATION_OUTCOME_GRANTED and not result.response.replayed
        if granted and self.relay is not None:
            self.relay.wake()
        if result.campaign_changed:
            self._index.changed()
        return result.response

    async def _email_if_needed(self, session: pb.EndedSession) -> str:
        """The driver's email, looked up (before any lock is taken) only when a campaign that could pay this
        session has an allowlist naming emails."""
        place = domain.SessionFacts.from_proto(session)
        return await self.driver_email_for(session.driver_id, self._index.candidates_for(place))

    async def driver_email_for(
        self, driver_id: str, campaigns: Iterable[domain.CampaignCandidate | IndexedCampaign]
    ) -> str:
        """The driver's email when one of these campaigns has an allowlist naming emails, else "" (no call)."""
        rules = (c.candidate.rules if isinstance(c, IndexedCampaign) else c.rules for c in campaigns)
        if self._accounts is None or not any(domain.allowlist_has_emails(r) for r in rules):
            return ""
        try:
            reply = await self._accounts.GetUser(accounts_pb2.GetUserRequest(user_id=driver_id))
        except grpc.aio.AioRpcError as error:
            if error.code() == grpc.StatusCode.NOT_FOUND:
                return ""
            # Judging the allowlist without the email could refuse a driver who is on it; sessions retries.
            raise Unavailable("ACCOUNTS_UNAVAILABLE", "the driver's email could not be read; retry") from error
        return reply.user.email

    async def _evaluate_once(
        self, session: pb.EndedSession, snapshot: bytes, facts: domain.SessionFacts
    ) -> EvaluationResult:
        session_id = uuid.UUID(session.session_id)
        async with self._engine.begin() as conn:
            await conn.execute(
                sa.select(sa.func.pg_advisory_xact_lock(sa.func.hashtextextended("driver:" + session.driver_id, 0)))
            )
            earlier = (
                await conn.execute(
                    sa.select(E.c.end_sequence, E.c.snapshot, E.c.response)
                    .where(E.c.session_id == session_id)
                    .order_by(E.c.end_sequence.desc())
                )
            ).all()
            for row in earlier:
                if row.end_sequence == session.end_sequence:
                    if bytes(row.snapshot) != snapshot:
                        raise Aborted(
                            "IDEMPOTENCY_KEY_REUSED",
                            "this session and end_sequence were evaluated with a different snapshot",
                            {"session_id": session.session_id, "end_sequence": str(session.end_sequence)},
                        )
                    replay = pb.EvaluateSessionResponse.FromString(row.response)
                    replay.replayed = True
                    return EvaluationResult(replay, campaign_changed=False)
            if earlier and earlier[0].end_sequence > session.end_sequence:
                return EvaluationResult(
                    pb.EvaluateSessionResponse(outcome=pb.EVALUATION_OUTCOME_SUPERSEDED), campaign_changed=False
                )
            response, grant_id, base_points = await self._decide(conn, session, facts, session_id)
            await conn.execute(
                sa.insert(E).values(
                    session_id=session_id,
                    end_sequence=session.end_sequence,
                    driver_id=session.driver_id,
                    snapshot=snapshot,
                    outcome=response.outcome,
                    grant_id=grant_id,
                    response=response.SerializeToString(),
                    base_points=base_points,
                    session_start=facts.started_at,
                    session_end=facts.ended_at,
                    duration_minutes=facts.duration_minutes,
                )
            )
        return EvaluationResult(response, campaign_changed=response.outcome == pb.EVALUATION_OUTCOME_GRANTED)

    async def _decide(
        self, conn: AsyncConnection, session: pb.EndedSession, facts: domain.SessionFacts, session_id: uuid.UUID
    ) -> tuple[pb.EvaluateSessionResponse, uuid.UUID | None, int]:
        """The outcome for a session not evaluated before: (answer, grant id, base reputation points)."""
        kept = (
            (await conn.execute(store.GRANT_WITH_CAMPAIGN_NAME.where(G.c.session_id == session_id, store.LIVE_GRANT)))
            .mappings()
            .first()
        )
        if kept is not None:
            # The session was reopened and ended again. Its earlier grant stands (its credit may already be
            # spent); never a second one for the same charging.
            grant = store.grant_message(kept, kept["campaign_name"])
            return (
                pb.EvaluateSessionResponse(outcome=pb.EVALUATION_OUTCOME_PREVIOUS_GRANT_KEPT, grant=grant),
                kept["id"],
                0,
            )
        if facts.duration_minutes < domain.MIN_EVALUATED_DURATION_MINUTES:
            return pb.EvaluateSessionResponse(outcome=pb.EVALUATION_OUTCOME_SESSION_TOO_SHORT), None, 0
        now = self._clock()
        tried: list[pb.CandidateResult] = []
        for candidate in domain.rank_candidates(self._index.candidates_for(facts), now):
            failure = domain.first_failed_rule(candidate.rules, facts, candidate.time_zone)
            if failure is None and _has_caps(candidate.caps):
                failure = domain.caps_allow(candidate.caps, await _driver_usage(conn, candidate, facts))
            failure = failure or domain.budget_allows(candidate)
            if failure is None:
                granted = await self._consume_and_grant(
                    conn, candidate, session=session, facts=facts, session_id=session_id, now=now
                )
                if isinstance(granted, domain.Failure):
                    failure = granted
                else:
                    tried.append(
                        domain.CandidateOutcome(
                            candidate.campaign_id, candidate.name, candidate.priority, None
                        ).to_proto()
                    )
                    points = domain.reputation_points_for_session(
                        granted.amount_cents, facts.duration_minutes, facts.quality_score
                    )
                    response = pb.EvaluateSessionResponse(
                        outcome=pb.EVALUATION_OUTCOME_GRANTED,
                        grant=granted,
                        candidates=tried,
                        reputation_points_awarded=points,
                    )
                    return response, uuid.UUID(granted.id), 0
            tried.append(
                domain.CandidateOutcome(candidate.campaign_id, candidate.name, candidate.priority, failure).to_proto()
            )
        points = domain.reputation_points_for_session(None, facts.duration_minutes, facts.quality_score)
        response = pb.EvaluateSessionResponse(
            outcome=pb.EVALUATION_OUTCOME_NO_MATCH, candidates=tried, reputation_points_awarded=points
        )
        return response, None, points

    async def _consume_and_grant(
        self,
        conn: AsyncConnection,
        candidate: domain.CampaignCandidate,
        *,
        session: pb.EndedSession,
        facts: domain.SessionFacts,
        session_id: uuid.UUID,
        now: datetime.datetime,
    ) -> pb.Grant | domain.Failure:
        """Consumes one reward of the campaign's budget and session count and records the grant with its
        outbox row — or, when the database refuses (a concurrent grant took the last reward, the campaign was
        paused), says why from the campaign's current row."""
        campaign_id = uuid.UUID(candidate.campaign_id)
        reward = C.c.cost_per_session_cents
        consumed = (
            await conn.execute(
                sa.update(C)
                .where(
                    C.c.id == campaign_id,
                    C.c.status == pb.CAMPAIGN_STATUS_ACTIVE,
                    C.c.start_date <= now,
                    sa.or_(C.c.end_date.is_(None), C.c.end_date >= now),
                    C.c.spent_cents + reward <= C.c.budget_cents,
                    sa.or_(C.c.max_sessions.is_(None), C.c.sessions_granted < C.c.max_sessions),
                )
                .values(
                    spent_cents=C.c.spent_cents + reward,
                    sessions_granted=C.c.sessions_granted + 1,
                    # The grant that leaves less than one reward (or reaches max_sessions) exhausts the campaign.
                    status=sa.case(
                        (
                            sa.or_(
                                C.c.budget_cents - (C.c.spent_cents + reward) < reward,
                                sa.and_(C.c.max_sessions.is_not(None), C.c.sessions_granted + 1 >= C.c.max_sessions),
                            ),
                            pb.CAMPAIGN_STATUS_EXHAUSTED,
                        ),
                        else_=C.c.status,
                    ),
                )
                .returning(C.c.name, C.c.reward_kind, C.c.cost_per_session_cents)
            )
        ).first()
        if consumed is None:
            return await _why_not_granted(conn, campaign_id)
        grant_id = uuid.uuid4()
        values = {
            "id": grant_id,
            "session_id": session_id,
            "end_sequence": session.end_sequence,
            "campaign_id": campaign_id,
            "driver_id": session.driver_id,
            "amount_cents": consumed.cost_per_session_cents,
            "reward_kind": consumed.reward_kind,
            "status": pb.GRANT_STATUS_PENDING,
            "charger_id": session.charger_id,
            "duration_minutes": session.duration_minutes,
            "session_start": facts.started_at,
            "campaign_local_day": domain.local_day(facts.started_at, candidate.time_zone),
        }
        row = (await conn.execute(sa.insert(G).values(**values).returning(G))).mappings().one()
        await enqueue(conn, store.outbox, GRANT_CREDIT_TOPIC, str(grant_id), {"grant_id": str(grant_id)})
        return store.grant_message(row, consumed.name)

    # --- the ledger credit (outbox relay) ------------------------------------------------------------------

    async def deliver_credit(self, message: OutboxMessage) -> None:
        """Posts a grant's ledger transfer (idempotent on the grant id) and marks the grant granted."""
        grant_id = uuid.UUID(str(message.payload["grant_id"]))
        async with self._engine.connect() as conn:
            row = (
                (
                    await conn.execute(
                        sa.select(G, C.c.name, C.c.created_by_user_id, C.c.sponsor_name)
                        .join(C, C.c.id == G.c.campaign_id)
                        .where(G.c.id == grant_id)
                    )
                )
                .mappings()
                .first()
            )
        if row is None:
            raise PermanentDeliveryError(f"grant {grant_id} does not exist")
        try:
            reply = await self._ledger.PostTransfer(grant_transfer_request(row, row))
        except grpc.aio.AioRpcError as error:
            if error.code() in (
                grpc.StatusCode.INVALID_ARGUMENT,
                grpc.StatusCode.ABORTED,
                grpc.StatusCode.PERMISSION_DENIED,
            ):
                raise PermanentDeliveryError(f"ledger refused grant {grant_id}: {error.details()}") from error
            # FAILED_PRECONDITION (the budget account not funded yet), UNAVAILABLE, deadlines: try again later.
            raise
        async with self._engine.begin() as conn:
            await conn.execute(
                sa.update(G)
                .where(G.c.id == grant_id, G.c.status == pb.GRANT_STATUS_PENDING)
                .values(status=pb.GRANT_STATUS_GRANTED, ledger_transfer_id=uuid.UUID(reply.transfer.id))
            )

    # --- clawback ------------------------------------------------------------------------------------------

    async def claw_back(
        self, grant_id: uuid.UUID, reason: str, request_id: uuid.UUID, actor: str
    ) -> pb.ClawbackGrantResponse:
        async with self._engine.connect() as conn:
            row = (
                (
                    await conn.execute(
                        sa.select(
                            G, C.c.name, C.c.created_by_user_id, C.c.sponsor_name, C.c.budget_cents, C.c.spent_cents
                        )
                        .join(C, C.c.id == G.c.campaign_id)
                        .where(G.c.id == grant_id)
                    )
                )
                .mappings()
                .first()
            )
        if row is None:
            raise NotFound("GRANT_NOT_FOUND", "no grant with that id", {"grant_id": str(grant_id)})
        if row["status"] == pb.GRANT_STATUS_CLAWED_BACK:
            return pb.ClawbackGrantResponse(
                grant=store.grant_message(row, row["name"]),
                campaign_remaining_cents=int(row["budget_cents"] - row["spent_cents"]),
            )
        try:
            # The credit may still sit in the outbox: posting it here is the same idempotent request, so the
            # ledger answers the one transfer whichever of us comes first.
            posted = await self._ledger.PostTransfer(grant_transfer_request(row, row))
            await self._ledger.ReverseTransfer(
                ledger_pb2.ReverseTransferRequest(
                    idempotency_key=f"{CLAWBACK_KEY_PREFIX}{grant_id}",
                    transfer_id=posted.transfer.id,
                    reason=reason,
                    metadata=ledger_pb2.TransferMetadata(
                        grant_id=str(grant_id), campaign_id=str(row["campaign_id"]), reason=reason[:500], actor_id=actor
                    ),
                )
            )
        except grpc.aio.AioRpcError as error:
            if error.code() == grpc.StatusCode.FAILED_PRECONDITION:
                raise FailedPrecondition(
                    "GRANT_ALREADY_SPENT",
                    "the driver already spent or withdrew this reward; the ledger cannot reverse it",
                    {"grant_id": str(grant_id)},
                ) from error
            if error.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                raise Unavailable(
                    "LEDGER_UNAVAILABLE", "the ledger did not answer; retry with the same request_id"
                ) from error
            raise
        async with self._engine.begin() as conn:
            updated = (
                await conn.execute(
                    sa.update(G)
                    .where(G.c.id == grant_id, G.c.status != pb.GRANT_STATUS_CLAWED_BACK)
                    .values(
                        status=pb.GRANT_STATUS_CLAWED_BACK,
                        ledger_transfer_id=uuid.UUID(posted.transfer.id),
                        clawed_back_at=sa.func.now(),
                        clawback_reason=reason,
                        clawback_request_id=request_id,
                        clawed_back_by=actor,
                    )
                    .returning(G.c.amount_cents)
                )
            ).first()
            if updated is not None:
                reward = C.c.cost_per_session_cents
                await conn.execute(
                    sa.update(C)
                    .where(C.c.id == row["campaign_id"])
                    .values(
                        spent_cents=C.c.spent_cents - updated.amount_cents,
                        sessions_granted=C.c.sessions_granted - 1,
                        # The refund may let an exhausted campaign pay again.
                        status=sa.case(
                            (
                                sa.and_(
                                    C.c.status == pb.CAMPAIGN_STATUS_EXHAUSTED,
                                    C.c.budget_cents - (C.c.spent_cents - updated.amount_cents) >= reward,
                                    sa.or_(C.c.max_sessions.is_(None), C.c.sessions_granted - 1 < C.c.max_sessions),
                                ),
                                pb.CAMPAIGN_STATUS_ACTIVE,
                            ),
                            else_=C.c.status,
                        ),
                    )
                )
            final = (
                (
                    await conn.execute(
                        store.GRANT_WITH_CAMPAIGN_NAME.add_columns(C.c.budget_cents, C.c.spent_cents).where(
                            G.c.id == grant_id
                        )
                    )
                )
                .mappings()
                .one()
            )
        self._index.changed()
        return pb.ClawbackGrantResponse(
            grant=store.grant_message(final, final["campaign_name"]),
            campaign_remaining_cents=int(final["budget_cents"] - final["spent_cents"]),
        )


def _has_caps(caps: domain.DriverCaps) -> bool:
    return caps.per_day is not None or caps.per_campaign is not None or caps.per_charger is not None


async def _driver_usage(
    conn: AsyncConnection, candidate: domain.CampaignCandidate, facts: domain.SessionFacts
) -> domain.DriverUsage:
    """The driver's live grants of the campaign. Exact: the caller holds the driver's lock, under which every
    grant of this driver is made."""
    day = domain.local_day(facts.started_at, candidate.time_zone)
    live = sa.and_(
        G.c.driver_id == facts.driver_id, G.c.campaign_id == uuid.UUID(candidate.campaign_id), store.LIVE_GRANT
    )
    row = (
        await conn.execute(
            sa.select(
                sa.func.count().filter(G.c.campaign_local_day == day).label("on_day"),
                sa.func.count().label("in_campaign"),
                sa.func.count()
                .filter(sa.and_(G.c.charger_id == facts.charger_id, G.c.charger_id != ""))
                .label("at_charger"),
            ).where(live)
        )
    ).one()
    return domain.DriverUsage(
        grants_on_day=row.on_day, grants_in_campaign=row.in_campaign, grants_at_charger=row.at_charger
    )


async def _why_not_granted(conn: AsyncConnection, campaign_id: uuid.UUID) -> domain.Failure:
    row = (
        await conn.execute(
            sa.select(
                C.c.status,
                C.c.budget_cents,
                C.c.spent_cents,
                C.c.cost_per_session_cents,
                C.c.max_sessions,
                C.c.sessions_granted,
            ).where(C.c.id == campaign_id)
        )
    ).one()
    if row.max_sessions is not None and row.sessions_granted >= row.max_sessions:
        return domain.Failure(
            domain.RF.RULE_FAILURE_MAX_SESSIONS_REACHED,
            f"{row.sessions_granted} of at most {row.max_sessions} sessions already granted",
        )
    remaining = row.budget_cents - row.spent_cents
    if remaining < row.cost_per_session_cents:
        return domain.Failure(
            domain.RF.RULE_FAILURE_BUDGET_EXHAUSTED,
            f"remaining budget {remaining}¢ < reward {row.cost_per_session_cents}¢",
        )
    # Paused, or past its end date, since the index last looked. The contract has no failure for "stopped";
    # for the driver it is the same as no budget left here, and the detail says what happened.
    if row.status != pb.CAMPAIGN_STATUS_ACTIVE:
        why = f"campaign is {pb.CampaignStatus.Name(row.status).removeprefix('CAMPAIGN_STATUS_').lower()}"
    else:
        why = "campaign is outside its dates"
    return domain.Failure(domain.RF.RULE_FAILURE_BUDGET_EXHAUSTED, f"{why} and cannot pay now")
