"""The driver's charging sessions as the apps read them: the active one (or the one that just ended, for the
app's toast), a page of the history, one session, and ending one by hand — each ended session with the grant it
earned. Incentives owns grants (a clawback happens after the evaluation), so they are asked for at every read."""

from __future__ import annotations

import dataclasses
import datetime
import uuid
from collections.abc import Sequence

from sqlalchemy.ext.asyncio import AsyncEngine

from services.common.errors import NotFound
from services.sessions import store
from services.sessions.peers import Grant, SessionGrants
from services.sessions.reasons import Reason
from services.sessions.tracking import Row, SessionTracker

LAST_ENDED_WINDOW = datetime.timedelta(minutes=5)  # the session that just ended, for the toast


@dataclasses.dataclass(frozen=True)
class SessionView:
    """A session row and, once it ended, its grant (None before, without one, or when incentives did not answer)."""

    session: Row
    grant: Grant | None = None


def _not_found(session_id: uuid.UUID) -> NotFound:
    return NotFound(Reason.SESSION_NOT_FOUND, "no charging session with that id", {"session_id": str(session_id)})


class DriverSessions:
    def __init__(
        self,
        reads: AsyncEngine,
        tracker: SessionTracker,
        grants: SessionGrants,
    ) -> None:
        self._reads = reads
        self._tracker = tracker
        self._grants = grants

    async def active_or_last_ended(
        self, driver_id: str, now: datetime.datetime
    ) -> tuple[SessionView | None, SessionView | None]:
        """(the active session, None), else (None, the session that ended in the last five minutes, if any)."""
        active, recent = await store.active_or_last_ended(self._reads, driver_id, now - LAST_ENDED_WINDOW)
        if active is not None:
            [view] = await self._with_grants([active])
            return view, None
        if recent is None:
            return None, None
        [view] = await self._with_grants([recent])
        return None, view

    async def page(self, driver_id: str, *, offset: int, size: int) -> tuple[list[SessionView], bool]:
        """A page of the driver's sessions, latest started first, and whether more follow."""
        rows = await store.driver_sessions(self._reads, driver_id, offset=offset, limit=size + 1)
        return await self._with_grants(rows[:size]), len(rows) > size

    async def get(self, session_id: uuid.UUID, caller_id: str | None, *, is_admin: bool) -> SessionView:
        """The caller's own session (an admin reads every one); any other is SESSION_NOT_FOUND."""
        row = await store.session_by_id(self._reads, session_id)
        if row is None or (row["driver_id"] != caller_id and not is_admin):
            raise _not_found(session_id)
        [view] = await self._with_grants([row])
        return view

    async def end_by_hand(self, session_id: uuid.UUID, driver_id: str) -> tuple[SessionView, bool]:
        """Ends the driver's session (MANUAL): (the session, whether it had ended already)."""
        result = await self._tracker.end_by_hand(session_id, driver_id)
        if result is None:
            raise _not_found(session_id)
        row, already_ended = result
        [view] = await self._with_grants([row])
        return view, already_ended

    async def _with_grants(self, rows: Sequence[Row]) -> list[SessionView]:
        grants = await self._grants.grants([str(row["id"]) for row in rows if row["session_end"] is not None])
        return [SessionView(row, grants.get(str(row["id"]))) for row in rows]
