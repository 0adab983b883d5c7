"""The LedgerService servicer: the double-entry core for services, the driver's wallet views, payouts
through Stripe Express (the workflow lives in payouts.py), Stripe webhooks, admin grants, and merchant fee
periods (accrued by a trigger on every REDEMPTION transfer, migrations/versions/0004).
"""

from __future__ import annotations

import datetime
import uuid
from typing import Any

import grpc
from google.protobuf import json_format
from nerava.ledger.v1 import ledger_pb2 as pb
from nerava.ledger.v1 import ledger_pb2_grpc
from sqlalchemy.ext.asyncio import AsyncEngine

from services.common import audit
from services.common.context import Caller, current_caller
from services.common.http_body import json_array
from services.common.interceptors import BY_AN_ADMIN, OWN_DATA, SIGNED_BY_A_PROVIDER, Access
from services.common.outbox import DEAD_LETTER_ACCESS, dead_letter_message, dead_letters, replay_dead_letters
from services.common.paging import page_position, page_token
from services.common.timestamps import timestamp
from services.ledger import domain, invariants, store
from services.ledger.fee_periods import FeePeriod, FeePeriods
from services.ledger.onboarding import StripeOnboarding
from services.ledger.payouts import PayoutRow, Payouts
from services.ledger.posting import Idempotent, Posting
from services.ledger.reconciliation import Reconciliation
from services.ledger.refunds import BudgetRefunds
from services.ledger.transfers import Transfer, TransferReads
from services.ledger.wallet import Wallet
from services.ledger.webhooks import StripeEvents

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["LedgerService"].full_name
ADMIN = "admin"
DRIVER = "driver"

# The driver's own wallet: the driver comes from the token (GetWalletTimeline's user_id is ignored).
_WALLET = Access.role(DRIVER).not_owned(OWN_DATA)

ACCESS: dict[str, Access] = {
    # The double-entry core: other services only.
    "PostTransfer": Access.service_only(),
    "ReserveTransfer": Access.service_only(),
    "PostReservedTransfer": Access.service_only(),
    "VoidReservedTransfer": Access.service_only(),
    "ReverseTransfer": Access.service_only(),
    "GetAccount": Access.service_only(),
    "ListTransfers": Access.service_only(),
    "GetMerchantFeePeriod": Access.service_only(),
    "CloseMerchantFeePeriod": Access.role(ADMIN).not_owned(BY_AN_ADMIN),
    "GetWalletBalance": _WALLET,
    "ListWalletEntries": _WALLET,
    "GetWalletTimeline": _WALLET,
    "RequestPayout": _WALLET,
    "ListPayouts": _WALLET,
    "CreateStripeAccount": _WALLET,
    "CreateStripeAccountLink": _WALLET,
    "GetStripeStatus": _WALLET,
    "GetDriverWallet": Access.service_only(),
    # Stripe authenticates with its signature, checked by the webhooks core (webhooks.py).
    "HandleStripeEvent": Access.anyone().not_owned(SIGNED_BY_A_PROVIDER),
    "AdminGrant": Access.role(ADMIN).not_owned(BY_AN_ADMIN),
    "RefundCampaignBudget": Access.service_only(),
    "ListPaymentIssues": Access.role(ADMIN, "admin_readonly").not_owned(BY_AN_ADMIN),
    "ListUnknownPayouts": Access.role(ADMIN, "admin_readonly").not_owned(BY_AN_ADMIN),
    "CheckLedger": Access.role(ADMIN, "admin_readonly").not_owned(BY_AN_ADMIN),
    "RunReconciliation": Access.role(ADMIN, "admin_readonly").not_owned(BY_AN_ADMIN),
    "ReconcilePayouts": Access.role(ADMIN).not_owned(BY_AN_ADMIN),
    "ListAuditEntries": Access.service_only(),
    **DEAD_LETTER_ACCESS,
}

_DEFAULT_PAGE = 50


def _fee_period(period: FeePeriod) -> pb.MerchantFeePeriod:
    return pb.MerchantFeePeriod(
        merchant_id=period.merchant_id,
        period_start=period.first_day.isoformat(),
        period_end=period.last_day.isoformat(),
        nova_redeemed=period.nova_redeemed,
        fee_cents=period.fee_cents,
        redemption_count=period.redemption_count,
        status=period.status,  # type: ignore[arg-type]
    )


def _key(ref: pb.AccountRef) -> store.AccountKey:
    return store.AccountKey(type=ref.type, owner_id=ref.owner_id, currency=ref.currency)


def _ref(key: store.AccountKey) -> pb.AccountRef:
    return pb.AccountRef(type=key.type, owner_id=key.owner_id, currency=key.currency)  # type: ignore[arg-type]


def _metadata(message: pb.TransferMetadata) -> dict[str, str]:
    return {field.name: value for field, value in message.ListFields()}


def _scope(caller: Caller) -> str:
    return domain.scope_of(caller.service, caller.user_id)


def _user_id() -> str:
    """The calling person: a driver for the wallet RPCs (their own wallet only), an admin for AdminGrant."""
    return current_caller().user_id or ""


def _account_transfer(transfer: Transfer) -> pb.Transfer:
    return pb.Transfer(
        id=str(transfer.id),
        idempotency_key=transfer.idempotency_key,
        kind=transfer.kind,  # type: ignore[arg-type]
        phase=transfer.phase,  # type: ignore[arg-type]
        currency=transfer.currency,  # type: ignore[arg-type]
        amount=transfer.amount,
        from_account=_ref(transfer.from_account),
        to_account=_ref(transfer.to_account),
        metadata=json_format.ParseDict(transfer.metadata, pb.TransferMetadata(), ignore_unknown_fields=True),
        reversal_of=str(transfer.reversal_of or ""),
        reservation_id=str(transfer.reservation_id or ""),
        pending_to_account=_ref(transfer.pending_to) if transfer.pending_to is not None else None,
        reservation_state=transfer.reservation_state or pb.RESERVATION_STATE_UNSPECIFIED,  # type: ignore[arg-type]
        created_at=timestamp(transfer.created_at),
    )


def _timeline_item(entry: domain.TimelineEntry, created_at: datetime.datetime) -> pb.TimelineItem:
    item = domain.timeline_item(entry)
    return pb.TimelineItem(
        id=item.id,
        type=item.type,
        amount_cents=abs(entry.amount),
        title=item.title,
        subtitle=item.subtitle,
        created_at=timestamp(created_at),
        merchant_id=item.merchant_id,
        redemption_id=item.redemption_id,
        currency=entry.currency,  # type: ignore[arg-type]
    )


class LedgerApi(ledger_pb2_grpc.LedgerServiceServicer):
    """The cores are built by __main__.py and handed in."""

    def __init__(
        self,
        engine: AsyncEngine,
        *,
        posting: Posting,
        transfer_reads: TransferReads,
        wallet: Wallet,
        fee_periods: FeePeriods,
        payouts: Payouts,
        onboarding: StripeOnboarding,
        stripe_events: StripeEvents,
        refunds: BudgetRefunds,
        reconciliation: Reconciliation,
    ) -> None:
        self._engine = engine
        self._posting = posting
        self._transfer_reads = transfer_reads
        self._wallet = wallet
        self._fee_periods = fee_periods
        self._payouts = payouts
        self._onboarding = onboarding
        self._stripe_events = stripe_events
        self._refunds = refunds
        self._reconciliation = reconciliation

    # --- the double-entry core ---------------------------------------------------------------------

    @staticmethod
    def _idempotent(method: str, request: Any) -> Idempotent:
        fields = request.SerializeToString(deterministic=True)
        return Idempotent(_scope(current_caller()), request.idempotency_key, domain.request_hash(method, fields))

    def _transfer(self, result: store.PostResult, movement: store.Movement, key: str) -> pb.Transfer:
        return pb.Transfer(
            id=str(result.transfer_id),
            idempotency_key=key,
            kind=movement.kind,  # type: ignore[arg-type]
            phase=movement.phase,  # type: ignore[arg-type]
            currency=movement.currency,  # type: ignore[arg-type]
            amount=result.amount or 0,
            from_account=_ref(movement.from_account),
            to_account=_ref(movement.to_account),
            metadata=pb.TransferMetadata(**movement.metadata),
            reversal_of=str(movement.reversal_of or ""),
            reservation_id=str(movement.reservation_id or ""),
            pending_to_account=_ref(movement.pending_to) if movement.pending_to else None,
            reservation_state=pb.RESERVATION_STATE_OPEN if movement.phase == pb.TRANSFER_PHASE_RESERVE else None,
            created_at=timestamp(result.created_at),
        )

    async def PostTransfer(
        self, request: pb.PostTransferRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.PostTransferResponse:
        posted = await self._posting.transfer(
            self._idempotent("PostTransfer", request),
            kind=request.kind,
            currency=request.currency,
            amount=request.amount,
            from_account=_key(request.from_account),
            to_account=_key(request.to_account),
            metadata=_metadata(request.metadata),
            up_to_available=request.up_to_available,
        )
        result = posted.result
        return pb.PostTransferResponse(
            transfer=self._transfer(result, posted.movement, request.idempotency_key),
            from_balance_after=result.from_balance or 0,
            to_balance_after=result.to_balance or 0,
            merchant_fee_cents=posted.merchant_fee_cents,
            replayed=result.replayed,
        )

    async def ReserveTransfer(
        self, request: pb.ReserveTransferRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.ReserveTransferResponse:
        posted = await self._posting.reserve(
            self._idempotent("ReserveTransfer", request),
            amount=request.amount,
            source=_key(request.from_account),
            destination=_key(request.to_account),
            metadata=_metadata(request.metadata),
        )
        return pb.ReserveTransferResponse(
            transfer=self._transfer(posted.result, posted.movement, request.idempotency_key),
            from_balance_after=posted.result.from_balance or 0,
            replayed=posted.result.replayed,
        )

    async def PostReservedTransfer(
        self, request: pb.PostReservedTransferRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.PostReservedTransferResponse:
        posted = await self._posting.post_reserved(
            self._idempotent("PostReservedTransfer", request), request.transfer_id, _metadata(request.metadata)
        )
        return pb.PostReservedTransferResponse(
            transfer=self._transfer(posted.result, posted.movement, request.idempotency_key),
            replayed=posted.result.replayed,
        )

    async def VoidReservedTransfer(
        self, request: pb.VoidReservedTransferRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.VoidReservedTransferResponse:
        posted = await self._posting.void_reserved(
            self._idempotent("VoidReservedTransfer", request), request.transfer_id, request.reason
        )
        return pb.VoidReservedTransferResponse(
            transfer=self._transfer(posted.result, posted.movement, request.idempotency_key),
            replayed=posted.result.replayed,
        )

    async def ReverseTransfer(
        self, request: pb.ReverseTransferRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.ReverseTransferResponse:
        posted = await self._posting.reverse(
            self._idempotent("ReverseTransfer", request),
            request.transfer_id,
            _metadata(request.metadata),
            request.reason,
        )
        return pb.ReverseTransferResponse(
            transfer=self._transfer(posted.result, posted.movement, request.idempotency_key),
            replayed=posted.result.replayed,
        )

    async def GetAccount(
        self, request: pb.GetAccountRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.GetAccountResponse:
        account = await self._transfer_reads.account(_key(request.account))
        return pb.GetAccountResponse(
            account=pb.Account(
                ref=request.account,
                balance=account.balance,
                debits_total=account.debits_total,
                credits_total=account.credits_total,
                opened_at=timestamp(account.opened_at),
                updated_at=timestamp(account.updated_at),
            )
        )

    async def ListTransfers(
        self, request: pb.ListTransfersRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.ListTransfersResponse:
        page = await self._transfer_reads.of_account(
            _key(request.account),
            request.page_size or _DEFAULT_PAGE,
            page_position(request.page_token),
            request.kinds,
        )
        after = page.next_before
        return pb.ListTransfersResponse(
            transfers=[_account_transfer(transfer) for transfer in page.transfers],
            next_page_token=page_token(after) if after is not None else "",
        )

    # --- the driver's wallet -----------------------------------------------------------------------

    async def GetWalletBalance(
        self, request: pb.GetWalletBalanceRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.GetWalletBalanceResponse:
        return await self._wallet_balance(_user_id())

    async def GetDriverWallet(
        self, request: pb.GetDriverWalletRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.GetDriverWalletResponse:
        return pb.GetDriverWalletResponse(wallet=await self._wallet_balance(request.driver_id))

    async def _wallet_balance(self, driver: str) -> pb.GetWalletBalanceResponse:
        wallet = await self._wallet.balance(driver)
        return pb.GetWalletBalanceResponse(
            available_cents=wallet.available_cents,
            pending_cents=wallet.pending_cents,
            total_earned_cents=wallet.total_earned_cents,
            total_withdrawn_cents=wallet.total_withdrawn_cents,
            can_withdraw=wallet.can_withdraw,
            minimum_withdrawal_cents=domain.MINIMUM_WITHDRAWAL_CENTS,
            fee_threshold_cents=domain.MINIMUM_WITHDRAWAL_CENTS,
            nova_balance=wallet.nova_balance,
            stripe_onboarding_complete=wallet.onboarding_complete,
        )

    async def ListWalletEntries(
        self, request: pb.ListWalletEntriesRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.ListWalletEntriesResponse:
        statement = await self._wallet.cash_statement(
            _user_id(),
            request.page_size or request.limit or _DEFAULT_PAGE,
            page_position(request.page_token),
            request.offset,
        )
        entries = [
            pb.WalletEntry(
                id=str(entry.id),
                amount_cents=entry.amount_cents,
                balance_after_cents=entry.balance_after_cents,
                transaction_type=entry.transaction_type,
                created_at=timestamp(entry.created_at),
                description=entry.description,
                campaign_name=entry.campaign_name,
                sponsor_name=entry.sponsor_name,
            )
            for entry in statement.entries
        ]
        after = statement.next_before
        return pb.ListWalletEntriesResponse(
            entries=entries, count=statement.count, next_page_token=page_token(after) if after is not None else ""
        )

    async def GetWalletTimeline(
        self, request: pb.GetWalletTimelineRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.GetWalletTimelineResponse:
        # user_id is accepted because the legacy page sends it, and ignored: the caller's own wallet only.
        timeline = await self._wallet.timeline(_user_id(), request.limit or 20)
        items = [_timeline_item(entry, created_at) for entry, created_at in timeline]
        return pb.GetWalletTimelineResponse(items=items, json_array=json_array(items))

    # --- administration ----------------------------------------------------------------------------

    async def AdminGrant(
        self, request: pb.AdminGrantRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.AdminGrantResponse:
        if request.HasField("driver_id"):
            recipient = store.AccountKey(pb.ACCOUNT_TYPE_DRIVER_NOVA, request.driver_id, pb.CURRENCY_NOVA_POINTS)
        else:
            recipient = store.AccountKey(pb.ACCOUNT_TYPE_MERCHANT_NOVA, request.merchant_id, pb.CURRENCY_NOVA_POINTS)
        result = await self._posting.admin_grant(
            self._idempotent("AdminGrant", request),
            recipient=recipient,
            amount=request.amount,
            reason=request.reason,
            actor_id=_user_id(),
        )
        return pb.AdminGrantResponse(
            transfer_id=str(result.transfer_id),
            amount=result.amount or 0,
            balance_after=result.to_balance or 0,
            created_at=timestamp(result.created_at),
            replayed=result.replayed,
        )

    # --- merchant fee periods -----------------------------------------------------------------------------

    async def GetMerchantFeePeriod(
        self, request: pb.GetMerchantFeePeriodRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.GetMerchantFeePeriodResponse:
        period = await self._fee_periods.get(request.merchant_id, request.month)
        return pb.GetMerchantFeePeriodResponse(period=_fee_period(period))

    async def CloseMerchantFeePeriod(
        self, request: pb.CloseMerchantFeePeriodRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.CloseMerchantFeePeriodResponse:
        period = await self._fee_periods.close(request.merchant_id, request.month, request.status)
        return pb.CloseMerchantFeePeriodResponse(period=_fee_period(period))

    # --- payouts and Stripe onboarding ---------------------------------------------------------------

    async def RequestPayout(
        self, request: pb.RequestPayoutRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.RequestPayoutResponse:
        payout = await self._payouts.request(
            _user_id(),
            uuid.UUID(request.request_id) if request.request_id else None,
            request.amount_cents,
        )
        message = _payout(payout)
        return pb.RequestPayoutResponse(
            payout_id=str(payout.id),
            status=message.status,
            transfer_id=payout.stripe_transfer_id or "",
            amount_cents=payout.amount_cents,
            fee_cents=0,  # no fee at or above the $20 minimum, and nothing below it is accepted
            payout=message,
        )

    async def ListPayouts(
        self, request: pb.ListPayoutsRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.ListPayoutsResponse:
        limit = request.page_size or request.limit or 20
        rows = await self._payouts.list_for_driver(_user_id(), limit)
        return pb.ListPayoutsResponse(payouts=[_payout(row) for row in rows])

    async def CreateStripeAccount(
        self, request: pb.CreateStripeAccountRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.CreateStripeAccountResponse:
        account = await self._onboarding.create_account(_user_id(), request.email)
        return pb.CreateStripeAccountResponse(
            stripe_account_id=account.stripe_account_id,
            status="created" if account.created else "existing",
            onboarding_complete=account.onboarding_complete,
        )

    async def CreateStripeAccountLink(
        self, request: pb.CreateStripeAccountLinkRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.CreateStripeAccountLinkResponse:
        url, expires = await self._onboarding.account_link(_user_id(), request.refresh_url, request.return_url)
        return pb.CreateStripeAccountLinkResponse(url=url, expires_at=timestamp(expires))

    async def GetStripeStatus(
        self, request: pb.GetStripeStatusRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.GetStripeStatusResponse:
        status = await self._onboarding.status(_user_id())
        if status is None:
            return pb.GetStripeStatusResponse(has_account=False)
        return pb.GetStripeStatusResponse(
            onboarding_complete=status.onboarding_complete,
            has_account=True,
            details_submitted=status.details_submitted,
            charges_enabled=status.charges_enabled,
            payouts_enabled=status.payouts_enabled,
        )

    # --- Stripe webhooks -----------------------------------------------------------------------------

    async def HandleStripeEvent(
        self, request: pb.HandleStripeEventRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.HandleStripeEventResponse:
        headers = {k: v for k, v in (context.invocation_metadata() or ()) if isinstance(v, str)}
        handled = await self._stripe_events.receive(request.http_body.data, headers.get("stripe-signature", ""))
        return pb.HandleStripeEventResponse(
            outcome=handled.outcome, event_id=handled.event_id, event_type=handled.event_type
        )

    # --- refunds and issues ------------------------------------------------------------------------

    async def RefundCampaignBudget(
        self, request: pb.RefundCampaignBudgetRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.RefundCampaignBudgetResponse:
        refund = await self._refunds.refund(
            _scope(current_caller()),
            request.idempotency_key,
            campaign_id=request.campaign_id,
            currency=request.currency,
            amount=request.amount_cents,
            reason=request.reason,
            kept_checkout_session_id=request.kept_checkout_session_id,
        )
        return pb.RefundCampaignBudgetResponse(
            refunded_cents=refund.refunded_cents,
            stripe_refunded_cents=refund.stripe_refunded_cents,
            replayed=refund.replayed,
        )

    async def ListUnknownPayouts(
        self, request: pb.ListUnknownPayoutsRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.ListUnknownPayoutsResponse:
        stuck = await self._payouts.list_unknown(request.limit or 100)
        return pb.ListUnknownPayoutsResponse(
            payouts=[
                pb.UnknownPayout(payout=_payout(row), driver_id=row.driver_id, updated_at=timestamp(updated_at))
                for row, updated_at in stuck
            ]
        )

    async def ReconcilePayouts(
        self, request: pb.ReconcilePayoutsRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.ReconcilePayoutsResponse:
        settled, still_unknown = await self._payouts.reconcile_now(request.reason)
        return pb.ReconcilePayoutsResponse(settled=settled, still_unknown=still_unknown)

    async def CheckLedger(
        self, request: pb.CheckLedgerRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.CheckLedgerResponse:
        return pb.CheckLedgerResponse(violations=await invariants.violations(self._engine))

    async def RunReconciliation(
        self, request: pb.RunReconciliationRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.RunReconciliationResponse:
        since = request.since.ToDatetime(datetime.UTC) if request.HasField("since") else None
        report = await self._reconciliation.run(since)
        return pb.RunReconciliationResponse(
            invariants=[
                pb.ReconciliationInvariant(name=name, drift_ids=sorted(ids)) for name, ids in report.drift.items()
            ],
            holds=report.holds,
        )

    async def ListDeadLetters(self, request: pb.ListDeadLettersRequest, context: Any) -> pb.ListDeadLettersResponse:
        rows = await dead_letters(self._engine, store.outbox, request.limit or 100)
        return pb.ListDeadLettersResponse(dead_letters=[dead_letter_message(row) for row in rows])

    async def ReplayDeadLetters(
        self, request: pb.ReplayDeadLettersRequest, context: Any
    ) -> pb.ReplayDeadLettersResponse:
        replayed = await replay_dead_letters(self._engine, store.outbox, list(request.ids) or None, request.reason)
        return pb.ReplayDeadLettersResponse(replayed=replayed)

    async def ListAuditEntries(
        self, request: pb.ListAuditEntriesRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.ListAuditEntriesResponse:
        return pb.ListAuditEntriesResponse(entries=await audit.list_entries(self._engine, "ledger", request.query))

    async def ListPaymentIssues(
        self, request: pb.ListPaymentIssuesRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.ListPaymentIssuesResponse:
        issues = await self._stripe_events.payment_issues(request.page_size or _DEFAULT_PAGE)
        return pb.ListPaymentIssuesResponse(
            issues=[
                pb.PaymentIssue(
                    event_id=issue.event_id,
                    event_type=issue.event_type,
                    object_id=issue.object_id,
                    problem=issue.problem,
                    created_at=timestamp(issue.created_at),
                )
                for issue in issues
            ]
        )


def _payout(row: PayoutRow) -> pb.Payout:
    return pb.Payout(
        id=str(row.id),
        amount_cents=row.amount_cents,
        status=row.status,  # type: ignore[arg-type]
        created_at=timestamp(row.created_at),
        paid_at=timestamp(row.paid_at),
        failure_reason=row.failure_reason or "",
        stripe_transfer_id=row.stripe_transfer_id or "",
    )
