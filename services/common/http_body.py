"""google.api.HttpBody payloads for responses the apps read as bare JSON arrays (see proto/README.md)."""

from __future__ import annotations

import json
from collections.abc import Iterable

from google.api import httpbody_pb2
from google.protobuf import json_format
from google.protobuf.message import Message


def json_array(items: Iterable[Message]) -> httpbody_pb2.HttpBody:
    """The items printed exactly as the gateway prints messages: snake_case keys, primitives always."""
    printed = [
        json_format.MessageToDict(item, always_print_fields_with_no_presence=True, preserving_proto_field_name=True)
        for item in items
    ]
    return httpbody_pb2.HttpBody(content_type="application/json", data=json.dumps(printed).encode())
