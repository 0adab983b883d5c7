"""Requests derived from the contracts: every REST route of the descriptor set, with typed and hostile bodies,
odd path segments and odd query values. Pure generation (no I/O), driven by one seeded random.Random, so a
failing case is replayed with the same NERAVA_FUZZ_SEED."""

from __future__ import annotations

import dataclasses
import json
import pathlib
import random
import re
import urllib.parse
from typing import Any

from google.api import annotations_pb2, http_pb2
from google.protobuf import descriptor_pb2, descriptor_pool
from google.protobuf.descriptor import Descriptor, FieldDescriptor

ROOT = pathlib.Path(__file__).resolve().parent.parent.parent
_VARIABLE = re.compile(r"\{([^}=]+)(=[^}]*)?\}")


@dataclasses.dataclass(frozen=True)
class Route:
    service: str  # fully-qualified gRPC service
    method: str
    verb: str
    template: str  # e.g. /v1/merchants/{merchant_id}/billing/summary
    body: str  # "" (no body), "*" or a field name
    request: Descriptor

    @property
    def path_fields(self) -> list[str]:
        return [match.group(1) for match in _VARIABLE.finditer(self.template)]

    @property
    def raw_body(self) -> bool:
        """The body is a google.api.HttpBody: bytes as they come (webhooks)."""
        if self.body == "*":
            return self.request.full_name == "google.api.HttpBody"
        field = self.request.fields_by_name.get(self.body)
        return (
            field is not None
            and field.message_type is not None
            and field.message_type.full_name == ("google.api.HttpBody")
        )


@dataclasses.dataclass(frozen=True)
class Case:
    route: Route
    kind: str  # "typed" or "hostile"
    method: str
    url: str  # path and query, already encoded
    body: bytes | None
    headers: dict[str, str]


def routes(descriptor_file: pathlib.Path = ROOT / "gen" / "nerava.binpb") -> list[Route]:
    image = descriptor_pb2.FileDescriptorSet.FromString(descriptor_file.read_bytes())
    pool = descriptor_pool.DescriptorPool()
    for proto_file in image.file:
        pool.Add(proto_file)
    found: list[Route] = []
    for proto_file in image.file:
        if not proto_file.package.startswith("nerava."):
            continue
        for service in proto_file.service:
            full_service = f"{proto_file.package}.{service.name}"
            for method in service.method:
                options = descriptor_pb2.MethodOptions.FromString(method.options.SerializeToString())
                rule = options.Extensions[annotations_pb2.http]
                request = pool.FindMessageTypeByName(method.input_type.lstrip("."))
                for verb, template, body in _bindings(rule):
                    found.append(Route(full_service, method.name, verb, template, body, request))
    return found


def _bindings(rule: http_pb2.HttpRule) -> list[tuple[str, str, str]]:
    bindings = [
        (verb.upper(), getattr(rule, verb), rule.body)
        for verb in ("get", "put", "post", "delete", "patch")
        if getattr(rule, verb)
    ]
    if rule.HasField("custom"):
        bindings.append((rule.custom.kind.upper(), rule.custom.path, rule.body))
    for extra in rule.additional_bindings:
        bindings += _bindings(extra)
    return bindings


# ------------------------------------------------------------------------------------------------------------
# Values

# Percent-encoded path segments and query values that once broke a decoder or a query somewhere.
HOSTILE_TEXT = (
    "%C0%AE",  # overlong UTF-8
    "%FF%FE",
    "a%00b",  # NUL
    "%ED%A0%80",  # a UTF-16 surrogate encoded as UTF-8
    "..",
    "%2E%2E%2F%2E%2E",
    "%2F",
    "%25",
    "-1",
    "99999999999999999999999",
    "1e309",
    "NaN",
    "null",
    "true",
    "%F0%9F%98%80",  # an emoji
    "'%20OR%201=1--",
    "x" * 2048,
)
HOSTILE_JSON_VALUES: tuple[Any, ...] = (
    None,
    "",
    "a\u0000b",
    "\ud800",
    "x" * 20000,
    -(2**63) - 1,
    2**64,
    1e309,
    -0.0,
    1.5,
    True,
    [],
    {},
    [[[[[[[[[[[]]]]]]]]]]],
    {"a": {"b": {"c": None}}},
    "1970-01-01T00:00:00Z",
    "9999-12-31T23:59:59.999999999Z",
    "not-a-uuid",
)


def _typed_scalar(field: FieldDescriptor, rng: random.Random) -> Any:
    kind = field.type
    if kind == FieldDescriptor.TYPE_STRING:
        name = field.name
        if name.endswith("id") or name.endswith("_ids"):
            return str(_uuid(rng))
        if "phone" in name:
            return f"+1512{rng.randrange(10**7):07d}"
        if "email" in name:
            return f"fuzz{rng.randrange(10**6)}@example.com"
        return rng.choice(["", "a", "evgo", "Austin", "x" * rng.randrange(1, 80)])
    if kind == FieldDescriptor.TYPE_BOOL:
        return rng.random() < 0.5
    if kind in (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT):
        return rng.choice([0.0, 30.2672, -97.7431, rng.uniform(-180, 180)])
    if kind == FieldDescriptor.TYPE_ENUM:
        assert field.enum_type is not None
        return rng.choice(field.enum_type.values).name
    if kind == FieldDescriptor.TYPE_BYTES:
        return "aGVsbG8="
    # integers: 64-bit ones print as JSON strings; both forms parse
    value = rng.choice([0, 1, 5, 100, 2500, rng.randrange(-1000, 100000)])
    return str(value) if kind in (FieldDescriptor.TYPE_INT64, FieldDescriptor.TYPE_UINT64) else value


def _uuid(rng: random.Random) -> str:
    return str(__import__("uuid").UUID(int=rng.getrandbits(128), version=4))


_WELL_KNOWN: dict[str, Any] = {
    "google.protobuf.Timestamp": "2026-01-01T00:00:00Z",
    "google.protobuf.Duration": "60s",
    "google.protobuf.FieldMask": "name",
    "google.protobuf.Struct": {"k": "v"},
    "google.protobuf.Value": "v",
}


def typed_message(message: Descriptor, rng: random.Random, depth: int = 0) -> dict[str, Any]:
    body: dict[str, Any] = {}
    for field in message.fields:
        if rng.random() < 0.3:
            continue
        body[field.name] = _typed_field(field, rng, depth)
    return body


def _typed_field(field: FieldDescriptor, rng: random.Random, depth: int) -> Any:
    def one() -> Any:
        if field.type == FieldDescriptor.TYPE_MESSAGE:
            assert field.message_type is not None
            known = _WELL_KNOWN.get(field.message_type.full_name)
            if known is not None:
                return known
            if field.message_type.full_name.startswith("google.protobuf.") and field.message_type.fields:
                wrapped = field.message_type.fields_by_name.get("value")
                return _typed_scalar(wrapped, rng) if wrapped is not None else {}
            return typed_message(field.message_type, rng, depth + 1) if depth < 3 else {}
        return _typed_scalar(field, rng)

    if field.message_type is not None and field.message_type.GetOptions().map_entry:
        value_field = field.message_type.fields_by_name["value"]
        return {f"k{i}": _typed_field(value_field, rng, depth + 1) for i in range(rng.randrange(3))}
    if field.is_repeated:
        return [one() for _ in range(rng.randrange(4))]
    return one()


def hostile_message(message: Descriptor, rng: random.Random) -> Any:
    """A JSON document of the right general shape with wrong, huge, deep or unknown values."""
    choice = rng.randrange(6)
    if choice == 0:
        return rng.choice(HOSTILE_JSON_VALUES)  # not even an object
    body = typed_message(message, rng)
    fields = list(message.fields)
    for _ in range(rng.randrange(1, 4)):
        if fields and choice != 5:
            body[rng.choice(fields).name] = rng.choice(HOSTILE_JSON_VALUES)
        else:
            body[f"unknown_{rng.randrange(100)}"] = rng.choice(HOSTILE_JSON_VALUES)
    return body


def _encode_json(value: Any, rng: random.Random) -> bytes:
    text = json.dumps(value, allow_nan=True)
    data = text.encode("utf-8", "surrogatepass")
    if rng.random() < 0.1:  # raw bytes that are not UTF-8 inside the document
        data = data.replace(b'"', b'"\xc0\xae', 1)
    return data


def hostile_body(route: Route, rng: random.Random) -> bytes:
    choice = rng.randrange(8)
    if choice == 0:
        return b""
    if choice == 1:
        return b"{" * 5000
    if choice == 2:
        return bytes(rng.randrange(256) for _ in range(rng.randrange(1, 2000)))
    if choice == 3:
        return b'{"a":' * 200 + b"1" + b"}" * 200
    if choice == 4 and rng.random() < 0.3:
        return b'{"x": "' + b"y" * 70_000 + b'"}'  # over the 64 KiB body limit
    return _encode_json(hostile_message(route.request, rng), rng)


# ------------------------------------------------------------------------------------------------------------
# Requests


def _field_by_path(message: Descriptor, path: str) -> FieldDescriptor | None:
    field: FieldDescriptor | None = None
    current: Descriptor | None = message
    for part in path.split("."):
        if current is None:
            return None
        field = current.fields_by_name.get(part)
        current = field.message_type if field is not None else None
    return field


def case(route: Route, kind: str, rng: random.Random) -> Case:
    def segment(name: str) -> str:
        field = _field_by_path(route.request, name)
        if kind == "hostile" and rng.random() < 0.7:
            return rng.choice(HOSTILE_TEXT)
        value = _typed_scalar(field, rng) if field is not None and field.message_type is None else "x"
        return urllib.parse.quote(str(value), safe="")

    path = _VARIABLE.sub(lambda match: segment(match.group(1)), route.template)
    query: list[tuple[str, str]] = []
    if route.body != "*":
        bound = set(route.path_fields) | ({route.body} if route.body else set())
        for field in route.request.fields:
            if field.name in bound or field.message_type is not None or rng.random() < 0.5:
                continue
            if kind == "hostile" and rng.random() < 0.5:
                query.append((field.name, rng.choice(HOSTILE_TEXT)))
            else:
                value = _typed_scalar(field, rng)
                query.append(
                    (
                        field.name,
                        urllib.parse.quote(str(value).lower() if isinstance(value, bool) else str(value), safe=""),
                    )
                )
        if kind == "hostile" and rng.random() < 0.3:
            query.append((rng.choice(route.path_fields or ["unknown"]), "x"))
    url = path + ("?" + "&".join(f"{name}={value}" for name, value in query) if query else "")
    body: bytes | None = None
    headers: dict[str, str] = {}
    if route.body:
        headers["content-type"] = "application/json"
        if route.raw_body:
            body = bytes(rng.randrange(256) for _ in range(rng.randrange(0, 3000)))
            headers["content-type"] = rng.choice(["application/json", "application/octet-stream"])
        elif kind == "hostile":
            body = hostile_body(route, rng)
        else:
            message = route.request
            if route.body != "*":
                field = route.request.fields_by_name[route.body]
                message = field.message_type if field.message_type is not None else message
            body = _encode_json(typed_message(message, rng), rng) if rng.random() < 0.95 else b"{}"
    return Case(route, kind, route.verb, url, body, headers)
