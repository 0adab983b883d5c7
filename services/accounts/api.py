"""The AccountsService servicer: `ACCESS`, then one short handler per RPC that reads the request (and the caller),
calls one core (otp_login.py, sign_in.py, tokens.py, users.py, roles.py, flags.py, audit_log.py) and builds the
answer; the cores own their transactions and raise the domain errors the interceptor maps once."""

from __future__ import annotations

import dataclasses
from typing import Any

import grpc
from nerava.accounts.v1 import accounts_pb2, accounts_pb2_grpc
from nerava.audit.v1 import audit_pb2

from services.accounts import domain, store
from services.accounts.adapters.otp import Channel
from services.accounts.audit_log import MergedAuditLog
from services.accounts.flags import Flags, FlagValue
from services.accounts.keys import KeyRing
from services.accounts.otp_login import OtpLogin
from services.accounts.peers import LinkedVehicle
from services.accounts.roles import Roles
from services.accounts.sign_in import APPLE, GOOGLE, ExternalSignIn
from services.accounts.tokens import TokenPair, Tokens
from services.accounts.users import Users
from services.common import audit
from services.common.context import client_ip_var, current_caller
from services.common.interceptors import BY_AN_ADMIN, OWN_DATA, PUBLIC_DATA, SIGNING_IN, Access
from services.common.paging import page_position, page_token
from services.common.timestamps import timestamp

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

# The contract's roles by the names the tokens and the user_roles table use.
_ROLE_NAMES = {
    accounts_pb2.ROLE_DRIVER: domain.DRIVER,
    accounts_pb2.ROLE_SPONSOR: domain.SPONSOR,
    accounts_pb2.ROLE_MERCHANT: domain.MERCHANT,
    accounts_pb2.ROLE_ADMIN: domain.ADMIN,
    accounts_pb2.ROLE_ADMIN_READONLY: domain.ADMIN_READONLY,
}
_ROLES_BY_NAME = {name: role for role, name in _ROLE_NAMES.items()}


def _role(name: str) -> accounts_pb2.Role:
    return _ROLES_BY_NAME.get(name, accounts_pb2.ROLE_UNSPECIFIED)


def user_message(user: store.UserRow) -> accounts_pb2.User:
    return accounts_pb2.User(
        public_id=str(user.public_id),
        auth_provider=user.auth_provider,  # type: ignore[arg-type]
        phone=user.phone or "",
        email=user.email or None,  # unknown is absent, never ""
        name=user.name or None,
        roles=[_role(r) for r in user.roles],
        created_at=timestamp(user.created_at),
        active=user.active,
    )


def _signed_in_vehicle(vehicle: LinkedVehicle) -> accounts_pb2.SignedInVehicle:
    """The vehicle with its unknowns absent instead of empty."""
    known = {name: value for name, value in dataclasses.asdict(vehicle).items() if value is not None}
    return accounts_pb2.SignedInVehicle(**known)


def _token_fields(tokens: TokenPair) -> dict[str, Any]:
    """The token fields every sign-in and refresh answer shares, by the contract's names."""
    return dataclasses.asdict(tokens)


def _client_ip() -> str:
    return client_ip_var.get() or "unknown"


class AccountsApi(accounts_pb2_grpc.AccountsServiceServicer):
    """Each handler reads the request (and the caller), calls one core and builds the answer."""

    def __init__(
        self,
        *,
        otp_login: OtpLogin,
        tokens: Tokens,
        sign_in: ExternalSignIn,
        users: Users,
        roles: Roles,
        flags: Flags,
        keys: KeyRing,
        audit_log: MergedAuditLog,
    ) -> None:
        self._otp_login = otp_login
        self._tokens = tokens
        self._sign_in = sign_in
        self._users = users
        self._roles = roles
        self._flags = flags
        self._keys = keys
        self._audit_log = audit_log

    # --- login -------------------------------------------------------------------------------------

    async def StartPhoneLogin(
        self, request: accounts_pb2.StartPhoneLoginRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> accounts_pb2.StartPhoneLoginResponse:
        await self._otp_login.start(Channel.SMS, request.phone, _client_ip())
        return accounts_pb2.StartPhoneLoginResponse(otp_sent=True)

    async def VerifyPhoneLogin(
        self, request: accounts_pb2.VerifyPhoneLoginRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> accounts_pb2.VerifyPhoneLoginResponse:
        signed_in = await self._otp_login.verify(Channel.SMS, request.phone, request.code)
        return accounts_pb2.VerifyPhoneLoginResponse(
            **_token_fields(signed_in.tokens), user=user_message(signed_in.user)
        )

    async def StartEmailLogin(
        self, request: accounts_pb2.StartEmailLoginRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> accounts_pb2.StartEmailLoginResponse:
        await self._otp_login.start(Channel.EMAIL, domain.normalize_email(request.email), _client_ip())
        return accounts_pb2.StartEmailLoginResponse(otp_sent=True)

    async def VerifyEmailLogin(
        self, request: accounts_pb2.VerifyEmailLoginRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> accounts_pb2.VerifyEmailLoginResponse:
        signed_in = await self._otp_login.verify(Channel.EMAIL, domain.normalize_email(request.email), request.code)
        return accounts_pb2.VerifyEmailLoginResponse(
            **_token_fields(signed_in.tokens), user=user_message(signed_in.user)
        )

    # --- the sponsor console ----------------------------------------------------------------------

    async def StartConsoleLogin(
        self, request: accounts_pb2.StartConsoleLoginRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> accounts_pb2.StartConsoleLoginResponse:
        await self._otp_login.start(Channel.EMAIL, domain.normalize_email(request.email), _client_ip())
        return accounts_pb2.StartConsoleLoginResponse(otp_sent=True)

    async def VerifyConsoleLogin(
        self, request: accounts_pb2.VerifyConsoleLoginRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> accounts_pb2.VerifyConsoleLoginResponse:
        # A new account is a sponsor's; an existing one keeps its roles (docs/app-contract.md "Sign-in").
        signed_in = await self._otp_login.verify(
            Channel.EMAIL, domain.normalize_email(request.email), request.code, initial_roles=(domain.SPONSOR,)
        )
        user = signed_in.user
        console_user = accounts_pb2.ConsoleUser(
            public_id=str(user.public_id),
            email=user.email or "",
            roles=[_role(r) for r in user.roles],
            is_new=signed_in.created,
        )
        return accounts_pb2.VerifyConsoleLoginResponse(**_token_fields(signed_in.tokens), user=console_user)

    # --- Google, Apple and merchant claims ---------------------------------------------------------

    async def SignInWithGoogle(
        self, request: accounts_pb2.SignInWithGoogleRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> accounts_pb2.SignInWithGoogleResponse:
        signed_in = await self._sign_in.driver(self._sign_in.google, request.id_token, GOOGLE)
        return accounts_pb2.SignInWithGoogleResponse(
            **_token_fields(signed_in.tokens), user=user_message(signed_in.user)
        )

    async def SignInWithApple(
        self, request: accounts_pb2.SignInWithAppleRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> accounts_pb2.SignInWithAppleResponse:
        signed_in = await self._sign_in.driver(self._sign_in.apple, request.id_token, APPLE)
        return accounts_pb2.SignInWithAppleResponse(
            **_token_fields(signed_in.tokens), user=user_message(signed_in.user)
        )

    async def GetTeslaLoginUrl(
        self, request: accounts_pb2.GetTeslaLoginUrlRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> accounts_pb2.GetTeslaLoginUrlResponse:
        started = await self._sign_in.tesla_login_url()
        return accounts_pb2.GetTeslaLoginUrlResponse(authorization_url=started.authorization_url, state=started.state)

    async def SignInWithTesla(
        self, request: accounts_pb2.SignInWithTeslaRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> accounts_pb2.SignInWithTeslaResponse:
        signed_in, vehicles = await self._sign_in.tesla(request.code, request.state)
        return accounts_pb2.SignInWithTeslaResponse(
            **_token_fields(signed_in.tokens),
            user=user_message(signed_in.user),
            vehicles=[_signed_in_vehicle(v) for v in vehicles],
        )

    async def ResolveProviderDriver(
        self, request: accounts_pb2.ResolveProviderDriverRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> accounts_pb2.ResolveProviderDriverResponse:
        user = await self._sign_in.provider_driver(request.provider, request.subject, request.linked_driver_id)
        return accounts_pb2.ResolveProviderDriverResponse(driver_id=str(user.public_id))

    async def SignInMerchantWithGoogle(
        self, request: accounts_pb2.SignInMerchantWithGoogleRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> accounts_pb2.SignInMerchantWithGoogleResponse:
        signed_in, merchant_id = await self._sign_in.merchant(request.id_token, request.place_id)
        reply = accounts_pb2.SignInMerchantWithGoogleResponse(
            **_token_fields(signed_in.tokens), user=user_message(signed_in.user)
        )
        if merchant_id is not None:
            reply.merchant_id = merchant_id
        return reply

    async def SendMerchantClaimLink(
        self, request: accounts_pb2.SendMerchantClaimLinkRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> accounts_pb2.SendMerchantClaimLinkResponse:
        expires_at = await self._sign_in.send_claim_link(request.merchant_id, domain.normalize_email(request.email))
        return accounts_pb2.SendMerchantClaimLinkResponse(expires_at=timestamp(expires_at))

    async def VerifyMerchantClaimLink(
        self, request: accounts_pb2.VerifyMerchantClaimLinkRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> accounts_pb2.VerifyMerchantClaimLinkResponse:
        signed_in, merchant_id = await self._sign_in.claim_link(request.token)
        return accounts_pb2.VerifyMerchantClaimLinkResponse(
            **_token_fields(signed_in.tokens), user=user_message(signed_in.user), merchant_id=merchant_id
        )

    # --- refresh tokens ----------------------------------------------------------------------------

    async def RefreshToken(
        self, request: accounts_pb2.RefreshTokenRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> accounts_pb2.RefreshTokenResponse:
        tokens = await self._tokens.rotate(request.refresh_token)
        return accounts_pb2.RefreshTokenResponse(**_token_fields(tokens))

    async def Logout(
        self, request: accounts_pb2.LogoutRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> accounts_pb2.LogoutResponse:
        revoked = await self._tokens.log_out(
            current_caller().user_id or "", refresh_token=request.refresh_token, all_devices=request.all_devices
        )
        return accounts_pb2.LogoutResponse(revoked_families=revoked)

    # --- identity ----------------------------------------------------------------------------------

    async def GetMe(
        self, request: accounts_pb2.GetMeRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> accounts_pb2.GetMeResponse:
        user = await self._users.me(current_caller().user_id or "")
        return accounts_pb2.GetMeResponse(user=user_message(user))

    async def GetUser(
        self, request: accounts_pb2.GetUserRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> accounts_pb2.GetUserResponse:
        user = await self._users.get(request.user_id)
        return accounts_pb2.GetUserResponse(user=user_message(user))

    async def GetJwks(
        self, request: accounts_pb2.GetJwksRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> accounts_pb2.GetJwksResponse:
        return accounts_pb2.GetJwksResponse(keys=[accounts_pb2.JsonWebKey(**key) for key in self._keys.jwks()])

    async def RegisterDevice(
        self, request: accounts_pb2.RegisterDeviceRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> accounts_pb2.RegisterDeviceResponse:
        created = await self._users.register_device(
            current_caller().user_id or "", token=request.token, platform=request.platform
        )
        return accounts_pb2.RegisterDeviceResponse(created=created)

    # --- administration ----------------------------------------------------------------------------

    async def ListUsers(
        self, request: accounts_pb2.ListUsersRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> accounts_pb2.ListUsersResponse:
        page = await self._users.page(
            role=_ROLE_NAMES[request.role] if request.role else None,
            before_id=page_position(request.page_token),
            size=request.page_size or _DEFAULT_PAGE,
        )
        return accounts_pb2.ListUsersResponse(
            users=[user_message(u) for u in page.users],
            next_page_token=page_token(page.users[-1].id) if page.more else "",
        )

    async def SetUserRoles(
        self, request: accounts_pb2.SetUserRolesRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> accounts_pb2.SetUserRolesResponse:
        updated = await self._roles.set(
            current_caller().user_id or "",
            request.user_id,
            [_ROLE_NAMES[r] for r in request.roles],
            request.reason,
        )
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
        values = await self._flags.values()
        return accounts_pb2.ListFlagsResponse(flags=[_flag_message(v) for v in values])

    async def GetFlag(
        self, request: accounts_pb2.GetFlagRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> accounts_pb2.GetFlagResponse:
        value = await self._flags.value(request.name)
        return accounts_pb2.GetFlagResponse(flag=_flag_message(value))

    async def ToggleFlag(
        self, request: accounts_pb2.ToggleFlagRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> accounts_pb2.ToggleFlagResponse:
        enabled = request.enabled if request.HasField("enabled") else None
        value = await self._flags.toggle(
            request.name, enabled=enabled, reason=request.reason, actor=audit.current_actor()
        )
        return accounts_pb2.ToggleFlagResponse(flag=_flag_message(value))


def _flag_message(value: FlagValue) -> accounts_pb2.Flag:
    return accounts_pb2.Flag(
        name=value.definition.name,
        enabled=value.enabled,
        environment=value.environment,
        description=value.definition.description,
        updated_at=timestamp(value.updated_at) if value.updated_at else None,
        updated_by=value.updated_by,
    )
