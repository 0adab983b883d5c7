"""The one waiting helper of the tests."""

from __future__ import annotations

import pytest

from tests.support.eventually import eventually, eventually_sync


async def test_returns_what_the_check_returns_once_it_passes() -> None:
    calls = []

    async def third_time() -> str:
        calls.append(1)
        assert len(calls) >= 3, "not yet"
        return "done"

    assert await eventually(third_time, interval=0) == "done"
    assert len(calls) == 3


async def test_a_sync_check_and_a_missing_key_are_retried() -> None:
    seen: dict[str, int] = {}

    def lookup() -> int:
        seen["tries"] = seen.get("tries", 0) + 1
        if seen["tries"] == 2:
            seen["value"] = 7
        return seen["value"]

    assert await eventually(lookup, interval=0) == 7


async def test_the_last_failure_is_raised_after_the_timeout() -> None:
    def never() -> None:
        raise AssertionError("still 0 sessions")

    with pytest.raises(AssertionError, match="still 0 sessions"):
        await eventually(never, within=0.05, interval=0.01)


async def test_other_errors_are_not_retried() -> None:
    calls = []

    def broken() -> None:
        calls.append(1)
        raise RuntimeError("a bug, not a wait")

    with pytest.raises(RuntimeError):
        await eventually(broken, interval=0)
    assert len(calls) == 1


def test_the_sync_variant_retries_until_the_check_passes_and_raises_the_last_failure() -> None:
    calls = []

    def third_time() -> str:
        calls.append(1)
        assert len(calls) >= 3, "not yet"
        return "done"

    assert eventually_sync(third_time, interval=0) == "done"
    assert len(calls) == 3

    def never() -> None:
        raise AssertionError("no log line yet")

    with pytest.raises(AssertionError, match="no log line yet"):
        eventually_sync(never, within=0.05, interval=0.01)


def test_the_sync_variant_does_not_retry_other_errors() -> None:
    calls = []

    def broken() -> None:
        calls.append(1)
        raise RuntimeError("a bug, not a wait")

    with pytest.raises(RuntimeError):
        eventually_sync(broken, interval=0)
    assert len(calls) == 1
