"""Accounts configuration, read once at start."""

from __future__ import annotations

import dataclasses

from services.accounts.domain import OtpPolicy, TokenPolicy
from services.common.config import ConfigError, Env, RuntimeSettings, Secret


@dataclasses.dataclass(frozen=True)
class AccountsSettings:
    runtime: RuntimeSettings
    otp_provider: str  # "twilio" in production; "stub" (accepts only 000000) for development
    stub_otp_enabled: bool  # the stub refuses every call unless this is switched on explicitly
    twilio_account_sid: str
    twilio_auth_token: Secret
    twilio_verify_service_sid: str
    twilio_base_url: str
    signing_key_passphrase: Secret
    otp: OtpPolicy
    tokens: TokenPolicy
    # Sign-in with Google and Apple: where each provider publishes its keys, and the client ids (audiences) this
    # deployment accepts; no client id = that sign-in is off. The key-set URLs default to the providers' own.
    google_jwks_url: str
    google_client_ids: tuple[str, ...]  # the driver app's
    merchant_google_client_ids: tuple[str, ...]  # the merchant portal's
    apple_jwks_url: str
    apple_client_ids: tuple[str, ...]
    # The claim link's email: SendGrid (no API key = claim links cannot be sent), and the portal page it opens.
    sendgrid_api_key: Secret
    sendgrid_base_url: str
    email_sender: str
    merchant_portal_url: str
    claim_link_ttl_s: int
    # Expired single-use states (the emailed claim links) are deleted an hour past their expiry, this often
    # (services/common/sweeps.py).
    expired_state_sweep_s: float

    @classmethod
    def from_env(cls, env: Env | None = None) -> AccountsSettings:
        env = env or Env()
        provider = env.str("OTP_PROVIDER", "twilio")
        if provider not in {"twilio", "stub"}:
            raise ConfigError(f"OTP_PROVIDER must be twilio or stub, got {provider!r}")
        return cls(
            runtime=RuntimeSettings.from_env("accounts", env),
            otp_provider=provider,
            stub_otp_enabled=env.bool("OTP_STUB_ENABLED", False),
            twilio_account_sid=env.str("TWILIO_ACCOUNT_SID", "")
            if provider == "stub"
            else env.str("TWILIO_ACCOUNT_SID"),
            twilio_auth_token=env.secret("TWILIO_AUTH_TOKEN", "")
            if provider == "stub"
            else env.secret("TWILIO_AUTH_TOKEN"),
            twilio_verify_service_sid=(
                env.str("TWILIO_VERIFY_SERVICE_SID", "") if provider == "stub" else env.str("TWILIO_VERIFY_SERVICE_SID")
            ),
            twilio_base_url=env.str("TWILIO_VERIFY_BASE_URL", "https://verify.twilio.com"),
            signing_key_passphrase=env.secret("ACCOUNTS_SIGNING_KEY_PASSPHRASE", "dev-only-signing-key-passphrase"),
            otp=OtpPolicy(
                starts_per_identity=env.int("OTP_STARTS_PER_IDENTITY", OtpPolicy.starts_per_identity),
                starts_per_ip=env.int("OTP_STARTS_PER_IP", OtpPolicy.starts_per_ip),
                start_window_s=env.int("OTP_START_WINDOW_S", OtpPolicy.start_window_s),
                max_wrong_codes=env.int("OTP_MAX_WRONG_CODES", OtpPolicy.max_wrong_codes),
                wrong_code_window_s=env.int("OTP_WRONG_CODE_WINDOW_S", OtpPolicy.wrong_code_window_s),
                lockout_s=env.int("OTP_LOCKOUT_S", OtpPolicy.lockout_s),
            ),
            tokens=TokenPolicy(
                access_ttl_s=env.int("ACCESS_TOKEN_TTL_S", TokenPolicy.access_ttl_s),
                refresh_ttl_s=env.int("REFRESH_TOKEN_TTL_S", TokenPolicy.refresh_ttl_s),
            ),
            google_jwks_url=env.str("GOOGLE_JWKS_URL", "https://www.googleapis.com/oauth2/v3/certs"),
            google_client_ids=env.list("GOOGLE_CLIENT_IDS"),
            merchant_google_client_ids=env.list("MERCHANT_GOOGLE_CLIENT_IDS"),
            apple_jwks_url=env.str("APPLE_JWKS_URL", "https://appleid.apple.com/auth/keys"),
            apple_client_ids=env.list("APPLE_CLIENT_IDS"),
            sendgrid_api_key=env.secret("SENDGRID_API_KEY", ""),
            sendgrid_base_url=env.str("SENDGRID_API_BASE", "https://api.sendgrid.com"),
            email_sender=env.str("EMAIL_SENDER", "no-reply@nerava.network"),
            merchant_portal_url=env.str("MERCHANT_PORTAL_URL", "https://merchant.nerava.network"),
            claim_link_ttl_s=env.int("CLAIM_LINK_TTL_S", 15 * 60),
            expired_state_sweep_s=env.float("EXPIRED_STATE_SWEEP_S", 600.0),
        )
