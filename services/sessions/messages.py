"""The sessions service's answers: the messages api.py builds from what the cores return, and the contract's
records turned into the cores' plain values. Nothing else: no I/O, no rules. Apart from api.py only because they
are many (a dozen builders, ~250 lines), so that api.py reads as the access table and one short handler per RPC."""

from __future__ import annotations

import datetime
import html
import json

from google.api import httpbody_pb2
from nerava.sessions.v1 import sessions_pb2 as pb

from services.common.interceptors import redirect_browser
from services.common.timestamps import timestamp
from services.sessions import chargers, domain
from services.sessions.discovery import (
    ChargerExtras,
    charger_status,
    dollars_per_kwh,
    nearby_merchants,
    set_catalog_figures,
)
from services.sessions.driver_sessions import SessionView
from services.sessions.ev_codes import EvCode, Verification
from services.sessions.linking import TeslaStatus, Vehicle
from services.sessions.peers import Grant

# What a push did to the vehicle's session, as IngestTelemetry and HandleSmartcarWebhook answer it.
INGEST_ACTIONS = {
    domain.Action.OPEN: pb.INGEST_ACTION_CREATED,
    domain.Action.REOPEN: pb.INGEST_ACTION_UPDATED,
    domain.Action.UPDATE: pb.INGEST_ACTION_UPDATED,
    domain.Action.END: pb.INGEST_ACTION_ENDED,
    domain.Action.NOTHING: pb.INGEST_ACTION_IGNORED,
}


def charger_record(record: pb.ChargerRecord) -> chargers.ChargerRecord:
    return chargers.ChargerRecord(
        external_id=record.external_id,
        name=record.name,
        lat=record.lat,
        lng=record.lng,
        network_name=record.network_name,
        power_kw=record.power_kw if record.HasField("power_kw") else None,
        num_evse=record.num_evse if record.HasField("num_evse") else None,
        connector_types=tuple(record.connector_types),
        pricing_per_kwh_cents=record.pricing_per_kwh_cents if record.HasField("pricing_per_kwh_cents") else None,
        address=record.address,
        city=record.city,
        state=record.state,
        zone_id=record.zone_id,
    )


def session_message(view: SessionView, now: datetime.datetime) -> pb.ChargingSession:
    """A session as the apps read it; an active session's duration is the minutes elapsed so far."""
    row, grant = view.session, view.grant
    ended = row["session_end"] is not None
    message = pb.ChargingSession(
        id=str(row["id"]),
        driver_id=row["driver_id"],
        vehicle_id=row["vehicle_id"],
        source=row["source"],
        session_start=timestamp(row["session_start"]),
        session_end=timestamp(row["session_end"]),
        duration_minutes=row["duration_minutes"] if ended else domain.duration_minutes(row["session_start"], now),
        charger_id=row["charger_id"] or None,
        charger_name=row["charger_name"] or None,
        charger_network=row["charger_network"] or None,
        zone_id=row["zone_id"],
        connector_type=row["connector_type"] or None,
        verified=row["verified"],
        location_trail=[
            pb.LocationPoint(lat=p["lat"], lng=p["lng"], ts=timestamp(datetime.datetime.fromisoformat(p["ts"])))
            for p in row["location_trail"]
        ],
        incentive=None if grant is None else incentive_message(grant),
        last_telemetry_at=timestamp(row["last_telemetry_at"]),
    )
    for field in ("power_kw", "max_power_kw", "kwh_delivered", "lat", "lng", "battery_start_pct", "battery_end_pct"):
        if row[field] is not None:
            setattr(message, field, row[field])
    if ended:
        message.quality_score = row["quality_score"]
        message.ended_reason = row["ended_reason"]
    return message


def browser_page(target: str) -> httpbody_pb2.HttpBody:
    """Sends the browser on to `target`: a 302 through the gateway (redirect_browser), and an HTML page that does
    the same for whoever reads the body (a gRPC caller, or a proxy that drops the status)."""
    redirect_browser(target)
    quoted = html.escape(target, quote=True)
    body = (
        "<!doctype html><html><head><meta charset=utf-8>"
        f'<meta http-equiv="refresh" content="0;url={quoted}">'
        f"<title>Nerava</title></head><body><script>window.location.replace({json.dumps(target)})</script>"
        f'<a href="{quoted}">Continue</a></body></html>'
    )
    return httpbody_pb2.HttpBody(content_type="text/html; charset=utf-8", data=body.encode())


def vehicle_message(vehicle: Vehicle) -> pb.TeslaVehicle:
    return pb.TeslaVehicle(
        id=vehicle.id,
        vin=vehicle.vin,
        display_name=vehicle.display_name,
        model=vehicle.model,
        color=vehicle.color,
        year=vehicle.year,
    )


def tesla_status_message(status: TeslaStatus) -> pb.GetTeslaStatusResponse:
    if not status.connected:
        return pb.GetTeslaStatusResponse(connected=False, needs_reconnect=status.needs_reconnect)
    reply = pb.GetTeslaStatusResponse(
        connected=True,
        vehicle_id=status.vehicle_id,
        vin=status.vin,
        vehicles=[vehicle_message(v) for v in status.vehicles],
        telemetry_enabled=status.telemetry_enabled,
    )
    selected = status.selected
    if selected is not None:
        # The selected car's details repeated at the top (unset where the provider did not say).
        if selected.display_name is not None:
            reply.vehicle_name = selected.display_name
        if selected.model is not None:
            reply.vehicle_model = selected.model
        if selected.color is not None:
            reply.exterior_color = selected.color
        if selected.year is not None:
            reply.vehicle_year = selected.year
    return reply


def verification_message(verification: Verification) -> pb.VerifyChargingResponse:
    if not verification.is_charging:
        reply = pb.VerifyChargingResponse(is_charging=False, message="None of your vehicles is charging right now.")
    else:
        reply = pb.VerifyChargingResponse(
            is_charging=True,
            ev_code=verification.code,
            expires_at=timestamp(verification.expires_at),
            message="Show this code at the merchant.",
        )
    if verification.battery_level is not None:
        reply.battery_level = verification.battery_level
    if verification.charge_rate_kw is not None:
        reply.charge_rate_kw = verification.charge_rate_kw
    return reply


def ev_code_message(code: EvCode) -> pb.EvCode:
    return pb.EvCode(
        code=code.code,
        merchant_name=code.merchant_name,
        merchant_place_id=code.merchant_place_id,
        expires_at=timestamp(code.expires_at),
        status=code.status,
        created_at=timestamp(code.created_at),
    )


def incentive_message(grant: Grant) -> pb.SessionIncentive:
    return pb.SessionIncentive(
        grant_id=grant.grant_id,
        campaign_id=grant.campaign_id,
        campaign_name=grant.campaign_name,
        amount_cents=grant.amount_cents,
        reward_kind=grant.reward_kind,
        status=grant.status,
        granted_at=timestamp(grant.granted_at),
    )


def browsed_charger_message(item: chargers.BrowsedCharger) -> pb.BrowsedCharger:
    row, use = item.charger, item.use
    message = pb.BrowsedCharger(
        id=row.id,
        name=row.name,
        network_name=row.network_name,
        lat=row.lat,
        lng=row.lng,
        address=row.address,
        city=row.city,
        state=row.state,
        connector_types=row.connector_types,
        total_sessions=use.total_sessions,
        unique_drivers=use.unique_drivers,
    )
    set_catalog_figures(message, row)
    return message


def charger_detail_message(detail: chargers.ChargerDetail, extras: ChargerExtras | None) -> pb.GetChargerResponse:
    """The detail sheet; `extras` (rewards, merchants nearby) only for a user, never for a calling service."""
    row, activity = detail.charger, detail.activity
    reply = pb.GetChargerResponse(
        id=row.id,
        name=row.name,
        address=row.address or None,
        city=row.city or None,
        state=row.state or None,
        lat=row.lat,
        lng=row.lng,
        network_name=row.network_name or None,
        connector_types=row.connector_types,
        zone_id=row.zone_id,
    )
    set_catalog_figures(reply, row)
    if row.pricing_per_kwh_cents is not None:
        reply.pricing_per_kwh = dollars_per_kwh(row.pricing_per_kwh_cents)
        reply.pricing_source = "catalog"
    if detail.distance_m is not None and detail.drive_time_min is not None:
        reply.distance_m = detail.distance_m
        reply.drive_time_min = detail.drive_time_min
    reply.total_sessions_30d = activity.ended_sessions
    reply.unique_drivers_30d = activity.unique_drivers
    reply.avg_duration_min = activity.avg_duration_min
    reply.drivers_charging_now = activity.drivers_charging_now
    reply.status = charger_status(row, activity.drivers_charging_now)
    if activity.mean_quality_score is not None:
        reply.nerava_score = activity.mean_quality_score
    if extras is not None:
        if extras.reward is not None:
            reply.active_reward_cents = extras.reward.reward_cents
            reply.active_reward_kind = extras.reward.reward_kind
        reply.nearby_merchants.extend(nearby_merchants(extras))
        if extras.perk_title:
            reply.has_merchant_perk = True
            reply.merchant_perk_title = extras.perk_title
    return reply


def utilization_message(charger_id: str, use: chargers.Utilization) -> pb.ChargerUtilization:
    return pb.ChargerUtilization(
        charger_id=charger_id,
        total_sessions=use.total_sessions,
        unique_drivers=use.unique_drivers,
        avg_duration_minutes=use.avg_duration_min,
    )
