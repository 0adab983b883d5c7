"""`make bench-ledger`: PostTransfer throughput of the ledger service against a bare-SQL ceiling.

Starts PostgreSQL and Redis (DATABASE_URL / REDIS_URL, else embedded), a fresh database with the ledger
schema, and the ledger service as its own process. Callers authenticate as a service (a token minted with
the bench's SERVICE_TOKEN_SECRET): PostTransfer is an internal RPC. Four workloads, each at every
concurrency of --concurrency (closed-loop clients), in interleaved rounds with the median round reported:

  ledger_distinct     PostTransfer REDEMPTION (driver Nova → merchant Nova, 1-5 points); each in-flight
                      call holds its own driver/merchant pair, so no two concurrent transfers share an
                      account.
  ledger_contended    the same transfers among a shared set of 5 drivers and 5 merchants (10 accounts).
  ceiling             asyncpg, same PostgreSQL, no service: one transaction per transfer that inserts the
                      transfer row, updates two of 10,000 account rows (in id order) and inserts two entry
                      rows, in scratch tables of schema bench_ceiling (dropped at the end). Prepared
                      statements, the server's default synchronous_commit: what one transfer costs the
                      database, without any service in the way.
  ceiling_contended   the same SQL with both accounts among 10.

Every source account is funded first by one ADMIN_GRANT from EXTERNAL_FUNDING. The headline is the
ledger's distinct-accounts throughput over the ceiling's, at 16 clients. CPU per request is reported for the
service process, PostgreSQL (the postmaster and all its children), Redis (when embedded) and the load
generator. The load generator is Python and shares this machine with everything else, so absolute figures
are a floor; the ratio compares both paths under the same conditions.

`--ceiling-only` runs the two ceiling workloads alone (no service, no Redis) and writes no results file.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import dataclasses
import os
import pathlib
import platform
import random
import shutil
import signal
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

import asyncpg
import grpc
import protovalidate
import psutil
import uvloop
from nerava.ledger.v1 import ledger_pb2, ledger_pb2_grpc
from sqlalchemy.engine import make_url

from bench.common import closed_loop, write_results
from services.common import migrations
from services.common.auth import SERVICE_TOKEN_HEADER, ServiceTokens
from services.common.config import Secret
from tools import embedded
from tools.run import wait_serving

ROOT = pathlib.Path(__file__).resolve().parent.parent
DATABASE = "nerava_bench_ledger"
SERVICE_TOKEN_SECRET = "bench-ledger-service-token-secret"  # the bench's own service; never a real secret
FUNDING = 1_000_000_000  # Nova points per funded driver: far more than any run can spend at 1-5 a transfer
CONTENDED_DRIVERS = 5
CONTENDED_MERCHANTS = 5
CEILING_SCHEMA = "bench_ceiling"
CEILING_ACCOUNTS = 10_000
CEILING_CONTENDED_ACCOUNTS = 10

LEDGER_WORKLOADS = ("ledger_distinct", "ledger_contended")
CEILING_WORKLOADS = ("ceiling", "ceiling_contended")

Call = Callable[[], Awaitable[None]]
CpuReader = Callable[[], float]

NOVA = ledger_pb2.CURRENCY_NOVA_POINTS
EXTERNAL = ledger_pb2.AccountRef(type=ledger_pb2.ACCOUNT_TYPE_EXTERNAL_FUNDING, owner_id="platform", currency=NOVA)


# --- requests -------------------------------------------------------------------------------------------


def driver_account(driver_id: str) -> ledger_pb2.AccountRef:
    return ledger_pb2.AccountRef(type=ledger_pb2.ACCOUNT_TYPE_DRIVER_NOVA, owner_id=driver_id, currency=NOVA)


def merchant_account(merchant_id: str) -> ledger_pb2.AccountRef:
    return ledger_pb2.AccountRef(type=ledger_pb2.ACCOUNT_TYPE_MERCHANT_NOVA, owner_id=merchant_id, currency=NOVA)


def funding_request(driver: ledger_pb2.AccountRef) -> ledger_pb2.PostTransferRequest:
    return ledger_pb2.PostTransferRequest(
        idempotency_key=uuid.uuid4().hex,
        kind=ledger_pb2.TRANSFER_KIND_ADMIN_GRANT,
        currency=NOVA,
        amount=FUNDING,
        from_account=EXTERNAL,
        to_account=driver,
        metadata=ledger_pb2.TransferMetadata(reason="bench-ledger funding"),
    )


def redemption_request(
    driver: ledger_pb2.AccountRef, merchant: ledger_pb2.AccountRef, amount: int
) -> ledger_pb2.PostTransferRequest:
    return ledger_pb2.PostTransferRequest(
        idempotency_key=uuid.uuid4().hex,
        kind=ledger_pb2.TRANSFER_KIND_REDEMPTION,
        currency=NOVA,
        amount=amount,
        from_account=driver,
        to_account=merchant,
        metadata=ledger_pb2.TransferMetadata(merchant_id=merchant.owner_id, redemption_id=uuid.uuid4().hex),
    )


def check_requests_valid() -> None:
    """Both request shapes the bench sends satisfy the contract's protovalidate rules (no violations), so a
    rejection by the service can only come from the service."""
    driver, merchant = driver_account(str(uuid.uuid4())), merchant_account("bench-merchant-0")
    for request in (funding_request(driver), redemption_request(driver, merchant, 5)):
        violations = protovalidate.collect_violations(request)
        if violations:
            raise SystemExit(f"bench builds an invalid PostTransferRequest: {[str(v.proto) for v in violations]}")


@dataclasses.dataclass(frozen=True)
class Pair:
    driver: ledger_pb2.AccountRef
    merchant: ledger_pb2.AccountRef


# --- processes and CPU ----------------------------------------------------------------------------------


def tree_cpu_s(root: psutil.Process) -> float:
    """CPU seconds of ``root``, its reaped children and its live children (PostgreSQL forks one backend per
    connection and a few workers; a backend that exits is counted in the postmaster's children times)."""
    times = root.cpu_times()
    total = float(times.user + times.system + times.children_user + times.children_system)
    for child in root.children():
        with contextlib.suppress(psutil.Error):
            child_times = child.cpu_times()
            total += float(child_times.user + child_times.system)
    return total


def self_cpu_s(process: psutil.Process) -> float:
    times = process.cpu_times()
    return float(times.user + times.system)


async def postmaster(connection: asyncpg.Connection) -> psutil.Process | None:
    """The postmaster of the server behind ``connection``, when it runs on this machine (else None)."""
    backend = await connection.fetchval("SELECT pg_backend_pid()")
    try:
        parent = psutil.Process(backend).parent()
        if parent is None or "postgres" not in parent.name():
            return None
        return parent
    except psutil.Error:
        return None


def embedded_redis() -> psutil.Process | None:
    for child in psutil.Process().children():
        with contextlib.suppress(psutil.Error):
            if "redis-server" in child.name():
                return child
    return None


@contextlib.asynccontextmanager
async def started(
    command: list[str], env: dict[str, str], log: pathlib.Path
) -> AsyncIterator[asyncio.subprocess.Process]:
    with log.open("wb") as sink:
        process = await asyncio.create_subprocess_exec(
            *command, env=env, cwd=ROOT, stdout=sink, stderr=asyncio.subprocess.STDOUT
        )
    try:
        yield process
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(process.wait(), timeout=20)
            except TimeoutError:
                process.kill()
                await process.wait()


STARTED = time.monotonic()


def progress(message: str) -> None:
    print(f"[{time.monotonic() - STARTED:6.1f} s] {message}", flush=True)


def log_tail(log: pathlib.Path, lines: int = 30) -> str:
    with contextlib.suppress(OSError):
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    return ""


async def wait_started(process: asyncio.subprocess.Process, address: str, log: pathlib.Path) -> None:
    serving = asyncio.ensure_future(wait_serving(address, time.monotonic() + 60))
    exited = asyncio.ensure_future(process.wait())
    done, _ = await asyncio.wait({serving, exited}, return_when=asyncio.FIRST_COMPLETED)
    serving.cancel()
    exited.cancel()
    if exited in done:
        raise SystemExit(f"the ledger service exited with {process.returncode}:\n{log_tail(log)}")
    serving.result()


# --- measurement ----------------------------------------------------------------------------------------


async def measured(
    call: Call,
    *,
    cpu: dict[str, CpuReader],
    codes: collections.Counter[str],
    clients: int,
    seconds: float,
    warmup_s: float,
) -> dict[str, Any]:
    """closed_loop, plus the CPU each process spent per request (warm-up included in both counts) and the
    status codes of failed calls (warm-up included)."""
    codes.clear()
    before = {name: read() for name, read in cpu.items()}
    result = await closed_loop(call, clients, seconds, warmup_s)
    total = result["requests"] * (seconds + warmup_s) / seconds
    result["cpu_us_per_request"] = {
        name: round((read() - before[name]) / total * 1e6, 1) if total else None for name, read in cpu.items()
    }
    if codes:
        result["error_codes"] = dict(codes)
    return result


def median_round(results: list[dict[str, Any]]) -> dict[str, Any]:
    """The round with the median throughput (its latencies and CPU figures come with it)."""
    ordered = sorted(results, key=lambda r: float(r["requests_per_s"]))
    return ordered[len(ordered) // 2]


# --- ceiling --------------------------------------------------------------------------------------------

CEILING_DDL = f"""
DROP SCHEMA IF EXISTS {CEILING_SCHEMA} CASCADE;
CREATE SCHEMA {CEILING_SCHEMA};
CREATE TABLE {CEILING_SCHEMA}.accounts (id bigint PRIMARY KEY, balance bigint NOT NULL);
CREATE TABLE {CEILING_SCHEMA}.transfers (
    id uuid PRIMARY KEY,
    from_id bigint NOT NULL,
    to_id bigint NOT NULL,
    amount bigint NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE {CEILING_SCHEMA}.entries (
    id bigserial PRIMARY KEY,
    transfer_id uuid NOT NULL,
    account_id bigint NOT NULL,
    amount bigint NOT NULL,
    balance_after bigint NOT NULL
);
INSERT INTO {CEILING_SCHEMA}.accounts SELECT g, {FUNDING} FROM generate_series(1, {CEILING_ACCOUNTS}) AS g;
ANALYZE {CEILING_SCHEMA}.accounts;
"""
INSERT_TRANSFER = f"INSERT INTO {CEILING_SCHEMA}.transfers (id, from_id, to_id, amount) VALUES ($1, $2, $3, $4)"
UPDATE_BALANCE = f"UPDATE {CEILING_SCHEMA}.accounts SET balance = balance + $2 WHERE id = $1 RETURNING balance"
INSERT_ENTRIES = (
    f"INSERT INTO {CEILING_SCHEMA}.entries (transfer_id, account_id, amount, balance_after) "
    "VALUES ($1, $2, $3, $4), ($1, $5, $6, $7)"
)


async def check_ceiling(connection: asyncpg.Connection) -> None:
    """The ceiling did the work it claims: balances still sum to the funding, two entries per transfer,
    and every account's balance is its funding plus its entries."""
    row = await connection.fetchrow(
        f"""SELECT (SELECT sum(balance) FROM {CEILING_SCHEMA}.accounts),
                   (SELECT count(*) FROM {CEILING_SCHEMA}.transfers),
                   (SELECT count(*) FROM {CEILING_SCHEMA}.entries),
                   (SELECT count(*) FROM {CEILING_SCHEMA}.accounts a
                      LEFT JOIN (SELECT account_id, sum(amount) AS moved FROM {CEILING_SCHEMA}.entries
                                 GROUP BY account_id) e ON e.account_id = a.id
                     WHERE a.balance <> {FUNDING} + coalesce(e.moved, 0))"""
    )
    assert row is not None
    total, transfers, entries, stale = row
    if total != FUNDING * CEILING_ACCOUNTS or entries != 2 * transfers or stale:
        raise SystemExit(f"ceiling tables inconsistent: sum={total} transfers={transfers} entries={entries} {stale=}")


def ceiling_call(pool: asyncpg.Pool, accounts: int) -> Call:
    ids = range(1, accounts + 1)

    async def call() -> None:
        source, destination = random.sample(ids, 2)
        amount = random.randint(1, 5)
        delta = {source: -amount, destination: amount}
        transfer_id = uuid.uuid4()
        after: dict[int, int] = {}
        async with pool.acquire() as connection, connection.transaction():
            await connection.execute(INSERT_TRANSFER, transfer_id, source, destination, amount)
            for account in sorted(delta):  # one lock order for every transaction: no deadlocks
                after[account] = await connection.fetchval(UPDATE_BALANCE, account, delta[account])
            await connection.execute(
                INSERT_ENTRIES, transfer_id, source, -amount, after[source], destination, amount, after[destination]
            )

    return call


# --- the ledger service ---------------------------------------------------------------------------------


class LedgerLoad:
    """PostTransfer calls with a service token; failed calls are tallied by status code."""

    def __init__(
        self, stub: ledger_pb2_grpc.LedgerServiceAsyncStub, tokens: ServiceTokens, codes: collections.Counter[str]
    ) -> None:
        self.stub = stub
        self.tokens = tokens
        self.codes = codes

    async def post(self, request: ledger_pb2.PostTransferRequest) -> ledger_pb2.PostTransferResponse:
        try:
            response = await self.stub.PostTransfer(
                request, metadata=((SERVICE_TOKEN_HEADER, self.tokens.mint()),), timeout=30
            )
        except grpc.aio.AioRpcError as exc:
            self.codes[exc.code().name] += 1
            raise
        if response.replayed or response.transfer.amount != request.amount:  # every key is new: never a replay
            self.codes["UNEXPECTED_RESPONSE"] += 1
            raise RuntimeError(f"unexpected PostTransfer answer: {response}")
        return response

    def distinct(self, pairs: Sequence[Pair]) -> Call:
        idle = list(pairs)  # as many pairs as clients: each in-flight call holds one pair exclusively

        async def call() -> None:
            pair = idle.pop()
            try:
                await self.post(redemption_request(pair.driver, pair.merchant, random.randint(1, 5)))
            finally:
                idle.append(pair)

        return call

    def contended(self, drivers: Sequence[ledger_pb2.AccountRef], merchants: Sequence[ledger_pb2.AccountRef]) -> Call:
        async def call() -> None:
            await self.post(redemption_request(random.choice(drivers), random.choice(merchants), random.randint(1, 5)))

        return call


async def fund(load: LedgerLoad, drivers: Sequence[ledger_pb2.AccountRef], log: pathlib.Path) -> None:
    try:
        first = await load.post(funding_request(drivers[0]))
    except grpc.aio.AioRpcError as exc:
        hint = (
            " (PostTransfer is not implemented yet: try --ceiling-only)"
            if exc.code() is grpc.StatusCode.UNIMPLEMENTED
            else ""
        )
        raise SystemExit(
            f"funding through PostTransfer failed: {exc.code().name} {exc.details()}{hint}\n{log_tail(log)}"
        ) from exc
    if first.to_balance_after != FUNDING:
        raise SystemExit(f"funding answered to_balance_after={first.to_balance_after}, expected {FUNDING}")
    semaphore = asyncio.Semaphore(8)

    async def one(driver: ledger_pb2.AccountRef) -> None:
        async with semaphore:
            await load.post(funding_request(driver))

    await asyncio.gather(*(one(driver) for driver in drivers[1:]))


# --- the run --------------------------------------------------------------------------------------------


async def fresh_database(server_url: str) -> str:
    url = make_url(server_url.replace("postgres://", "postgresql://", 1)).set(drivername="postgresql")
    admin = await asyncpg.connect(url.set(database="postgres").render_as_string(hide_password=False))
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{DATABASE}" WITH (FORCE)')
        await admin.execute(f'CREATE DATABASE "{DATABASE}"')
    finally:
        await admin.close()
    return url.set(database=DATABASE).render_as_string(hide_password=False)


@dataclasses.dataclass
class Options:
    concurrency: list[int]
    seconds: float
    warmup_s: float
    rounds: int
    ceiling_only: bool


async def run_rounds(
    calls: dict[str, dict[int, Call]],
    cpu: dict[str, dict[str, CpuReader]],
    codes: collections.Counter[str],
    options: Options,
) -> dict[str, dict[int, list[dict[str, Any]]]]:
    """Interleaved rounds: every workload at every concurrency once per round, so a disturbance of this
    shared machine rarely hits every round of one workload."""
    rounds: dict[str, dict[int, list[dict[str, Any]]]] = {name: {c: [] for c in options.concurrency} for name in calls}
    for number in range(1, options.rounds + 1):
        for clients in options.concurrency:
            for name, by_clients in calls.items():
                result = await measured(
                    by_clients[clients],
                    cpu=cpu[name],
                    codes=codes,
                    clients=clients,
                    seconds=options.seconds,
                    warmup_s=options.warmup_s,
                )
                rounds[name][clients].append(result)
                print(
                    f"  round {number}/{options.rounds} {name:18s} {clients:>3d} clients "
                    f"{result['requests_per_s']:>8.1f} transfers/s  errors {result['errors']}",
                    flush=True,
                )
    return rounds


async def run(options: Options) -> dict[str, Any]:
    check_requests_valid()
    work = pathlib.Path(tempfile.mkdtemp(prefix="bench-ledger-"))
    try:
        with contextlib.ExitStack() as stack:
            pg_url = stack.enter_context(embedded.postgres(work / "pg"))
            redis_url = None if options.ceiling_only else stack.enter_context(embedded.redis_server(work / "redis"))
            return await run_against(pg_url, redis_url, work, options)
    finally:
        shutil.rmtree(work, ignore_errors=True)


async def run_against(pg_url: str, redis_url: str | None, work: pathlib.Path, options: Options) -> dict[str, Any]:
    progress("PostgreSQL up")
    database_url = await fresh_database(pg_url)
    admin = await asyncpg.connect(database_url)
    try:
        server = {
            name: await admin.fetchval(f"SHOW {name}")
            for name in ("server_version", "synchronous_commit", "fsync", "wal_sync_method", "shared_buffers")
        }
        server["embedded"] = "DATABASE_URL" not in os.environ
        postgres = await postmaster(admin)
        await admin.execute(CEILING_DDL)
        load_generator = psutil.Process()
        cpu_common: dict[str, CpuReader] = {"load_generator": lambda: self_cpu_s(load_generator)}
        if postgres is not None:
            cpu_common["postgres"] = lambda: tree_cpu_s(postgres)
        codes: collections.Counter[str] = collections.Counter()
        top = max(options.concurrency)
        async with asyncpg.create_pool(database_url, min_size=top, max_size=top) as pool:
            calls: dict[str, dict[int, Call]] = {
                "ceiling": {c: ceiling_call(pool, CEILING_ACCOUNTS) for c in options.concurrency},
                "ceiling_contended": {c: ceiling_call(pool, CEILING_CONTENDED_ACCOUNTS) for c in options.concurrency},
            }
            cpu = {name: cpu_common for name in CEILING_WORKLOADS}
            if options.ceiling_only or redis_url is None:
                rounds = await run_rounds(calls, cpu, codes, options)
            else:
                rounds = await with_service(
                    database_url,
                    redis_url,
                    work=work,
                    options=options,
                    calls=calls,
                    cpu=cpu,
                    cpu_common=cpu_common,
                    codes=codes,
                )
        progress("rounds done")
        await check_ceiling(admin)
        await admin.execute(f"DROP SCHEMA {CEILING_SCHEMA} CASCADE")
    finally:
        await admin.close()
    return summarize(rounds, server, options)


async def with_service(
    database_url: str,
    redis_url: str,
    *,
    work: pathlib.Path,
    options: Options,
    calls: dict[str, dict[int, Call]],
    cpu: dict[str, dict[str, CpuReader]],
    cpu_common: dict[str, CpuReader],
    codes: collections.Counter[str],
) -> dict[str, dict[int, list[dict[str, Any]]]]:
    await asyncio.to_thread(migrations.upgrade, "ledger", database_url)
    progress("ledger schema migrated")
    port = embedded.free_port()
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "LEDGER_PORT": str(port),
        "SERVICE_TOKEN_SECRET": SERVICE_TOKEN_SECRET,
        "NERAVA_DEV_MODE": "true",  # the bench's own services keep the development defaults of other secrets
        "LOG_LEVEL": "WARNING",
        # Traces sampled as in production (1 % of new traces; a sampled caller is always followed), not
        # recorded for every request.
        "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
        "OTEL_TRACES_SAMPLER_ARG": "0.01",
        "PYTHONPATH": f"{ROOT}:{ROOT / 'gen'}",
    }
    log = work / "ledger.log"
    async with started([sys.executable, "-m", "services.ledger"], env, log) as service:
        await wait_started(service, f"127.0.0.1:{port}", log)
        progress("ledger service serving")
        service_process = psutil.Process(service.pid)
        service_cpu: dict[str, CpuReader] = {"service": lambda: tree_cpu_s(service_process), **cpu_common}
        redis = embedded_redis()
        if redis is not None:
            service_cpu["redis"] = lambda: self_cpu_s(redis)
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            tokens = ServiceTokens(Secret(SERVICE_TOKEN_SECRET), "bench")
            load = LedgerLoad(ledger_pb2_grpc.LedgerServiceStub(channel), tokens, codes)
            top = max(options.concurrency)
            pairs = [
                Pair(driver_account(str(uuid.uuid4())), merchant_account(f"bench-merchant-{i}")) for i in range(top)
            ]
            drivers = [driver_account(str(uuid.uuid4())) for _ in range(CONTENDED_DRIVERS)]
            merchants = [merchant_account(f"bench-shared-merchant-{i}") for i in range(CONTENDED_MERCHANTS)]
            await fund(load, [pair.driver for pair in pairs] + drivers, log)
            progress(f"{len(pairs) + len(drivers)} driver accounts funded")
            codes.clear()
            ledger_calls = {
                "ledger_distinct": {c: load.distinct(pairs[:c]) for c in options.concurrency},
                "ledger_contended": {c: load.contended(drivers, merchants) for c in options.concurrency},
            }
            return await run_rounds(
                {**ledger_calls, **calls}, {**dict.fromkeys(LEDGER_WORKLOADS, service_cpu), **cpu}, codes, options
            )


def summarize(
    rounds: dict[str, dict[int, list[dict[str, Any]]]], server: dict[str, Any], options: Options
) -> dict[str, Any]:
    chosen = {name: {c: median_round(results) for c, results in by.items()} for name, by in rounds.items()}

    def ratio(numerator: str, denominator: str, clients: int) -> float | None:
        if numerator not in chosen or denominator not in chosen:
            return None
        below = chosen[denominator][clients]["requests_per_s"]
        return round(chosen[numerator][clients]["requests_per_s"] / below, 3) if below else None

    ratios = {
        f"{numerator}_to_{denominator}": {str(c): ratio(numerator, denominator, c) for c in options.concurrency}
        for numerator, denominator in (
            ("ledger_distinct", "ceiling"),
            ("ledger_contended", "ceiling_contended"),
            ("ledger_contended", "ceiling"),
            ("ceiling_contended", "ceiling"),
        )
        if numerator in chosen
    }
    headline_value = ratio("ledger_distinct", "ceiling", 16) if 16 in options.concurrency else None
    return {
        "headline": {"metric": "ratio_to_ceiling_16_clients", "value": headline_value, "unit": "", "target": 0.4},
        "ratios": ratios,
        "concurrency": options.concurrency,
        "measured_seconds_per_round": options.seconds,
        "warmup_seconds_per_round": options.warmup_s,
        "rounds": options.rounds,
        "workloads": {
            name: {
                str(c): {
                    "median": chosen[name][c],
                    "all_rounds_transfers_per_s": [r["requests_per_s"] for r in results],
                    "all_rounds": results,
                }
                for c, results in by.items()
            }
            for name, by in rounds.items()
        },
        "notes": {
            "requests_per_s": "transfers per second of the measured window (each request is one transfer)",
            "cpu_us_per_request": "CPU µs per transfer of each process, warm-up included; postgres = postmaster "
            "and all its children",
            "ledger_distinct": "PostTransfer REDEMPTION driver Nova → merchant Nova, 1-5 points; each in-flight "
            "call holds its own driver/merchant pair",
            "ledger_contended": f"the same among {CONTENDED_DRIVERS} drivers and {CONTENDED_MERCHANTS} merchants",
            "ceiling": f"asyncpg, one transaction: INSERT transfer, 2 UPDATE account (id order) among "
            f"{CEILING_ACCOUNTS}, INSERT 2 entries; prepared statements; server default synchronous_commit",
            "ceiling_contended": f"the same SQL among {CEILING_CONTENDED_ACCOUNTS} accounts",
        },
        "postgres": server,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
    }


def report(results: dict[str, Any]) -> None:
    for name, by in results["workloads"].items():
        for clients, entry in by.items():
            r = entry["median"]
            errors = f"errors {r['errors']}" + (f" {r['error_codes']}" if r.get("error_codes") else "")
            print(
                f"{name:18s} {clients:>3s} clients {r['requests_per_s']:>8.1f} transfers/s  "
                f"p50 {r['p50_ms']:>7.2f} ms  p99 {r['p99_ms']:>7.2f} ms  {errors}  "
                f"CPU µs/transfer {r['cpu_us_per_request']}"
            )
    for name, by_clients in results["ratios"].items():
        print(f"{name:38s} " + "  ".join(f"{c} clients: {v}" for c, v in by_clients.items()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--seconds", type=float, default=4.0, help="measured seconds per round, workload and concurrency"
    )
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--warmup", type=float, default=1.0, help="seconds of load before each measured window")
    parser.add_argument(
        "--concurrency", type=lambda s: [int(c) for c in s.split(",")], default=[16, 64], help="e.g. 16,64"
    )
    parser.add_argument("--ceiling-only", action="store_true", help="only the bare-SQL ceiling; writes no file")
    args = parser.parse_args()
    options = Options(sorted(set(args.concurrency)), args.seconds, args.warmup, args.rounds, args.ceiling_only)
    results = uvloop.run(run(options))
    report(results)
    if options.ceiling_only:
        print("ceiling only: no results file written")
        return
    path = write_results("ledger", results)
    headline = results["headline"]
    print(f"{headline['metric']} = {headline['value']} (target ≥ {headline['target']})  → {path.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
