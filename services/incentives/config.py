"""Incentives configuration, read once at start."""

from __future__ import annotations

import dataclasses

from services.common.config import Env, RuntimeSettings, Secret


@dataclasses.dataclass(frozen=True)
class IncentivesSettings:
    runtime: RuntimeSettings
    # DOMAIN: the platform keeps 20 % of the gross funding, once, at funding (basis points, 0-10 000).
    platform_fee_bps: int
    stripe_api_key: Secret
    stripe_base_url: str  # https://api.stripe.com in production; the local fake in tests and `make run`
    stripe_timeout_s: float
    stripe_max_retries: int
    # Where Stripe sends the sponsor back: the console's campaign page.
    console_base_url: str
    # How often each process reloads the campaigns changed elsewhere into its candidate index.
    index_poll_s: float
    # How often campaigns past their end date are marked ended.
    end_campaigns_every_s: float
    # Grant credits still failing after this many attempts go to the dead-letter list (`make outbox`).
    outbox_max_attempts: int

    @classmethod
    def from_env(cls, env: Env | None = None) -> IncentivesSettings:
        env = env or Env()
        fee_bps = env.int("PLATFORM_FEE_BPS", 2000)
        if not 0 <= fee_bps < 10_000:
            raise ValueError(f"PLATFORM_FEE_BPS must be in [0, 10000), got {fee_bps}")
        return cls(
            runtime=RuntimeSettings.from_env("incentives", env),
            platform_fee_bps=fee_bps,
            stripe_api_key=env.secret("STRIPE_API_KEY", "sk_test_local"),
            stripe_base_url=env.str("STRIPE_API_BASE", "https://api.stripe.com"),
            stripe_timeout_s=env.float("STRIPE_TIMEOUT_S", 10.0),
            stripe_max_retries=env.int("STRIPE_MAX_RETRIES", 2),
            console_base_url=env.str("CONSOLE_BASE_URL", "http://localhost:5174").rstrip("/"),
            index_poll_s=env.float("CAMPAIGN_INDEX_POLL_S", 0.5),
            end_campaigns_every_s=env.float("END_CAMPAIGNS_EVERY_S", 30.0),
            outbox_max_attempts=env.int("OUTBOX_MAX_ATTEMPTS", 20),
        )
