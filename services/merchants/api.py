"""The MerchantsService servicer: who may call each RPC (`ACCESS`), then one short handler per RPC that reads the
request and the caller, calls one core and builds the answer (the builders in messages.py). The cores, one module
each, take and return plain values; calls to the other services go through peers.py:

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
from typing import Any

from google.api import httpbody_pb2
from google.protobuf import json_format
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
from services.common.timestamps import timestamp
from services.merchants import checkout, claims, exclusives, messages, portal
from services.merchants.catalog import Catalog
from services.merchants.checkout import Checkout
from services.merchants.domain import DEFAULT_AOV_CENTS
from services.merchants.exclusives import Exclusives, OfferChanges
from services.merchants.favorites import Favorites
from services.merchants.funnel import Funnel
from services.merchants.onboarding import SquareOnboarding
from services.merchants.portal import Portal
from services.merchants.records import (
    ADMIN,
    ADMIN_READONLY,
    DRIVER,
    MERCHANT,
    STORE,
    checkout_url,
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
        return messages.scanned_checkout(await self.catalog.scan_qr(request.token, driver_id))

    async def ListMerchantsForCharger(
        self, request: pb.ListMerchantsForChargerRequest, context: Any
    ) -> pb.ListMerchantsForChargerResponse:
        listed = await self.catalog.for_charger(request.charger_id, request.state, open_only=request.open_only)
        items = [messages.charger_merchant(merchant) for merchant in listed]
        return pb.ListMerchantsForChargerResponse(merchants=items, json_array=json_array(items))

    async def GetMerchant(self, request: pb.GetMerchantRequest, context: Any) -> pb.GetMerchantResponse:
        details = await self.catalog.details(request.merchant_id, request.session_id, current_caller().user_id)
        return messages.store_details(details)

    async def BatchListChargerMerchants(
        self, request: pb.BatchListChargerMerchantsRequest, context: Any
    ) -> pb.BatchListChargerMerchantsResponse:
        found = await self.catalog.for_chargers(request.charger_ids)
        return pb.BatchListChargerMerchantsResponse(
            chargers=[
                pb.ChargerMerchants(charger_id=charger_id, merchants=[messages.charger_merchant(m) for m in listed])
                for charger_id, listed in found.items()
            ]
        )

    async def CreateMerchant(self, request: pb.CreateMerchantRequest, context: Any) -> pb.CreateMerchantResponse:
        row = await self.catalog.create(request.request_id, messages.new_store(request.merchant))
        return pb.CreateMerchantResponse(
            merchant=messages.merchant_message(row, owner_view=True),
            qr_token=row.qr_token,
            qr_url=checkout_url(self._checkout_page_url, row.qr_token),
        )

    async def UpdateMerchant(self, request: pb.UpdateMerchantRequest, context: Any) -> pb.UpdateMerchantResponse:
        changes = messages.store_changes(request)
        row, connected = await self.catalog.update(current_caller(), request.merchant_id, changes)
        return pb.UpdateMerchantResponse(
            merchant=messages.merchant_message(row, square_connected=connected, owner_view=True)
        )

    async def LinkCharger(self, request: pb.LinkChargerRequest, context: Any) -> pb.LinkChargerResponse:
        link = await self.catalog.link_charger(
            current_caller(),
            request.merchant_id,
            request.charger_id,
            (request.walk_distance_m, request.walk_time_s),
            is_primary=request.is_primary,
        )
        return pb.LinkChargerResponse(link=messages.charger_link(link))

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
        return pb.ListFavoriteMerchantsResponse(favorites=[messages.favorite_store(row) for row in rows])

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
        return pb.ListFavoriteChargersResponse(favorites=[messages.favorite_charger(f) for f in favorites])

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
        return pb.SearchBusinessesResponse(businesses=[messages.business(f) for f in found])

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
        return pb.RequestMerchantClaimResponse(claim=messages.store_claim(claim))

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
            merchant=messages.merchant_message(row, square_connected=True, owner_view=True),
            average_order_value_cents=DEFAULT_AOV_CENTS if aov is None else aov,
            recommended_perk_cents=connected.recommended_perk_cents,
            qr_url=checkout_url(self._checkout_page_url, row.qr_token),
        )

    # checkout.py

    async def ListRecentSquareOrders(
        self, request: pb.ListRecentSquareOrdersRequest, context: Any
    ) -> pb.ListRecentSquareOrdersResponse:
        minutes = request.minutes or checkout.DEFAULT_RECENT_MINUTES
        return messages.recent_orders(await self.checkout.recent_square_orders(request.token, minutes))

    async def RedeemAtCheckout(self, request: pb.RedeemAtCheckoutRequest, context: Any) -> pb.RedeemAtCheckoutResponse:
        redeemed = await self.checkout.redeem(
            current_caller().user_id or "",
            request.qr_token,
            request.order_total_cents,
            request.square_order_id,
            request.idempotency_key,
        )
        return messages.redeemed_answer(redeemed)

    async def GetRedemption(self, request: pb.GetRedemptionRequest, context: Any) -> pb.GetRedemptionResponse:
        return messages.redemption_answer(await self.checkout.redemption(request.redemption_id, current_caller()))

    # exclusives.py

    async def ActivateExclusive(
        self, request: pb.ActivateExclusiveRequest, context: Any
    ) -> pb.ActivateExclusiveResponse:
        activated = await self.exclusives.activate(
            _driver_id(),
            _idempotency_key(request.idempotency_key, context),
            messages.exclusive_start(request),
        )
        return pb.ActivateExclusiveResponse(
            status=exclusives.status_name(activated.session.status),
            exclusive_session=messages.exclusive_session_message(activated.session),
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
            return pb.GetActiveExclusiveResponse(exclusive_session=messages.session_value(None))
        session = messages.exclusive_session_message(shown)
        return pb.GetActiveExclusiveResponse(exclusive_session=messages.session_value(session), session=session)

    async def GetExclusiveStaffView(
        self, request: pb.GetExclusiveStaffViewRequest, context: Any
    ) -> pb.GetExclusiveStaffViewResponse:
        return messages.staff_view_answer(await self.exclusives.staff_view(request.exclusive_session_id))

    async def RedeemCheckInCode(
        self, request: pb.RedeemCheckInCodeRequest, context: Any
    ) -> pb.RedeemCheckInCodeResponse:
        check_in = await self.exclusives.redeem_check_in(request.code, request.order_number, request.order_total_cents)
        visit = check_in.visit
        return pb.RedeemCheckInCodeResponse(
            redeemed=check_in.redeemed,
            session_id=check_in.session_id,
            already_redeemed=not check_in.redeemed,
            error=messages.NULL,
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
        items = [pb.MerchantExclusive(**messages.offer_fields(row)) for row in rows]
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
        return pb.CreateMerchantExclusiveResponse(**messages.offer_fields(row))

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
        return pb.UpdateMerchantExclusiveResponse(**messages.offer_fields(row))

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
        return messages.my_merchant_answer(await self.portal.my_store(current_caller().user_id))

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
            visits=[messages.visit_message(visit) for visit in page.visits],
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
        return messages.preview_answer(preview, request.exp)


# The driver and the key a handler hands in (exclusives.py)

IDEMPOTENCY_HEADER = "x-idempotency-key"


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
