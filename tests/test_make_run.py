"""`make run` as a newcomer uses it: it prints `ready`, serves REST, and SIGTERM leaves nothing running."""

from __future__ import annotations

import asyncio
import os
import pathlib
import signal
import sys

import httpx
import psutil

from services.common.config import SERVICE_NAMES
from tools.embedded import free_port

ROOT = pathlib.Path(__file__).resolve().parent.parent


async def test_run_prints_ready_serves_the_dev_login_and_stops_cleanly(database_url: str, redis_url: str) -> None:
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
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tools.run",
        cwd=ROOT,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    assert process.stdout is not None
    try:
        while True:
            line = (await asyncio.wait_for(process.stdout.readline(), timeout=90)).decode()
            assert line, "make run exited before it was ready"
            if "ready" in line:
                break
        children = psutil.Process(process.pid).children(recursive=True)
        assert len(children) >= len(SERVICE_NAMES) + 1  # five services and Envoy
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{rest_port}", timeout=10) as client:
            started = await client.post("/v1/auth/otp/start", json={"phone": "+15125550100"})
            assert started.json() == {"otp_sent": True}
            verified = await client.post("/v1/auth/otp/verify", json={"phone": "+15125550100", "code": "000000"})
            assert verified.status_code == 200, verified.text
            wrong = await client.post("/v1/auth/otp/verify", json={"phone": "+15125550101", "code": "123456"})
            assert wrong.status_code == 401  # the development stub accepts 000000 and nothing else
            # Payout onboarding goes to the local fake Stripe, which completes onboarding by itself.
            auth = {"Authorization": f"Bearer {verified.json()['access_token']}"}
            account = await client.post("/v1/wallet/stripe/account", json={}, headers=auth)
            assert account.status_code == 200, account.text
            status = await client.get("/v1/wallet/stripe/status", headers=auth)
            assert status.json()["onboarding_complete"] is True
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), timeout=60) == 0
        assert not [child for child in children if child.is_running() and child.status() != psutil.STATUS_ZOMBIE]
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
