"""The MerchantsService servicer: one class holding its RPC groups as attributes (composition) — one module each,
each built over the shared `Resources` (records.py):

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
from collections.abc import Iterable
from typing import Any

from google.protobuf import struct_pb2
from nerava.merchants.v1 import merchants_pb2, merchants_pb2_grpc
from nerava.merchants.v1 import merchants_pb2 as pb

from services.common import audit
from services.common.context import current_caller
from services.common.http_body import json_array
from services.common.interceptors import Access
from services.common.outbox import dead_letter_message, dead_letters, replay_dead_letters
from services.merchants import catalog, checkout, claims, exclusives, favorites, funnel, onboarding, portal
from services.merchants.catalog import Catalog, ListedMerchant, NewStore, OpeningHours, StoreChanges
from services.merchants.checkout import CheckoutRpcs
from services.merchants.domain import DEFAULT_AOV_CENTS, OpeningPeriod
from services.merchants.exclusives import ExclusiveRpcs
from services.merchants.favorites import Favorites
from services.merchants.funnel import Funnel
from services.merchants.onboarding import SquareOnboarding
from services.merchants.peers import ChargerDirectory, ClaimLinks, NovaBalances
from services.merchants.portal import PortalRpcs
from services.merchants.records import DRIVER, Resources, checkout_url, merchant_message, timestamp
from services.merchants.store import outbox

SERVICE_NAME = merchants_pb2.DESCRIPTOR.services_by_name["MerchantsService"].full_name
METHODS = tuple(m.name for m in merchants_pb2.DESCRIPTOR.services_by_name["MerchantsService"].methods)

# Each group declares the rule of each of its RPCs; tests/merchants/test_catalog.py checks every RPC has exactly one.
GROUPS = (catalog, checkout, exclusives, portal, onboarding, favorites, claims, funnel)
ACCESS: dict[str, Access] = {name: rule for group in GROUPS for name, rule in group.ACCESS.items()}


class MerchantsApi(merchants_pb2_grpc.MerchantsServiceServicer):
    """Every RPC of MerchantsService, each handed to the group that owns it; checkout reads a store's Square
    token through the onboarding group, the one cross-group call, passed in explicitly."""

    def __init__(self, resources: Resources) -> None:
        shared = {field.name: getattr(resources, field.name) for field in dataclasses.fields(Resources)}
        self.resources = resources
        self.catalog = Catalog(
            resources.engine,
            resources.reads,
            ChargerDirectory(resources.sessions),
            NovaBalances(resources.ledger),
        )
        self.onboarding = SquareOnboarding(resources.engine, resources.square, resources.token_cipher)
        self.checkout = CheckoutRpcs(**shared, square_tokens=self.onboarding)
        self.exclusives = ExclusiveRpcs(**shared)
        self.portal = PortalRpcs(**shared)
        self.favorites = Favorites(resources.engine, resources.reads, ChargerDirectory(resources.sessions))
        self.funnel = Funnel(
            resources.engine, resources.reads, resources.places, ClaimLinks(resources.accounts), resources.settings
        )

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
            qr_url=checkout_url(self.resources.settings, row.qr_token),
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
        return pb.GetCheckoutQrResponse(qr_token=token, qr_url=checkout_url(self.resources.settings, token))

    async def ListAuditEntries(self, request: pb.ListAuditEntriesRequest, context: Any) -> pb.ListAuditEntriesResponse:
        return pb.ListAuditEntriesResponse(
            entries=await audit.list_entries(self.resources.engine, "merchants", request.query)
        )

    async def ListDeadLetters(self, request: pb.ListDeadLettersRequest, context: Any) -> pb.ListDeadLettersResponse:
        rows = await dead_letters(self.resources.engine, outbox, request.limit or 100)
        return pb.ListDeadLettersResponse(dead_letters=[dead_letter_message(row) for row in rows])

    async def ReplayDeadLetters(
        self, request: pb.ReplayDeadLettersRequest, context: Any
    ) -> pb.ReplayDeadLettersResponse:
        replayed = await replay_dead_letters(self.resources.engine, outbox, list(request.ids) or None, request.reason)
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
            self.resources.engine, request.merchant_id, request.place_id, request.email, request.owner_user_id
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
            qr_url=checkout_url(self.resources.settings, row.qr_token),
        )

    # checkout.py

    async def ListRecentSquareOrders(
        self, request: pb.ListRecentSquareOrdersRequest, context: Any
    ) -> pb.ListRecentSquareOrdersResponse:
        return await self.checkout.ListRecentSquareOrders(request, context)

    async def RedeemAtCheckout(self, request: pb.RedeemAtCheckoutRequest, context: Any) -> pb.RedeemAtCheckoutResponse:
        return await self.checkout.RedeemAtCheckout(request, context)

    async def GetRedemption(self, request: pb.GetRedemptionRequest, context: Any) -> pb.GetRedemptionResponse:
        return await self.checkout.GetRedemption(request, context)

    # exclusives.py

    async def ActivateExclusive(
        self, request: pb.ActivateExclusiveRequest, context: Any
    ) -> pb.ActivateExclusiveResponse:
        return await self.exclusives.ActivateExclusive(request, context)

    async def VerifyExclusiveVisit(
        self, request: pb.VerifyExclusiveVisitRequest, context: Any
    ) -> pb.VerifyExclusiveVisitResponse:
        return await self.exclusives.VerifyExclusiveVisit(request, context)

    async def CompleteExclusive(
        self, request: pb.CompleteExclusiveRequest, context: Any
    ) -> pb.CompleteExclusiveResponse:
        return await self.exclusives.CompleteExclusive(request, context)

    async def GetActiveExclusive(
        self, request: pb.GetActiveExclusiveRequest, context: Any
    ) -> pb.GetActiveExclusiveResponse:
        return await self.exclusives.GetActiveExclusive(request, context)

    async def GetExclusiveStaffView(
        self, request: pb.GetExclusiveStaffViewRequest, context: Any
    ) -> pb.GetExclusiveStaffViewResponse:
        return await self.exclusives.GetExclusiveStaffView(request, context)

    async def RedeemCheckInCode(
        self, request: pb.RedeemCheckInCodeRequest, context: Any
    ) -> pb.RedeemCheckInCodeResponse:
        return await self.exclusives.RedeemCheckInCode(request, context)

    async def CancelExclusive(self, request: pb.CancelExclusiveRequest, context: Any) -> pb.CancelExclusiveResponse:
        return await self.exclusives.CancelExclusive(request, context)

    async def ListMerchantExclusives(
        self, request: pb.ListMerchantExclusivesRequest, context: Any
    ) -> pb.ListMerchantExclusivesResponse:
        return await self.exclusives.ListMerchantExclusives(request, context)

    async def CreateMerchantExclusive(
        self, request: pb.CreateMerchantExclusiveRequest, context: Any
    ) -> pb.CreateMerchantExclusiveResponse:
        return await self.exclusives.CreateMerchantExclusive(request, context)

    async def UpdateMerchantExclusive(
        self, request: pb.UpdateMerchantExclusiveRequest, context: Any
    ) -> pb.UpdateMerchantExclusiveResponse:
        return await self.exclusives.UpdateMerchantExclusive(request, context)

    async def EnableMerchantExclusive(
        self, request: pb.EnableMerchantExclusiveRequest, context: Any
    ) -> pb.EnableMerchantExclusiveResponse:
        return await self.exclusives.EnableMerchantExclusive(request, context)

    async def GetMerchantAnalytics(
        self, request: pb.GetMerchantAnalyticsRequest, context: Any
    ) -> pb.GetMerchantAnalyticsResponse:
        return await self.exclusives.GetMerchantAnalytics(request, context)

    # portal.py

    async def GetMyMerchant(self, request: pb.GetMyMerchantRequest, context: Any) -> pb.GetMyMerchantResponse:
        return await self.portal.GetMyMerchant(request, context)

    async def GetMyMerchantInsights(
        self, request: pb.GetMyMerchantInsightsRequest, context: Any
    ) -> pb.GetMyMerchantInsightsResponse:
        return await self.portal.GetMyMerchantInsights(request, context)

    async def GetMerchantSummary(
        self, request: pb.GetMerchantSummaryRequest, context: Any
    ) -> pb.GetMerchantSummaryResponse:
        return await self.portal.GetMerchantSummary(request, context)

    async def ListMerchantVisits(
        self, request: pb.ListMerchantVisitsRequest, context: Any
    ) -> pb.ListMerchantVisitsResponse:
        return await self.portal.ListMerchantVisits(request, context)

    async def GetBillingSummary(
        self, request: pb.GetBillingSummaryRequest, context: Any
    ) -> pb.GetBillingSummaryResponse:
        return await self.portal.GetBillingSummary(request, context)

    async def GetShareables(self, request: pb.GetShareablesRequest, context: Any) -> pb.GetShareablesResponse:
        return await self.portal.GetShareables(request, context)

    async def GetShareCard(self, request: pb.GetShareCardRequest, context: Any) -> pb.GetShareCardResponse:
        return await self.portal.GetShareCard(request, context)

    async def GetQrSign(self, request: pb.GetQrSignRequest, context: Any) -> pb.GetQrSignResponse:
        return await self.portal.GetQrSign(request, context)

    async def CreatePreviewLink(
        self, request: pb.CreatePreviewLinkRequest, context: Any
    ) -> pb.CreatePreviewLinkResponse:
        return await self.portal.CreatePreviewLink(request, context)

    async def ResolvePreviewLink(
        self, request: pb.ResolvePreviewLinkRequest, context: Any
    ) -> pb.ResolvePreviewLinkResponse:
        return await self.portal.ResolvePreviewLink(request, context)
