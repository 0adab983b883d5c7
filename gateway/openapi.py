"""The OpenAPI 3.1 document of the REST surface, generated from the descriptor set (`make proto` writes
gen/openapi.json; the gateway serves it at /openapi.json, with a Redoc page at /docs).

Everything comes from the contracts, nothing is written twice:
- paths and methods from each RPC's google.api.http binding (and its additional bindings), path parameters from
  the template, the body from `body`, every other scalar field of the request as a query parameter;
- bodies and answers as the transcoder prints them (proto3 JSON with the proto's field names, primitive fields
  always printed, enums by name, 64-bit integers as strings, Timestamps as RFC 3339) — so a non-`optional`
  scalar is required in an answer, and an `optional` one may be absent;
- a google.api.HttpBody answer is raw bytes, except the `json_array` fields that carry a bare JSON array of
  their message's typed repeated field;
- the protovalidate rules JSON Schema can express (lengths, patterns, UUIDs, emails, bounds, `in`, item counts,
  required fields) on request schemas; the rest stays in the descriptions;
- descriptions from the proto comments, and per operation the ErrorInfo reasons its service documents (the
  "Errors carry a google.rpc.ErrorInfo…" table of the service comment) that its own comment names, plus the
  reasons every operation can answer.

Usage: python -m gateway.openapi [--descriptor gen/nerava.binpb] [--out gen/openapi.json]
"""

from __future__ import annotations

import argparse
import json
import pathlib
import re
from collections.abc import Iterator, Mapping
from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, json_format, message_factory
from google.protobuf.descriptor import Descriptor, EnumDescriptor, FieldDescriptor, MethodDescriptor

ROOT = pathlib.Path(__file__).resolve().parent.parent
Json = dict[str, Any]

_TYPE = FieldDescriptor
_INTEGER_32 = {_TYPE.TYPE_INT32, _TYPE.TYPE_SINT32, _TYPE.TYPE_SFIXED32, _TYPE.TYPE_UINT32, _TYPE.TYPE_FIXED32}
_INTEGER_64 = {_TYPE.TYPE_INT64, _TYPE.TYPE_SINT64, _TYPE.TYPE_SFIXED64, _TYPE.TYPE_UINT64, _TYPE.TYPE_FIXED64}
_WELL_KNOWN: Mapping[str, Json] = {
    "google.protobuf.Timestamp": {"type": "string", "format": "date-time"},
    "google.protobuf.Duration": {"type": "string", "pattern": r"^-?[0-9]+(\.[0-9]+)?s$"},
    "google.protobuf.FieldMask": {"type": "string", "description": "Comma-separated field paths."},
    "google.protobuf.Struct": {"type": "object"},
    "google.protobuf.Value": {},
    "google.protobuf.ListValue": {"type": "array"},
    "google.protobuf.Empty": {"type": "object"},
    "google.protobuf.Any": {"type": "object", "properties": {"@type": {"type": "string"}}},
    "google.protobuf.StringValue": {"type": ["string", "null"]},
    "google.protobuf.BoolValue": {"type": ["boolean", "null"]},
    "google.protobuf.Int32Value": {"type": ["integer", "null"], "format": "int32"},
    "google.protobuf.DoubleValue": {"type": ["number", "null"]},
}
HTTP_BODY = "google.api.HttpBody"
# What every operation may answer whatever its service documents: the gateway's and the runtime's own refusals.
COMMON_REASONS: Mapping[str, str] = {
    "INVALID_ARGUMENT": "a field breaks its rule (a google.rpc.BadRequest names each field)",
    "UNAUTHENTICATED": "no or invalid bearer token",
    "PERMISSION_DENIED": "the caller lacks the role",
    "RATE_LIMITED": "too many requests from this client (the gateway's limit)",
    "PAYLOAD_TOO_LARGE": "the request body is over the gateway's limit",
}
_HTTP_STATUS = {
    "INVALID_ARGUMENT": "400", "FAILED_PRECONDITION": "400", "OUT_OF_RANGE": "400", "UNAUTHENTICATED": "401",
    "PERMISSION_DENIED": "403", "NOT_FOUND": "404", "ALREADY_EXISTS": "409", "ABORTED": "409",
    "RESOURCE_EXHAUSTED": "429", "UNAVAILABLE": "503", "DEADLINE_EXCEEDED": "504", "INTERNAL": "500",
}  # fmt: skip
_REASON_LINE = re.compile(r"^\s{2,}([A-Z][A-Z0-9_]+)\s+\(([A-Z_]+)\)\s+(.*)$")
_PATH_FIELD = re.compile(r"\{([a-zA-Z0-9_.]+)(=[^}]*)?\}")


class _Contracts:
    """The descriptor set with its comments and the options our generator reads (google.api.http,
    buf.validate), parsed through a pool built from the set itself — no generated module needed."""

    def __init__(self, descriptor_set: bytes) -> None:
        self.files = descriptor_pb2.FileDescriptorSet.FromString(descriptor_set)
        self.pool = descriptor_pool.DescriptorPool()
        for file in self.files.file:
            self.pool.Add(file)
        # Extensions from a pool of our own: types-protobuf types Extensions[] for generated extensions only.
        self._http: Any = self.pool.FindExtensionByName("google.api.http")
        self._field_rules: Any = self.pool.FindExtensionByName("buf.validate.field")
        self._method_options = message_factory.GetMessageClass(
            self.pool.FindMessageTypeByName("google.protobuf.MethodOptions")
        )
        self._field_options = message_factory.GetMessageClass(
            self.pool.FindMessageTypeByName("google.protobuf.FieldOptions")
        )
        self.comments: dict[str, str] = {}
        for file in self.files.file:
            self._index_comments(file)

    def _index_comments(self, file: descriptor_pb2.FileDescriptorProto) -> None:
        # Source-info paths: 4 = message_type, 2 = field, 5 = enum_type, 6 = service, 2 = method (in a service).
        by_path = {tuple(loc.path): loc.leading_comments for loc in file.source_code_info.location}
        package = file.package

        def messages(protos: Any, prefix: str, path: tuple[int, ...]) -> None:
            for i, message in enumerate(protos):
                name, here = f"{prefix}.{message.name}", (*path, i)
                self.comments[name] = by_path.get(here, "")
                for j, field in enumerate(message.field):
                    self.comments[f"{name}.{field.name}"] = by_path.get((*here, 2, j), "")
                messages(message.nested_type, name, (*here, 3))

        messages(file.message_type, package, (4,))
        for i, enum in enumerate(file.enum_type):
            self.comments[f"{package}.{enum.name}"] = by_path.get((5, i), "")
        for i, service in enumerate(file.service):
            self.comments[f"{package}.{service.name}"] = by_path.get((6, i), "")
            for j, method in enumerate(service.method):
                self.comments[f"{package}.{service.name}.{method.name}"] = by_path.get((6, i, 2, j), "")

    def http_rules(self, method: MethodDescriptor) -> list[Json]:
        options = self._method_options.FromString(method.GetOptions().SerializeToString())
        if not options.HasExtension(self._http):
            return []
        rule = json_format.MessageToDict(options.Extensions[self._http], preserving_proto_field_name=True)
        return [rule, *rule.pop("additional_bindings", [])]

    def field_rules(self, field: FieldDescriptor) -> Json:
        options = self._field_options.FromString(field.GetOptions().SerializeToString())
        if not options.HasExtension(self._field_rules):
            return {}
        return json_format.MessageToDict(options.Extensions[self._field_rules], preserving_proto_field_name=True)

    def services(self) -> Iterator[tuple[str, Any]]:
        for file in self.files.file:
            if file.package.startswith("nerava."):
                for service in file.service:
                    yield file.package, self.pool.FindServiceByName(f"{file.package}.{service.name}")


def _text(comment: str) -> str:
    return " ".join(line.strip() for line in comment.strip().splitlines() if line.strip())


def documented_reasons(service_comment: str) -> dict[str, tuple[str, str]]:
    """The service comment's ErrorInfo table: reason → (gRPC code, what it means)."""
    reasons: dict[str, tuple[str, str]] = {}
    last = ""
    for line in service_comment.splitlines():
        found = _REASON_LINE.match(line)
        if found:
            last = found.group(1)
            reasons[last] = (found.group(2), found.group(3).strip())
        elif last and line.startswith(" " * 20) and line.strip():
            code, meaning = reasons[last]
            reasons[last] = (code, f"{meaning} {line.strip()}")
        else:
            last = ""
    return reasons


class _Builder:
    def __init__(self, contracts: _Contracts) -> None:
        self.contracts = contracts
        self.schemas: dict[str, Json] = {}

    # -- schemas ----------------------------------------------------------------------------------------------

    def enum_schema(self, enum: EnumDescriptor) -> Json:
        return {
            "type": "string",
            "enum": [value.name for value in enum.values],
            "description": _text(self.contracts.comments.get(enum.full_name, "")),
        }

    def ref(self, message: Descriptor, *, request: bool) -> Json:
        if message.full_name in _WELL_KNOWN:
            return dict(_WELL_KNOWN[message.full_name])
        name = message.full_name + (".Input" if request else "")
        if name not in self.schemas:
            self.schemas[name] = {}  # placeholder: a message may refer to itself
            self.schemas[name] = self.message_schema(message, request=request)
        return {"$ref": f"#/components/schemas/{name}"}

    def message_schema(self, message: Descriptor, *, request: bool, skip: frozenset[str] = frozenset()) -> Json:
        properties: Json = {}
        required: list[str] = []
        for field in message.fields:
            if field.name in skip:
                continue
            schema = self.field_schema(field, request=request)
            comment = _text(self.contracts.comments.get(f"{message.full_name}.{field.name}", ""))
            if comment and "$ref" not in schema:
                schema["description"] = comment
            properties[field.name] = schema
            rules = self.contracts.field_rules(field) if request else {}
            optional = field.has_presence or field.containing_oneof is not None
            if request and rules.get("required"):
                required.append(field.name)
            elif not request and not optional and field.message_type is None:
                required.append(field.name)  # primitive fields are always printed
        out: Json = {"type": "object", "properties": properties}
        if required:
            out["required"] = required
        description = _text(self.contracts.comments.get(message.full_name, ""))
        if description:
            out["description"] = description
        return out

    def field_schema(self, field: FieldDescriptor, *, request: bool) -> Json:
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            value = field.message_type.fields_by_name["value"]
            return {"type": "object", "additionalProperties": self.single(value, request=request)}
        item = self.single(field, request=request)
        rules = self.contracts.field_rules(field) if request else {}
        if field.is_repeated:
            schema: Json = {"type": "array", "items": item}
            repeated = rules.get("repeated", {})
            for rule, keyword in (("min_items", "minItems"), ("max_items", "maxItems")):
                if rule in repeated:
                    schema[keyword] = int(repeated[rule])
            if repeated.get("unique"):
                schema["uniqueItems"] = True
            if "items" in repeated and "$ref" not in item:
                item.update(_scalar_rules(repeated["items"]))
            return schema
        if "$ref" not in item:
            item.update(_scalar_rules(rules))
        return item

    def single(self, field: FieldDescriptor, *, request: bool) -> Json:
        kind = field.type
        if field.message_type is not None:
            return self.ref(field.message_type, request=request)
        if field.enum_type is not None:
            return self.enum_schema(field.enum_type)
        if kind in _INTEGER_32:
            return {"type": "integer", "format": "int32"}
        if kind in _INTEGER_64:
            return {"type": "string", "format": "int64", "pattern": "^-?[0-9]+$"}
        if kind in (_TYPE.TYPE_DOUBLE, _TYPE.TYPE_FLOAT):
            return {"type": "number"}
        if kind == _TYPE.TYPE_BOOL:
            return {"type": "boolean"}
        if kind == _TYPE.TYPE_BYTES:
            return {"type": "string", "contentEncoding": "base64"}
        return {"type": "string"}

    # -- operations -------------------------------------------------------------------------------------------

    def operation(
        self, method: MethodDescriptor, rule: Json, reasons: Mapping[str, tuple[str, str]], binding: int
    ) -> Json:
        verb = next(v for v in ("get", "put", "post", "delete", "patch") if v in rule)
        path = rule[verb]
        path_fields = [m.group(1) for m in _PATH_FIELD.finditer(path)]
        request = method.input_type
        parameters: list[Json] = [
            {"name": name, "in": "path", "required": True, "schema": self.path_schema(request, name)}
            for name in path_fields
        ]
        body = rule.get("body", "")
        top_level = {name.split(".")[0] for name in path_fields}
        operation: Json = {
            # An additional binding of the same RPC gets its own id (OpenAPI wants them unique).
            "operationId": f"{method.containing_service.name}_{method.name}" + (f"_{binding}" if binding else ""),
            "tags": [method.containing_service.full_name],
            "summary": method.name,
            "description": _text(self.contracts.comments.get(method.full_name, "")),
        }
        if body == "*":
            if request.full_name == HTTP_BODY:
                operation["requestBody"] = {"required": True, "content": _raw_content()}
            else:
                schema = self.message_schema(request, request=True, skip=frozenset(top_level))
                operation["requestBody"] = {"required": True, "content": {"application/json": {"schema": schema}}}
        elif body:
            field = request.fields_by_name[body]
            content = (
                _raw_content()
                if field.message_type is not None and field.message_type.full_name == HTTP_BODY
                else {"application/json": {"schema": self.field_schema(field, request=True)}}
            )
            operation["requestBody"] = {"required": True, "content": content}
        if body != "*":
            parameters += self.query_parameters(request, exclude=top_level | ({body} if body else set()))
        if parameters:
            operation["parameters"] = parameters
        operation["responses"] = {"200": self.answer(method, rule), **self.refusals(method, reasons)}
        operation["x-error-reasons"] = sorted({*COMMON_REASONS, *self.named_reasons(method, reasons)})
        return {verb: operation, "path": _openapi_path(path)}

    def path_schema(self, message: Descriptor, dotted: str) -> Json:
        field: FieldDescriptor | None = None
        for part in dotted.split("."):
            field = message.fields_by_name[part]
            if field.message_type is not None:
                message = field.message_type
        assert field is not None
        return self.field_schema(field, request=True)

    def query_parameters(self, message: Descriptor, exclude: set[str], prefix: str = "") -> list[Json]:
        parameters: list[Json] = []
        for field in message.fields:
            if field.name in exclude:
                continue
            if field.message_type is not None and field.message_type.full_name not in _WELL_KNOWN:
                if not field.is_repeated:  # nested messages by dotted names
                    parameters += self.query_parameters(field.message_type, set(), f"{prefix}{field.name}.")
                continue
            schema = self.field_schema(field, request=True)
            comment = _text(self.contracts.comments.get(f"{message.full_name}.{field.name}", ""))
            parameter: Json = {"name": f"{prefix}{field.name}", "in": "query", "schema": schema}
            if comment:
                parameter["description"] = comment
            parameters.append(parameter)
        return parameters

    def answer(self, method: MethodDescriptor, rule: Json) -> Json:
        output = method.output_type
        field_name = rule.get("response_body", "")
        if output.full_name == HTTP_BODY:
            return {"description": "The raw body.", "content": _raw_content()}
        if field_name:
            field = output.fields_by_name[field_name]
            if field.message_type is not None and field.message_type.full_name == HTTP_BODY:
                if field_name == "json_array":
                    [items] = [f.message_type for f in output.fields if f.is_repeated and f.message_type]
                    schema = {"type": "array", "items": self.ref(items, request=False)}
                    return {"description": "A bare JSON array.", "content": {"application/json": {"schema": schema}}}
                return {"description": "The raw body (its own Content-Type).", "content": _raw_content()}
            schema = self.field_schema(field, request=False)
        else:
            schema = self.ref(output, request=False)
        return {"description": "OK", "content": {"application/json": {"schema": schema}}}

    def named_reasons(self, method: MethodDescriptor, reasons: Mapping[str, tuple[str, str]]) -> set[str]:
        """The service's documented reasons that the method's comment, or its request's comments, name."""
        comments = [self.contracts.comments.get(method.full_name, "")]
        comments += [
            self.contracts.comments.get(name, "")
            for name in (method.input_type.full_name, *(f.full_name for f in method.input_type.fields))
        ]
        text = "\n".join(comments)
        return {reason for reason in reasons if re.search(rf"\b{reason}\b", text)}

    def refusals(self, method: MethodDescriptor, reasons: Mapping[str, tuple[str, str]]) -> Json:
        named = self.named_reasons(method, reasons)
        by_status: dict[str, list[str]] = {}
        for reason, meaning in COMMON_REASONS.items():
            code = reasons.get(reason, (reason if reason in _HTTP_STATUS else "", ""))[0]
            status = _HTTP_STATUS.get(code, {"RATE_LIMITED": "429", "PAYLOAD_TOO_LARGE": "413"}.get(reason, "400"))
            by_status.setdefault(status, []).append(f"{reason}: {meaning}")
        for reason in sorted(named):
            code, meaning = reasons[reason]
            by_status.setdefault(_HTTP_STATUS.get(code, "400"), []).append(f"{reason} ({code}): {meaning}")
        status_ref = {"$ref": "#/components/schemas/google.rpc.Status"}
        return {
            status: {
                "description": "ErrorInfo reasons: " + "; ".join(lines),
                "content": {"application/json": {"schema": status_ref}},
            }
            for status, lines in sorted(by_status.items())
        }


def _scalar_rules(rules: Json) -> Json:
    out: Json = {}
    string = rules.get("string", {})
    for rule, keyword in (("min_len", "minLength"), ("max_len", "maxLength")):
        if rule in string:
            out[keyword] = int(string[rule])
    if "len" in string:
        out["minLength"] = out["maxLength"] = int(string["len"])
    if "pattern" in string:
        out["pattern"] = string["pattern"]
    for rule in ("uuid", "email", "uri", "hostname", "ipv4", "ipv6"):
        if string.get(rule):
            out["format"] = rule
    if "in" in string:
        out["enum"] = list(string["in"])
    for kind in ("int32", "int64", "uint32", "uint64", "sint32", "sint64", "double", "float"):
        bounds = rules.get(kind, {})
        for rule, keyword in (
            ("gte", "minimum"),
            ("lte", "maximum"),
            ("gt", "exclusiveMinimum"),
            ("lt", "exclusiveMaximum"),
        ):
            if rule in bounds:
                value = float(bounds[rule]) if kind in ("double", "float") else int(bounds[rule])
                out[keyword] = value
        if "in" in bounds:
            out["enum"] = [float(v) if kind in ("double", "float") else int(v) for v in bounds["in"]]
    enum = rules.get("enum", {})
    if enum.get("not_in"):
        out["x-not-in"] = enum["not_in"]
    return out


def _raw_content() -> Json:
    """Bytes with their own Content-Type (a google.api.HttpBody)."""
    return {"*/*": {"schema": {"type": "string", "format": "binary"}}}


def _openapi_path(template: str) -> str:
    return _PATH_FIELD.sub(lambda m: "{" + m.group(1) + "}", template)


def _status_schemas(builder: _Builder) -> None:
    """google.rpc.Status as the transcoder prints an error (with the ErrorInfo and BadRequest details)."""
    builder.schemas["google.rpc.Status"] = {
        "type": "object",
        "properties": {
            "code": {"type": "integer", "description": "The gRPC status code."},
            "message": {"type": "string"},
            "details": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "@type": {"type": "string"},
                        "reason": {"type": "string", "description": "The ErrorInfo reason."},
                        "domain": {"type": "string"},
                        "metadata": {"type": "object", "additionalProperties": {"type": "string"}},
                        "field_violations": {"type": "array", "items": {"type": "object"}},
                    },
                    "required": ["@type"],
                },
            },
        },
        "required": ["code", "message"],
    }


def document(descriptor_set: bytes) -> Json:
    contracts = _Contracts(descriptor_set)
    builder = _Builder(contracts)
    _status_schemas(builder)
    paths: dict[str, Json] = {}
    tags: list[Json] = []
    for _package, service in contracts.services():
        comment = contracts.comments.get(service.full_name, "")
        reasons = documented_reasons(comment)
        tags.append({"name": service.full_name, "description": comment.strip()})
        for method in service.methods:
            for binding, rule in enumerate(contracts.http_rules(method)):
                operation = builder.operation(method, rule, reasons, binding)
                path = operation.pop("path")
                paths.setdefault(path, {}).update(operation)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Nerava Mesh REST API",
            "version": "v1",
            "description": (
                "The apps' REST surface, transcoded by the Envoy gateway from the gRPC contracts in proto/. "
                "Errors are google.rpc.Status with a google.rpc.ErrorInfo reason. Generated by `make proto`."
            ),
        },
        "servers": [{"url": "/"}],
        "components": {
            "schemas": dict(sorted(builder.schemas.items())),
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}},
        },
        "security": [{"bearer": []}, {}],
        "tags": tags,
        "paths": dict(sorted(paths.items())),
    }


def render(descriptor_set: bytes) -> str:
    return json.dumps(document(descriptor_set), indent=1, ensure_ascii=False, sort_keys=False) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--descriptor", type=pathlib.Path, default=ROOT / "gen" / "nerava.binpb")
    parser.add_argument("--out", type=pathlib.Path, default=ROOT / "gen" / "openapi.json")
    args = parser.parse_args()
    args.out.write_text(render(args.descriptor.read_bytes()))


if __name__ == "__main__":
    main()
