"""Ledger configuration, read once at start."""

from __future__ import annotations

import dataclasses

from services.common.config import Env, RuntimeSettings, Secret


@dataclasses.dataclass(frozen=True)
class LedgerSettings:
    runtime: RuntimeSettings
    stripe_api_key: Secret
    stripe_base_url: str  # https://api.stripe.com in production; the local fake in tests and `make run`
    stripe_webhook_secret: Secret
    stripe_timeout_s: float  # per attempt; a transfer whose answer does not come in time becomes `unknown`
    stripe_max_retries: int
    # Origins the Stripe onboarding return/refresh URLs may point at (the driver app).
    redirect_origins: tuple[str, ...]
    reconcile_interval_s: float
    # A payout is asked about only after the client's own retries of the lost call are surely over.
    reconcile_after_s: float
    # The cross-service money reconciliation (services/reconcile): how often, over how many past hours; 0 = off.
    money_reconcile_every_s: float
    money_reconcile_window_h: float
    # The outbox relay (campaign funding → incentives): how often it looks for due rows when nobody woke
    # it, and the longest wait between two attempts of a row the receiver did not take.
    outbox_poll_s: float
    outbox_max_backoff_s: float
    # Deliveries still failing after this many attempts go to the dead-letter list (`make outbox`).
    outbox_max_attempts: int

    @classmethod
    def from_env(cls, env: Env | None = None) -> LedgerSettings:
        env = env or Env()
        return cls(
            runtime=RuntimeSettings.from_env("ledger", env),
            stripe_api_key=env.secret("STRIPE_API_KEY", "sk_test_local"),
            stripe_base_url=env.str("STRIPE_API_BASE", "https://api.stripe.com"),
            stripe_webhook_secret=env.secret("STRIPE_WEBHOOK_SECRET", "whsec_local"),
            stripe_timeout_s=env.float("STRIPE_TIMEOUT_S", 10.0),
            stripe_max_retries=env.int("STRIPE_MAX_RETRIES", 2),
            redirect_origins=env.list("WALLET_REDIRECT_ORIGINS", ("http://localhost:5173", "http://127.0.0.1:5173")),
            reconcile_interval_s=env.float("PAYOUT_RECONCILE_INTERVAL_S", 30.0),
            reconcile_after_s=env.float("PAYOUT_RECONCILE_AFTER_S", 60.0),
            money_reconcile_every_s=env.float("MONEY_RECONCILE_EVERY_S", 300.0),
            money_reconcile_window_h=env.float("MONEY_RECONCILE_WINDOW_H", 24.0),
            outbox_poll_s=env.float("OUTBOX_POLL_S", 0.5),
            outbox_max_backoff_s=env.float("OUTBOX_MAX_BACKOFF_S", 60.0),
            outbox_max_attempts=env.int("OUTBOX_MAX_ATTEMPTS", 20),
        )
