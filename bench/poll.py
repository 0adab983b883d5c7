"""`make bench-poll`: PollChargingState for 10,000 simulated drivers with the fake Tesla fleet, over direct gRPC
and REST through Envoy, with one and two sessions processes, against redis-benchmark GET+SET on the same Redis.

Starts PostgreSQL and Redis (DATABASE_URL / REDIS_URL, else embedded), a fresh database with the accounts and
sessions schemas, the fake fleet (fakes.fleet, in its own process: `python -m bench.poll --serve-fleet`), the
accounts service (the JWKS the access tokens are checked against), two sessions processes and two Envoys (one
routing sessions to process 1, one to both processes). Access tokens are signed by the bench with the accounts
key ring in the bench database (the key accounts then loads): 10,000 logins would cost minutes. Each driver's
Tesla (one car) is linked with save_connection and tokens issued by the fake fleet.

The mix, per call (drawn at random) — the app polls about every 60 s and the window is 30 s, so most polls are
fresh reads: 10 % a driver inside the window (cached: `poll:answer:<driver>` exists; the
1,000 such answers are written once before the run), 85 % a charging update (a car plugged in and charging, its
window keys deleted by the load generator just before the call, so the car is read and the open session
updated), 5 % a transition (the fake flips that car between charging and unplugged at each read: the session
starts, then ends, alternately). POLL_WINDOW_S is an hour so that no cached answer expires during the run; the
DEL of an uncached call (one Redis round trip) is inside its measured latency.

Workloads in interleaved rounds (median per workload): direct_1p, envoy_1p, direct_2p (round-robin channels),
envoy_2p (one Envoy cluster with both endpoints). The headline is envoy_2p polls/s (the whole machine).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import json
import os
import pathlib
import platform
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import grpc
import psutil
import redis.asyncio as redis
import uvloop
from nerava.sessions.v1 import sessions_pb2 as pb
from nerava.sessions.v1 import sessions_pb2_grpc
from sqlalchemy.engine import make_url

from bench.common import closed_loop, write_results
from bench.ledger import embedded_redis, log_tail, postmaster, progress, self_cpu_s, started, tree_cpu_s
from gateway import render
from services.accounts import domain as accounts_domain
from services.accounts.keys import KeyRing
from services.common import migrations
from services.common.config import Env, Secret
from services.common.db import create_engine
from services.sessions import domain
from services.sessions.adapters.vehicles import OAuthTokens
from services.sessions.config import SessionsSettings
from services.sessions.connections import save_connection
from services.sessions.tokens import TokenCipher
from tools import embedded
from tools.run import wait_http_ok, wait_serving

ROOT = pathlib.Path(__file__).resolve().parent.parent
BIN = pathlib.Path(sys.executable).parent
DATABASE = "nerava_bench_poll"
SERVICE_TOKEN_SECRET = "bench-poll-service-token-secret-of-the-bench"  # the bench's own services; never a real secret
PASSPHRASE = "bench-poll-signing-key-passphrase"
DRIVERS = 10_000
# The app polls about every 60 s and the window is 30 s: most polls are fresh reads. A poll lands inside a window
# when the app repeats itself (a retry, two screens) or the watcher read the car just before: 10 %.
CACHED_SHARE, UPDATE_SHARE = 0.10, 0.85  # the rest: transitions
TARGET = 3_000.0
TARGET_P99_MS = 50.0
WINDOW_S = 3_600.0

Call = Callable[[], Awaitable[None]]


# --- the fake fleet, in its own process --------------------------------------------------------------------


def serve_fleet(port: int, count: int, toggling_from: int, out: pathlib.Path, plugged_from: int | None = None) -> None:
    """The fake fleet in this process: `count` Teslas, those from `plugged_from` (default: past the cached share)
    plugged in and charging, those from `toggling_from` flipping at each read; their tokens written to `out`."""
    from fakes.fleet import TESLA, TESLA_SCOPES, FakeFleet, FakeVehicle, _Response, _Token

    class BenchFleet(FakeFleet):
        """The fake fleet; the cars listed in ``toggling`` flip between charging and unplugged at each read."""

        toggling: set[str] = set()

        def _tesla_vehicle_data(self, vehicle: FakeVehicle, token: _Token, query: Any) -> _Response:
            if vehicle.id in self.toggling:
                if vehicle.connector is None:
                    vehicle.plug_in(power_kw=11.0)
                else:
                    vehicle.unplug()
            return super()._tesla_vehicle_data(vehicle, token, query)

    async def serve() -> None:
        fleet = BenchFleet(tesla_client_id="bench-tesla", tesla_client_secret="bench-tesla-secret", port=port)
        fleet.requests = _Discard()  # type: ignore[assignment]  # no record of every request over the run
        async with fleet:
            rows = []
            for number in range(count):
                car = fleet.add_tesla_vehicle(f"driver{number}@bench.example", battery_pct=40.0)
                if number >= (int(count * CACHED_SHARE) if plugged_from is None else plugged_from):
                    car.plug_in(power_kw=11.0)
                if number >= toggling_from:
                    fleet.toggling.add(car.id)
                issued = fleet._issue(car.account, TESLA_SCOPES, TESLA)
                rows.append({"id": car.id, "vin": car.vin, **issued, "scope": " ".join(sorted(TESLA_SCOPES))})
            partial = out.with_suffix(".partial")
            partial.write_text(json.dumps({"url": fleet.base_url, "cars": rows}))
            partial.rename(out)
            await asyncio.Event().wait()

    uvloop.run(serve())


class _Discard(list[Any]):
    def append(self, item: Any) -> None:
        pass


# --- setup --------------------------------------------------------------------------------------------------


async def fresh_database(server_url: str, database: str = DATABASE) -> str:
    url = make_url(server_url.replace("postgres://", "postgresql://", 1)).set(drivername="postgresql")
    admin = await asyncpg.connect(url.set(database="postgres").render_as_string(hide_password=False))
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        await admin.execute(f'CREATE DATABASE "{database}"')
    finally:
        await admin.close()
    return url.set(database=database).render_as_string(hide_password=False)


async def mint_tokens(database_url: str, drivers: list[str]) -> list[str]:
    engine = create_engine(database_url, "accounts")
    try:
        keys = KeyRing(Secret(PASSPHRASE))
        await keys.load(engine)  # creates the key accounts will load and publish
    finally:
        await engine.dispose()
    now = int(time.time())
    return [
        keys.sign(
            accounts_domain.access_claims(
                d, [accounts_domain.DRIVER], issuer="nerava", audience="nerava-api", now=now, ttl_s=4 * 3600
            )
        )
        for d in drivers
    ]


async def start_fleet(
    stack: contextlib.AsyncExitStack, command: list[str], env: dict[str, str], work: pathlib.Path, cars: pathlib.Path
) -> tuple[asyncio.subprocess.Process, list[dict[str, Any]]]:
    """Starts the fake fleet (`bench.poll --serve-fleet`, stopped with the stack): the process, and its cars once
    it has written them to `cars`."""
    fleet = await stack.enter_async_context(started(command, env, work / "fleet.log"))
    deadline = time.monotonic() + 120
    while not await asyncio.to_thread(cars.exists):
        if fleet.returncode is not None or time.monotonic() > deadline:
            raise SystemExit(f"the fake fleet did not start:\n{log_tail(work / 'fleet.log')}")
        await asyncio.sleep(0.2)
    written: list[dict[str, Any]] = json.loads(await asyncio.to_thread(cars.read_text))["cars"]
    return fleet, written


async def link_cars(database_url: str, drivers: list[str], cars: list[dict[str, Any]]) -> None:
    engine = create_engine(database_url, "sessions")
    cipher = TokenCipher.from_config(SessionsSettings.from_env(Env.development()).vehicle_token_keys.value)
    gate = asyncio.Semaphore(16)

    async def link(driver: str, car: dict[str, Any]) -> None:
        tokens = OAuthTokens(
            access_token=car["access_token"],
            refresh_token=car["refresh_token"],
            expires_at=datetime.now(UTC) + timedelta(seconds=int(car["expires_in"])),
            scope=car["scope"],
        )
        async with gate:
            await save_connection(
                engine, cipher, driver_id=driver, tokens=tokens, vehicles=[{"id": car["id"], "vin": car["vin"]}]
            )

    try:
        await asyncio.gather(*(link(d, c) for d, c in zip(drivers, cars, strict=True)))
    finally:
        await engine.dispose()


def envoy_config(work: pathlib.Path, name: str, accounts: str, sessions: list[str]) -> tuple[pathlib.Path, int, int]:
    rest_port, admin_port = embedded.free_port(), embedded.free_port()
    upstreams = {service: accounts for service in render.SERVICES}
    upstreams["sessions"] = sessions[0]
    settings = render.GatewaySettings.local(
        listen_port=rest_port,
        admin_port=admin_port,
        upstreams=upstreams,
        default_rate_limit=render.TokenBucket(max_tokens=10_000_000, tokens_per_fill=10_000_000),
    )
    config = render.render(settings)
    for cluster in config["static_resources"]["clusters"]:
        if cluster["name"] == "sessions":
            endpoints = cluster["load_assignment"]["endpoints"][0]["lb_endpoints"]
            template = json.dumps(endpoints[0])
            for extra in sessions[1:]:
                host, port = extra.rsplit(":", 1)
                endpoint = json.loads(template)
                endpoint["endpoint"]["address"]["socket_address"].update(address=host, port_value=int(port))
                endpoints.append(endpoint)
    path = work / f"{name}.json"
    path.write_text(json.dumps(config))
    return path, rest_port, admin_port


def post_request(path: str, token: str) -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: bench\r\nAuthorization: Bearer {token}\r\n"
        "Content-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"
    ).encode()


def redis_ceiling(redis_url: str) -> dict[str, Any]:
    binary = shutil.which("redis-benchmark")
    if binary is None:
        return {"available": False, "note": "no redis-benchmark binary on this machine"}
    match = re.match(r"redis://(?:[^@]*@)?([^:/]+):(\d+)", redis_url)
    assert match, redis_url
    host, port = match.groups()
    out = subprocess.run(
        [binary, "-h", host, "-p", port, "-t", "get,set", "-q", "-n", "200000", "-c", "32"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    rates = {
        m.group(1).lower(): float(m.group(2))
        for m in re.finditer(r"^\s*(SET|GET):\s*([\d.]+) requests per second", out.replace("\r", "\n"), re.M)
    }
    get_set = 2 / (1 / rates["get"] + 1 / rates["set"]) if {"get", "set"} <= set(rates) else None
    return {
        "available": True,
        "command": "redis-benchmark -t get,set -q -n 200000 -c 32",
        "get_per_s": rates.get("get"),
        "set_per_s": rates.get("set"),
        "get_set_mixed_ops_per_s": round(get_set, 1) if get_set else None,
        "note": "the ceiling of the cached path: a cached poll costs Redis one GET (poll:answer); an uncached one "
        "DEL (the bench's) + GET + SET NX + PTTL + SET. redis-benchmark runs after the rounds, with 32 clients, "
        "from C: the service's Python client is far below it",
    }


# --- measurement --------------------------------------------------------------------------------------------


async def measured(
    call: Call,
    cpu: dict[str, Callable[[], float]],
    clients: int,
    *,
    seconds: float,
    warmup_s: float,
    calls: Callable[[], int],
) -> dict[str, Any]:
    """One closed-loop run; CPU per request = each process's CPU over the run / every call made in it (`calls`,
    the warm-up's included: the CPU readings span it too)."""
    before = {name: read() for name, read in cpu.items()}
    result = await closed_loop(call, clients, seconds, warmup_s)
    total = max(1, calls())
    result["cpu_us_per_request"] = {name: round((read() - before[name]) / total * 1e6, 1) for name, read in cpu.items()}
    return result


def median_round(results: list[dict[str, Any]]) -> dict[str, Any]:
    ordered = sorted(results, key=lambda r: float(r["requests_per_s"]))
    return ordered[len(ordered) // 2]


async def run(options: argparse.Namespace) -> dict[str, Any]:
    work = pathlib.Path(tempfile.mkdtemp(prefix="bench-poll-"))
    try:
        with contextlib.ExitStack() as stack:
            pg_url = os.environ.get("DATABASE_URL") or stack.enter_context(embedded.postgres(work / "pg"))
            redis_url = os.environ.get("REDIS_URL") or stack.enter_context(embedded.redis_server(work / "redis"))
            return await run_against(pg_url, redis_url, work, options)
    finally:
        shutil.rmtree(work, ignore_errors=True)


async def run_against(  # noqa: PLR0912, PLR0915 - one sequence: setup, warm-up, rounds
    pg_url: str, redis_url: str, work: pathlib.Path, options: argparse.Namespace
) -> dict[str, Any]:
    rng = random.Random(20_240_601)
    database_url = await fresh_database(pg_url)
    for schema in ("accounts", "sessions"):
        await asyncio.to_thread(migrations.upgrade, schema, database_url)
    cache = redis.Redis.from_url(redis_url)
    await cache.flushdb()
    cached_n, update_n = int(DRIVERS * CACHED_SHARE), int(DRIVERS * UPDATE_SHARE)
    drivers = [str(uuid.UUID(int=rng.getrandbits(128), version=4)) for _ in range(DRIVERS)]
    tokens = await mint_tokens(database_url, drivers)
    progress("tokens minted")
    fleet_port = embedded.free_port()
    fleet_file = work / "fleet.json"
    ports = {name: embedded.free_port() for name in ("accounts", "sessions1", "sessions2")}
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "SERVICE_TOKEN_SECRET": SERVICE_TOKEN_SECRET,
        "NERAVA_DEV_MODE": "true",  # the bench's own services keep the development defaults of other secrets
        "ACCOUNTS_SIGNING_KEY_PASSPHRASE": PASSPHRASE,
        "ACCOUNTS_PORT": str(ports["accounts"]),
        "ACCOUNTS_ADDR": f"127.0.0.1:{ports['accounts']}",
        "INCENTIVES_ADDR": f"127.0.0.1:{embedded.free_port()}",  # not running: no grant to attach
        "TESLA_CLIENT_ID": "bench-tesla",
        "TESLA_CLIENT_SECRET": "bench-tesla-secret",
        "TESLA_API_BASE": f"http://127.0.0.1:{fleet_port}",
        "TESLA_AUTH_BASE": f"http://127.0.0.1:{fleet_port}",
        "POLL_WINDOW_S": str(WINDOW_S),
        # The watcher's first reads of the warm-up's sessions come after the rounds (the stale limit's third): its
        # reads would otherwise land in the sessions CPU divided by polls (bench-watch measures them).
        "SESSION_WATCH_INTERVAL_S": "300",
        "OTP_PROVIDER": "stub",
        "OTP_STUB_ENABLED": "true",
        "LOG_LEVEL": "WARNING",
        "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
        "OTEL_TRACES_SAMPLER_ARG": "0.01",
        "PYTHONPATH": f"{ROOT}:{ROOT / 'gen'}",
    }
    sessions_env = [{**env, "SESSIONS_PORT": str(ports[f"sessions{n}"])} for n in (1, 2)]
    toggling_from = cached_n + update_n
    fleet_cmd = [sys.executable, "-m", "bench.poll", "--serve-fleet", str(fleet_port), "--fleet-file", str(fleet_file)]
    fleet_cmd += ["--toggling-from", str(toggling_from)]
    async with contextlib.AsyncExitStack() as stack:
        fleet, cars = await start_fleet(stack, fleet_cmd, env, work, fleet_file)
        progress("fake fleet up with 10,000 cars")
        await link_cars(database_url, drivers, cars)
        progress("cars linked")
        cached_answer = pb.PollChargingStateResponse(
            recommended_interval_s=domain.recommended_interval_s(charging=None, minutes_to_full=None)
        ).SerializeToString()
        async with cache.pipeline(transaction=False) as pipe:
            for driver in drivers[:cached_n]:
                # The window's key holds the time (ms) until which it is taken (polling.py's script).
                held_until = int(time.time() * 1000) + int(WINDOW_S * 1000)
                pipe.set(f"poll:read:{driver}", held_until, px=int(WINDOW_S * 1000))
                pipe.set(f"poll:answer:{driver}", cached_answer, px=int(WINDOW_S * 1000))
            await pipe.execute()
        accounts = await stack.enter_async_context(
            started([sys.executable, "-m", "services.accounts"], env, work / "accounts.log")
        )
        services = [
            await stack.enter_async_context(
                started([sys.executable, "-m", "services.sessions"], sessions_env[n], work / f"sessions{n + 1}.log")
            )
            for n in range(2)
        ]
        loop = asyncio.get_running_loop()
        for name in ("accounts", "sessions1", "sessions2"):
            try:
                await wait_serving(f"127.0.0.1:{ports[name]}", loop.time() + 60)
            except TimeoutError:
                raise SystemExit(f"{name} did not start:\n{log_tail(work / f'{name}.log')}") from None
        accounts_addr = f"127.0.0.1:{ports['accounts']}"
        s1, s2 = f"127.0.0.1:{ports['sessions1']}", f"127.0.0.1:{ports['sessions2']}"
        envoys = {}
        for name, upstream in (("envoy_1p", [s1]), ("envoy_2p", [s1, s2])):
            config, rest_port, admin_port = envoy_config(work, name, accounts_addr, upstream)
            command = [str(BIN / "envoy"), "-c", str(config), "--concurrency", "1", "--log-level", "error"]
            command += ["--base-id", str(rest_port)]
            process = await stack.enter_async_context(started(command, env, work / f"{name}.log"))
            await asyncio.to_thread(wait_http_ok, f"http://127.0.0.1:{admin_port}/ready", loop.time() + 60)
            envoys[name] = (process, rest_port)
        progress("accounts, 2 sessions processes and 2 Envoys up")

        channels = [grpc.aio.insecure_channel(a) for a in (s1, s2)]
        stubs = [sessions_pb2_grpc.SessionsServiceStub(c) for c in channels]
        stack.push_async_callback(lambda: asyncio.gather(*(c.close(None) for c in channels)))
        update_ids = list(range(cached_n, cached_n + update_n))
        transition_ids = list(range(toggling_from, DRIVERS))
        kinds = collections_counter()

        def pick(only: str | None = None) -> tuple[int, bool]:
            r = {None: random.random(), "cached": 0.0, "update": CACHED_SHARE}[only]
            if r < CACHED_SHARE:
                kinds["cached"] += 1
                return random.randrange(cached_n), False
            if r < CACHED_SHARE + UPDATE_SHARE:
                kinds["update"] += 1
                return random.choice(update_ids), True
            kinds["transition"] += 1
            return random.choice(transition_ids), True

        async def forget(number: int) -> None:
            await cache.delete(f"poll:read:{drivers[number]}", f"poll:answer:{drivers[number]}")

        problems: dict[str, int] = {}

        def check(answer: pb.PollChargingStateResponse) -> None:
            if answer.error:
                key = pb.PollError.Name(answer.error)
                problems[key] = problems.get(key, 0) + 1

        def direct(processes: int, only: str | None = None) -> Call:
            turn = iter(range(10**12))

            async def call() -> None:
                number, uncached = pick(only)
                if uncached:
                    await forget(number)
                stub = stubs[next(turn) % processes]
                check(
                    await stub.PollChargingState(
                        pb.PollChargingStateRequest(), metadata=(("authorization", f"Bearer {tokens[number]}"),)
                    )
                )

            return call

        def via_envoy(name: str, clients: int) -> Call:
            from bench.http1 import KeepAliveConnection

            port = envoys[name][1]
            idle = [KeepAliveConnection("127.0.0.1", port) for _ in range(clients)]
            requests = [post_request("/v1/charging-sessions/poll", t) for t in tokens]

            async def call() -> None:
                number, uncached = pick()
                if uncached:
                    await forget(number)
                connection = idle.pop()
                try:
                    status, body = await connection.request(requests[number])
                finally:
                    idle.append(connection)
                if status != 200:
                    problems[f"HTTP {status}"] = problems.get(f"HTTP {status}", 0) + 1
                    raise RuntimeError(f"HTTP {status}: {body[:200]!r}")

            return call

        # Warm-up: every update/transition driver read once (their sessions open), Envoy's JWKS fetched.
        gate = asyncio.Semaphore(32)

        async def first(number: int) -> None:
            async with gate:
                await forget(number)
                await stubs[number % 2].PollChargingState(
                    pb.PollChargingStateRequest(), metadata=(("authorization", f"Bearer {tokens[number]}"),)
                )

        await asyncio.gather(*(first(n) for n in update_ids + transition_ids))
        for name in envoys:
            for _ in range(100):
                with contextlib.suppress(Exception):
                    await via_envoy(name, 1)()
                    break
                await asyncio.sleep(0.1)
            else:
                raise SystemExit(f"{name} does not answer polls: {problems}")
        problems.clear()
        progress("warm")

        pg_admin = await asyncpg.connect(database_url)
        pm = await postmaster(pg_admin)
        await pg_admin.close()
        redis_process = embedded_redis()
        base: dict[str, Callable[[], float]] = {
            "accounts": lambda: self_cpu_s(psutil.Process(accounts.pid)),
            "fake_fleet": lambda: self_cpu_s(psutil.Process(fleet.pid)),
            "load_generator": lambda: self_cpu_s(psutil.Process()),
        }
        if pm is not None:
            base["postgres"] = lambda: tree_cpu_s(pm)
        if redis_process is not None:
            base["redis"] = lambda: self_cpu_s(redis_process)
        sessions_cpu: dict[str, Callable[[], float]] = {
            f"sessions{n + 1}": functools.partial(self_cpu_s, psutil.Process(s.pid)) for n, s in enumerate(services)
        }
        envoy_cpu: dict[str, Callable[[], float]] = {
            name: functools.partial(self_cpu_s, psutil.Process(e[0].pid)) for name, e in envoys.items()
        }
        clients = options.clients
        workloads: dict[str, tuple[Call, dict[str, Callable[[], float]]]] = {
            "direct_1p": (direct(1), {**base, "sessions": sessions_cpu["sessions1"]}),
            "envoy_1p": (
                via_envoy("envoy_1p", clients),
                {**base, "sessions": sessions_cpu["sessions1"], "envoy": envoy_cpu["envoy_1p"]},
            ),
            "direct_1p_cached_only": (direct(1, "cached"), {**base, "sessions": sessions_cpu["sessions1"]}),
            "direct_1p_update_only": (direct(1, "update"), {**base, "sessions": sessions_cpu["sessions1"]}),
            "direct_2p": (direct(2), {**base, **sessions_cpu}),
            "envoy_2p": (via_envoy("envoy_2p", clients), {**base, **sessions_cpu, "envoy": envoy_cpu["envoy_2p"]}),
        }
        rounds: dict[str, list[dict[str, Any]]] = {name: [] for name in workloads}
        if options.workloads:
            workloads = {name: workloads[name] for name in options.workloads.split(",")}
        for number in range(1, options.rounds + 1):
            for name, (call, cpu) in workloads.items():
                kinds.clear()
                problems.clear()
                result = await measured(
                    call,
                    cpu,
                    clients,
                    seconds=options.seconds,
                    warmup_s=options.warmup,
                    calls=lambda: sum(kinds.values()),
                )
                result["mix"] = dict(kinds)
                result["answer_problems"] = dict(problems)
                rounds[name].append(result)
                print(
                    f"  round {number}/{options.rounds} {name:10s} {result['requests_per_s']:>8.1f} polls/s  "
                    f"p50 {result['p50_ms']:>6.2f} ms  p99 {result['p99_ms']:>7.2f} ms  errors {result['errors']}  "
                    f"problems {result['answer_problems']}  CPU µs/poll {result['cpu_us_per_request']}",
                    flush=True,
                )
        for n, service in enumerate(services):
            if service.returncode is not None:
                raise SystemExit(f"sessions{n + 1} exited:\n{log_tail(work / f'sessions{n + 1}.log')}")
        if options.workloads:
            await cache.aclose()
            return {"rounds": rounds}
        sessions_rows = await count_sessions(database_url)
        await cache.aclose()
        progress("rounds done; redis-benchmark")
        ceiling = await asyncio.to_thread(redis_ceiling, redis_url)
    return summarize(rounds, ceiling, sessions_rows, options)


def collections_counter() -> dict[str, int]:
    import collections

    return collections.Counter()


async def count_sessions(database_url: str) -> dict[str, int]:
    connection = await asyncpg.connect(database_url)
    try:
        row = await connection.fetchrow(
            "SELECT count(*) AS sessions, count(*) FILTER (WHERE session_end IS NULL) AS open "
            "FROM sessions.charging_sessions"
        )
    finally:
        await connection.close()
    assert row is not None
    return {k: int(v) for k, v in row.items()}


def summarize(
    rounds: dict[str, list[dict[str, Any]]], ceiling: dict[str, Any], sessions_rows: dict[str, int], options: Any
) -> dict[str, Any]:
    chosen = {name: median_round(results) for name, results in rounds.items()}
    per_process = {}
    for name in ("direct_1p", "envoy_1p", "direct_1p_cached_only", "direct_1p_update_only"):
        r = chosen[name]
        per_process[name] = {
            "polls_per_s": r["requests_per_s"],
            "sessions_cpu_us_per_poll": r["cpu_us_per_request"]["sessions"],
            "polls_per_s_per_sessions_core": round(1e6 / r["cpu_us_per_request"]["sessions"], 1)
            if r["cpu_us_per_request"]["sessions"]
            else None,
        }
    headline = chosen["envoy_2p"]
    return {
        "headline": {
            "metric": "polls_per_s_through_envoy",
            "value": headline["requests_per_s"],
            "unit": "/s",
            "target": TARGET,
        },
        "headline_workload": "envoy_2p (REST through one Envoy, two sessions processes)",
        "headline_p99_ms": headline["p99_ms"],
        "target_p99_ms": TARGET_P99_MS,
        "target_met": headline["requests_per_s"] >= TARGET and headline["p99_ms"] < TARGET_P99_MS,
        "summary": chosen,
        "per_process_capacity": per_process,
        "redis_benchmark": ceiling,
        "sessions_rows_after_run": sessions_rows,
        "all_rounds_polls_per_s": {name: [r["requests_per_s"] for r in rs] for name, rs in rounds.items()},
        "clients": options.clients,
        "measured_seconds_per_round": options.seconds,
        "warmup_seconds_per_round": options.warmup,
        "rounds": options.rounds,
        "drivers": DRIVERS,
        "mix": {
            "cached": CACHED_SHARE,
            "update": UPDATE_SHARE,
            "transition": round(1 - CACHED_SHARE - UPDATE_SHARE, 2),
        },
        "notes": {
            "mix": "cached = the driver's poll:answer key exists (written once before the run, POLL_WINDOW_S=3600 so "
            "none expires); update/transition = the load generator DELs the driver's window keys just before the "
            "call (inside its latency), so the car is read at the fake fleet; transition cars flip between "
            "charging and unplugged at every read (session start / end alternately)",
            "tokens": "access tokens signed by the bench with the accounts key ring (same DB, same passphrase); "
            "sessions verifies them against the running accounts service's JWKS (and then remembers each verdict)",
            "only": "direct_1p_cached_only / direct_1p_update_only: the same process, every call of one kind, to "
            "split the mix's cost between the cached path and the vehicle read",
            "per_process_capacity": "sessions_cpu_us_per_poll is the sessions process's CPU per poll at this mix; "
            "1e6 / it = polls/s one fully busy core of sessions could serve (the capacity model's per-process figure)",
            "incentives": "not running: a session end's grant lookup fails fast and the outbox hand-off retries",
            "machine": "load generator (Python), Envoy, accounts, both sessions processes, the fake fleet, PostgreSQL "
            "and Redis share this machine's CPUs",
            "cpu": "cpu_us_per_request is each process's CPU time (psutil, user + system) over a round divided by "
            "every call made in it, warm-up included: other load on the machine moves it far less than "
            "it moves polls/s",
        },
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workloads", help="only these workloads, comma-separated (profiling; results not written)")
    parser.add_argument("--serve-fleet", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--fleet-file", type=pathlib.Path, help=argparse.SUPPRESS)
    parser.add_argument("--toggling-from", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--plugged-from", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_fleet:
        serve_fleet(args.serve_fleet, DRIVERS, args.toggling_from, args.fleet_file, args.plugged_from)
        return
    results = uvloop.run(run(args))
    if args.workloads:
        return  # a partial run: its rounds were printed as they ran
    path = write_results("poll", results)
    for name, r in results["summary"].items():
        print(
            f"{name:10s} {r['requests_per_s']:>8.1f} polls/s  p50 {r['p50_ms']:>6.2f} ms  p99 {r['p99_ms']:>7.2f} ms  "
            f"errors {r['errors']}  CPU µs/poll {r['cpu_us_per_request']}"
        )
    print(f"redis-benchmark: {results['redis_benchmark']}")
    h = results["headline"]
    print(
        f"{h['metric']} = {h['value']} /s, p99 {results['headline_p99_ms']} ms (target ≥ {h['target']} /s, p99 < "
        f"{TARGET_P99_MS} ms: {'met' if results['target_met'] else 'NOT met'})  → {path.relative_to(ROOT)}"
    )


if __name__ == "__main__":
    main()
