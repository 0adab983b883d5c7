"""Answers checked against gen/openapi.json: every REST answer a test receives through the gateway is validated
against the operation's documented response (the `rest` fixture does it for every call)."""

from __future__ import annotations

import json
import pathlib
import re
from functools import cache
from typing import Any

import httpx
import jsonschema  # type: ignore[import-untyped]
import referencing
import referencing.jsonschema

ROOT = pathlib.Path(__file__).resolve().parent.parent.parent
DOCUMENT = ROOT / "gen" / "openapi.json"
DOCUMENT_URI = "urn:nerava:openapi"
STATUS = {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/google.rpc.Status"}}}}


class UndocumentedAnswer(AssertionError):
    """An answer the OpenAPI document does not describe."""


@cache
def _document() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DOCUMENT.read_text())
    return loaded


@cache
def _registry() -> referencing.Registry[Any]:
    resource = referencing.Resource.from_contents(_document(), referencing.jsonschema.DRAFT202012)
    registry: referencing.Registry[Any] = referencing.Registry().with_resource(DOCUMENT_URI, resource)
    return registry


@cache
def _templates() -> list[tuple[re.Pattern[str], str]]:
    found = []
    for template in _document()["paths"]:
        pattern = re.escape(template)
        pattern = re.sub(r"\\\{[a-zA-Z0-9_.]+\\\}", "[^/]+", pattern)
        found.append((re.compile(f"^{pattern}$"), template))
    # Literal segments win over parameters (/v1/campaigns/driver/active before /v1/campaigns/{campaign_id}).
    found.sort(key=lambda item: item[1].count("{"))
    return found


def operation_for(method: str, path: str) -> dict[str, Any] | None:
    # The transcoder takes a path with a trailing slash as the same route (the console calls /v1/campaigns/).
    path = path.rstrip("/") or "/"
    for pattern, template in _templates():
        if pattern.match(path):
            operation: dict[str, Any] | None = _document()["paths"][template].get(method.lower())
            if operation is not None:
                return operation
    return None


def _rewrite_refs(schema: Any) -> Any:
    """Local refs (#/components/…) point into the registered document."""
    if isinstance(schema, dict):
        return {
            key: (f"{DOCUMENT_URI}{value}" if key == "$ref" and value.startswith("#") else _rewrite_refs(value))
            for key, value in schema.items()
        }
    if isinstance(schema, list):
        return [_rewrite_refs(item) for item in schema]
    return schema


def check_answer(response: httpx.Response) -> None:
    """Raises UndocumentedAnswer when a JSON answer does not match its operation's documented response.

    Answers of the gateway's own (no route: 404 with no operation) are checked against google.rpc.Status."""
    request = response.request
    content_type = response.headers.get("content-type", "")
    if not content_type.startswith("application/json"):
        return
    operation = operation_for(request.method, request.url.path)
    if operation is None:
        if response.status_code < 400:
            raise UndocumentedAnswer(f"{request.method} {request.url.path} answered {response.status_code}")
        schema: dict[str, Any] = STATUS["content"]["application/json"]["schema"]
    else:
        documented = operation["responses"].get(str(response.status_code))
        if documented is None:
            if response.status_code < 400:
                raise UndocumentedAnswer(f"{operation['operationId']}: undocumented status {response.status_code}")
            documented = {
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/google.rpc.Status"}}}
            }
        content = documented.get("content", {})
        if "application/json" not in content:
            return  # raw bytes (HttpBody) with their own type
        schema = content["application/json"]["schema"]
    validator = jsonschema.Draft202012Validator(_rewrite_refs(schema), registry=_registry())
    errors = sorted(validator.iter_errors(response.json()), key=lambda error: list(error.path))
    if errors:
        where = operation["operationId"] if operation else f"{request.method} {request.url.path}"
        detail = "; ".join(f"{'/'.join(map(str, e.path)) or '.'}: {e.message[:200]}" for e in errors[:5])
        raise UndocumentedAnswer(f"{where} {response.status_code}: {detail}")
