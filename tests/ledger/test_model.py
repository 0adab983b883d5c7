"""An auditor of the ledger, in the spirit of TigerBeetle's: a Hypothesis state machine drives the real
LedgerService over gRPC with random requests over a few shared accounts, predicts every reply from a
pure-Python model (balances, transfers, reservation states, reversed amounts, idempotency keys and the
outcome each one remembers), and after every step checks the real invariants on the database and the
balances of the accounts the step touched. Every run starts with wallets for all drivers but one, so that
spending is mostly possible and debits from accounts that never existed (ACCOUNT_NOT_FOUND) still happen.

The mesh's servers run on the session event loop while a state machine is synchronous, so the machine runs
in a worker thread with a synchronous channel, and checks the invariants on an event loop of its own."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import uuid
from collections.abc import Callable, Mapping
from typing import Any, ClassVar, cast

import grpc
from google.protobuf.message import Message
from google.rpc import error_details_pb2, status_pb2
from hypothesis import HealthCheck, Phase, note, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    MultipleResults,
    RuleBasedStateMachine,
    initialize,
    invariant,
    multiple,
    precondition,
    rule,
    run_state_machine_as_test,
)
from nerava.ledger.v1 import ledger_pb2 as pb
from nerava.ledger.v1 import ledger_pb2_grpc

from services.common.db import create_engine
from services.ledger.invariants import violations
from tests.support.mesh import Mesh
from tests.support.rpc import as_service

NOVA = pb.CURRENCY_NOVA_POINTS
CASH = pb.CURRENCY_CASH_CENTS
EXTERNAL = pb.ACCOUNT_TYPE_EXTERNAL_FUNDING

# Small pools, so that steps collide on the same accounts all the time.
DRIVERS, MERCHANTS, BUDGETS = 4, 3, 2
drivers = st.integers(0, DRIVERS - 1)
merchants = st.integers(0, MERCHANTS - 1)
budgets = st.integers(0, BUDGETS - 1)
amounts = st.integers(1, 300)

# A longer audit: LEDGER_AUDIT_EXAMPLES=500 (about 20 s per 25 examples on a small database).
SETTINGS = settings(
    max_examples=int(os.environ.get("LEDGER_AUDIT_EXAMPLES", "25")),
    stateful_step_count=40,
    deadline=None,
    database=None,  # no .hypothesis directory in the repository; a failure prints its steps
    report_multiple_bugs=False,  # shrink one failure (a few minutes), not every distinct one
    phases=[Phase.generate, Phase.shrink],  # no explain phase: it replays the failure many more times
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)

# The gRPC code of each refusal reason (ledger.proto).
CODES: Mapping[str, grpc.StatusCode] = {
    "ACCOUNT_NOT_FOUND": grpc.StatusCode.FAILED_PRECONDITION,  # when a transfer would debit it
    "INSUFFICIENT_BALANCE": grpc.StatusCode.FAILED_PRECONDITION,
    "IDEMPOTENCY_KEY_REUSED": grpc.StatusCode.ABORTED,
    "TRANSFER_ALREADY_REVERSED": grpc.StatusCode.ALREADY_EXISTS,
    "TRANSFER_NOT_RESERVED": grpc.StatusCode.FAILED_PRECONDITION,
}

Key = tuple[int, str, int]  # (account type, owner id, currency)


def _ref(key: Key) -> pb.AccountRef:
    return pb.AccountRef(type=key[0], owner_id=key[1], currency=key[2])  # type: ignore[arg-type]


def _key(ref: pb.AccountRef) -> Key:
    return (ref.type, ref.owner_id, ref.currency)


@dataclasses.dataclass(frozen=True)
class Refusal:
    """A failed call as the caller sees it: the gRPC code and the ErrorInfo."""

    code: grpc.StatusCode
    reason: str
    domain: str
    metadata: Mapping[str, str]


def _refusal(error: grpc.RpcError) -> Refusal:
    call = cast(grpc.Call, error)
    status = status_pb2.Status()
    for name, value in call.trailing_metadata() or ():
        if name == "grpc-status-details-bin" and isinstance(value, bytes):
            status = status_pb2.Status.FromString(value)
    for detail in status.details:
        info = error_details_pb2.ErrorInfo()
        if detail.Unpack(info):
            return Refusal(call.code(), info.reason, info.domain, dict(info.metadata))
    return Refusal(call.code(), "", "", {})


@dataclasses.dataclass(frozen=True)
class Move:
    """A movement the model expects the ledger to post."""

    kind: int
    phase: int
    currency: int
    source: Key
    target: Key
    amount: int
    reversal_of: str = ""
    reservation_id: str = ""
    pending_to: Key | None = None


@dataclasses.dataclass(frozen=True)
class Refuse:
    """A refusal the model expects. metadata None: not documented, not checked; mentions: a value that the
    metadata must contain; otherwise: another refusal the contract allows just as well."""

    reason: str
    metadata: Mapping[str, str] | None = None
    mentions: str | None = None
    otherwise: Refuse | None = None


@dataclasses.dataclass
class ModelTransfer:
    id: str
    kind: int
    phase: int
    currency: int
    source: Key
    target: Key
    amount: int
    reversed_amount: int = 0
    reversals: list[str] = dataclasses.field(default_factory=list)
    state: int = pb.RESERVATION_STATE_UNSPECIFIED  # RESERVE transfers: open, posted or voided
    pending_to: Key | None = None


@dataclasses.dataclass(frozen=True)
class Outcome:
    """What the ledger answered the first time: a transfer (and the balances after it), or a refusal."""

    transfer: pb.Transfer | None
    balances_after: tuple[int | None, int | None]
    refusal: Refusal | None


@dataclasses.dataclass(frozen=True)
class Sent:
    method: str
    request: Message
    outcome: Outcome


@dataclasses.dataclass(frozen=True)
class Handle:
    """A request the ledger remembers under its key (it reached post_transfer()): what later steps replay,
    reuse, reverse or settle."""

    key: str
    transfer_id: str = ""
    reversible: bool = False  # a posted single-phase transfer that is not itself a reversal
    reservation: bool = False  # a posted RESERVE


@dataclasses.dataclass(frozen=True)
class Harness:
    """What the machines of one run share: the ledger stub and the invariant checker."""

    stub: ledger_pb2_grpc.LedgerServiceStub
    violations: Callable[[], list[str]]


def _balances_after(reply: Any) -> tuple[int | None, int | None]:
    fields = reply.DESCRIPTOR.fields_by_name
    return (
        reply.from_balance_after if "from_balance_after" in fields else None,
        reply.to_balance_after if "to_balance_after" in fields else None,
    )


class LedgerAuditor(RuleBasedStateMachine):
    requests = Bundle("requests")

    harness: ClassVar[Harness]  # set by the subclass each run binds (see _audit)

    def __init__(self) -> None:
        super().__init__()
        self.run = uuid.uuid4().hex[:10]  # owners and keys of this run only
        self.metadata = as_service("incentives")
        self.keys_issued = 0
        self.balances: dict[Key, int] = {}
        self.debits: dict[Key, int] = {}
        self.credits: dict[Key, int] = {}
        self.opened: set[Key] = set()  # accounts a posted transfer moved value in or out of: they exist
        # Accounts only named by refused requests. Whether a refusal opens an (empty) account is not part of
        # the contract, so these may or may not exist; every other account must not.
        self.named: set[Key] = set()
        self.transfers: dict[str, ModelTransfer] = {}
        self.sent: dict[str, Sent] = {}
        self.touched: set[Key] = set()
        self.reversible = 0
        self.reservations = 0

    # --- accounts and names ------------------------------------------------------------------------

    def driver_nova(self, i: int) -> Key:
        return (pb.ACCOUNT_TYPE_DRIVER_NOVA, f"{self.run}-driver-{i}", NOVA)

    def driver_cash(self, i: int) -> Key:
        return (pb.ACCOUNT_TYPE_DRIVER_CASH, f"{self.run}-driver-{i}", CASH)

    def in_flight(self, owner: str) -> Key:
        return (pb.ACCOUNT_TYPE_PAYOUTS_IN_FLIGHT, owner, CASH)

    def merchant_nova(self, i: int) -> Key:
        return (pb.ACCOUNT_TYPE_MERCHANT_NOVA, f"{self.run}-merchant-{i}", NOVA)

    def budget(self, i: int) -> Key:
        return (pb.ACCOUNT_TYPE_CAMPAIGN_BUDGET, f"{self.run}-campaign-{i}", CASH)

    @property
    def minted_nova(self) -> Key:
        return (EXTERNAL, f"{self.run}-issuance", NOVA)

    @property
    def sponsors_cash(self) -> Key:
        return (EXTERNAL, f"{self.run}-sponsors", CASH)

    @property
    def stripe(self) -> Key:
        return (EXTERNAL, f"{self.run}-stripe", CASH)

    def all_accounts(self) -> set[Key]:
        accounts = {self.minted_nova, self.sponsors_cash, self.stripe}
        for i in range(DRIVERS):
            accounts |= {self.driver_nova(i), self.driver_cash(i), self.in_flight(self.driver_cash(i)[1])}
        accounts |= {self.merchant_nova(i) for i in range(MERCHANTS)}
        accounts |= {self.budget(i) for i in range(BUDGETS)}
        return accounts

    def name(self, key: Key) -> str:
        return f"{pb.AccountType.Name(key[0]).removeprefix('ACCOUNT_TYPE_')}:{key[1].removeprefix(self.run + '-')}"

    def new_key(self) -> str:
        self.keys_issued += 1
        return f"audit:{self.run}:{self.keys_issued}"

    # --- the model ---------------------------------------------------------------------------------

    def plan(self, move: Move, *, requested: int | None, up_to_available: bool = False) -> Move | Refuse:
        """The checks of post_transfer(): a debited account must exist (EXTERNAL_FUNDING opens on first use);
        only EXTERNAL_FUNDING may go below zero; up_to_available moves what the source holds, and still
        refuses when that is nothing."""
        balance = self.balances.get(move.source, 0)
        may_go_negative = move.source[0] == EXTERNAL
        amount = min(move.amount, balance) if up_to_available and not may_go_negative else move.amount
        insufficient = Refuse("INSUFFICIENT_BALANCE", {"balance": str(balance), "amount": str(requested or amount)})
        if not may_go_negative and move.source not in self.opened:
            missing = Refuse("ACCOUNT_NOT_FOUND")
            # Only named by refused requests: an empty account, or none at all.
            return dataclasses.replace(insufficient, otherwise=missing) if move.source in self.named else missing
        if amount <= 0 or (not may_go_negative and balance < amount):
            return insufficient
        return dataclasses.replace(move, amount=amount)

    def apply(self, move: Move, transfer_id: str) -> None:
        for account, sign in ((move.source, -1), (move.target, 1)):
            self.balances[account] = self.balances.get(account, 0) + sign * move.amount
            totals = self.debits if sign < 0 else self.credits
            totals[account] = totals.get(account, 0) + move.amount
            self.opened.add(account)
            assert account[0] == EXTERNAL or self.balances[account] >= 0, "the model overdrew an account"
        self.transfers[transfer_id] = ModelTransfer(
            id=transfer_id,
            kind=move.kind,
            phase=move.phase,
            currency=move.currency,
            source=move.source,
            target=move.target,
            amount=move.amount,
            state=pb.RESERVATION_STATE_OPEN if move.phase == pb.TRANSFER_PHASE_RESERVE else 0,
            pending_to=move.pending_to,
        )

    # --- talking to the ledger ---------------------------------------------------------------------

    def call(self, method: str, request: Message) -> Any:
        """The reply message, or the Refusal."""
        try:
            return getattr(self.harness.stub, method)(request, metadata=self.metadata, timeout=10)
        except grpc.RpcError as error:
            return _refusal(error)

    def expect_refusal(self, reply: Any, expected: Refuse) -> Refusal:
        assert isinstance(reply, Refusal), f"expected {expected.reason}, the ledger answered {reply}"
        if expected.otherwise is not None and reply.reason == expected.otherwise.reason:
            expected = expected.otherwise
        assert reply.reason == expected.reason, f"expected {expected.reason}, got {reply}"
        assert reply.code == CODES[expected.reason], f"{expected.reason} should be {CODES[expected.reason]}: {reply}"
        assert reply.domain == "ledger.nerava", reply
        if expected.metadata is not None:
            assert dict(reply.metadata) == dict(expected.metadata), f"{reply} should carry {expected.metadata}"
        if expected.mentions is not None:
            assert expected.mentions in reply.metadata.values(), f"{reply} should name {expected.mentions}"
        return reply

    def send(self, method: str, request: Message, key: str, plan: Move | Refuse, *accounts: Key) -> Outcome:
        """Sends a new request, checks the reply against the plan, applies it to the model, remembers it."""
        reply = self.call(method, request)
        self.touched.update(accounts)
        if not (isinstance(reply, Refusal) and reply.reason == "ACCOUNT_NOT_FOUND"):
            self.named.update(accounts)
        if isinstance(plan, Refuse):
            refusal = self.expect_refusal(reply, plan)
            note(f"{key}: {method} refused {refusal.reason} {dict(refusal.metadata)}, as predicted")
            outcome = Outcome(transfer=None, balances_after=(None, None), refusal=refusal)
        else:
            assert not isinstance(reply, Refusal), f"expected {plan}, the ledger refused: {reply}"
            transfer: pb.Transfer = reply.transfer
            assert not reply.replayed
            assert transfer.id and transfer.id not in self.transfers, f"not a new transfer: {transfer.id}"
            pending = _key(transfer.pending_to_account) if transfer.HasField("pending_to_account") else None
            opened = pb.RESERVATION_STATE_OPEN if plan.phase == pb.TRANSFER_PHASE_RESERVE else 0
            got = (
                transfer.idempotency_key,
                transfer.kind,
                transfer.phase,
                transfer.currency,
                transfer.amount,
                _key(transfer.from_account),
                _key(transfer.to_account),
                transfer.reversal_of,
                transfer.reservation_id,
                pending,
                transfer.reservation_state,
            )
            want = (
                key,
                plan.kind,
                plan.phase,
                plan.currency,
                plan.amount,
                plan.source,
                plan.target,
                plan.reversal_of,
                plan.reservation_id,
                plan.pending_to,
                opened,
            )
            assert got == want, f"transfer {got} differs from the model's {want}"
            self.apply(plan, transfer.id)
            balances = _balances_after(reply)
            expected = (
                None if balances[0] is None else self.balances[plan.source],
                None if balances[1] is None else self.balances[plan.target],
            )
            assert balances == expected, f"balances after {balances}, the model has {expected}"
            note(
                f"{key}: {method} {pb.TransferKind.Name(plan.kind)} {plan.amount} "
                f"{self.name(plan.source)} -> {self.name(plan.target)} = transfer {transfer.id}"
            )
            outcome = Outcome(transfer=transfer, balances_after=balances, refusal=None)
        self.sent[key] = Sent(method, request, outcome)
        return outcome

    def post(self, kind: int, source: Key, target: Key, amount: int, up_to_available: bool = False) -> Handle:
        key = self.new_key()
        currency = source[2]
        request = pb.PostTransferRequest(
            idempotency_key=key,
            kind=kind,  # type: ignore[arg-type]
            currency=currency,  # type: ignore[arg-type]
            amount=amount,
            from_account=_ref(source),
            to_account=_ref(target),
            up_to_available=up_to_available,
        )
        move = Move(kind, pb.TRANSFER_PHASE_SINGLE, currency, source, target, amount)
        plan = self.plan(move, requested=amount, up_to_available=up_to_available)
        outcome = self.send("PostTransfer", request, key, plan, source, target)
        if outcome.transfer is None:
            return Handle(key)
        self.reversible += 1
        return Handle(key, outcome.transfer.id, reversible=True)

    # --- rules: value in, value around -------------------------------------------------------------

    def cash_grant(self, campaign: int, driver: int, amount: int) -> tuple[Handle, Handle]:
        """A sponsor pays for a grant that is then earned: the way drivers get cash to withdraw."""
        funded = self.post(pb.TRANSFER_KIND_CAMPAIGN_FUNDING, self.sponsors_cash, self.budget(campaign), amount)
        return funded, self.post(
            pb.TRANSFER_KIND_CAMPAIGN_GRANT, self.budget(campaign), self.driver_cash(driver), amount
        )

    @initialize(
        target=requests,
        nova=st.lists(amounts, min_size=DRIVERS - 1, max_size=DRIVERS - 1),
        cash=st.lists(amounts, min_size=DRIVERS - 1, max_size=DRIVERS - 1),
    )
    def open_wallets(self, nova: list[int], cash: list[int]) -> MultipleResults[Handle]:
        """Every driver but the last starts with some Nova and some cash from campaign 0, so that spending is
        not mostly refused; the last driver and the other campaigns have no accounts yet (ACCOUNT_NOT_FOUND)."""
        handles: list[Handle] = []
        for driver, (points, cents) in enumerate(zip(nova, cash, strict=True)):
            handles.append(self.post(pb.TRANSFER_KIND_ADMIN_GRANT, self.minted_nova, self.driver_nova(driver), points))
            handles.extend(self.cash_grant(0, driver, cents))
        return multiple(*handles)

    @rule(target=requests, driver=drivers, amount=amounts)
    def grant_nova(self, driver: int, amount: int) -> Handle:
        return self.post(pb.TRANSFER_KIND_ADMIN_GRANT, self.minted_nova, self.driver_nova(driver), amount)

    @rule(target=requests, campaign=budgets, amount=amounts)
    def fund_campaign(self, campaign: int, amount: int) -> Handle:
        return self.post(pb.TRANSFER_KIND_CAMPAIGN_FUNDING, self.sponsors_cash, self.budget(campaign), amount)

    @rule(target=requests, campaign=budgets, driver=drivers, amount=amounts)
    def grant_cash(self, campaign: int, driver: int, amount: int) -> Handle:
        """From whatever the budget holds: refused when it holds less."""
        return self.post(pb.TRANSFER_KIND_CAMPAIGN_GRANT, self.budget(campaign), self.driver_cash(driver), amount)

    @rule(target=requests, campaign=budgets, driver=drivers, amount=amounts)
    def fund_and_grant_cash(self, campaign: int, driver: int, amount: int) -> MultipleResults[Handle]:
        return multiple(*self.cash_grant(campaign, driver, amount))

    @rule(target=requests, driver=drivers, merchant=merchants, amount=amounts, up_to_available=st.booleans())
    def redeem(self, driver: int, merchant: int, amount: int, up_to_available: bool) -> Handle:
        return self.post(
            pb.TRANSFER_KIND_REDEMPTION, self.driver_nova(driver), self.merchant_nova(merchant), amount, up_to_available
        )

    # --- rules: two-phase payouts ------------------------------------------------------------------

    @rule(target=requests, driver=drivers, amount=amounts)
    def reserve(self, driver: int, amount: int) -> Handle:
        key = self.new_key()
        source = self.driver_cash(driver)
        in_flight = self.in_flight(source[1])
        request = pb.ReserveTransferRequest(
            idempotency_key=key, from_account=_ref(source), to_account=_ref(self.stripe), amount=amount
        )
        move = Move(
            pb.TRANSFER_KIND_PAYOUT, pb.TRANSFER_PHASE_RESERVE, CASH, source, in_flight, amount, pending_to=self.stripe
        )
        plan = self.plan(move, requested=amount)
        outcome = self.send("ReserveTransfer", request, key, plan, source, in_flight, self.stripe)
        if outcome.transfer is None:
            return Handle(key)
        self.reservations += 1
        return Handle(key, outcome.transfer.id, reservation=True)

    @precondition(lambda self: self.reservations > 0)
    @rule(
        target=requests,
        reservation=requests.filter(lambda h: h.reservation),
        post=st.booleans(),
        then=st.sampled_from(["", "post", "void"]),
    )
    def settle(self, reservation: Handle, post: bool, then: str) -> MultipleResults[Handle]:
        """Posts (to Stripe) or voids (back to the driver) a reservation: once; afterwards
        TRANSFER_NOT_RESERVED (`then`: another attempt at once, under another key)."""
        reserved = self.transfers[reservation.transfer_id]
        handles = [self.settle_once(reserved, post)]
        if then:
            handles.append(self.settle_once(reserved, then == "post"))
        return multiple(*handles)

    def settle_once(self, reserved: ModelTransfer, post: bool) -> Handle:
        key = self.new_key()
        request: Message
        if post:
            method, phase, state = "PostReservedTransfer", pb.TRANSFER_PHASE_POST, pb.RESERVATION_STATE_POSTED
            request = pb.PostReservedTransferRequest(idempotency_key=key, transfer_id=reserved.id)
            assert reserved.pending_to is not None
            target = reserved.pending_to
        else:
            method, phase, state = "VoidReservedTransfer", pb.TRANSFER_PHASE_VOID, pb.RESERVATION_STATE_VOIDED
            request = pb.VoidReservedTransferRequest(idempotency_key=key, transfer_id=reserved.id, reason="refused")
            target = reserved.source
        plan: Move | Refuse
        if reserved.state != pb.RESERVATION_STATE_OPEN:
            plan = Refuse("TRANSFER_NOT_RESERVED")
        else:
            move = Move(
                pb.TRANSFER_KIND_PAYOUT,
                phase,
                CASH,
                reserved.target,
                target,
                reserved.amount,
                reservation_id=reserved.id,
            )
            plan = self.plan(move, requested=None)
        outcome = self.send(method, request, key, plan, reserved.target, target)
        if outcome.transfer is not None:
            reserved.state = state
        return Handle(key, outcome.transfer.id if outcome.transfer else "")

    # --- rules: reversals --------------------------------------------------------------------------

    @precondition(lambda self: self.reversible > 0)
    @rule(target=requests, original=requests.filter(lambda h: h.reversible), twice=st.booleans())
    def reverse(self, original: Handle, twice: bool) -> MultipleResults[Handle]:
        """Reverses what is left of a transfer: all of it, or TRANSFER_ALREADY_REVERSED, or
        INSUFFICIENT_BALANCE when the credited account no longer holds it (`twice`: again at once, under
        another key)."""
        reversed_ = self.transfers[original.transfer_id]
        return multiple(*(self.reverse_once(reversed_) for _ in range(2 if twice else 1)))

    def reverse_once(self, reversed_: ModelTransfer) -> Handle:
        key = self.new_key()
        request = pb.ReverseTransferRequest(idempotency_key=key, transfer_id=reversed_.id, reason="audit clawback")
        remainder = reversed_.amount - reversed_.reversed_amount
        plan: Move | Refuse
        if remainder == 0:
            # ledger.proto: TRANSFER_ALREADY_REVERSED (metadata: reversal transfer id).
            plan = Refuse("TRANSFER_ALREADY_REVERSED", mentions=reversed_.reversals[-1])
        else:
            move = Move(
                pb.TRANSFER_KIND_REVERSAL,
                pb.TRANSFER_PHASE_SINGLE,
                reversed_.currency,
                reversed_.target,
                reversed_.source,
                remainder,
                reversal_of=reversed_.id,
            )
            plan = self.plan(move, requested=None)
        outcome = self.send("ReverseTransfer", request, key, plan, reversed_.target, reversed_.source)
        if outcome.transfer is None:
            return Handle(key)
        reversed_.reversed_amount += remainder
        reversed_.reversals.append(outcome.transfer.id)
        return Handle(key, outcome.transfer.id)

    # --- rules: idempotency ------------------------------------------------------------------------

    @rule(earlier=requests)
    def replay(self, earlier: Handle) -> None:
        """The same key and request: the original transfer (replayed) or the original refusal, whatever the
        balances are now; nothing moves."""
        sent = self.sent[earlier.key]
        reply = self.call(sent.method, sent.request)
        if sent.outcome.refusal is not None:
            assert isinstance(reply, Refusal), f"{earlier.key} was refused {sent.outcome.refusal}, now {reply}"
            assert reply == sent.outcome.refusal, f"{earlier.key}: {reply} != the remembered {sent.outcome.refusal}"
            note(f"{earlier.key}: replayed, refused {reply.reason} again")
            return
        assert not isinstance(reply, Refusal), f"{earlier.key} was posted, its replay refused: {reply}"
        assert reply.replayed, f"{earlier.key}: a replay must say replayed"
        assert reply.transfer == sent.outcome.transfer, f"{earlier.key}: {reply.transfer} != {sent.outcome.transfer}"
        assert _balances_after(reply) == sent.outcome.balances_after
        note(f"{earlier.key}: replayed, transfer {reply.transfer.id} again")

    @rule(earlier=requests, change=st.integers(1, 50), other_method=st.booleans())
    def reuse_key(self, earlier: Handle, change: int, other_method: bool) -> None:
        """The same key with a different request (another amount, reason or method): IDEMPOTENCY_KEY_REUSED,
        and nothing moves."""
        sent = self.sent[earlier.key]
        method, request = sent.method, type(sent.request)()
        request.CopyFrom(sent.request)
        if other_method and method == "PostTransfer":
            method = "ReserveTransfer"
            request = pb.ReserveTransferRequest(
                idempotency_key=earlier.key,
                from_account=_ref(self.driver_cash(0)),
                to_account=_ref(self.stripe),
                amount=change,
            )
        elif other_method:
            method = "PostTransfer"
            request = pb.PostTransferRequest(
                idempotency_key=earlier.key,
                kind=pb.TRANSFER_KIND_ADMIN_GRANT,
                currency=NOVA,
                amount=change,
                from_account=_ref(self.minted_nova),
                to_account=_ref(self.driver_nova(0)),
            )
        elif isinstance(request, pb.PostTransferRequest | pb.ReserveTransferRequest):
            request.amount += change
        elif isinstance(request, pb.PostReservedTransferRequest):
            request.metadata.description = f"another request {change}"
        else:
            assert isinstance(request, pb.VoidReservedTransferRequest | pb.ReverseTransferRequest)
            request.reason = f"another reason {change}"
        self.expect_refusal(self.call(method, request), Refuse("IDEMPOTENCY_KEY_REUSED"))
        note(f"{earlier.key}: reused by another {method}, refused IDEMPOTENCY_KEY_REUSED")

    # --- after every step --------------------------------------------------------------------------

    def check_account(self, account: Key) -> None:
        reply = self.call("GetAccount", pb.GetAccountRequest(account=_ref(account)))
        if isinstance(reply, Refusal):
            assert account not in self.opened, f"{self.name(account)} moved value, yet GetAccount: {reply}"
            assert (reply.code, reply.reason) == (grpc.StatusCode.NOT_FOUND, "ACCOUNT_NOT_FOUND"), reply
            return
        assert account in self.opened | self.named, f"{self.name(account)} exists, yet no request named it"
        got = reply.account
        want = (self.balances.get(account, 0), self.debits.get(account, 0), self.credits.get(account, 0))
        assert _key(got.ref) == account
        assert (got.balance, got.debits_total, got.credits_total) == want, (
            f"{self.name(account)}: ledger (balance, debits, credits) "
            f"{(got.balance, got.debits_total, got.credits_total)}, model {want}"
        )

    @invariant()
    def ledger_is_sound(self) -> None:
        problems = self.harness.violations()
        assert not problems, problems
        for account in sorted(self.touched):
            self.check_account(account)
        self.touched.clear()

    def teardown(self) -> None:
        for account in sorted(self.all_accounts()):
            self.check_account(account)


def _audit(address: str, database_url: str) -> None:
    """Runs the machine in this (worker) thread, with a channel and an event loop of its own."""
    loop = asyncio.new_event_loop()
    engine = create_engine(database_url, "ledger", pool_size=1, max_overflow=0)
    try:
        with grpc.insecure_channel(address) as channel:
            bound = Harness(
                stub=ledger_pb2_grpc.LedgerServiceStub(channel),
                violations=lambda: loop.run_until_complete(violations(engine)),
            )

            class LedgerAudit(LedgerAuditor):
                harness = bound

            run_state_machine_as_test(LedgerAudit, settings=SETTINGS)
    finally:
        loop.run_until_complete(engine.dispose())
        loop.close()


async def test_ledger_matches_its_model(mesh: Mesh, database_url: str) -> None:
    await asyncio.to_thread(_audit, mesh.address("ledger"), database_url)
