"""A lean HTTP/1.1 keep-alive transport for the vehicle APIs' httpx clients.

Why: every poll outside the window and every watcher read is one vehicle-API call, and profiling the read path
(py-spy, cProfile; bench-watch) showed httpx's default transport — httpcore's pool, anyio streams, h11 — costing
about 1 ms of CPU per call, ten times a plain asyncio stream round trip, most of a read's budget. The clients keep
httpx's API (requests, responses, timeouts, exceptions — the adapters' error mapping is unchanged); only the wire
work below it is this module: one request at a time per connection, idle connections kept per host and reused,
Content-Length and chunked bodies, TLS through asyncio's ssl. No proxies, no HTTP/2, no compression (we ask for
identity): none is needed to talk to Tesla's Fleet API or Smartcar.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Iterable

import httpx

_MAX_HEADER_BYTES = 64 * 1024
_MAX_BODY_BYTES = 16 * 1024 * 1024
_NO_BODY_STATUSES = frozenset({204, 304})
_Connection = tuple[asyncio.StreamReader, asyncio.StreamWriter]


class KeepAliveTransport(httpx.AsyncBaseTransport):
    def __init__(self, *, max_idle_per_host: int = 64, ssl_context: ssl.SSLContext | None = None) -> None:
        self._idle: dict[tuple[str, str, int], list[_Connection]] = {}
        self._max_idle = max_idle_per_host
        self._ssl = ssl_context

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        timeouts = request.extensions.get("timeout", {})
        url = request.url
        secure = url.scheme == "https"
        key = (url.scheme, url.host, url.port or (443 if secure else 80))
        body = await request.aread()
        message = _encode(request, body)
        reused = self._take(key)
        if reused is not None:
            try:
                return await self._exchange(request, key, reused, message, timeouts.get("read"))
            except (ConnectionError, asyncio.IncompleteReadError, _ClosedEarly):
                pass  # the server closed an idle connection meanwhile: once more on a fresh one
        connection = await self._connect(request, key, secure, timeouts.get("connect"))
        try:
            return await self._exchange(request, key, connection, message, timeouts.get("read"))
        except (ConnectionError, asyncio.IncompleteReadError, _ClosedEarly) as exc:
            raise httpx.RemoteProtocolError(f"the connection broke: {exc!r}", request=request) from exc

    async def aclose(self) -> None:
        for connections in self._idle.values():
            for _, writer in connections:
                writer.close()
        self._idle.clear()

    def _take(self, key: tuple[str, str, int]) -> _Connection | None:
        pool = self._idle.get(key)
        while pool:
            reader, writer = pool.pop()
            if not writer.is_closing() and not reader.at_eof():
                return reader, writer
            writer.close()
        return None

    async def _connect(
        self, request: httpx.Request, key: tuple[str, str, int], secure: bool, limit_s: float | None
    ) -> _Connection:
        _, host, port = key
        context = (self._ssl or ssl.create_default_context()) if secure else None
        try:
            async with asyncio.timeout(limit_s):
                return await asyncio.open_connection(host, port, ssl=context, server_hostname=host if secure else None)
        except TimeoutError as exc:
            raise httpx.ConnectTimeout(f"connecting to {host}:{port} timed out", request=request) from exc
        except OSError as exc:
            raise httpx.ConnectError(f"cannot connect to {host}:{port}: {exc}", request=request) from exc

    async def _exchange(
        self,
        request: httpx.Request,
        key: tuple[str, str, int],
        connection: _Connection,
        message: bytes,
        limit_s: float | None,
    ) -> httpx.Response:
        reader, writer = connection
        try:
            async with asyncio.timeout(limit_s):
                writer.write(message)
                await writer.drain()
                status, headers, keep_alive = await _read_head(reader, request)
                content = await _read_body(reader, request, status, headers)
        except TimeoutError as exc:
            writer.close()
            raise httpx.ReadTimeout("the server did not answer in time", request=request) from exc
        except BaseException:
            writer.close()
            raise
        if keep_alive and len(self._idle.setdefault(key, [])) < self._max_idle:
            self._idle[key].append(connection)
        else:
            writer.close()
        return httpx.Response(status, headers=headers, content=content, request=request)


class _ClosedEarly(Exception):
    """The peer closed the connection before a complete answer."""


def _encode(request: httpx.Request, body: bytes) -> bytes:
    target = request.url.raw_path.decode("ascii")
    lines = [f"{request.method} {target} HTTP/1.1"]
    for name, value in request.headers.multi_items():
        lower = name.lower()
        if lower in ("accept-encoding", "content-length", "transfer-encoding", "connection"):
            continue
        lines.append(f"{name}: {value}")
    lines.append("Accept-Encoding: identity")
    if body or request.method in ("POST", "PUT", "PATCH"):
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


async def _read_head(reader: asyncio.StreamReader, request: httpx.Request) -> tuple[int, list[tuple[str, str]], bool]:
    try:
        raw = await reader.readuntil(b"\r\n\r\n")
    except asyncio.LimitOverrunError as exc:
        raise httpx.RemoteProtocolError("the response head is too long", request=request) from exc
    except asyncio.IncompleteReadError as exc:
        raise _ClosedEarly("no response") from exc
    if len(raw) > _MAX_HEADER_BYTES:
        raise httpx.RemoteProtocolError("the response head is too long", request=request)
    status_line, *header_lines = raw[:-4].decode("latin-1").split("\r\n")
    parts = status_line.split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
        raise httpx.RemoteProtocolError(f"not an HTTP/1.x status line: {status_line!r}", request=request)
    headers = []
    for line in header_lines:
        name, sep, value = line.partition(":")
        if not sep:
            raise httpx.RemoteProtocolError(f"a malformed header line: {line!r}", request=request)
        headers.append((name.strip(), value.strip()))
    connection = _header(headers, "connection").lower()
    keep_alive = (parts[0] == "HTTP/1.1" and connection != "close") or connection == "keep-alive"
    return int(parts[1]), headers, keep_alive


async def _read_body(
    reader: asyncio.StreamReader, request: httpx.Request, status: int, headers: list[tuple[str, str]]
) -> bytes:
    if request.method == "HEAD" or status in _NO_BODY_STATUSES or 100 <= status < 200:
        return b""
    if "chunked" in _header(headers, "transfer-encoding").lower():
        return await _read_chunked(reader, request)
    length = _header(headers, "content-length")
    if length:
        if not length.isdigit() or int(length) > _MAX_BODY_BYTES:
            raise httpx.RemoteProtocolError(f"a bad Content-Length: {length!r}", request=request)
        return await reader.readexactly(int(length))
    return await reader.read(_MAX_BODY_BYTES)  # until the server closes (no keep-alive then)


async def _read_chunked(reader: asyncio.StreamReader, request: httpx.Request) -> bytes:
    chunks: list[bytes] = []
    total = 0
    while True:
        size_line = (await reader.readuntil(b"\r\n")).split(b";", 1)[0].strip()
        try:
            size = int(size_line, 16)
        except ValueError as exc:
            raise httpx.RemoteProtocolError(f"a bad chunk size: {size_line!r}", request=request) from exc
        if size == 0:
            while await reader.readuntil(b"\r\n") != b"\r\n":
                pass  # trailers
            return b"".join(chunks)
        total += size
        if total > _MAX_BODY_BYTES:
            raise httpx.RemoteProtocolError("the response body is too long", request=request)
        chunks.append(await reader.readexactly(size))
        await reader.readexactly(2)


def _header(headers: Iterable[tuple[str, str]], name: str) -> str:
    for key, value in headers:
        if key.lower() == name:
            return value
    return ""
