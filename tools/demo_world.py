"""The campaigns of `make run`'s demo world, made the way a sponsor makes them: over REST through the gateway.

The demo sponsor signs in (development code 000000), creates two campaigns around the demo chargers — one
paying cash, one paying Nova — and opens each one's Stripe Checkout. With the local fake Stripe, the demo then
"pays" by visiting the checkout page, which makes the fake send the signed `checkout.session.completed`
webhook: the ledger books the budget and the platform fee, and incentives activates the campaign. Against a
real Stripe the checkout URLs are printed for a person to pay.

Idempotent: a campaign is created once (fixed request ids), and a funded one is left as it is.
"""

from __future__ import annotations

import asyncio
import datetime
import threading
import time
import uuid
from typing import Any

import httpx

SPONSOR_PHONE = "+15125550101"
DEV_CODE = "000000"
_NAMESPACE = uuid.UUID("6f1c1a52-3d0e-4a55-9a38-2b1f0d6f6d01")

# The demo chargers (the sessions service's demo catalog uses the same ids and places).
DEMO_CHARGERS = (
    ("demo-austin-congress", 30.2649, -97.7447),
    ("demo-austin-domain", 30.4021, -97.7253),
    ("demo-austin-airport", 30.2022, -97.6664),
)
AUSTIN_CENTRE = (30.2672, -97.7431)

DEMO_CAMPAIGNS: tuple[dict[str, Any], ...] = (
    {
        "name": "Charge in Austin, earn $1.50",
        "description": "Cash for every charging session of 15 minutes or more within 30 km of downtown Austin.",
        "sponsor_name": "Austin Energy (demo)",
        "sponsor_type": "city",
        "campaign_type": "utilization_boost",
        "priority": 10,
        "reward_kind": "REWARD_KIND_CASH",
        "cost_per_session_cents": 150,
        "budget_cents": 50_000,
        "time_zone": "America/Chicago",
        "rules": {
            "min_duration_minutes": 15,
            "geo_center_lat": AUSTIN_CENTRE[0],
            "geo_center_lng": AUSTIN_CENTRE[1],
            "geo_radius_m": 30_000,
        },
        # The first session of the day earns cash; the next ones earn Nova from the campaign below.
        "caps": {"per_day": 1},
    },
    {
        "name": "200 Nova at the demo chargers",
        "description": "Nova points to spend at nearby merchants, for every session at a demo charger.",
        "sponsor_name": "Nerava (demo)",
        "sponsor_type": "internal",
        "campaign_type": "loyalty",
        "priority": 20,
        "reward_kind": "REWARD_KIND_NOVA",
        "cost_per_session_cents": 200,
        "budget_cents": 100_000,
        "time_zone": "America/Chicago",
        # One minute is enough here, so that the simulated car's short sessions at a demo charger earn Nova.
        "rules": {"min_duration_minutes": 1, "charger_ids": [c[0] for c in DEMO_CHARGERS]},
    },
)


async def _sign_in(http: httpx.AsyncClient, phone: str) -> str:
    (await http.post("/v1/auth/otp/start", json={"phone": phone})).raise_for_status()
    reply = await http.post("/v1/auth/otp/verify", json={"phone": phone, "code": DEV_CODE})
    reply.raise_for_status()
    return str(reply.json()["access_token"])


async def build(rest_base: str, *, pay_with_fake_stripe: bool, timeout_s: float = 30.0) -> list[str]:
    """Creates and funds the demo campaigns; returns one line per campaign for the log."""
    lines = []
    async with httpx.AsyncClient(base_url=rest_base, timeout=10.0) as http:
        token = await _sign_in(http, SPONSOR_PHONE)
        http.headers["Authorization"] = f"Bearer {token}"
        start = (datetime.datetime.now(datetime.UTC) - datetime.timedelta(days=1)).isoformat()
        for spec in DEMO_CAMPAIGNS:
            request_id = str(uuid.uuid5(_NAMESPACE, spec["name"]))
            created = await http.post("/v1/campaigns", json={**spec, "start_date": start, "request_id": request_id})
            created.raise_for_status()
            campaign = created.json()["campaign"]
            if campaign["funding_status"] != "FUNDING_STATUS_FUNDED":
                checkout = await http.post(f"/v1/campaigns/{campaign['id']}/checkout", json={})
                checkout.raise_for_status()
                url = checkout.json()["checkout_url"]
                if pay_with_fake_stripe:
                    # The fake's hosted page: visiting it pays, and the fake sends the signed webhook.
                    async with httpx.AsyncClient(timeout=10.0) as payer:
                        paid = await payer.get(url)  # answers 303 to the console's success page
                        if paid.status_code != httpx.codes.SEE_OTHER:
                            raise RuntimeError(f"the fake Stripe did not take the payment: {paid.status_code}")
                else:
                    lines.append(f"campaign {campaign['name']!r} waits for its payment: {url}")
                    continue
            campaign = await _wait_active(http, campaign["id"], timeout_s)
            lines.append(
                f"campaign {campaign['name']!r}: {campaign['status']}, {campaign['cost_per_session_cents']} "
                f"{'cents' if campaign['reward_kind'] == 'REWARD_KIND_CASH' else 'Nova'} per session"
            )
    return lines


async def _wait_active(http: httpx.AsyncClient, campaign_id: str, timeout_s: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while True:
        reply = await http.get(f"/v1/campaigns/{campaign_id}")
        reply.raise_for_status()
        campaign: dict[str, Any] = reply.json()["campaign"]
        if campaign["status"] != "CAMPAIGN_STATUS_DRAFT" or time.monotonic() > deadline:
            return campaign
        await asyncio.sleep(0.2)


PLUGGED_S = 150.0  # each simulated session lasts about two and a half minutes …
UNPLUGGED_S = 60.0  # … then the car rests a minute


def start_charging_loop(fleet_url: str, vehicle_id: str, stop: threading.Event) -> threading.Thread:
    """The demo driver's car, at the fake fleet, plugs in at the first demo charger, charges, unplugs, rests, and
    again — the fake pushes each change as a signed Smartcar webhook, so sessions open, end and are rewarded
    with nobody polling."""
    charger, lat, lng = DEMO_CHARGERS[0]

    def loop() -> None:
        with httpx.Client(base_url=fleet_url, timeout=5.0) as fleet:
            while not stop.is_set():
                try:
                    fleet.post(
                        f"/_fake/vehicles/{vehicle_id}/plug_in", json={"lat": lat, "lng": lng, "power_kw": 50.0}
                    ).raise_for_status()
                    if stop.wait(PLUGGED_S):
                        return
                    fleet.post(f"/_fake/vehicles/{vehicle_id}/unplug", json={}).raise_for_status()
                    stop.wait(UNPLUGGED_S)
                except httpx.HTTPError as error:
                    print(f"[make run] demo car at {charger}: {error}; trying again", flush=True)
                    stop.wait(5.0)

    thread = threading.Thread(target=loop, name="demo-car", daemon=True)
    thread.start()
    return thread
