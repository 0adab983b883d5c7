"""`python -m services.accounts`: configuration → resources → server → serve until SIGTERM."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Mapping

import asyncpg
import httpx
import uvloop
from nerava.accounts.v1 import accounts_pb2_grpc
from nerava.audit.v1 import audit_pb2
from nerava.incentives.v1 import incentives_pb2_grpc
from nerava.ledger.v1 import ledger_pb2_grpc
from nerava.merchants.v1 import merchants_pb2_grpc
from nerava.sessions.v1 import sessions_pb2_grpc

from services.accounts import flags
from services.accounts.adapters.email import SendGridEmail
from services.accounts.adapters.id_tokens import APPLE_ISSUERS, GOOGLE_ISSUERS, IdTokenVerifier
from services.accounts.adapters.otp import OtpProvider, StubOtpProvider, TwilioVerifyProvider
from services.accounts.api import ACCESS, SERVICE_NAME, AccountsApi
from services.accounts.audit_log import MergedAuditLog, Source
from services.accounts.config import AccountsSettings
from services.accounts.keys import KeyRing
from services.accounts.otp_limits import OtpLimits
from services.accounts.otp_login import OtpLogin
from services.accounts.peers import MerchantClaims, PeerAuditLogs, TeslaSignIns
from services.accounts.roles import Roles
from services.accounts.sign_in import ClaimLinks, ExternalSignIn
from services.accounts.tokens import Tokens
from services.accounts.users import Users
from services.accounts.workers import worker_tasks
from services.common import audit
from services.common.db import open_asyncpg_pool
from services.common.logs import configure_logging
from services.common.runtime import Runtime
from services.common.server import ServiceBinding, ServiceServer
from services.common.telemetry import init_tracing


def otp_provider(settings: AccountsSettings) -> OtpProvider:
    if settings.otp_provider == "stub":
        return StubOtpProvider(enabled=settings.stub_otp_enabled)
    return TwilioVerifyProvider(
        account_sid=settings.twilio_account_sid,
        auth_token=settings.twilio_auth_token.value,
        verify_service_sid=settings.twilio_verify_service_sid,
        base_url=settings.twilio_base_url,
    )


async def external_sign_in(
    settings: AccountsSettings, runtime: Runtime, tokens: Tokens, stack: contextlib.AsyncExitStack
) -> ExternalSignIn:
    """Google and Apple sign-in (their key sets over one HTTP client) and the emailed merchant claim links."""
    # A sign-in request waits on the key-set fetch (rarely: the keys are kept an hour).
    http = await stack.enter_async_context(httpx.AsyncClient(timeout=5.0))

    def verifier(jwks_url: str, issuers: tuple[str, ...], audiences: tuple[str, ...]) -> IdTokenVerifier:
        return IdTokenVerifier(jwks_url=jwks_url, issuers=issuers, audiences=audiences, http=http)

    email = SendGridEmail(
        api_key=settings.sendgrid_api_key.value, base_url=settings.sendgrid_base_url, sender=settings.email_sender
    )
    stack.push_async_callback(email.aclose)
    claims = MerchantClaims(merchants_pb2_grpc.MerchantsServiceStub(runtime.channel("merchants")))
    return ExternalSignIn(
        runtime.engine,
        tokens=tokens,
        google=verifier(settings.google_jwks_url, GOOGLE_ISSUERS, settings.google_client_ids),
        apple=verifier(settings.apple_jwks_url, APPLE_ISSUERS, settings.apple_client_ids),
        merchant_google=verifier(settings.google_jwks_url, GOOGLE_ISSUERS, settings.merchant_google_client_ids),
        claims=claims,
        tesla=TeslaSignIns(sessions_pb2_grpc.SessionsServiceStub(runtime.channel("sessions"))),
        links=ClaimLinks(
            runtime.engine, email, claims, portal_url=settings.merchant_portal_url, ttl_s=settings.claim_link_ttl_s
        ),
    )


def audit_sources(runtime: Runtime) -> dict[str, Source]:
    """Where the merged audit log reads: accounts' own table, and every other service's ListAuditEntries."""
    peers = PeerAuditLogs(
        sessions=sessions_pb2_grpc.SessionsServiceStub(runtime.channel("sessions")),
        incentives=incentives_pb2_grpc.IncentivesServiceStub(runtime.channel("incentives")),
        ledger=ledger_pb2_grpc.LedgerServiceStub(runtime.channel("ledger")),
        merchants=merchants_pb2_grpc.MerchantsServiceStub(runtime.channel("merchants")),
    )

    async def own(query: audit_pb2.AuditQuery) -> list[audit_pb2.AuditEntry]:
        return await audit.list_entries(runtime.engine, "accounts", query)

    return {"accounts": own, **peers.sources()}


async def hot_pool(settings: AccountsSettings, stack: contextlib.AsyncExitStack) -> asyncpg.Pool:
    """asyncpg's own pool for GetMe's and GetUser's one statement (services/accounts/store.py)."""
    pool = await open_asyncpg_pool(settings.runtime.database_url.value, settings.runtime.service, size=4)
    stack.push_async_callback(pool.close)
    return pool


async def build_server(settings: AccountsSettings, stack: contextlib.AsyncExitStack) -> ServiceServer:
    """Opens every resource on ``stack`` and returns the (not yet started) server."""
    keys = KeyRing(settings.signing_key_passphrase)

    async def local_jwks() -> list[Mapping[str, object]]:
        # accounts verifies tokens with its own keys instead of calling itself.
        return list(keys.jwks())

    async def local_flags() -> dict[str, bool]:
        # accounts reads the flags it owns from its own table.
        values = await flags.list_values(runtime.engine, settings.runtime.environment)
        return {value.definition.name: value.enabled for value in values}

    runtime = await stack.enter_async_context(
        Runtime(settings.runtime, jwks_fetcher=local_jwks, flags_fetcher=local_flags)
    )
    await keys.load(runtime.engine)
    otp = otp_provider(settings)
    stack.push_async_callback(otp.aclose)
    tokens = Tokens(
        runtime.engine,
        keys=keys,
        revocations=runtime.revocations,
        policy=settings.tokens,
        issuer=settings.runtime.jwt_issuer,
        audience=settings.runtime.jwt_audience,
        clock=time.time,
    )
    api = AccountsApi(
        otp_login=OtpLogin(runtime.engine, otp=otp, limits=OtpLimits(runtime.redis, settings.otp), tokens=tokens),
        tokens=tokens,
        sign_in=await external_sign_in(settings, runtime, tokens, stack),
        users=Users(runtime.engine, await hot_pool(settings, stack)),
        roles=Roles(runtime.engine, runtime.revocations),
        flags=flags.Flags(runtime.engine, runtime.redis, settings.runtime.environment),
        keys=keys,
        audit_log=MergedAuditLog(audit_sources(runtime)),
    )
    binding = ServiceBinding(SERVICE_NAME, api, accounts_pb2_grpc.add_AccountsServiceServicer_to_server, ACCESS)
    return ServiceServer(runtime, [binding], workers=worker_tasks(runtime.engine, settings))


async def main() -> None:
    settings = AccountsSettings.from_env()
    configure_logging("accounts", settings.runtime.log_level)
    init_tracing("accounts", otlp_endpoint=settings.runtime.otlp_endpoint)
    async with contextlib.AsyncExitStack() as stack:
        server = await build_server(settings, stack)
        await server.serve_until_signal()


if __name__ == "__main__":
    uvloop.run(main())
