"""Sessions configuration, read once at start."""

from __future__ import annotations

import dataclasses

from services.common.config import ConfigError, Env, RuntimeSettings, Secret


@dataclasses.dataclass(frozen=True)
class SessionsSettings:
    runtime: RuntimeSettings
    # Fleet Telemetry pushes are signed with HMAC-SHA256 of the body under this secret. There is no unsigned
    # mode: without a secret the endpoint refuses everything (the original accepted unsigned pushes 🐞).
    tesla_telemetry_secret: Secret
    # Tesla Fleet API application (the local fake fleet in tests and `make run`).
    tesla_client_id: str
    tesla_client_secret: Secret
    tesla_redirect_uri: str
    # Where Tesla sends the browser after a Tesla *sign-in* consent: the driver app's sign-in screen, which posts
    # the code to /v1/auth/tesla/login (the connect flow's redirect is our callback, tesla_redirect_uri).
    tesla_sign_in_redirect_uri: str
    tesla_api_base: str
    tesla_auth_base: str
    # AES-256 keys of the vehicle tokens at rest: "id:base64key[,id:base64key…]", the first one current.
    vehicle_token_keys: Secret
    # Smartcar signs webhooks (and answers its verify challenge) with the application's management token.
    smartcar_management_token: Secret
    # Smartcar application (Connect, tokens, vehicle reads); without a client id Smartcar linking is off.
    smartcar_client_id: str
    smartcar_client_secret: Secret
    smartcar_redirect_uri: str
    smartcar_api_base: str
    smartcar_auth_base: str
    smartcar_connect_base: str
    # Pushes (Fleet Telemetry, Smartcar webhooks) older than this, or seen before (message id), are refused.
    push_max_age_s: float
    # The session watcher reads every active session's vehicle at least this often (services/sessions/watching.py)…
    session_watch_interval_s: float
    # … and a session without vehicle data for this long is ended stale, at its last telemetry.
    session_stale_after_s: float
    # Where the Tesla callback sends the browser back: the driver app.
    driver_app_url: str
    # At most one vehicle read per driver per window (Redis, shared by every replica).
    poll_window_s: float
    # Google Places (API New) geocodes the charger search's text; without a key, text matches names only.
    places_api_key: Secret
    places_api_base: str
    places_timeout_s: float
    # charging_sessions is partitioned by month (UTC). A month's partition is archived (charging_sessions_archive)
    # and dropped once the whole month is older than this many months; 0 keeps every session.
    session_retention_months: int
    # Partitions are kept created this many months ahead (a session of a month without one goes to the default).
    session_partition_months_ahead: int
    # How often the worker keeps partitions ahead and applies the retention (on every replica; one works at a time).
    session_partition_maintenance_s: float
    # Expired single-use states (Tesla and Smartcar consents, Tesla sign-ins) are deleted an hour past their expiry,
    # this often (services/common/sweeps.py).
    expired_state_sweep_s: float

    @classmethod
    def from_env(cls, env: Env | None = None) -> SessionsSettings:
        env = env or Env()
        watch = env.float("SESSION_WATCH_INTERVAL_S", 120.0)
        stale = env.float("SESSION_STALE_AFTER_S", 900.0)
        if not 0 < watch * 3 <= stale:
            # Three reads fit in the stale limit: a car that answers is never ended stale for one lost read.
            raise ConfigError(
                f"SESSION_WATCH_INTERVAL_S ({watch}) must be more than 0 and at most a third of "
                f"SESSION_STALE_AFTER_S ({stale})"
            )
        return cls(
            runtime=RuntimeSettings.from_env("sessions", env),
            tesla_telemetry_secret=env.secret("TESLA_TELEMETRY_HMAC_SECRET", ""),
            tesla_client_id=env.str("TESLA_CLIENT_ID", "dev-tesla-client"),
            tesla_client_secret=env.secret("TESLA_CLIENT_SECRET", "dev-tesla-secret"),
            tesla_redirect_uri=env.str("TESLA_REDIRECT_URI", "http://127.0.0.1:8080/v1/auth/tesla/callback"),
            tesla_api_base=env.str("TESLA_API_BASE", "https://fleet-api.prd.na.vn.cloud.tesla.com"),
            tesla_auth_base=env.str("TESLA_AUTH_BASE", "https://auth.tesla.com"),
            # A development key only: production sets its own.
            vehicle_token_keys=env.secret("VEHICLE_TOKEN_KEYS", "1:ZGV2LW9ubHktdmVoaWNsZS10b2tlbi1rZXktMzJieXQ="),
            smartcar_management_token=env.secret("SMARTCAR_MANAGEMENT_TOKEN", ""),
            smartcar_client_id=env.str("SMARTCAR_CLIENT_ID", ""),
            smartcar_client_secret=env.secret("SMARTCAR_CLIENT_SECRET", ""),
            smartcar_redirect_uri=env.str("SMARTCAR_REDIRECT_URI", "http://127.0.0.1:8080/v1/auth/smartcar/callback"),
            smartcar_api_base=env.str("SMARTCAR_API_BASE", "https://api.smartcar.com"),
            smartcar_auth_base=env.str("SMARTCAR_AUTH_BASE", "https://auth.smartcar.com"),
            smartcar_connect_base=env.str("SMARTCAR_CONNECT_BASE", "https://connect.smartcar.com"),
            push_max_age_s=env.float("PUSH_MAX_AGE_S", 300.0),
            session_watch_interval_s=watch,
            session_stale_after_s=stale,
            driver_app_url=env.str("DRIVER_APP_URL", "http://localhost:5173"),
            tesla_sign_in_redirect_uri=env.str(
                "TESLA_SIGN_IN_REDIRECT_URI", env.str("DRIVER_APP_URL", "http://localhost:5173") + "/tesla-callback"
            ),
            poll_window_s=env.float("POLL_WINDOW_S", 30.0),
            places_api_key=env.secret("GOOGLE_PLACES_API_KEY", ""),
            places_api_base=env.str("GOOGLE_PLACES_API_BASE", "https://places.googleapis.com"),
            places_timeout_s=env.float("GOOGLE_PLACES_TIMEOUT_S", 2.0),
            session_retention_months=_not_negative(env, "SESSION_RETENTION_MONTHS", 24),
            session_partition_months_ahead=_not_negative(env, "SESSION_PARTITION_MONTHS_AHEAD", 3),
            session_partition_maintenance_s=env.float("SESSION_PARTITION_MAINTENANCE_S", 3600.0),
            expired_state_sweep_s=env.float("EXPIRED_STATE_SWEEP_S", 600.0),
        )


def _not_negative(env: Env, name: str, default: int) -> int:
    value = env.int(name, default)
    if value < 0:
        raise ConfigError(f"{name} must be 0 or more, got {value}")
    return value
