"""`python -m services.accounts`: configuration → resources → server → serve until SIGTERM."""

from __future__ import annotations

import contextlib
from collections.abc import Mapping

import uvloop
from nerava.accounts.v1 import accounts_pb2_grpc

from services.accounts.adapters.otp import OtpProvider, StubOtpProvider, TwilioVerifyProvider
from services.accounts.api import ACCESS, SERVICE_NAME, AccountsApi
from services.accounts.config import AccountsSettings
from services.accounts.keys import KeyRing
from services.accounts.otp_limits import OtpLimits
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


async def build_server(settings: AccountsSettings, stack: contextlib.AsyncExitStack) -> ServiceServer:
    """Opens every resource on ``stack`` and returns the (not yet started) server."""
    keys = KeyRing(settings.signing_key_passphrase)

    async def local_jwks() -> list[Mapping[str, object]]:
        # accounts verifies tokens with its own keys instead of calling itself.
        return list(keys.jwks())

    runtime = await stack.enter_async_context(Runtime(settings.runtime, jwks_fetcher=local_jwks))
    await keys.load(runtime.engine)
    otp = otp_provider(settings)
    stack.push_async_callback(otp.aclose)
    api = AccountsApi(
        settings,
        engine=runtime.engine,
        keys=keys,
        otp=otp,
        limits=OtpLimits(runtime.redis, settings.otp),
        revocations=runtime.revocations,
    )
    binding = ServiceBinding(
        SERVICE_NAME, lambda server: accounts_pb2_grpc.add_AccountsServiceServicer_to_server(api, server), ACCESS
    )
    return ServiceServer(runtime, [binding])


async def main() -> None:
    settings = AccountsSettings.from_env()
    configure_logging("accounts", settings.runtime.log_level)
    init_tracing("accounts", otlp_endpoint=settings.runtime.otlp_endpoint)
    async with contextlib.AsyncExitStack() as stack:
        server = await build_server(settings, stack)
        await server.serve_until_signal()


if __name__ == "__main__":
    uvloop.run(main())
