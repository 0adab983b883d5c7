"""Signing in with a one-time code sent by SMS or email (the driver app's phone and email login, the sponsor
console's email login): the code's limits (otp_limits.py), the provider that sends and checks it, and the account
found or created for the phone or address once the code is right.

Transport-free: the servicer hands in the normalized phone or address and the client's IP; these functions own
their transaction and raise domain errors.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence

import prometheus_client
from nerava.accounts.v1 import accounts_pb2
from sqlalchemy.ext.asyncio import AsyncEngine

from services.accounts import domain, store
from services.accounts.adapters.otp import Channel, OtpProvider, OtpProviderError
from services.accounts.otp_limits import OtpLimits, StartDecision
from services.accounts.reasons import Reason
from services.accounts.tokens import SignedIn, Tokens
from services.common.errors import FailedPrecondition, PermissionDenied, ResourceExhausted, Unauthenticated, Unavailable

# Codes asked for, by channel and what became of the request: an SMS costs money, and a surge of sends is the
# mark of SMS pumping (deploy/k8s/components/monitoring alerts on the rate).
OTP_SENDS = prometheus_client.Counter(
    "nerava_otp_sends_total", "One-time login codes requested, by channel and result.", ["channel", "result"]
)


class OtpLogin:
    def __init__(self, engine: AsyncEngine, *, otp: OtpProvider, limits: OtpLimits, tokens: Tokens) -> None:
        self._engine = engine
        self._otp = otp
        self._limits = limits
        self._tokens = tokens

    async def start(self, channel: Channel, identity: str, client_ip: str) -> None:
        """Sends a code to the phone or address, within the limits per identity and per client IP."""
        decision = await self._limits.try_start(identity, client_ip)
        if decision is StartDecision.LOCKED:
            OTP_SENDS.labels(channel.value, "locked").inc()
            raise ResourceExhausted(Reason.OTP_LOCKED, "too many wrong codes; try again later")
        if decision is StartDecision.RATE_LIMITED:
            OTP_SENDS.labels(channel.value, "rate_limited").inc()
            # One message for every limit: it must not reveal which limit (phone or IP) was hit.
            raise ResourceExhausted(Reason.OTP_RATE_LIMITED, "too many codes requested; try again later")
        try:
            await self._otp.send_code(channel, identity)
            OTP_SENDS.labels(channel.value, "sent").inc()
        except OtpProviderError as exc:
            OTP_SENDS.labels(channel.value, "provider_failed").inc()
            if exc.retryable:
                raise Unavailable(Reason.OTP_PROVIDER_FAILED, "the code could not be sent; try again") from exc
            raise FailedPrecondition(Reason.OTP_PROVIDER_FAILED, "the code could not be sent to this address") from exc

    async def verify(
        self, channel: Channel, identity: str, code: str, initial_roles: Sequence[str] = (domain.DRIVER,)
    ) -> SignedIn:
        """Checks the code; the account of the phone or address (created with ``initial_roles`` on its first
        login) signs in with a new token family."""
        if await self._limits.is_locked(identity):
            raise ResourceExhausted(Reason.OTP_LOCKED, "too many wrong codes; try again later")
        try:
            valid = await self._otp.check_code(channel, identity, code)
        except OtpProviderError as exc:
            raise Unavailable(Reason.OTP_PROVIDER_FAILED, "the code could not be checked; try again") from exc
        if not valid:
            if await self._limits.record_wrong_code(identity):
                raise ResourceExhausted(Reason.OTP_LOCKED, "too many wrong codes; try again later")
            raise Unauthenticated(Reason.INVALID_CODE, "the code is wrong or expired")
        await self._limits.clear_wrong_codes(identity)
        async with self._engine.begin() as conn:
            if channel is Channel.SMS:
                phone, email, auth_provider = identity, None, accounts_pb2.AUTH_PROVIDER_PHONE
            else:
                phone, email, auth_provider = None, identity, accounts_pb2.AUTH_PROVIDER_EMAIL
            user, created = await store.get_or_create_user(
                conn, phone=phone, email=email, auth_provider=auth_provider, initial_roles=initial_roles
            )
            if not user.active:
                raise PermissionDenied(Reason.USER_INACTIVE, "this account is deactivated")
            tokens = await self._tokens.issue(conn, user, family_id=uuid.uuid4())
        return SignedIn(user, tokens, created)
