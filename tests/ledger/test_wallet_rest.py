"""The driver's wallet over REST through Envoy, and who may call what."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
from nerava.ledger.v1 import ledger_pb2 as pb
from sqlalchemy.ext.asyncio import AsyncEngine

from fakes.twilio_verify import FakeTwilioVerify
from services.accounts.seed import ensure_phone_user
from services.common.db import create_engine
from tests.ledger.helpers import CASH, Ledger, assert_ledger_sound, budget, driver_cash, external, new_key
from tests.support.rpc import random_phone


async def _login(rest: httpx.AsyncClient, twilio: FakeTwilioVerify, phone: str) -> dict[str, Any]:
    await rest.post("/v1/auth/otp/start", json={"phone": phone})
    reply = await rest.post("/v1/auth/otp/verify", json={"phone": phone, "code": twilio.last_code_sent_to(phone)})
    assert reply.status_code == 200, reply.text
    body: dict[str, Any] = reply.json()
    return body


def _auth(login: dict[str, Any]) -> dict[str, str]:
    return {"Authorization": f"Bearer {login['access_token']}"}


async def _cash_grant(ledger: Ledger, driver: str, amount: int, campaign: str | None) -> None:
    """A funded campaign's cash grant; without a campaign name, one whose transfer records nothing about it."""
    campaign_id = uuid.uuid4().hex[:10]
    await ledger.post(
        pb.PostTransferRequest(
            idempotency_key=new_key(),
            kind=pb.TRANSFER_KIND_CAMPAIGN_FUNDING,
            currency=CASH,
            amount=amount,
            from_account=external(CASH),
            to_account=budget(campaign_id),
        )
    )
    await ledger.post(
        pb.PostTransferRequest(
            idempotency_key=new_key(),
            kind=pb.TRANSFER_KIND_CAMPAIGN_GRANT,
            currency=CASH,
            amount=amount,
            from_account=budget(campaign_id),
            to_account=driver_cash(driver),
            metadata=pb.TransferMetadata(campaign_id=campaign_id, campaign_name=campaign, sponsor_name="Volta")
            if campaign
            else None,
        )
    )


async def test_a_driver_reads_their_own_wallet(
    rest: httpx.AsyncClient, twilio: FakeTwilioVerify, ledger: Ledger, ledger_engine: AsyncEngine
) -> None:
    login = await _login(rest, twilio, random_phone())
    driver = login["user"]["public_id"]
    await _cash_grant(ledger, driver, 250, "Night Owl")
    await ledger.grant_nova(driver, 40)
    balance = (await rest.get("/v1/wallet/balance", headers=_auth(login))).json()
    assert balance["available_cents"] == 250
    assert balance["total_earned_cents"] == 250
    assert balance["nova_balance"] == 40
    assert balance["can_withdraw"] is False
    assert balance["minimum_withdrawal_cents"] == 2000
    assert balance["pending_cents"] == 0  # primitives are printed even when zero
    entries = (await rest.get("/v1/wallet/ledger?limit=10", headers=_auth(login))).json()
    assert entries["count"] == 1
    entry = entries["entries"][0]
    assert (entry["amount_cents"], entry["balance_after_cents"], entry["transaction_type"]) == (250, 250, "credit")
    assert (entry["description"], entry["campaign_name"], entry["sponsor_name"]) == (
        "Earned from Night Owl",
        "Night Owl",
        "Volta",
    )
    spend = ledger.redemption(driver, "m-" + uuid.uuid4().hex[:8], 15)
    spend.metadata.CopyFrom(pb.TransferMetadata(merchant_name="Asado Coffee", redemption_id="r-1"))
    await ledger.post(spend)
    timeline = (await rest.get("/v1/wallet/timeline?limit=5", headers=_auth(login))).json()
    assert isinstance(timeline, list)  # the legacy page reads a bare array
    assert [item["type"] for item in timeline] == ["SPENT", "EARNED", "EARNED"]  # newest first
    assert (timeline[0]["amount_cents"], timeline[0]["title"], timeline[0]["redemption_id"]) == (
        15,
        "Asado Coffee",
        "r-1",
    )
    assert {item["amount_cents"] for item in timeline[1:]} == {250, 40}
    other = await _login(rest, twilio, random_phone())
    theirs = (await rest.get("/v1/wallet/balance", headers=_auth(other))).json()
    assert theirs["available_cents"] == 0  # a driver sees only their own wallet
    await assert_ledger_sound(ledger_engine)


async def test_drivers_cannot_call_internal_or_admin_ledger_methods(
    rest: httpx.AsyncClient, twilio: FakeTwilioVerify
) -> None:
    login = await _login(rest, twilio, random_phone())
    driver = login["user"]["public_id"]
    transfer = {
        "idempotency_key": new_key(),
        "kind": "TRANSFER_KIND_ADMIN_GRANT",
        "currency": "CURRENCY_NOVA_POINTS",
        "amount": "1000",
        "from_account": {
            "type": "ACCOUNT_TYPE_EXTERNAL_FUNDING",
            "owner_id": "world",
            "currency": "CURRENCY_NOVA_POINTS",
        },
        "to_account": {"type": "ACCOUNT_TYPE_DRIVER_NOVA", "owner_id": driver, "currency": "CURRENCY_NOVA_POINTS"},
    }
    minted = await rest.post("/v1/internal/ledger/transfers", json=transfer, headers=_auth(login))
    assert minted.status_code == 403
    grant = {"driver_id": driver, "amount": 500, "reason": "please", "idempotency_key": str(uuid.uuid4())}
    assert (await rest.post("/v1/admin/nova:grant", json=grant, headers=_auth(login))).status_code == 403
    balance = (await rest.get("/v1/wallet/balance", headers=_auth(login))).json()
    assert balance["nova_balance"] == 0


async def test_a_write_admin_grants_nova_once_and_it_is_audited(
    rest: httpx.AsyncClient, twilio: FakeTwilioVerify, database_url: str, ledger: Ledger
) -> None:
    admin_phone = random_phone()
    accounts_engine = create_engine(database_url, "accounts")
    await ensure_phone_user(accounts_engine, admin_phone, ["admin"])
    await accounts_engine.dispose()
    admin = await _login(rest, twilio, admin_phone)
    driver = (await _login(rest, twilio, random_phone()))["user"]["public_id"]
    grant = {"driver_id": driver, "amount": 300, "reason": "support goodwill", "idempotency_key": str(uuid.uuid4())}
    first = await rest.post("/v1/admin/nova:grant", json=grant, headers=_auth(admin))
    assert first.status_code == 200, first.text
    again = (await rest.post("/v1/admin/nova:grant", json=grant, headers=_auth(admin))).json()
    assert again["replayed"] is True
    assert again["transfer_id"] == first.json()["transfer_id"]
    assert again["balance_after"] == 300
    listed = await ledger.stub.ListTransfers(
        pb.ListTransfersRequest(
            account=pb.AccountRef(type=pb.ACCOUNT_TYPE_DRIVER_NOVA, owner_id=driver, currency=pb.CURRENCY_NOVA_POINTS)
        ),
        metadata=ledger.metadata,
    )
    assert len(listed.transfers) == 1
    audit = listed.transfers[0].metadata
    assert (audit.reason, audit.actor_id) == ("support goodwill", admin["user"]["public_id"])
    zero = await rest.post(
        "/v1/admin/nova:grant", json={**grant, "amount": 0, "idempotency_key": str(uuid.uuid4())}, headers=_auth(admin)
    )
    assert zero.status_code == 400


async def test_a_clawback_names_the_grant_s_campaign_and_a_bare_entry_names_nothing(
    rest: httpx.AsyncClient, twilio: FakeTwilioVerify, ledger: Ledger, ledger_engine: AsyncEngine
) -> None:
    login = await _login(rest, twilio, random_phone())
    driver = login["user"]["public_id"]
    await _cash_grant(ledger, driver, 300, "Night Owl")
    entries = (await rest.get("/v1/wallet/ledger?limit=10", headers=_auth(login))).json()["entries"]
    grant_id = entries[0]["id"]
    grant = await ledger.stub.ListTransfers(
        pb.ListTransfersRequest(account=driver_cash(driver)), metadata=ledger.metadata
    )
    await ledger.stub.ReverseTransfer(
        pb.ReverseTransferRequest(
            idempotency_key=new_key(), transfer_id=grant.transfers[0].id, reason="session disputed"
        ),
        metadata=ledger.metadata,
    )
    await _cash_grant(ledger, driver, 50, None)  # nothing recorded: no campaign, no sponsor, nothing to show
    bare, clawback, credit = (await rest.get("/v1/wallet/ledger?limit=10", headers=_auth(login))).json()["entries"]
    assert credit["id"] == grant_id
    assert (clawback["transaction_type"], clawback["amount_cents"]) == ("reversal", -300)
    assert (clawback["description"], clawback["campaign_name"], clawback["sponsor_name"]) == (
        "Reversed: session disputed",
        "Night Owl",
        "Volta",
    )
    assert bare["description"] == "Charging reward"
    assert "campaign_name" not in bare and "sponsor_name" not in bare, bare  # unknown is absent, never ""
    await assert_ledger_sound(ledger_engine)
