"""`make run` as a newcomer uses it: it prints `ready` on a console a person can read (each process's log in
.run/logs), serves REST, traces every request from Envoy through the services, and SIGTERM leaves nothing
running."""

from __future__ import annotations

import asyncio
import datetime
import os
import pathlib
import signal
import sys
import uuid
from typing import Any

import grpc
import httpx
import psutil
from google.protobuf import timestamp_pb2
from nerava.incentives.v1 import incentives_pb2, incentives_pb2_grpc

from nerava_client.traces import Span, TraceStore
from services.common.auth import SERVICE_TOKEN_HEADER, ServiceTokens
from services.common.config import SERVICE_NAMES, Secret
from tests.support.eventually import eventually
from tools import demo_world, run, seed
from tools.embedded import free_port

ROOT = pathlib.Path(__file__).resolve().parent.parent


async def evaluate_demo_session(port: int, driver_id: str) -> incentives_pb2.EvaluateSessionResponse:
    """What the sessions service sends when a 40-minute session at a demo charger ends."""
    charger, lat, lng = demo_world.DEMO_CHARGERS[0]
    end = datetime.datetime.now(datetime.UTC)
    start, stop = timestamp_pb2.Timestamp(), timestamp_pb2.Timestamp()
    start.FromDatetime(end - datetime.timedelta(minutes=40))
    stop.FromDatetime(end)
    session = incentives_pb2.EndedSession(
        session_id=str(uuid.uuid4()),
        end_sequence=1,
        driver_id=driver_id,
        charger_id=charger,
        lat=lat,
        lng=lng,
        session_start=start,
        session_end=stop,
        duration_minutes=40,
        quality_score=90,
        driver_completed_sessions=1,
    )
    # make run's services share the service-token secret it generated for this checkout under .run/.
    tokens = ServiceTokens(Secret(run.deployment_secrets()["SERVICE_TOKEN_SECRET"]), "sessions")
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = incentives_pb2_grpc.IncentivesServiceStub(channel)
        return await stub.EvaluateSession(
            incentives_pb2.EvaluateSessionRequest(session=session), metadata=((SERVICE_TOKEN_HEADER, tokens.mint()),)
        )


async def one_trace_rooted_at_the_gateway(request_id: str) -> None:
    """The request's spans reach the local trace store: one trace, Envoy's server span its root, the service's
    span below Envoy's upstream span."""
    store = TraceStore(run.TRACES)

    def exported() -> list[Span]:  # Envoy and the services export in batches every few seconds
        spans = store.find(request_id)
        assert any(span.service == "accounts" for span in spans), spans
        return spans

    try:
        spans = await eventually(exported, within=30)
    finally:
        store.close()
    assert len({span.trace_id for span in spans}) == 1, spans
    [root] = [span for span in spans if not span.parent_span_id]
    assert (root.service, root.kind, root.request_id) == ("nerava-gateway", "SERVER", request_id)
    by_id = {span.span_id: span for span in spans}
    [handler] = [span for span in spans if span.service == "accounts" and span.kind == "SERVER"]
    assert handler.name.endswith("/StartPhoneLogin")
    upstream = by_id[handler.parent_span_id]
    assert (upstream.service, upstream.kind, upstream.parent_span_id) == ("nerava-gateway", "CLIENT", root.span_id)


async def test_run_prints_ready_serves_the_dev_login_and_stops_cleanly(
    database_url: str, redis_url: str, tmp_path: pathlib.Path
) -> None:
    ports = {f"{name.upper()}_PORT": str(free_port()) for name in SERVICE_NAMES}
    rest_port = free_port()
    env = {
        **os.environ,
        **ports,
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "GATEWAY_PORT": str(rest_port),
        "GATEWAY_ADMIN_PORT": str(free_port()),
        "PYTHONPATH": f"{ROOT}:{ROOT / 'gen'}",
        # The session mesh already created the signing key in this database, encrypted with its passphrase.
        "ACCOUNTS_SIGNING_KEY_PASSPHRASE": "test-passphrase",
        # Every test signs in from 127.0.0.1 and this make run shares their Redis: its per-address count of code
        # requests already holds the whole suite's (the per-phone limits still apply).
        "OTP_STARTS_PER_IP": "100000",
    }
    stderr_file = (tmp_path / "stderr.log").open("wb")  # the child writes to its own copy of the descriptor
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tools.run",
        cwd=ROOT,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=stderr_file,
    )
    stderr_file.close()
    assert process.stdout is not None
    console: list[str] = []
    try:
        while True:
            line = (await asyncio.wait_for(process.stdout.readline(), timeout=90)).decode()
            assert line, "make run exited before it was ready: " + (tmp_path / "stderr.log").read_text()[-3000:]
            console.append(line)
            if "ready" in line:
                break
        # The console names each process as it serves; the processes' own output is in their log files.
        assert not [line for line in console if line.startswith("{")], console
        for name in SERVICE_NAMES:
            assert any(f"{name} serving on 127.0.0.1:{ports[f'{name.upper()}_PORT']}" in line for line in console)
            assert '"message"' in (run.LOGS / f"{name}.log").read_text()
        assert "/v1/" in (run.LOGS / "envoy.log").read_text()  # the access log
        children = psutil.Process(process.pid).children(recursive=True)
        assert len(children) >= len(SERVICE_NAMES) + 1  # five services and Envoy
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{rest_port}", timeout=10) as client:
            request_id = f"make-run-{uuid.uuid4()}"
            started = await client.post(
                "/v1/auth/otp/start", json={"phone": "+15125550100"}, headers={"x-request-id": request_id}
            )
            assert started.json() == {"otp_sent": True}
            await one_trace_rooted_at_the_gateway(request_id)
            verified = await client.post("/v1/auth/otp/verify", json={"phone": "+15125550100", "code": "000000"})
            assert verified.status_code == 200, verified.text
            wrong = await client.post("/v1/auth/otp/verify", json={"phone": "+15125550101", "code": "123456"})
            assert wrong.status_code == 401  # the development stub accepts 000000 and nothing else
            # Google sign-in against the local fake Google: the console line says how to get an ID token from it.
            [mint] = [line for line in console if "fakes.identity_providers mint" in line]
            google, audience = mint.split("--url ")[1].split()[0], mint.split("--audience ")[1].split()[0]
            minted = await client.post(f"{google}/_fake/id-tokens", json={"audience": audience, "email": "g@x.test"})
            signed_in = await client.post("/v1/auth/google", json={"id_token": minted.json()["id_token"]})
            assert signed_in.status_code == 200, signed_in.text
            assert signed_in.json()["user"]["email"] == "g@x.test"
            # Payout onboarding goes to the local fake Stripe, which completes onboarding by itself.
            auth = {"Authorization": f"Bearer {verified.json()['access_token']}"}
            account = await client.post("/v1/wallet/stripe/account", json={}, headers=auth)
            assert account.status_code == 200, account.text
            status = await client.get("/v1/wallet/stripe/status", headers=auth)
            assert status.json()["onboarding_complete"] is True
            # The demo world: two funded, active campaigns around the demo chargers, paying cash and Nova.
            sponsor = await client.post("/v1/auth/otp/verify", json={"phone": "+15125550101", "code": "000000"})
            sponsor_auth = {"Authorization": f"Bearer {sponsor.json()['access_token']}"}
            campaigns = (await client.get("/v1/campaigns", headers=sponsor_auth)).json()["campaigns"]
            assert sorted((c["reward_kind"], c["status"], c["funding_status"]) for c in campaigns) == [
                ("REWARD_KIND_CASH", "CAMPAIGN_STATUS_ACTIVE", "FUNDING_STATUS_FUNDED"),
                ("REWARD_KIND_NOVA", "CAMPAIGN_STATUS_ACTIVE", "FUNDING_STATUS_FUNDED"),
            ]
            # The demo driver's car (the fake fleet) plugs in at a demo charger by itself: its signed Smartcar
            # webhook opens a session, with nobody polling.
            driver_auth = {"Authorization": f"Bearer {verified.json()['access_token']}"}

            async def charging() -> Any:
                active = (await client.get("/v1/charging-sessions/active", headers=driver_auth)).json()
                assert active.get("active"), active
                return active

            active = await eventually(charging, within=10, interval=0.1)
            assert active["session"]["charger_id"] == demo_world.DEMO_CHARGERS[0][0], active
            # The app's poll reads the same car through Smartcar (the demo link's tokens work at the fake).
            polled = (await client.post("/v1/charging-sessions/poll", json={}, headers=driver_auth)).json()
            assert "error" not in polled and polled["session_active"] is True, polled
            # The demo merchants beside the demo chargers answer their README QR tokens.
            for merchant_id, name, *_, token, _perk, _offer in seed.DEMO_MERCHANTS:
                scanned = await client.get(f"/v1/checkout/qr/{token}", headers=driver_auth)
                assert scanned.status_code == 200, scanned.text
                assert (scanned.json()["merchant"]["id"], scanned.json()["merchant"]["name"]) == (merchant_id, name)
            nearby = await client.get(
                "/v1/drivers/merchants/open", params={"charger_id": demo_world.DEMO_CHARGERS[0][0]}
            )
            assert [m["merchant_id"] for m in nearby.json()][:1] == [seed.DEMO_MERCHANTS[0][0]]
        # A simulated charging session at a demo charger earns the demo driver a reward.
        driver_id = verified.json()["user"]["public_id"]
        earned = await evaluate_demo_session(int(ports["INCENTIVES_PORT"]), driver_id)
        assert earned.outcome == incentives_pb2.EVALUATION_OUTCOME_GRANTED, earned
        assert earned.grant.reward_kind == incentives_pb2.REWARD_KIND_CASH
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), timeout=60) == 0
        assert not [child for child in children if child.is_running() and child.status() != psutil.STATUS_ZOMBIE]
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
