"""The mesh's audit log as one listing for admins (`GET /v1/admin/audit`): every service keeps its own entries
(services/common/audit.py); accounts merges them, newest first, through each service's ListAuditEntries."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from google.protobuf import timestamp_pb2
from nerava.audit.v1 import audit_pb2

from services.accounts.reasons import Reason
from services.common.errors import InvalidArgument, Unavailable

Source = Callable[[audit_pb2.AuditQuery], Awaitable[list[audit_pb2.AuditEntry]]]


def _order(entry: audit_pb2.AuditEntry) -> tuple[int, int, str, int]:
    row_id = int(entry.id.rpartition(":")[2])
    return (entry.occurred_at.seconds, entry.occurred_at.nanos, entry.service, row_id)


def _filters_digest(query: audit_pb2.AuditQuery) -> str:
    """What a page token is bound to: the filters (not the position, not the size)."""
    bound = audit_pb2.AuditQuery()
    bound.CopyFrom(query)
    bound.ClearField("before")
    bound.ClearField("limit")
    return hashlib.sha256(bound.SerializeToString(deterministic=True)).hexdigest()[:16]


def _page_token(entry: audit_pb2.AuditEntry, query: audit_pb2.AuditQuery) -> str:
    position = {
        "s": entry.occurred_at.seconds,
        "n": entry.occurred_at.nanos,
        "svc": entry.service,
        "id": int(entry.id.rpartition(":")[2]),
        "f": _filters_digest(query),
    }
    return base64.urlsafe_b64encode(json.dumps(position).encode()).decode().rstrip("=")


def _cursor(token: str, query: audit_pb2.AuditQuery) -> audit_pb2.AuditCursor | None:
    if not token:
        return None
    try:
        position: dict[str, Any] = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        cursor = audit_pb2.AuditCursor(
            occurred_at=timestamp_pb2.Timestamp(seconds=int(position["s"]), nanos=int(position["n"])),
            service=str(position["svc"]),
            row_id=int(position["id"]),
        )
        bound = str(position["f"])
        cursor.occurred_at.ToDatetime()  # a forged time outside what a datetime holds fails here, not in a service
    except (ValueError, KeyError, TypeError, OverflowError, AttributeError):
        raise InvalidArgument([("page_token", "not a token from a previous page")]) from None
    if bound != _filters_digest(query):
        raise InvalidArgument([("page_token", "the token belongs to a listing with other filters")])
    return cursor


class MergedAuditLog:
    """The audit log of every service, newest first, paged by a cursor over (occurred_at, service, id).

    A page of n asks each service for its n+1 newest entries after the cursor and keeps the n newest of the
    union: every entry between the cursor and the page's last one is in it, so no entry is skipped or
    repeated across pages. A service that does not answer fails the query (UNAVAILABLE): an audit answer with
    a silent hole would read as "nothing happened"."""

    def __init__(self, sources: Mapping[str, Source], timeout_s: float = 5.0) -> None:
        self._sources = dict(sources)
        self._timeout_s = timeout_s

    async def page(
        self, query: audit_pb2.AuditQuery, page_size: int, page_token: str
    ) -> tuple[list[audit_pb2.AuditEntry], str]:
        cursor = _cursor(page_token, query)
        asked = audit_pb2.AuditQuery()
        asked.CopyFrom(query)
        asked.limit = page_size + 1
        if cursor is not None:
            asked.before.CopyFrom(cursor)
        names = sorted(self._sources)
        answers = await asyncio.gather(
            *(asyncio.wait_for(self._sources[name](asked), self._timeout_s) for name in names),
            return_exceptions=True,
        )
        merged: list[audit_pb2.AuditEntry] = []
        for name, answer in zip(names, answers, strict=True):
            if isinstance(answer, BaseException):
                raise Unavailable(
                    Reason.AUDIT_UNAVAILABLE, f"the {name} service did not answer; retry", {"service": name}
                ) from answer
            merged.extend(answer)
        merged.sort(key=_order, reverse=True)
        page, more = merged[:page_size], len(merged) > page_size
        return page, _page_token(page[-1], query) if more else ""


# --- the table, for each service's migration ------------------------------------------------------------
