"""`make bench-watch`: the session watcher over 10,000 active sessions on the fake fleet, with one and then two
sessions processes: vehicle reads per second, the sessions processes' CPU per read (the headline, target ≤ 2 ms),
the fake fleet's and PostgreSQL's CPU per read beside it, and whether every session was read within its interval.

Setup: PostgreSQL and Redis (DATABASE_URL / REDIS_URL, else embedded), a fresh database with the sessions schema,
the fake fleet in its own process (`python -m bench.poll --serve-fleet …`) with 10,000 Teslas all plugged in and
charging, each linked to a driver (save_connection, tokens issued by the fake), and one active session per car
whose next watcher read is spread over one interval. No app polls: every read is the watcher's (uncached by
construction — the window is free, so each read is a real vehicle-API call applied through the state machine).

Phases (each `--seconds`, after a warm-up of 10,000 reads, i.e. every session read once, so each process's memory
of connections and tokens is that of a long run): sessions process 1 alone, then processes 1 and 2 together (the
leases split the work). CPU is read from /proc (psutil) for the sessions processes and the fake; PostgreSQL's is the
CPU of the backends serving the bench database (the server is shared with other work on a CI machine, so the
postmaster's total would not be ours). Reads are the fake's own count of vehicle_data calls.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import pathlib
import platform
import random
import shutil
import sys
import tempfile
import time
import uuid
from typing import Any

import asyncpg
import httpx
import psutil
import uvloop

from bench.common import write_results
from bench.ledger import log_tail, progress, self_cpu_s, started
from bench.poll import fresh_database, link_cars, start_fleet
from services.common import migrations
from services.common.config import DEV_MODE_VARIABLE
from tools import embedded
from tools.run import wait_serving

ROOT = pathlib.Path(__file__).resolve().parent.parent
DRIVERS = 10_000
INTERVAL_S = 60.0  # the watch interval of the bench: 10,000 sessions → about 167 reads/s to keep up
TARGET_MS = 2.0


async def open_sessions(database_url: str, drivers: list[str], cars: list[dict[str, Any]]) -> None:
    """One active session per car (as the first poll leaves it), due for the watcher spread over one interval."""
    connection = await asyncpg.connect(database_url)
    try:
        await connection.execute("SET search_path TO sessions")
        rows = [(uuid.uuid4(), driver, car["id"]) for driver, car in zip(drivers, cars, strict=True)]
        await connection.executemany(
            "INSERT INTO charging_sessions (id, driver_id, vehicle_id, source, session_start, verified, "
            "last_telemetry_at, power_kw, max_power_kw, kwh_delivered, battery_start_pct, battery_end_pct, lat, lng) "
            "VALUES ($1, $2, $3, 1, now(), true, now(), 11, 11, 0, 40, 40, 30.2672, -97.7431)",
            rows,
        )
        await connection.execute(
            "UPDATE charging_sessions_active SET watch_at = now() + random() * make_interval(secs => $1)", INTERVAL_S
        )
    finally:
        await connection.close()


async def backend_cpu_s(database_url: str, database: str) -> float:
    """CPU seconds so far of the PostgreSQL backends connected to the bench database (same machine)."""
    connection = await asyncpg.connect(database_url)
    try:
        pids = [
            r["pid"] for r in await connection.fetch("SELECT pid FROM pg_stat_activity WHERE datname = $1", database)
        ]
        mine = await connection.fetchval("SELECT pg_backend_pid()")
    finally:
        await connection.close()
    total = 0.0
    for pid in pids:
        if pid == mine:
            continue
        with contextlib.suppress(psutil.Error):
            total += self_cpu_s(psutil.Process(pid))
    return total


async def fleet_reads(fleet_url: str) -> int:
    async with httpx.AsyncClient(base_url=fleet_url, timeout=10) as client:
        calls = (await client.get("/_fake/calls")).json()["calls"]
    return int(calls.get("vehicle_data", 0))


async def warm_up(fleet_url: str, reads: int, cap_s: float) -> None:
    """Until `reads` more vehicle reads have happened (every session read once: the process's memory of
    connections and tokens is what a long-running one has), or `cap_s` passed."""
    target = await fleet_reads(fleet_url) + reads
    deadline = time.monotonic() + cap_s
    while time.monotonic() < deadline:
        if await fleet_reads(fleet_url) >= target:
            return
        await asyncio.sleep(2.0)


async def read_ages(database_url: str) -> dict[str, float]:
    """How long ago each active session was last read: the oldest, and how many are past the interval (+5 s)."""
    connection = await asyncpg.connect(database_url)
    try:
        row = await connection.fetchrow(
            "SELECT count(*) AS active, max(extract(epoch FROM now() - last_telemetry_at)) AS oldest_s, "
            "count(*) FILTER (WHERE last_telemetry_at < now() - make_interval(secs => $1)) AS late "
            "FROM sessions.charging_sessions WHERE session_end IS NULL",
            INTERVAL_S + 5,
        )
    finally:
        await connection.close()
    assert row is not None  # an aggregate always answers one row
    return {
        "active": int(row["active"]),
        "oldest_read_age_s": round(float(row["oldest_s"]), 1),
        "late": int(row["late"]),
    }


async def measure(
    name: str,
    *,
    processes: list[psutil.Process],
    fleet: psutil.Process,
    fleet_url: str,
    database_url: str,
    database: str,
    seconds: float,
) -> dict[str, Any]:
    cpu0 = sum(self_cpu_s(p) for p in processes)
    fleet0, pg0, reads0 = self_cpu_s(fleet), await backend_cpu_s(database_url, database), await fleet_reads(fleet_url)
    t0 = time.perf_counter()
    await asyncio.sleep(seconds)
    elapsed = time.perf_counter() - t0
    cpu1 = sum(self_cpu_s(p) for p in processes)
    fleet1, pg1, reads1 = self_cpu_s(fleet), await backend_cpu_s(database_url, database), await fleet_reads(fleet_url)
    reads = max(1, reads1 - reads0)
    ages = await read_ages(database_url)
    result = {
        "sessions_processes": len(processes),
        "seconds": round(elapsed, 1),
        "vehicle_reads": reads,
        "reads_per_s": round(reads / elapsed, 1),
        "needed_reads_per_s": round(DRIVERS / INTERVAL_S, 1),
        "sessions_cpu_ms_per_read": round((cpu1 - cpu0) * 1000 / reads, 3),
        "sessions_cpu_share": round((cpu1 - cpu0) / elapsed, 3),
        "fake_fleet_cpu_ms_per_read": round((fleet1 - fleet0) * 1000 / reads, 3),
        "postgres_cpu_ms_per_read": round((pg1 - pg0) * 1000 / reads, 3),
        **ages,
        "every_session_read_within_interval": ages["late"] == 0,
        # The machine's load while measuring: on a shared CI box the processes may get far less than a core each.
        "load_average_1m": round(os.getloadavg()[0], 2),
    }
    progress(f"{name}: {json.dumps(result)}")
    return result


async def run(options: argparse.Namespace) -> dict[str, Any]:
    work = pathlib.Path(tempfile.mkdtemp(prefix="bench-watch-"))
    try:
        with contextlib.ExitStack() as stack:
            pg_url = os.environ.get("DATABASE_URL") or stack.enter_context(embedded.postgres(work / "pg"))
            redis_url = os.environ.get("REDIS_URL") or stack.enter_context(embedded.redis_server(work / "redis"))
            return await run_against(pg_url, redis_url, work, options)
    finally:
        shutil.rmtree(work, ignore_errors=True)


async def run_against(pg_url: str, redis_url: str, work: pathlib.Path, options: argparse.Namespace) -> dict[str, Any]:
    rng = random.Random(20_261_207)
    database_url = await fresh_database(pg_url, "nerava_bench_watch")
    await asyncio.to_thread(migrations.upgrade, "sessions", database_url)
    drivers = [str(uuid.UUID(int=rng.getrandbits(128), version=4)) for _ in range(DRIVERS)]
    fleet_port = embedded.free_port()
    fleet_file = work / "fleet.json"
    fleet_url = f"http://127.0.0.1:{fleet_port}"
    ports = [embedded.free_port() for _ in range(2)]
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        # The bench's own processes: a service-token secret of its own (no default exists outside development
        # mode) and the development defaults of the other secrets, which no watcher read uses.
        "SERVICE_TOKEN_SECRET": "bench-watch-service-token-secret-of-the-bench",
        DEV_MODE_VARIABLE: "true",
        "INCENTIVES_ADDR": f"127.0.0.1:{embedded.free_port()}",  # not running: no session ends here
        "MERCHANTS_ADDR": f"127.0.0.1:{embedded.free_port()}",
        "TESLA_CLIENT_ID": "bench-tesla",
        "TESLA_CLIENT_SECRET": "bench-tesla-secret",
        "TESLA_API_BASE": fleet_url,
        "TESLA_AUTH_BASE": fleet_url,
        "SESSION_WATCH_INTERVAL_S": str(INTERVAL_S),
        "LOG_LEVEL": "WARNING",
        "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
        "OTEL_TRACES_SAMPLER_ARG": "0.01",
        "PYTHONPATH": f"{ROOT}:{ROOT / 'gen'}",
    }
    fleet_cmd = [sys.executable, "-m", "bench.poll", "--serve-fleet", str(fleet_port), "--fleet-file", str(fleet_file)]
    fleet_cmd += ["--toggling-from", str(DRIVERS), "--plugged-from", "0"]
    async with contextlib.AsyncExitStack() as stack:
        fleet, cars = await start_fleet(stack, fleet_cmd, env, work, fleet_file)
        progress("fake fleet up with 10,000 charging cars")
        await link_cars(database_url, drivers, cars)
        await open_sessions(database_url, drivers, cars)
        progress("cars linked, 10,000 active sessions")
        processes = []
        for n, port in enumerate(ports):
            service_env = {**env, "SESSIONS_PORT": str(port)}
            log = work / f"sessions{n + 1}.log"
            process = await stack.enter_async_context(
                started([sys.executable, "-m", "services.sessions"], service_env, log)
            )
            try:
                await wait_serving(f"127.0.0.1:{port}", asyncio.get_running_loop().time() + 60)
            except TimeoutError:
                raise SystemExit(f"sessions {n + 1} did not start:\n{log_tail(log)}") from None
            processes.append(psutil.Process(process.pid))
            if n == 0:
                await warm_up(fleet_url, DRIVERS, options.warmup)
                one = await measure(
                    "1 process", processes=processes[:1], fleet=psutil.Process(fleet.pid), fleet_url=fleet_url,
                    database_url=database_url, database="nerava_bench_watch", seconds=options.seconds,
                )  # fmt: skip
        await warm_up(fleet_url, DRIVERS, options.warmup)
        two = await measure(
            "2 processes", processes=processes, fleet=psutil.Process(fleet.pid), fleet_url=fleet_url,
            database_url=database_url, database="nerava_bench_watch", seconds=options.seconds,
        )  # fmt: skip
    return {
        "benchmark": "bench-watch",
        "what": "the session watcher reading 10,000 active sessions' cars (fake fleet), one and two sessions processes",
        "headline": {
            "metric": "sessions_cpu_ms_per_vehicle_read",
            "value": one["sessions_cpu_ms_per_read"],
            "unit": "ms",
            "target": TARGET_MS,
        },
        "target_met": one["sessions_cpu_ms_per_read"] <= TARGET_MS and two["sessions_cpu_ms_per_read"] <= TARGET_MS,
        "watch_interval_s": INTERVAL_S,
        "sessions": DRIVERS,
        "one_process": one,
        "two_processes": two,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--seconds", type=float, default=INTERVAL_S + 15)
    # Warm-up: until every session was read once since the phase began (at most this many seconds).
    parser.add_argument("--warmup", type=float, default=300.0)
    results = uvloop.run(run(parser.parse_args()))
    path = write_results("watch", results)
    for name in ("one_process", "two_processes"):
        r = results[name]
        print(
            f"{name:14s} {r['reads_per_s']:>7.1f} reads/s  sessions CPU {r['sessions_cpu_ms_per_read']} ms/read  "
            f"fake {r['fake_fleet_cpu_ms_per_read']} ms/read  PostgreSQL {r['postgres_cpu_ms_per_read']} ms/read  "
            f"all read within {INTERVAL_S:.0f} s: {r['every_session_read_within_interval']}"
        )
    h = results["headline"]
    print(f"{h['metric']} = {h['value']} ms (target ≤ {h['target']} ms)  → {path.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
