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
from typing import Any

from nerava.merchants.v1 import merchants_pb2, merchants_pb2_grpc
from nerava.merchants.v1 import merchants_pb2 as pb

from services.common.context import current_caller
from services.common.interceptors import Access
from services.merchants import catalog, checkout, claims, domain, exclusives, favorites, funnel, onboarding, portal
from services.merchants.catalog import CatalogRpcs
from services.merchants.checkout import CheckoutRpcs
from services.merchants.exclusives import ExclusiveRpcs
from services.merchants.favorites import Favorites
from services.merchants.funnel import Funnel
from services.merchants.onboarding import SquareOnboarding
from services.merchants.peers import ChargerDirectory, ClaimLinks
from services.merchants.portal import PortalRpcs
from services.merchants.records import Resources, checkout_url, merchant_message, timestamp

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
        self.catalog = CatalogRpcs(**shared)
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
        return await self.catalog.ResolveCheckoutQr(request, context)

    async def ListMerchantsForCharger(
        self, request: pb.ListMerchantsForChargerRequest, context: Any
    ) -> pb.ListMerchantsForChargerResponse:
        return await self.catalog.ListMerchantsForCharger(request, context)

    async def GetMerchant(self, request: pb.GetMerchantRequest, context: Any) -> pb.GetMerchantResponse:
        return await self.catalog.GetMerchant(request, context)

    async def BatchListChargerMerchants(
        self, request: pb.BatchListChargerMerchantsRequest, context: Any
    ) -> pb.BatchListChargerMerchantsResponse:
        return await self.catalog.BatchListChargerMerchants(request, context)

    async def CreateMerchant(self, request: pb.CreateMerchantRequest, context: Any) -> pb.CreateMerchantResponse:
        return await self.catalog.CreateMerchant(request, context)

    async def UpdateMerchant(self, request: pb.UpdateMerchantRequest, context: Any) -> pb.UpdateMerchantResponse:
        return await self.catalog.UpdateMerchant(request, context)

    async def LinkCharger(self, request: pb.LinkChargerRequest, context: Any) -> pb.LinkChargerResponse:
        return await self.catalog.LinkCharger(request, context)

    async def GetCheckoutQr(self, request: pb.GetCheckoutQrRequest, context: Any) -> pb.GetCheckoutQrResponse:
        return await self.catalog.GetCheckoutQr(request, context)

    async def ListAuditEntries(self, request: pb.ListAuditEntriesRequest, context: Any) -> pb.ListAuditEntriesResponse:
        return await self.catalog.ListAuditEntries(request, context)

    async def ListDeadLetters(self, request: pb.ListDeadLettersRequest, context: Any) -> pb.ListDeadLettersResponse:
        return await self.catalog.ListDeadLetters(request, context)

    async def ReplayDeadLetters(
        self, request: pb.ReplayDeadLettersRequest, context: Any
    ) -> pb.ReplayDeadLettersResponse:
        return await self.catalog.ReplayDeadLetters(request, context)

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
            average_order_value_cents=domain.DEFAULT_AOV_CENTS if aov is None else aov,
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
