"""Merchants configuration, read once at start."""

from __future__ import annotations

import dataclasses

from services.common.config import ConfigError, Env, RuntimeSettings, Secret


def checkout_page_template(template: str) -> str:
    """CHECKOUT_PAGE_URL as given, once it is an http(s) URL with exactly one {token}."""
    if not template.startswith(("https://", "http://")) or template.count("{token}") != 1:
        raise ConfigError(f"CHECKOUT_PAGE_URL must be an http(s) URL with one {{token}}, got {template!r}")
    return template


@dataclasses.dataclass(frozen=True)
class MerchantsSettings:
    runtime: RuntimeSettings
    # The page a printed QR code opens on a phone: the driver app's checkout route, "{token}" standing for the
    # merchant's QR token (the page then calls GET /v1/checkout/qr/{token}). Declared here once; qr_url answers,
    # the printed sign and onboarding all use checkout_url().
    checkout_page_url: str
    # The merchant portal (Square sends the browser back there) and the acquisition preview page.
    portal_base_url: str
    # Preview links are signed with a key of their own (the first implementation fell back to the JWT secret 🐞).
    preview_signing_key: Secret
    # Square OAuth application and API (the local fake in tests and `make run`).
    square_application_id: str
    square_application_secret: Secret
    square_base_url: str
    square_redirect_uri: str
    square_timeout_s: float
    # Fernet keys of the Square tokens at rest, comma-separated, the first one current (MultiFernet rotation).
    square_token_keys: Secret
    # PENDING redemptions (the ledger's answer was lost) older than this are settled by the worker, with the
    # same idempotency key, every `settle_every_s`.
    settle_after_s: float
    settle_every_s: float
    # ACTIVE exclusive sessions past their window are marked EXPIRED this often (reads also expire lazily).
    expire_exclusives_every_s: float
    # Expired single-use states (Square OAuth states) are deleted an hour past their expiry, this often
    # (services/common/sweeps.py).
    expired_state_sweep_s: float
    # Google Places (the local fake in tests and `make run`): the funnel's business search and store listings.
    # The same variables as the sessions service's geocoder.
    places_api_key: Secret
    places_api_base: str
    places_timeout_s: float

    @classmethod
    def from_env(cls, env: Env | None = None) -> MerchantsSettings:
        env = env or Env()
        return cls(
            runtime=RuntimeSettings.from_env("merchants", env),
            checkout_page_url=checkout_page_template(
                env.str("CHECKOUT_PAGE_URL", "http://localhost:5173/checkout?token={token}")
            ),
            portal_base_url=env.str("MERCHANT_PORTAL_URL", "http://localhost:5175").rstrip("/"),
            # Development keys only: production sets its own.
            preview_signing_key=env.secret("PREVIEW_SIGNING_KEY", "dev-only-preview-signing-key"),
            square_application_id=env.str("SQUARE_APPLICATION_ID", "sq0idp-dev"),
            square_application_secret=env.secret("SQUARE_APPLICATION_SECRET", "sq0csp-dev"),
            square_base_url=env.str("SQUARE_API_BASE", "https://connect.squareup.com").rstrip("/"),
            square_redirect_uri=env.str("SQUARE_REDIRECT_URI", "http://localhost:5175/square/callback"),
            square_timeout_s=env.float("SQUARE_TIMEOUT_S", 10.0),
            square_token_keys=env.secret("SQUARE_TOKEN_KEYS", "ZGV2LW9ubHktc3F1YXJlLXRva2VuLWtleS0zMmJ5dGU="),
            settle_after_s=env.float("REDEMPTION_SETTLE_AFTER_S", 10.0),
            settle_every_s=env.float("REDEMPTION_SETTLE_EVERY_S", 5.0),
            expire_exclusives_every_s=env.float("EXPIRE_EXCLUSIVES_EVERY_S", 30.0),
            expired_state_sweep_s=env.float("EXPIRED_STATE_SWEEP_S", 600.0),
            places_api_key=env.secret("GOOGLE_PLACES_API_KEY", ""),
            places_api_base=env.str("GOOGLE_PLACES_API_BASE", "https://places.googleapis.com"),
            places_timeout_s=env.float("GOOGLE_PLACES_TIMEOUT_S", 5.0),
        )
