"""A datetime as a protobuf Timestamp, for every servicer's messages: one helper instead of one per service. An
unknown time (None) stays unset in the answer."""

from __future__ import annotations

import datetime
from typing import overload

from google.protobuf import timestamp_pb2


@overload
def timestamp(value: datetime.datetime) -> timestamp_pb2.Timestamp: ...


@overload
def timestamp(value: datetime.datetime | None) -> timestamp_pb2.Timestamp | None: ...


def timestamp(value: datetime.datetime | None) -> timestamp_pb2.Timestamp | None:
    if value is None:
        return None
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(value)
    return stamp
