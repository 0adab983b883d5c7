"""The reconciliation as a background loop: a gauge per invariant (how many ids drift), for alerting."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import logging

import prometheus_client
from sqlalchemy.ext.asyncio import AsyncEngine

from services.reconcile.checks import INVARIANTS, StripeReads, reconcile

log = logging.getLogger(__name__)

DRIFT = prometheus_client.Gauge(
    "nerava_reconcile_drift", "Ids that break a cross-service money invariant, at the last run.", ["invariant"]
)
RUNS = prometheus_client.Counter("nerava_reconcile_runs_total", "Reconciliation runs, by result.", ["result"])


async def reconcile_forever(
    engine: AsyncEngine,
    stripe: StripeReads,
    stop: asyncio.Event,
    every_s: float,
    window: datetime.timedelta,
) -> None:
    """Every `every_s`, checks what was created in the last `window` and sets one gauge per invariant."""
    while not stop.is_set():
        now = datetime.datetime.now(datetime.UTC)
        try:
            report = await reconcile(engine, stripe, now=now, since=now - window)
        except Exception:
            log.exception("reconciliation failed; retrying next interval")
            RUNS.labels("error").inc()
        else:
            for name in INVARIANTS:
                DRIFT.labels(name).set(len(report.drift[name]))
            RUNS.labels("drift" if not report.holds else "ok").inc()
            if not report.holds:
                log.error(
                    "money drift between services", extra={"drift": {k: list(v) for k, v in report.drift.items() if v}}
                )
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=every_s)
