"""Page tokens: round trip, bound to their listing, refused when forged."""

from __future__ import annotations

import pytest

from services.common.errors import InvalidArgument
from services.common.paging import MAX_OFFSET, page_position, page_token


def test_a_token_carries_its_position_for_its_own_listing() -> None:
    assert page_position("") is None
    assert page_position(page_token(120)) == 120
    assert page_position(page_token(7, "search-a"), "search-a") == 7


@pytest.mark.parametrize("token", ["garbage", page_token(3, "search-a")])
def test_forged_tokens_and_tokens_of_another_listing_are_refused(token: str) -> None:
    with pytest.raises(InvalidArgument) as refused:
        page_position(token, "search-b")
    assert [v[0] for v in refused.value.field_violations] == ["page_token"]


def test_a_forged_position_past_the_maximum_is_refused() -> None:
    assert page_position(page_token(100_000), maximum=MAX_OFFSET) == 100_000
    for forged in (page_token(100_001), page_token(3_000_000_000)):
        with pytest.raises(InvalidArgument):
            page_position(forged, maximum=MAX_OFFSET)
    with pytest.raises(InvalidArgument):
        page_position(page_token(10**20))  # beyond a bigint
