"""Domain errors and their one translation into gRPC status + google.rpc.ErrorInfo (AIP-193).

Domain code raises these (never grpc errors); the error interceptor turns them into a rich status whose
details carry an ErrorInfo with a stable ``reason`` and the domain ``<service>.nerava``, plus a BadRequest
for field violations. Envoy's transcoder prints those details in the JSON error body.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import cast

import grpc
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2


class DomainError(Exception):
    """A refusal the caller can act on. Subclasses fix the gRPC code."""

    code: grpc.StatusCode = grpc.StatusCode.FAILED_PRECONDITION

    def __init__(self, reason: str, message: str, metadata: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.metadata = dict(metadata or {})


class InvalidArgument(DomainError):
    """Bad input. Each violation is (field, why) or (field, why, rule id); the field is empty for a rule
    over the whole message, whose rule id then says which fields disagree (e.g. CURRENCY_MISMATCH)."""

    code = grpc.StatusCode.INVALID_ARGUMENT

    def __init__(
        self,
        field_violations: Sequence[tuple[str, str] | tuple[str, str, str]],
        reason: str = "INVALID_ARGUMENT",
        message: str | None = None,
    ) -> None:
        self.field_violations = [(v[0], v[1], v[2] if len(v) > 2 else "") for v in field_violations]
        text = message or "; ".join(
            f"{field}: {why}" if field else f"{rule}: {why}" for field, why, rule in self.field_violations
        )
        super().__init__(reason, text)


class NotFound(DomainError):
    code = grpc.StatusCode.NOT_FOUND


class AlreadyExists(DomainError):
    code = grpc.StatusCode.ALREADY_EXISTS


class FailedPrecondition(DomainError):
    code = grpc.StatusCode.FAILED_PRECONDITION


class Aborted(DomainError):
    code = grpc.StatusCode.ABORTED


class PermissionDenied(DomainError):
    code = grpc.StatusCode.PERMISSION_DENIED


class Unauthenticated(DomainError):
    code = grpc.StatusCode.UNAUTHENTICATED


class ResourceExhausted(DomainError):
    code = grpc.StatusCode.RESOURCE_EXHAUSTED


class Unavailable(DomainError):
    """A dependency did not answer; the call may be retried with the same idempotency key."""

    code = grpc.StatusCode.UNAVAILABLE


def _pack(message: error_details_pb2.ErrorInfo | error_details_pb2.BadRequest) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(message)
    return packed


def to_status(error: DomainError, domain: str) -> status_pb2.Status:
    """The google.rpc.Status for a domain error, with ErrorInfo (and BadRequest for field violations)."""
    details = [_pack(error_details_pb2.ErrorInfo(reason=error.reason, domain=domain, metadata=error.metadata))]
    if isinstance(error, InvalidArgument):
        details.append(
            _pack(
                error_details_pb2.BadRequest(
                    field_violations=[
                        error_details_pb2.BadRequest.FieldViolation(field=field, description=why, reason=rule)
                        for field, why, rule in error.field_violations
                    ]
                )
            )
        )
    return status_pb2.Status(code=error.code.value[0], message=error.message, details=details)


def peer_reason(error: grpc.aio.AioRpcError) -> str:
    """The ErrorInfo reason in another service's error status ("" when it carries none): what a caller branches
    on, e.g. the ledger's INSUFFICIENT_BALANCE."""
    # grpc-stubs gives AioRpcError the sync RpcError's trailing_metadata(); grpc.aio returns a Metadata.
    trailing = cast(grpc.aio.Metadata | None, error.trailing_metadata())
    for key, value in trailing or ():
        if key == "grpc-status-details-bin" and isinstance(value, bytes):
            info = error_details_pb2.ErrorInfo()
            for detail in status_pb2.Status.FromString(value).details:
                if detail.Unpack(info):  # False for the other details (e.g. a BadRequest)
                    return info.reason
    return ""
