"""What an SRE relies on: every service lists itself and Health through reflection (grpcurl), reports
SERVING, refuses anonymous calls, and drains on SIGTERM."""

from __future__ import annotations

import asyncio
import json
import os
import pathlib
import signal
import sys

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from services.common.config import SERVICE_NAMES
from tests.support.eventually import eventually
from tests.support.mesh import Mesh, mesh_env
from tools.embedded import free_port

ROOT = pathlib.Path(__file__).resolve().parent.parent
GRPCURL = pathlib.Path(sys.executable).parent / "grpcurl"


async def _grpcurl(*args: str) -> str:
    process = await asyncio.create_subprocess_exec(
        str(GRPCURL), "-plaintext", *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await process.communicate()
    assert process.returncode == 0, err.decode()
    return out.decode()


@pytest.mark.parametrize("name", SERVICE_NAMES)
async def test_grpcurl_lists_the_service_and_health_and_it_is_serving(mesh: Mesh, name: str) -> None:
    listed = (await _grpcurl(mesh.address(name), "list")).split()
    assert f"nerava.{name}.v1.{name.capitalize()}Service" in listed
    assert "grpc.health.v1.Health" in listed
    check = json.loads(await _grpcurl(mesh.address(name), "grpc.health.v1.Health/Check"))
    assert check == {"status": "SERVING"}
    described = await _grpcurl(mesh.address(name), "describe", f"nerava.{name}.v1.{name.capitalize()}Service")
    assert "rpc " in described


async def test_sigterm_turns_health_not_serving_then_drains_and_exits(database_url: str, redis_url: str) -> None:
    env = mesh_env(database_url, redis_url, {"DRAIN_SECONDS": "1"})
    port = free_port()
    env["LEDGER_PORT"] = str(port)
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "services.ledger",
        env={**os.environ, **env, "PYTHONPATH": f"{ROOT}:{ROOT / 'gen'}"},
        cwd=ROOT,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            health = health_pb2_grpc.HealthStub(channel)

            async def serving() -> None:
                try:
                    reply = await health.Check(health_pb2.HealthCheckRequest(), timeout=1)
                except grpc.aio.AioRpcError as error:
                    raise AssertionError(f"not listening yet: {error.code()}") from error
                assert reply.status == health_pb2.HealthCheckResponse.SERVING

            async def draining() -> None:
                during = await health.Check(health_pb2.HealthCheckRequest(), timeout=1)
                assert during.status == health_pb2.HealthCheckResponse.NOT_SERVING

            await eventually(serving, within=30, interval=0.1)  # a loaded machine starts a process slowly
            process.send_signal(signal.SIGTERM)
            # Between the signal and the end of the grace period, health says NOT_SERVING while calls still work.
            await eventually(draining, within=5)
        assert await asyncio.wait_for(process.wait(), timeout=20) == 0
        assert process.stderr is not None
        lines = [
            json.loads(line) for line in (await process.stderr.read()).decode().splitlines() if line.startswith("{")
        ]
        assert any(entry["message"] == "stopped" and entry["service"] == "ledger" for entry in lines)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
