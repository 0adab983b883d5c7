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


Answer = tuple[int, Mapping[str, str], bytes]  # status, headers, body


class LoopbackServer:
    """A keep-alive HTTP/1.1 server on 127.0.0.1 for the small fakes: a subclass answers each request in
    `answer`; the server frames it. Used as `async with`; `base_url` is where it listens."""

    max_body_bytes = 64 * 1024

    def __init__(self, port: int = 0) -> None:
        self._port = port
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()

    async def answer(self, request: Request) -> Answer:
        raise NotImplementedError

    async def __aenter__(self) -> LoopbackServer:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self._port)
        return self

    async def __aexit__(self, *_: object) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        for connection in list(self._connections):
            connection.cancel()
        await asyncio.gather(*self._connections, return_exceptions=True)
        await server.wait_closed()

    @property
    def base_url(self) -> str:
        if self._server is None:
            raise RuntimeError(f"{type(self).__name__} is not running; use it as `async with`")
        host, port = self._server.sockets[0].getsockname()[:2]
        return f"http://{host}:{port}"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._connections.add(task)
        try:
            while True:
                headers: Mapping[str, str]
                try:
                    request = await read_request(reader, self.max_body_bytes)
                except MalformedRequest:
                    status, headers, body = 400, {"content-type": "text/plain"}, b"malformed request"
                    request = None
                else:
                    if request is None:
                        return
                    status, headers, body = await self.answer(request)
                head = [f"HTTP/1.1 {status} {reason_phrase(status)}", f"content-length: {len(body)}"]
                head += [f"{name}: {value}" for name, value in headers.items()]
                writer.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body)
                await writer.drain()
                if request is None:
                    return
        except (ConnectionError, asyncio.IncompleteReadError):
            return
        finally:
            writer.close()
            if task is not None:
                self._connections.discard(task)
