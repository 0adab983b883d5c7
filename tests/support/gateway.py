"""The real Envoy, rendered from gateway/render.py for the test mesh's ports and run as a subprocess."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import pathlib
import sys
from collections.abc import AsyncIterator
from typing import Any

import httpx

from gateway import redoc, render
from tests.support.eventually import eventually
from tests.support.mesh import Mesh
from tools.embedded import free_port

ENVOY = pathlib.Path(sys.executable).parent / "envoy"


@dataclasses.dataclass
class Gateway:
    base_url: str
    admin_url: str
    settings: render.GatewaySettings
    log: pathlib.Path


@contextlib.asynccontextmanager
async def running_gateway(
    mesh: Mesh, workdir: pathlib.Path, otlp_port: int | None = None, **overrides: Any
) -> AsyncIterator[Gateway]:
    listen, admin = free_port(), free_port()
    redoc.ensure()  # the /docs page's bundle, which `make setup` fetches; Envoy refuses a config naming no file
    settings = render.GatewaySettings.local(
        listen=render.Endpoint("127.0.0.1", listen),
        admin=render.Endpoint("127.0.0.1", admin),
        upstreams={name: render.Endpoint("127.0.0.1", port) for name, port in mesh.ports.items()},
        otlp_collector=render.Endpoint("127.0.0.1", otlp_port) if otlp_port else None,
        **overrides,
    )
    config = workdir / f"envoy-{listen}.json"
    render.write(settings, config)
    log = workdir / f"envoy-{listen}.log"
    with log.open("wb") as log_file:
        process = await asyncio.create_subprocess_exec(
            str(ENVOY),
            "-c",
            str(config),
            "--log-level",
            "warn",
            "--base-id",
            str(listen),
            stdout=log_file,
            stderr=asyncio.subprocess.STDOUT,
        )
    gateway = Gateway(f"http://127.0.0.1:{listen}", f"http://127.0.0.1:{admin}", settings, log)
    try:
        async with httpx.AsyncClient() as client:

            async def ready() -> None:
                if process.returncode is not None:  # not retried: an exited Envoy will not become ready
                    raise RuntimeError(f"envoy exited: {log.read_text()[-3000:]}")
                try:
                    status = (await client.get(f"{gateway.admin_url}/ready")).status_code
                except httpx.HTTPError as error:
                    raise AssertionError(f"envoy not ready: {error!r}") from error
                assert status == 200, f"envoy not ready: {status}"

            async def jwks_fetched() -> None:
                stats = (await client.get(f"{gateway.admin_url}/stats?filter=jwks_fetch_success")).text
                fetched = [line.rpartition(": ")[2] for line in stats.splitlines() if "jwks_fetch_success" in line]
                assert any(value.strip().isdigit() and int(value) > 0 for value in fetched), stats

            await eventually(ready, within=10)
            # jwt_authn fetches the JWKS through the gateway itself, asynchronously: wait until it has it.
            await eventually(jwks_fetched, within=10)
        yield gateway
    finally:
        if process.returncode is None:
            process.terminate()
            try:
                await asyncio.wait_for(process.wait(), timeout=10)
            except TimeoutError:
                process.kill()
                await process.wait()
