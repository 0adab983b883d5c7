"""The typed client against the running services: a call to each service with a person's token and with the
service secret, typed answers (enums, datetimes), and every kind of refusal raised as its exception with
the ErrorInfo reason. The sync client runs in a thread: the services answer on this test's event loop."""

from __future__ import annotations

import asyncio
import datetime
import uuid
from collections.abc import Callable
from typing import TypeVar

import pytest

import nerava_client
from nerava_client import Client, accounts, incentives, ledger, merchants, sessions
from nerava_client.errors import (
    FailedPrecondition,
    InvalidArgument,
    NeravaError,
    NotFound,
    PermissionDenied,
    Unauthenticated,
    Unavailable,
)
from tests.support.mesh import Mesh
from tests.support.people import NewPerson, Person
from tests.support.rpc import TEST_SERVICE_SECRET
from tools.embedded import free_port

T = TypeVar("T")


def targets(mesh: Mesh) -> dict[str, str]:
    return {name: mesh.address(name) for name in mesh.ports}


async def call(client: Client, action: Callable[[Client], T]) -> T:
    return await asyncio.to_thread(action, client)


async def test_a_person_reads_every_service_with_typed_answers(mesh: Mesh, person: NewPerson) -> None:
    driver: Person = await person()
    with Client(token=driver.token, targets=targets(mesh)) as client:
        me = await call(client, lambda c: c.accounts.get_me(accounts.GetMeRequest()))
        assert me.user is not None
        assert me.user.public_id == driver.user_id
        assert me.user.roles == [accounts.Role.DRIVER]
        assert isinstance(me.user.created_at, datetime.datetime)
        assert me.user.created_at.tzinfo is not None

        wallet = await call(client, lambda c: c.ledger.get_wallet_balance(ledger.GetWalletBalanceRequest()))
        assert wallet.available_cents == 0

        found = await call(client, lambda c: c.sessions.search_chargers(sessions.SearchChargersRequest(q="Austin")))
        assert isinstance(found, sessions.SearchChargersResponse)

        campaigns = await call(
            client, lambda c: c.incentives.list_driver_campaigns(incentives.ListDriverCampaignsRequest())
        )
        assert isinstance(campaigns, incentives.ListDriverCampaignsResponse)

        with pytest.raises(NotFound) as missing:
            await call(client, lambda c: c.merchants.get_merchant(merchants.GetMerchantRequest(merchant_id="nope")))
        assert missing.value.reason == "MERCHANT_NOT_FOUND"


async def test_the_service_secret_reaches_internal_rpcs(mesh: Mesh, person: NewPerson) -> None:
    driver = await person()
    with Client(service_secret=TEST_SERVICE_SECRET, targets=targets(mesh)) as client:
        user = await call(client, lambda c: c.accounts.get_user(accounts.GetUserRequest(user_id=driver.user_id)))
    assert user.user is not None
    assert user.user.public_id == driver.user_id


async def test_refusals_are_exceptions_carrying_the_error_info(mesh: Mesh, person: NewPerson) -> None:
    driver, admin = await person(), await person("admin")
    with Client(token=driver.token, targets=targets(mesh)) as as_driver:
        with pytest.raises(PermissionDenied) as denied:
            await call(as_driver, lambda c: c.accounts.list_users(accounts.ListUsersRequest()))
        assert denied.value.reason == "PERMISSION_DENIED"
        with pytest.raises(InvalidArgument) as invalid:
            await call(as_driver, lambda c: c.ledger.request_payout(ledger.RequestPayoutRequest(amount_cents=-5)))
        assert invalid.value.fields, "a BadRequest names the offending fields"
    with Client(token=admin.token, targets=targets(mesh)) as as_admin:
        with pytest.raises(NotFound) as missing:
            request = incentives.ClawbackGrantRequest(
                grant_id=str(uuid.uuid4()), reason="a test", request_id=str(uuid.uuid4())
            )
            await call(as_admin, lambda c: c.incentives.clawback_grant(request))
        assert missing.value.reason == "GRANT_NOT_FOUND"
        assert "GRANT_NOT_FOUND" in str(missing.value)
    with Client(token="not-a-token", targets=targets(mesh)) as stranger, pytest.raises(Unauthenticated):
        await call(stranger, lambda c: c.accounts.get_me(accounts.GetMeRequest()))
    with Client(targets=targets(mesh)) as anonymous, pytest.raises(Unauthenticated):
        await call(anonymous, lambda c: c.ledger.get_wallet_balance(ledger.GetWalletBalanceRequest()))
    assert issubclass(FailedPrecondition, NeravaError)


async def test_an_unreachable_service_is_unavailable_after_the_retries(mesh: Mesh) -> None:
    closed = f"127.0.0.1:{free_port()}"
    with Client(targets={**targets(mesh), "accounts": closed}, timeout_s=30) as client, pytest.raises(Unavailable):
        await call(client, lambda c: c.accounts.get_me(accounts.GetMeRequest()))


def test_a_credential_is_a_token_or_the_secret_not_both() -> None:
    with pytest.raises(ValueError, match="not both"):
        Client(token="t", service_secret="s")


def test_the_package_exports_the_messages_of_every_service() -> None:
    assert set(nerava_client.__all__) == {
        "Client",
        "NeravaError",
        "default_targets",
        "accounts",
        "incentives",
        "ledger",
        "merchants",
        "sessions",
    }
    assert nerava_client.default_targets({"LEDGER_ADDR": "ledger:9"})["ledger"] == "ledger:9"
