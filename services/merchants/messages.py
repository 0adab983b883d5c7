"""The translation between MerchantsService's messages and the values of the merchants cores, both ways:
requests read into plain values (a new store, a store's changes, opening periods, an exclusive's start), and the
cores' rows and dataclasses built into answers (the Merchant message, the "while you charge" list, the checkout
page, favorites, the funnel's businesses and claims, redemptions, exclusive sessions and their JSON forms, the
portal's pages). No I/O, no rules (those are the cores' and domain.py's), no caller.

Beside api.py rather than in it because it is as long as the handlers together (~560 lines): api.py stays the
access table and one short handler per RPC, readable at a glance.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable
from typing import Any, cast

from google.protobuf import json_format, struct_pb2
from nerava.merchants.v1 import merchants_pb2 as pb

from services.common.timestamps import timestamp
from services.merchants import domain, exclusives, portal
from services.merchants.catalog import (
    ChargerLink,
    ListedMerchant,
    NewStore,
    OpeningHours,
    ScannedCheckout,
    StoreChanges,
    StoreDetails,
)
from services.merchants.checkout import RecentOrders, Redeemed
from services.merchants.domain import OpeningPeriod
from services.merchants.exclusives import ExclusiveStart
from services.merchants.favorites import FavoriteCharger
from services.merchants.funnel import FoundBusiness, StoreClaim
from services.merchants.peers import NovaTransfer
from services.merchants.records import perk_of

# JSON null, where the app's schema wants null rather than an empty string.
NULL = struct_pb2.Value(null_value=struct_pb2.NULL_VALUE)

_PERK_SOURCES = {
    "custom": pb.PERK_SOURCE_CUSTOM,
    "recommended": pb.PERK_SOURCE_RECOMMENDED,
    "default": pb.PERK_SOURCE_DEFAULT,
}


# catalog.py


def merchant_message(row: Any, *, square_connected: bool = False, owner_view: bool = False) -> pb.Merchant:
    """The Merchant message; the owner id only in owner and admin views."""
    perk = perk_of(row)
    return pb.Merchant(
        id=row.id,
        name=row.name,
        category=row.category,
        lat=row.lat,
        lng=row.lng,
        address=row.address,
        phone=row.phone,
        website=row.website,
        place_id=row.place_id or "",
        hours=pb.OpeningHours(
            time_zone=row.time_zone,
            periods=[pb.OpeningPeriod(**period) for period in row.opening_periods],
        ),
        perk=pb.Perk(
            perk_cents=perk.cents,
            source=_PERK_SOURCES[perk.source],  # type: ignore[arg-type]
            custom_perk_cents=row.custom_perk_cents,
            recommended_perk_cents=row.recommended_perk_cents,
            label=perk.label,
        ),
        status=row.status,
        owner_user_id=(row.owner_user_id or "") if owner_view else "",
        zone_slug=row.zone_slug,
        logo_url=row.logo_url,
        photo_urls=list(row.photo_urls),
        square_connected=square_connected,
        created_at=timestamp(row.created_at),
    )


def opening_periods(periods: Iterable[pb.OpeningPeriod]) -> list[OpeningPeriod]:
    return [OpeningPeriod(p.day_of_week, p.open_minute, p.close_minute) for p in periods]


def new_store(given: pb.Merchant) -> NewStore:
    return NewStore(
        name=given.name,
        category=given.category,
        lat=given.lat,
        lng=given.lng,
        address=given.address,
        phone=given.phone,
        website=given.website,
        place_id=given.place_id,
        time_zone=given.hours.time_zone,
        opening_periods=opening_periods(given.hours.periods),
        custom_perk_cents=given.perk.custom_perk_cents,
        perk_label=given.perk.label,
        status=given.status,
        owner_user_id=given.owner_user_id,
        zone_slug=given.zone_slug,
        logo_url=given.logo_url,
        photo_urls=list(given.photo_urls),
    )


def store_changes(request: pb.UpdateMerchantRequest) -> StoreChanges:
    """The fields the request sets; None for each it leaves as is."""
    return StoreChanges(
        name=request.name if request.HasField("name") else None,
        category=request.category if request.HasField("category") else None,
        address=request.address if request.HasField("address") else None,
        phone=request.phone if request.HasField("phone") else None,
        website=request.website if request.HasField("website") else None,
        custom_perk_cents=request.custom_perk_cents if request.HasField("custom_perk_cents") else None,
        perk_label=request.perk_label if request.HasField("perk_label") else None,
        hours=(
            OpeningHours(request.hours.time_zone, opening_periods(request.hours.periods))
            if request.HasField("hours")
            else None
        ),
        status=request.status if request.HasField("status") else None,
    )


def scanned_checkout(scanned: ScannedCheckout) -> pb.ResolveCheckoutQrResponse:
    """The checkout page's store, perk, the signed-in driver's Nova (none for anyone else) and nearest charger."""
    row, perk, link = scanned.row, scanned.perk, scanned.charger_link
    return pb.ResolveCheckoutQrResponse(
        ok=True,
        merchant=pb.CheckoutMerchant(
            id=row.id, name=row.name, category=row.category, logo_url=row.logo_url, address=row.address
        ),
        perk=pb.CheckoutPerk(perk_cents=perk.cents, label=perk.label),
        driver=(
            None
            if scanned.nova_balance is None
            else pb.CheckoutDriver(
                nova_balance=scanned.nova_balance, max_discount_cents=min(perk.cents, scanned.nova_balance)
            )
        ),
        charger=(
            pb.CheckoutCharger(
                id=link.charger_id, address=link.charger_address, lat=link.charger_lat, lng=link.charger_lng
            )
            if link
            else None
        ),
    )


def store_details(details: StoreDetails) -> pb.GetMerchantResponse:
    """The app's merchant sheet: the store, "while you charge" moment (its label null without one) and perk."""
    row, perk, photos = details.row, details.perk, list(details.row.photo_urls)
    moment = pb.MerchantMoment(moment_copy="Spend your Nova here while you charge.")
    if details.moment is None:
        moment.label.null_value = struct_pb2.NULL_VALUE
    else:
        moment.distance_miles = details.moment.distance_miles
        moment.label.string_value = details.moment.label
    return pb.GetMerchantResponse(
        merchant=pb.MerchantDetails(
            id=row.id,
            name=row.name,
            category=row.category,
            photo_url=photos[0] if photos else "",
            photo_urls=photos,
            hours_today=details.hours_today,
            address=row.address,
            phone=row.phone,
            website=row.website,
            activations_today=details.activations_today,
            verified_visits_today=details.verified_visits_today,
            amenities=amenities(details.amenity_votes),
            place_id=row.place_id or "",
            lat=row.lat,
            lng=row.lng,
            rating=row.rating or 0.0,
        ),
        moment=moment,
        perk=pb.PerkCard(title=perk.label, badge="Nova perk", description=f"Pay with Nova at {row.name}."),
        wallet=pb.MerchantWallet(can_add=False, state="INACTIVE"),
        actions=pb.MerchantActions(
            add_to_wallet=False,
            get_directions_url=f"https://www.google.com/maps/dir/?api=1&destination={row.lat},{row.lng}",
        ),
    )


def amenities(counts: dict[str, tuple[int, int]]) -> pb.Amenities:
    def votes(amenity: str) -> pb.AmenityVotes:
        up, down = counts.get(amenity, (0, 0))
        return pb.AmenityVotes(upvotes=up, downvotes=down)

    return pb.Amenities(bathroom=votes("bathroom"), wifi=votes("wifi"))


def charger_merchant(listed: ListedMerchant) -> pb.ChargerMerchant:
    """A merchant of the "while you charge" list; the featured (primary) one shows its place, photo, type and
    exclusive offer."""
    row = listed.row
    photos = list(row.photo_urls)
    return pb.ChargerMerchant(
        id=row.id,
        merchant_id=row.id,
        place_id=(row.place_id or "") if row.is_primary else "",
        name=row.name,
        lat=row.lat,
        lng=row.lng,
        address=row.address,
        phone=row.phone,
        logo_url=row.logo_url,
        photo_url=(photos[0] if photos else "") if row.is_primary else "",
        photo_urls=photos,
        category=row.category,
        types=[row.category] if row.is_primary and row.category else [],
        is_primary=row.is_primary,
        exclusive_title=(row.offer_title or "") if row.is_primary else "",
        exclusive_description=(row.offer_description or "") if row.is_primary else "",
        open_now=listed.open_now,
        open_until=listed.open_until or None,
        # Google's listing, kept fresh by the funnel; 0 for a store not on Google.
        rating=row.rating or 0.0,
        user_rating_count=row.user_rating_count,
        walk_time_s=row.walk_time_s,
        walk_time_seconds=row.walk_time_s,
        distance_m=row.walk_distance_m,
        activations_today=row.activations,
        verified_visits_today=row.visits,
    )


def charger_link(link: ChargerLink) -> pb.ChargerLink:
    return pb.ChargerLink(
        merchant_id=link.merchant_id,
        charger_id=link.charger_id,
        charger_name=link.charger_name,
        walk_distance_m=link.walk_distance_m,
        walk_time_s=link.walk_time_s,
        is_primary=link.is_primary,
    )


# favorites.py


def favorite_store(row: Any) -> pb.FavoriteMerchant:
    return pb.FavoriteMerchant(
        merchant_id=row.id,
        name=row.name,
        category=row.category,
        photo_url=next(iter(row.photo_urls), ""),
        favorited_at=timestamp(row.created_at),
    )


def favorite_charger(favorite: FavoriteCharger) -> pb.FavoriteCharger:
    return pb.FavoriteCharger(
        charger_id=favorite.charger_id, name=favorite.name, favorited_at=timestamp(favorite.added_at)
    )


# funnel.py


def business(found: FoundBusiness) -> pb.Business:
    return pb.Business(
        place_id=found.business.place_id,
        name=found.business.name,
        address=found.business.address,
        lat=found.business.lat,
        lng=found.business.lng,
        category=found.business.category,
        merchant_id=found.merchant_id,
        claimed=found.claimed,
    )


def store_claim(claim: StoreClaim) -> pb.MerchantClaim:
    return pb.MerchantClaim(
        id=claim.id,
        merchant_id=claim.merchant_id,
        merchant_name=claim.merchant_name,
        email=claim.email,
        status=claim.status,  # type: ignore[arg-type]  # the stored MerchantClaimStatus value
        created_at=timestamp(claim.created_at),
    )


# checkout.py


def recent_orders(recent: RecentOrders) -> pb.ListRecentSquareOrdersResponse:
    return pb.ListRecentSquareOrdersResponse(
        merchant_id=recent.merchant_id,
        merchant_name=recent.merchant_name,
        perk=pb.CheckoutPerk(perk_cents=recent.perk.cents, label=recent.perk.label),
        orders=[
            pb.RecentSquareOrder(
                id=listed.order.id,
                total_cents=listed.order.total_cents,
                currency=listed.order.currency or "",
                state=listed.order.state,
                created_at=timestamp(listed.order.created_at),
                redeemed=listed.redeemed,
            )
            for listed in recent.orders
        ],
    )


def redeemed_answer(redeemed: Redeemed) -> pb.RedeemAtCheckoutResponse:
    row = redeemed.redemption
    return pb.RedeemAtCheckoutResponse(
        success=True,
        merchant_id=row.merchant_id,
        discount_cents=row.discount_cents,
        order_total_cents=row.order_total_cents,
        nova_spent_cents=row.discount_cents,
        remaining_nova_cents=row.nova_balance_after or 0,
        message=f"{_money(row.discount_cents)} off applied at {row.merchant_name}",
        redemption_id=str(row.id),
        square_order_id=row.square_order_id or "",
        merchant_fee_cents=row.merchant_fee_cents,
        status=row.status,
        replayed=redeemed.replayed,
        redemption=redemption_message(row),
    )


def redemption_answer(row: Any) -> pb.GetRedemptionResponse:
    return pb.GetRedemptionResponse(
        redemption_id=str(row.id),
        merchant_name=row.merchant_name,
        discount_cents=row.discount_cents,
        order_total_cents=row.order_total_cents,
        created_at=timestamp(row.created_at),
        status=row.status,
        redemption=redemption_message(row),
    )


def redemption_message(row: Any) -> pb.Redemption:
    return pb.Redemption(
        id=str(row.id),
        status=row.status,
        merchant_id=row.merchant_id,
        merchant_name=row.merchant_name,
        driver_id=row.driver_id,
        order_total_cents=row.order_total_cents,
        discount_cents=row.discount_cents,
        nova_spent_cents=row.discount_cents,
        merchant_fee_cents=row.merchant_fee_cents,
        square_order_id=row.square_order_id or "",
        transfer_id=str(row.transfer_id or ""),
        created_at=timestamp(row.created_at),
    )


def _money(cents: int) -> str:
    return f"${cents // 100}.{cents % 100:02d}"


# exclusives.py


def exclusive_start(request: pb.ActivateExclusiveRequest) -> ExclusiveStart:
    return ExclusiveStart(
        merchant_id=request.merchant_id,
        merchant_place_id=request.merchant_place_id,
        charger_id=request.charger_id,
        lat=request.lat,
        lng=request.lng,
        accuracy_m=request.accuracy_m,
        intent=request.intent,
        party_size=request.party_size,
        needs_power_outlet=request.needs_power_outlet,
        is_to_go=request.is_to_go,
    )


def staff_view_answer(staff: exclusives.StaffView | None) -> pb.GetExclusiveStaffViewResponse:
    """The staff screen: the view, and the JSON form the screen reads (every field null for an unknown session)."""
    if staff is None:
        return pb.GetExclusiveStaffViewResponse(
            exclusive_session=NULL, merchant_name=NULL, exclusive_title=NULL, staff_instructions=NULL
        )
    row = staff.row
    view = pb.ExclusiveStaffView(
        id=str(row.id),
        merchant_id=row.merchant_id,
        expires_at=timestamp(row.expires_at),
        activated_at=timestamp(row.activated_at),
        remaining_seconds=staff.remaining_seconds,
        status=cast(pb.ExclusiveStatus, staff.status),
        merchant_name=row.merchant_name,
        exclusive_title=row.offer_title,
        staff_instructions=row.description,
    )
    session = json_format.MessageToDict(
        view, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )
    shown = {key: session[key] for key in ("id", "merchant_id", "expires_at", "activated_at", "status")}
    session_value = struct_pb2.Value()
    session_value.struct_value.update({**shown, "charger_id": None, "remaining_seconds": view.remaining_seconds})
    return pb.GetExclusiveStaffViewResponse(
        exclusive_session=session_value,
        merchant_name=text_or_null(row.merchant_name),
        exclusive_title=text_or_null(row.offer_title),
        staff_instructions=text_or_null(row.description),
        staff_view=view,
    )


def exclusive_session_message(shown: exclusives.ShownSession) -> pb.ExclusiveSession:
    row = shown.row
    photos = list(row.merchant_photo_urls)
    return pb.ExclusiveSession(
        id=str(row.id),
        merchant_id=row.merchant_id,
        charger_id=row.charger_id,
        expires_at=timestamp(row.expires_at),
        activated_at=timestamp(row.activated_at),
        remaining_seconds=shown.remaining_seconds,
        merchant_name=row.merchant_name,
        merchant_place_id=row.merchant_place_id or "",
        exclusive_title=row.offer_title or "",
        merchant_lat=row.merchant_lat,
        merchant_lng=row.merchant_lng,
        merchant_distance_m=shown.walk_m,
        merchant_walk_time_min=shown.walk_minutes,
        merchant_category=row.merchant_category,
        merchant_photo_url=photos[0] if photos else "",
        charger_name=shown.charger_name,
        verification_code=row.visit_code or "",
        arrival_code=row.arrival_code or "",
        charging_active=False,
        status=cast(pb.ExclusiveStatus, shown.status),
    )


def session_value(session: pb.ExclusiveSession | None) -> struct_pb2.Value:
    """The JSON form the app reads under `exclusive_session`: the object, or null."""
    if session is None:
        return NULL
    printed = json_format.MessageToDict(
        session, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )
    # The app's schema demands merchant_id and charger_id with a string or null: unknown is null, never "".
    for key in ("merchant_id", "charger_id"):
        printed[key] = printed.get(key) or None
    value = struct_pb2.Value()
    value.struct_value.update(printed)
    return value


def text_or_null(text: str | None) -> struct_pb2.Value:
    if not text:
        return NULL
    return struct_pb2.Value(string_value=text)


def offer_fields(row: Any) -> dict[str, Any]:
    return {
        "id": row.id,
        "merchant_id": row.merchant_id,
        "title": row.title,
        "description": row.description,
        "daily_cap": row.daily_cap,
        "session_cap": row.session_cap,
        "eligibility": row.eligibility,
        "is_active": row.is_active,
        "created_at": timestamp(row.created_at),
        "updated_at": timestamp(row.updated_at),
    }


# portal.py


def my_merchant_answer(mine: portal.MyStore) -> pb.GetMyMerchantResponse:
    row = mine.merchant
    return pb.GetMyMerchantResponse(
        merchant=pb.MerchantAccount(
            id=row.id,
            name=row.name,
            nova_balance=mine.nova_balance,
            zone_slug=row.zone_slug,
            status=row.status,
            details=merchant_message(row, square_connected=mine.square_connected, owner_view=True),
        ),
        transactions=[transaction_message(transfer) for transfer in mine.transfers],
        merchant_ids=mine.merchant_ids,
    )


def preview_answer(preview: portal.StorePreview, expires_unix: int) -> pb.ResolvePreviewLinkResponse:
    row, charger = preview.merchant, preview.nearest_charger
    photos = list(row.photo_urls)
    return pb.ResolvePreviewLinkResponse(
        id=row.id,
        name=row.name,
        address=row.address,
        lat=row.lat,
        lng=row.lng,
        photo_url=photos[0] if photos else "",
        photo_urls=photos,
        open_now=preview.open_now,
        open_until=preview.open_until,
        # Google's word for the store (the funnel keeps it fresh); empty for a store not on Google.
        business_status=row.business_status,
        rating=row.rating or 0.0,
        user_rating_count=row.user_rating_count,
        place_id=row.place_id or "",
        claimed=row.owner_user_id is not None,
        category=row.category,
        nearest_charger=(
            pb.PreviewCharger(
                name=charger.charger_name,
                network=charger.charger_network,
                walk_minutes=domain.walk_minutes(charger.walk_time_s),
                distance_m=charger.walk_distance_m,
            )
            if charger is not None
            else None
        ),
        verified_visit_count=preview.verified_visits,
        expires_at=timestamp(datetime.datetime.fromtimestamp(expires_unix, datetime.UTC)),
    )


def transaction_message(transfer: NovaTransfer) -> pb.MerchantTransaction:
    return pb.MerchantTransaction(
        id=transfer.id,
        type=transfer.type,
        amount=transfer.amount,
        driver_user_id=transfer.driver_user_id,
        created_at=timestamp(transfer.created_at),
        metadata=transfer.metadata,
    )


def visit_message(visit: portal.Visit) -> pb.MerchantVisit:
    return pb.MerchantVisit(
        id=visit.id,
        timestamp=timestamp(visit.at),
        exclusive_id=visit.exclusive_id,
        exclusive_title=visit.exclusive_title,
        driver_id_anonymized=visit.driver_anonymized,
        verification_status=visit.status,
        duration_minutes=visit.duration_minutes,
        charger_id=visit.charger_id,
        location_name=visit.location_name,
        verification_code=visit.verification_code,
    )
