"""Background work of the sessions process: the outbox relay's hand-off of ended sessions to incentives, stale
cleanup, session partitions, the sweep of expired OAuth states."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging

import grpc
from google.protobuf import json_format
from nerava.incentives.v1 import incentives_pb2, incentives_pb2_grpc
from sqlalchemy.ext.asyncio import AsyncEngine

from services.common.outbox import OutboxMessage, PermanentDeliveryError
from services.common.server import Worker
from services.common.sweeps import expired_state_sweeper
from services.sessions import store
from services.sessions.retention import SessionPartitions
from services.sessions.tracking import SessionTracker

log = logging.getLogger(__name__)
# A session is stale 15 min after its last telemetry; checking every minute ends it within a minute of that.
# Its end time is the last telemetry whatever the delay, so the check's cadence never changes a duration.
STALE_CLEANUP_EVERY_S = 60.0


async def end_stale_sessions(tracker: SessionTracker, stop: asyncio.Event, every_s: float) -> None:
    """Ends stale sessions until `stop`. Safe on every replica: each end re-checks under the vehicle's lock."""
    while not stop.is_set():
        try:
            while await tracker.end_stale() > 0 and not stop.is_set():
                pass  # more than one batch was due
        except Exception:
            log.exception("stale cleanup failed; will try again")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=every_s)


async def maintain_partitions(partitions: SessionPartitions, stop: asyncio.Event, every_s: float) -> None:
    """Keeps charging_sessions' monthly partitions created ahead and archives then drops those past the retention,
    at start and every `every_s` until `stop`. Safe on every replica: one does each step, the others skip it."""
    while not stop.is_set():
        try:
            report = await partitions.run()
            if report.created or report.archived or report.archived_from_default:
                log.info(
                    "session partitions: %d created, %s archived and dropped, %d old default rows archived",
                    report.created,
                    report.archived or "none",
                    report.archived_from_default,
                )
        except Exception:
            log.exception("session partition maintenance failed; will try again")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=every_s)


def oauth_state_sweep(engine: AsyncEngine, every_s: float) -> Worker:
    """Deletes the Tesla and Smartcar consent and Tesla sign-in states an hour past their expiry, every `every_s`."""
    return expired_state_sweeper(
        "sessions", "oauth_states", functools.partial(store.delete_expired_oauth_states, engine), every_s
    )


class EvaluationHandOff:
    """The relay's handler for SESSION_ENDED_TOPIC: incentives.EvaluateSession, idempotent on the row's key."""

    def __init__(self, incentives: incentives_pb2_grpc.IncentivesServiceAsyncStub) -> None:
        self._incentives = incentives

    async def __call__(self, message: OutboxMessage) -> None:
        snapshot = json_format.ParseDict(dict(message.payload), incentives_pb2.EndedSession())
        try:
            await self._incentives.EvaluateSession(incentives_pb2.EvaluateSessionRequest(session=snapshot))
        except grpc.aio.AioRpcError as error:
            if error.code() in (
                grpc.StatusCode.INVALID_ARGUMENT,
                grpc.StatusCode.ABORTED,
                grpc.StatusCode.PERMISSION_DENIED,
            ):
                raise PermanentDeliveryError(f"incentives refused session {message.key}: {error.details()}") from error
            raise
