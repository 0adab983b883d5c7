import datetime

from buf.validate import validate_pb2 as _validate_pb2
from google.api import annotations_pb2 as _annotations_pb2
from google.api import httpbody_pb2 as _httpbody_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from nerava.audit.v1 import audit_pb2 as _audit_pb2
from nerava.outbox.v1 import outbox_pb2 as _outbox_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Currency(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CURRENCY_UNSPECIFIED: _ClassVar[Currency]
    CURRENCY_CASH_CENTS: _ClassVar[Currency]
    CURRENCY_NOVA_POINTS: _ClassVar[Currency]

class AccountType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ACCOUNT_TYPE_UNSPECIFIED: _ClassVar[AccountType]
    ACCOUNT_TYPE_DRIVER_CASH: _ClassVar[AccountType]
    ACCOUNT_TYPE_DRIVER_NOVA: _ClassVar[AccountType]
    ACCOUNT_TYPE_MERCHANT_NOVA: _ClassVar[AccountType]
    ACCOUNT_TYPE_CAMPAIGN_BUDGET: _ClassVar[AccountType]
    ACCOUNT_TYPE_PLATFORM_FEES: _ClassVar[AccountType]
    ACCOUNT_TYPE_PAYOUTS_IN_FLIGHT: _ClassVar[AccountType]
    ACCOUNT_TYPE_EXTERNAL_FUNDING: _ClassVar[AccountType]

class TransferKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TRANSFER_KIND_UNSPECIFIED: _ClassVar[TransferKind]
    TRANSFER_KIND_CAMPAIGN_FUNDING: _ClassVar[TransferKind]
    TRANSFER_KIND_PLATFORM_FEE: _ClassVar[TransferKind]
    TRANSFER_KIND_CAMPAIGN_GRANT: _ClassVar[TransferKind]
    TRANSFER_KIND_ADMIN_GRANT: _ClassVar[TransferKind]
    TRANSFER_KIND_REDEMPTION: _ClassVar[TransferKind]
    TRANSFER_KIND_PAYOUT: _ClassVar[TransferKind]
    TRANSFER_KIND_REVERSAL: _ClassVar[TransferKind]

class TransferPhase(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TRANSFER_PHASE_UNSPECIFIED: _ClassVar[TransferPhase]
    TRANSFER_PHASE_SINGLE: _ClassVar[TransferPhase]
    TRANSFER_PHASE_RESERVE: _ClassVar[TransferPhase]
    TRANSFER_PHASE_POST: _ClassVar[TransferPhase]
    TRANSFER_PHASE_VOID: _ClassVar[TransferPhase]

class ReservationState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    RESERVATION_STATE_UNSPECIFIED: _ClassVar[ReservationState]
    RESERVATION_STATE_OPEN: _ClassVar[ReservationState]
    RESERVATION_STATE_POSTED: _ClassVar[ReservationState]
    RESERVATION_STATE_VOIDED: _ClassVar[ReservationState]

class PayoutStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PAYOUT_STATUS_UNSPECIFIED: _ClassVar[PayoutStatus]
    PAYOUT_STATUS_PENDING: _ClassVar[PayoutStatus]
    PAYOUT_STATUS_PROCESSING: _ClassVar[PayoutStatus]
    PAYOUT_STATUS_PAID: _ClassVar[PayoutStatus]
    PAYOUT_STATUS_FAILED: _ClassVar[PayoutStatus]
    PAYOUT_STATUS_UNKNOWN: _ClassVar[PayoutStatus]

class FeePeriodStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    FEE_PERIOD_STATUS_UNSPECIFIED: _ClassVar[FeePeriodStatus]
    FEE_PERIOD_STATUS_ACCRUING: _ClassVar[FeePeriodStatus]
    FEE_PERIOD_STATUS_INVOICED: _ClassVar[FeePeriodStatus]
    FEE_PERIOD_STATUS_PAID: _ClassVar[FeePeriodStatus]

class WebhookOutcome(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    WEBHOOK_OUTCOME_UNSPECIFIED: _ClassVar[WebhookOutcome]
    WEBHOOK_OUTCOME_PROCESSED: _ClassVar[WebhookOutcome]
    WEBHOOK_OUTCOME_DUPLICATE: _ClassVar[WebhookOutcome]
    WEBHOOK_OUTCOME_IGNORED: _ClassVar[WebhookOutcome]
    WEBHOOK_OUTCOME_NEEDS_ATTENTION: _ClassVar[WebhookOutcome]
CURRENCY_UNSPECIFIED: Currency
CURRENCY_CASH_CENTS: Currency
CURRENCY_NOVA_POINTS: Currency
ACCOUNT_TYPE_UNSPECIFIED: AccountType
ACCOUNT_TYPE_DRIVER_CASH: AccountType
ACCOUNT_TYPE_DRIVER_NOVA: AccountType
ACCOUNT_TYPE_MERCHANT_NOVA: AccountType
ACCOUNT_TYPE_CAMPAIGN_BUDGET: AccountType
ACCOUNT_TYPE_PLATFORM_FEES: AccountType
ACCOUNT_TYPE_PAYOUTS_IN_FLIGHT: AccountType
ACCOUNT_TYPE_EXTERNAL_FUNDING: AccountType
TRANSFER_KIND_UNSPECIFIED: TransferKind
TRANSFER_KIND_CAMPAIGN_FUNDING: TransferKind
TRANSFER_KIND_PLATFORM_FEE: TransferKind
TRANSFER_KIND_CAMPAIGN_GRANT: TransferKind
TRANSFER_KIND_ADMIN_GRANT: TransferKind
TRANSFER_KIND_REDEMPTION: TransferKind
TRANSFER_KIND_PAYOUT: TransferKind
TRANSFER_KIND_REVERSAL: TransferKind
TRANSFER_PHASE_UNSPECIFIED: TransferPhase
TRANSFER_PHASE_SINGLE: TransferPhase
TRANSFER_PHASE_RESERVE: TransferPhase
TRANSFER_PHASE_POST: TransferPhase
TRANSFER_PHASE_VOID: TransferPhase
RESERVATION_STATE_UNSPECIFIED: ReservationState
RESERVATION_STATE_OPEN: ReservationState
RESERVATION_STATE_POSTED: ReservationState
RESERVATION_STATE_VOIDED: ReservationState
PAYOUT_STATUS_UNSPECIFIED: PayoutStatus
PAYOUT_STATUS_PENDING: PayoutStatus
PAYOUT_STATUS_PROCESSING: PayoutStatus
PAYOUT_STATUS_PAID: PayoutStatus
PAYOUT_STATUS_FAILED: PayoutStatus
PAYOUT_STATUS_UNKNOWN: PayoutStatus
FEE_PERIOD_STATUS_UNSPECIFIED: FeePeriodStatus
FEE_PERIOD_STATUS_ACCRUING: FeePeriodStatus
FEE_PERIOD_STATUS_INVOICED: FeePeriodStatus
FEE_PERIOD_STATUS_PAID: FeePeriodStatus
WEBHOOK_OUTCOME_UNSPECIFIED: WebhookOutcome
WEBHOOK_OUTCOME_PROCESSED: WebhookOutcome
WEBHOOK_OUTCOME_DUPLICATE: WebhookOutcome
WEBHOOK_OUTCOME_IGNORED: WebhookOutcome
WEBHOOK_OUTCOME_NEEDS_ATTENTION: WebhookOutcome

class AccountRef(_message.Message):
    __slots__ = ("type", "owner_id", "currency")
    TYPE_FIELD_NUMBER: _ClassVar[int]
    OWNER_ID_FIELD_NUMBER: _ClassVar[int]
    CURRENCY_FIELD_NUMBER: _ClassVar[int]
    type: AccountType
    owner_id: str
    currency: Currency
    def __init__(self, type: _Optional[_Union[AccountType, str]] = ..., owner_id: _Optional[str] = ..., currency: _Optional[_Union[Currency, str]] = ...) -> None: ...

class TransferMetadata(_message.Message):
    __slots__ = ("campaign_id", "campaign_name", "sponsor_id", "sponsor_name", "merchant_id", "merchant_name", "redemption_id", "grant_id", "session_id", "payout_id", "description", "reason", "actor_id")
    CAMPAIGN_ID_FIELD_NUMBER: _ClassVar[int]
    CAMPAIGN_NAME_FIELD_NUMBER: _ClassVar[int]
    SPONSOR_ID_FIELD_NUMBER: _ClassVar[int]
    SPONSOR_NAME_FIELD_NUMBER: _ClassVar[int]
    MERCHANT_ID_FIELD_NUMBER: _ClassVar[int]
    MERCHANT_NAME_FIELD_NUMBER: _ClassVar[int]
    REDEMPTION_ID_FIELD_NUMBER: _ClassVar[int]
    GRANT_ID_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    PAYOUT_ID_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    ACTOR_ID_FIELD_NUMBER: _ClassVar[int]
    campaign_id: str
    campaign_name: str
    sponsor_id: str
    sponsor_name: str
    merchant_id: str
    merchant_name: str
    redemption_id: str
    grant_id: str
    session_id: str
    payout_id: str
    description: str
    reason: str
    actor_id: str
    def __init__(self, campaign_id: _Optional[str] = ..., campaign_name: _Optional[str] = ..., sponsor_id: _Optional[str] = ..., sponsor_name: _Optional[str] = ..., merchant_id: _Optional[str] = ..., merchant_name: _Optional[str] = ..., redemption_id: _Optional[str] = ..., grant_id: _Optional[str] = ..., session_id: _Optional[str] = ..., payout_id: _Optional[str] = ..., description: _Optional[str] = ..., reason: _Optional[str] = ..., actor_id: _Optional[str] = ...) -> None: ...

class Transfer(_message.Message):
    __slots__ = ("id", "idempotency_key", "kind", "phase", "currency", "amount", "from_account", "to_account", "metadata", "reversal_of", "reservation_id", "pending_to_account", "reservation_state", "created_at")
    ID_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    PHASE_FIELD_NUMBER: _ClassVar[int]
    CURRENCY_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_FIELD_NUMBER: _ClassVar[int]
    FROM_ACCOUNT_FIELD_NUMBER: _ClassVar[int]
    TO_ACCOUNT_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    REVERSAL_OF_FIELD_NUMBER: _ClassVar[int]
    RESERVATION_ID_FIELD_NUMBER: _ClassVar[int]
    PENDING_TO_ACCOUNT_FIELD_NUMBER: _ClassVar[int]
    RESERVATION_STATE_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    id: str
    idempotency_key: str
    kind: TransferKind
    phase: TransferPhase
    currency: Currency
    amount: int
    from_account: AccountRef
    to_account: AccountRef
    metadata: TransferMetadata
    reversal_of: str
    reservation_id: str
    pending_to_account: AccountRef
    reservation_state: ReservationState
    created_at: _timestamp_pb2.Timestamp
    def __init__(self, id: _Optional[str] = ..., idempotency_key: _Optional[str] = ..., kind: _Optional[_Union[TransferKind, str]] = ..., phase: _Optional[_Union[TransferPhase, str]] = ..., currency: _Optional[_Union[Currency, str]] = ..., amount: _Optional[int] = ..., from_account: _Optional[_Union[AccountRef, _Mapping]] = ..., to_account: _Optional[_Union[AccountRef, _Mapping]] = ..., metadata: _Optional[_Union[TransferMetadata, _Mapping]] = ..., reversal_of: _Optional[str] = ..., reservation_id: _Optional[str] = ..., pending_to_account: _Optional[_Union[AccountRef, _Mapping]] = ..., reservation_state: _Optional[_Union[ReservationState, str]] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class Account(_message.Message):
    __slots__ = ("ref", "balance", "debits_total", "credits_total", "opened_at", "updated_at")
    REF_FIELD_NUMBER: _ClassVar[int]
    BALANCE_FIELD_NUMBER: _ClassVar[int]
    DEBITS_TOTAL_FIELD_NUMBER: _ClassVar[int]
    CREDITS_TOTAL_FIELD_NUMBER: _ClassVar[int]
    OPENED_AT_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    ref: AccountRef
    balance: int
    debits_total: int
    credits_total: int
    opened_at: _timestamp_pb2.Timestamp
    updated_at: _timestamp_pb2.Timestamp
    def __init__(self, ref: _Optional[_Union[AccountRef, _Mapping]] = ..., balance: _Optional[int] = ..., debits_total: _Optional[int] = ..., credits_total: _Optional[int] = ..., opened_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class PostTransferRequest(_message.Message):
    __slots__ = ("idempotency_key", "kind", "currency", "amount", "from_account", "to_account", "metadata", "reversal_of", "up_to_available")
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    CURRENCY_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_FIELD_NUMBER: _ClassVar[int]
    FROM_ACCOUNT_FIELD_NUMBER: _ClassVar[int]
    TO_ACCOUNT_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    REVERSAL_OF_FIELD_NUMBER: _ClassVar[int]
    UP_TO_AVAILABLE_FIELD_NUMBER: _ClassVar[int]
    idempotency_key: str
    kind: TransferKind
    currency: Currency
    amount: int
    from_account: AccountRef
    to_account: AccountRef
    metadata: TransferMetadata
    reversal_of: str
    up_to_available: bool
    def __init__(self, idempotency_key: _Optional[str] = ..., kind: _Optional[_Union[TransferKind, str]] = ..., currency: _Optional[_Union[Currency, str]] = ..., amount: _Optional[int] = ..., from_account: _Optional[_Union[AccountRef, _Mapping]] = ..., to_account: _Optional[_Union[AccountRef, _Mapping]] = ..., metadata: _Optional[_Union[TransferMetadata, _Mapping]] = ..., reversal_of: _Optional[str] = ..., up_to_available: _Optional[bool] = ...) -> None: ...

class PostTransferResponse(_message.Message):
    __slots__ = ("transfer", "from_balance_after", "to_balance_after", "merchant_fee_cents", "replayed")
    TRANSFER_FIELD_NUMBER: _ClassVar[int]
    FROM_BALANCE_AFTER_FIELD_NUMBER: _ClassVar[int]
    TO_BALANCE_AFTER_FIELD_NUMBER: _ClassVar[int]
    MERCHANT_FEE_CENTS_FIELD_NUMBER: _ClassVar[int]
    REPLAYED_FIELD_NUMBER: _ClassVar[int]
    transfer: Transfer
    from_balance_after: int
    to_balance_after: int
    merchant_fee_cents: int
    replayed: bool
    def __init__(self, transfer: _Optional[_Union[Transfer, _Mapping]] = ..., from_balance_after: _Optional[int] = ..., to_balance_after: _Optional[int] = ..., merchant_fee_cents: _Optional[int] = ..., replayed: _Optional[bool] = ...) -> None: ...

class ReserveTransferRequest(_message.Message):
    __slots__ = ("idempotency_key", "from_account", "to_account", "amount", "metadata")
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    FROM_ACCOUNT_FIELD_NUMBER: _ClassVar[int]
    TO_ACCOUNT_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    idempotency_key: str
    from_account: AccountRef
    to_account: AccountRef
    amount: int
    metadata: TransferMetadata
    def __init__(self, idempotency_key: _Optional[str] = ..., from_account: _Optional[_Union[AccountRef, _Mapping]] = ..., to_account: _Optional[_Union[AccountRef, _Mapping]] = ..., amount: _Optional[int] = ..., metadata: _Optional[_Union[TransferMetadata, _Mapping]] = ...) -> None: ...

class ReserveTransferResponse(_message.Message):
    __slots__ = ("transfer", "from_balance_after", "replayed")
    TRANSFER_FIELD_NUMBER: _ClassVar[int]
    FROM_BALANCE_AFTER_FIELD_NUMBER: _ClassVar[int]
    REPLAYED_FIELD_NUMBER: _ClassVar[int]
    transfer: Transfer
    from_balance_after: int
    replayed: bool
    def __init__(self, transfer: _Optional[_Union[Transfer, _Mapping]] = ..., from_balance_after: _Optional[int] = ..., replayed: _Optional[bool] = ...) -> None: ...

class PostReservedTransferRequest(_message.Message):
    __slots__ = ("idempotency_key", "transfer_id", "metadata")
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    TRANSFER_ID_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    idempotency_key: str
    transfer_id: str
    metadata: TransferMetadata
    def __init__(self, idempotency_key: _Optional[str] = ..., transfer_id: _Optional[str] = ..., metadata: _Optional[_Union[TransferMetadata, _Mapping]] = ...) -> None: ...

class PostReservedTransferResponse(_message.Message):
    __slots__ = ("transfer", "replayed")
    TRANSFER_FIELD_NUMBER: _ClassVar[int]
    REPLAYED_FIELD_NUMBER: _ClassVar[int]
    transfer: Transfer
    replayed: bool
    def __init__(self, transfer: _Optional[_Union[Transfer, _Mapping]] = ..., replayed: _Optional[bool] = ...) -> None: ...

class VoidReservedTransferRequest(_message.Message):
    __slots__ = ("idempotency_key", "transfer_id", "reason")
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    TRANSFER_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    idempotency_key: str
    transfer_id: str
    reason: str
    def __init__(self, idempotency_key: _Optional[str] = ..., transfer_id: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class VoidReservedTransferResponse(_message.Message):
    __slots__ = ("transfer", "replayed")
    TRANSFER_FIELD_NUMBER: _ClassVar[int]
    REPLAYED_FIELD_NUMBER: _ClassVar[int]
    transfer: Transfer
    replayed: bool
    def __init__(self, transfer: _Optional[_Union[Transfer, _Mapping]] = ..., replayed: _Optional[bool] = ...) -> None: ...

class ReverseTransferRequest(_message.Message):
    __slots__ = ("idempotency_key", "transfer_id", "reason", "metadata")
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    TRANSFER_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    idempotency_key: str
    transfer_id: str
    reason: str
    metadata: TransferMetadata
    def __init__(self, idempotency_key: _Optional[str] = ..., transfer_id: _Optional[str] = ..., reason: _Optional[str] = ..., metadata: _Optional[_Union[TransferMetadata, _Mapping]] = ...) -> None: ...

class ReverseTransferResponse(_message.Message):
    __slots__ = ("transfer", "replayed")
    TRANSFER_FIELD_NUMBER: _ClassVar[int]
    REPLAYED_FIELD_NUMBER: _ClassVar[int]
    transfer: Transfer
    replayed: bool
    def __init__(self, transfer: _Optional[_Union[Transfer, _Mapping]] = ..., replayed: _Optional[bool] = ...) -> None: ...

class GetAccountRequest(_message.Message):
    __slots__ = ("account",)
    ACCOUNT_FIELD_NUMBER: _ClassVar[int]
    account: AccountRef
    def __init__(self, account: _Optional[_Union[AccountRef, _Mapping]] = ...) -> None: ...

class GetAccountResponse(_message.Message):
    __slots__ = ("account",)
    ACCOUNT_FIELD_NUMBER: _ClassVar[int]
    account: Account
    def __init__(self, account: _Optional[_Union[Account, _Mapping]] = ...) -> None: ...

class ListTransfersRequest(_message.Message):
    __slots__ = ("account", "kinds", "page_size", "page_token")
    ACCOUNT_FIELD_NUMBER: _ClassVar[int]
    KINDS_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    account: AccountRef
    kinds: _containers.RepeatedScalarFieldContainer[TransferKind]
    page_size: int
    page_token: str
    def __init__(self, account: _Optional[_Union[AccountRef, _Mapping]] = ..., kinds: _Optional[_Iterable[_Union[TransferKind, str]]] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListTransfersResponse(_message.Message):
    __slots__ = ("transfers", "next_page_token")
    TRANSFERS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    transfers: _containers.RepeatedCompositeFieldContainer[Transfer]
    next_page_token: str
    def __init__(self, transfers: _Optional[_Iterable[_Union[Transfer, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class GetMerchantFeePeriodRequest(_message.Message):
    __slots__ = ("merchant_id", "month")
    MERCHANT_ID_FIELD_NUMBER: _ClassVar[int]
    MONTH_FIELD_NUMBER: _ClassVar[int]
    merchant_id: str
    month: str
    def __init__(self, merchant_id: _Optional[str] = ..., month: _Optional[str] = ...) -> None: ...

class MerchantFeePeriod(_message.Message):
    __slots__ = ("merchant_id", "period_start", "period_end", "nova_redeemed", "fee_cents", "redemption_count", "status")
    MERCHANT_ID_FIELD_NUMBER: _ClassVar[int]
    PERIOD_START_FIELD_NUMBER: _ClassVar[int]
    PERIOD_END_FIELD_NUMBER: _ClassVar[int]
    NOVA_REDEEMED_FIELD_NUMBER: _ClassVar[int]
    FEE_CENTS_FIELD_NUMBER: _ClassVar[int]
    REDEMPTION_COUNT_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    merchant_id: str
    period_start: str
    period_end: str
    nova_redeemed: int
    fee_cents: int
    redemption_count: int
    status: FeePeriodStatus
    def __init__(self, merchant_id: _Optional[str] = ..., period_start: _Optional[str] = ..., period_end: _Optional[str] = ..., nova_redeemed: _Optional[int] = ..., fee_cents: _Optional[int] = ..., redemption_count: _Optional[int] = ..., status: _Optional[_Union[FeePeriodStatus, str]] = ...) -> None: ...

class GetMerchantFeePeriodResponse(_message.Message):
    __slots__ = ("period",)
    PERIOD_FIELD_NUMBER: _ClassVar[int]
    period: MerchantFeePeriod
    def __init__(self, period: _Optional[_Union[MerchantFeePeriod, _Mapping]] = ...) -> None: ...

class CloseMerchantFeePeriodRequest(_message.Message):
    __slots__ = ("merchant_id", "month", "status")
    MERCHANT_ID_FIELD_NUMBER: _ClassVar[int]
    MONTH_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    merchant_id: str
    month: str
    status: FeePeriodStatus
    def __init__(self, merchant_id: _Optional[str] = ..., month: _Optional[str] = ..., status: _Optional[_Union[FeePeriodStatus, str]] = ...) -> None: ...

class CloseMerchantFeePeriodResponse(_message.Message):
    __slots__ = ("period",)
    PERIOD_FIELD_NUMBER: _ClassVar[int]
    period: MerchantFeePeriod
    def __init__(self, period: _Optional[_Union[MerchantFeePeriod, _Mapping]] = ...) -> None: ...

class GetWalletBalanceRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetWalletBalanceResponse(_message.Message):
    __slots__ = ("available_cents", "pending_cents", "total_earned_cents", "total_withdrawn_cents", "can_withdraw", "minimum_withdrawal_cents", "fee_threshold_cents", "stripe_onboarding_complete", "nova_balance")
    AVAILABLE_CENTS_FIELD_NUMBER: _ClassVar[int]
    PENDING_CENTS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_EARNED_CENTS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_WITHDRAWN_CENTS_FIELD_NUMBER: _ClassVar[int]
    CAN_WITHDRAW_FIELD_NUMBER: _ClassVar[int]
    MINIMUM_WITHDRAWAL_CENTS_FIELD_NUMBER: _ClassVar[int]
    FEE_THRESHOLD_CENTS_FIELD_NUMBER: _ClassVar[int]
    STRIPE_ONBOARDING_COMPLETE_FIELD_NUMBER: _ClassVar[int]
    NOVA_BALANCE_FIELD_NUMBER: _ClassVar[int]
    available_cents: int
    pending_cents: int
    total_earned_cents: int
    total_withdrawn_cents: int
    can_withdraw: bool
    minimum_withdrawal_cents: int
    fee_threshold_cents: int
    stripe_onboarding_complete: bool
    nova_balance: int
    def __init__(self, available_cents: _Optional[int] = ..., pending_cents: _Optional[int] = ..., total_earned_cents: _Optional[int] = ..., total_withdrawn_cents: _Optional[int] = ..., can_withdraw: _Optional[bool] = ..., minimum_withdrawal_cents: _Optional[int] = ..., fee_threshold_cents: _Optional[int] = ..., stripe_onboarding_complete: _Optional[bool] = ..., nova_balance: _Optional[int] = ...) -> None: ...

class ListWalletEntriesRequest(_message.Message):
    __slots__ = ("limit", "offset", "page_size", "page_token")
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    limit: int
    offset: int
    page_size: int
    page_token: str
    def __init__(self, limit: _Optional[int] = ..., offset: _Optional[int] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class WalletEntry(_message.Message):
    __slots__ = ("id", "amount_cents", "balance_after_cents", "transaction_type", "description", "created_at", "campaign_name", "sponsor_name")
    ID_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_CENTS_FIELD_NUMBER: _ClassVar[int]
    BALANCE_AFTER_CENTS_FIELD_NUMBER: _ClassVar[int]
    TRANSACTION_TYPE_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    CAMPAIGN_NAME_FIELD_NUMBER: _ClassVar[int]
    SPONSOR_NAME_FIELD_NUMBER: _ClassVar[int]
    id: str
    amount_cents: int
    balance_after_cents: int
    transaction_type: str
    description: str
    created_at: _timestamp_pb2.Timestamp
    campaign_name: str
    sponsor_name: str
    def __init__(self, id: _Optional[str] = ..., amount_cents: _Optional[int] = ..., balance_after_cents: _Optional[int] = ..., transaction_type: _Optional[str] = ..., description: _Optional[str] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., campaign_name: _Optional[str] = ..., sponsor_name: _Optional[str] = ...) -> None: ...

class ListWalletEntriesResponse(_message.Message):
    __slots__ = ("entries", "count", "next_page_token")
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    entries: _containers.RepeatedCompositeFieldContainer[WalletEntry]
    count: int
    next_page_token: str
    def __init__(self, entries: _Optional[_Iterable[_Union[WalletEntry, _Mapping]]] = ..., count: _Optional[int] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class GetWalletTimelineRequest(_message.Message):
    __slots__ = ("limit", "user_id")
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    limit: int
    user_id: str
    def __init__(self, limit: _Optional[int] = ..., user_id: _Optional[str] = ...) -> None: ...

class TimelineItem(_message.Message):
    __slots__ = ("id", "type", "amount_cents", "title", "subtitle", "created_at", "merchant_id", "redemption_id", "currency")
    ID_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_CENTS_FIELD_NUMBER: _ClassVar[int]
    TITLE_FIELD_NUMBER: _ClassVar[int]
    SUBTITLE_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    MERCHANT_ID_FIELD_NUMBER: _ClassVar[int]
    REDEMPTION_ID_FIELD_NUMBER: _ClassVar[int]
    CURRENCY_FIELD_NUMBER: _ClassVar[int]
    id: str
    type: str
    amount_cents: int
    title: str
    subtitle: str
    created_at: _timestamp_pb2.Timestamp
    merchant_id: str
    redemption_id: str
    currency: Currency
    def __init__(self, id: _Optional[str] = ..., type: _Optional[str] = ..., amount_cents: _Optional[int] = ..., title: _Optional[str] = ..., subtitle: _Optional[str] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., merchant_id: _Optional[str] = ..., redemption_id: _Optional[str] = ..., currency: _Optional[_Union[Currency, str]] = ...) -> None: ...

class GetWalletTimelineResponse(_message.Message):
    __slots__ = ("items", "json_array")
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    JSON_ARRAY_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedCompositeFieldContainer[TimelineItem]
    json_array: _httpbody_pb2.HttpBody
    def __init__(self, items: _Optional[_Iterable[_Union[TimelineItem, _Mapping]]] = ..., json_array: _Optional[_Union[_httpbody_pb2.HttpBody, _Mapping]] = ...) -> None: ...

class RequestPayoutRequest(_message.Message):
    __slots__ = ("amount_cents", "request_id")
    AMOUNT_CENTS_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    amount_cents: int
    request_id: str
    def __init__(self, amount_cents: _Optional[int] = ..., request_id: _Optional[str] = ...) -> None: ...

class Payout(_message.Message):
    __slots__ = ("id", "amount_cents", "status", "created_at", "paid_at", "failure_reason", "stripe_transfer_id")
    ID_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_CENTS_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    PAID_AT_FIELD_NUMBER: _ClassVar[int]
    FAILURE_REASON_FIELD_NUMBER: _ClassVar[int]
    STRIPE_TRANSFER_ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    amount_cents: int
    status: PayoutStatus
    created_at: _timestamp_pb2.Timestamp
    paid_at: _timestamp_pb2.Timestamp
    failure_reason: str
    stripe_transfer_id: str
    def __init__(self, id: _Optional[str] = ..., amount_cents: _Optional[int] = ..., status: _Optional[_Union[PayoutStatus, str]] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., paid_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., failure_reason: _Optional[str] = ..., stripe_transfer_id: _Optional[str] = ...) -> None: ...

class RequestPayoutResponse(_message.Message):
    __slots__ = ("payout_id", "status", "transfer_id", "amount_cents", "fee_cents", "payout")
    PAYOUT_ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    TRANSFER_ID_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_CENTS_FIELD_NUMBER: _ClassVar[int]
    FEE_CENTS_FIELD_NUMBER: _ClassVar[int]
    PAYOUT_FIELD_NUMBER: _ClassVar[int]
    payout_id: str
    status: PayoutStatus
    transfer_id: str
    amount_cents: int
    fee_cents: int
    payout: Payout
    def __init__(self, payout_id: _Optional[str] = ..., status: _Optional[_Union[PayoutStatus, str]] = ..., transfer_id: _Optional[str] = ..., amount_cents: _Optional[int] = ..., fee_cents: _Optional[int] = ..., payout: _Optional[_Union[Payout, _Mapping]] = ...) -> None: ...

class ListPayoutsRequest(_message.Message):
    __slots__ = ("limit", "page_size", "page_token")
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    limit: int
    page_size: int
    page_token: str
    def __init__(self, limit: _Optional[int] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListPayoutsResponse(_message.Message):
    __slots__ = ("payouts", "next_page_token")
    PAYOUTS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    payouts: _containers.RepeatedCompositeFieldContainer[Payout]
    next_page_token: str
    def __init__(self, payouts: _Optional[_Iterable[_Union[Payout, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class CreateStripeAccountRequest(_message.Message):
    __slots__ = ("email",)
    EMAIL_FIELD_NUMBER: _ClassVar[int]
    email: str
    def __init__(self, email: _Optional[str] = ...) -> None: ...

class CreateStripeAccountResponse(_message.Message):
    __slots__ = ("stripe_account_id", "status", "onboarding_complete")
    STRIPE_ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    ONBOARDING_COMPLETE_FIELD_NUMBER: _ClassVar[int]
    stripe_account_id: str
    status: str
    onboarding_complete: bool
    def __init__(self, stripe_account_id: _Optional[str] = ..., status: _Optional[str] = ..., onboarding_complete: _Optional[bool] = ...) -> None: ...

class CreateStripeAccountLinkRequest(_message.Message):
    __slots__ = ("return_url", "refresh_url")
    RETURN_URL_FIELD_NUMBER: _ClassVar[int]
    REFRESH_URL_FIELD_NUMBER: _ClassVar[int]
    return_url: str
    refresh_url: str
    def __init__(self, return_url: _Optional[str] = ..., refresh_url: _Optional[str] = ...) -> None: ...

class CreateStripeAccountLinkResponse(_message.Message):
    __slots__ = ("url", "expires_at")
    URL_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    url: str
    expires_at: _timestamp_pb2.Timestamp
    def __init__(self, url: _Optional[str] = ..., expires_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class GetStripeStatusRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetStripeStatusResponse(_message.Message):
    __slots__ = ("onboarding_complete", "has_account", "details_submitted", "charges_enabled", "payouts_enabled")
    ONBOARDING_COMPLETE_FIELD_NUMBER: _ClassVar[int]
    HAS_ACCOUNT_FIELD_NUMBER: _ClassVar[int]
    DETAILS_SUBMITTED_FIELD_NUMBER: _ClassVar[int]
    CHARGES_ENABLED_FIELD_NUMBER: _ClassVar[int]
    PAYOUTS_ENABLED_FIELD_NUMBER: _ClassVar[int]
    onboarding_complete: bool
    has_account: bool
    details_submitted: bool
    charges_enabled: bool
    payouts_enabled: bool
    def __init__(self, onboarding_complete: _Optional[bool] = ..., has_account: _Optional[bool] = ..., details_submitted: _Optional[bool] = ..., charges_enabled: _Optional[bool] = ..., payouts_enabled: _Optional[bool] = ...) -> None: ...

class HandleStripeEventRequest(_message.Message):
    __slots__ = ("http_body",)
    HTTP_BODY_FIELD_NUMBER: _ClassVar[int]
    http_body: _httpbody_pb2.HttpBody
    def __init__(self, http_body: _Optional[_Union[_httpbody_pb2.HttpBody, _Mapping]] = ...) -> None: ...

class HandleStripeEventResponse(_message.Message):
    __slots__ = ("outcome", "event_id", "event_type")
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    EVENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    outcome: WebhookOutcome
    event_id: str
    event_type: str
    def __init__(self, outcome: _Optional[_Union[WebhookOutcome, str]] = ..., event_id: _Optional[str] = ..., event_type: _Optional[str] = ...) -> None: ...

class AdminGrantRequest(_message.Message):
    __slots__ = ("driver_id", "merchant_id", "amount", "reason", "idempotency_key")
    DRIVER_ID_FIELD_NUMBER: _ClassVar[int]
    MERCHANT_ID_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    driver_id: str
    merchant_id: str
    amount: int
    reason: str
    idempotency_key: str
    def __init__(self, driver_id: _Optional[str] = ..., merchant_id: _Optional[str] = ..., amount: _Optional[int] = ..., reason: _Optional[str] = ..., idempotency_key: _Optional[str] = ...) -> None: ...

class AdminGrantResponse(_message.Message):
    __slots__ = ("transfer_id", "amount", "balance_after", "created_at", "replayed")
    TRANSFER_ID_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_FIELD_NUMBER: _ClassVar[int]
    BALANCE_AFTER_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    REPLAYED_FIELD_NUMBER: _ClassVar[int]
    transfer_id: str
    amount: int
    balance_after: int
    created_at: _timestamp_pb2.Timestamp
    replayed: bool
    def __init__(self, transfer_id: _Optional[str] = ..., amount: _Optional[int] = ..., balance_after: _Optional[int] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., replayed: _Optional[bool] = ...) -> None: ...

class RefundCampaignBudgetRequest(_message.Message):
    __slots__ = ("idempotency_key", "campaign_id", "currency", "amount_cents", "reason", "kept_checkout_session_id")
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    CAMPAIGN_ID_FIELD_NUMBER: _ClassVar[int]
    CURRENCY_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_CENTS_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    KEPT_CHECKOUT_SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    idempotency_key: str
    campaign_id: str
    currency: Currency
    amount_cents: int
    reason: str
    kept_checkout_session_id: str
    def __init__(self, idempotency_key: _Optional[str] = ..., campaign_id: _Optional[str] = ..., currency: _Optional[_Union[Currency, str]] = ..., amount_cents: _Optional[int] = ..., reason: _Optional[str] = ..., kept_checkout_session_id: _Optional[str] = ...) -> None: ...

class RefundCampaignBudgetResponse(_message.Message):
    __slots__ = ("refunded_cents", "stripe_refunded_cents", "replayed")
    REFUNDED_CENTS_FIELD_NUMBER: _ClassVar[int]
    STRIPE_REFUNDED_CENTS_FIELD_NUMBER: _ClassVar[int]
    REPLAYED_FIELD_NUMBER: _ClassVar[int]
    refunded_cents: int
    stripe_refunded_cents: int
    replayed: bool
    def __init__(self, refunded_cents: _Optional[int] = ..., stripe_refunded_cents: _Optional[int] = ..., replayed: _Optional[bool] = ...) -> None: ...

class ListPaymentIssuesRequest(_message.Message):
    __slots__ = ("page_size",)
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    def __init__(self, page_size: _Optional[int] = ...) -> None: ...

class PaymentIssue(_message.Message):
    __slots__ = ("event_id", "event_type", "object_id", "problem", "created_at")
    EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    EVENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    OBJECT_ID_FIELD_NUMBER: _ClassVar[int]
    PROBLEM_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    event_id: str
    event_type: str
    object_id: str
    problem: str
    created_at: _timestamp_pb2.Timestamp
    def __init__(self, event_id: _Optional[str] = ..., event_type: _Optional[str] = ..., object_id: _Optional[str] = ..., problem: _Optional[str] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ListPaymentIssuesResponse(_message.Message):
    __slots__ = ("issues",)
    ISSUES_FIELD_NUMBER: _ClassVar[int]
    issues: _containers.RepeatedCompositeFieldContainer[PaymentIssue]
    def __init__(self, issues: _Optional[_Iterable[_Union[PaymentIssue, _Mapping]]] = ...) -> None: ...

class ListAuditEntriesRequest(_message.Message):
    __slots__ = ("query",)
    QUERY_FIELD_NUMBER: _ClassVar[int]
    query: _audit_pb2.AuditQuery
    def __init__(self, query: _Optional[_Union[_audit_pb2.AuditQuery, _Mapping]] = ...) -> None: ...

class ListAuditEntriesResponse(_message.Message):
    __slots__ = ("entries",)
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    entries: _containers.RepeatedCompositeFieldContainer[_audit_pb2.AuditEntry]
    def __init__(self, entries: _Optional[_Iterable[_Union[_audit_pb2.AuditEntry, _Mapping]]] = ...) -> None: ...

class ListUnknownPayoutsRequest(_message.Message):
    __slots__ = ("limit",)
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    limit: int
    def __init__(self, limit: _Optional[int] = ...) -> None: ...

class UnknownPayout(_message.Message):
    __slots__ = ("payout", "driver_id", "updated_at")
    PAYOUT_FIELD_NUMBER: _ClassVar[int]
    DRIVER_ID_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    payout: Payout
    driver_id: str
    updated_at: _timestamp_pb2.Timestamp
    def __init__(self, payout: _Optional[_Union[Payout, _Mapping]] = ..., driver_id: _Optional[str] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ListUnknownPayoutsResponse(_message.Message):
    __slots__ = ("payouts",)
    PAYOUTS_FIELD_NUMBER: _ClassVar[int]
    payouts: _containers.RepeatedCompositeFieldContainer[UnknownPayout]
    def __init__(self, payouts: _Optional[_Iterable[_Union[UnknownPayout, _Mapping]]] = ...) -> None: ...

class ReconcilePayoutsRequest(_message.Message):
    __slots__ = ("reason",)
    REASON_FIELD_NUMBER: _ClassVar[int]
    reason: str
    def __init__(self, reason: _Optional[str] = ...) -> None: ...

class ReconcilePayoutsResponse(_message.Message):
    __slots__ = ("settled", "still_unknown")
    SETTLED_FIELD_NUMBER: _ClassVar[int]
    STILL_UNKNOWN_FIELD_NUMBER: _ClassVar[int]
    settled: int
    still_unknown: int
    def __init__(self, settled: _Optional[int] = ..., still_unknown: _Optional[int] = ...) -> None: ...

class ListDeadLettersRequest(_message.Message):
    __slots__ = ("limit",)
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    limit: int
    def __init__(self, limit: _Optional[int] = ...) -> None: ...

class ListDeadLettersResponse(_message.Message):
    __slots__ = ("dead_letters",)
    DEAD_LETTERS_FIELD_NUMBER: _ClassVar[int]
    dead_letters: _containers.RepeatedCompositeFieldContainer[_outbox_pb2.DeadLetter]
    def __init__(self, dead_letters: _Optional[_Iterable[_Union[_outbox_pb2.DeadLetter, _Mapping]]] = ...) -> None: ...

class ReplayDeadLettersRequest(_message.Message):
    __slots__ = ("ids", "reason")
    IDS_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    ids: _containers.RepeatedScalarFieldContainer[int]
    reason: str
    def __init__(self, ids: _Optional[_Iterable[int]] = ..., reason: _Optional[str] = ...) -> None: ...

class ReplayDeadLettersResponse(_message.Message):
    __slots__ = ("replayed",)
    REPLAYED_FIELD_NUMBER: _ClassVar[int]
    replayed: int
    def __init__(self, replayed: _Optional[int] = ...) -> None: ...

class CheckLedgerRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class CheckLedgerResponse(_message.Message):
    __slots__ = ("violations",)
    VIOLATIONS_FIELD_NUMBER: _ClassVar[int]
    violations: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, violations: _Optional[_Iterable[str]] = ...) -> None: ...

class RunReconciliationRequest(_message.Message):
    __slots__ = ("since",)
    SINCE_FIELD_NUMBER: _ClassVar[int]
    since: _timestamp_pb2.Timestamp
    def __init__(self, since: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ReconciliationInvariant(_message.Message):
    __slots__ = ("name", "drift_ids")
    NAME_FIELD_NUMBER: _ClassVar[int]
    DRIFT_IDS_FIELD_NUMBER: _ClassVar[int]
    name: str
    drift_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, name: _Optional[str] = ..., drift_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class RunReconciliationResponse(_message.Message):
    __slots__ = ("invariants", "holds")
    INVARIANTS_FIELD_NUMBER: _ClassVar[int]
    HOLDS_FIELD_NUMBER: _ClassVar[int]
    invariants: _containers.RepeatedCompositeFieldContainer[ReconciliationInvariant]
    holds: bool
    def __init__(self, invariants: _Optional[_Iterable[_Union[ReconciliationInvariant, _Mapping]]] = ..., holds: _Optional[bool] = ...) -> None: ...

class GetDriverWalletRequest(_message.Message):
    __slots__ = ("driver_id",)
    DRIVER_ID_FIELD_NUMBER: _ClassVar[int]
    driver_id: str
    def __init__(self, driver_id: _Optional[str] = ...) -> None: ...

class GetDriverWalletResponse(_message.Message):
    __slots__ = ("wallet",)
    WALLET_FIELD_NUMBER: _ClassVar[int]
    wallet: GetWalletBalanceResponse
    def __init__(self, wallet: _Optional[_Union[GetWalletBalanceResponse, _Mapping]] = ...) -> None: ...
