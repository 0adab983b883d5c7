"""Helpers for tests that speak gRPC: error details and logins."""

from __future__ import annotations

import secrets
from typing import cast

import grpc
from google.rpc import error_details_pb2, status_pb2
from nerava.accounts.v1 import accounts_pb2, accounts_pb2_grpc

from fakes.twilio_verify import FakeTwilioVerify
from services.common.errors import peer_reason

# The ErrorInfo reason carried by a failed call ('' when there is none): what services branch on, too.
error_reason = peer_reason


def error_metadata(error: grpc.aio.AioRpcError) -> dict[str, str]:
    """The ErrorInfo metadata carried by a failed call (empty when there is none)."""
    for detail in _details(error).details:
        info = error_details_pb2.ErrorInfo()
        if detail.Unpack(info):
            return dict(info.metadata)
    return {}


def bad_fields(error: grpc.aio.AioRpcError) -> list[str]:
    """The fields named by a google.rpc.BadRequest in a failed call."""
    fields: list[str] = []
    for detail in _details(error).details:
        bad = error_details_pb2.BadRequest()
        if detail.Unpack(bad):
            fields.extend(v.field for v in bad.field_violations)
    return fields


def _details(error: grpc.aio.AioRpcError) -> status_pb2.Status:
    # grpc-stubs gives AioRpcError the sync RpcError's trailing_metadata(); grpc.aio returns a Metadata.
    trailing = cast(grpc.aio.Metadata | None, error.trailing_metadata())
    for key, value in trailing or ():
        if key == "grpc-status-details-bin" and isinstance(value, bytes):
            return status_pb2.Status.FromString(value)
    return status_pb2.Status()


def random_phone() -> str:
    """A valid US number no other test uses (limits are per phone)."""
    return f"+1512{secrets.randbelow(10**7):07d}"


def bearer(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)


async def phone_login(
    channel: grpc.aio.Channel, twilio: FakeTwilioVerify, phone: str
) -> accounts_pb2.VerifyPhoneLoginResponse:
    stub = accounts_pb2_grpc.AccountsServiceStub(channel)
    await stub.StartPhoneLogin(accounts_pb2.StartPhoneLoginRequest(phone=phone))
    code = twilio.last_code_sent_to(phone)
    return await stub.VerifyPhoneLogin(accounts_pb2.VerifyPhoneLoginRequest(phone=phone, code=code))


# tests/support/mesh.py gives every service this secret: new for every run, like `make run`'s per checkout, so
# nothing in the repository can mint a service token the test mesh accepts.
TEST_SERVICE_SECRET = secrets.token_urlsafe(32)


def as_service(name: str) -> tuple[tuple[str, str], ...]:
    """Call metadata that identifies the caller as the named service."""
    from services.common.auth import SERVICE_TOKEN_HEADER, ServiceTokens
    from services.common.config import Secret

    return ((SERVICE_TOKEN_HEADER, ServiceTokens(Secret(TEST_SERVICE_SECRET), name).mint()),)
