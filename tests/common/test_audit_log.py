"""The audit log: an entry for each audited action, in the action's own transaction (an entry that cannot be
written stops the action; an action that rolls back leaves no entry), append-only in the database, and one
merged, paged admin query over every service's table."""

from __future__ import annotations

import base64
import datetime
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
import sqlalchemy as sa
from nerava.accounts.v1 import accounts_pb2, accounts_pb2_grpc
from nerava.audit.v1 import audit_pb2
from nerava.incentives.v1 import incentives_pb2, incentives_pb2_grpc
from nerava.ledger.v1 import ledger_pb2, ledger_pb2_grpc
from nerava.merchants.v1 import merchants_pb2, merchants_pb2_grpc
from nerava.sessions.v1 import sessions_pb2, sessions_pb2_grpc
from sqlalchemy.ext.asyncio import AsyncEngine

from fakes.stripe import FakeStripe
from services.common import audit
from services.common.context import Caller, caller_var
from services.common.db import create_engine
from tests.incentives.helpers import Incentives
from tests.merchants.helpers import new_charger
from tests.support.mesh import Mesh
from tests.support.people import NewPerson, Person
from tests.support.rpc import as_service, error_reason

CASH = ledger_pb2.CURRENCY_CASH_CENTS


@pytest.fixture
async def engines(database_url: str) -> AsyncIterator[dict[str, AsyncEngine]]:
    made = {name: create_engine(database_url, name) for name in ("accounts", "ledger", "sessions")}
    yield made
    for engine in made.values():
        await engine.dispose()


def _with_request_id(person: Person, request_id: str) -> tuple[tuple[str, str], ...]:
    return (*person.auth, ("x-request-id", request_id))


async def _entries(mesh: Mesh, admin: Person, **filters: Any) -> list[audit_pb2.AuditEntry]:
    stub = accounts_pb2_grpc.AccountsServiceStub(mesh.channels["accounts"])
    reply = await stub.ListAuditEntries(
        accounts_pb2.ListAuditEntriesRequest(page_size=500, **filters), metadata=admin.auth
    )
    return list(reply.entries)


async def _onboarded_driver(mesh: Mesh, driver: Person, stripe: FakeStripe, cash: int) -> None:
    ledger = ledger_pb2_grpc.LedgerServiceStub(mesh.channels["ledger"])
    created = await ledger.CreateStripeAccount(
        ledger_pb2.CreateStripeAccountRequest(email="d@example.com"), metadata=driver.auth
    )
    stripe.complete_onboarding(created.stripe_account_id)
    await ledger.GetStripeStatus(ledger_pb2.GetStripeStatusRequest(), metadata=driver.auth)
    campaign = uuid.uuid4().hex[:10]
    for kind, source, target in (
        (
            ledger_pb2.TRANSFER_KIND_CAMPAIGN_FUNDING,
            ledger_pb2.AccountRef(type=ledger_pb2.ACCOUNT_TYPE_EXTERNAL_FUNDING, owner_id="stripe", currency=CASH),
            ledger_pb2.AccountRef(type=ledger_pb2.ACCOUNT_TYPE_CAMPAIGN_BUDGET, owner_id=campaign, currency=CASH),
        ),
        (
            ledger_pb2.TRANSFER_KIND_CAMPAIGN_GRANT,
            ledger_pb2.AccountRef(type=ledger_pb2.ACCOUNT_TYPE_CAMPAIGN_BUDGET, owner_id=campaign, currency=CASH),
            ledger_pb2.AccountRef(type=ledger_pb2.ACCOUNT_TYPE_DRIVER_CASH, owner_id=driver.user_id, currency=CASH),
        ),
    ):
        await ledger.PostTransfer(
            ledger_pb2.PostTransferRequest(
                idempotency_key=uuid.uuid4().hex,
                kind=kind,
                currency=CASH,
                amount=cash,
                from_account=source,
                to_account=target,
            ),
            metadata=as_service("incentives"),
        )


async def test_every_audited_action_leaves_one_entry_with_actor_reason_and_request_id(
    mesh: Mesh,
    person: NewPerson,
    admin: Person,
    driver: Person,
    stripe_fake: FakeStripe,
    engines: dict[str, AsyncEngine],
) -> None:
    rid = uuid.uuid4().hex  # one request id for all of this admin's calls: each entry must carry it
    as_admin = _with_request_id(admin, rid)
    accounts = accounts_pb2_grpc.AccountsServiceStub(mesh.channels["accounts"])
    incentives_stub = incentives_pb2_grpc.IncentivesServiceStub(mesh.channels["incentives"])
    ledger = ledger_pb2_grpc.LedgerServiceStub(mesh.channels["ledger"])
    promoted = await person()
    helper = Incentives(incentives_stub, ledger)  # type: ignore[arg-type]

    # accounts: a role change and a flag toggle
    await accounts.SetUserRoles(
        accounts_pb2.SetUserRolesRequest(
            user_id=promoted.user_id, roles=[accounts_pb2.ROLE_SPONSOR, accounts_pb2.ROLE_DRIVER], reason="pilot"
        ),
        metadata=as_admin,
    )
    sponsor = await person("sponsor")
    flag = (await accounts.GetFlag(accounts_pb2.GetFlagRequest(name="places_geocoding"))).flag
    await accounts.ToggleFlag(
        accounts_pb2.ToggleFlagRequest(name="places_geocoding", enabled=flag.enabled, reason="audit test"),
        metadata=as_admin,
    )
    # incentives: platform funding, activation, a clawback, a cancellation (whose refund the ledger audits)
    draft = await helper.create(sponsor, budget_cents=500)
    await incentives_stub.FundCampaignFromPlatform(
        incentives_pb2.FundCampaignFromPlatformRequest(
            campaign_id=draft.id, reason="partner launch", request_id=str(uuid.uuid4())
        ),
        metadata=as_admin,
    )
    await incentives_stub.ActivateCampaign(
        incentives_pb2.ActivateCampaignRequest(campaign_id=draft.id), metadata=as_admin
    )
    granted = await helper.evaluate(helper.session(driver.user_id))
    await incentives_stub.ClawbackGrant(
        incentives_pb2.ClawbackGrantRequest(
            grant_id=granted.grant.id, reason="duplicate session", request_id=str(uuid.uuid4())
        ),
        metadata=as_admin,
    )
    await incentives_stub.CancelCampaign(incentives_pb2.CancelCampaignRequest(campaign_id=draft.id), metadata=as_admin)
    # ledger: an admin grant, a fee period closed, a payout (by the driver)
    await ledger.AdminGrant(
        ledger_pb2.AdminGrantRequest(
            driver_id=driver.user_id, amount=50, reason="goodwill", idempotency_key=str(uuid.uuid4())
        ),
        metadata=as_admin,
    )
    await ledger.CloseMerchantFeePeriod(
        ledger_pb2.CloseMerchantFeePeriodRequest(
            merchant_id=f"m_{uuid.uuid4().hex[:12]}", month="2026-01", status=ledger_pb2.FEE_PERIOD_STATUS_INVOICED
        ),
        metadata=as_admin,
    )
    await _onboarded_driver(mesh, driver, stripe_fake, cash=2500)
    payout = await ledger.RequestPayout(
        ledger_pb2.RequestPayoutRequest(amount_cents=2000, request_id=str(uuid.uuid4())),
        metadata=_with_request_id(driver, rid),
    )
    # merchants: a merchant created and linked to a charger; sessions: a charger import
    merchants = merchants_pb2_grpc.MerchantsServiceStub(mesh.channels["merchants"])
    charger_id, lat, lng = await new_charger(engines["sessions"])
    created = await merchants.CreateMerchant(
        merchants_pb2.CreateMerchantRequest(
            request_id=str(uuid.uuid4()),
            merchant=merchants_pb2.Merchant(name="Audit Coffee", category="coffee", lat=lat, lng=lng, zone_slug="z"),
        ),
        metadata=as_admin,
    )
    await merchants.LinkCharger(
        merchants_pb2.LinkChargerRequest(merchant_id=created.merchant.id, charger_id=charger_id), metadata=as_admin
    )
    sessions = sessions_pb2_grpc.SessionsServiceStub(mesh.channels["sessions"])
    await sessions.ImportChargers(
        sessions_pb2.ImportChargersRequest(
            source="manual",
            chargers=[sessions_pb2.ChargerRecord(external_id=uuid.uuid4().hex, name="Audit charger", lat=1, lng=2)],
        ),
        metadata=as_admin,
    )

    mine = await _entries(mesh, admin, actor=admin.user_id)
    by_action: dict[str, list[audit_pb2.AuditEntry]] = {}
    for entry in mine:
        by_action.setdefault(entry.action, []).append(entry)
    expected = {
        "user.roles.set": f"user:{promoted.user_id}",
        "flag.toggle": "flag:places_geocoding",
        "campaign.fund_from_platform": f"campaign:{draft.id}",
        "campaign.activate": f"campaign:{draft.id}",
        "grant.clawback": f"grant:{granted.grant.id}",
        "campaign.cancel": f"campaign:{draft.id}",
        "nova.grant": f"driver:{driver.user_id}",
        "fee_period.close": None,
        "merchant.create": f"merchant:{created.merchant.id}",
        "charger.link": f"merchant:{created.merchant.id}",
        "chargers.import": "source:manual",
    }
    for action, target in expected.items():
        assert len(by_action.get(action, [])) == 1, action
        entry = by_action[action][0]
        assert entry.request_id == rid, action
        if target is not None:
            assert entry.target == target, action
    assert by_action["grant.clawback"][0].reason == "duplicate session"
    assert by_action["nova.grant"][0].details["amount_nova"] == "50"
    # Booleans read as JSON writes them, not as Python prints them.
    toggled = by_action["flag.toggle"][0].details
    assert (toggled["before"], toggled["after"]) == (str(flag.enabled).lower(), str(flag.enabled).lower())
    assert by_action["grant.clawback"][0].service == "incentives"
    assert by_action["merchant.create"][0].service == "merchants"
    # The refund of the canceled campaign moved money: the ledger audits it under the same request id, acted
    # by the service the admin's cancel called.
    refunds = await _entries(mesh, admin, action="campaign.refund", target=f"campaign:{draft.id}")
    assert [(e.actor, e.request_id, e.details["refunded_cents"]) for e in refunds] == [
        ("service:incentives", rid, "400")
    ]
    payouts = await _entries(mesh, admin, actor=driver.user_id, action="payout.")
    assert [(e.target, e.request_id) for e in payouts] == [(f"payout:{payout.payout_id}", rid)]


async def test_an_action_and_its_entry_commit_or_roll_back_together(
    mesh: Mesh, admin: Person, driver: Person, engines: dict[str, AsyncEngine]
) -> None:
    ledger = ledger_pb2_grpc.LedgerServiceStub(mesh.channels["ledger"])
    # An entry written in a transaction that then fails is gone with it.
    target = f"test:{uuid.uuid4().hex}"
    token = caller_var.set(Caller(user_id=admin.user_id))
    try:
        with pytest.raises(RuntimeError):
            async with engines["ledger"].begin() as conn:
                await audit.record(conn, "test.rollback", target, "rolled back")
                raise RuntimeError("the action failed after its entry")
    finally:
        caller_var.reset(token)
    assert await _entries(mesh, admin, target=target) == []
    # A refused action writes no entry: a payout without a Stripe account.
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await ledger.RequestPayout(
            ledger_pb2.RequestPayoutRequest(amount_cents=2000, request_id=str(uuid.uuid4())), metadata=driver.auth
        )
    assert error_reason(refused.value) == "STRIPE_ACCOUNT_MISSING"
    assert await _entries(mesh, admin, actor=driver.user_id) == []
    # An entry that cannot be written stops the action: with the ledger's audit_log refusing inserts, an admin
    # grant moves nothing.
    async with engines["ledger"].begin() as conn:
        await conn.execute(
            sa.text(
                "CREATE TRIGGER audit_log_test_refuse_insert BEFORE INSERT ON audit_log "
                "FOR EACH ROW EXECUTE FUNCTION audit_log_refuse_change()"
            )
        )
    try:
        with pytest.raises(grpc.aio.AioRpcError):
            await ledger.AdminGrant(
                ledger_pb2.AdminGrantRequest(
                    driver_id=driver.user_id, amount=70, reason="goodwill", idempotency_key=str(uuid.uuid4())
                ),
                metadata=admin.auth,
            )
    finally:
        async with engines["ledger"].begin() as conn:
            await conn.execute(sa.text("DROP TRIGGER audit_log_test_refuse_insert ON audit_log"))
    with pytest.raises(grpc.aio.AioRpcError) as untouched:
        await ledger.GetAccount(
            ledger_pb2.GetAccountRequest(
                account=ledger_pb2.AccountRef(
                    type=ledger_pb2.ACCOUNT_TYPE_DRIVER_NOVA,
                    owner_id=driver.user_id,
                    currency=ledger_pb2.CURRENCY_NOVA_POINTS,
                )
            ),
            metadata=as_service("merchants"),
        )
    assert untouched.value.code() == grpc.StatusCode.NOT_FOUND  # no transfer ever touched the driver's Nova


@pytest.mark.parametrize(
    "statement",
    ["UPDATE audit_log SET reason = 'edited'", "DELETE FROM audit_log", "TRUNCATE audit_log"],
)
async def test_the_audit_log_is_append_only_in_the_database(
    mesh: Mesh, admin: Person, engines: dict[str, AsyncEngine], statement: str
) -> None:
    accounts = accounts_pb2_grpc.AccountsServiceStub(mesh.channels["accounts"])
    await accounts.ToggleFlag(
        accounts_pb2.ToggleFlagRequest(name="places_geocoding", reason="append-only check"), metadata=admin.auth
    )
    await accounts.ToggleFlag(
        accounts_pb2.ToggleFlagRequest(name="places_geocoding", reason="append-only check"), metadata=admin.auth
    )
    # The refusal is a row trigger (a TRUNCATE one for the whole table): the ledger's log gets a row of its own, so
    # the check does not depend on which tests ran before in this database.
    async with engines["ledger"].begin() as conn:
        await audit.record(conn, "test.append_only", "ledger:audit_log")
    for name in ("accounts", "ledger"):
        with pytest.raises(sa.exc.DBAPIError, match="append-only"):
            async with engines[name].begin() as conn:
                await conn.execute(sa.text(statement))
    entries = await _entries(mesh, admin, actor=admin.user_id, action="flag.toggle")
    assert [e.reason for e in entries] == ["append-only check"] * 2


async def test_the_merged_listing_pages_over_every_service_without_gaps_or_repeats(
    mesh: Mesh, admin: Person, driver: Person
) -> None:
    accounts = accounts_pb2_grpc.AccountsServiceStub(mesh.channels["accounts"])
    ledger = ledger_pb2_grpc.LedgerServiceStub(mesh.channels["ledger"])
    for _ in range(3):
        await accounts.ToggleFlag(
            accounts_pb2.ToggleFlagRequest(name="telemetry_ingestion", enabled=True, reason="paging"),
            metadata=admin.auth,
        )
        await ledger.AdminGrant(
            ledger_pb2.AdminGrantRequest(
                driver_id=driver.user_id, amount=1, reason="paging", idempotency_key=str(uuid.uuid4())
            ),
            metadata=admin.auth,
        )
    whole = await _entries(mesh, admin, actor=admin.user_id)
    assert len(whole) == 6 and {e.service for e in whole} == {"accounts", "ledger"}
    assert [e.occurred_at.ToDatetime() for e in whole] == sorted(
        (e.occurred_at.ToDatetime() for e in whole), reverse=True
    )
    paged: list[str] = []
    token = ""
    while True:
        reply = await accounts.ListAuditEntries(
            accounts_pb2.ListAuditEntriesRequest(actor=admin.user_id, page_size=4, page_token=token),
            metadata=admin.auth,
        )
        paged += [e.id for e in reply.entries]
        token = reply.next_page_token
        if not token:
            break
    assert paged == [e.id for e in whole]
    # Time filters and a token reused with other filters.
    later = datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=1)
    since = accounts_pb2.ListAuditEntriesRequest(actor=admin.user_id)
    since.since.FromDatetime(later)
    assert list((await accounts.ListAuditEntries(since, metadata=admin.auth)).entries) == []
    first = await accounts.ListAuditEntries(
        accounts_pb2.ListAuditEntriesRequest(actor=admin.user_id, page_size=2), metadata=admin.auth
    )
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await accounts.ListAuditEntries(
            accounts_pb2.ListAuditEntriesRequest(actor=driver.user_id, page_token=first.next_page_token),
            metadata=admin.auth,
        )
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_only_admins_read_the_audit_log_and_only_services_a_services_part(
    mesh: Mesh, driver: Person, person: NewPerson
) -> None:
    accounts = accounts_pb2_grpc.AccountsServiceStub(mesh.channels["accounts"])
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await accounts.ListAuditEntries(accounts_pb2.ListAuditEntriesRequest(), metadata=driver.auth)
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
    reader = await person("admin_readonly")
    await accounts.ListAuditEntries(accounts_pb2.ListAuditEntriesRequest(), metadata=reader.auth)
    ledger = ledger_pb2_grpc.LedgerServiceStub(mesh.channels["ledger"])
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await ledger.ListAuditEntries(ledger_pb2.ListAuditEntriesRequest(), metadata=reader.auth)
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED


async def test_a_forged_page_token_is_invalid_argument(mesh: Mesh, admin: Person) -> None:
    stub = accounts_pb2_grpc.AccountsServiceStub(mesh.channels["accounts"])
    for reason in ("forged one", "forged two"):
        await stub.ToggleFlag(
            accounts_pb2.ToggleFlagRequest(name="places_geocoding", reason=reason), metadata=admin.auth
        )
    mine = accounts_pb2.ListAuditEntriesRequest(actor=admin.user_id, page_size=1)
    issued = (await stub.ListAuditEntries(mine, metadata=admin.auth)).next_page_token
    position = json.loads(base64.urlsafe_b64decode(issued + "=" * (-len(issued) % 4)))

    def forged(**changes: object) -> str:
        return base64.urlsafe_b64encode(json.dumps({**position, **changes}).encode()).decode().rstrip("=")

    for token in ("bm90IGpzb24", "W10", forged(s=10**30), forged(s=999_999_999_999), forged(id="x"), forged(f="0")):
        request = accounts_pb2.ListAuditEntriesRequest(actor=admin.user_id, page_size=1, page_token=token)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.ListAuditEntries(request, metadata=admin.auth)
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT, token
    request = accounts_pb2.ListAuditEntriesRequest(actor=admin.user_id, page_size=1, page_token=forged())
    assert [e.reason for e in (await stub.ListAuditEntries(request, metadata=admin.auth)).entries] == ["forged one"]
