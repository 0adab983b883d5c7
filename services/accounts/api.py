"""The AccountsService servicer: authorize → validate (interceptors) → rules → store, errors mapped once."""

from __future__ import annotations

import datetime
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any

import grpc
import prometheus_client
from google.protobuf import timestamp_pb2
from nerava.accounts.v1 import accounts_pb2, accounts_pb2_grpc
from nerava.audit.v1 import audit_pb2
from nerava.sessions.v1 import sessions_pb2
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from services.accounts import domain, flags, store
from services.accounts.adapters.otp import Channel, OtpProvider, OtpProviderError
from services.accounts.audit_log import MergedAuditLog
from services.accounts.config import AccountsSettings
from services.accounts.keys import KeyRing
from services.accounts.otp_limits import OtpLimits, StartDecision
from services.accounts.reasons import Reason
from services.accounts.sign_in import APPLE, GOOGLE, ExternalSignIn
from services.common import audit
from services.common.context import client_ip_var, current_caller
from services.common.db import single_statement_reads
from services.common.errors import (
    FailedPrecondition,
    NotFound,
    PermissionDenied,
    ResourceExhausted,
    Unauthenticated,
    Unavailable,
)
from services.common.interceptors import BY_AN_ADMIN, OWN_DATA, PUBLIC_DATA, SIGNING_IN, Access
from services.common.paging import page_position, page_token
from services.common.revocation import TokenRevocations

SERVICE_NAME = accounts_pb2.DESCRIPTOR.services_by_name["AccountsService"].full_name

ACCESS: dict[str, Access] = {
    "StartPhoneLogin": Access.anyone().not_owned(SIGNING_IN),
    "VerifyPhoneLogin": Access.anyone().not_owned(SIGNING_IN),
    "StartEmailLogin": Access.anyone().not_owned(SIGNING_IN),
    "VerifyEmailLogin": Access.anyone().not_owned(SIGNING_IN),
    "RefreshToken": Access.anyone().not_owned(SIGNING_IN),
    "GetJwks": Access.anyone().not_owned(PUBLIC_DATA),
    "SignInWithGoogle": Access.anyone().not_owned(SIGNING_IN),
    "SignInWithApple": Access.anyone().not_owned(SIGNING_IN),
    "StartConsoleLogin": Access.anyone().not_owned(SIGNING_IN),
    "VerifyConsoleLogin": Access.anyone().not_owned(SIGNING_IN),
    "SignInMerchantWithGoogle": Access.anyone().not_owned(SIGNING_IN),
    "GetTeslaLoginUrl": Access.anyone().not_owned(SIGNING_IN),
    "SignInWithTesla": Access.anyone().not_owned(SIGNING_IN),
    "ResolveProviderDriver": Access.service_only(),
    "SendMerchantClaimLink": Access.service_only(),
    # The emailed link's single-use token is the capability.
    "VerifyMerchantClaimLink": Access.anyone().not_owned(SIGNING_IN),
    # The refresh token is matched among the caller's own: another user's matches nothing and revokes nothing.
    "Logout": Access.signed_in().not_owned(OWN_DATA),
    "GetMe": Access.signed_in().not_owned(OWN_DATA),
    "RegisterDevice": Access.signed_in().not_owned(OWN_DATA),
    "ListUsers": Access.role(*domain.READ_ADMINS).not_owned(BY_AN_ADMIN),
    "GetUser": Access.service_only(),
    "SetUserRoles": Access.role(domain.ADMIN).not_owned(BY_AN_ADMIN),
    "ListAuditEntries": Access.role(*domain.READ_ADMINS).not_owned(BY_AN_ADMIN),
    # The apps read feature flags before sign-in.
    "ListFlags": Access.anyone().not_owned(PUBLIC_DATA),
    "GetFlag": Access.anyone().not_owned(PUBLIC_DATA),
    "ToggleFlag": Access.role(domain.ADMIN).not_owned(BY_AN_ADMIN),
}

_DEFAULT_PAGE = 50

# Codes asked for, by channel and what became of the request: an SMS costs money, and a surge of sends is the
# mark of SMS pumping (deploy/k8s/components/monitoring alerts on the rate).
OTP_SENDS = prometheus_client.Counter(
    "nerava_otp_sends_total", "One-time login codes requested, by channel and result.", ["channel", "result"]
)


def _timestamp(value: datetime.datetime) -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(value)
    return stamp


def user_message(user: store.UserRow) -> accounts_pb2.User:
    return accounts_pb2.User(
        public_id=str(user.public_id),
        auth_provider=user.auth_provider,  # type: ignore[arg-type]
        phone=user.phone or "",
        email=user.email or None,  # unknown is absent, never ""
        name=user.name or None,
        roles=[domain.role_enum(r) for r in user.roles],
        created_at=_timestamp(user.created_at),
        active=user.active,
    )


def _signed_in_vehicle(vehicle: sessions_pb2.TeslaVehicle) -> accounts_pb2.SignedInVehicle:
    """Sessions' vehicle with its unknowns absent instead of empty."""
    known: dict[str, Any] = {
        name: getattr(vehicle, name) for name in ("vin", "display_name", "model", "color") if getattr(vehicle, name)
    }
    if vehicle.HasField("year"):
        known["year"] = vehicle.year
    return accounts_pb2.SignedInVehicle(id=vehicle.id, **known)


class AccountsApi(accounts_pb2_grpc.AccountsServiceServicer):
    def __init__(
        self,
        settings: AccountsSettings,
        *,
        engine: AsyncEngine,
        redis: Redis,
        audit_log: MergedAuditLog,
        keys: KeyRing,
        otp: OtpProvider,
        limits: OtpLimits,
        revocations: TokenRevocations,
        sign_in: ExternalSignIn,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._sign_in = sign_in
        self._revocations = revocations
        self._redis = redis
        self._audit_log = audit_log
        self._settings = settings
        self._engine = engine
        self._reads = single_statement_reads(engine)
        self._keys = keys
        self._otp = otp
        self._limits = limits
        self._clock = clock

    # --- login -------------------------------------------------------------------------------------

    async def _start_login(self, channel: Channel, identity: str) -> None:
        decision = await self._limits.try_start(identity, client_ip_var.get() or "unknown")
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

    async def _verify_login(
        self, channel: Channel, identity: str, code: str, initial_roles: Sequence[str] = (domain.DRIVER,)
    ) -> tuple[dict[str, Any], store.UserRow, bool]:
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
                user, created = await store.get_or_create_user(
                    conn,
                    phone=identity,
                    email=None,
                    auth_provider=accounts_pb2.AUTH_PROVIDER_PHONE,
                    initial_roles=initial_roles,
                )
            else:
                user, created = await store.get_or_create_user(
                    conn,
                    phone=None,
                    email=identity,
                    auth_provider=accounts_pb2.AUTH_PROVIDER_EMAIL,
                    initial_roles=initial_roles,
                )
            if not user.active:
                raise PermissionDenied(Reason.USER_INACTIVE, "this account is deactivated")
            tokens = await self._issue_tokens(conn, user, family_id=uuid.uuid4())
        return tokens, user, created

    async def _tokens_for(self, user: store.UserRow) -> tuple[dict[str, Any], store.UserRow]:
        """A new token family for a user signed in some other way; the user as it is now (with new roles)."""
        async with self._engine.begin() as conn:
            tokens = await self._issue_tokens(conn, user, family_id=uuid.uuid4())
            fresh = await store.user_by_id(conn, user.id)
        assert fresh is not None
        return tokens, fresh

    async def _issue_tokens(self, conn: AsyncConnection, user: store.UserRow, family_id: uuid.UUID) -> dict[str, Any]:
        now = int(self._clock())
        policy = self._settings.tokens
        runtime = self._settings.runtime
        # The token version first, the roles after it: a role change commits before it bumps the version, so
        # either these roles are the new ones or the version read here is already a revoked one.
        version = await self._revocations.current_version(str(user.public_id))
        fresh = await store.user_by_id(conn, user.id)
        access = self._keys.sign(
            domain.access_claims(
                str(user.public_id),
                list((fresh or user).roles),
                issuer=runtime.jwt_issuer,
                audience=runtime.jwt_audience,
                now=now,
                ttl_s=policy.access_ttl_s,
                token_version=version,
            )
        )
        refresh = domain.new_refresh_token()
        await store.insert_refresh_token(
            conn,
            family_id=family_id,
            user_id=user.id,
            token_hash=domain.refresh_token_hash(refresh),
            expires_at=datetime.datetime.fromtimestamp(now + policy.refresh_ttl_s, datetime.UTC),
        )
        return {
            "access_token": access,
            "refresh_token": refresh,
            "token_type": "bearer",
            "expires_in": policy.access_ttl_s,
        }

    async def StartPhoneLogin(
        self, request: accounts_pb2.StartPhoneLoginRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> accounts_pb2.StartPhoneLoginResponse:
        await self._start_login(Channel.SMS, request.phone)
        return accounts_pb2.StartPhoneLoginResponse(otp_sent=True)

    async def VerifyPhoneLogin(
        self, request: accounts_pb2.VerifyPhoneLoginRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> accounts_pb2.VerifyPhoneLoginResponse:
        tokens, user, _ = await self._verify_login(Channel.SMS, request.phone, request.code)
        return accounts_pb2.VerifyPhoneLoginResponse(**tokens, user=user_message(user))

    async def StartEmailLogin(
        self, request: accounts_pb2.StartEmailLoginRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> accounts_pb2.StartEmailLoginResponse:
        await self._start_login(Channel.EMAIL, domain.normalize_email(request.email))
        return accounts_pb2.StartEmailLoginResponse(otp_sent=True)

    async def VerifyEmailLogin(
        self, request: accounts_pb2.VerifyEmailLoginRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> accounts_pb2.VerifyEmailLoginResponse:
        tokens, user, _ = await self._verify_login(Channel.EMAIL, domain.normalize_email(request.email), request.code)
        return accounts_pb2.VerifyEmailLoginResponse(**tokens, user=user_message(user))

    # --- the sponsor console ----------------------------------------------------------------------

    async def StartConsoleLogin(
        self, request: accounts_pb2.StartConsoleLoginRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> accounts_pb2.StartConsoleLoginResponse:
        await self._start_login(Channel.EMAIL, domain.normalize_email(request.email))
        return accounts_pb2.StartConsoleLoginResponse(otp_sent=True)

    async def VerifyConsoleLogin(
        self, request: accounts_pb2.VerifyConsoleLoginRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> accounts_pb2.VerifyConsoleLoginResponse:
        # A new account is a sponsor's; an existing one keeps its roles (docs/app-contract.md "Sign-in").
        tokens, user, created = await self._verify_login(
            Channel.EMAIL, domain.normalize_email(request.email), request.code, initial_roles=(domain.SPONSOR,)
        )
        console_user = accounts_pb2.ConsoleUser(
            public_id=str(user.public_id),
            email=user.email or "",
            roles=[domain.role_enum(r) for r in user.roles],
            is_new=created,
        )
        return accounts_pb2.VerifyConsoleLoginResponse(**tokens, user=console_user)

    # --- Google, Apple and merchant claims ---------------------------------------------------------

    async def SignInWithGoogle(
        self, request: accounts_pb2.SignInWithGoogleRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> accounts_pb2.SignInWithGoogleResponse:
        user = await self._sign_in.driver(self._sign_in.google, request.id_token, GOOGLE)
        tokens, user = await self._tokens_for(user)
        return accounts_pb2.SignInWithGoogleResponse(**tokens, user=user_message(user))

    async def SignInWithApple(
        self, request: accounts_pb2.SignInWithAppleRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> accounts_pb2.SignInWithAppleResponse:
        user = await self._sign_in.driver(self._sign_in.apple, request.id_token, APPLE)
        tokens, user = await self._tokens_for(user)
        return accounts_pb2.SignInWithAppleResponse(**tokens, user=user_message(user))

    async def GetTeslaLoginUrl(
        self, request: accounts_pb2.GetTeslaLoginUrlRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> accounts_pb2.GetTeslaLoginUrlResponse:
        started = await self._sign_in.tesla_login_url()
        return accounts_pb2.GetTeslaLoginUrlResponse(authorization_url=started.authorization_url, state=started.state)

    async def SignInWithTesla(
        self, request: accounts_pb2.SignInWithTeslaRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> accounts_pb2.SignInWithTeslaResponse:
        user, linked = await self._sign_in.tesla(request.code, request.state)
        tokens, user = await self._tokens_for(user)
        return accounts_pb2.SignInWithTeslaResponse(
            **tokens, user=user_message(user), vehicles=[_signed_in_vehicle(v) for v in linked.vehicles]
        )

    async def ResolveProviderDriver(
        self, request: accounts_pb2.ResolveProviderDriverRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> accounts_pb2.ResolveProviderDriverResponse:
        user = await self._sign_in.provider_driver(request.provider, request.subject, request.linked_driver_id)
        return accounts_pb2.ResolveProviderDriverResponse(driver_id=str(user.public_id))

    async def SignInMerchantWithGoogle(
        self, request: accounts_pb2.SignInMerchantWithGoogleRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> accounts_pb2.SignInMerchantWithGoogleResponse:
        user, merchant_id = await self._sign_in.merchant(request.id_token, request.place_id)
        tokens, user = await self._tokens_for(user)
        reply = accounts_pb2.SignInMerchantWithGoogleResponse(**tokens, user=user_message(user))
        if merchant_id is not None:
            reply.merchant_id = merchant_id
        return reply

    async def SendMerchantClaimLink(
        self, request: accounts_pb2.SendMerchantClaimLinkRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> accounts_pb2.SendMerchantClaimLinkResponse:
        expires_at = await self._sign_in.links.send(
            request.merchant_id, domain.normalize_email(request.email), self._now()
        )
        return accounts_pb2.SendMerchantClaimLinkResponse(expires_at=_timestamp(expires_at))

    async def VerifyMerchantClaimLink(
        self, request: accounts_pb2.VerifyMerchantClaimLinkRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> accounts_pb2.VerifyMerchantClaimLinkResponse:
        user, merchant_id = await self._sign_in.links.open(request.token, self._now())
        tokens, user = await self._tokens_for(user)
        return accounts_pb2.VerifyMerchantClaimLinkResponse(**tokens, user=user_message(user), merchant_id=merchant_id)

    def _now(self) -> datetime.datetime:
        return datetime.datetime.fromtimestamp(self._clock(), datetime.UTC)

    # --- refresh tokens ----------------------------------------------------------------------------

    async def RefreshToken(
        self, request: accounts_pb2.RefreshTokenRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> accounts_pb2.RefreshTokenResponse:
        token_hash = domain.refresh_token_hash(request.refresh_token)
        reused = False
        async with self._engine.begin() as conn:
            row = await store.lock_refresh_token(conn, token_hash)
            if row is None or row.revoked_at is not None:
                raise Unauthenticated(Reason.REFRESH_TOKEN_INVALID, "unknown or revoked refresh token")
            if row.rotated_at is not None:
                # A rotated token came back: someone holds a copy. Revoke the whole family, commit that,
                # and only then refuse (raising inside the block would roll the revocation back).
                await store.revoke_family(conn, row.family_id)
                reused = True
            elif row.expires_at.timestamp() <= self._clock():
                raise Unauthenticated(Reason.REFRESH_TOKEN_INVALID, "refresh token expired")
            else:
                user = await store.user_by_id(conn, row.user_id)
                if user is None or not user.active:
                    raise PermissionDenied(Reason.USER_INACTIVE, "this account is deactivated")
                await store.mark_rotated(conn, row.id)
                tokens = await self._issue_tokens(conn, user, family_id=row.family_id)
        if reused:
            raise Unauthenticated(Reason.REFRESH_TOKEN_REUSED, "refresh token reuse detected; sign in again")
        return accounts_pb2.RefreshTokenResponse(**tokens)

    async def Logout(
        self, request: accounts_pb2.LogoutRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> accounts_pb2.LogoutResponse:
        caller = current_caller()
        revoke_access_tokens = False
        async with self._engine.begin() as conn:
            user = await store.user_by_public_id(conn, caller.user_id or "")
            if user is None:
                raise NotFound(Reason.USER_NOT_FOUND, "the signed-in user does not exist")
            if request.all_devices:
                revoked = await store.revoke_users_families(conn, user.id)
                revoke_access_tokens = True
            elif request.refresh_token:
                revoked = await store.revoke_family_of_token(
                    conn, domain.refresh_token_hash(request.refresh_token), user.id
                )
            else:
                revoked = 0
        if revoke_access_tokens:
            # After the commit: "everywhere" includes the access tokens already handed out (within seconds).
            await self._revocations.revoke_all(str(user.public_id))
        return accounts_pb2.LogoutResponse(revoked_families=revoked)

    # --- identity ----------------------------------------------------------------------------------

    async def GetMe(
        self, request: accounts_pb2.GetMeRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> accounts_pb2.GetMeResponse:
        async with self._reads.connect() as conn:
            user = await store.user_by_public_id(conn, current_caller().user_id or "")
        if user is None:
            raise NotFound(Reason.USER_NOT_FOUND, "the signed-in user does not exist")
        if not user.active:
            raise PermissionDenied(Reason.USER_INACTIVE, "this account is deactivated")
        return accounts_pb2.GetMeResponse(user=user_message(user))

    async def GetUser(
        self, request: accounts_pb2.GetUserRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> accounts_pb2.GetUserResponse:
        async with self._reads.connect() as conn:
            user = await store.user_by_public_id(conn, request.user_id)
        if user is None:
            raise NotFound(Reason.USER_NOT_FOUND, "no user with that id", {"user_id": request.user_id})
        return accounts_pb2.GetUserResponse(user=user_message(user))

    async def GetJwks(
        self, request: accounts_pb2.GetJwksRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> accounts_pb2.GetJwksResponse:
        return accounts_pb2.GetJwksResponse(keys=[accounts_pb2.JsonWebKey(**key) for key in self._keys.jwks()])

    async def RegisterDevice(
        self, request: accounts_pb2.RegisterDeviceRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> accounts_pb2.RegisterDeviceResponse:
        async with self._engine.begin() as conn:
            user = await store.user_by_public_id(conn, current_caller().user_id or "")
            if user is None:
                raise NotFound(Reason.USER_NOT_FOUND, "the signed-in user does not exist")
            created = await store.upsert_device(conn, token=request.token, user_id=user.id, platform=request.platform)
        return accounts_pb2.RegisterDeviceResponse(created=created)

    # --- administration ----------------------------------------------------------------------------

    async def ListUsers(
        self, request: accounts_pb2.ListUsersRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> accounts_pb2.ListUsersResponse:
        size = request.page_size or _DEFAULT_PAGE
        before = page_position(request.page_token)
        role = domain.role_name(request.role) if request.role else None
        async with self._engine.connect() as conn:
            rows = await store.list_users(conn, before_id=before, limit=size + 1, role=role)
        page, more = rows[:size], len(rows) > size
        return accounts_pb2.ListUsersResponse(
            users=[user_message(u) for u in page], next_page_token=page_token(page[-1].id) if more else ""
        )

    async def SetUserRoles(
        self, request: accounts_pb2.SetUserRolesRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> accounts_pb2.SetUserRolesResponse:
        caller = current_caller()
        new_roles = sorted(domain.role_name(r) for r in request.roles)
        async with self._engine.begin() as conn:
            user = await store.user_by_public_id(conn, request.user_id)
            if user is None:
                raise NotFound(Reason.USER_NOT_FOUND, f"no user {request.user_id}")
            if str(user.public_id) == caller.user_id and domain.ADMIN not in new_roles:
                # Otherwise the last admin can lock everyone out of role management.
                raise FailedPrecondition(Reason.CANNOT_REMOVE_OWN_ADMIN, "an admin cannot remove their own admin role")
            await store.set_roles(conn, user.id, new_roles)
            await audit.record(
                conn,
                "user.roles.set",
                f"user:{user.public_id}",
                request.reason,
                old_roles=",".join(sorted(user.roles)),
                new_roles=",".join(new_roles),
            )
            updated = await store.user_by_id(conn, user.id)
        assert updated is not None
        if sorted(user.roles) != new_roles:
            # After the commit (see _issue_tokens): tokens carrying the old roles stop working within seconds;
            # the user's next refresh gets the new ones.
            await self._revocations.revoke_all(str(user.public_id))
        return accounts_pb2.SetUserRolesResponse(user=user_message(updated))

    # --- the audit log ---------------------------------------------------------------------------------

    async def ListAuditEntries(
        self, request: accounts_pb2.ListAuditEntriesRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> accounts_pb2.ListAuditEntriesResponse:
        query = audit_pb2.AuditQuery(actor=request.actor, action=request.action, target=request.target)
        if request.HasField("since"):
            query.since.CopyFrom(request.since)
        if request.HasField("until"):
            query.until.CopyFrom(request.until)
        entries, token = await self._audit_log.page(query, request.page_size or _DEFAULT_PAGE, request.page_token)
        return accounts_pb2.ListAuditEntriesResponse(entries=entries, next_page_token=token)

    # --- feature flags ---------------------------------------------------------------------------------

    async def ListFlags(
        self, request: accounts_pb2.ListFlagsRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> accounts_pb2.ListFlagsResponse:
        values = await flags.list_values(self._reads, self._settings.runtime.environment)
        return accounts_pb2.ListFlagsResponse(flags=[_flag_message(v) for v in values])

    async def GetFlag(
        self, request: accounts_pb2.GetFlagRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> accounts_pb2.GetFlagResponse:
        value = await flags.get_value(self._reads, self._settings.runtime.environment, request.name)
        return accounts_pb2.GetFlagResponse(flag=_flag_message(value))

    async def ToggleFlag(
        self, request: accounts_pb2.ToggleFlagRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> accounts_pb2.ToggleFlagResponse:
        enabled = request.enabled if request.HasField("enabled") else None
        value = await flags.toggle(
            self._engine,
            self._redis,
            self._settings.runtime.environment,
            request.name,
            enabled=enabled,
            reason=request.reason,
        )
        return accounts_pb2.ToggleFlagResponse(flag=_flag_message(value))


def _flag_message(value: flags.FlagValue) -> accounts_pb2.Flag:
    return accounts_pb2.Flag(
        name=value.definition.name,
        enabled=value.enabled,
        environment=value.environment,
        description=value.definition.description,
        updated_at=_timestamp(value.updated_at) if value.updated_at else None,
        updated_by=value.updated_by,
    )
