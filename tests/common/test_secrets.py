"""Secrets with a public development default are refused outside the explicit development mode, and internal
RPCs take only service tokens signed with this deployment's own key — one that rotates without downtime."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import pathlib
import secrets
import subprocess
import sys
from collections.abc import Callable, Mapping

import grpc
import pytest
from nerava.accounts.v1 import accounts_pb2, accounts_pb2_grpc

from services.accounts.config import AccountsSettings
from services.common.auth import SERVICE_TOKEN_HEADER, ServiceTokens
from services.common.config import DEV_MODE_VARIABLE, ConfigError, Env, RuntimeSettings, Secret
from services.incentives.config import IncentivesSettings
from services.ledger.config import LedgerSettings
from services.merchants.config import MerchantsSettings
from services.sessions.config import SessionsSettings
from tests.support.mesh import Mesh, running_mesh
from tests.support.rpc import error_reason

ROOT = pathlib.Path(__file__).resolve().parent.parent.parent


def _key() -> str:
    return base64.b64encode(secrets.token_bytes(32)).decode()


# Per service: how its settings are read, and a production value for each secret that has a development
# default. A secret added with a development default and missing here makes the production case fail below.
SERVICES: Mapping[str, tuple[Callable[[Env], object], Mapping[str, str]]] = {
    "accounts": (
        AccountsSettings.from_env,
        {
            "ACCOUNTS_SIGNING_KEY_PASSPHRASE": secrets.token_urlsafe(24),
            "TWILIO_ACCOUNT_SID": "AC123",
            "TWILIO_AUTH_TOKEN": secrets.token_urlsafe(24),
            "TWILIO_VERIFY_SERVICE_SID": "VA123",
        },
    ),
    "sessions": (
        SessionsSettings.from_env,
        {"TESLA_CLIENT_SECRET": secrets.token_urlsafe(24), "VEHICLE_TOKEN_KEYS": f"1:{_key()}"},
    ),
    "incentives": (IncentivesSettings.from_env, {"STRIPE_API_KEY": "sk_live_" + secrets.token_urlsafe(24)}),
    "ledger": (
        LedgerSettings.from_env,
        {"STRIPE_API_KEY": "sk_live_" + secrets.token_urlsafe(24), "STRIPE_WEBHOOK_SECRET": "whsec_" + _key()},
    ),
    "merchants": (
        MerchantsSettings.from_env,
        {
            "PREVIEW_SIGNING_KEY": secrets.token_urlsafe(32),
            "SQUARE_APPLICATION_SECRET": secrets.token_urlsafe(24),
            "SQUARE_TOKEN_KEYS": _key(),
        },
    ),
}
# Where the development default of each secret can be read: every secret with a dev default has one.
DEVELOPMENT_VALUES: Mapping[str, str] = {
    "ACCOUNTS_SIGNING_KEY_PASSPHRASE": "dev-only-signing-key-passphrase",
    "PREVIEW_SIGNING_KEY": "dev-only-preview-signing-key",
    "STRIPE_WEBHOOK_SECRET": "whsec_local",
}


def _production(service: str) -> dict[str, str]:
    return {"SERVICE_TOKEN_SECRET": secrets.token_urlsafe(32), **SERVICES[service][1]}


@pytest.mark.parametrize("service", list(SERVICES))
def test_production_starts_when_every_secret_is_provided(service: str) -> None:
    read, _ = SERVICES[service]
    read(Env(_production(service)))


@pytest.mark.parametrize(("service", "variable"), [(s, v) for s, (_, values) in SERVICES.items() for v in values])
def test_a_missing_secret_is_refused_outside_development_mode(service: str, variable: str) -> None:
    read, _ = SERVICES[service]
    env = _production(service)
    del env[variable]
    with pytest.raises(ConfigError, match=variable):
        read(Env(env))


@pytest.mark.parametrize("variable", list(DEVELOPMENT_VALUES))
def test_the_public_development_value_is_refused_even_when_set_explicitly(variable: str) -> None:
    [service] = [s for s, (_, values) in SERVICES.items() if variable in values]
    read, _ = SERVICES[service]
    with pytest.raises(ConfigError, match=variable):
        read(Env({**_production(service), variable: DEVELOPMENT_VALUES[variable]}))
    read(Env({**_production(service), variable: DEVELOPMENT_VALUES[variable], DEV_MODE_VARIABLE: "true"}))


@pytest.mark.parametrize("service", list(SERVICES))
def test_development_mode_runs_on_the_defaults_but_still_needs_a_service_token_secret(service: str) -> None:
    read, _ = SERVICES[service]
    read(Env({DEV_MODE_VARIABLE: "true", "SERVICE_TOKEN_SECRET": secrets.token_urlsafe(32), "OTP_PROVIDER": "stub"}))
    with pytest.raises(ConfigError, match="SERVICE_TOKEN_SECRET"):
        read(Env({DEV_MODE_VARIABLE: "true", "OTP_PROVIDER": "stub"}))


def test_a_short_service_token_secret_is_refused() -> None:
    with pytest.raises(ConfigError, match="at least 32"):
        RuntimeSettings.from_env("ledger", Env({"SERVICE_TOKEN_SECRET": "dev-only-service-token-secret"}))
    with pytest.raises(ConfigError, match="at least 32"):
        RuntimeSettings.from_env(
            "ledger",
            Env({"SERVICE_TOKEN_SECRET": secrets.token_urlsafe(32), "SERVICE_TOKEN_ALSO_ACCEPTED": "short"}),
        )


def test_a_service_process_refuses_to_start_on_a_development_default() -> None:
    env = {
        key: value
        for key, value in os.environ.items()
        if key != DEV_MODE_VARIABLE and not key.startswith(("PREVIEW_", "SQUARE_", "SERVICE_TOKEN"))
    }
    env.update(PYTHONPATH=f"{ROOT}:{ROOT / 'gen'}", SERVICE_TOKEN_SECRET=secrets.token_urlsafe(32))
    process = subprocess.run(
        [sys.executable, "-m", "services.merchants"],
        check=False,
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert process.returncode != 0
    assert "PREVIEW_SIGNING_KEY must be set" in process.stderr


# ------------------------------------------------------------------------------------------------------------
# Service tokens


def test_a_token_signed_with_another_deployments_key_is_refused() -> None:
    ours, theirs = Secret(secrets.token_urlsafe(32)), Secret(secrets.token_urlsafe(32))
    forged = ServiceTokens(theirs, "ledger").mint()
    with pytest.raises(Exception, match="does not accept"):
        ServiceTokens(ours, "accounts").verify(forged)


async def _get_user(mesh: Mesh, token: str) -> grpc.StatusCode:
    stub = accounts_pb2_grpc.AccountsServiceStub(mesh.channels["accounts"])
    try:
        await stub.GetUser(
            accounts_pb2.GetUserRequest(user_id="00000000-0000-4000-8000-000000000000"),
            metadata=((SERVICE_TOKEN_HEADER, token),),
            timeout=5,
        )
    except grpc.aio.AioRpcError as error:
        if error.code() == grpc.StatusCode.UNAUTHENTICATED:
            return error.code()
        assert error_reason(error) != "UNAUTHENTICATED"
        return grpc.StatusCode.OK  # authenticated: any other answer (NOT_FOUND) is past the service-token check
    return grpc.StatusCode.OK


async def test_service_token_secret_rotates_with_calls_in_flight(mesh: Mesh) -> None:
    old, new = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    old_caller, new_caller = ServiceTokens(Secret(old), "ledger"), ServiceTokens(Secret(new), "ledger")

    def replica(secret: str, also: str = "") -> contextlib.AbstractAsyncContextManager[Mesh]:
        env = {**mesh.env, "ACCOUNTS_PORT": "0", "SERVICE_TOKEN_SECRET": secret, "SERVICE_TOKEN_ALSO_ACCEPTED": also}
        return running_mesh(env, services=("accounts",))

    replicas: list[Mesh] = []
    refused: list[tuple[str, int]] = []
    calls = 0
    stop = asyncio.Event()

    async def traffic() -> None:
        # Callers of both generations, spread over whichever replicas are up, like a rolling update.
        nonlocal calls
        while not stop.is_set():
            for caller, name in ((old_caller, "old"), (new_caller, "new")):
                if name == "new" and not new_in_use.is_set():
                    continue
                for index, target in enumerate(list(replicas)):
                    calls += 1
                    if await _get_user(target, caller.mint()) != grpc.StatusCode.OK:
                        refused.append((name, index))
            if new_in_use.is_set() and calls >= 60:
                enough.set()
            await asyncio.sleep(0)

    new_in_use, enough = asyncio.Event(), asyncio.Event()
    async with contextlib.AsyncExitStack() as stack:
        replicas.append(await stack.enter_async_context(replica(old)))  # before: everyone signs with old
        running = asyncio.create_task(traffic())
        # (1) every replica accepts the new key too, while still signing with the old one
        step1 = await stack.enter_async_context(replica(old, also=new))
        replicas[:] = [step1]
        # (2) replicas sign with the new key and still accept the old one; callers of both generations coexist
        step2 = await stack.enter_async_context(replica(new, also=old))
        new_in_use.set()
        replicas[:] = [step1, step2]
        await asyncio.wait_for(enough.wait(), timeout=60)
        stop.set()
        await running
        assert refused == []
        # (3) the old key is retired: tokens signed with it no longer pass, the new ones do
        step3 = await stack.enter_async_context(replica(new))
        assert await _get_user(step3, old_caller.mint()) == grpc.StatusCode.UNAUTHENTICATED
        assert await _get_user(step3, new_caller.mint()) == grpc.StatusCode.OK


def _runtime_config(overlay: str) -> dict[str, str]:
    from tools import k8s_check

    [config] = [
        obj
        for obj in k8s_check.render(overlay)
        if obj["kind"] == "ConfigMap" and "nerava-runtime" in obj["metadata"]["name"]
    ]
    return dict(config["data"])


def test_only_the_dev_overlay_runs_the_services_in_development_mode() -> None:
    assert _runtime_config("dev").get(DEV_MODE_VARIABLE) == "true"
    assert DEV_MODE_VARIABLE not in _runtime_config("prod")
