"""The SessionsService servicer.

Its RPCs are specified in proto/nerava/sessions/v1/sessions.proto.
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import uuid
from collections.abc import Sequence
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import grpc
from nerava.sessions.v1 import sessions_pb2 as pb
from nerava.sessions.v1 import sessions_pb2_grpc
from sqlalchemy.ext.asyncio import AsyncEngine

from services.common import audit
from services.common.context import current_caller
from services.common.errors import InvalidArgument, Unavailable
from services.common.http_body import json_array
from services.common.interceptors import (
    BY_AN_ADMIN,
    OWN_DATA,
    PUBLIC_DATA,
    SIGNED_BY_A_PROVIDER,
    Access,
    Owned,
)
from services.common.outbox import DEAD_LETTER_ACCESS, dead_letter_message, dead_letters, replay_dead_letters
from services.common.paging import MAX_OFFSET, page_position, page_token
from services.sessions import chargers, messages, stats, store
from services.sessions.discovery import (
    Discovery,
    Extras,
)
from services.sessions.driver_sessions import DriverSessions
from services.sessions.ev_codes import EvCodes
from services.sessions.ingestion import Ingestion
from services.sessions.linking import SmartcarLinking, TeslaLinking
from services.sessions.polling import GeofencePings, Poller
from services.sessions.reasons import Reason
from services.sessions.tesla_sign_in import TeslaSignIn

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["SessionsService"].full_name
DRIVER, ADMIN = "driver", "admin"
SPONSOR, ADMIN_READONLY = "sponsor", "admin_readonly"

# A driver's charging session: another driver's is SESSION_NOT_FOUND (an admin reads every one).
CHARGING_SESSION = Owned("charging session", "session_id", frozenset({DRIVER}), "SESSION_NOT_FOUND")
# Linking a car: the driver comes from the token, the state and tokens are the driver's own.
_LINKING = Access.role(DRIVER).not_owned(OWN_DATA)

ACCESS: dict[str, Access] = {
    "ListAuditEntries": Access.service_only(),
    **DEAD_LETTER_ACCESS,
    "PollChargingState": Access.role(DRIVER).not_owned(OWN_DATA),
    "GetActiveSession": Access.role(DRIVER).not_owned(OWN_DATA),
    "ListChargingSessions": Access.role(DRIVER).not_owned(OWN_DATA),
    "GetChargingSession": Access.role(DRIVER, ADMIN).owned(CHARGING_SESSION),
    "EndChargingSession": Access.role(DRIVER).owned(CHARGING_SESSION),
    # Signed by the vehicle providers (HMAC of the body), not by our tokens; the service checks the signature.
    "IngestTelemetry": Access.anyone().not_owned(SIGNED_BY_A_PROVIDER),
    "HandleSmartcarWebhook": Access.anyone().not_owned(SIGNED_BY_A_PROVIDER),
    "ConnectTesla": _LINKING,
    # Tesla's redirect carries no token: the single-use state binds it to the driver who started it.
    "HandleTeslaCallback": Access.anyone().not_owned(SIGNED_BY_A_PROVIDER),
    # Accounts' Tesla sign-in: the state is bound to no driver yet; the service asks on the signing-in person's behalf.
    "StartTeslaSignIn": Access.service_only(),
    "CompleteTeslaSignIn": Access.service_only(),
    "GetTeslaStatus": _LINKING,
    "DisconnectTesla": _LINKING,
    # The vehicle is looked up among the caller's own linked account's vehicles only.
    "SelectVehicle": _LINKING,
    "ConfigureTelemetry": _LINKING,
    "ConnectSmartcar": _LINKING,
    # Smartcar Connect's redirect carries no token either: the single-use state binds it to the driver.
    "HandleSmartcarCallback": Access.anyone().not_owned(SIGNED_BY_A_PROVIDER),
    "GetSmartcarStatus": _LINKING,
    "DisconnectSmartcar": _LINKING,
    # The charger and merchant it names are the public catalog's; the result is the caller's.
    "VerifyCharging": Access.role(DRIVER).not_owned(OWN_DATA),
    "ListEvCodes": Access.role(DRIVER).not_owned(OWN_DATA),
    "SearchChargers": Access.anyone().not_owned(PUBLIC_DATA),
    "GetCharger": Access.anyone().not_owned(PUBLIC_DATA),
    "CheckLocation": Access.role(DRIVER).not_owned(OWN_DATA),
    "ImportChargers": Access.role(ADMIN).not_owned(BY_AN_ADMIN),
    # The home map is public; a signed-in driver also gets an intent session.
    "CaptureIntent": Access.anyone().not_owned(PUBLIC_DATA),
    "GetIntentSession": Access.service_only(),
    "GetAccountStats": Access.role(DRIVER).not_owned(OWN_DATA),
    "BackgroundPing": Access.role(DRIVER).not_owned(OWN_DATA),
    # The sponsor console's charger explorer: aggregates of the public catalog, no driver named.
    "BrowseChargers": Access.role(SPONSOR, ADMIN, ADMIN_READONLY).not_owned(PUBLIC_DATA),
    "GetChargerUtilization": Access.role(SPONSOR, ADMIN, ADMIN_READONLY).not_owned(PUBLIC_DATA),
    "SummarizeChargerSessions": Access.service_only(),
}

DEFAULT_SESSION_PAGE = 50
DEFAULT_SEARCH_RADIUS_M = 25_000
MIN_SEARCH_RADIUS_M = 100
DEFAULT_SEARCH_PAGE = 20
AT_CHARGER_RADIUS_M = 150  # CheckLocation: "at a charger" (the original CHARGER_RADIUS_M)
NEAREST_WITHIN_M = 25_000  # CheckLocation names the nearest charger up to this far
DEFAULT_BROWSE_PAGE = 500  # the console's charger explorer, as the original paged it
CONSOLE_STATS_WINDOW = datetime.timedelta(days=30)
MAX_UTILIZATION_CHARGERS = 500


def _search_fingerprint(request: pb.SearchChargersRequest) -> str:
    """What a page token is bound to: a token is only valid for the query that produced it (AIP-158)."""
    near = f"{request.lat!r},{request.lng!r}" if request.HasField("lat") else ""
    key = f"{request.q}\x00{near}\x00{request.radius_m}"
    return hashlib.sha256(key.encode()).hexdigest()[:12]


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


@dataclasses.dataclass(frozen=True)
class Cores:
    """What the servicer calls, built by __main__.py. Smartcar is the one optional provider: without its
    credentials its RPCs answer PROVIDER_NOT_CONFIGURED."""

    engine: AsyncEngine  # the audited import, the outbox's dead letters, the audit log
    reads: AsyncEngine  # single-statement reads (CheckLocation: one per radius step)
    sessions: DriverSessions
    poller: Poller
    geofence: GeofencePings
    ingestion: Ingestion
    search: chargers.ChargerSearch
    discovery: Discovery
    account_cards: stats.AccountCards
    tesla: TeslaLinking
    tesla_sign_in: TeslaSignIn
    ev_codes: EvCodes
    smartcar: SmartcarLinking | None = None


class SessionsApi(sessions_pb2_grpc.SessionsServiceServicer):
    def __init__(self, cores: Cores) -> None:
        self._engine = cores.engine
        self._reads = cores.reads
        self._sessions = cores.sessions
        self._poller = cores.poller
        self._geofence = cores.geofence
        self._ingestion = cores.ingestion
        self._search = cores.search
        self._discovery = cores.discovery
        self._account_cards = cores.account_cards
        self._tesla = cores.tesla
        self._tesla_sign_in = cores.tesla_sign_in
        self._ev_codes = cores.ev_codes
        self._smartcar_linking = cores.smartcar

    # --- chargers catalog ----------------------------------------------------------------------------------

    async def SearchChargers(
        self, request: pb.SearchChargersRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.SearchChargersResponse:
        near = (request.lat, request.lng) if request.HasField("lat") else None
        if near is None and not request.q.strip():
            raise InvalidArgument([("q", "give a text query, a point (lat and lng), or both")])
        if 0 < request.radius_m < MIN_SEARCH_RADIUS_M:
            raise InvalidArgument(
                [("radius_m", f"must be 0 (meaning {DEFAULT_SEARCH_RADIUS_M}) or {MIN_SEARCH_RADIUS_M} to 100000")]
            )
        fingerprint = _search_fingerprint(request)
        offset = page_position(request.page_token, fingerprint, maximum=MAX_OFFSET) or 0
        size = request.page_size or DEFAULT_SEARCH_PAGE
        found = await self._search.search(
            request.q, near, radius_m=request.radius_m or DEFAULT_SEARCH_RADIUS_M, limit=size + 1, offset=offset
        )
        more = len(found.chargers) > size
        page = found.chargers[:size]
        extras = await self._extras(page)
        place = found.place
        return pb.SearchChargersResponse(
            chargers=[self._discovery.list_item(row, extras.by_charger.get(row.id)) for row in page],
            location=pb.SearchLocation(lat=place.lat, lng=place.lng, name=place.name) if place else None,
            next_page_token=page_token(offset + size, fingerprint) if more else "",
        )

    async def _extras(self, rows: Sequence[chargers.ChargerRow]) -> Extras:
        """Rewards and merchant perks for a user's list or sheet. Services calling the catalog (merchants linking
        a charger, incentives judging a rule) get the record alone: they own those values, and asking them back
        would call in a circle."""
        if current_caller().is_service:
            return Extras({}, True)
        return await self._discovery.extras(rows)

    async def BrowseChargers(
        self, request: pb.BrowseChargersRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.BrowseChargersResponse:
        page, total = await chargers.browse(
            self._reads,
            search=request.search,
            network=request.network,
            state=request.state,
            limit=request.limit or DEFAULT_BROWSE_PAGE,
            offset=request.offset,
            since=_now() - CONSOLE_STATS_WINDOW,
        )
        return pb.BrowseChargersResponse(
            chargers=[messages.browsed_charger_message(item) for item in page], total=total
        )

    async def GetChargerUtilization(
        self, request: pb.GetChargerUtilizationRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.GetChargerUtilizationResponse:
        ids = list(dict.fromkeys(part.strip() for part in request.charger_ids.split(",") if part.strip()))
        if len(ids) > MAX_UTILIZATION_CHARGERS:
            raise InvalidArgument([("charger_ids", f"at most {MAX_UTILIZATION_CHARGERS} chargers at once")])
        days = datetime.timedelta(days=request.since_days) if request.since_days else CONSOLE_STATS_WINDOW
        use = await chargers.utilization(self._reads, ids, _now() - days)
        return pb.GetChargerUtilizationResponse(
            chargers=[
                messages.utilization_message(charger_id, use.get(charger_id, chargers.Utilization()))
                for charger_id in ids
            ]
        )

    async def SummarizeChargerSessions(
        self, request: pb.SummarizeChargerSessionsRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.SummarizeChargerSessionsResponse:
        zone = request.time_zone or "UTC"
        try:
            ZoneInfo(zone)
        except (ZoneInfoNotFoundError, ValueError):
            raise InvalidArgument([("time_zone", f"{zone!r} is not an IANA time zone")]) from None
        summary = await chargers.summarize_sessions(
            self._reads, list(request.charger_ids), request.since.ToDatetime(tzinfo=datetime.UTC), zone
        )
        reply = pb.SummarizeChargerSessionsResponse(
            total_sessions=summary.total_sessions,
            unique_drivers=summary.unique_drivers,
            hours=[pb.HourSessions(hour=hour, sessions=count) for hour, count in summary.hours],
        )
        if summary.avg_duration_min is not None:
            reply.avg_duration_minutes = summary.avg_duration_min
        if summary.avg_kwh is not None:
            reply.avg_kwh = summary.avg_kwh
        return reply

    async def GetCharger(
        self, request: pb.GetChargerRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.GetChargerResponse:
        near = (request.lat, request.lng) if request.HasField("lat") else None
        detail = await chargers.charger_detail(self._reads, request.charger_id, _now(), near)
        extras = (await self._extras([detail.charger])).by_charger.get(detail.charger.id)
        return messages.charger_detail_message(detail, extras)

    # --- the home map and the account card -----------------------------------------------------------------

    async def CaptureIntent(
        self, request: pb.CaptureIntentRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.CaptureIntentResponse:
        caller = current_caller()
        driver = caller.user_id if caller.user_id is not None and caller.has_any({DRIVER}) else None
        return await self._discovery.capture(
            request.lat, request.lng, request.accuracy_m if request.HasField("accuracy_m") else None, driver
        )

    async def GetIntentSession(
        self, request: pb.GetIntentSessionRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.GetIntentSessionResponse:
        return await self._discovery.intent_session(request.session_id)

    async def GetAccountStats(
        self, request: pb.GetAccountStatsRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.GetAccountStatsResponse:
        card = await self._account_cards.card(_driver(), _now())
        reply = pb.GetAccountStatsResponse(
            total_sessions=card.totals.sessions,
            total_kwh=card.totals.kwh,
            total_earned_cents=card.total_earned_cents,
            total_nova=card.nova_balance,
            current_streak=card.totals.streak_days,
            co2_avoided_kg=card.co2_avoided_kg,
        )
        if card.totals.favorite_charger is not None:
            charger_id, name, sessions = card.totals.favorite_charger
            reply.favorite_charger.CopyFrom(pb.FavoriteCharger(charger_id=charger_id, name=name, sessions=sessions))
        if card.totals.first_start is not None:
            reply.member_since.FromDatetime(card.totals.first_start)
        return reply

    async def BackgroundPing(
        self, request: pb.BackgroundPingRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.BackgroundPingResponse:
        ping = await self._geofence.ping(_driver(), request.lat, request.lng)
        return pb.BackgroundPingResponse(
            matched=ping.matched,
            session_active=ping.session_active,
            session_id=ping.session_id,
            already_active=ping.already_active,
            charger_id=None if ping.charger is None else ping.charger.id,
            charger_name=None if ping.charger is None else ping.charger.name,
            reason=ping.poll_error,
        )

    async def CheckLocation(
        self, request: pb.CheckLocationRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.CheckLocationResponse:
        nearest = await chargers.nearest_charger(self._reads, request.lat, request.lng, within_m=NEAREST_WITHIN_M)
        reply = pb.CheckLocationResponse(radius_m=AT_CHARGER_RADIUS_M)
        if nearest is not None and nearest.distance_m is not None:
            reply.in_charger_radius = nearest.distance_m <= AT_CHARGER_RADIUS_M
            reply.nearest_charger_id = nearest.id
            reply.nearest_charger_name = nearest.name
            reply.distance_m = round(nearest.distance_m, 1)
        return reply

    async def ImportChargers(
        self, request: pb.ImportChargersRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.ImportChargersResponse:
        if request.source == "manual":
            taken = [
                (
                    f"chargers[{i}].external_id",
                    f"a manual id may not start with {' or '.join(chargers.SOURCE_PREFIXES)}",
                )
                for i, record in enumerate(request.chargers)
                if record.external_id.startswith(chargers.SOURCE_PREFIXES)
            ]
            if taken:
                raise InvalidArgument(taken)
        records = [messages.charger_record(record) for record in request.chargers]
        counts = await chargers.import_audited(self._engine, request.source, records)
        return pb.ImportChargersResponse(created=counts.created, updated=counts.updated, unchanged=counts.unchanged)

    async def ListDeadLetters(self, request: pb.ListDeadLettersRequest, context: Any) -> pb.ListDeadLettersResponse:
        rows = await dead_letters(self._engine, store.outbox, request.limit or 100)
        return pb.ListDeadLettersResponse(dead_letters=[dead_letter_message(row) for row in rows])

    async def ReplayDeadLetters(
        self, request: pb.ReplayDeadLettersRequest, context: Any
    ) -> pb.ReplayDeadLettersResponse:
        replayed = await replay_dead_letters(self._engine, store.outbox, list(request.ids) or None, request.reason)
        return pb.ReplayDeadLettersResponse(replayed=replayed)

    async def ListAuditEntries(
        self, request: pb.ListAuditEntriesRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.ListAuditEntriesResponse:
        return pb.ListAuditEntriesResponse(entries=await audit.list_entries(self._engine, "sessions", request.query))

    # --- charging sessions ---------------------------------------------------------------------------------

    async def PollChargingState(
        self, request: pb.PollChargingStateRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.PollChargingStateResponse:
        return await self._poller.poll(
            _driver(),
            request.lat if request.HasField("lat") else None,
            request.lng if request.HasField("lng") else None,
        )

    # --- linking a Tesla account ---------------------------------------------------------------------------

    async def ConnectTesla(
        self, request: pb.ConnectTeslaRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.ConnectTeslaResponse:
        consent = await self._tesla.connect(_driver())
        return pb.ConnectTeslaResponse(authorization_url=consent.authorization_url, state=consent.state)

    async def HandleTeslaCallback(
        self, request: pb.HandleTeslaCallbackRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.HandleTeslaCallbackResponse:
        back_to = await self._tesla.callback(request.state, request.code, request.error)
        return pb.HandleTeslaCallbackResponse(http_body=messages.browser_page(back_to))

    async def StartTeslaSignIn(
        self, request: pb.StartTeslaSignInRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.StartTeslaSignInResponse:
        consent = await self._tesla_sign_in.start()
        return pb.StartTeslaSignInResponse(authorization_url=consent.authorization_url, state=consent.state)

    async def CompleteTeslaSignIn(
        self, request: pb.CompleteTeslaSignInRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.CompleteTeslaSignInResponse:
        signed_in = await self._tesla_sign_in.complete(request.code, request.state)
        return pb.CompleteTeslaSignInResponse(
            driver_id=signed_in.driver_id, vehicles=[messages.vehicle_message(v) for v in signed_in.vehicles]
        )

    async def GetTeslaStatus(
        self, request: pb.GetTeslaStatusRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.GetTeslaStatusResponse:
        return messages.tesla_status_message(await self._tesla.status(_driver()))

    async def SelectVehicle(
        self, request: pb.SelectVehicleRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.SelectVehicleResponse:
        vehicle = await self._tesla.select_vehicle(_driver(), request.vehicle_id)
        return pb.SelectVehicleResponse(success=True, vehicle=messages.vehicle_message(vehicle))

    async def DisconnectTesla(
        self, request: pb.DisconnectTeslaRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.DisconnectTeslaResponse:
        await self._tesla.disconnect(_driver())
        return pb.DisconnectTeslaResponse(disconnected=True)

    async def ConfigureTelemetry(
        self, request: pb.ConfigureTelemetryRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.ConfigureTelemetryResponse:
        configured = await self._tesla.configure_telemetry(_driver())
        return pb.ConfigureTelemetryResponse(telemetry_enabled=configured.telemetry_enabled, vin=configured.vin)

    # --- linking a car through Smartcar --------------------------------------------------------------------

    def _smartcar(self) -> SmartcarLinking:
        if self._smartcar_linking is None:
            raise Unavailable(Reason.PROVIDER_NOT_CONFIGURED, "Smartcar is not configured")
        return self._smartcar_linking

    async def ConnectSmartcar(
        self, request: pb.ConnectSmartcarRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.ConnectSmartcarResponse:
        consent = await self._smartcar().connect(_driver())
        return pb.ConnectSmartcarResponse(authorization_url=consent.authorization_url, state=consent.state)

    async def HandleSmartcarCallback(
        self, request: pb.HandleSmartcarCallbackRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.HandleSmartcarCallbackResponse:
        back_to = await self._smartcar().callback(request.state, request.code, request.error)
        return pb.HandleSmartcarCallbackResponse(http_body=messages.browser_page(back_to))

    async def GetSmartcarStatus(
        self, request: pb.GetSmartcarStatusRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.GetSmartcarStatusResponse:
        status = await self._smartcar().status(_driver())
        return pb.GetSmartcarStatusResponse(
            connected=status.connected,
            needs_reconnect=status.needs_reconnect,
            vehicle_id=status.vehicle_id,
            vehicle_ids=status.vehicle_ids,
        )

    async def DisconnectSmartcar(
        self, request: pb.DisconnectSmartcarRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.DisconnectSmartcarResponse:
        await self._smartcar().disconnect(_driver())
        return pb.DisconnectSmartcarResponse(disconnected=True)

    async def HandleSmartcarWebhook(
        self, request: pb.HandleSmartcarWebhookRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.HandleSmartcarWebhookResponse:
        ingested = await self._ingestion.smartcar_webhook(
            request.http_body.data, _header(context, "sc-signature"), _now()
        )
        return pb.HandleSmartcarWebhookResponse(
            challenge=ingested.challenge,
            action=messages.INGEST_ACTIONS[ingested.action],
            session_id=ingested.session_id,
        )

    # --- EV verification codes ----------------------------------------------------------------------------

    async def VerifyCharging(
        self, request: pb.VerifyChargingRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.VerifyChargingResponse:
        verification = await self._ev_codes.verify(
            _driver(),
            merchant_place_id=request.merchant_place_id,
            merchant_name=request.merchant_name,
            near=(request.lat, request.lng) if request.HasField("lat") else None,
        )
        return messages.verification_message(verification)

    async def ListEvCodes(
        self, request: pb.ListEvCodesRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.ListEvCodesResponse:
        codes = [messages.ev_code_message(code) for code in await self._ev_codes.list(_driver())]
        return pb.ListEvCodesResponse(codes=codes, json_array=json_array(codes))

    async def GetActiveSession(
        self, request: pb.GetActiveSessionRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.GetActiveSessionResponse:
        now = _now()
        active, last_ended = await self._sessions.active_or_last_ended(_driver(), now)
        if active is not None:
            return pb.GetActiveSessionResponse(session=messages.session_message(active, now), active=True)
        if last_ended is None:
            return pb.GetActiveSessionResponse(active=False)
        return pb.GetActiveSessionResponse(active=False, last_ended_session=messages.session_message(last_ended, now))

    async def ListChargingSessions(
        self, request: pb.ListChargingSessionsRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.ListChargingSessionsResponse:
        driver_id = _driver()
        size = request.page_size or request.limit or DEFAULT_SESSION_PAGE
        fingerprint = hashlib.sha256(driver_id.encode()).hexdigest()[:12]
        offset = page_position(request.page_token, fingerprint, maximum=MAX_OFFSET) or request.offset
        views, more = await self._sessions.page(driver_id, offset=offset, size=size)
        now = _now()
        return pb.ListChargingSessionsResponse(
            sessions=[messages.session_message(view, now) for view in views],
            count=len(views),
            next_page_token=page_token(offset + size, fingerprint) if more else "",
        )

    async def GetChargingSession(
        self, request: pb.GetChargingSessionRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.GetChargingSessionResponse:
        caller = current_caller()
        view = await self._sessions.get(uuid.UUID(request.session_id), caller.user_id, is_admin=ADMIN in caller.roles)
        return pb.GetChargingSessionResponse(session=messages.session_message(view, _now()))

    async def EndChargingSession(
        self, request: pb.EndChargingSessionRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.EndChargingSessionResponse:
        view, already_ended = await self._sessions.end_by_hand(uuid.UUID(request.session_id), _driver())
        return pb.EndChargingSessionResponse(
            session=messages.session_message(view, _now()), ended=True, already_ended=already_ended
        )

    # --- pushed telemetry ----------------------------------------------------------------------------------

    async def IngestTelemetry(
        self, request: pb.IngestTelemetryRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.IngestTelemetryResponse:
        ingested = await self._ingestion.telemetry(
            request.http_body.data, _header(context, "x-telemetry-signature") or "", _now()
        )
        return pb.IngestTelemetryResponse(
            action=messages.INGEST_ACTIONS[ingested.action], session_id=ingested.session_id
        )


def _header(context: grpc.aio.ServicerContext[Any, Any], name: str) -> str | None:
    """A text header of the request (a provider's signature; the last one if repeated), None when absent."""
    found = None
    for key, value in context.invocation_metadata() or ():
        if key == name and isinstance(value, str):
            found = value
    return found


def _driver() -> str:
    caller = current_caller()
    assert caller.user_id is not None
    return caller.user_id
