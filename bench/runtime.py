"""`make bench-runtime`: what the shared runtime (services/common: context, auth, validation, metrics, tracing)
costs per call, against a bare grpc.aio server started in the same run, and what Envoy costs per request,
against an Envoy direct response and a plain proxy started in the same run.

Load comes from C generators, so the load costs no Python CPU: h2load (Debian's nghttp2-client) speaks gRPC
over h2c to the servers; wrk speaks HTTP/1.1 to Envoy. For each workload the CPU seconds every process spent
during the run (psutil) are divided by the requests answered, and the services' own counters
(nerava_rpc_requests_total) confirm that every request was answered OK.

Workloads (each `--rounds` times, the median round reported):
- bare_health          h2load → a grpc.aio server with uvloop and only the health service: the floor of any call
- bare_cached_poll     h2load → sessions' own servicer (built by its build_server: the same engine, Redis and
                       cores) on a grpc.aio server with no interceptors, the caller set as the auth interceptor
                       leaves it: the same handler without the runtime
- bare_getme           h2load → the same for accounts' GetMe
- sessions_health      h2load → the sessions service's Health/Check (health passes the interceptors untouched)
- sessions_cached_poll h2load → sessions PollChargingState of a driver inside the poll window (the answer kept in
                       Redis): context, auth, validation, metrics, tracing, one Redis script call
- accounts_getme       h2load → accounts GetMe with a driver's access token (the chain, then one PostgreSQL read)
- accounts_getjwks     h2load → accounts GetJwks with the same token: the whole chain (the token checked too) over
                       an answer held in memory — what the runtime itself costs
- envoy_direct         wrk → Envoy answering by itself (direct_response): Envoy's floor
- envoy_plain_proxy    wrk → Envoy proxying HTTP/1.1 to the bare server's Health/Check (no filters)
- envoy_getme          wrk → GET /v1/auth/me through the real gateway (jwt_authn, transcoding, rate limits, access
                       log) to accounts
- envoy_cached_poll    wrk → POST /v1/charging-sessions/poll through the real gateway to sessions (the cached poll)

Headline: runtime_cpu_ratio_to_bare_grpc = the higher of two ratios, each a service's CPU per call over the CPU
per call of the same handler on a bare grpc.aio server: sessions' cached poll and accounts' GetMe (target 1.5). That
is what the shared runtime (context, auth with the token's signature and revocation checked, validation, metrics,
tracing) adds to a call; what the handler's own I/O costs is in both and is the handler's business. The ratios of
every workload to the health floor are reported beside it (`service_cpu_ratio_to_bare_health`). Tracing is on as
in production (OTLP exporter, 1 % sampled), so the figure includes what sampled-out requests pay for it. Figures
are process CPU time (psutil) per request, so other load on the machine moves them far less than it moves rates.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import gc
import importlib
import json
import os
import pathlib
import platform
import re
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import asyncpg
import grpc
import httpx
import psutil
import redis.asyncio as redis
import uvloop
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from nerava.accounts.v1 import accounts_pb2, accounts_pb2_grpc
from nerava.sessions.v1 import sessions_pb2

from bench.common import write_results
from bench.ledger import embedded_redis, fresh_database, postmaster, progress, self_cpu_s, started, tree_cpu_s
from gateway import render
from services.accounts.config import AccountsSettings
from services.common import migrations
from services.common.config import DEV_MODE_VARIABLE
from services.common.context import Caller, caller_var
from services.sessions.config import SessionsSettings
from tools import embedded
from tools.run import wait_http_ok, wait_serving

ROOT = pathlib.Path(__file__).resolve().parent.parent
BIN = pathlib.Path(sys.executable).parent
SERVICE_TOKEN_SECRET = "bench-runtime-service-token-secret-32b"
# A new driver each run: a shared Redis keeps the per-phone code limit of the runs before.
PHONE = f"+1512555{secrets.randbelow(10_000):04d}"
HEALTH_PATH = "/grpc.health.v1.Health/Check"
GETME_PATH = "/nerava.accounts.v1.AccountsService/GetMe"
JWKS_PATH = "/nerava.accounts.v1.AccountsService/GetJwks"
POLL_PATH = "/nerava.sessions.v1.SessionsService/PollChargingState"
WINDOW_MS = 3_600_000  # the driver's poll window is held for the whole run: every poll is answered from Redis
EMPTY_GRPC_MESSAGE = b"\x00\x00\x00\x00\x00"  # an uncompressed, empty length-prefixed message
TARGET_RATIO = 1.5

CpuReader = Callable[[], float]


# --- the bare floor --------------------------------------------------------------------------------------


async def serve_bare(port: int) -> None:
    """grpc.aio with uvloop and the health service only: what any Python gRPC server costs per call."""
    server = grpc.aio.server()
    servicer = health.aio.HealthServicer()  # type: ignore[attr-defined]  # grpc_health-stubs lacks .aio
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    await server.wait_for_termination()


class _AsCaller:
    """A servicer whose handlers run with the caller already set, as the auth interceptor leaves it once the token
    is checked: the same handler, with no interceptor in front of it."""

    def __init__(self, servicer: object, caller: Caller) -> None:
        self._servicer = servicer
        self._caller = caller

    def __getattr__(self, name: str) -> Any:
        handler = getattr(self._servicer, name)
        caller = self._caller

        async def as_caller(request: Any, context: Any) -> Any:
            caller_var.set(caller)  # each call runs in its own task: this is the call's own context
            return await handler(request, context)

        return as_caller


async def serve_bare_service(service: str, port: int, user_id: str) -> None:
    """The service's own servicer, built by its `build_server` from the same environment (engine, Redis, cores),
    on a grpc.aio server with uvloop and no interceptors; every call is the driver `user_id`'s."""
    main = importlib.import_module(f"services.{service}.__main__")
    settings = AccountsSettings.from_env() if service == "accounts" else SessionsSettings.from_env()
    caller = Caller(user_id=user_id, roles=frozenset({"driver"}))
    async with contextlib.AsyncExitStack() as stack:
        built = await main.build_server(settings, stack)
        server = grpc.aio.server()
        for binding in built.bindings:
            binding.add_to_server(_AsCaller(binding.servicer, caller), server)
        health_pb2_grpc.add_HealthServicer_to_server(health.aio.HealthServicer(), server)  # type: ignore[attr-defined]
        server.add_insecure_port(f"127.0.0.1:{port}")
        await server.start()
        gc.freeze()  # as ServiceServer.start does: the floor gets every advantage the service has
        await server.wait_for_termination()


# --- load generators -------------------------------------------------------------------------------------


def tools_missing() -> list[str]:
    return [tool for tool in ("h2load", "wrk") if shutil.which(tool) is None]


def h2load_command(url: str, clients: int, headers: dict[str, str], body: pathlib.Path) -> list[str]:
    command = ["h2load", "-c", str(clients), "-m", "1", "-d", str(body)]
    for name, value in {"content-type": "application/grpc", "te": "trailers", **headers}.items():
        command += ["-H", f"{name}: {value}"]
    return [*command, url]


def h2load(command: list[str], requests: int) -> tuple[int, float]:
    """`requests` gRPC calls over h2c; the calls answered and the rate. (Counted, not timed: h2load's timing mode
    sends nothing when the request has a body.)"""
    argv = [*command[:-1], "-n", str(requests), command[-1]]
    output = subprocess.run(argv, capture_output=True, text=True, check=False)
    done = re.search(r"requests: \d+ total, \d+ started, \d+ done, (\d+) succeeded, (\d+) failed", output.stdout)
    rate = re.search(r"finished in [0-9.]+m?s, ([0-9.]+) req/s", output.stdout)
    if output.returncode or done is None or rate is None or int(done.group(2)):
        raise RuntimeError(f"h2load said:\n{output.stdout}{output.stderr}")
    return int(done.group(1)), float(rate.group(1))


def sized_h2load(
    url: str, *, seconds: float, clients: int, headers: dict[str, str], body: pathlib.Path
) -> Callable[[], int]:
    """A load of about `seconds`, sized by a short counted run now (not measured)."""
    command = h2load_command(url, clients, headers, body)
    _, rate = h2load(command, max(200, clients * 50))
    requests = max(clients, int(rate * seconds))
    return lambda: h2load(command, requests)[0]


def wrk(url: str, *, seconds: float, clients: int, script: pathlib.Path | None, headers: dict[str, str]) -> int:
    """HTTP/1.1 requests for `seconds` on keep-alive connections; the number of non-error answers."""
    command = ["wrk", "-t", "1", "-c", str(clients), "-d", f"{max(1, round(seconds))}s"]
    for name, value in headers.items():
        command += ["-H", f"{name}: {value}"]
    if script is not None:
        command += ["-s", str(script)]
    output = subprocess.run([*command, url], capture_output=True, text=True, check=True).stdout
    found = re.search(r"(\d+) requests in", output)
    if found is None:
        raise RuntimeError(f"wrk said:\n{output}")
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    if errors:
        raise RuntimeError(f"wrk: {errors.group(1)} error answers:\n{output}")
    return int(found.group(1))


# --- measurement -----------------------------------------------------------------------------------------


async def ok_calls(metrics_url: str, method: str) -> float:
    """nerava_rpc_requests_total{method=…, code="OK"} of a service."""
    async with httpx.AsyncClient() as client:
        text = (await client.get(metrics_url)).text
    if "nerava_rpc_requests_total" not in text:
        raise RuntimeError(f"{metrics_url} has no nerava_rpc_requests_total:\n{text[:2000]}")
    total = 0.0
    for line in text.splitlines():
        labels, _, value = line.rpartition(" ")
        if labels.startswith("nerava_rpc_requests_total{") and f'method="{method}"' in labels and 'code="OK"' in labels:
            total += float(value)
    return total


async def measured(
    run_load: Callable[[], int], cpu: dict[str, CpuReader], check: Callable[[], Any] | None = None
) -> dict[str, Any]:
    before = {name: read() for name, read in cpu.items()}
    checked_before = await check() if check else None
    answered = await asyncio.to_thread(run_load)
    spent = {name: read() - before[name] for name, read in cpu.items()}
    if check is not None:
        confirmed = await check() - checked_before
        # h2load counts an HTTP 200 whatever the grpc-status; the service's own counter says it was OK.
        if confirmed < answered:
            raise RuntimeError(f"{answered} calls answered but only {confirmed:.0f} counted OK by the service")
    return {
        "requests": answered,
        "cpu_us_per_request": {name: round(seconds / answered * 1e6, 1) for name, seconds in spent.items()},
    }


def median_round(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    names = rounds[0]["cpu_us_per_request"]
    return {
        "requests_per_round": [r["requests"] for r in rounds],
        "cpu_us_per_request": {
            name: round(statistics.median(r["cpu_us_per_request"][name] for r in rounds), 1) for name in names
        },
        "rounds": [r["cpu_us_per_request"] for r in rounds],
    }


# --- the processes ---------------------------------------------------------------------------------------


def plain_envoy_config(port: int, bare_port: int) -> dict[str, Any]:
    """Envoy with no filters but the router: a direct response, and a plain proxy to the bare gRPC server."""
    return {
        "static_resources": {
            "listeners": [
                {
                    "name": "plain",
                    "address": {"socket_address": {"address": "127.0.0.1", "port_value": port}},
                    "filter_chains": [
                        {
                            "filters": [
                                {
                                    "name": "envoy.filters.network.http_connection_manager",
                                    "typed_config": {
                                        "@type": "type.googleapis.com/envoy.extensions.filters.network."
                                        "http_connection_manager.v3.HttpConnectionManager",
                                        "stat_prefix": "plain",
                                        "route_config": {
                                            "virtual_hosts": [
                                                {
                                                    "name": "all",
                                                    "domains": ["*"],
                                                    "routes": [
                                                        {
                                                            "match": {"path": "/direct"},
                                                            "direct_response": {
                                                                "status": 200,
                                                                "body": {"inline_string": "ok"},
                                                            },
                                                        },
                                                        {
                                                            "match": {"path": HEALTH_PATH},
                                                            "route": {"cluster": "bare"},
                                                        },
                                                    ],
                                                }
                                            ]
                                        },
                                        "http_filters": [
                                            {
                                                "name": "envoy.filters.http.router",
                                                "typed_config": {
                                                    "@type": "type.googleapis.com/envoy.extensions.filters.http."
                                                    "router.v3.Router"
                                                },
                                            }
                                        ],
                                    },
                                }
                            ]
                        }
                    ],
                }
            ],
            "clusters": [
                {
                    "name": "bare",
                    "type": "STATIC",
                    "typed_extension_protocol_options": {
                        "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                            "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                            "explicit_http_config": {"http2_protocol_options": {}},
                        }
                    },
                    "load_assignment": {
                        "cluster_name": "bare",
                        "endpoints": [
                            {
                                "lb_endpoints": [
                                    {
                                        "endpoint": {
                                            "address": {
                                                "socket_address": {"address": "127.0.0.1", "port_value": bare_port}
                                            }
                                        }
                                    }
                                ]
                            }
                        ],
                    },
                }
            ],
        }
    }


@contextlib.asynccontextmanager
async def envoy(config: dict[str, Any], work: pathlib.Path, name: str) -> AsyncIterator[psutil.Process]:
    path = work / f"{name}.json"
    path.write_text(json.dumps(config))
    binary = shutil.which("envoy", path=str(BIN)) or "envoy"
    base_id = str(os.getpid() % 500 + (1 if name == "gateway" else 501))
    command = [binary, "-c", str(path), "--log-level", "error", "--concurrency", "1", "--base-id", base_id]
    async with started(command, dict(os.environ), work / f"{name}.log") as process:
        yield psutil.Process(process.pid)


async def sign_in(accounts_address: str) -> tuple[str, str]:
    """A driver's access token and public id."""
    async with grpc.aio.insecure_channel(accounts_address) as channel:
        stub = accounts_pb2_grpc.AccountsServiceStub(channel)
        await stub.StartPhoneLogin(accounts_pb2.StartPhoneLoginRequest(phone=PHONE))
        login = await stub.VerifyPhoneLogin(accounts_pb2.VerifyPhoneLoginRequest(phone=PHONE, code="000000"))
        me = await stub.GetMe(
            accounts_pb2.GetMeRequest(), metadata=(("authorization", f"Bearer {login.access_token}"),)
        )
        assert me.user.public_id == login.user.public_id
        return str(login.access_token), str(me.user.public_id)


async def hold_poll_window(redis_url: str, driver_id: str) -> None:
    """The driver's window taken and its answer kept, as the poll's first read of a window leaves them
    (services/sessions/polling.py): every poll of the run is a cached one."""
    client = redis.Redis.from_url(redis_url)
    held_until = int(time.time() * 1000) + WINDOW_MS
    answer = sessions_pb2.PollChargingStateResponse(session_active=True, session_id=str(uuid.uuid4()))
    await client.set(f"poll:read:{driver_id}", held_until, px=WINDOW_MS)
    await client.set(f"poll:answer:{driver_id}", answer.SerializeToString(), px=WINDOW_MS)
    await client.aclose()


async def unary_call(address: str, path: str, token: str) -> bytes:
    """The serialized answer of an empty request to `path` as the driver; raises unless it is OK."""
    async with grpc.aio.insecure_channel(address) as channel:
        call = channel.unary_unary(path, request_serializer=None, response_deserializer=None)
        answer: bytes = await call(b"", metadata=(("authorization", f"Bearer {token}"),))
        return answer


async def health_ok(address: str) -> None:
    async with grpc.aio.insecure_channel(address) as channel:
        answer = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest())
        assert answer.status == health_pb2.HealthCheckResponse.SERVING


async def run(options: argparse.Namespace) -> dict[str, Any]:  # noqa: PLR0915 - one sequence: start, measure
    with contextlib.ExitStack() as stack:
        work = pathlib.Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-runtime-")))
        pg_url = os.environ.get("DATABASE_URL") or stack.enter_context(embedded.postgres(work / "postgres"))
        redis_url = os.environ.get("REDIS_URL") or stack.enter_context(embedded.redis_server(work / "redis"))
        database_url = await fresh_database(pg_url)
        for service in ("accounts", "sessions"):
            await asyncio.to_thread(migrations.upgrade, service, database_url)
        progress("accounts and sessions schemas migrated")
        ports = {name: embedded.free_port() for name in ("bare", "accounts", "sessions", "accounts_metrics")}
        ports |= {name: embedded.free_port() for name in ("sessions_metrics", "gateway", "admin", "plain", "otlp")}
        env = {
            **os.environ,
            "DATABASE_URL": database_url,
            "REDIS_URL": redis_url,
            "SERVICE_TOKEN_SECRET": SERVICE_TOKEN_SECRET,
            # The development defaults of the other secrets (Twilio, Stripe…): this bench calls none of them.
            DEV_MODE_VARIABLE: "true",
            "ACCOUNTS_SIGNING_KEY_PASSPHRASE": "bench-runtime-passphrase",
            "OTP_PROVIDER": "stub",
            "OTP_STUB_ENABLED": "true",
            "LOG_LEVEL": "WARNING",
            # Tracing as in production: an exporter, 1 % of new traces sampled.
            "OTLP_ENDPOINT": f"127.0.0.1:{ports['otlp']}",
            "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
            "OTEL_TRACES_SAMPLER_ARG": "0.01",
            "ACCOUNTS_PORT": str(ports["accounts"]),
            "SESSIONS_PORT": str(ports["sessions"]),
            "ACCOUNTS_ADDR": f"127.0.0.1:{ports['accounts']}",
            "SESSIONS_ADDR": f"127.0.0.1:{ports['sessions']}",
            "ACCOUNTS_METRICS_PORT": str(ports["accounts_metrics"]),
            "SESSIONS_METRICS_PORT": str(ports["sessions_metrics"]),
            "PYTHONPATH": f"{ROOT}:{ROOT / 'gen'}",
        }
        async with contextlib.AsyncExitStack() as processes:
            bare = await processes.enter_async_context(
                started(
                    [sys.executable, "-m", "bench.runtime", "serve-bare", str(ports["bare"])], env, work / "bare.log"
                )
            )
            receiver = [sys.executable, "-m", "tools.trace_receiver", "--port", str(ports["otlp"])]
            await processes.enter_async_context(
                started([*receiver, "--store", str(work / "traces.db")], env, work / "traces.log")
            )
            accounts = await processes.enter_async_context(
                started([sys.executable, "-m", "services.accounts"], env, work / "accounts.log")
            )
            await wait_serving(f"127.0.0.1:{ports['accounts']}", time.monotonic() + 60)
            sessions = await processes.enter_async_context(
                started([sys.executable, "-m", "services.sessions"], env, work / "sessions.log")
            )
            for name in ("bare", "sessions"):
                await wait_serving(f"127.0.0.1:{ports[name]}", time.monotonic() + 60)
                await health_ok(f"127.0.0.1:{ports[name]}")
            token, driver_id = await sign_in(f"127.0.0.1:{ports['accounts']}")
            await hold_poll_window(redis_url, driver_id)
            bare_services = {}
            for service in ("accounts", "sessions"):
                ports[f"bare_{service}"] = embedded.free_port()
                command = [sys.executable, "-m", "bench.runtime", "serve-bare-service", service]
                bare_services[service] = await processes.enter_async_context(
                    started([*command, str(ports[f"bare_{service}"]), driver_id], env, work / f"bare_{service}.log")
                )
                await wait_serving(f"127.0.0.1:{ports[f'bare_{service}']}", time.monotonic() + 60)
            # h2load counts an HTTP 200 whatever the grpc-status, and the bare servers count nothing: each answers
            # as its service does before it is measured.
            for path in (GETME_PATH, POLL_PATH):
                server = "accounts" if path == GETME_PATH else "sessions"
                real = await unary_call(f"127.0.0.1:{ports[server]}", path, token)
                if await unary_call(f"127.0.0.1:{ports[f'bare_{server}']}", path, token) != real:
                    raise RuntimeError(f"the bare {server} server does not answer {path} as {server} does")
            gateway_settings = render.GatewaySettings.local(
                listen_port=ports["gateway"],
                admin_port=ports["admin"],
                # Only accounts and sessions run; the other clusters point at a closed port and are not called.
                upstreams={
                    **{name: f"127.0.0.1:{embedded.free_port()}" for name in render.SERVICES},
                    "accounts": f"127.0.0.1:{ports['accounts']}",
                    "sessions": f"127.0.0.1:{ports['sessions']}",
                },
            )
            gateway = await processes.enter_async_context(envoy(render.render(gateway_settings), work, "gateway"))
            plain = await processes.enter_async_context(
                envoy(plain_envoy_config(ports["plain"], ports["bare"]), work, "plain")
            )
            wait_http_ok(f"http://127.0.0.1:{ports['admin']}/ready", time.monotonic() + 60)
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{ports['gateway']}") as client:
                for _ in range(100):  # jwt_authn fetches the JWKS once the listener is up
                    if (await client.get("/v1/auth/me", headers={"authorization": f"Bearer {token}"})).is_success:
                        break
                    await asyncio.sleep(0.1)
            progress("bare server, accounts, sessions, the gateway and a plain Envoy serving")

            body = work / "empty.grpc"
            body.write_bytes(EMPTY_GRPC_MESSAGE)
            poll_script = work / "poll.lua"
            poll_script.write_text(
                'wrk.method = "POST"\nwrk.headers["content-type"] = "application/json"\nwrk.body = "{}"\n'
            )
            proxy_script = work / "grpc.lua"
            proxy_script.write_text(
                'wrk.method = "POST"\n'
                'wrk.headers["content-type"] = "application/grpc"\n'
                'wrk.headers["te"] = "trailers"\n'
                'wrk.body = "\\0\\0\\0\\0\\0"\n'
            )
            procs = {
                "bare": psutil.Process(bare.pid),
                "accounts": psutil.Process(accounts.pid),
                "sessions": psutil.Process(sessions.pid),
                "bare_accounts": psutil.Process(bare_services["accounts"].pid),
                "bare_sessions": psutil.Process(bare_services["sessions"].pid),
                "gateway_envoy": gateway,
                "plain_envoy": plain,
            }
            cpu: dict[str, CpuReader] = {name: functools.partial(self_cpu_s, p) for name, p in procs.items()}
            connection = await asyncpg.connect(database_url)
            pm = await postmaster(connection)
            await connection.close()
            if pm is not None:
                cpu["postgres"] = lambda: tree_cpu_s(pm)
            redis = embedded_redis()
            if redis is not None:
                cpu["redis"] = lambda: self_cpu_s(redis)

            accounts_metrics = f"http://127.0.0.1:{ports['accounts_metrics']}/metrics"
            sessions_metrics = f"http://127.0.0.1:{ports['sessions_metrics']}/metrics"
            seconds, clients = options.seconds, options.clients
            bearer = {"authorization": f"Bearer {token}"}

            def grpc_load(server: str, path: str, headers: dict[str, str]) -> Callable[[], int]:
                url = f"http://127.0.0.1:{ports[server]}{path}"
                return sized_h2load(url, seconds=seconds, clients=clients, headers=headers, body=body)

            workloads: dict[str, tuple[Callable[[], int], list[str], Callable[[], Any] | None]] = {
                "bare_health": (
                    grpc_load("bare", HEALTH_PATH, {}),
                    ["bare"],
                    None,
                ),
                "bare_cached_poll": (
                    grpc_load("bare_sessions", POLL_PATH, bearer),
                    ["bare_sessions", "postgres", "redis"],
                    None,
                ),
                "bare_getme": (
                    grpc_load("bare_accounts", GETME_PATH, bearer),
                    ["bare_accounts", "postgres", "redis"],
                    None,
                ),
                "sessions_health": (
                    grpc_load("sessions", HEALTH_PATH, {}),
                    ["sessions", "postgres", "redis"],
                    None,
                ),
                "sessions_cached_poll": (
                    grpc_load("sessions", POLL_PATH, bearer),
                    ["sessions", "postgres", "redis"],
                    lambda: ok_calls(sessions_metrics, "PollChargingState"),
                ),
                "accounts_getjwks": (
                    grpc_load("accounts", JWKS_PATH, bearer),
                    ["accounts", "postgres", "redis"],
                    lambda: ok_calls(accounts_metrics, "GetJwks"),
                ),
                "accounts_getme": (
                    grpc_load("accounts", GETME_PATH, bearer),
                    ["accounts", "postgres", "redis"],
                    lambda: ok_calls(accounts_metrics, "GetMe"),
                ),
                "envoy_direct": (
                    lambda: wrk(
                        f"http://127.0.0.1:{ports['plain']}/direct",
                        seconds=seconds, clients=clients, script=None, headers={},
                    ),
                    ["plain_envoy"],
                    None,
                ),
                "envoy_plain_proxy": (
                    lambda: wrk(
                        f"http://127.0.0.1:{ports['plain']}{HEALTH_PATH}",
                        seconds=seconds, clients=clients, script=proxy_script, headers={},
                    ),
                    ["plain_envoy", "bare"],
                    None,
                ),
                "envoy_getme": (
                    lambda: wrk(
                        f"http://127.0.0.1:{ports['gateway']}/v1/auth/me",
                        seconds=seconds, clients=clients, script=None, headers=bearer,
                    ),
                    ["gateway_envoy", "accounts", "postgres", "redis"],
                    lambda: ok_calls(accounts_metrics, "GetMe"),
                ),
                "envoy_cached_poll": (
                    lambda: wrk(
                        f"http://127.0.0.1:{ports['gateway']}/v1/charging-sessions/poll",
                        seconds=seconds, clients=clients, script=poll_script, headers=bearer,
                    ),
                    ["gateway_envoy", "sessions", "postgres", "redis"],
                    lambda: ok_calls(sessions_metrics, "PollChargingState"),
                ),
            }  # fmt: skip
            results: dict[str, Any] = {}
            for name, (load, readers, check) in workloads.items():
                chosen = {reader: cpu[reader] for reader in readers if reader in cpu}
                rounds = [await measured(load, chosen, check) for _ in range(options.rounds)]
                results[name] = median_round(rounds)
                progress(f"{name}: {results[name]['cpu_us_per_request']} µs CPU per request")
        return summarize(results, options)


def summarize(results: dict[str, Any], options: argparse.Namespace) -> dict[str, Any]:
    def cpu(workload: str, process: str) -> float:
        return float(results[workload]["cpu_us_per_request"][process])

    floor = cpu("bare_health", "bare")
    runtime_ratios = {
        "sessions_cached_poll": round(
            cpu("sessions_cached_poll", "sessions") / cpu("bare_cached_poll", "bare_sessions"), 2
        ),
        "accounts_getme": round(cpu("accounts_getme", "accounts") / cpu("bare_getme", "bare_accounts"), 2),
    }
    ratios = {
        "sessions_health": round(cpu("sessions_health", "sessions") / floor, 2),
        "sessions_cached_poll": round(cpu("sessions_cached_poll", "sessions") / floor, 2),
        "accounts_getme": round(cpu("accounts_getme", "accounts") / floor, 2),
        "accounts_getjwks": round(cpu("accounts_getjwks", "accounts") / floor, 2),
    }
    envoy_floor = cpu("envoy_direct", "plain_envoy")
    envoy = {
        "direct_response_us": envoy_floor,
        "plain_proxy_us": cpu("envoy_plain_proxy", "plain_envoy"),
        "transcoded_getme_us": cpu("envoy_getme", "gateway_envoy"),
        "transcoded_over_plain_proxy": round(
            cpu("envoy_getme", "gateway_envoy") / cpu("envoy_plain_proxy", "plain_envoy"), 2
        ),
        "transcoded_cached_poll_us": cpu("envoy_cached_poll", "gateway_envoy"),
        "sessions_behind_envoy_cached_poll_us": cpu("envoy_cached_poll", "sessions"),
    }
    headline = max(runtime_ratios.values())
    return {
        "headline": {
            "metric": "runtime_cpu_ratio_to_bare_grpc",
            "value": headline,
            "unit": "ratio",
            "target": TARGET_RATIO,
        },
        "headline_is": "max over the cached poll and GetMe of the service's CPU per call over the same handler's "
        "on a bare grpc.aio server",
        "target_met": headline <= TARGET_RATIO,
        "service_cpu_ratio_to_same_handler_on_bare_grpc": runtime_ratios,
        "bare_grpc_floor_us_per_call": floor,
        "service_cpu_ratio_to_bare_health": ratios,
        "envoy_cpu_us_per_request": envoy,
        "workloads": results,
        "setup": {
            "seconds_per_round": options.seconds,
            "rounds": options.rounds,
            "connections": options.clients,
            "load": "h2load (gRPC over h2c) and wrk (HTTP/1.1), Debian packages",
            "tracing": "OTLP exporter on, parentbased_traceidratio 0.01",
            "cpu": "process CPU time (psutil, user + system) per request; other processes' load moves it far less "
            "than it moves request rates",
        },
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    sub = parser.add_subparsers(dest="command")
    bare = sub.add_parser("serve-bare", help="the bare grpc.aio floor server (started by the benchmark)")
    bare.add_argument("port", type=int)
    bare_service = sub.add_parser("serve-bare-service", help="a service's servicer with no interceptors (ditto)")
    bare_service.add_argument("service", choices=("accounts", "sessions"))
    bare_service.add_argument("port", type=int)
    bare_service.add_argument("user_id")
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--clients", type=int, default=8)
    options = parser.parse_args()
    if options.command == "serve-bare":
        uvloop.run(serve_bare(options.port))
        return
    if options.command == "serve-bare-service":
        uvloop.run(serve_bare_service(options.service, options.port, options.user_id))
        return
    missing = tools_missing()
    if missing:
        raise SystemExit(f"missing load generators: {', '.join(missing)} (apt-get install nghttp2-client wrk)")
    results = uvloop.run(run(options))
    path = write_results("runtime", results)
    print(json.dumps(results["headline"]))
    print(
        f"runtime over the same handlers {results['service_cpu_ratio_to_same_handler_on_bare_grpc']}; health floor "
        f"{results['bare_grpc_floor_us_per_call']} µs/call, ratios to it "
        f"{results['service_cpu_ratio_to_bare_health']}; "
        f"Envoy {results['envoy_cpu_us_per_request']}; written to {path.relative_to(ROOT)}"
    )


if __name__ == "__main__":
    main()
