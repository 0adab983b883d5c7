"""Waiting in tests: `eventually` retries a check until it passes or a bounded time runs out — the one way a test
waits for what another process or task does (no fixed sleeps, no hand-written polling loops). `eventually_sync`
is the same wait for synchronous tests (no event loop to yield to)."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, overload

T = TypeVar("T")

DEFAULT_TIMEOUT_S = 15.0


@overload
async def eventually(check: Callable[[], Awaitable[T]], *, within: float = ..., interval: float = ...) -> T: ...


@overload
async def eventually(check: Callable[[], T], *, within: float = ..., interval: float = ...) -> T: ...


async def eventually(check: Callable[[], Any], *, within: float = DEFAULT_TIMEOUT_S, interval: float = 0.05) -> Any:
    """Calls ``check`` (sync or async) until it returns instead of raising AssertionError or LookupError (a key
    or a row not there yet), and returns what it returned. Past ``within`` seconds the last error is raised
    again, so a wait that never ends reads like the assertion that kept failing."""
    deadline = time.monotonic() + within
    while True:
        try:
            outcome = check()
            return await outcome if inspect.isawaitable(outcome) else outcome
        except (AssertionError, LookupError):
            if time.monotonic() >= deadline:
                raise
        await asyncio.sleep(interval)


def eventually_sync(check: Callable[[], T], *, within: float = DEFAULT_TIMEOUT_S, interval: float = 0.05) -> T:
    """`eventually` for synchronous tests: the same retries and the same last error past ``within`` seconds,
    blocking the thread between tries."""
    deadline = time.monotonic() + within
    while True:
        try:
            return check()
        except (AssertionError, LookupError):
            if time.monotonic() >= deadline:
                raise
        time.sleep(interval)
