"""The MerchantsService servicer: who may call each RPC (`ACCESS`), then one short handler per RPC that reads the
request and the caller, calls one core and builds the answer. The cores, one module each, take and return plain
values; calls to the other services go through peers.py:

catalog.py     merchant records, charger links, "while you charge", merchant details, scanned QR codes
checkout.py    Nova redemptions at checkout (exactly once, consistent with the ledger)
exclusives.py  exclusive offers: activate, verify, complete, cancel; the merchant's offer configuration
portal.py      the owner's reports, share card and QR sign; signed preview links
funnel.py      the acquisition funnel: find a business on Google Places, its preview, a claim of it
onboarding.py  Square OAuth and the recommended perk
favorites.py   drivers' favorite stores and chargers, amenity votes
claims.py      who may claim a store, for accounts' claim link and the portal's Google sign-in
"""

from __future__ import annotations

import dataclasses
import datetime
import uuid
from collections.abc import Iterable
from typing import Any, cast

from google.api import httpbody_pb2
from google.protobuf import json_format, struct_pb2
from nerava.merchants.v1 import merchants_pb2, merchants_pb2_grpc
from nerava.merchants.v1 import merchants_pb2 as pb
from sqlalchemy.ext.asyncio import AsyncEngine

from services.common import audit
from services.common.context import current_caller
from services.common.errors import InvalidArgument, PermissionDenied
from services.common.http_body import json_array
from services.common.interceptors import BY_AN_ADMIN, OWN_DATA, PUBLIC_DATA, Access, NotOwned, Owned
from services.common.outbox import DEAD_LETTER_ACCESS, dead_letter_message, dead_letters, replay_dead_letters
from services.common.paging import MAX_OFFSET, page_position, page_token
from services.common.reasons import CommonReason
from services.merchants import checkout, claims, domain, exclusives, portal
from services.merchants.catalog import Catalog, ListedMerchant, NewStore, OpeningHours, StoreChanges
from services.merchants.checkout import Checkout
from services.merchants.domain import DEFAULT_AOV_CENTS, OpeningPeriod
from services.merchants.exclusives import Exclusives, ExclusiveStart, OfferChanges
from services.merchants.favorites import Favorites
from services.merchants.funnel import Funnel
from services.merchants.onboarding import SquareOnboarding
from services.merchants.peers import NovaTransfer
from services.merchants.portal import Portal
from services.merchants.records import (
    ADMIN,
    ADMIN_READONLY,
    DRIVER,
    MERCHANT,
    STORE,
    checkout_url,
    merchant_message,
    timestamp,
)
from services.merchants.store import outbox

SERVICE_NAME = merchants_pb2.DESCRIPTOR.services_by_name["MerchantsService"].full_name
METHODS = tuple(m.name for m in merchants_pb2.DESCRIPTOR.services_by_name["MerchantsService"].methods)

# The driver's own votes and favorites; the merchants and chargers they name are the public catalog's.
_DRIVERS_OWN = Access.role(DRIVER).not_owned(OWN_DATA)

# A redemption is its driver's and its store owner's: anyone else gets REDEMPTION_NOT_FOUND (admins read all).
REDEMPTION = Owned("redemption", "redemption_id", frozenset({DRIVER, MERCHANT}), "REDEMPTION_NOT_FOUND")

# A driver's exclusive session: another driver's is EXCLUSIVE_NOT_FOUND.
EXCLUSIVE_SESSION = Owned("exclusive session", "exclusive_session_id", frozenset({DRIVER}), "EXCLUSIVE_NOT_FOUND")

_STAFF_CAPABILITY = NotOwned("staff devices are not signed in: the random id or arrival code is the capability")

_OWNER = Access.role(MERCHANT, ADMIN, ADMIN_READONLY).owned(STORE)

# Who may call each RPC and what they must own, by the module that serves it; tests/merchants/test_catalog.py checks
# every RPC has exactly one.
ACCESS: dict[str, Access] = {
    # catalog.py
    "CreateMerchant": Access.role(ADMIN).not_owned(BY_AN_ADMIN),
    "UpdateMerchant": Access.role(MERCHANT, ADMIN).owned(STORE),
    "LinkCharger": Access.role(ADMIN).not_owned(BY_AN_ADMIN),
    "GetCheckoutQr": Access.role(MERCHANT, ADMIN).owned(STORE),
    "GetMerchant": Access.anyone().not_owned(PUBLIC_DATA),
    "ListMerchantsForCharger": Access.anyone().not_owned(PUBLIC_DATA),
    # The printed QR code's token is the capability: whoever scanned the sign at the counter.
    "ResolveCheckoutQr": Access.anyone().not_owned("the printed QR code's token is the capability"),
    "ListAuditEntries": Access.service_only(),
    **DEAD_LETTER_ACCESS,
    "BatchListChargerMerchants": Access.service_only(),
    # favorites.py
    "VoteAmenity": _DRIVERS_OWN,
    "ListFavoriteMerchants": _DRIVERS_OWN,
    "AddFavoriteMerchant": _DRIVERS_OWN,
    "RemoveFavoriteMerchant": _DRIVERS_OWN,
    "ListFavoriteChargers": _DRIVERS_OWN,
    "AddFavoriteCharger": _DRIVERS_OWN,
    "RemoveFavoriteCharger": _DRIVERS_OWN,
    # claims.py
    "AuthorizeMerchantClaim": Access.service_only(),
    # funnel.py
    "SearchBusinesses": Access.anyone().not_owned(PUBLIC_DATA),
    "ResolveBusiness": Access.anyone().not_owned(PUBLIC_DATA),
    # The preview link's signature is the capability; the emailed link, not the caller, proves the claim.
    "RequestMerchantClaim": Access.anyone().not_owned(
        "a capability: the signed preview link names the store, and the emailed claim link proves the claimant"
    ),
    # onboarding.py
    # merchant_id names the store to connect; empty, a new store of the caller's is made.
    "ConnectSquare": Access.role(MERCHANT, ADMIN).owned(STORE),
    # The single-use state binds the callback to the store ConnectSquare named, checked again here.
    "CompleteSquareConnect": Access.role(MERCHANT, ADMIN).not_owned(
        "the single-use state names the store, whose ownership is checked again on completion"
    ),
    # checkout.py
    # The printed QR code's token is the capability: the driver at the counter scanned the sign.
    "ListRecentSquareOrders": Access.signed_in().not_owned("the printed QR code's token is the capability"),
    # The driver's own Nova pays, at the store the scanned QR token names.
    "RedeemAtCheckout": Access.role(DRIVER).not_owned(OWN_DATA),
    "GetRedemption": Access.role(DRIVER, MERCHANT, ADMIN, ADMIN_READONLY).owned(REDEMPTION),
    # exclusives.py
    "ActivateExclusive": Access.role(DRIVER).not_owned(OWN_DATA),
    "VerifyExclusiveVisit": Access.role(DRIVER).owned(EXCLUSIVE_SESSION),
    "CompleteExclusive": Access.role(DRIVER).owned(EXCLUSIVE_SESSION),
    "GetActiveExclusive": Access.role(DRIVER).not_owned(OWN_DATA),
    # The staff screen: the session's random id is the capability (see the contract).
    "GetExclusiveStaffView": Access.anyone().not_owned(_STAFF_CAPABILITY),
    # Staff devices are not signed in: the arrival code is the capability (see the contract).
    "RedeemCheckInCode": Access.anyone().not_owned(_STAFF_CAPABILITY),
    "CancelExclusive": Access.role(ADMIN).not_owned(BY_AN_ADMIN),
    "ListMerchantExclusives": Access.role(MERCHANT, ADMIN).owned(STORE),
    "CreateMerchantExclusive": Access.role(MERCHANT, ADMIN).owned(STORE),
    "UpdateMerchantExclusive": Access.role(MERCHANT, ADMIN).owned(STORE),
    "EnableMerchantExclusive": Access.role(MERCHANT, ADMIN).owned(STORE),
    "GetMerchantAnalytics": Access.role(MERCHANT, ADMIN, ADMIN_READONLY).owned(STORE),
    # portal.py
    # The caller's own stores, found by their owner id.
    "GetMyMerchant": Access.role(MERCHANT, ADMIN).not_owned(OWN_DATA),
    "GetMyMerchantInsights": Access.role(MERCHANT, ADMIN).not_owned(OWN_DATA),
    "GetMerchantSummary": _OWNER,
    "ListMerchantVisits": _OWNER,
    "GetBillingSummary": _OWNER,
    "GetShareables": _OWNER,
    "GetShareCard": _OWNER,
    "GetQrSign": _OWNER,
    "CreatePreviewLink": Access.role(ADMIN).not_owned(BY_AN_ADMIN),
    "ResolvePreviewLink": Access.anyone().not_owned("the link's signature is the capability"),
}


@dataclasses.dataclass(frozen=True)
class Cores:
    """What the servicer calls, built by __main__.py; checkout reads a store's Square token through the onboarding
    core, the one cross-core call, handed to it there."""

    engine: AsyncEngine  # the audit log, the outbox's dead letters, a claim's authorization
    checkout_page_url: str  # MerchantsSettings.checkout_page_url: the QR codes' page (records.checkout_url)
    catalog: Catalog
    onboarding: SquareOnboarding
    checkout: Checkout
    exclusives: Exclusives
    portal: Portal
    favorites: Favorites
    funnel: Funnel


class MerchantsApi(merchants_pb2_grpc.MerchantsServiceServicer):
    """Every RPC of MerchantsService over the cores it is handed."""

    def __init__(self, cores: Cores) -> None:
        self._engine = cores.engine
        self._checkout_page_url = cores.checkout_page_url
        self.catalog = cores.catalog
        self.onboarding = cores.onboarding
        self.checkout = cores.checkout
        self.exclusives = cores.exclusives
        self.portal = cores.portal
        self.favorites = cores.favorites
        self.funnel = cores.funnel

    # catalog.py

    async def ResolveCheckoutQr(
        self, request: pb.ResolveCheckoutQrRequest, context: Any
    ) -> pb.ResolveCheckoutQrResponse:
        caller = current_caller()
        driver_id = caller.user_id if caller.user_id is not None and caller.has_any({DRIVER}) else None
        scanned = await self.catalog.scan_qr(request.token, driver_id)
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

    async def ListMerchantsForCharger(
        self, request: pb.ListMerchantsForChargerRequest, context: Any
    ) -> pb.ListMerchantsForChargerResponse:
        listed = await self.catalog.for_charger(request.charger_id, request.state, open_only=request.open_only)
        items = [self._charger_merchant(merchant) for merchant in listed]
        return pb.ListMerchantsForChargerResponse(merchants=items, json_array=json_array(items))

    async def GetMerchant(self, request: pb.GetMerchantRequest, context: Any) -> pb.GetMerchantResponse:
        details = await self.catalog.details(request.merchant_id, request.session_id, current_caller().user_id)
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
                amenities=self._amenities(details.amenity_votes),
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

    async def BatchListChargerMerchants(
        self, request: pb.BatchListChargerMerchantsRequest, context: Any
    ) -> pb.BatchListChargerMerchantsResponse:
        found = await self.catalog.for_chargers(request.charger_ids)
        return pb.BatchListChargerMerchantsResponse(
            chargers=[
                pb.ChargerMerchants(charger_id=charger_id, merchants=[self._charger_merchant(m) for m in listed])
                for charger_id, listed in found.items()
            ]
        )

    async def CreateMerchant(self, request: pb.CreateMerchantRequest, context: Any) -> pb.CreateMerchantResponse:
        given = request.merchant
        new = NewStore(
            name=given.name,
            category=given.category,
            lat=given.lat,
            lng=given.lng,
            address=given.address,
            phone=given.phone,
            website=given.website,
            place_id=given.place_id,
            time_zone=given.hours.time_zone,
            opening_periods=self._periods(given.hours.periods),
            custom_perk_cents=given.perk.custom_perk_cents,
            perk_label=given.perk.label,
            status=given.status,
            owner_user_id=given.owner_user_id,
            zone_slug=given.zone_slug,
            logo_url=given.logo_url,
            photo_urls=list(given.photo_urls),
        )
        row = await self.catalog.create(request.request_id, new)
        return pb.CreateMerchantResponse(
            merchant=merchant_message(row, owner_view=True),
            qr_token=row.qr_token,
            qr_url=checkout_url(self._checkout_page_url, row.qr_token),
        )

    async def UpdateMerchant(self, request: pb.UpdateMerchantRequest, context: Any) -> pb.UpdateMerchantResponse:
        changes = StoreChanges(
            name=request.name if request.HasField("name") else None,
            category=request.category if request.HasField("category") else None,
            address=request.address if request.HasField("address") else None,
            phone=request.phone if request.HasField("phone") else None,
            website=request.website if request.HasField("website") else None,
            custom_perk_cents=request.custom_perk_cents if request.HasField("custom_perk_cents") else None,
            perk_label=request.perk_label if request.HasField("perk_label") else None,
            hours=(
                OpeningHours(request.hours.time_zone, self._periods(request.hours.periods))
                if request.HasField("hours")
                else None
            ),
            status=request.status if request.HasField("status") else None,
        )
        row, connected = await self.catalog.update(current_caller(), request.merchant_id, changes)
        return pb.UpdateMerchantResponse(merchant=merchant_message(row, square_connected=connected, owner_view=True))

    async def LinkCharger(self, request: pb.LinkChargerRequest, context: Any) -> pb.LinkChargerResponse:
        link = await self.catalog.link_charger(
            current_caller(),
            request.merchant_id,
            request.charger_id,
            (request.walk_distance_m, request.walk_time_s),
            is_primary=request.is_primary,
        )
        return pb.LinkChargerResponse(
            link=pb.ChargerLink(
                merchant_id=link.merchant_id,
                charger_id=link.charger_id,
                charger_name=link.charger_name,
                walk_distance_m=link.walk_distance_m,
                walk_time_s=link.walk_time_s,
                is_primary=link.is_primary,
            )
        )

    async def GetCheckoutQr(self, request: pb.GetCheckoutQrRequest, context: Any) -> pb.GetCheckoutQrResponse:
        token = await self.catalog.qr_token(current_caller(), request.merchant_id)
        return pb.GetCheckoutQrResponse(qr_token=token, qr_url=checkout_url(self._checkout_page_url, token))

    async def ListAuditEntries(self, request: pb.ListAuditEntriesRequest, context: Any) -> pb.ListAuditEntriesResponse:
        return pb.ListAuditEntriesResponse(entries=await audit.list_entries(self._engine, "merchants", request.query))

    async def ListDeadLetters(self, request: pb.ListDeadLettersRequest, context: Any) -> pb.ListDeadLettersResponse:
        rows = await dead_letters(self._engine, outbox, request.limit or 100)
        return pb.ListDeadLettersResponse(dead_letters=[dead_letter_message(row) for row in rows])

    async def ReplayDeadLetters(
        self, request: pb.ReplayDeadLettersRequest, context: Any
    ) -> pb.ReplayDeadLettersResponse:
        replayed = await replay_dead_letters(self._engine, outbox, list(request.ids) or None, request.reason)
        return pb.ReplayDeadLettersResponse(replayed=replayed)

    @staticmethod
    def _periods(periods: Iterable[pb.OpeningPeriod]) -> list[OpeningPeriod]:
        return [OpeningPeriod(p.day_of_week, p.open_minute, p.close_minute) for p in periods]

    @staticmethod
    def _amenities(counts: dict[str, tuple[int, int]]) -> pb.Amenities:
        def votes(amenity: str) -> pb.AmenityVotes:
            up, down = counts.get(amenity, (0, 0))
            return pb.AmenityVotes(upvotes=up, downvotes=down)

        return pb.Amenities(bathroom=votes("bathroom"), wifi=votes("wifi"))

    @staticmethod
    def _charger_merchant(listed: ListedMerchant) -> pb.ChargerMerchant:
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

    # favorites.py

    @staticmethod
    def _driver() -> str:
        """The calling driver (the favorites' access rule admits signed-in drivers only)."""
        return current_caller().user_id or ""

    async def VoteAmenity(self, request: pb.VoteAmenityRequest, context: Any) -> pb.VoteAmenityResponse:
        up, down = await self.favorites.vote(self._driver(), request.merchant_id, request.amenity, request.vote_type)
        return pb.VoteAmenityResponse(ok=True, upvotes=up, downvotes=down)

    async def ListFavoriteMerchants(
        self, request: pb.ListFavoriteMerchantsRequest, context: Any
    ) -> pb.ListFavoriteMerchantsResponse:
        rows = await self.favorites.stores(self._driver())
        return pb.ListFavoriteMerchantsResponse(
            favorites=[
                pb.FavoriteMerchant(
                    merchant_id=row.id,
                    name=row.name,
                    category=row.category,
                    photo_url=next(iter(row.photo_urls), ""),
                    favorited_at=timestamp(row.created_at),
                )
                for row in rows
            ]
        )

    async def AddFavoriteMerchant(
        self, request: pb.AddFavoriteMerchantRequest, context: Any
    ) -> pb.AddFavoriteMerchantResponse:
        await self.favorites.add_store(self._driver(), request.merchant_id)
        return pb.AddFavoriteMerchantResponse(ok=True, favorited=True)

    async def RemoveFavoriteMerchant(
        self, request: pb.RemoveFavoriteMerchantRequest, context: Any
    ) -> pb.RemoveFavoriteMerchantResponse:
        await self.favorites.remove_store(self._driver(), request.merchant_id)
        return pb.RemoveFavoriteMerchantResponse(ok=True, favorited=False)

    async def ListFavoriteChargers(
        self, request: pb.ListFavoriteChargersRequest, context: Any
    ) -> pb.ListFavoriteChargersResponse:
        favorites = await self.favorites.chargers(self._driver())
        return pb.ListFavoriteChargersResponse(
            favorites=[
                pb.FavoriteCharger(charger_id=f.charger_id, name=f.name, favorited_at=timestamp(f.added_at))
                for f in favorites
            ]
        )

    async def AddFavoriteCharger(
        self, request: pb.AddFavoriteChargerRequest, context: Any
    ) -> pb.AddFavoriteChargerResponse:
        await self.favorites.add_charger(self._driver(), request.charger_id)
        return pb.AddFavoriteChargerResponse(ok=True, favorited=True)

    async def RemoveFavoriteCharger(
        self, request: pb.RemoveFavoriteChargerRequest, context: Any
    ) -> pb.RemoveFavoriteChargerResponse:
        await self.favorites.remove_charger(self._driver(), request.charger_id)
        return pb.RemoveFavoriteChargerResponse(ok=True, favorited=False)

    # claims.py

    async def AuthorizeMerchantClaim(
        self, request: pb.AuthorizeMerchantClaimRequest, context: Any
    ) -> pb.AuthorizeMerchantClaimResponse:
        claimed = await claims.authorize_claim(
            self._engine, request.merchant_id, request.place_id, request.email, request.owner_user_id
        )
        return pb.AuthorizeMerchantClaimResponse(merchant_id=claimed.merchant_id, merchant_name=claimed.name)

    # funnel.py

    async def SearchBusinesses(self, request: pb.SearchBusinessesRequest, context: Any) -> pb.SearchBusinessesResponse:
        near = (request.lat, request.lng) if request.HasField("lat") and request.HasField("lng") else None
        found = await self.funnel.search(request.query, near)
        return pb.SearchBusinessesResponse(
            businesses=[
                pb.Business(
                    place_id=f.business.place_id,
                    name=f.business.name,
                    address=f.business.address,
                    lat=f.business.lat,
                    lng=f.business.lng,
                    category=f.business.category,
                    merchant_id=f.merchant_id,
                    claimed=f.claimed,
                )
                for f in found
            ]
        )

    async def ResolveBusiness(self, request: pb.ResolveBusinessRequest, context: Any) -> pb.ResolveBusinessResponse:
        preview = await self.funnel.resolve(request.place_id)
        return pb.ResolveBusinessResponse(
            merchant_id=preview.merchant_id,
            preview_url=preview.url,
            sig=preview.signature,
            expires_at=timestamp(datetime.datetime.fromtimestamp(preview.expires, datetime.UTC)),
            exp=preview.expires,
        )

    async def RequestMerchantClaim(
        self, request: pb.RequestMerchantClaimRequest, context: Any
    ) -> pb.RequestMerchantClaimResponse:
        claim = await self.funnel.request_claim(
            request.merchant_id, request.exp, request.sig, request.email, current_caller().user_id
        )
        return pb.RequestMerchantClaimResponse(
            claim=pb.MerchantClaim(
                id=claim.id,
                merchant_id=claim.merchant_id,
                merchant_name=claim.merchant_name,
                email=claim.email,
                status=claim.status,  # type: ignore[arg-type]  # the stored MerchantClaimStatus value
                created_at=timestamp(claim.created_at),
            )
        )

    # onboarding.py

    async def ConnectSquare(self, request: pb.ConnectSquareRequest, context: Any) -> pb.ConnectSquareResponse:
        started = await self.onboarding.connect(current_caller(), request.merchant_id)
        return pb.ConnectSquareResponse(
            authorization_url=started.authorization_url, state=started.state, expires_at=timestamp(started.expires_at)
        )

    async def CompleteSquareConnect(
        self, request: pb.CompleteSquareConnectRequest, context: Any
    ) -> pb.CompleteSquareConnectResponse:
        connected = await self.onboarding.complete(
            current_caller(), request.state, request.code, request.error, request.error_description
        )
        row, aov = connected.store, connected.average_order_value_cents
        return pb.CompleteSquareConnectResponse(
            merchant_id=row.id,
            merchant=merchant_message(row, square_connected=True, owner_view=True),
            average_order_value_cents=DEFAULT_AOV_CENTS if aov is None else aov,
            recommended_perk_cents=connected.recommended_perk_cents,
            qr_url=checkout_url(self._checkout_page_url, row.qr_token),
        )

    # checkout.py

    async def ListRecentSquareOrders(
        self, request: pb.ListRecentSquareOrdersRequest, context: Any
    ) -> pb.ListRecentSquareOrdersResponse:
        recent = await self.checkout.recent_square_orders(
            request.token, request.minutes or checkout.DEFAULT_RECENT_MINUTES
        )
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

    async def RedeemAtCheckout(self, request: pb.RedeemAtCheckoutRequest, context: Any) -> pb.RedeemAtCheckoutResponse:
        redeemed = await self.checkout.redeem(
            current_caller().user_id or "",
            request.qr_token,
            request.order_total_cents,
            request.square_order_id,
            request.idempotency_key,
        )
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
            redemption=_redemption_message(row),
        )

    async def GetRedemption(self, request: pb.GetRedemptionRequest, context: Any) -> pb.GetRedemptionResponse:
        row = await self.checkout.redemption(request.redemption_id, current_caller())
        return pb.GetRedemptionResponse(
            redemption_id=str(row.id),
            merchant_name=row.merchant_name,
            discount_cents=row.discount_cents,
            order_total_cents=row.order_total_cents,
            created_at=timestamp(row.created_at),
            status=row.status,
            redemption=_redemption_message(row),
        )

    # exclusives.py

    async def ActivateExclusive(
        self, request: pb.ActivateExclusiveRequest, context: Any
    ) -> pb.ActivateExclusiveResponse:
        activated = await self.exclusives.activate(
            _driver_id(),
            _idempotency_key(request.idempotency_key, context),
            ExclusiveStart(
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
            ),
        )
        return pb.ActivateExclusiveResponse(
            status=exclusives.status_name(activated.session.status),
            exclusive_session=_exclusive_session_message(activated.session),
            idempotent=activated.idempotent,
        )

    async def VerifyExclusiveVisit(
        self, request: pb.VerifyExclusiveVisitRequest, context: Any
    ) -> pb.VerifyExclusiveVisitResponse:
        verified = await self.exclusives.verify_visit(
            _driver_id(),
            request.exclusive_session_id,
            request.lat if request.HasField("lat") else None,
            request.lng if request.HasField("lng") else None,
        )
        return pb.VerifyExclusiveVisitResponse(
            status="ALREADY_VERIFIED" if verified.earlier else "VERIFIED",
            verification_code=verified.visit.verification_code,
            visit_number=verified.visit.visit_number,
            merchant_name=verified.merchant_name,
            verified_at=timestamp(verified.visit.verified_at),
        )

    async def CompleteExclusive(
        self, request: pb.CompleteExclusiveRequest, context: Any
    ) -> pb.CompleteExclusiveResponse:
        feedback = (
            json_format.MessageToDict(
                request.feedback, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
            )
            if request.HasField("feedback")
            else None
        )
        earlier = await self.exclusives.complete(_driver_id(), request.exclusive_session_id, feedback)
        return pb.CompleteExclusiveResponse(status="COMPLETED", idempotent=earlier, nova_earned=0)

    async def GetActiveExclusive(
        self, request: pb.GetActiveExclusiveRequest, context: Any
    ) -> pb.GetActiveExclusiveResponse:
        shown = await self.exclusives.shown_session(_driver_id(), include_expired=request.include_expired)
        if shown is None:
            return pb.GetActiveExclusiveResponse(exclusive_session=_session_value(None))
        session = _exclusive_session_message(shown)
        return pb.GetActiveExclusiveResponse(exclusive_session=_session_value(session), session=session)

    async def GetExclusiveStaffView(
        self, request: pb.GetExclusiveStaffViewRequest, context: Any
    ) -> pb.GetExclusiveStaffViewResponse:
        staff = await self.exclusives.staff_view(request.exclusive_session_id)
        if staff is None:
            return pb.GetExclusiveStaffViewResponse(
                exclusive_session=_NULL, merchant_name=_NULL, exclusive_title=_NULL, staff_instructions=_NULL
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
            merchant_name=_text_or_null(row.merchant_name),
            exclusive_title=_text_or_null(row.offer_title),
            staff_instructions=_text_or_null(row.description),
            staff_view=view,
        )

    async def RedeemCheckInCode(
        self, request: pb.RedeemCheckInCodeRequest, context: Any
    ) -> pb.RedeemCheckInCodeResponse:
        check_in = await self.exclusives.redeem_check_in(request.code, request.order_number, request.order_total_cents)
        visit = check_in.visit
        return pb.RedeemCheckInCodeResponse(
            redeemed=check_in.redeemed,
            session_id=check_in.session_id,
            already_redeemed=not check_in.redeemed,
            error=_NULL,
            verification_code=visit.verification_code if visit is not None else "",
            visit_number=visit.visit_number if visit is not None else 0,
        )

    async def CancelExclusive(self, request: pb.CancelExclusiveRequest, context: Any) -> pb.CancelExclusiveResponse:
        ids = await self.exclusives.cancel(
            current_caller().user_id,
            request.reason,
            exclusive_session_id=request.exclusive_session_id,
            charger_id=request.charger_id,
        )
        return pb.CancelExclusiveResponse(canceled_count=len(ids), exclusive_session_ids=ids)

    async def ListMerchantExclusives(
        self, request: pb.ListMerchantExclusivesRequest, context: Any
    ) -> pb.ListMerchantExclusivesResponse:
        rows = await self.exclusives.offers(request.merchant_id, current_caller())
        items = [pb.MerchantExclusive(**_offer_fields(row)) for row in rows]
        return pb.ListMerchantExclusivesResponse(exclusives=items, json_array=json_array(items))

    async def CreateMerchantExclusive(
        self, request: pb.CreateMerchantExclusiveRequest, context: Any
    ) -> pb.CreateMerchantExclusiveResponse:
        row = await self.exclusives.create_offer(
            request.merchant_id,
            current_caller(),
            title=request.title,
            description=request.description,
            daily_cap=request.daily_cap,
            session_cap=request.session_cap,
            eligibility=request.eligibility,
        )
        return pb.CreateMerchantExclusiveResponse(**_offer_fields(row))

    async def UpdateMerchantExclusive(
        self, request: pb.UpdateMerchantExclusiveRequest, context: Any
    ) -> pb.UpdateMerchantExclusiveResponse:
        changes = OfferChanges(
            **{
                name: getattr(request, name)
                for name in ("title", "description", "daily_cap", "session_cap", "eligibility", "is_active")
                if request.HasField(name)
            }
        )
        row = await self.exclusives.change_offer(request.merchant_id, current_caller(), request.exclusive_id, changes)
        return pb.UpdateMerchantExclusiveResponse(**_offer_fields(row))

    async def EnableMerchantExclusive(
        self, request: pb.EnableMerchantExclusiveRequest, context: Any
    ) -> pb.EnableMerchantExclusiveResponse:
        row = await self.exclusives.change_offer(
            request.merchant_id, current_caller(), request.exclusive_id, OfferChanges(is_active=request.enabled)
        )
        return pb.EnableMerchantExclusiveResponse(ok=True, is_active=row.is_active)

    async def GetMerchantAnalytics(
        self, request: pb.GetMerchantAnalyticsRequest, context: Any
    ) -> pb.GetMerchantAnalyticsResponse:
        figures = await self.exclusives.analytics(request.merchant_id, current_caller())
        return pb.GetMerchantAnalyticsResponse(
            merchant_id=request.merchant_id,
            activations=figures.activations,
            completes=figures.completes,
            unique_drivers=figures.unique_drivers,
            completion_rate=figures.completion_rate,
        )

    # portal.py

    async def GetMyMerchant(self, request: pb.GetMyMerchantRequest, context: Any) -> pb.GetMyMerchantResponse:
        mine = await self.portal.my_store(current_caller().user_id)
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
            transactions=[_transaction_message(transfer) for transfer in mine.transfers],
            merchant_ids=mine.merchant_ids,
        )

    async def GetMyMerchantInsights(
        self, request: pb.GetMyMerchantInsightsRequest, context: Any
    ) -> pb.GetMyMerchantInsightsResponse:
        period = request.period or portal.DEFAULT_INSIGHTS_PERIOD
        insights = await self.portal.insights(current_caller().user_id, period)
        return pb.GetMyMerchantInsightsResponse(
            period=period,
            ev_sessions_nearby=insights.sessions,
            unique_drivers=insights.unique_drivers,
            peak_hours=[pb.PeakHour(hour=hour, sessions=sessions) for hour, sessions in insights.peak_hours],
            avg_duration_minutes=insights.avg_duration_minutes,
            avg_kwh=insights.avg_kwh,
        )

    async def GetMerchantSummary(
        self, request: pb.GetMerchantSummaryRequest, context: Any
    ) -> pb.GetMerchantSummaryResponse:
        summary = await self.portal.summary(request.merchant_id, current_caller())
        return pb.GetMerchantSummaryResponse(
            total_redemptions=summary.redemptions,
            total_discount_cents=summary.discount_cents,
            unique_driver_count=summary.unique_drivers,
            last_7d_redemptions=summary.last_7d,
            last_30d_redemptions=summary.last_30d,
            avg_discount_cents=summary.avg_discount_cents,
        )

    async def ListMerchantVisits(
        self, request: pb.ListMerchantVisitsRequest, context: Any
    ) -> pb.ListMerchantVisitsResponse:
        period = request.period or "week"
        size = request.limit or request.page_size or portal.DEFAULT_VISITS
        bound = f"visits:{request.merchant_id}:{period}:{request.status}"
        position = page_position(request.page_token, bound, maximum=MAX_OFFSET)
        offset = request.offset if position is None else position
        page = await self.portal.visits(
            request.merchant_id, current_caller(), period=period, status=request.status, size=size, offset=offset
        )
        following = offset + len(page.visits)
        return pb.ListMerchantVisitsResponse(
            visits=[_visit_message(visit) for visit in page.visits],
            total=page.total,
            verified_count=page.verified,
            period=period,
            limit=size,
            offset=offset,
            next_page_token=page_token(following, bound) if page.visits and following < page.total else "",
        )

    async def GetBillingSummary(
        self, request: pb.GetBillingSummaryRequest, context: Any
    ) -> pb.GetBillingSummaryResponse:
        period = await self.portal.fee_period(request.merchant_id, current_caller(), request.month)
        return pb.GetBillingSummaryResponse(
            period_start=period.start,
            period_end=period.end,
            nova_redeemed_cents=period.nova_redeemed_cents,
            fee_cents=period.fee_cents,
            status=period.status,
        )

    async def GetShareables(self, request: pb.GetShareablesRequest, context: Any) -> pb.GetShareablesResponse:
        return pb.GetShareablesResponse(lines=await self.portal.shareable_lines(request.merchant_id, current_caller()))

    async def GetShareCard(self, request: pb.GetShareCardRequest, context: Any) -> pb.GetShareCardResponse:
        days = int(request.range.removesuffix("d")) if request.range else portal.DEFAULT_SHARE_DAYS
        png = await self.portal.share_card(request.merchant_id, current_caller(), days)
        return pb.GetShareCardResponse(http_body=httpbody_pb2.HttpBody(content_type="image/png", data=png))

    async def GetQrSign(self, request: pb.GetQrSignRequest, context: Any) -> pb.GetQrSignResponse:
        pdf = await self.portal.qr_sign(request.merchant_id, current_caller())
        return pb.GetQrSignResponse(http_body=httpbody_pb2.HttpBody(content_type="application/pdf", data=pdf))

    async def CreatePreviewLink(
        self, request: pb.CreatePreviewLinkRequest, context: Any
    ) -> pb.CreatePreviewLinkResponse:
        link = await self.portal.create_preview_link(request.merchant_id)
        return pb.CreatePreviewLinkResponse(
            merchant_id=link.merchant_id,
            preview_url=link.url,
            sig=link.signature,
            expires_at=timestamp(link.expires_at),
        )

    async def ResolvePreviewLink(
        self, request: pb.ResolvePreviewLinkRequest, context: Any
    ) -> pb.ResolvePreviewLinkResponse:
        preview = await self.portal.resolve_preview_link(request.merchant_id, request.exp, request.sig)
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
            expires_at=timestamp(datetime.datetime.fromtimestamp(request.exp, datetime.UTC)),
        )


# checkout.py: messages


def _redemption_message(row: Any) -> pb.Redemption:
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


# exclusives.py: the driver and the key a handler hands in, and the messages

IDEMPOTENCY_HEADER = "x-idempotency-key"
_NULL = struct_pb2.Value(null_value=struct_pb2.NULL_VALUE)


def _driver_id() -> str:
    caller = current_caller()
    if caller.user_id is None:  # the access rule admits only signed-in drivers; this keeps mypy honest
        raise PermissionDenied(CommonReason.PERMISSION_DENIED, "a signed-in driver is required")
    return caller.user_id


def _idempotency_key(field: str, context: Any) -> uuid.UUID | None:
    """The request's key, else the `x-idempotency-key` header the gateway forwards as metadata."""
    if field:
        return uuid.UUID(field)  # validated as a UUID by the contract
    header = next(
        (value for key, value in (context.invocation_metadata() or ()) if key == IDEMPOTENCY_HEADER),
        None,
    )
    if not header:
        return None
    try:
        return uuid.UUID(str(header))
    except ValueError:
        raise InvalidArgument([("idempotency_key", "the x-idempotency-key header must be a UUID")]) from None


def _exclusive_session_message(shown: exclusives.ShownSession) -> pb.ExclusiveSession:
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


def _session_value(session: pb.ExclusiveSession | None) -> struct_pb2.Value:
    """The JSON form the app reads under `exclusive_session`: the object, or null."""
    if session is None:
        return _NULL
    printed = json_format.MessageToDict(
        session, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )
    # The app's schema demands merchant_id and charger_id with a string or null: unknown is null, never "".
    for key in ("merchant_id", "charger_id"):
        printed[key] = printed.get(key) or None
    value = struct_pb2.Value()
    value.struct_value.update(printed)
    return value


def _text_or_null(text: str | None) -> struct_pb2.Value:
    if not text:
        return _NULL
    return struct_pb2.Value(string_value=text)


def _offer_fields(row: Any) -> dict[str, Any]:
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


# portal.py: messages


def _transaction_message(transfer: NovaTransfer) -> pb.MerchantTransaction:
    return pb.MerchantTransaction(
        id=transfer.id,
        type=transfer.type,
        amount=transfer.amount,
        driver_user_id=transfer.driver_user_id,
        created_at=timestamp(transfer.created_at),
        metadata=transfer.metadata,
    )


def _visit_message(visit: portal.Visit) -> pb.MerchantVisit:
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
