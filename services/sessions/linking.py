"""Linking a driver's Tesla account: the consent URL with PKCE and a single-use state (10 min), the callback that
exchanges the code and stores the tokens encrypted, the status, the choice of vehicle, and unlinking."""

from __future__ import annotations

import datetime
import html
import json
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

import sqlalchemy as sa
from google.api import httpbody_pb2
from nerava.sessions.v1 import sessions_pb2 as pb
from sqlalchemy.ext.asyncio import AsyncEngine

from services.common.errors import FailedPrecondition, NotFound
from services.sessions import store
from services.sessions.adapters.tesla import TeslaFleetClient
from services.sessions.adapters.vehicles import VehicleApiError
from services.sessions.connections import TESLA, active_connection, save_connection
from services.sessions.tokens import TokenCipher, TokenDecryptionError
from services.sessions.tracking import SessionTracker

STATES = store.oauth_states
V = store.vehicle_connections
STATE_VALIDITY = datetime.timedelta(minutes=10)


def _page(target: str) -> httpbody_pb2.HttpBody:
    """An HTML page that sends the browser on to `target` (transcoding cannot answer a 302)."""
    quoted = html.escape(target, quote=True)
    body = (
        "<!doctype html><html><head><meta charset=utf-8>"
        f'<meta http-equiv="refresh" content="0;url={quoted}">'
        f"<title>Nerava</title></head><body><script>window.location.replace({json.dumps(target)})</script>"
        f'<a href="{quoted}">Continue</a></body></html>'
    )
    return httpbody_pb2.HttpBody(content_type="text/html; charset=utf-8", data=body.encode())


class TeslaLinking:
    def __init__(
        self,
        engine: AsyncEngine,
        tesla: TeslaFleetClient,
        cipher: TokenCipher,
        tracker: SessionTracker,
        *,
        driver_app_url: str,
        clock: Callable[[], datetime.datetime] = lambda: datetime.datetime.now(datetime.UTC),
    ) -> None:
        self._engine = engine
        self._tesla = tesla
        self._cipher = cipher
        self._tracker = tracker
        self._app = driver_app_url.rstrip("/")
        self._clock = clock

    async def connect(self, driver_id: str) -> pb.ConnectTeslaResponse:
        start = self._tesla.start_authorization()
        now = self._clock()
        async with self._engine.begin() as conn:
            await conn.execute(
                sa.insert(STATES).values(
                    state=start.state,
                    driver_id=driver_id,
                    provider=TESLA,
                    code_verifier=self._cipher.encrypt(start.code_verifier, start.state),
                    expires_at=now + STATE_VALIDITY,
                )
            )
        return pb.ConnectTeslaResponse(authorization_url=start.url, state=start.state)

    async def callback(self, request: pb.HandleTeslaCallbackRequest) -> pb.HandleTeslaCallbackResponse:
        """Never an error page: the browser always goes back to the app, with `?success=true` or `?error=…`."""
        now = self._clock()
        async with self._engine.begin() as conn:
            # Single use: whoever marks the state used first owns it; a replayed callback finds it used.
            claimed = (
                await conn.execute(
                    sa.update(STATES)
                    .where(STATES.c.state == request.state, STATES.c.used_at.is_(None), STATES.c.expires_at > now)
                    .values(used_at=now)
                    .returning(STATES.c.driver_id, STATES.c.code_verifier)
                )
            ).first()
        if claimed is None:
            return self._back(error="invalid_state")
        if request.error or not request.code:
            return self._back(error=request.error or "missing_code")
        try:
            verifier = self._cipher.decrypt(claimed.code_verifier, request.state)
            tokens = await self._tesla.exchange_code(request.code, verifier)
            vehicles = await self._tesla.list_vehicles(tokens.access_token)
        except (VehicleApiError, TokenDecryptionError):
            return self._back(error="token_exchange_failed")
        listed: list[dict[str, Any]] = [
            {
                "id": v.id,
                "vin": v.vin,
                "display_name": v.display_name,
                "model": v.model,
                "year": v.year,
                "color": v.color,
            }
            for v in vehicles
        ]
        await save_connection(self._engine, self._cipher, driver_id=claimed.driver_id, tokens=tokens, vehicles=listed)
        return self._back(success=True)

    def _back(self, *, success: bool = False, error: str = "") -> pb.HandleTeslaCallbackResponse:
        query = {"success": "true"} if success else {"error": error}
        return pb.HandleTeslaCallbackResponse(http_body=_page(f"{self._app}/tesla-connected?{urlencode(query)}"))

    async def status(self, driver_id: str) -> pb.GetTeslaStatusResponse:
        async with self._engine.connect() as conn:
            row = (
                (await conn.execute(sa.select(V).where(V.c.driver_id == driver_id, V.c.provider == TESLA, V.c.active)))
                .mappings()
                .first()
            )
            ever = (
                row is not None
                or (
                    await conn.execute(
                        sa.select(sa.func.count()).where(V.c.driver_id == driver_id, V.c.provider == TESLA)
                    )
                ).scalar_one()
                > 0
            )
        if row is None:
            # A connection that died (Tesla refused our refresh token) asks the driver to connect again.
            return pb.GetTeslaStatusResponse(connected=False, needs_reconnect=ever)
        vehicles = [_vehicle(v) for v in row["vehicles"]]
        chosen = next((v for v in vehicles if v.id == row["vehicle_id"]), None)
        reply = pb.GetTeslaStatusResponse(
            connected=True,
            vehicle_id=row["vehicle_id"] or "",
            vin=row["vin"] or "",
            vehicles=vehicles,
            telemetry_enabled=row["telemetry_enabled"],
        )
        if chosen is not None:
            reply.vehicle_name, reply.vehicle_model, reply.exterior_color = (
                chosen.display_name,
                chosen.model,
                chosen.color,
            )
            if chosen.HasField("year"):
                reply.vehicle_year = chosen.year
        return reply

    async def select_vehicle(self, driver_id: str, vehicle_id: str) -> pb.SelectVehicleResponse:
        connection = await active_connection(self._engine, driver_id)
        if connection is None:
            raise FailedPrecondition("NO_VEHICLE_CONNECTION", "no Tesla account is linked; connect first")
        async with self._engine.begin() as conn:
            vehicles = (await conn.execute(sa.select(V.c.vehicles).where(V.c.id == connection.id))).scalar_one()
            match = next((v for v in vehicles if str(v["id"]) == vehicle_id), None)
            if match is None:
                raise NotFound(
                    "VEHICLE_NOT_FOUND", "the vehicle is not on the linked account", {"vehicle_id": vehicle_id}
                )
            await conn.execute(
                sa.update(V).where(V.c.id == connection.id).values(vehicle_id=vehicle_id, vin=match.get("vin"))
            )
        return pb.SelectVehicleResponse(success=True, vehicle=_vehicle(match))

    async def disconnect(self, driver_id: str) -> pb.DisconnectTeslaResponse:
        """Ends an active session (MANUAL) first, then deletes the tokens. Idempotent."""
        s = store.charging_sessions
        async with self._engine.connect() as conn:
            open_ids = (
                (await conn.execute(sa.select(s.c.id).where(s.c.driver_id == driver_id, s.c.session_end.is_(None))))
                .scalars()
                .all()
            )
        for session_id in open_ids:
            await self._tracker.end_by_hand(session_id, driver_id)
        async with self._engine.begin() as conn:
            await conn.execute(sa.delete(V).where(V.c.driver_id == driver_id, V.c.provider == TESLA))
        return pb.DisconnectTeslaResponse(disconnected=True)


def _vehicle(stored: dict[str, Any]) -> pb.TeslaVehicle:
    vehicle = pb.TeslaVehicle(
        id=str(stored["id"]),
        vin=stored.get("vin") or "",
        display_name=stored.get("display_name") or "",
        model=stored.get("model") or "",
        color=stored.get("color") or "",
    )
    if stored.get("year") is not None:
        vehicle.year = int(stored["year"])
    return vehicle
