"""`make bench-gateway`: the same authenticated read (GetMe) over direct gRPC and through Envoy.

Starts PostgreSQL and Redis (DATABASE_URL / REDIS_URL, else embedded), the accounts service as its own
process and Envoy as another, then drives GetMe with N concurrent closed-loop clients three ways:
direct gRPC to accounts, gRPC through Envoy, and REST/JSON through Envoy (the apps' path: jwt_authn,
transcoding, rate limiting, access log). The headline is REST-through-Envoy throughput over direct gRPC.

The load generator is Python and shares this 2-core machine with the service and Envoy, so absolute
figures are a floor; the ratio compares the three paths under the same conditions.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import pathlib
import platform
import secrets
import signal
import sys
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import asyncpg
import grpc
import httpx
import psutil
import uvloop
from nerava.accounts.v1 import accounts_pb2, accounts_pb2_grpc
from sqlalchemy.engine import make_url

from bench.common import closed_loop, write_results
from bench.http1 import KeepAliveConnection, get_request
from gateway import render
from services.common import migrations
from tools import embedded
from tools.run import wait_http_ok, wait_serving

ROOT = pathlib.Path(__file__).resolve().parent.parent
BIN = pathlib.Path(sys.executable).parent
PHONE = "+15125550199"


async def fresh_database(server_url: str) -> str:
    url = make_url(server_url.replace("postgres://", "postgresql://", 1)).set(drivername="postgresql")
    admin = await asyncpg.connect(url.set(database="postgres").render_as_string(hide_password=False))
    try:
        await admin.execute('DROP DATABASE IF EXISTS "nerava_bench" WITH (FORCE)')
        await admin.execute('CREATE DATABASE "nerava_bench"')
    finally:
        await admin.close()
    return url.set(database="nerava_bench").render_as_string(hide_password=False)


@contextlib.asynccontextmanager
async def started(command: list[str], env: dict[str, str]) -> AsyncIterator[asyncio.subprocess.Process]:
    process = await asyncio.create_subprocess_exec(
        *command, env=env, cwd=ROOT, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL
    )
    try:
        yield process
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(process.wait(), timeout=20)
        except TimeoutError:
            process.kill()


def _cpu_s(process: psutil.Process) -> float:
    times = process.cpu_times()
    return float(times.user + times.system)


async def measured(
    call: Callable[[], Awaitable[None]],
    processes: dict[str, psutil.Process],
    clients: int,
    seconds: float,
    warmup_s: float,
) -> dict[str, Any]:
    """closed_loop, plus the CPU each process spent per request (warm-up included in both counts), which
    shows each hop's cost independently of how the two cores were shared."""
    before = {name: _cpu_s(p) for name, p in processes.items()}
    result = await closed_loop(call, clients, seconds, warmup_s)
    total = result["requests"] * (seconds + warmup_s) / seconds
    result["cpu_us_per_request"] = {
        name: round((_cpu_s(p) - before[name]) / total * 1e6, 1) for name, p in processes.items()
    }
    return result


def median_round(results: list[dict[str, Any]]) -> dict[str, Any]:
    """The round with the median throughput (its latencies and CPU figures come with it)."""
    ordered = sorted(results, key=lambda r: float(r["requests_per_s"]))
    return ordered[len(ordered) // 2]


async def run(clients: int, seconds: float, warmup_s: float, rounds_count: int = 3) -> dict[str, Any]:
    work = pathlib.Path(tempfile.mkdtemp(prefix="bench-gateway-"))
    with embedded.postgres(work / "pg") as pg_url, embedded.redis_server(work / "redis") as redis_url:
        database_url = await fresh_database(pg_url)
        await asyncio.to_thread(migrations.upgrade, "accounts", database_url)
        accounts_port, rest_port, admin_port = embedded.free_port(), embedded.free_port(), embedded.free_port()
        env = {
            **os.environ,
            "DATABASE_URL": database_url,
            "REDIS_URL": redis_url,
            "ACCOUNTS_PORT": str(accounts_port),
            "OTP_PROVIDER": "stub",
            "OTP_STUB_ENABLED": "true",
            # The bench's own accounts: a throwaway service-token secret, development defaults for the rest.
            "NERAVA_DEV_MODE": "true",
            "SERVICE_TOKEN_SECRET": secrets.token_urlsafe(32),
            "LOG_LEVEL": "WARNING",
            # Traces sampled as in production (1 % of new traces; a sampled caller is always followed), not
            # recorded for every request.
            "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
            "OTEL_TRACES_SAMPLER_ARG": "0.01",
            "PYTHONPATH": f"{ROOT}:{ROOT / 'gen'}",
        }
        settings = render.GatewaySettings.local(
            listen_port=rest_port,
            admin_port=admin_port,
            upstreams={name: f"127.0.0.1:{accounts_port}" for name in render.SERVICES},
            # The bench measures the path, not the flood guard.
            default_rate_limit=render.TokenBucket(max_tokens=1_000_000, tokens_per_fill=1_000_000),
        )
        config = work / "envoy.json"
        render.write(settings, config)
        # One Envoy worker: on two cores the other belongs to the service and the load generator.
        envoy_cmd = [
            str(BIN / "envoy"),
            "-c",
            str(config),
            "--concurrency",
            "1",
            "--log-level",
            "error",
            "--base-id",
            str(rest_port),
        ]
        async with (
            started([sys.executable, "-m", "services.accounts"], env) as service,
            started(envoy_cmd, env) as envoy,
        ):
            await wait_serving(f"127.0.0.1:{accounts_port}", asyncio.get_running_loop().time() + 60)
            await asyncio.to_thread(
                wait_http_ok, f"http://127.0.0.1:{admin_port}/ready", asyncio.get_running_loop().time() + 60
            )
            async with (
                grpc.aio.insecure_channel(f"127.0.0.1:{accounts_port}") as direct,
                grpc.aio.insecure_channel(f"127.0.0.1:{rest_port}") as via_envoy,
                httpx.AsyncClient(
                    base_url=f"http://127.0.0.1:{rest_port}",
                    limits=httpx.Limits(max_connections=clients, max_keepalive_connections=clients),
                    timeout=10,
                ) as rest,
            ):
                stub = accounts_pb2_grpc.AccountsServiceStub(direct)
                await stub.StartPhoneLogin(accounts_pb2.StartPhoneLoginRequest(phone=PHONE))
                login = await stub.VerifyPhoneLogin(accounts_pb2.VerifyPhoneLoginRequest(phone=PHONE, code="000000"))
                metadata = (("authorization", f"Bearer {login.access_token}"),)
                headers = {"Authorization": f"Bearer {login.access_token}"}
                envoy_stub = accounts_pb2_grpc.AccountsServiceStub(via_envoy)
                for _ in range(100):  # Envoy fetches the JWKS asynchronously at start
                    if (await rest.get("/v1/auth/me", headers=headers)).status_code == 200:
                        break
                    await asyncio.sleep(0.1)

                async def direct_call() -> None:
                    await stub.GetMe(accounts_pb2.GetMeRequest(), metadata=metadata)

                async def envoy_grpc_call() -> None:
                    await envoy_stub.GetMe(accounts_pb2.GetMeRequest(), metadata=metadata)

                raw_get_me = get_request("/v1/auth/me", headers)
                idle = [KeepAliveConnection("127.0.0.1", rest_port) for _ in range(clients)]

                async def envoy_rest_call() -> None:
                    connection = idle.pop()
                    try:
                        status, _ = await connection.request(raw_get_me)
                    finally:
                        idle.append(connection)
                    if status != 200:
                        raise RuntimeError(f"HTTP {status}")

                processes = {
                    "service": psutil.Process(service.pid),
                    "envoy": psutil.Process(envoy.pid),
                    "load_generator": psutil.Process(),
                }
                calls = {"direct_grpc": direct_call, "envoy_grpc": envoy_grpc_call, "envoy_rest": envoy_rest_call}
                # Interleaved rounds, median per path: on two shared cores one window can be disturbed by
                # anything else running; the same disturbance rarely hits every round of one path.
                rounds: dict[str, list[dict[str, Any]]] = {name: [] for name in calls}
                for _ in range(rounds_count):
                    for name, call in calls.items():
                        rounds[name].append(await measured(call, processes, clients, seconds, warmup_s))
    chosen = {name: median_round(results) for name, results in rounds.items()}
    direct_result, grpc_result, rest_result = chosen["direct_grpc"], chosen["envoy_grpc"], chosen["envoy_rest"]
    ratio_rest = rest_result["requests_per_s"] / direct_result["requests_per_s"]
    ratio_grpc = grpc_result["requests_per_s"] / direct_result["requests_per_s"]
    return {
        "headline": {
            "metric": "envoy_rest_to_direct_grpc_throughput_ratio",
            "value": round(ratio_rest, 3),
            "unit": "",
            "target": 0.8,
        },
        "envoy_grpc_to_direct_grpc_throughput_ratio": round(ratio_grpc, 3),
        "clients": clients,
        "measured_seconds_per_round": seconds,
        "rounds": rounds_count,
        "all_rounds_requests_per_s": {name: [r["requests_per_s"] for r in results] for name, results in rounds.items()},
        "direct_grpc": direct_result,
        "envoy_grpc": grpc_result,
        "envoy_rest": rest_result,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=5.0, help="measured seconds per round and path")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--warmup", type=float, default=1.0)
    args = parser.parse_args()
    results = uvloop.run(run(args.clients, args.seconds, args.warmup, args.rounds))
    path = write_results("gateway", results)
    for path_name in ("direct_grpc", "envoy_grpc", "envoy_rest"):
        r = results[path_name]
        print(
            f"{path_name:12s} {r['requests_per_s']:>9.1f} req/s  "
            f"p50 {r['p50_ms']:>7.2f} ms  p99 {r['p99_ms']:>7.2f} ms  errors {r['errors']}  "
            f"CPU µs/request {r['cpu_us_per_request']}"
        )
    headline = results["headline"]
    print(f"{headline['metric']} = {headline['value']} (target ≥ {headline['target']})  → {path.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
