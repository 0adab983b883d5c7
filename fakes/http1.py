"""The HTTP/1.1 framing the fake servers share: read one request off a keep-alive connection.

Small on purpose: Content-Length bodies only (what the SDKs under test send), no chunked uploads.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from http import HTTPStatus
from urllib.parse import unquote, urlsplit


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    query: str
    version: str
    headers: Mapping[str, str]  # lower-cased names
    body: bytes


class MalformedRequest(Exception):
    """The bytes on the connection are not an HTTP/1.1 request the fakes understand."""


def reason_phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


async def read_request(reader: asyncio.StreamReader, max_body_bytes: int) -> Request | None:
    """Read one HTTP/1.1 request; None when the client closed the connection between requests."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as exc:
        if not exc.partial:
            return None
        raise MalformedRequest("connection closed inside the request head") from exc
    except asyncio.LimitOverrunError as exc:
        raise MalformedRequest("request head too large") from exc

    request_line, *header_lines = head.decode("latin-1").split("\r\n")
    parts = request_line.split(" ")
    if len(parts) != 3 or parts[2] not in ("HTTP/1.1", "HTTP/1.0"):
        raise MalformedRequest(f"bad request line {request_line!r}")
    method, target, version = parts

    headers: dict[str, str] = {}
    for line in header_lines:
        if not line:
            continue
        name, separator, value = line.partition(":")
        if not separator or not name or name != name.strip():
            raise MalformedRequest(f"bad header line {line!r}")
        headers[name.lower()] = value.strip()

    if "transfer-encoding" in headers:
        raise MalformedRequest("Transfer-Encoding is not supported")
    try:
        length = int(headers.get("content-length", "0"))
    except ValueError as exc:
        raise MalformedRequest("bad Content-Length") from exc
    if not 0 <= length <= max_body_bytes:
        raise MalformedRequest("bad Content-Length")
    try:
        body = await reader.readexactly(length)
    except asyncio.IncompleteReadError as exc:
        raise MalformedRequest("connection closed inside the body") from exc
    url = urlsplit(target)
    return Request(method, unquote(url.path), url.query, version, headers, body)
