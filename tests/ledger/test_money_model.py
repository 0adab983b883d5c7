"""The ledger's auditor (test_model.py), extended across services: a Hypothesis state machine drives the real
incentives, merchants and ledger services (over gRPC) and the fake Stripe with random sequences of campaign
funding (Stripe or the platform), grants, clawbacks, Nova redemptions, payouts, cancellations and stale second
payments that must be refunded — and after every step the cross-service reconciliation (services/reconcile) must
hold, as must the ledger's own invariants. Each step also checks what it can predict itself (a cancellation
refunds exactly the remainder; a stale payment is refunded whole, through Stripe).

The servers run on the session event loop; the machine is synchronous, so it runs in a worker thread with
synchronous channels and an event loop of its own for the reconciliation. The fake Stripe's state is changed on
the session loop (`on_main`), where its server runs."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import os
import uuid
from collections import Counter
from collections.abc import Callable
from typing import Any, TypeVar

import grpc
from google.api import httpbody_pb2
from hypothesis import HealthCheck, Phase, note, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from nerava.incentives.v1 import incentives_pb2 as ipb
from nerava.incentives.v1 import incentives_pb2_grpc
from nerava.ledger.v1 import ledger_pb2 as lpb
from nerava.ledger.v1 import ledger_pb2_grpc
from nerava.merchants.v1 import merchants_pb2 as mpb
from nerava.merchants.v1 import merchants_pb2_grpc

from fakes.stripe import FakeStripe
from services.common.db import create_engine
from services.incentives.adapters.stripe_checkout import StripeCheckout
from services.ledger.invariants import violations
from tests.incentives.helpers import campaign_request, ended_session, funding_answered
from tests.merchants.helpers import Merchants, new_charger
from tests.support.eventually import eventually_sync
from tests.support.mesh import Mesh
from tests.support.people import NewPerson, Person
from tests.support.reconcile import reconciled
from tests.support.rpc import as_service

T = TypeVar("T")
DRIVERS = 3
CAMPAIGNS_PER_RUN = 3  # so that most steps use the campaigns rather than fund more
SETTINGS = settings(
    max_examples=int(os.environ.get("MONEY_AUDIT_EXAMPLES", "8")),
    stateful_step_count=int(os.environ.get("MONEY_AUDIT_STEPS", "16")),
    deadline=None,
    database=None,
    # The same sequences every run (MONEY_AUDIT_EXAMPLES=200 for a longer, still reproducible, audit): the suite
    # stays short and the check that the audit moved money cannot flake.
    derandomize=True,
    report_multiple_bugs=False,
    phases=[Phase.generate, Phase.shrink],
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)


@dataclasses.dataclass
class World:
    """What the machine works with, built on the session loop before it starts."""

    main: asyncio.AbstractEventLoop
    stripe: FakeStripe
    addresses: dict[str, str]
    database_url: str
    sponsor: Person
    admin: Person
    drivers: list[Person]
    qr_token: str
    since: datetime.datetime
    # Steps that did something, by rule: the audit must not pass by doing nothing.
    done: Counter[str] = dataclasses.field(default_factory=Counter)

    def on_main(self, change: Callable[[], T]) -> T:
        """Runs a change of the fake Stripe on the loop its server runs on."""

        async def run() -> T:
            return change()

        return asyncio.run_coroutine_threadsafe(run(), self.main).result()


@dataclasses.dataclass
class Campaign:
    id: str
    charger: str
    by_stripe: bool
    nova: bool
    canceled: bool = False


@dataclasses.dataclass
class Grant:
    id: str
    driver: int


class MoneyAuditor(RuleBasedStateMachine):
    world: World
    campaigns = Bundle("campaigns")
    grants = Bundle("grants")

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.channels = {name: grpc.insecure_channel(address) for name, address in self.world.addresses.items()}
        self.incentives = incentives_pb2_grpc.IncentivesServiceStub(self.channels["incentives"])
        self.ledger = ledger_pb2_grpc.LedgerServiceStub(self.channels["ledger"])
        self.merchants = merchants_pb2_grpc.MerchantsServiceStub(self.channels["merchants"])
        self.engine = create_engine(self.world.database_url, "ledger", pool_size=1, max_overflow=0)
        # Which kinds of reward were granted so far: redeeming needs Nova, a payout needs cash.
        self.earned: set[bool] = set()
        self.funded = 0

    # --- helpers -----------------------------------------------------------------------------------------------

    def campaign(self, campaign_id: str) -> ipb.Campaign:
        request = ipb.GetCampaignRequest(campaign_id=campaign_id)
        return self.incentives.GetCampaign(request, metadata=self.world.sponsor.auth).campaign

    def pay(self, session_id: str) -> str:
        """Pays the checkout at the fake Stripe and delivers the signed webhook; the PaymentIntent id."""
        completed = self.world.on_main(lambda: self.world.stripe.complete_checkout_session(session_id))
        payload, header = self.world.stripe.signed_event("checkout.session.completed", completed)
        self.ledger.HandleStripeEvent(
            lpb.HandleStripeEventRequest(
                http_body=httpbody_pb2.HttpBody(content_type="application/json", data=payload)
            ),
            metadata=(("stripe-signature", header),),
        )
        return str(completed["payment_intent"])

    def wait(self, check: Callable[[], bool], what: str) -> None:
        """Waits for `check`, which may run the model's loop itself (so it is called outside it); between tries
        the loop runs, so the work it carries goes on meanwhile."""

        def holds() -> None:
            if not check():
                self.loop.run_until_complete(asyncio.sleep(0.05))
                raise AssertionError(f"never: {what}")

        eventually_sync(holds, within=5, interval=0)

    def balance(self, ref: lpb.AccountRef) -> int:
        try:
            return self.ledger.GetAccount(
                lpb.GetAccountRequest(account=ref), metadata=as_service("incentives")
            ).account.balance
        except grpc.RpcError as error:
            if error.code() == grpc.StatusCode.NOT_FOUND:  # type: ignore[attr-defined]
                return 0
            raise

    def driver_account(self, driver: int, kind: int) -> lpb.AccountRef:
        currency = lpb.CURRENCY_NOVA_POINTS if kind == lpb.ACCOUNT_TYPE_DRIVER_NOVA else lpb.CURRENCY_CASH_CENTS
        return lpb.AccountRef(type=kind, owner_id=self.world.drivers[driver].user_id, currency=currency)  # type: ignore[arg-type]

    # --- rules ------------------------------------------------------------------------------------------------

    @precondition(lambda self: self.funded < CAMPAIGNS_PER_RUN)
    @rule(target=campaigns, nova=st.booleans(), by_stripe=st.booleans(), reward=st.sampled_from([500, 2500]))
    def fund_campaign(self, nova: bool, by_stripe: bool, reward: int) -> Campaign:
        charger = f"audit-{uuid.uuid4().hex[:10]}"
        created = self.incentives.CreateCampaign(
            campaign_request(
                reward_kind=ipb.REWARD_KIND_NOVA if nova else ipb.REWARD_KIND_CASH,
                cost_per_session_cents=reward,
                budget_cents=10_000,
                rules=ipb.CampaignRules(charger_ids=[charger]),
            ),
            metadata=self.world.sponsor.auth,
        ).campaign
        if by_stripe:
            opened = self.incentives.FundCampaign(
                ipb.FundCampaignRequest(campaign_id=created.id), metadata=self.world.sponsor.auth
            )
            self.pay(opened.session_id)
            # Answered (not merely ACTIVE): the next rule may evaluate a session at once (see funding_answered).
            self.wait(
                lambda: self.loop.run_until_complete(funding_answered(self.engine, opened.session_id)),
                "funded by Stripe",
            )
            assert self.campaign(created.id).status == ipb.CAMPAIGN_STATUS_ACTIVE
        else:
            self.incentives.FundCampaignFromPlatform(
                ipb.FundCampaignFromPlatformRequest(
                    campaign_id=created.id, reason="audit: platform pays", request_id=str(uuid.uuid4())
                ),
                metadata=self.world.admin.auth,
            )
            self.incentives.ActivateCampaign(
                ipb.ActivateCampaignRequest(campaign_id=created.id), metadata=self.world.admin.auth
            )
        note(
            f"campaign {created.id[:8]}: {'Nova' if nova else 'cash'} {reward}, {'Stripe' if by_stripe else 'platform'}"
        )
        self.world.done["fund"] += 1
        self.funded += 1
        return Campaign(created.id, charger, by_stripe, nova)

    @rule(target=grants, campaign=campaigns.filter(lambda c: not c.canceled), driver=st.integers(0, DRIVERS - 1))
    def grant(self, campaign: Campaign, driver: int) -> Any:
        session = ended_session(self.world.drivers[driver].user_id, charger_id=campaign.charger)
        reply = self.incentives.EvaluateSession(
            ipb.EvaluateSessionRequest(session=session), metadata=as_service("sessions")
        )
        note(f"driver {driver} at {campaign.id[:8]}: {ipb.EvaluationOutcome.Name(reply.outcome)}")
        if reply.outcome != ipb.EVALUATION_OUTCOME_GRANTED:
            assert (
                campaign.canceled
                or self.campaign(campaign.id).status != ipb.CAMPAIGN_STATUS_ACTIVE
                or (self.campaign(campaign.id).remaining_cents < self.campaign(campaign.id).cost_per_session_cents)
            ), reply
            return []
        self.world.done["grant"] += 1
        self.earned.add(campaign.nova)
        return Grant(reply.grant.id, driver)

    @rule(grant=grants)
    def claw_back(self, grant: Grant) -> None:
        request = ipb.ClawbackGrantRequest(grant_id=grant.id, reason="audit clawback", request_id=str(uuid.uuid4()))
        try:
            reply = self.incentives.ClawbackGrant(request, metadata=self.world.admin.auth)
        except grpc.RpcError as error:
            # The driver already spent or withdrew it: the ledger cannot take it back (balances never go negative).
            assert error.code() == grpc.StatusCode.FAILED_PRECONDITION, error  # type: ignore[attr-defined]
            note(f"clawback of {grant.id[:8]} refused: {error.details()}")  # type: ignore[attr-defined]
            return
        assert reply.grant.status == ipb.GRANT_STATUS_CLAWED_BACK
        after = self.campaign(reply.grant.campaign_id)
        if after.status == ipb.CAMPAIGN_STATUS_CANCELED:
            # The reward came back to a canceled campaign: it went on to the sponsor at once, not at a next cancel.
            assert reply.campaign_remaining_cents == after.remaining_cents == 0, (reply, after)
        self.world.done["clawback"] += 1
        note(f"grant {grant.id[:8]} clawed back")

    @rule(campaign=campaigns, now=st.booleans())
    def cancel(self, campaign: Campaign, now: bool) -> None:
        if not now:  # half the draws: a canceled campaign ends what the other rules can do with it
            return
        # Grants still in flight are part of what is spent; wait for their credits so the ledger holds the rest.
        before = self.campaign(campaign.id)
        reply = self.incentives.CancelCampaign(
            ipb.CancelCampaignRequest(campaign_id=campaign.id), metadata=self.world.sponsor.auth
        )
        assert reply.refunded_cents == before.remaining_cents, (reply.refunded_cents, before.remaining_cents)
        assert reply.campaign.remaining_cents == 0
        assert reply.campaign.status in (ipb.CAMPAIGN_STATUS_CANCELED, ipb.CAMPAIGN_STATUS_ENDED)
        campaign.canceled = True
        self.world.done["cancel"] += 1
        note(f"campaign {campaign.id[:8]} canceled, {reply.refunded_cents} refunded")

    @rule(campaign=campaigns, now=st.integers(0, 2))
    def pay_a_stale_second_checkout(self, campaign: Campaign, now: int) -> None:
        """Another payable session for the campaign, paid: the ledger must refund it whole."""
        if now:  # a third of the draws: each costs a Stripe round trip and a refund
            return

        async def open_stale() -> str:
            stripe = self.world.stripe
            async with StripeCheckout(api_key=stripe.api_key, base_url=stripe.base_url) as checkout:
                session = await checkout.create_checkout_session(
                    campaign_id=campaign.id,
                    gross_cents=10_000,
                    platform_fee_bps=2000,
                    reward_currency=lpb.Currency.Name(self.campaign_currency(campaign)),  # type: ignore[arg-type]
                    success_url="https://console.nerava.test/ok",
                    cancel_url="https://console.nerava.test/no",
                    idempotency_key=None,
                )
            return session.session_id

        intent = self.pay(self.loop.run_until_complete(open_stale()))
        self.wait(lambda: self.world.stripe.refunded_cents(intent) == 10_000, "the stale payment refunded")
        note(f"stale payment for {campaign.id[:8]} refunded")
        self.world.done["refund"] += 1

    def campaign_currency(self, campaign: Campaign) -> int:
        kind = self.campaign(campaign.id).reward_kind
        return lpb.CURRENCY_NOVA_POINTS if kind == ipb.REWARD_KIND_NOVA else lpb.CURRENCY_CASH_CENTS

    def richest(self, kind: int) -> tuple[int, int]:
        """(driver, balance) of the driver holding the most of this account type."""
        return max(((d, self.balance(self.driver_account(d, kind))) for d in range(DRIVERS)), key=lambda x: x[1])

    @precondition(lambda self: True in self.earned)
    @rule(order=st.sampled_from([150, 1200]))
    def redeem(self, order: int) -> None:
        driver, nova = self.richest(lpb.ACCOUNT_TYPE_DRIVER_NOVA)
        if nova <= 0:
            return
        reply = self.merchants.RedeemAtCheckout(
            mpb.RedeemAtCheckoutRequest(
                qr_token=self.world.qr_token, order_total_cents=order, idempotency_key=str(uuid.uuid4())
            ),
            metadata=self.world.drivers[driver].auth,
        )
        assert reply.discount_cents == min(300, nova, order), (reply, nova)
        note(f"driver {driver} redeemed {reply.discount_cents} Nova")
        self.world.done["redeem"] += 1

    @precondition(lambda self: False in self.earned)
    @rule()
    def payout(self) -> None:
        driver, cash = self.richest(lpb.ACCOUNT_TYPE_DRIVER_CASH)
        if cash < 2_000:
            return
        person = self.world.drivers[driver]
        try:
            reply = self.ledger.RequestPayout(
                lpb.RequestPayoutRequest(amount_cents=2_000, request_id=str(uuid.uuid4())), metadata=person.auth
            )
        except grpc.RpcError as error:
            # The daily and weekly limits span the examples (the drivers are the same): a refusal moves nothing.
            assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, error  # type: ignore[attr-defined]
            return
        # Stripe announces the transfer; the webhook settles the payout as paid.
        transfer = self.world.on_main(lambda: self.world.stripe.transfer(reply.transfer_id))
        payload, header = self.world.stripe.signed_event("transfer.created", transfer)
        self.ledger.HandleStripeEvent(
            lpb.HandleStripeEventRequest(
                http_body=httpbody_pb2.HttpBody(content_type="application/json", data=payload)
            ),
            metadata=(("stripe-signature", header),),
        )
        note(f"driver {driver} withdrew 2000")
        self.world.done["payout"] += 1

    # --- after every step -------------------------------------------------------------------------------------

    @invariant()
    def money_reconciles(self) -> None:
        report = self.loop.run_until_complete(reconciled(self.engine, self.world.stripe, self.world.since, within=5))
        assert report.holds, "\n".join(report.lines())
        problems = self.loop.run_until_complete(violations(self.engine))
        assert not problems, problems

    def teardown(self) -> None:
        for channel in self.channels.values():
            channel.close()
        self.loop.run_until_complete(self.engine.dispose())
        self.loop.close()


async def _onboarded_driver(person: NewPerson, mesh: Mesh, stripe: FakeStripe) -> Person:
    driver = await person()
    ledger = ledger_pb2_grpc.LedgerServiceStub(mesh.channels["ledger"])
    account = await ledger.CreateStripeAccount(lpb.CreateStripeAccountRequest(), metadata=driver.auth)
    stripe.complete_onboarding(account.stripe_account_id)
    await ledger.GetStripeStatus(lpb.GetStripeStatusRequest(), metadata=driver.auth)
    return driver


async def test_money_reconciles_after_every_step_of_random_flows(
    mesh: Mesh, person: NewPerson, admin: Person, stripe_fake: FakeStripe, database_url: str
) -> None:
    sessions_engine = create_engine(database_url, "sessions", pool_size=1, max_overflow=0)
    try:
        merchants = Merchants(
            merchants_pb2_grpc.MerchantsServiceStub(mesh.channels["merchants"]),
            ledger_pb2_grpc.LedgerServiceStub(mesh.channels["ledger"]),
            sessions_engine,
        )
        shop = await merchants.create_store(admin, await person("merchant"), charger=await new_charger(sessions_engine))
    finally:
        await sessions_engine.dispose()
    world = World(
        main=asyncio.get_running_loop(),
        stripe=stripe_fake,
        addresses={name: mesh.address(name) for name in ("incentives", "ledger", "merchants")},
        database_url=database_url,
        sponsor=await person("sponsor"),
        admin=admin,
        drivers=[await _onboarded_driver(person, mesh, stripe_fake) for _ in range(DRIVERS)],
        qr_token=shop.qr_token,
        since=datetime.datetime.now(datetime.UTC),
    )

    class Audit(MoneyAuditor):
        pass

    Audit.world = world
    await asyncio.to_thread(run_state_machine_as_test, Audit, settings=SETTINGS)
    print(f"money audit steps that moved money: {dict(world.done)}")
    assert {"fund", "grant", "clawback", "cancel", "refund", "redeem", "payout"} <= set(world.done), world.done
