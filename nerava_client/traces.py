"""The local trace store: the spans `make run`'s OTLP receiver (tools/trace_receiver.py) keeps in SQLite under
.run/, and what `nerava trace` reads from it — one request as a tree across Envoy, the services and the outbox
hops, with timings.

SQLite because it is a single file any process can read while the receiver writes (WAL), and it is in the
standard library; the store holds hours of one developer's spans, not a production volume.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
import sqlite3
from collections.abc import Iterable, Sequence

ROOT = pathlib.Path(__file__).resolve().parent.parent
DEFAULT_STORE = ROOT / ".run" / "traces.db"
# Envoy tags its spans with the request id under this key; the services use it as a span attribute too.
REQUEST_ID_KEYS = ("guid:x-request-id", "request_id")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS spans (
    trace_id TEXT NOT NULL,
    span_id TEXT NOT NULL,
    parent_span_id TEXT NOT NULL,
    service TEXT NOT NULL,
    name TEXT NOT NULL,
    kind TEXT NOT NULL,
    start_ns INTEGER NOT NULL,
    end_ns INTEGER NOT NULL,
    error INTEGER NOT NULL,
    attributes TEXT NOT NULL,
    PRIMARY KEY (trace_id, span_id)
);
CREATE INDEX IF NOT EXISTS spans_by_start ON spans (start_ns);
CREATE TABLE IF NOT EXISTS request_ids (
    request_id TEXT NOT NULL,
    trace_id TEXT NOT NULL,
    PRIMARY KEY (request_id, trace_id)
);
"""


@dataclasses.dataclass(frozen=True)
class Span:
    trace_id: str  # 32 hex digits
    span_id: str  # 16 hex digits
    parent_span_id: str  # '' for a root
    service: str
    name: str
    kind: str  # SERVER, CLIENT, INTERNAL…
    start_ns: int
    end_ns: int
    error: bool
    attributes: dict[str, str]

    @property
    def duration_ms(self) -> float:
        return (self.end_ns - self.start_ns) / 1e6

    @property
    def request_id(self) -> str:
        return next((self.attributes[key] for key in REQUEST_ID_KEYS if self.attributes.get(key)), "")


class TraceStore:
    """Spans in one SQLite file, pruned to the last ``retention_s`` seconds as new ones arrive."""

    def __init__(self, path: pathlib.Path = DEFAULT_STORE, retention_s: float = 6 * 3600) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.retention_s = retention_s
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        self._db.close()

    def add(self, spans: Iterable[Span], now_ns: int) -> None:
        rows = [
            (s.trace_id, s.span_id, s.parent_span_id, s.service, s.name, s.kind, s.start_ns, s.end_ns, int(s.error),
             json.dumps(s.attributes, sort_keys=True))
            for s in spans
        ]  # fmt: skip
        links = [(s.request_id, s.trace_id) for s in spans if s.request_id]
        with self._db:
            self._db.execute("BEGIN")
            self._db.executemany("INSERT OR REPLACE INTO spans VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
            self._db.executemany("INSERT OR IGNORE INTO request_ids VALUES (?, ?)", links)
            cutoff = now_ns - int(self.retention_s * 1e9)
            if self._db.execute("DELETE FROM spans WHERE end_ns < ?", (cutoff,)).rowcount:
                self._db.execute("DELETE FROM request_ids WHERE trace_id NOT IN (SELECT trace_id FROM spans)")

    def find(self, trace_or_request_id: str) -> list[Span]:
        """Every span of the trace with this id, or of the traces this request id started (newest last)."""
        key = trace_or_request_id.strip().lower().replace("-", "") if _is_trace_id(trace_or_request_id) else ""
        trace_ids = [key] if key else []
        trace_ids += [
            row[0]
            for row in self._db.execute(
                "SELECT trace_id FROM request_ids WHERE request_id = ?", (trace_or_request_id.strip(),)
            )
        ]
        spans: list[Span] = []
        for trace_id in dict.fromkeys(trace_ids):
            spans += [
                Span(
                    trace_id=row[0], span_id=row[1], parent_span_id=row[2], service=row[3], name=row[4], kind=row[5],
                    start_ns=row[6], end_ns=row[7], error=bool(row[8]), attributes=json.loads(row[9]),
                )
                for row in self._db.execute("SELECT * FROM spans WHERE trace_id = ? ORDER BY start_ns", (trace_id,))
            ]  # fmt: skip
        return spans

    def count(self) -> int:
        return int(self._db.execute("SELECT count(*) FROM spans").fetchone()[0])


def _is_trace_id(text: str) -> bool:
    compact = text.strip().lower().replace("-", "")
    return len(compact) == 32 and all(c in "0123456789abcdef" for c in compact)


def tree_lines(spans: Sequence[Span]) -> list[str]:
    """The spans as an indented tree per trace: offset from the trace's start, duration, service, span name. A span
    whose parent is not in the store (sampled out, or still on its way) is shown at the top level."""
    known = {(span.trace_id, span.span_id) for span in spans}
    children: dict[tuple[str, str], list[Span]] = {}
    for span in sorted(spans, key=lambda span: span.start_ns):
        parent = (span.trace_id, span.parent_span_id)
        children.setdefault(parent if parent in known else (span.trace_id, ""), []).append(span)
    lines: list[str] = []
    for trace_id in dict.fromkeys(span.trace_id for span in spans):
        trace = [span for span in spans if span.trace_id == trace_id]
        request_ids = sorted({span.request_id for span in trace if span.request_id})
        lines.append(f"trace {trace_id}" + (f"  request {', '.join(request_ids)}" if request_ids else ""))
        origin = min(span.start_ns for span in trace)
        pending = [(root, 0) for root in reversed(children.get((trace_id, ""), []))]
        while pending:
            span, depth = pending.pop()
            lines.append(
                f"{(span.start_ns - origin) / 1e6:9.1f} ms {span.duration_ms:9.1f} ms  {'  ' * depth}"
                f"{span.service}: {span.name} [{span.kind.lower()}]" + ("  ERROR" if span.error else "")
            )
            pending += [(child, depth + 1) for child in reversed(children.get((trace_id, span.span_id), []))]
    return lines
