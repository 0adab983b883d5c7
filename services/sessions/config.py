"""Sessions configuration, read once at start."""

from __future__ import annotations

import dataclasses

from services.common.config import Env, RuntimeSettings, Secret


@dataclasses.dataclass(frozen=True)
class SessionsSettings:
    runtime: RuntimeSettings
    # Fleet Telemetry pushes are signed with HMAC-SHA256 of the body under this secret. There is no unsigned
    # mode: without a secret the endpoint refuses everything (the original accepted unsigned pushes 🐞).
    tesla_telemetry_secret: Secret
    telemetry_ingestion_enabled: bool

    @classmethod
    def from_env(cls, env: Env | None = None) -> SessionsSettings:
        env = env or Env()
        return cls(
            runtime=RuntimeSettings.from_env("sessions", env),
            tesla_telemetry_secret=env.secret("TESLA_TELEMETRY_HMAC_SECRET", ""),
            telemetry_ingestion_enabled=env.bool("TELEMETRY_INGESTION_ENABLED", True),
        )
