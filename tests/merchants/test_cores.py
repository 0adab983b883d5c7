"""The merchants cores as plain Python, without gRPC or a database: the details screen's moment, the funnel's
refusal of a bad preview link, the "while you charge" ranking and the claim rule."""

from __future__ import annotations

import datetime
from types import SimpleNamespace
from typing import Any

import pytest

from services.common.config import Secret
from services.common.errors import PermissionDenied
from services.merchants import domain
from services.merchants.catalog import Catalog, ListedMerchant, _ranked
from services.merchants.claims import may_claim
from services.merchants.funnel import Funnel
from services.merchants.peers import Charger, IntentPosition
from services.merchants.reasons import Reason

NOW = datetime.datetime(2026, 12, 7, 18, 0, tzinfo=datetime.UTC)
STORE = SimpleNamespace(lat=30.2672, lng=-97.7431)


class Directory:
    """The charger directory with one intent session, captured 100 m north of the store by driver d1."""

    async def charger(self, charger_id: str) -> Charger:
        raise AssertionError("not asked for a charger")

    async def intent_position(self, session_id: str) -> IntentPosition | None:
        return IntentPosition("d1", STORE.lat + 0.0009, STORE.lng) if session_id == "s1" else None


def _catalog() -> Catalog:
    unused: Any = None
    directory: Any = Directory()
    return Catalog(unused, unused, directory, unused, clock=lambda: NOW)


async def test_the_moment_is_the_drivers_own_distance_else_none() -> None:
    catalog = _catalog()
    mine = await catalog._moment("s1", "d1", STORE)
    assert mine is not None
    assert mine.label == "Steps from your charger" and 0.05 < mine.distance_miles < 0.07
    # Another driver's session tells nothing, nor does an unknown or missing one.
    assert await catalog._moment("s1", "d2", STORE) is None
    assert await catalog._moment("s1", None, STORE) is None
    assert await catalog._moment("gone", "d1", STORE) is None
    assert await catalog._moment("", "d1", STORE) is None


async def test_a_bad_preview_link_is_refused_before_anything_is_read() -> None:
    settings: Any = SimpleNamespace(preview_signing_key=Secret("k" * 32))  # all the funnel reads of a refusal
    unused: Any = None
    funnel = Funnel(unused, unused, unused, unused, settings, clock=lambda: NOW)
    expires = int(NOW.timestamp()) + 600
    with pytest.raises(PermissionDenied) as refused:
        await funnel.request_claim("m_1", expires, "not-the-signature", "owner@cafe.example", None)
    assert refused.value.reason == Reason.PREVIEW_LINK_INVALID
    expired = int(NOW.timestamp()) - 1
    signature = domain.preview_signature(b"k" * 32, "m_1", expired)
    with pytest.raises(PermissionDenied):
        await funnel.request_claim("m_1", expired, signature, "owner@cafe.example", None)


def _linked(merchant_id: str, *, primary: bool, walk_s: int) -> SimpleNamespace:
    return SimpleNamespace(
        id=merchant_id,
        is_primary=primary,
        walk_time_s=walk_s,
        opening_periods=[],
        time_zone="UTC",
        custom_perk_cents=0,
        recommended_perk_cents=0,
        perk_label="",
    )


def test_the_charger_list_puts_the_primary_first_then_the_shorter_walk() -> None:
    rows = [_linked("far", primary=False, walk_s=600), _linked("near", primary=False, walk_s=60)]
    rows.append(_linked("featured", primary=True, walk_s=900))
    listed = _ranked(rows, "charging", False, NOW)
    assert all(isinstance(item, ListedMerchant) for item in listed)
    assert [item.row.id for item in listed] == ["featured", "near", "far"]


def test_a_store_is_claimed_by_mail_at_its_own_domain_only() -> None:
    assert may_claim("owner@austin.joescoffee.com", "https://www.joescoffee.com/menu")
    assert not may_claim("owner@gmail.com", "https://www.joescoffee.com/")
    assert not may_claim("owner@joescoffee.com", "")
