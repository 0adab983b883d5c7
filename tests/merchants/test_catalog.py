"""Merchant records over gRPC and REST: registering a store and its QR token, changes by its owner, charger
links with walking estimates, the ranked "while you charge" list, the details screen and a scanned QR code."""

from __future__ import annotations

import uuid

import grpc
import httpx
import pytest
from nerava.merchants.v1 import merchants_pb2 as pb
from nerava.merchants.v1 import merchants_pb2_grpc

from services.common.config import ConfigError
from services.merchants import domain
from services.merchants.config import checkout_page_template
from tests.merchants.helpers import Merchants, Store, offset
from tests.support.people import NewPerson, Person
from tests.support.rpc import bad_fields, error_reason


async def test_a_new_store_gets_a_32_byte_qr_token_that_resolves_while_active(
    merchants: Merchants, shop: Store, rest: httpx.AsyncClient, admin: Person
) -> None:
    assert len(shop.qr_token) == 43  # base64url of 32 random bytes
    scanned = await rest.get(f"/v1/checkout/qr/{shop.qr_token}")
    assert scanned.status_code == 200, scanned.text
    body = scanned.json()
    assert body["ok"] is True and body["merchant"]["id"] == shop.id
    assert body["perk"] == {"perk_cents": 300, "label": "$3 off any order"}  # the default perk
    assert body["charger"]["id"] == shop.charger_id
    assert "driver" not in body  # not signed in
    await merchants.stub.UpdateMerchant(
        pb.UpdateMerchantRequest(merchant_id=shop.id, status=pb.MERCHANT_STATUS_PAUSED), metadata=shop.owner.auth
    )
    paused = await rest.get(f"/v1/checkout/qr/{shop.qr_token}")
    assert paused.status_code == 404 and paused.json()["details"][0]["reason"] == "QR_TOKEN_UNKNOWN"
    unknown = await rest.get("/v1/checkout/qr/" + "A" * 43)
    assert unknown.status_code == 404


async def test_a_signed_in_driver_sees_their_nova_at_the_qr(
    merchants: Merchants, shop: Store, rest: httpx.AsyncClient, driver: Person
) -> None:
    await merchants.give_nova(driver, 120)
    body = (await rest.get(f"/v1/checkout/qr/{shop.qr_token}", headers=driver.headers)).json()
    assert body["driver"] == {"nova_balance": 120, "max_discount_cents": 120}


async def test_creating_twice_with_one_request_id_makes_one_store(
    merchants: Merchants, admin: Person, owner: Person
) -> None:
    request = pb.CreateMerchantRequest(
        request_id=str(uuid.uuid4()), merchant=pb.Merchant(name="Once", lat=30.0, lng=-97.0)
    )
    first = await merchants.stub.CreateMerchant(request, metadata=admin.auth)
    again = await merchants.stub.CreateMerchant(request, metadata=admin.auth)
    assert first.merchant.id == again.merchant.id and first.qr_token == again.qr_token


@pytest.mark.parametrize(
    ("merchant", "field"),
    [
        (pb.Merchant(name="", lat=1, lng=1), "merchant.name"),
        (pb.Merchant(name="X", lat=91, lng=1), "merchant.lat"),
        (pb.Merchant(name="X", lat=1, lng=181), "merchant.lng"),
        (
            pb.Merchant(name="X", lat=1, lng=1, hours=pb.OpeningHours(time_zone="Mars/Olympus")),
            "merchant.hours.time_zone",
        ),
    ],
)
async def test_bad_stores_are_refused_naming_the_field(
    merchants: Merchants, admin: Person, merchant: pb.Merchant, field: str
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await merchants.stub.CreateMerchant(
            pb.CreateMerchantRequest(request_id=str(uuid.uuid4()), merchant=merchant), metadata=admin.auth
        )
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field in bad_fields(refused.value)


async def test_only_admins_register_stores_and_only_owners_change_them(
    merchants: Merchants, shop: Store, person: NewPerson
) -> None:
    other_merchant = await person("merchant")
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await merchants.stub.CreateMerchant(
            pb.CreateMerchantRequest(request_id=str(uuid.uuid4()), merchant=pb.Merchant(name="X", lat=1, lng=1)),
            metadata=other_merchant.auth,
        )
    assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
    with pytest.raises(grpc.aio.AioRpcError) as hidden:
        await merchants.stub.UpdateMerchant(
            pb.UpdateMerchantRequest(merchant_id=shop.id, custom_perk_cents=100), metadata=other_merchant.auth
        )
    assert error_reason(hidden.value) == "MERCHANT_NOT_FOUND"
    with pytest.raises(grpc.aio.AioRpcError) as not_allowed:
        await merchants.stub.UpdateMerchant(
            pb.UpdateMerchantRequest(merchant_id=shop.id, status=pb.MERCHANT_STATUS_SUSPENDED), metadata=shop.owner.auth
        )
    assert error_reason(not_allowed.value) == "MERCHANT_STATUS_NOT_ALLOWED"


async def test_the_owner_sets_a_custom_perk_and_clears_it(merchants: Merchants, shop: Store) -> None:
    custom = await merchants.stub.UpdateMerchant(
        pb.UpdateMerchantRequest(merchant_id=shop.id, custom_perk_cents=450), metadata=shop.owner.auth
    )
    assert (custom.merchant.perk.perk_cents, custom.merchant.perk.source) == (450, pb.PERK_SOURCE_CUSTOM)
    assert custom.merchant.perk.label == "$4.50 off any order"
    cleared = await merchants.stub.UpdateMerchant(
        pb.UpdateMerchantRequest(merchant_id=shop.id, custom_perk_cents=0), metadata=shop.owner.auth
    )
    assert (cleared.merchant.perk.perk_cents, cleared.merchant.perk.source) == (300, pb.PERK_SOURCE_DEFAULT)


async def test_while_you_charge_ranks_primary_open_then_shorter_walk(
    merchants: Merchants, shop: Store, admin: Person, owner: Person, rest: httpx.AsyncClient
) -> None:
    # Two more stores at the same charger: a near one and a far one (walks estimated from the distance).
    for name, east_m in (("Near Tacos", 40), ("Far Books", 300)):
        lat, lng = offset(shop.charger_lat, shop.charger_lng, east_m=east_m)
        created = await merchants.stub.CreateMerchant(
            pb.CreateMerchantRequest(
                request_id=str(uuid.uuid4()),
                merchant=pb.Merchant(name=name, lat=lat, lng=lng, owner_user_id=owner.user_id),
            ),
            metadata=admin.auth,
        )
        link = await merchants.stub.LinkCharger(
            pb.LinkChargerRequest(merchant_id=created.merchant.id, charger_id=shop.charger_id), metadata=admin.auth
        )
        expected_m, expected_s = domain.walk_estimate((shop.charger_lat, shop.charger_lng), (lat, lng))
        assert (link.link.walk_distance_m, link.link.walk_time_s) == (expected_m, expected_s)
    charging = await rest.get("/v1/drivers/merchants/open", params={"charger_id": shop.charger_id})
    assert charging.status_code == 200, charging.text
    names = [item["name"] for item in charging.json()]
    assert names == ["Test Coffee", "Near Tacos", "Far Books"]  # a bare array, the primary first
    assert charging.json()[0]["is_primary"] is True and charging.json()[1]["place_id"] == ""
    before = await rest.get("/v1/drivers/merchants/open", params={"charger_id": shop.charger_id, "state": "pre-charge"})
    assert [item["name"] for item in before.json()] == ["Test Coffee"]
    unknown = await rest.get("/v1/drivers/merchants/open", params={"charger_id": "no-such-charger"})
    assert unknown.status_code == 404 and unknown.json()["details"][0]["reason"] == "CHARGER_NOT_FOUND"


async def test_linking_an_unknown_charger_is_not_found(merchants: Merchants, shop: Store, admin: Person) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await merchants.stub.LinkCharger(
            pb.LinkChargerRequest(merchant_id=shop.id, charger_id="no-such-charger"), metadata=admin.auth
        )
    assert error_reason(refused.value) == "CHARGER_NOT_FOUND"


async def test_the_details_screen_by_id_or_place_id(
    merchants: Merchants, admin: Person, owner: Person, rest: httpx.AsyncClient
) -> None:
    place = f"ChIJ{uuid.uuid4().hex[:16]}"
    store = await merchants.create_store(admin, owner, place_id=place, phone="+1 512 555 0100")
    for key in (store.id, place):
        reply = await rest.get(f"/v1/merchants/{key}")
        assert reply.status_code == 200, reply.text
        body = reply.json()
        assert body["merchant"]["id"] == store.id and body["merchant"]["phone"] == "+1 512 555 0100"
        assert body["perk"]["title"] == "$3 off any order"


async def test_the_owner_reads_the_qr_others_do_not(merchants: Merchants, shop: Store, person: NewPerson) -> None:
    qr = await merchants.stub.GetCheckoutQr(pb.GetCheckoutQrRequest(merchant_id=shop.id), metadata=shop.owner.auth)
    # The QR opens the driver app's checkout page with the token, not the JSON API.
    assert qr.qr_token == shop.qr_token and qr.qr_url == f"http://localhost:5173/checkout?token={shop.qr_token}"
    stranger = await person("merchant")
    with pytest.raises(grpc.aio.AioRpcError) as hidden:
        await merchants.stub.GetCheckoutQr(pb.GetCheckoutQrRequest(merchant_id=shop.id), metadata=stranger.auth)
    assert error_reason(hidden.value) == "MERCHANT_NOT_FOUND"


def test_every_rpc_has_exactly_one_access_rule_and_an_implementation() -> None:
    from services.merchants import api

    # One dict literal: ruff (F601) refuses a key written twice, so each RPC has exactly one rule.
    assert sorted(api.ACCESS) == sorted(api.METHODS)
    base = merchants_pb2_grpc.MerchantsServiceServicer
    unimplemented = [name for name in api.METHODS if getattr(api.MerchantsApi, name) is getattr(base, name)]
    assert unimplemented == []


def test_short_codes_stay_six_characters_for_thousands_of_stores_of_one_name() -> None:
    candidates = domain.short_code_candidates("Test Coffee")
    assert candidates[:3] == ["TESTCO", "TESTC1", "TESTC2"]
    assert len(candidates) == len(set(candidates)) == 1 + 9 + 90 + 900 + 9000
    assert max(len(code) for code in candidates) == 6
    assert (
        domain.short_code_candidates("A&W")[:2] == ["AW", "AW1"] and domain.short_code_candidates("!!")[0] == "NERAVA"
    )


@pytest.mark.parametrize(
    ("aov", "perk"),
    [(None, 250), (500, 100), (833, 100), (834, 150), (1000, 150), (1497, 200), (1500, 250), (2000, 300),
     (2500, 400), (3000, 450), (3167, 500), (50_000, 500)],
)  # fmt: skip
def test_the_recommended_perk_is_fifteen_percent_half_up_to_fifty_cents_clamped(aov: int | None, perk: int) -> None:
    assert domain.recommended_perk_cents(aov) == perk


async def test_a_read_only_admin_reads_every_store_and_changes_none(
    merchants: Merchants, shop: Store, person: NewPerson
) -> None:
    auditor = await person("merchant", "admin_readonly")
    qr = await merchants.stub.GetCheckoutQr(pb.GetCheckoutQrRequest(merchant_id=shop.id), metadata=auditor.auth)
    assert qr.qr_token == shop.qr_token
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await merchants.stub.UpdateMerchant(
            pb.UpdateMerchantRequest(merchant_id=shop.id, custom_perk_cents=100_000), metadata=auditor.auth
        )
    assert error_reason(refused.value) == "MERCHANT_NOT_FOUND"


def test_the_checkout_page_url_is_an_http_url_with_the_token_once() -> None:
    assert checkout_page_template("https://app.example/checkout?token={token}").endswith("={token}")
    for wrong in ("https://app.example/checkout", "ftp://x/{token}", "https://x/{token}/{token}", "{token}"):
        with pytest.raises(ConfigError, match="CHECKOUT_PAGE_URL"):
            checkout_page_template(wrong)
