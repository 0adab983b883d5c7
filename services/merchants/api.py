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

from google.api import httpbody_pb2
from nerava.merchants.v1 import merchants_pb2, merchants_pb2_grpc
from nerava.merchants.v1 import merchants_pb2 as pb

from services.common.context import current_caller
from services.common.interceptors import Access
from services.common.paging import MAX_OFFSET, page_position, page_token
from services.merchants import catalog, checkout, claims, domain, exclusives, favorites, funnel, onboarding, portal
from services.merchants.catalog import CatalogRpcs
from services.merchants.checkout import Checkout
from services.merchants.claims import ClaimRpcs
from services.merchants.exclusives import ExclusiveRpcs
from services.merchants.favorites import FavoriteRpcs
from services.merchants.funnel import FunnelRpcs
from services.merchants.onboarding import SquareRpcs
from services.merchants.portal import Portal
from services.merchants.records import Resources, merchant_message, timestamp

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
        self.onboarding = SquareRpcs(**shared)
        self.checkout = Checkout(
            resources.pool, resources.reads, resources.ledger, resources.square, square_tokens=self.onboarding
        )
        self.exclusives = ExclusiveRpcs(**shared)
        self.portal = Portal(resources.reads, resources.ledger, resources.sessions, resources.settings)
        self.favorites = FavoriteRpcs(**shared)
        self.claims = ClaimRpcs(**shared)
        self.funnel = FunnelRpcs(**shared)

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

    async def VoteAmenity(self, request: pb.VoteAmenityRequest, context: Any) -> pb.VoteAmenityResponse:
        return await self.favorites.VoteAmenity(request, context)

    async def ListFavoriteMerchants(
        self, request: pb.ListFavoriteMerchantsRequest, context: Any
    ) -> pb.ListFavoriteMerchantsResponse:
        return await self.favorites.ListFavoriteMerchants(request, context)

    async def AddFavoriteMerchant(
        self, request: pb.AddFavoriteMerchantRequest, context: Any
    ) -> pb.AddFavoriteMerchantResponse:
        return await self.favorites.AddFavoriteMerchant(request, context)

    async def RemoveFavoriteMerchant(
        self, request: pb.RemoveFavoriteMerchantRequest, context: Any
    ) -> pb.RemoveFavoriteMerchantResponse:
        return await self.favorites.RemoveFavoriteMerchant(request, context)

    async def ListFavoriteChargers(
        self, request: pb.ListFavoriteChargersRequest, context: Any
    ) -> pb.ListFavoriteChargersResponse:
        return await self.favorites.ListFavoriteChargers(request, context)

    async def AddFavoriteCharger(
        self, request: pb.AddFavoriteChargerRequest, context: Any
    ) -> pb.AddFavoriteChargerResponse:
        return await self.favorites.AddFavoriteCharger(request, context)

    async def RemoveFavoriteCharger(
        self, request: pb.RemoveFavoriteChargerRequest, context: Any
    ) -> pb.RemoveFavoriteChargerResponse:
        return await self.favorites.RemoveFavoriteCharger(request, context)

    # claims.py

    async def AuthorizeMerchantClaim(
        self, request: pb.AuthorizeMerchantClaimRequest, context: Any
    ) -> pb.AuthorizeMerchantClaimResponse:
        return await self.claims.AuthorizeMerchantClaim(request, context)

    # funnel.py

    async def SearchBusinesses(self, request: pb.SearchBusinessesRequest, context: Any) -> pb.SearchBusinessesResponse:
        return await self.funnel.SearchBusinesses(request, context)

    async def ResolveBusiness(self, request: pb.ResolveBusinessRequest, context: Any) -> pb.ResolveBusinessResponse:
        return await self.funnel.ResolveBusiness(request, context)

    async def RequestMerchantClaim(
        self, request: pb.RequestMerchantClaimRequest, context: Any
    ) -> pb.RequestMerchantClaimResponse:
        return await self.funnel.RequestMerchantClaim(request, context)

    # onboarding.py

    async def ConnectSquare(self, request: pb.ConnectSquareRequest, context: Any) -> pb.ConnectSquareResponse:
        return await self.onboarding.ConnectSquare(request, context)

    async def CompleteSquareConnect(
        self, request: pb.CompleteSquareConnectRequest, context: Any
    ) -> pb.CompleteSquareConnectResponse:
        return await self.onboarding.CompleteSquareConnect(request, context)

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


# portal.py: messages


def _transaction_message(transfer: portal.NovaTransfer) -> pb.MerchantTransaction:
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
