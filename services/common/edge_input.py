"""Input the edge refuses before any servicer, decoder or SQL sees it.

The transcoder copies REST path segments, query values and JSON strings byte for byte into proto string
fields. Two kinds of value then break things far from the edge:

* bytes that are not UTF-8 (``/v1/checkout/qr/%C0%AE``): the request cannot even be parsed, and gRPC's own
  answer to the failed parse was a 500 naming a Python class;
* the NUL character (``?q=a%00b``, ``"token": "a\\u0000b"``): valid UTF-8 and a valid proto string, but
  PostgreSQL refuses it in text, so the call failed deep in a query.

:func:`tolerant_deserializer` wraps a method's request deserializer so that neither raises inside gRPC: it
returns an :class:`UnreadableRequest` instead, which the validation interceptor answers with
INVALID_ARGUMENT (after authentication, so an unauthorized caller still learns only that it may not call).

:class:`PathBindings` knows, per method, the fields its REST path binds, so a query parameter cannot set one
(``/v1/merchants/{B}/billing/summary?merchant_id={A}`` would otherwise read A's billing).
"""

from __future__ import annotations

import dataclasses
import re
import urllib.parse
from collections.abc import Callable
from typing import Any

from google.api import annotations_pb2, http_pb2
from google.protobuf import descriptor_pool
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

Deserializer = Callable[[bytes], Any]


@dataclasses.dataclass(frozen=True)
class UnreadableRequest:
    """A request the edge refuses: ``field`` is the dotted path of the offending field ('' when unknown)."""

    field: str
    why: str
    rule: str


def _nul_field(message: Message, prefix: str = "") -> str | None:
    """The dotted path of the first string field holding a NUL character, or None."""
    for field, value in message.ListFields():
        name = f"{prefix}{field.name}"
        if field.type == FieldDescriptor.TYPE_STRING:
            values = value if field.is_repeated else (value,)
            if any("\x00" in item for item in values):
                return name
        elif field.type == FieldDescriptor.TYPE_MESSAGE:
            if field.message_type is not None and field.message_type.GetOptions().map_entry:
                for key, item in value.items():
                    if isinstance(key, str) and "\x00" in key:
                        return name
                    if isinstance(item, str) and "\x00" in item:
                        return f"{name}[{key}]"
                    if isinstance(item, Message) and (found := _nul_field(item, f"{name}[{key}].")) is not None:
                        return found
                continue
            for index, item in enumerate(value if field.is_repeated else (value,)):
                sub = f"{name}[{index}]." if field.is_repeated else f"{name}."
                if (found := _nul_field(item, sub)) is not None:
                    return found
    return None


def tolerant_deserializer(deserialize: Deserializer | None) -> Deserializer | None:
    """``deserialize`` that returns an :class:`UnreadableRequest` instead of raising, and for a request with a
    NUL character in a string field."""
    if deserialize is None:
        return None

    def read(data: bytes) -> Any:
        try:
            message = deserialize(data)
        except Exception:  # DecodeError for bad UTF-8; anything else unparseable is refused the same way
            return UnreadableRequest("", "the request is not valid: text must be UTF-8", "string.utf8")
        # A NUL byte in a string field is also a 0x00 in the encoding: most requests skip the walk entirely.
        if b"\x00" in data and isinstance(message, Message):
            field = _nul_field(message)
            if field is not None:
                return UnreadableRequest(field, "must not contain the NUL character", "string.no_nul")
        return message

    return read


_VARIABLE = re.compile(r"\{([^}=]+)")


def _rule_patterns(rule: http_pb2.HttpRule) -> list[str]:
    patterns = [getattr(rule, kind) for kind in ("get", "put", "post", "delete", "patch") if getattr(rule, kind)]
    if rule.HasField("custom"):
        patterns.append(rule.custom.path)
    for extra in rule.additional_bindings:
        patterns += _rule_patterns(extra)
    return patterns


class PathBindings:
    """Per gRPC method, the request fields its REST path template binds."""

    def __init__(self, pool: descriptor_pool.DescriptorPool | None = None) -> None:
        self._pool = pool or descriptor_pool.Default()
        self._cache: dict[str, frozenset[str]] = {}

    def fields(self, service: str, method: str) -> frozenset[str]:
        key = f"{service}.{method}"
        if key not in self._cache:
            try:
                options = self._pool.FindMethodByName(key).GetOptions()
            except KeyError:
                self._cache[key] = frozenset()
            else:
                rule = options.Extensions[annotations_pb2.http]
                self._cache[key] = frozenset(
                    name.strip() for pattern in _rule_patterns(rule) for name in _VARIABLE.findall(pattern)
                )
        return self._cache[key]


def query_overriding_path(original_path: str | None, bound: frozenset[str]) -> str | None:
    """The first query parameter of the REST request that names a field its path binds, or None."""
    if not bound or not original_path or "?" not in original_path:
        return None
    query = original_path.partition("?")[2]
    for name, _ in urllib.parse.parse_qsl(query, keep_blank_values=True):
        if name in bound or any(name.startswith(f"{field}.") for field in bound):
            return name
    return None
