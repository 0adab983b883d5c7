"""One-time codes for phone and email login.

In production Twilio Verify generates, delivers, stores and checks the code, so the accounts
service never sees or keeps a code: it asks for one to be sent and later asks whether what the
user typed is right. In development StubOtpProvider stands in and accepts one fixed code.
"""

from __future__ import annotations

import enum
import json
import logging
from collections.abc import Mapping
from types import TracebackType
from typing import Final, Protocol, Self
from urllib.parse import quote

import httpx

_log = logging.getLogger(__name__)


class Channel(enum.Enum):
    """How the code reaches the person logging in."""

    SMS = "sms"
    EMAIL = "email"


class OtpProviderError(Exception):
    """The provider refused the request or could not be reached.

    `retryable` tells the caller whether the same request may succeed later (outage, timeout,
    overload) or will fail the same way until something changes (bad credentials, an invalid
    phone number, the send limit for this recipient).
    """

    def __init__(
        self,
        message: str,
        *,
        retryable: bool,
        status_code: int | None = None,
        provider_code: int | None = None,
    ) -> None:
        super().__init__(message)
        self.retryable = retryable
        # Kept for logs and metrics; callers decide on `retryable` alone.
        self.status_code = status_code
        self.provider_code = provider_code


class OtpProvider(Protocol):
    """Sends one-time login codes and checks them.

    `to` is an E.164 phone number for SMS and an email address for EMAIL.
    """

    async def send_code(self, channel: Channel, to: str) -> None:
        """Send a fresh code to `to`; raises OtpProviderError when it cannot."""
        ...

    async def check_code(self, channel: Channel, to: str, code: str) -> bool:
        """True when `code` is the one sent to `to` and still usable.

        Wrong, expired, already-used and exhausted codes are all False: to the person logging in
        they mean the same thing, "ask for a new code". OtpProviderError means the provider
        could not answer at all.
        """
        ...

    async def aclose(self) -> None:
        """Release connections; call once at shutdown."""
        ...


# The wire values are Twilio's, not ours: keep the mapping explicit so renaming a product enum
# member can never change what is sent to Twilio.
_TWILIO_CHANNELS: Final[Mapping[Channel, str]] = {
    Channel.SMS: "sms",
    Channel.EMAIL: "email",
}

# Twilio accepts codes of 4 to 10 characters and answers anything else with 400/60200. For a login
# that is just a wrong code, so it is answered here rather than surfaced as a provider error.
_MIN_CODE_LENGTH: Final = 4
_MAX_CODE_LENGTH: Final = 10

# Twilio error codes the check endpoint uses when no pending verification exists for the recipient
# (expired, already approved, or too many wrong attempts): 20404 is the documented 404, 60202
# "max check attempts reached" is handled the same way should Twilio answer with it instead.
_NO_PENDING_VERIFICATION: Final = frozenset({20404, 60202})

# Max send attempts for this recipient: Twilio lifts it only when the pending verification expires
# (10 minutes), so retrying now cannot help even though the HTTP status is 429.
_SEND_LIMIT_REACHED: Final = 60203


class TwilioVerifyProvider:
    """OtpProvider backed by the Twilio Verify v2 REST API.

    One long-lived httpx.AsyncClient keeps TLS connections to Twilio warm across logins; it is
    created here and closed by `aclose`. Arguments are keyword-only because all three
    credentials are strings that are easy to swap by position.
    """

    def __init__(
        self,
        *,
        account_sid: str,
        auth_token: str,
        verify_service_sid: str,
        base_url: str = "https://verify.twilio.com",
        timeout: float = 5.0,
    ) -> None:
        if not (account_sid and auth_token and verify_service_sid):
            raise ValueError("Twilio account sid, auth token and Verify service sid are required")
        service_path = f"/v2/Services/{quote(verify_service_sid, safe='')}/"
        self._client = httpx.AsyncClient(
            base_url=base_url.rstrip("/") + service_path,
            auth=httpx.BasicAuth(account_sid, auth_token),
            headers={"Accept": "application/json"},
            # A login request is waiting on this call: fail fast and let the caller decide.
            timeout=timeout,
        )

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def send_code(self, channel: Channel, to: str) -> None:
        # Asking again while a verification is pending makes Twilio resend the same code, so a
        # retry after a timeout that did reach Twilio does not invalidate the first message.
        verification = await self._post("Verifications", {"To": to, "Channel": _TWILIO_CHANNELS[channel]})
        _log.info(
            "one-time code sent",
            extra={
                "verification_sid": verification.get("sid"),
                "channel": channel.value,
            },
        )

    async def check_code(self, channel: Channel, to: str, code: str) -> bool:
        # `channel` is not sent: Twilio keeps one pending verification per recipient, whichever
        # channel delivered it.
        if not _MIN_CODE_LENGTH <= len(code) <= _MAX_CODE_LENGTH:
            return False
        try:
            check = await self._post("VerificationCheck", {"To": to, "Code": code})
        except OtpProviderError as error:
            # A wrong Verify service sid also answers 20404 here; it cannot go unnoticed because
            # send_code fails loudly on the same misconfiguration before any check happens.
            if error.provider_code in _NO_PENDING_VERIFICATION:
                return False
            raise
        # "status" is authoritative; Twilio documents "valid" as legacy.
        return check.get("status") == "approved"

    async def aclose(self) -> None:
        await self._client.aclose()

    async def _post(self, endpoint: str, form: Mapping[str, str]) -> dict[str, object]:
        """POST `form` to a Verify endpoint and return Twilio's JSON object.

        The single boundary between Twilio and the rest of the service: every httpx exception
        and every Twilio error response becomes an OtpProviderError here, so nothing above this
        method knows about httpx or Twilio status codes.
        """
        try:
            response = await self._client.post(endpoint, data=form)
        except httpx.TimeoutException as exc:
            raise OtpProviderError(f"Twilio Verify {endpoint} timed out", retryable=True) from exc
        except (httpx.NetworkError, httpx.RemoteProtocolError) as exc:
            # Connection refused/reset or a broken response: the next attempt may reach a
            # healthy Twilio edge.
            raise OtpProviderError(f"Twilio Verify {endpoint} unreachable: {exc!r}", retryable=True) from exc
        except httpx.HTTPError as exc:
            # Bad URL scheme, proxy or client-side protocol misuse: configuration errors that
            # repeat identically.
            raise OtpProviderError(f"Twilio Verify {endpoint} request failed: {exc!r}", retryable=False) from exc

        try:
            decoded: object = json.loads(response.content)
        except ValueError:
            decoded = None
        body = decoded if isinstance(decoded, dict) else None
        status = response.status_code

        if response.is_success:
            if body is None:
                raise OtpProviderError(
                    f"Twilio Verify {endpoint} answered {status} without a JSON object",
                    retryable=False,
                    status_code=status,
                )
            return body

        raw_code = body.get("code") if body is not None else None
        provider_code = raw_code if isinstance(raw_code, int) else None
        message = body.get("message") if body is not None else None
        if status == 429:
            # Other 429s (account-wide concurrency, 20429) clear within seconds.
            retryable = provider_code != _SEND_LIMIT_REACHED
        else:
            # 5xx is Twilio's side; any other 4xx (401 credentials, 400 invalid number, 404
            # unknown service) will be refused again.
            retryable = status >= 500
        raise OtpProviderError(
            f"Twilio Verify {endpoint} refused: HTTP {status}, code {provider_code}: {message}",
            retryable=retryable,
            status_code=status,
            provider_code=provider_code,
        )


DEV_CODE: Final = "000000"


class StubOtpProvider:
    """Development-only OtpProvider that sends nothing and accepts exactly DEV_CODE.

    It must be switched on explicitly: a disabled stub refuses every send and check, so a
    production deployment that wires it by mistake fails closed instead of letting anyone in
    with 000000.
    """

    def __init__(self, *, enabled: bool) -> None:
        self._enabled = enabled

    async def send_code(self, channel: Channel, to: str) -> None:
        self._require_enabled()
        _log.warning(
            "stub OTP provider: no code sent; the development code is %s",
            DEV_CODE,
            extra={"channel": channel.value},
        )

    async def check_code(self, channel: Channel, to: str, code: str) -> bool:
        self._require_enabled()
        return code == DEV_CODE

    async def aclose(self) -> None:
        # Nothing to release; closing is allowed even when disabled so shutdown never fails.
        return None

    def _require_enabled(self) -> None:
        if not self._enabled:
            raise OtpProviderError("stub OTP provider is disabled", retryable=False)
