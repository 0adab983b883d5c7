"""Failed calls as Python exceptions: one class per gRPC status an operator branches on, each carrying the
ErrorInfo reason, its metadata and the fields a BadRequest names. The mapping from grpc's error to these is
made here once, so callers never see ``grpc.RpcError``."""

from __future__ import annotations

import grpc
from google.rpc import error_details_pb2, status_pb2

_STATUS_DETAILS_KEY = "grpc-status-details-bin"


class NeravaError(Exception):
    """A call the mesh answered with a non-OK status."""

    code: grpc.StatusCode = grpc.StatusCode.UNKNOWN

    def __init__(
        self,
        message: str,
        *,
        reason: str = "",
        metadata: dict[str, str] | None = None,
        fields: dict[str, str] | None = None,
        code: grpc.StatusCode | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.reason = reason
        self.metadata = metadata or {}
        self.fields = fields or {}
        if code is not None:
            self.code = code

    def __str__(self) -> str:
        head = self.code.name if self.reason in ("", self.code.name) else f"{self.code.name} {self.reason}"
        missing = [f"{field}: {why}" for field, why in self.fields.items() if f"{field}: {why}" not in self.message]
        return f"{head}: {self.message}" + (f" ({'; '.join(missing)})" if missing else "")


class InvalidArgument(NeravaError):
    code = grpc.StatusCode.INVALID_ARGUMENT


class NotFound(NeravaError):
    code = grpc.StatusCode.NOT_FOUND


class AlreadyExists(NeravaError):
    code = grpc.StatusCode.ALREADY_EXISTS


class PermissionDenied(NeravaError):
    code = grpc.StatusCode.PERMISSION_DENIED


class Unauthenticated(NeravaError):
    code = grpc.StatusCode.UNAUTHENTICATED


class FailedPrecondition(NeravaError):
    code = grpc.StatusCode.FAILED_PRECONDITION


class ResourceExhausted(NeravaError):
    code = grpc.StatusCode.RESOURCE_EXHAUSTED


class Aborted(NeravaError):
    code = grpc.StatusCode.ABORTED


class Unavailable(NeravaError):
    """The service could not be reached (after the client's retries) or asked to be retried later."""

    code = grpc.StatusCode.UNAVAILABLE


class DeadlineExceeded(NeravaError):
    code = grpc.StatusCode.DEADLINE_EXCEEDED


class Internal(NeravaError):
    code = grpc.StatusCode.INTERNAL


_BY_CODE: dict[grpc.StatusCode, type[NeravaError]] = {
    cls.code: cls
    for cls in (
        InvalidArgument,
        NotFound,
        AlreadyExists,
        PermissionDenied,
        Unauthenticated,
        FailedPrecondition,
        ResourceExhausted,
        Aborted,
        Unavailable,
        DeadlineExceeded,
        Internal,
    )
}


def from_rpc_error(error: grpc.RpcError) -> NeravaError:
    """The exception for a failed call, with the ErrorInfo and BadRequest details the service attached."""
    call = error if isinstance(error, grpc.Call) else None
    code = call.code() if call is not None else grpc.StatusCode.UNKNOWN
    message = (call.details() if call is not None else None) or str(error)
    reason, metadata, fields = "", {}, {}
    trailing: tuple[tuple[str, str | bytes], ...] = (call.trailing_metadata() if call is not None else None) or ()
    for key, value in trailing:
        if key != _STATUS_DETAILS_KEY or not isinstance(value, bytes):
            continue
        for detail in status_pb2.Status.FromString(value).details:
            info = error_details_pb2.ErrorInfo()
            bad = error_details_pb2.BadRequest()
            if detail.Unpack(info):
                reason, metadata = info.reason, dict(info.metadata)
            elif detail.Unpack(bad):
                fields.update({v.field: v.description for v in bad.field_violations})
    cls = _BY_CODE.get(code, NeravaError)
    return cls(message, reason=reason, metadata=metadata, fields=fields, code=code)
