"""Page tokens: round trip, bound to their listing, refused when forged."""

from __future__ import annotations

import pytest

from services.common.errors import InvalidArgument
from services.common.paging import page_position, page_token


def test_a_token_carries_its_position_for_its_own_listing() -> None:
    assert page_position("") is None
    assert page_position(page_token(120)) == 120
    assert page_position(page_token(7, "search-a"), "search-a") == 7


@pytest.mark.parametrize("token", ["garbage", page_token(3, "search-a")])
def test_forged_tokens_and_tokens_of_another_listing_are_refused(token: str) -> None:
    with pytest.raises(InvalidArgument) as refused:
        page_position(token, "search-b")
    assert [v[0] for v in refused.value.field_violations] == ["page_token"]
