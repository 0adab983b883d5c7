import datetime

from buf.validate import validate_pb2 as _validate_pb2
from google.api import annotations_pb2 as _annotations_pb2
from google.api import httpbody_pb2 as _httpbody_pb2
from google.protobuf import struct_pb2 as _struct_pb2
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

class MerchantStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    MERCHANT_STATUS_UNSPECIFIED: _ClassVar[MerchantStatus]
    MERCHANT_STATUS_PENDING: _ClassVar[MerchantStatus]
    MERCHANT_STATUS_ACTIVE: _ClassVar[MerchantStatus]
    MERCHANT_STATUS_PAUSED: _ClassVar[MerchantStatus]
    MERCHANT_STATUS_SUSPENDED: _ClassVar[MerchantStatus]

class PerkSource(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PERK_SOURCE_UNSPECIFIED: _ClassVar[PerkSource]
    PERK_SOURCE_CUSTOM: _ClassVar[PerkSource]
    PERK_SOURCE_RECOMMENDED: _ClassVar[PerkSource]
    PERK_SOURCE_DEFAULT: _ClassVar[PerkSource]

class RedemptionStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    REDEMPTION_STATUS_UNSPECIFIED: _ClassVar[RedemptionStatus]
    REDEMPTION_STATUS_PENDING: _ClassVar[RedemptionStatus]
    REDEMPTION_STATUS_COMPLETED: _ClassVar[RedemptionStatus]
    REDEMPTION_STATUS_FAILED: _ClassVar[RedemptionStatus]

class ExclusiveStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    EXCLUSIVE_STATUS_UNSPECIFIED: _ClassVar[ExclusiveStatus]
    EXCLUSIVE_STATUS_ACTIVE: _ClassVar[ExclusiveStatus]
    EXCLUSIVE_STATUS_COMPLETED: _ClassVar[ExclusiveStatus]
    EXCLUSIVE_STATUS_EXPIRED: _ClassVar[ExclusiveStatus]
    EXCLUSIVE_STATUS_CANCELED: _ClassVar[ExclusiveStatus]

class MerchantClaimStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    MERCHANT_CLAIM_STATUS_UNSPECIFIED: _ClassVar[MerchantClaimStatus]
    MERCHANT_CLAIM_STATUS_PENDING: _ClassVar[MerchantClaimStatus]
    MERCHANT_CLAIM_STATUS_VERIFIED: _ClassVar[MerchantClaimStatus]
MERCHANT_STATUS_UNSPECIFIED: MerchantStatus
MERCHANT_STATUS_PENDING: MerchantStatus
MERCHANT_STATUS_ACTIVE: MerchantStatus
MERCHANT_STATUS_PAUSED: MerchantStatus
MERCHANT_STATUS_SUSPENDED: MerchantStatus
PERK_SOURCE_UNSPECIFIED: PerkSource
PERK_SOURCE_CUSTOM: PerkSource
PERK_SOURCE_RECOMMENDED: PerkSource
PERK_SOURCE_DEFAULT: PerkSource
REDEMPTION_STATUS_UNSPECIFIED: RedemptionStatus
REDEMPTION_STATUS_PENDING: RedemptionStatus
REDEMPTION_STATUS_COMPLETED: RedemptionStatus
REDEMPTION_STATUS_FAILED: RedemptionStatus
EXCLUSIVE_STATUS_UNSPECIFIED: ExclusiveStatus
EXCLUSIVE_STATUS_ACTIVE: ExclusiveStatus
EXCLUSIVE_STATUS_COMPLETED: ExclusiveStatus
EXCLUSIVE_STATUS_EXPIRED: ExclusiveStatus
EXCLUSIVE_STATUS_CANCELED: ExclusiveStatus
MERCHANT_CLAIM_STATUS_UNSPECIFIED: MerchantClaimStatus
MERCHANT_CLAIM_STATUS_PENDING: MerchantClaimStatus
MERCHANT_CLAIM_STATUS_VERIFIED: MerchantClaimStatus

class OpeningPeriod(_message.Message):
    __slots__ = ("day_of_week", "open_minute", "close_minute")
    DAY_OF_WEEK_FIELD_NUMBER: _ClassVar[int]
    OPEN_MINUTE_FIELD_NUMBER: _ClassVar[int]
    CLOSE_MINUTE_FIELD_NUMBER: _ClassVar[int]
    day_of_week: int
    open_minute: int
    close_minute: int
    def __init__(self, day_of_week: _Optional[int] = ..., open_minute: _Optional[int] = ..., close_minute: _Optional[int] = ...) -> None: ...

class OpeningHours(_message.Message):
    __slots__ = ("time_zone", "periods")
    TIME_ZONE_FIELD_NUMBER: _ClassVar[int]
    PERIODS_FIELD_NUMBER: _ClassVar[int]
    time_zone: str
    periods: _containers.RepeatedCompositeFieldContainer[OpeningPeriod]
    def __init__(self, time_zone: _Optional[str] = ..., periods: _Optional[_Iterable[_Union[OpeningPeriod, _Mapping]]] = ...) -> None: ...

class Perk(_message.Message):
    __slots__ = ("perk_cents", "source", "custom_perk_cents", "recommended_perk_cents", "label")
    PERK_CENTS_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    CUSTOM_PERK_CENTS_FIELD_NUMBER: _ClassVar[int]
    RECOMMENDED_PERK_CENTS_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    perk_cents: int
    source: PerkSource
    custom_perk_cents: int
    recommended_perk_cents: int
    label: str
    def __init__(self, perk_cents: _Optional[int] = ..., source: _Optional[_Union[PerkSource, str]] = ..., custom_perk_cents: _Optional[int] = ..., recommended_perk_cents: _Optional[int] = ..., label: _Optional[str] = ...) -> None: ...

class Merchant(_message.Message):
    __slots__ = ("id", "name", "category", "lat", "lng", "address", "phone", "website", "place_id", "hours", "perk", "status", "owner_user_id", "zone_slug", "logo_url", "photo_urls", "square_connected", "created_at")
    ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    CATEGORY_FIELD_NUMBER: _ClassVar[int]
    LAT_FIELD_NUMBER: _ClassVar[int]
    LNG_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    PHONE_FIELD_NUMBER: _ClassVar[int]
    WEBSITE_FIELD_NUMBER: _ClassVar[int]
    PLACE_ID_FIELD_NUMBER: _ClassVar[int]
    HOURS_FIELD_NUMBER: _ClassVar[int]
    PERK_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    OWNER_USER_ID_FIELD_NUMBER: _ClassVar[int]
    ZONE_SLUG_FIELD_NUMBER: _ClassVar[int]
    LOGO_URL_FIELD_NUMBER: _ClassVar[int]
    PHOTO_URLS_FIELD_NUMBER: _ClassVar[int]
    SQUARE_CONNECTED_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    id: str
    name: str
    category: str
    lat: float
    lng: float
    address: str
    phone: str
    website: str
    place_id: str
    hours: OpeningHours
    perk: Perk
    status: MerchantStatus
    owner_user_id: str
    zone_slug: str
    logo_url: str
    photo_urls: _containers.RepeatedScalarFieldContainer[str]
    square_connected: bool
    created_at: _timestamp_pb2.Timestamp
    def __init__(self, id: _Optional[str] = ..., name: _Optional[str] = ..., category: _Optional[str] = ..., lat: _Optional[float] = ..., lng: _Optional[float] = ..., address: _Optional[str] = ..., phone: _Optional[str] = ..., website: _Optional[str] = ..., place_id: _Optional[str] = ..., hours: _Optional[_Union[OpeningHours, _Mapping]] = ..., perk: _Optional[_Union[Perk, _Mapping]] = ..., status: _Optional[_Union[MerchantStatus, str]] = ..., owner_user_id: _Optional[str] = ..., zone_slug: _Optional[str] = ..., logo_url: _Optional[str] = ..., photo_urls: _Optional[_Iterable[str]] = ..., square_connected: _Optional[bool] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class Redemption(_message.Message):
    __slots__ = ("id", "status", "merchant_id", "merchant_name", "driver_id", "order_total_cents", "discount_cents", "nova_spent_cents", "merchant_fee_cents", "square_order_id", "transfer_id", "created_at")
    ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    MERCHANT_ID_FIELD_NUMBER: _ClassVar[int]
    MERCHANT_NAME_FIELD_NUMBER: _ClassVar[int]
    DRIVER_ID_FIELD_NUMBER: _ClassVar[int]
    ORDER_TOTAL_CENTS_FIELD_NUMBER: _ClassVar[int]
    DISCOUNT_CENTS_FIELD_NUMBER: _ClassVar[int]
    NOVA_SPENT_CENTS_FIELD_NUMBER: _ClassVar[int]
    MERCHANT_FEE_CENTS_FIELD_NUMBER: _ClassVar[int]
    SQUARE_ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    TRANSFER_ID_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    id: str
    status: RedemptionStatus
    merchant_id: str
    merchant_name: str
    driver_id: str
    order_total_cents: int
    discount_cents: int
    nova_spent_cents: int
    merchant_fee_cents: int
    square_order_id: str
    transfer_id: str
    created_at: _timestamp_pb2.Timestamp
    def __init__(self, id: _Optional[str] = ..., status: _Optional[_Union[RedemptionStatus, str]] = ..., merchant_id: _Optional[str] = ..., merchant_name: _Optional[str] = ..., driver_id: _Optional[str] = ..., order_total_cents: _Optional[int] = ..., discount_cents: _Optional[int] = ..., nova_spent_cents: _Optional[int] = ..., merchant_fee_cents: _Optional[int] = ..., square_order_id: _Optional[str] = ..., transfer_id: _Optional[str] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ResolveCheckoutQrRequest(_message.Message):
    __slots__ = ("token",)
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    token: str
    def __init__(self, token: _Optional[str] = ...) -> None: ...

class CheckoutMerchant(_message.Message):
    __slots__ = ("id", "name", "category", "logo_url", "address")
    ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    CATEGORY_FIELD_NUMBER: _ClassVar[int]
    LOGO_URL_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    id: str
    name: str
    category: str
    logo_url: str
    address: str
    def __init__(self, id: _Optional[str] = ..., name: _Optional[str] = ..., category: _Optional[str] = ..., logo_url: _Optional[str] = ..., address: _Optional[str] = ...) -> None: ...

class CheckoutPerk(_message.Message):
    __slots__ = ("perk_cents", "label")
    PERK_CENTS_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    perk_cents: int
    label: str
    def __init__(self, perk_cents: _Optional[int] = ..., label: _Optional[str] = ...) -> None: ...

class CheckoutDriver(_message.Message):
    __slots__ = ("nova_balance", "max_discount_cents")
    NOVA_BALANCE_FIELD_NUMBER: _ClassVar[int]
    MAX_DISCOUNT_CENTS_FIELD_NUMBER: _ClassVar[int]
    nova_balance: int
    max_discount_cents: int
    def __init__(self, nova_balance: _Optional[int] = ..., max_discount_cents: _Optional[int] = ...) -> None: ...

class CheckoutCharger(_message.Message):
    __slots__ = ("id", "address", "lat", "lng")
    ID_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    LAT_FIELD_NUMBER: _ClassVar[int]
    LNG_FIELD_NUMBER: _ClassVar[int]
    id: str
    address: str
    lat: float
    lng: float
    def __init__(self, id: _Optional[str] = ..., address: _Optional[str] = ..., lat: _Optional[float] = ..., lng: _Optional[float] = ...) -> None: ...

class ResolveCheckoutQrResponse(_message.Message):
    __slots__ = ("ok", "merchant", "perk", "driver", "charger")
    OK_FIELD_NUMBER: _ClassVar[int]
    MERCHANT_FIELD_NUMBER: _ClassVar[int]
    PERK_FIELD_NUMBER: _ClassVar[int]
    DRIVER_FIELD_NUMBER: _ClassVar[int]
    CHARGER_FIELD_NUMBER: _ClassVar[int]
    ok: bool
    merchant: CheckoutMerchant
    perk: CheckoutPerk
    driver: CheckoutDriver
    charger: CheckoutCharger
    def __init__(self, ok: _Optional[bool] = ..., merchant: _Optional[_Union[CheckoutMerchant, _Mapping]] = ..., perk: _Optional[_Union[CheckoutPerk, _Mapping]] = ..., driver: _Optional[_Union[CheckoutDriver, _Mapping]] = ..., charger: _Optional[_Union[CheckoutCharger, _Mapping]] = ...) -> None: ...

class ListRecentSquareOrdersRequest(_message.Message):
    __slots__ = ("token", "minutes")
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    MINUTES_FIELD_NUMBER: _ClassVar[int]
    token: str
    minutes: int
    def __init__(self, token: _Optional[str] = ..., minutes: _Optional[int] = ...) -> None: ...

class RecentSquareOrder(_message.Message):
    __slots__ = ("id", "total_cents", "currency", "state", "created_at", "redeemed")
    ID_FIELD_NUMBER: _ClassVar[int]
    TOTAL_CENTS_FIELD_NUMBER: _ClassVar[int]
    CURRENCY_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    REDEEMED_FIELD_NUMBER: _ClassVar[int]
    id: str
    total_cents: int
    currency: str
    state: str
    created_at: _timestamp_pb2.Timestamp
    redeemed: bool
    def __init__(self, id: _Optional[str] = ..., total_cents: _Optional[int] = ..., currency: _Optional[str] = ..., state: _Optional[str] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., redeemed: _Optional[bool] = ...) -> None: ...

class ListRecentSquareOrdersResponse(_message.Message):
    __slots__ = ("merchant_id", "merchant_name", "perk", "orders")
    MERCHANT_ID_FIELD_NUMBER: _ClassVar[int]
    MERCHANT_NAME_FIELD_NUMBER: _ClassVar[int]
    PERK_FIELD_NUMBER: _ClassVar[int]
    ORDERS_FIELD_NUMBER: _ClassVar[int]
    merchant_id: str
    merchant_name: str
    perk: CheckoutPerk
    orders: _containers.RepeatedCompositeFieldContainer[RecentSquareOrder]
    def __init__(self, merchant_id: _Optional[str] = ..., merchant_name: _Optional[str] = ..., perk: _Optional[_Union[CheckoutPerk, _Mapping]] = ..., orders: _Optional[_Iterable[_Union[RecentSquareOrder, _Mapping]]] = ...) -> None: ...

class RedeemAtCheckoutRequest(_message.Message):
    __slots__ = ("qr_token", "order_total_cents", "square_order_id", "idempotency_key")
    QR_TOKEN_FIELD_NUMBER: _ClassVar[int]
    ORDER_TOTAL_CENTS_FIELD_NUMBER: _ClassVar[int]
    SQUARE_ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    qr_token: str
    order_total_cents: int
    square_order_id: str
    idempotency_key: str
    def __init__(self, qr_token: _Optional[str] = ..., order_total_cents: _Optional[int] = ..., square_order_id: _Optional[str] = ..., idempotency_key: _Optional[str] = ...) -> None: ...

class RedeemAtCheckoutResponse(_message.Message):
    __slots__ = ("success", "merchant_id", "discount_cents", "order_total_cents", "nova_spent_cents", "remaining_nova_cents", "message", "redemption_id", "square_order_id", "merchant_fee_cents", "status", "replayed", "redemption")
    SUCCESS_FIELD_NUMBER: _ClassVar[int]
    MERCHANT_ID_FIELD_NUMBER: _ClassVar[int]
    DISCOUNT_CENTS_FIELD_NUMBER: _ClassVar[int]
    ORDER_TOTAL_CENTS_FIELD_NUMBER: _ClassVar[int]
    NOVA_SPENT_CENTS_FIELD_NUMBER: _ClassVar[int]
    REMAINING_NOVA_CENTS_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    REDEMPTION_ID_FIELD_NUMBER: _ClassVar[int]
    SQUARE_ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    MERCHANT_FEE_CENTS_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    REPLAYED_FIELD_NUMBER: _ClassVar[int]
    REDEMPTION_FIELD_NUMBER: _ClassVar[int]
    success: bool
    merchant_id: str
    discount_cents: int
    order_total_cents: int
    nova_spent_cents: int
    remaining_nova_cents: int
    message: str
    redemption_id: str
    square_order_id: str
    merchant_fee_cents: int
    status: RedemptionStatus
    replayed: bool
    redemption: Redemption
    def __init__(self, success: _Optional[bool] = ..., merchant_id: _Optional[str] = ..., discount_cents: _Optional[int] = ..., order_total_cents: _Optional[int] = ..., nova_spent_cents: _Optional[int] = ..., remaining_nova_cents: _Optional[int] = ..., message: _Optional[str] = ..., redemption_id: _Optional[str] = ..., square_order_id: _Optional[str] = ..., merchant_fee_cents: _Optional[int] = ..., status: _Optional[_Union[RedemptionStatus, str]] = ..., replayed: _Optional[bool] = ..., redemption: _Optional[_Union[Redemption, _Mapping]] = ...) -> None: ...

class GetRedemptionRequest(_message.Message):
    __slots__ = ("redemption_id",)
    REDEMPTION_ID_FIELD_NUMBER: _ClassVar[int]
    redemption_id: str
    def __init__(self, redemption_id: _Optional[str] = ...) -> None: ...

class GetRedemptionResponse(_message.Message):
    __slots__ = ("redemption_id", "merchant_name", "discount_cents", "order_total_cents", "created_at", "status", "redemption")
    REDEMPTION_ID_FIELD_NUMBER: _ClassVar[int]
    MERCHANT_NAME_FIELD_NUMBER: _ClassVar[int]
    DISCOUNT_CENTS_FIELD_NUMBER: _ClassVar[int]
    ORDER_TOTAL_CENTS_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    REDEMPTION_FIELD_NUMBER: _ClassVar[int]
    redemption_id: str
    merchant_name: str
    discount_cents: int
    order_total_cents: int
    created_at: _timestamp_pb2.Timestamp
    status: RedemptionStatus
    redemption: Redemption
    def __init__(self, redemption_id: _Optional[str] = ..., merchant_name: _Optional[str] = ..., discount_cents: _Optional[int] = ..., order_total_cents: _Optional[int] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., status: _Optional[_Union[RedemptionStatus, str]] = ..., redemption: _Optional[_Union[Redemption, _Mapping]] = ...) -> None: ...

class ActivateExclusiveRequest(_message.Message):
    __slots__ = ("merchant_id", "merchant_place_id", "charger_id", "charger_place_id", "intent_session_id", "lat", "lng", "accuracy_m", "intent", "party_size", "needs_power_outlet", "is_to_go", "idempotency_key")
    MERCHANT_ID_FIELD_NUMBER: _ClassVar[int]
    MERCHANT_PLACE_ID_FIELD_NUMBER: _ClassVar[int]
    CHARGER_ID_FIELD_NUMBER: _ClassVar[int]
    CHARGER_PLACE_ID_FIELD_NUMBER: _ClassVar[int]
    INTENT_SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    LAT_FIELD_NUMBER: _ClassVar[int]
    LNG_FIELD_NUMBER: _ClassVar[int]
    ACCURACY_M_FIELD_NUMBER: _ClassVar[int]
    INTENT_FIELD_NUMBER: _ClassVar[int]
    PARTY_SIZE_FIELD_NUMBER: _ClassVar[int]
    NEEDS_POWER_OUTLET_FIELD_NUMBER: _ClassVar[int]
    IS_TO_GO_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    merchant_id: str
    merchant_place_id: str
    charger_id: str
    charger_place_id: str
    intent_session_id: str
    lat: float
    lng: float
    accuracy_m: float
    intent: str
    party_size: int
    needs_power_outlet: bool
    is_to_go: bool
    idempotency_key: str
    def __init__(self, merchant_id: _Optional[str] = ..., merchant_place_id: _Optional[str] = ..., charger_id: _Optional[str] = ..., charger_place_id: _Optional[str] = ..., intent_session_id: _Optional[str] = ..., lat: _Optional[float] = ..., lng: _Optional[float] = ..., accuracy_m: _Optional[float] = ..., intent: _Optional[str] = ..., party_size: _Optional[int] = ..., needs_power_outlet: _Optional[bool] = ..., is_to_go: _Optional[bool] = ..., idempotency_key: _Optional[str] = ...) -> None: ...

class ExclusiveSession(_message.Message):
    __slots__ = ("id", "merchant_id", "charger_id", "expires_at", "activated_at", "remaining_seconds", "merchant_name", "merchant_place_id", "exclusive_title", "merchant_lat", "merchant_lng", "merchant_distance_m", "merchant_walk_time_min", "merchant_category", "merchant_photo_url", "charger_name", "verification_code", "charging_active", "charging_session_ended_at", "status", "arrival_code")
    ID_FIELD_NUMBER: _ClassVar[int]
    MERCHANT_ID_FIELD_NUMBER: _ClassVar[int]
    CHARGER_ID_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    ACTIVATED_AT_FIELD_NUMBER: _ClassVar[int]
    REMAINING_SECONDS_FIELD_NUMBER: _ClassVar[int]
    MERCHANT_NAME_FIELD_NUMBER: _ClassVar[int]
    MERCHANT_PLACE_ID_FIELD_NUMBER: _ClassVar[int]
    EXCLUSIVE_TITLE_FIELD_NUMBER: _ClassVar[int]
    MERCHANT_LAT_FIELD_NUMBER: _ClassVar[int]
    MERCHANT_LNG_FIELD_NUMBER: _ClassVar[int]
    MERCHANT_DISTANCE_M_FIELD_NUMBER: _ClassVar[int]
    MERCHANT_WALK_TIME_MIN_FIELD_NUMBER: _ClassVar[int]
    MERCHANT_CATEGORY_FIELD_NUMBER: _ClassVar[int]
    MERCHANT_PHOTO_URL_FIELD_NUMBER: _ClassVar[int]
    CHARGER_NAME_FIELD_NUMBER: _ClassVar[int]
    VERIFICATION_CODE_FIELD_NUMBER: _ClassVar[int]
    CHARGING_ACTIVE_FIELD_NUMBER: _ClassVar[int]
    CHARGING_SESSION_ENDED_AT_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    ARRIVAL_CODE_FIELD_NUMBER: _ClassVar[int]
    id: str
    merchant_id: str
    charger_id: str
    expires_at: _timestamp_pb2.Timestamp
    activated_at: _timestamp_pb2.Timestamp
    remaining_seconds: int
    merchant_name: str
    merchant_place_id: str
    exclusive_title: str
    merchant_lat: float
    merchant_lng: float
    merchant_distance_m: int
    merchant_walk_time_min: int
    merchant_category: str
    merchant_photo_url: str
    charger_name: str
    verification_code: str
    charging_active: bool
    charging_session_ended_at: _timestamp_pb2.Timestamp
    status: ExclusiveStatus
    arrival_code: str
    def __init__(self, id: _Optional[str] = ..., merchant_id: _Optional[str] = ..., charger_id: _Optional[str] = ..., expires_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., activated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., remaining_seconds: _Optional[int] = ..., merchant_name: _Optional[str] = ..., merchant_place_id: _Optional[str] = ..., exclusive_title: _Optional[str] = ..., merchant_lat: _Optional[float] = ..., merchant_lng: _Optional[float] = ..., merchant_distance_m: _Optional[int] = ..., merchant_walk_time_min: _Optional[int] = ..., merchant_category: _Optional[str] = ..., merchant_photo_url: _Optional[str] = ..., charger_name: _Optional[str] = ..., verification_code: _Optional[str] = ..., charging_active: _Optional[bool] = ..., charging_session_ended_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., status: _Optional[_Union[ExclusiveStatus, str]] = ..., arrival_code: _Optional[str] = ...) -> None: ...

class ActivateExclusiveResponse(_message.Message):
    __slots__ = ("status", "exclusive_session", "idempotent")
    STATUS_FIELD_NUMBER: _ClassVar[int]
    EXCLUSIVE_SESSION_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENT_FIELD_NUMBER: _ClassVar[int]
    status: str
    exclusive_session: ExclusiveSession
    idempotent: bool
    def __init__(self, status: _Optional[str] = ..., exclusive_session: _Optional[_Union[ExclusiveSession, _Mapping]] = ..., idempotent: _Optional[bool] = ...) -> None: ...

class VerifyExclusiveVisitRequest(_message.Message):
    __slots__ = ("exclusive_session_id", "lat", "lng")
    EXCLUSIVE_SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    LAT_FIELD_NUMBER: _ClassVar[int]
    LNG_FIELD_NUMBER: _ClassVar[int]
    exclusive_session_id: str
    lat: float
    lng: float
    def __init__(self, exclusive_session_id: _Optional[str] = ..., lat: _Optional[float] = ..., lng: _Optional[float] = ...) -> None: ...

class VerifyExclusiveVisitResponse(_message.Message):
    __slots__ = ("status", "verification_code", "visit_number", "merchant_name", "verified_at")
    STATUS_FIELD_NUMBER: _ClassVar[int]
    VERIFICATION_CODE_FIELD_NUMBER: _ClassVar[int]
    VISIT_NUMBER_FIELD_NUMBER: _ClassVar[int]
    MERCHANT_NAME_FIELD_NUMBER: _ClassVar[int]
    VERIFIED_AT_FIELD_NUMBER: _ClassVar[int]
    status: str
    verification_code: str
    visit_number: int
    merchant_name: str
    verified_at: _timestamp_pb2.Timestamp
    def __init__(self, status: _Optional[str] = ..., verification_code: _Optional[str] = ..., visit_number: _Optional[int] = ..., merchant_name: _Optional[str] = ..., verified_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ExclusiveFeedback(_message.Message):
    __slots__ = ("thumbs_up", "tags")
    THUMBS_UP_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    thumbs_up: bool
    tags: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, thumbs_up: _Optional[bool] = ..., tags: _Optional[_Iterable[str]] = ...) -> None: ...

class CompleteExclusiveRequest(_message.Message):
    __slots__ = ("exclusive_session_id", "feedback", "idempotency_key")
    EXCLUSIVE_SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    FEEDBACK_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    exclusive_session_id: str
    feedback: ExclusiveFeedback
    idempotency_key: str
    def __init__(self, exclusive_session_id: _Optional[str] = ..., feedback: _Optional[_Union[ExclusiveFeedback, _Mapping]] = ..., idempotency_key: _Optional[str] = ...) -> None: ...

class CompleteExclusiveResponse(_message.Message):
    __slots__ = ("status", "idempotent", "nova_earned")
    STATUS_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENT_FIELD_NUMBER: _ClassVar[int]
    NOVA_EARNED_FIELD_NUMBER: _ClassVar[int]
    status: str
    idempotent: bool
    nova_earned: int
    def __init__(self, status: _Optional[str] = ..., idempotent: _Optional[bool] = ..., nova_earned: _Optional[int] = ...) -> None: ...

class GetActiveExclusiveRequest(_message.Message):
    __slots__ = ("include_expired",)
    INCLUDE_EXPIRED_FIELD_NUMBER: _ClassVar[int]
    include_expired: bool
    def __init__(self, include_expired: _Optional[bool] = ...) -> None: ...

class GetActiveExclusiveResponse(_message.Message):
    __slots__ = ("exclusive_session", "session")
    EXCLUSIVE_SESSION_FIELD_NUMBER: _ClassVar[int]
    SESSION_FIELD_NUMBER: _ClassVar[int]
    exclusive_session: _struct_pb2.Value
    session: ExclusiveSession
    def __init__(self, exclusive_session: _Optional[_Union[_struct_pb2.Value, _Mapping]] = ..., session: _Optional[_Union[ExclusiveSession, _Mapping]] = ...) -> None: ...

class GetExclusiveStaffViewRequest(_message.Message):
    __slots__ = ("exclusive_session_id",)
    EXCLUSIVE_SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    exclusive_session_id: str
    def __init__(self, exclusive_session_id: _Optional[str] = ...) -> None: ...

class ExclusiveStaffView(_message.Message):
    __slots__ = ("id", "merchant_id", "expires_at", "activated_at", "remaining_seconds", "status", "merchant_name", "exclusive_title", "staff_instructions")
    ID_FIELD_NUMBER: _ClassVar[int]
    MERCHANT_ID_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    ACTIVATED_AT_FIELD_NUMBER: _ClassVar[int]
    REMAINING_SECONDS_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    MERCHANT_NAME_FIELD_NUMBER: _ClassVar[int]
    EXCLUSIVE_TITLE_FIELD_NUMBER: _ClassVar[int]
    STAFF_INSTRUCTIONS_FIELD_NUMBER: _ClassVar[int]
    id: str
    merchant_id: str
    expires_at: _timestamp_pb2.Timestamp
    activated_at: _timestamp_pb2.Timestamp
    remaining_seconds: int
    status: ExclusiveStatus
    merchant_name: str
    exclusive_title: str
    staff_instructions: str
    def __init__(self, id: _Optional[str] = ..., merchant_id: _Optional[str] = ..., expires_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., activated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., remaining_seconds: _Optional[int] = ..., status: _Optional[_Union[ExclusiveStatus, str]] = ..., merchant_name: _Optional[str] = ..., exclusive_title: _Optional[str] = ..., staff_instructions: _Optional[str] = ...) -> None: ...

class GetExclusiveStaffViewResponse(_message.Message):
    __slots__ = ("exclusive_session", "merchant_name", "exclusive_title", "staff_instructions", "staff_view")
    EXCLUSIVE_SESSION_FIELD_NUMBER: _ClassVar[int]
    MERCHANT_NAME_FIELD_NUMBER: _ClassVar[int]
    EXCLUSIVE_TITLE_FIELD_NUMBER: _ClassVar[int]
    STAFF_INSTRUCTIONS_FIELD_NUMBER: _ClassVar[int]
    STAFF_VIEW_FIELD_NUMBER: _ClassVar[int]
    exclusive_session: _struct_pb2.Value
    merchant_name: _struct_pb2.Value
    exclusive_title: _struct_pb2.Value
    staff_instructions: _struct_pb2.Value
    staff_view: ExclusiveStaffView
    def __init__(self, exclusive_session: _Optional[_Union[_struct_pb2.Value, _Mapping]] = ..., merchant_name: _Optional[_Union[_struct_pb2.Value, _Mapping]] = ..., exclusive_title: _Optional[_Union[_struct_pb2.Value, _Mapping]] = ..., staff_instructions: _Optional[_Union[_struct_pb2.Value, _Mapping]] = ..., staff_view: _Optional[_Union[ExclusiveStaffView, _Mapping]] = ...) -> None: ...

class RedeemCheckInCodeRequest(_message.Message):
    __slots__ = ("code", "order_number", "order_total_cents")
    CODE_FIELD_NUMBER: _ClassVar[int]
    ORDER_NUMBER_FIELD_NUMBER: _ClassVar[int]
    ORDER_TOTAL_CENTS_FIELD_NUMBER: _ClassVar[int]
    code: str
    order_number: str
    order_total_cents: int
    def __init__(self, code: _Optional[str] = ..., order_number: _Optional[str] = ..., order_total_cents: _Optional[int] = ...) -> None: ...

class RedeemCheckInCodeResponse(_message.Message):
    __slots__ = ("redeemed", "session_id", "already_redeemed", "error", "verification_code", "visit_number")
    REDEEMED_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    ALREADY_REDEEMED_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    VERIFICATION_CODE_FIELD_NUMBER: _ClassVar[int]
    VISIT_NUMBER_FIELD_NUMBER: _ClassVar[int]
    redeemed: bool
    session_id: str
    already_redeemed: bool
    error: _struct_pb2.Value
    verification_code: str
    visit_number: int
    def __init__(self, redeemed: _Optional[bool] = ..., session_id: _Optional[str] = ..., already_redeemed: _Optional[bool] = ..., error: _Optional[_Union[_struct_pb2.Value, _Mapping]] = ..., verification_code: _Optional[str] = ..., visit_number: _Optional[int] = ...) -> None: ...

class CancelExclusiveRequest(_message.Message):
    __slots__ = ("exclusive_session_id", "charger_id", "reason")
    EXCLUSIVE_SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    CHARGER_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    exclusive_session_id: str
    charger_id: str
    reason: str
    def __init__(self, exclusive_session_id: _Optional[str] = ..., charger_id: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class CancelExclusiveResponse(_message.Message):
    __slots__ = ("canceled_count", "exclusive_session_ids")
    CANCELED_COUNT_FIELD_NUMBER: _ClassVar[int]
    EXCLUSIVE_SESSION_IDS_FIELD_NUMBER: _ClassVar[int]
    canceled_count: int
    exclusive_session_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, canceled_count: _Optional[int] = ..., exclusive_session_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class ListMerchantsForChargerRequest(_message.Message):
    __slots__ = ("charger_id", "state", "open_only")
    CHARGER_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    OPEN_ONLY_FIELD_NUMBER: _ClassVar[int]
    charger_id: str
    state: str
    open_only: bool
    def __init__(self, charger_id: _Optional[str] = ..., state: _Optional[str] = ..., open_only: _Optional[bool] = ...) -> None: ...

class ChargerMerchant(_message.Message):
    __slots__ = ("id", "merchant_id", "place_id", "name", "lat", "lng", "address", "phone", "logo_url", "photo_url", "photo_urls", "category", "types", "is_primary", "exclusive_title", "exclusive_description", "open_now", "open_until", "rating", "user_rating_count", "walk_time_s", "walk_time_seconds", "distance_m", "activations_today", "verified_visits_today")
    ID_FIELD_NUMBER: _ClassVar[int]
    MERCHANT_ID_FIELD_NUMBER: _ClassVar[int]
    PLACE_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    LAT_FIELD_NUMBER: _ClassVar[int]
    LNG_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    PHONE_FIELD_NUMBER: _ClassVar[int]
    LOGO_URL_FIELD_NUMBER: _ClassVar[int]
    PHOTO_URL_FIELD_NUMBER: _ClassVar[int]
    PHOTO_URLS_FIELD_NUMBER: _ClassVar[int]
    CATEGORY_FIELD_NUMBER: _ClassVar[int]
    TYPES_FIELD_NUMBER: _ClassVar[int]
    IS_PRIMARY_FIELD_NUMBER: _ClassVar[int]
    EXCLUSIVE_TITLE_FIELD_NUMBER: _ClassVar[int]
    EXCLUSIVE_DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    OPEN_NOW_FIELD_NUMBER: _ClassVar[int]
    OPEN_UNTIL_FIELD_NUMBER: _ClassVar[int]
    RATING_FIELD_NUMBER: _ClassVar[int]
    USER_RATING_COUNT_FIELD_NUMBER: _ClassVar[int]
    WALK_TIME_S_FIELD_NUMBER: _ClassVar[int]
    WALK_TIME_SECONDS_FIELD_NUMBER: _ClassVar[int]
    DISTANCE_M_FIELD_NUMBER: _ClassVar[int]
    ACTIVATIONS_TODAY_FIELD_NUMBER: _ClassVar[int]
    VERIFIED_VISITS_TODAY_FIELD_NUMBER: _ClassVar[int]
    id: str
    merchant_id: str
    place_id: str
    name: str
    lat: float
    lng: float
    address: str
    phone: str
    logo_url: str
    photo_url: str
    photo_urls: _containers.RepeatedScalarFieldContainer[str]
    category: str
    types: _containers.RepeatedScalarFieldContainer[str]
    is_primary: bool
    exclusive_title: str
    exclusive_description: str
    open_now: bool
    open_until: str
    rating: float
    user_rating_count: int
    walk_time_s: int
    walk_time_seconds: int
    distance_m: int
    activations_today: int
    verified_visits_today: int
    def __init__(self, id: _Optional[str] = ..., merchant_id: _Optional[str] = ..., place_id: _Optional[str] = ..., name: _Optional[str] = ..., lat: _Optional[float] = ..., lng: _Optional[float] = ..., address: _Optional[str] = ..., phone: _Optional[str] = ..., logo_url: _Optional[str] = ..., photo_url: _Optional[str] = ..., photo_urls: _Optional[_Iterable[str]] = ..., category: _Optional[str] = ..., types: _Optional[_Iterable[str]] = ..., is_primary: _Optional[bool] = ..., exclusive_title: _Optional[str] = ..., exclusive_description: _Optional[str] = ..., open_now: _Optional[bool] = ..., open_until: _Optional[str] = ..., rating: _Optional[float] = ..., user_rating_count: _Optional[int] = ..., walk_time_s: _Optional[int] = ..., walk_time_seconds: _Optional[int] = ..., distance_m: _Optional[int] = ..., activations_today: _Optional[int] = ..., verified_visits_today: _Optional[int] = ...) -> None: ...

class ListMerchantsForChargerResponse(_message.Message):
    __slots__ = ("merchants", "json_array")
    MERCHANTS_FIELD_NUMBER: _ClassVar[int]
    JSON_ARRAY_FIELD_NUMBER: _ClassVar[int]
    merchants: _containers.RepeatedCompositeFieldContainer[ChargerMerchant]
    json_array: _httpbody_pb2.HttpBody
    def __init__(self, merchants: _Optional[_Iterable[_Union[ChargerMerchant, _Mapping]]] = ..., json_array: _Optional[_Union[_httpbody_pb2.HttpBody, _Mapping]] = ...) -> None: ...

class GetMerchantRequest(_message.Message):
    __slots__ = ("merchant_id", "session_id")
    MERCHANT_ID_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    merchant_id: str
    session_id: str
    def __init__(self, merchant_id: _Optional[str] = ..., session_id: _Optional[str] = ...) -> None: ...

class AmenityVotes(_message.Message):
    __slots__ = ("upvotes", "downvotes")
    UPVOTES_FIELD_NUMBER: _ClassVar[int]
    DOWNVOTES_FIELD_NUMBER: _ClassVar[int]
    upvotes: int
    downvotes: int
    def __init__(self, upvotes: _Optional[int] = ..., downvotes: _Optional[int] = ...) -> None: ...

class VoteAmenityRequest(_message.Message):
    __slots__ = ("merchant_id", "amenity", "vote_type")
    MERCHANT_ID_FIELD_NUMBER: _ClassVar[int]
    AMENITY_FIELD_NUMBER: _ClassVar[int]
    VOTE_TYPE_FIELD_NUMBER: _ClassVar[int]
    merchant_id: str
    amenity: str
    vote_type: str
    def __init__(self, merchant_id: _Optional[str] = ..., amenity: _Optional[str] = ..., vote_type: _Optional[str] = ...) -> None: ...

class VoteAmenityResponse(_message.Message):
    __slots__ = ("ok", "upvotes", "downvotes")
    OK_FIELD_NUMBER: _ClassVar[int]
    UPVOTES_FIELD_NUMBER: _ClassVar[int]
    DOWNVOTES_FIELD_NUMBER: _ClassVar[int]
    ok: bool
    upvotes: int
    downvotes: int
    def __init__(self, ok: _Optional[bool] = ..., upvotes: _Optional[int] = ..., downvotes: _Optional[int] = ...) -> None: ...

class ListFavoriteMerchantsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class FavoriteMerchant(_message.Message):
    __slots__ = ("merchant_id", "name", "category", "photo_url", "favorited_at")
    MERCHANT_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    CATEGORY_FIELD_NUMBER: _ClassVar[int]
    PHOTO_URL_FIELD_NUMBER: _ClassVar[int]
    FAVORITED_AT_FIELD_NUMBER: _ClassVar[int]
    merchant_id: str
    name: str
    category: str
    photo_url: str
    favorited_at: _timestamp_pb2.Timestamp
    def __init__(self, merchant_id: _Optional[str] = ..., name: _Optional[str] = ..., category: _Optional[str] = ..., photo_url: _Optional[str] = ..., favorited_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ListFavoriteMerchantsResponse(_message.Message):
    __slots__ = ("favorites",)
    FAVORITES_FIELD_NUMBER: _ClassVar[int]
    favorites: _containers.RepeatedCompositeFieldContainer[FavoriteMerchant]
    def __init__(self, favorites: _Optional[_Iterable[_Union[FavoriteMerchant, _Mapping]]] = ...) -> None: ...

class AddFavoriteMerchantRequest(_message.Message):
    __slots__ = ("merchant_id",)
    MERCHANT_ID_FIELD_NUMBER: _ClassVar[int]
    merchant_id: str
    def __init__(self, merchant_id: _Optional[str] = ...) -> None: ...

class RemoveFavoriteMerchantRequest(_message.Message):
    __slots__ = ("merchant_id",)
    MERCHANT_ID_FIELD_NUMBER: _ClassVar[int]
    merchant_id: str
    def __init__(self, merchant_id: _Optional[str] = ...) -> None: ...

class ListFavoriteChargersRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class FavoriteCharger(_message.Message):
    __slots__ = ("charger_id", "name", "favorited_at")
    CHARGER_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    FAVORITED_AT_FIELD_NUMBER: _ClassVar[int]
    charger_id: str
    name: str
    favorited_at: _timestamp_pb2.Timestamp
    def __init__(self, charger_id: _Optional[str] = ..., name: _Optional[str] = ..., favorited_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ListFavoriteChargersResponse(_message.Message):
    __slots__ = ("favorites",)
    FAVORITES_FIELD_NUMBER: _ClassVar[int]
    favorites: _containers.RepeatedCompositeFieldContainer[FavoriteCharger]
    def __init__(self, favorites: _Optional[_Iterable[_Union[FavoriteCharger, _Mapping]]] = ...) -> None: ...

class AddFavoriteChargerRequest(_message.Message):
    __slots__ = ("charger_id",)
    CHARGER_ID_FIELD_NUMBER: _ClassVar[int]
    charger_id: str
    def __init__(self, charger_id: _Optional[str] = ...) -> None: ...

class RemoveFavoriteChargerRequest(_message.Message):
    __slots__ = ("charger_id",)
    CHARGER_ID_FIELD_NUMBER: _ClassVar[int]
    charger_id: str
    def __init__(self, charger_id: _Optional[str] = ...) -> None: ...

class AddFavoriteMerchantResponse(_message.Message):
    __slots__ = ("ok", "favorited")
    OK_FIELD_NUMBER: _ClassVar[int]
    FAVORITED_FIELD_NUMBER: _ClassVar[int]
    ok: bool
    favorited: bool
    def __init__(self, ok: _Optional[bool] = ..., favorited: _Optional[bool] = ...) -> None: ...

class RemoveFavoriteMerchantResponse(_message.Message):
    __slots__ = ("ok", "favorited")
    OK_FIELD_NUMBER: _ClassVar[int]
    FAVORITED_FIELD_NUMBER: _ClassVar[int]
    ok: bool
    favorited: bool
    def __init__(self, ok: _Optional[bool] = ..., favorited: _Optional[bool] = ...) -> None: ...

class AddFavoriteChargerResponse(_message.Message):
    __slots__ = ("ok", "favorited")
    OK_FIELD_NUMBER: _ClassVar[int]
    FAVORITED_FIELD_NUMBER: _ClassVar[int]
    ok: bool
    favorited: bool
    def __init__(self, ok: _Optional[bool] = ..., favorited: _Optional[bool] = ...) -> None: ...

class RemoveFavoriteChargerResponse(_message.Message):
    __slots__ = ("ok", "favorited")
    OK_FIELD_NUMBER: _ClassVar[int]
    FAVORITED_FIELD_NUMBER: _ClassVar[int]
    ok: bool
    favorited: bool
    def __init__(self, ok: _Optional[bool] = ..., favorited: _Optional[bool] = ...) -> None: ...

class Amenities(_message.Message):
    __slots__ = ("bathroom", "wifi")
    BATHROOM_FIELD_NUMBER: _ClassVar[int]
    WIFI_FIELD_NUMBER: _ClassVar[int]
    bathroom: AmenityVotes
    wifi: AmenityVotes
    def __init__(self, bathroom: _Optional[_Union[AmenityVotes, _Mapping]] = ..., wifi: _Optional[_Union[AmenityVotes, _Mapping]] = ...) -> None: ...

class MerchantDetails(_message.Message):
    __slots__ = ("id", "name", "category", "photo_url", "photo_urls", "description", "hours_today", "address", "phone", "website", "rating", "price_level", "activations_today", "verified_visits_today", "amenities", "place_id", "lat", "lng")
    ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    CATEGORY_FIELD_NUMBER: _ClassVar[int]
    PHOTO_URL_FIELD_NUMBER: _ClassVar[int]
    PHOTO_URLS_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    HOURS_TODAY_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    PHONE_FIELD_NUMBER: _ClassVar[int]
    WEBSITE_FIELD_NUMBER: _ClassVar[int]
    RATING_FIELD_NUMBER: _ClassVar[int]
    PRICE_LEVEL_FIELD_NUMBER: _ClassVar[int]
    ACTIVATIONS_TODAY_FIELD_NUMBER: _ClassVar[int]
    VERIFIED_VISITS_TODAY_FIELD_NUMBER: _ClassVar[int]
    AMENITIES_FIELD_NUMBER: _ClassVar[int]
    PLACE_ID_FIELD_NUMBER: _ClassVar[int]
    LAT_FIELD_NUMBER: _ClassVar[int]
    LNG_FIELD_NUMBER: _ClassVar[int]
    id: str
    name: str
    category: str
    photo_url: str
    photo_urls: _containers.RepeatedScalarFieldContainer[str]
    description: str
    hours_today: str
    address: str
    phone: str
    website: str
    rating: float
    price_level: int
    activations_today: int
    verified_visits_today: int
    amenities: Amenities
    place_id: str
    lat: float
    lng: float
    def __init__(self, id: _Optional[str] = ..., name: _Optional[str] = ..., category: _Optional[str] = ..., photo_url: _Optional[str] = ..., photo_urls: _Optional[_Iterable[str]] = ..., description: _Optional[str] = ..., hours_today: _Optional[str] = ..., address: _Optional[str] = ..., phone: _Optional[str] = ..., website: _Optional[str] = ..., rating: _Optional[float] = ..., price_level: _Optional[int] = ..., activations_today: _Optional[int] = ..., verified_visits_today: _Optional[int] = ..., amenities: _Optional[_Union[Amenities, _Mapping]] = ..., place_id: _Optional[str] = ..., lat: _Optional[float] = ..., lng: _Optional[float] = ...) -> None: ...

class MerchantMoment(_message.Message):
    __slots__ = ("label", "distance_miles", "moment_copy")
    LABEL_FIELD_NUMBER: _ClassVar[int]
    DISTANCE_MILES_FIELD_NUMBER: _ClassVar[int]
    MOMENT_COPY_FIELD_NUMBER: _ClassVar[int]
    label: _struct_pb2.Value
    distance_miles: float
    moment_copy: str
    def __init__(self, label: _Optional[_Union[_struct_pb2.Value, _Mapping]] = ..., distance_miles: _Optional[float] = ..., moment_copy: _Optional[str] = ...) -> None: ...

class PerkCard(_message.Message):
    __slots__ = ("title", "badge", "description")
    TITLE_FIELD_NUMBER: _ClassVar[int]
    BADGE_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    title: str
    badge: str
    description: str
    def __init__(self, title: _Optional[str] = ..., badge: _Optional[str] = ..., description: _Optional[str] = ...) -> None: ...

class MerchantWallet(_message.Message):
    __slots__ = ("can_add", "state", "active_copy")
    CAN_ADD_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    ACTIVE_COPY_FIELD_NUMBER: _ClassVar[int]
    can_add: bool
    state: str
    active_copy: str
    def __init__(self, can_add: _Optional[bool] = ..., state: _Optional[str] = ..., active_copy: _Optional[str] = ...) -> None: ...

class MerchantActions(_message.Message):
    __slots__ = ("add_to_wallet", "get_directions_url")
    ADD_TO_WALLET_FIELD_NUMBER: _ClassVar[int]
    GET_DIRECTIONS_URL_FIELD_NUMBER: _ClassVar[int]
    add_to_wallet: bool
    get_directions_url: str
    def __init__(self, add_to_wallet: _Optional[bool] = ..., get_directions_url: _Optional[str] = ...) -> None: ...

class GetMerchantResponse(_message.Message):
    __slots__ = ("merchant", "moment", "perk", "wallet", "actions")
    MERCHANT_FIELD_NUMBER: _ClassVar[int]
    MOMENT_FIELD_NUMBER: _ClassVar[int]
    PERK_FIELD_NUMBER: _ClassVar[int]
    WALLET_FIELD_NUMBER: _ClassVar[int]
    ACTIONS_FIELD_NUMBER: _ClassVar[int]
    merchant: MerchantDetails
    moment: MerchantMoment
    perk: PerkCard
    wallet: MerchantWallet
    actions: MerchantActions
    def __init__(self, merchant: _Optional[_Union[MerchantDetails, _Mapping]] = ..., moment: _Optional[_Union[MerchantMoment, _Mapping]] = ..., perk: _Optional[_Union[PerkCard, _Mapping]] = ..., wallet: _Optional[_Union[MerchantWallet, _Mapping]] = ..., actions: _Optional[_Union[MerchantActions, _Mapping]] = ...) -> None: ...

class GetMyMerchantRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class MerchantAccount(_message.Message):
    __slots__ = ("id", "name", "nova_balance", "zone_slug", "status", "details")
    ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    NOVA_BALANCE_FIELD_NUMBER: _ClassVar[int]
    ZONE_SLUG_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    DETAILS_FIELD_NUMBER: _ClassVar[int]
    id: str
    name: str
    nova_balance: int
    zone_slug: str
    status: MerchantStatus
    details: Merchant
    def __init__(self, id: _Optional[str] = ..., name: _Optional[str] = ..., nova_balance: _Optional[int] = ..., zone_slug: _Optional[str] = ..., status: _Optional[_Union[MerchantStatus, str]] = ..., details: _Optional[_Union[Merchant, _Mapping]] = ...) -> None: ...

class MerchantTransaction(_message.Message):
    __slots__ = ("id", "type", "amount", "driver_user_id", "created_at", "metadata")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    ID_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_FIELD_NUMBER: _ClassVar[int]
    DRIVER_USER_ID_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    id: str
    type: str
    amount: int
    driver_user_id: str
    created_at: _timestamp_pb2.Timestamp
    metadata: _containers.ScalarMap[str, str]
    def __init__(self, id: _Optional[str] = ..., type: _Optional[str] = ..., amount: _Optional[int] = ..., driver_user_id: _Optional[str] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., metadata: _Optional[_Mapping[str, str]] = ...) -> None: ...

class GetMyMerchantResponse(_message.Message):
    __slots__ = ("merchant", "transactions", "merchant_ids")
    MERCHANT_FIELD_NUMBER: _ClassVar[int]
    TRANSACTIONS_FIELD_NUMBER: _ClassVar[int]
    MERCHANT_IDS_FIELD_NUMBER: _ClassVar[int]
    merchant: MerchantAccount
    transactions: _containers.RepeatedCompositeFieldContainer[MerchantTransaction]
    merchant_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, merchant: _Optional[_Union[MerchantAccount, _Mapping]] = ..., transactions: _Optional[_Iterable[_Union[MerchantTransaction, _Mapping]]] = ..., merchant_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class GetMerchantSummaryRequest(_message.Message):
    __slots__ = ("merchant_id",)
    MERCHANT_ID_FIELD_NUMBER: _ClassVar[int]
    merchant_id: str
    def __init__(self, merchant_id: _Optional[str] = ...) -> None: ...

class GetMerchantSummaryResponse(_message.Message):
    __slots__ = ("total_redemptions", "total_discount_cents", "unique_driver_count", "last_7d_redemptions", "last_30d_redemptions", "avg_discount_cents")
    TOTAL_REDEMPTIONS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_DISCOUNT_CENTS_FIELD_NUMBER: _ClassVar[int]
    UNIQUE_DRIVER_COUNT_FIELD_NUMBER: _ClassVar[int]
    LAST_7D_REDEMPTIONS_FIELD_NUMBER: _ClassVar[int]
    LAST_30D_REDEMPTIONS_FIELD_NUMBER: _ClassVar[int]
    AVG_DISCOUNT_CENTS_FIELD_NUMBER: _ClassVar[int]
    total_redemptions: int
    total_discount_cents: int
    unique_driver_count: int
    last_7d_redemptions: int
    last_30d_redemptions: int
    avg_discount_cents: int
    def __init__(self, total_redemptions: _Optional[int] = ..., total_discount_cents: _Optional[int] = ..., unique_driver_count: _Optional[int] = ..., last_7d_redemptions: _Optional[int] = ..., last_30d_redemptions: _Optional[int] = ..., avg_discount_cents: _Optional[int] = ...) -> None: ...

class ListMerchantVisitsRequest(_message.Message):
    __slots__ = ("merchant_id", "period", "status", "limit", "offset", "page_size", "page_token")
    MERCHANT_ID_FIELD_NUMBER: _ClassVar[int]
    PERIOD_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    merchant_id: str
    period: str
    status: str
    limit: int
    offset: int
    page_size: int
    page_token: str
    def __init__(self, merchant_id: _Optional[str] = ..., period: _Optional[str] = ..., status: _Optional[str] = ..., limit: _Optional[int] = ..., offset: _Optional[int] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class MerchantVisit(_message.Message):
    __slots__ = ("id", "timestamp", "exclusive_id", "exclusive_title", "driver_id_anonymized", "verification_status", "duration_minutes", "charger_id", "location_name", "verification_code")
    ID_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    EXCLUSIVE_ID_FIELD_NUMBER: _ClassVar[int]
    EXCLUSIVE_TITLE_FIELD_NUMBER: _ClassVar[int]
    DRIVER_ID_ANONYMIZED_FIELD_NUMBER: _ClassVar[int]
    VERIFICATION_STATUS_FIELD_NUMBER: _ClassVar[int]
    DURATION_MINUTES_FIELD_NUMBER: _ClassVar[int]
    CHARGER_ID_FIELD_NUMBER: _ClassVar[int]
    LOCATION_NAME_FIELD_NUMBER: _ClassVar[int]
    VERIFICATION_CODE_FIELD_NUMBER: _ClassVar[int]
    id: str
    timestamp: _timestamp_pb2.Timestamp
    exclusive_id: str
    exclusive_title: str
    driver_id_anonymized: str
    verification_status: str
    duration_minutes: int
    charger_id: str
    location_name: str
    verification_code: str
    def __init__(self, id: _Optional[str] = ..., timestamp: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., exclusive_id: _Optional[str] = ..., exclusive_title: _Optional[str] = ..., driver_id_anonymized: _Optional[str] = ..., verification_status: _Optional[str] = ..., duration_minutes: _Optional[int] = ..., charger_id: _Optional[str] = ..., location_name: _Optional[str] = ..., verification_code: _Optional[str] = ...) -> None: ...

class ListMerchantVisitsResponse(_message.Message):
    __slots__ = ("visits", "total", "verified_count", "period", "limit", "offset", "next_page_token")
    VISITS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    VERIFIED_COUNT_FIELD_NUMBER: _ClassVar[int]
    PERIOD_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    visits: _containers.RepeatedCompositeFieldContainer[MerchantVisit]
    total: int
    verified_count: int
    period: str
    limit: int
    offset: int
    next_page_token: str
    def __init__(self, visits: _Optional[_Iterable[_Union[MerchantVisit, _Mapping]]] = ..., total: _Optional[int] = ..., verified_count: _Optional[int] = ..., period: _Optional[str] = ..., limit: _Optional[int] = ..., offset: _Optional[int] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class GetBillingSummaryRequest(_message.Message):
    __slots__ = ("merchant_id", "month")
    MERCHANT_ID_FIELD_NUMBER: _ClassVar[int]
    MONTH_FIELD_NUMBER: _ClassVar[int]
    merchant_id: str
    month: str
    def __init__(self, merchant_id: _Optional[str] = ..., month: _Optional[str] = ...) -> None: ...

class GetBillingSummaryResponse(_message.Message):
    __slots__ = ("period_start", "period_end", "nova_redeemed_cents", "fee_cents", "status")
    PERIOD_START_FIELD_NUMBER: _ClassVar[int]
    PERIOD_END_FIELD_NUMBER: _ClassVar[int]
    NOVA_REDEEMED_CENTS_FIELD_NUMBER: _ClassVar[int]
    FEE_CENTS_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    period_start: str
    period_end: str
    nova_redeemed_cents: int
    fee_cents: int
    status: str
    def __init__(self, period_start: _Optional[str] = ..., period_end: _Optional[str] = ..., nova_redeemed_cents: _Optional[int] = ..., fee_cents: _Optional[int] = ..., status: _Optional[str] = ...) -> None: ...

class GetShareablesRequest(_message.Message):
    __slots__ = ("merchant_id",)
    MERCHANT_ID_FIELD_NUMBER: _ClassVar[int]
    merchant_id: str
    def __init__(self, merchant_id: _Optional[str] = ...) -> None: ...

class GetShareablesResponse(_message.Message):
    __slots__ = ("lines",)
    LINES_FIELD_NUMBER: _ClassVar[int]
    lines: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, lines: _Optional[_Iterable[str]] = ...) -> None: ...

class MerchantExclusive(_message.Message):
    __slots__ = ("id", "merchant_id", "title", "description", "daily_cap", "session_cap", "eligibility", "is_active", "created_at", "updated_at")
    ID_FIELD_NUMBER: _ClassVar[int]
    MERCHANT_ID_FIELD_NUMBER: _ClassVar[int]
    TITLE_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    DAILY_CAP_FIELD_NUMBER: _ClassVar[int]
    SESSION_CAP_FIELD_NUMBER: _ClassVar[int]
    ELIGIBILITY_FIELD_NUMBER: _ClassVar[int]
    IS_ACTIVE_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    id: str
    merchant_id: str
    title: str
    description: str
    daily_cap: int
    session_cap: int
    eligibility: str
    is_active: bool
    created_at: _timestamp_pb2.Timestamp
    updated_at: _timestamp_pb2.Timestamp
    def __init__(self, id: _Optional[str] = ..., merchant_id: _Optional[str] = ..., title: _Optional[str] = ..., description: _Optional[str] = ..., daily_cap: _Optional[int] = ..., session_cap: _Optional[int] = ..., eligibility: _Optional[str] = ..., is_active: _Optional[bool] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ListMerchantExclusivesRequest(_message.Message):
    __slots__ = ("merchant_id",)
    MERCHANT_ID_FIELD_NUMBER: _ClassVar[int]
    merchant_id: str
    def __init__(self, merchant_id: _Optional[str] = ...) -> None: ...

class ListMerchantExclusivesResponse(_message.Message):
    __slots__ = ("exclusives", "json_array")
    EXCLUSIVES_FIELD_NUMBER: _ClassVar[int]
    JSON_ARRAY_FIELD_NUMBER: _ClassVar[int]
    exclusives: _containers.RepeatedCompositeFieldContainer[MerchantExclusive]
    json_array: _httpbody_pb2.HttpBody
    def __init__(self, exclusives: _Optional[_Iterable[_Union[MerchantExclusive, _Mapping]]] = ..., json_array: _Optional[_Union[_httpbody_pb2.HttpBody, _Mapping]] = ...) -> None: ...

class CreateMerchantExclusiveRequest(_message.Message):
    __slots__ = ("merchant_id", "title", "description", "daily_cap", "session_cap", "eligibility")
    MERCHANT_ID_FIELD_NUMBER: _ClassVar[int]
    TITLE_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    DAILY_CAP_FIELD_NUMBER: _ClassVar[int]
    SESSION_CAP_FIELD_NUMBER: _ClassVar[int]
    ELIGIBILITY_FIELD_NUMBER: _ClassVar[int]
    merchant_id: str
    title: str
    description: str
    daily_cap: int
    session_cap: int
    eligibility: str
    def __init__(self, merchant_id: _Optional[str] = ..., title: _Optional[str] = ..., description: _Optional[str] = ..., daily_cap: _Optional[int] = ..., session_cap: _Optional[int] = ..., eligibility: _Optional[str] = ...) -> None: ...

class CreateMerchantExclusiveResponse(_message.Message):
    __slots__ = ("id", "merchant_id", "title", "description", "daily_cap", "session_cap", "eligibility", "is_active", "created_at", "updated_at")
    ID_FIELD_NUMBER: _ClassVar[int]
    MERCHANT_ID_FIELD_NUMBER: _ClassVar[int]
    TITLE_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    DAILY_CAP_FIELD_NUMBER: _ClassVar[int]
    SESSION_CAP_FIELD_NUMBER: _ClassVar[int]
    ELIGIBILITY_FIELD_NUMBER: _ClassVar[int]
    IS_ACTIVE_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    id: str
    merchant_id: str
    title: str
    description: str
    daily_cap: int
    session_cap: int
    eligibility: str
    is_active: bool
    created_at: _timestamp_pb2.Timestamp
    updated_at: _timestamp_pb2.Timestamp
    def __init__(self, id: _Optional[str] = ..., merchant_id: _Optional[str] = ..., title: _Optional[str] = ..., description: _Optional[str] = ..., daily_cap: _Optional[int] = ..., session_cap: _Optional[int] = ..., eligibility: _Optional[str] = ..., is_active: _Optional[bool] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class UpdateMerchantExclusiveRequest(_message.Message):
    __slots__ = ("merchant_id", "exclusive_id", "title", "description", "daily_cap", "session_cap", "eligibility", "is_active")
    MERCHANT_ID_FIELD_NUMBER: _ClassVar[int]
    EXCLUSIVE_ID_FIELD_NUMBER: _ClassVar[int]
    TITLE_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    DAILY_CAP_FIELD_NUMBER: _ClassVar[int]
    SESSION_CAP_FIELD_NUMBER: _ClassVar[int]
    ELIGIBILITY_FIELD_NUMBER: _ClassVar[int]
    IS_ACTIVE_FIELD_NUMBER: _ClassVar[int]
    merchant_id: str
    exclusive_id: str
    title: str
    description: str
    daily_cap: int
    session_cap: int
    eligibility: str
    is_active: bool
    def __init__(self, merchant_id: _Optional[str] = ..., exclusive_id: _Optional[str] = ..., title: _Optional[str] = ..., description: _Optional[str] = ..., daily_cap: _Optional[int] = ..., session_cap: _Optional[int] = ..., eligibility: _Optional[str] = ..., is_active: _Optional[bool] = ...) -> None: ...

class UpdateMerchantExclusiveResponse(_message.Message):
    __slots__ = ("id", "merchant_id", "title", "description", "daily_cap", "session_cap", "eligibility", "is_active", "created_at", "updated_at")
    ID_FIELD_NUMBER: _ClassVar[int]
    MERCHANT_ID_FIELD_NUMBER: _ClassVar[int]
    TITLE_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    DAILY_CAP_FIELD_NUMBER: _ClassVar[int]
    SESSION_CAP_FIELD_NUMBER: _ClassVar[int]
    ELIGIBILITY_FIELD_NUMBER: _ClassVar[int]
    IS_ACTIVE_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    id: str
    merchant_id: str
    title: str
    description: str
    daily_cap: int
    session_cap: int
    eligibility: str
    is_active: bool
    created_at: _timestamp_pb2.Timestamp
    updated_at: _timestamp_pb2.Timestamp
    def __init__(self, id: _Optional[str] = ..., merchant_id: _Optional[str] = ..., title: _Optional[str] = ..., description: _Optional[str] = ..., daily_cap: _Optional[int] = ..., session_cap: _Optional[int] = ..., eligibility: _Optional[str] = ..., is_active: _Optional[bool] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ConnectSquareRequest(_message.Message):
    __slots__ = ("merchant_id",)
    MERCHANT_ID_FIELD_NUMBER: _ClassVar[int]
    merchant_id: str
    def __init__(self, merchant_id: _Optional[str] = ...) -> None: ...

class ConnectSquareResponse(_message.Message):
    __slots__ = ("authorization_url", "state", "expires_at")
    AUTHORIZATION_URL_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    authorization_url: str
    state: str
    expires_at: _timestamp_pb2.Timestamp
    def __init__(self, authorization_url: _Optional[str] = ..., state: _Optional[str] = ..., expires_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class CompleteSquareConnectRequest(_message.Message):
    __slots__ = ("code", "state", "error", "error_description")
    CODE_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    ERROR_DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    code: str
    state: str
    error: str
    error_description: str
    def __init__(self, code: _Optional[str] = ..., state: _Optional[str] = ..., error: _Optional[str] = ..., error_description: _Optional[str] = ...) -> None: ...

class CompleteSquareConnectResponse(_message.Message):
    __slots__ = ("merchant_id", "merchant", "average_order_value_cents", "recommended_perk_cents", "qr_url")
    MERCHANT_ID_FIELD_NUMBER: _ClassVar[int]
    MERCHANT_FIELD_NUMBER: _ClassVar[int]
    AVERAGE_ORDER_VALUE_CENTS_FIELD_NUMBER: _ClassVar[int]
    RECOMMENDED_PERK_CENTS_FIELD_NUMBER: _ClassVar[int]
    QR_URL_FIELD_NUMBER: _ClassVar[int]
    merchant_id: str
    merchant: Merchant
    average_order_value_cents: int
    recommended_perk_cents: int
    qr_url: str
    def __init__(self, merchant_id: _Optional[str] = ..., merchant: _Optional[_Union[Merchant, _Mapping]] = ..., average_order_value_cents: _Optional[int] = ..., recommended_perk_cents: _Optional[int] = ..., qr_url: _Optional[str] = ...) -> None: ...

class GetShareCardRequest(_message.Message):
    __slots__ = ("merchant_id", "range")
    MERCHANT_ID_FIELD_NUMBER: _ClassVar[int]
    RANGE_FIELD_NUMBER: _ClassVar[int]
    merchant_id: str
    range: str
    def __init__(self, merchant_id: _Optional[str] = ..., range: _Optional[str] = ...) -> None: ...

class GetShareCardResponse(_message.Message):
    __slots__ = ("http_body",)
    HTTP_BODY_FIELD_NUMBER: _ClassVar[int]
    http_body: _httpbody_pb2.HttpBody
    def __init__(self, http_body: _Optional[_Union[_httpbody_pb2.HttpBody, _Mapping]] = ...) -> None: ...

class GetQrSignRequest(_message.Message):
    __slots__ = ("merchant_id",)
    MERCHANT_ID_FIELD_NUMBER: _ClassVar[int]
    merchant_id: str
    def __init__(self, merchant_id: _Optional[str] = ...) -> None: ...

class GetQrSignResponse(_message.Message):
    __slots__ = ("http_body",)
    HTTP_BODY_FIELD_NUMBER: _ClassVar[int]
    http_body: _httpbody_pb2.HttpBody
    def __init__(self, http_body: _Optional[_Union[_httpbody_pb2.HttpBody, _Mapping]] = ...) -> None: ...

class CreatePreviewLinkRequest(_message.Message):
    __slots__ = ("merchant_id",)
    MERCHANT_ID_FIELD_NUMBER: _ClassVar[int]
    merchant_id: str
    def __init__(self, merchant_id: _Optional[str] = ...) -> None: ...

class CreatePreviewLinkResponse(_message.Message):
    __slots__ = ("merchant_id", "preview_url", "sig", "expires_at")
    MERCHANT_ID_FIELD_NUMBER: _ClassVar[int]
    PREVIEW_URL_FIELD_NUMBER: _ClassVar[int]
    SIG_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    merchant_id: str
    preview_url: str
    sig: str
    expires_at: _timestamp_pb2.Timestamp
    def __init__(self, merchant_id: _Optional[str] = ..., preview_url: _Optional[str] = ..., sig: _Optional[str] = ..., expires_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ResolvePreviewLinkRequest(_message.Message):
    __slots__ = ("merchant_id", "exp", "sig")
    MERCHANT_ID_FIELD_NUMBER: _ClassVar[int]
    EXP_FIELD_NUMBER: _ClassVar[int]
    SIG_FIELD_NUMBER: _ClassVar[int]
    merchant_id: str
    exp: int
    sig: str
    def __init__(self, merchant_id: _Optional[str] = ..., exp: _Optional[int] = ..., sig: _Optional[str] = ...) -> None: ...

class PreviewCharger(_message.Message):
    __slots__ = ("name", "network", "walk_minutes", "distance_m")
    NAME_FIELD_NUMBER: _ClassVar[int]
    NETWORK_FIELD_NUMBER: _ClassVar[int]
    WALK_MINUTES_FIELD_NUMBER: _ClassVar[int]
    DISTANCE_M_FIELD_NUMBER: _ClassVar[int]
    name: str
    network: str
    walk_minutes: int
    distance_m: int
    def __init__(self, name: _Optional[str] = ..., network: _Optional[str] = ..., walk_minutes: _Optional[int] = ..., distance_m: _Optional[int] = ...) -> None: ...

class ResolvePreviewLinkResponse(_message.Message):
    __slots__ = ("id", "name", "address", "lat", "lng", "rating", "user_rating_count", "photo_url", "photo_urls", "open_now", "business_status", "category", "nearest_charger", "verified_visit_count", "expires_at", "place_id", "open_until", "claimed")
    ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    LAT_FIELD_NUMBER: _ClassVar[int]
    LNG_FIELD_NUMBER: _ClassVar[int]
    RATING_FIELD_NUMBER: _ClassVar[int]
    USER_RATING_COUNT_FIELD_NUMBER: _ClassVar[int]
    PHOTO_URL_FIELD_NUMBER: _ClassVar[int]
    PHOTO_URLS_FIELD_NUMBER: _ClassVar[int]
    OPEN_NOW_FIELD_NUMBER: _ClassVar[int]
    BUSINESS_STATUS_FIELD_NUMBER: _ClassVar[int]
    CATEGORY_FIELD_NUMBER: _ClassVar[int]
    NEAREST_CHARGER_FIELD_NUMBER: _ClassVar[int]
    VERIFIED_VISIT_COUNT_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    PLACE_ID_FIELD_NUMBER: _ClassVar[int]
    OPEN_UNTIL_FIELD_NUMBER: _ClassVar[int]
    CLAIMED_FIELD_NUMBER: _ClassVar[int]
    id: str
    name: str
    address: str
    lat: float
    lng: float
    rating: float
    user_rating_count: int
    photo_url: str
    photo_urls: _containers.RepeatedScalarFieldContainer[str]
    open_now: bool
    business_status: str
    category: str
    nearest_charger: PreviewCharger
    verified_visit_count: int
    expires_at: _timestamp_pb2.Timestamp
    place_id: str
    open_until: str
    claimed: bool
    def __init__(self, id: _Optional[str] = ..., name: _Optional[str] = ..., address: _Optional[str] = ..., lat: _Optional[float] = ..., lng: _Optional[float] = ..., rating: _Optional[float] = ..., user_rating_count: _Optional[int] = ..., photo_url: _Optional[str] = ..., photo_urls: _Optional[_Iterable[str]] = ..., open_now: _Optional[bool] = ..., business_status: _Optional[str] = ..., category: _Optional[str] = ..., nearest_charger: _Optional[_Union[PreviewCharger, _Mapping]] = ..., verified_visit_count: _Optional[int] = ..., expires_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., place_id: _Optional[str] = ..., open_until: _Optional[str] = ..., claimed: _Optional[bool] = ...) -> None: ...

class SearchBusinessesRequest(_message.Message):
    __slots__ = ("query", "lat", "lng")
    QUERY_FIELD_NUMBER: _ClassVar[int]
    LAT_FIELD_NUMBER: _ClassVar[int]
    LNG_FIELD_NUMBER: _ClassVar[int]
    query: str
    lat: float
    lng: float
    def __init__(self, query: _Optional[str] = ..., lat: _Optional[float] = ..., lng: _Optional[float] = ...) -> None: ...

class Business(_message.Message):
    __slots__ = ("place_id", "name", "address", "lat", "lng", "category", "merchant_id", "claimed")
    PLACE_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    LAT_FIELD_NUMBER: _ClassVar[int]
    LNG_FIELD_NUMBER: _ClassVar[int]
    CATEGORY_FIELD_NUMBER: _ClassVar[int]
    MERCHANT_ID_FIELD_NUMBER: _ClassVar[int]
    CLAIMED_FIELD_NUMBER: _ClassVar[int]
    place_id: str
    name: str
    address: str
    lat: float
    lng: float
    category: str
    merchant_id: str
    claimed: bool
    def __init__(self, place_id: _Optional[str] = ..., name: _Optional[str] = ..., address: _Optional[str] = ..., lat: _Optional[float] = ..., lng: _Optional[float] = ..., category: _Optional[str] = ..., merchant_id: _Optional[str] = ..., claimed: _Optional[bool] = ...) -> None: ...

class SearchBusinessesResponse(_message.Message):
    __slots__ = ("businesses",)
    BUSINESSES_FIELD_NUMBER: _ClassVar[int]
    businesses: _containers.RepeatedCompositeFieldContainer[Business]
    def __init__(self, businesses: _Optional[_Iterable[_Union[Business, _Mapping]]] = ...) -> None: ...

class ResolveBusinessRequest(_message.Message):
    __slots__ = ("place_id",)
    PLACE_ID_FIELD_NUMBER: _ClassVar[int]
    place_id: str
    def __init__(self, place_id: _Optional[str] = ...) -> None: ...

class ResolveBusinessResponse(_message.Message):
    __slots__ = ("merchant_id", "preview_url", "sig", "expires_at", "exp")
    MERCHANT_ID_FIELD_NUMBER: _ClassVar[int]
    PREVIEW_URL_FIELD_NUMBER: _ClassVar[int]
    SIG_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    EXP_FIELD_NUMBER: _ClassVar[int]
    merchant_id: str
    preview_url: str
    sig: str
    expires_at: _timestamp_pb2.Timestamp
    exp: int
    def __init__(self, merchant_id: _Optional[str] = ..., preview_url: _Optional[str] = ..., sig: _Optional[str] = ..., expires_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., exp: _Optional[int] = ...) -> None: ...

class RequestMerchantClaimRequest(_message.Message):
    __slots__ = ("merchant_id", "exp", "sig", "email")
    MERCHANT_ID_FIELD_NUMBER: _ClassVar[int]
    EXP_FIELD_NUMBER: _ClassVar[int]
    SIG_FIELD_NUMBER: _ClassVar[int]
    EMAIL_FIELD_NUMBER: _ClassVar[int]
    merchant_id: str
    exp: int
    sig: str
    email: str
    def __init__(self, merchant_id: _Optional[str] = ..., exp: _Optional[int] = ..., sig: _Optional[str] = ..., email: _Optional[str] = ...) -> None: ...

class MerchantClaim(_message.Message):
    __slots__ = ("id", "merchant_id", "merchant_name", "email", "status", "created_at")
    ID_FIELD_NUMBER: _ClassVar[int]
    MERCHANT_ID_FIELD_NUMBER: _ClassVar[int]
    MERCHANT_NAME_FIELD_NUMBER: _ClassVar[int]
    EMAIL_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    id: str
    merchant_id: str
    merchant_name: str
    email: str
    status: MerchantClaimStatus
    created_at: _timestamp_pb2.Timestamp
    def __init__(self, id: _Optional[str] = ..., merchant_id: _Optional[str] = ..., merchant_name: _Optional[str] = ..., email: _Optional[str] = ..., status: _Optional[_Union[MerchantClaimStatus, str]] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class RequestMerchantClaimResponse(_message.Message):
    __slots__ = ("claim",)
    CLAIM_FIELD_NUMBER: _ClassVar[int]
    claim: MerchantClaim
    def __init__(self, claim: _Optional[_Union[MerchantClaim, _Mapping]] = ...) -> None: ...

class CreateMerchantRequest(_message.Message):
    __slots__ = ("request_id", "merchant")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    MERCHANT_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    merchant: Merchant
    def __init__(self, request_id: _Optional[str] = ..., merchant: _Optional[_Union[Merchant, _Mapping]] = ...) -> None: ...

class CreateMerchantResponse(_message.Message):
    __slots__ = ("merchant", "qr_token", "qr_url")
    MERCHANT_FIELD_NUMBER: _ClassVar[int]
    QR_TOKEN_FIELD_NUMBER: _ClassVar[int]
    QR_URL_FIELD_NUMBER: _ClassVar[int]
    merchant: Merchant
    qr_token: str
    qr_url: str
    def __init__(self, merchant: _Optional[_Union[Merchant, _Mapping]] = ..., qr_token: _Optional[str] = ..., qr_url: _Optional[str] = ...) -> None: ...

class UpdateMerchantRequest(_message.Message):
    __slots__ = ("merchant_id", "name", "category", "address", "phone", "website", "hours", "custom_perk_cents", "perk_label", "status")
    MERCHANT_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    CATEGORY_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    PHONE_FIELD_NUMBER: _ClassVar[int]
    WEBSITE_FIELD_NUMBER: _ClassVar[int]
    HOURS_FIELD_NUMBER: _ClassVar[int]
    CUSTOM_PERK_CENTS_FIELD_NUMBER: _ClassVar[int]
    PERK_LABEL_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    merchant_id: str
    name: str
    category: str
    address: str
    phone: str
    website: str
    hours: OpeningHours
    custom_perk_cents: int
    perk_label: str
    status: MerchantStatus
    def __init__(self, merchant_id: _Optional[str] = ..., name: _Optional[str] = ..., category: _Optional[str] = ..., address: _Optional[str] = ..., phone: _Optional[str] = ..., website: _Optional[str] = ..., hours: _Optional[_Union[OpeningHours, _Mapping]] = ..., custom_perk_cents: _Optional[int] = ..., perk_label: _Optional[str] = ..., status: _Optional[_Union[MerchantStatus, str]] = ...) -> None: ...

class UpdateMerchantResponse(_message.Message):
    __slots__ = ("merchant",)
    MERCHANT_FIELD_NUMBER: _ClassVar[int]
    merchant: Merchant
    def __init__(self, merchant: _Optional[_Union[Merchant, _Mapping]] = ...) -> None: ...

class LinkChargerRequest(_message.Message):
    __slots__ = ("merchant_id", "charger_id", "walk_distance_m", "walk_time_s", "is_primary")
    MERCHANT_ID_FIELD_NUMBER: _ClassVar[int]
    CHARGER_ID_FIELD_NUMBER: _ClassVar[int]
    WALK_DISTANCE_M_FIELD_NUMBER: _ClassVar[int]
    WALK_TIME_S_FIELD_NUMBER: _ClassVar[int]
    IS_PRIMARY_FIELD_NUMBER: _ClassVar[int]
    merchant_id: str
    charger_id: str
    walk_distance_m: int
    walk_time_s: int
    is_primary: bool
    def __init__(self, merchant_id: _Optional[str] = ..., charger_id: _Optional[str] = ..., walk_distance_m: _Optional[int] = ..., walk_time_s: _Optional[int] = ..., is_primary: _Optional[bool] = ...) -> None: ...

class ChargerLink(_message.Message):
    __slots__ = ("merchant_id", "charger_id", "charger_name", "walk_distance_m", "walk_time_s", "is_primary")
    MERCHANT_ID_FIELD_NUMBER: _ClassVar[int]
    CHARGER_ID_FIELD_NUMBER: _ClassVar[int]
    CHARGER_NAME_FIELD_NUMBER: _ClassVar[int]
    WALK_DISTANCE_M_FIELD_NUMBER: _ClassVar[int]
    WALK_TIME_S_FIELD_NUMBER: _ClassVar[int]
    IS_PRIMARY_FIELD_NUMBER: _ClassVar[int]
    merchant_id: str
    charger_id: str
    charger_name: str
    walk_distance_m: int
    walk_time_s: int
    is_primary: bool
    def __init__(self, merchant_id: _Optional[str] = ..., charger_id: _Optional[str] = ..., charger_name: _Optional[str] = ..., walk_distance_m: _Optional[int] = ..., walk_time_s: _Optional[int] = ..., is_primary: _Optional[bool] = ...) -> None: ...

class LinkChargerResponse(_message.Message):
    __slots__ = ("link",)
    LINK_FIELD_NUMBER: _ClassVar[int]
    link: ChargerLink
    def __init__(self, link: _Optional[_Union[ChargerLink, _Mapping]] = ...) -> None: ...

class GetCheckoutQrRequest(_message.Message):
    __slots__ = ("merchant_id",)
    MERCHANT_ID_FIELD_NUMBER: _ClassVar[int]
    merchant_id: str
    def __init__(self, merchant_id: _Optional[str] = ...) -> None: ...

class GetCheckoutQrResponse(_message.Message):
    __slots__ = ("qr_token", "qr_url")
    QR_TOKEN_FIELD_NUMBER: _ClassVar[int]
    QR_URL_FIELD_NUMBER: _ClassVar[int]
    qr_token: str
    qr_url: str
    def __init__(self, qr_token: _Optional[str] = ..., qr_url: _Optional[str] = ...) -> None: ...

class EnableMerchantExclusiveRequest(_message.Message):
    __slots__ = ("merchant_id", "exclusive_id", "enabled")
    MERCHANT_ID_FIELD_NUMBER: _ClassVar[int]
    EXCLUSIVE_ID_FIELD_NUMBER: _ClassVar[int]
    ENABLED_FIELD_NUMBER: _ClassVar[int]
    merchant_id: str
    exclusive_id: str
    enabled: bool
    def __init__(self, merchant_id: _Optional[str] = ..., exclusive_id: _Optional[str] = ..., enabled: _Optional[bool] = ...) -> None: ...

class EnableMerchantExclusiveResponse(_message.Message):
    __slots__ = ("ok", "is_active")
    OK_FIELD_NUMBER: _ClassVar[int]
    IS_ACTIVE_FIELD_NUMBER: _ClassVar[int]
    ok: bool
    is_active: bool
    def __init__(self, ok: _Optional[bool] = ..., is_active: _Optional[bool] = ...) -> None: ...

class GetMerchantAnalyticsRequest(_message.Message):
    __slots__ = ("merchant_id",)
    MERCHANT_ID_FIELD_NUMBER: _ClassVar[int]
    merchant_id: str
    def __init__(self, merchant_id: _Optional[str] = ...) -> None: ...

class GetMerchantAnalyticsResponse(_message.Message):
    __slots__ = ("merchant_id", "activations", "completes", "unique_drivers", "completion_rate")
    MERCHANT_ID_FIELD_NUMBER: _ClassVar[int]
    ACTIVATIONS_FIELD_NUMBER: _ClassVar[int]
    COMPLETES_FIELD_NUMBER: _ClassVar[int]
    UNIQUE_DRIVERS_FIELD_NUMBER: _ClassVar[int]
    COMPLETION_RATE_FIELD_NUMBER: _ClassVar[int]
    merchant_id: str
    activations: int
    completes: int
    unique_drivers: int
    completion_rate: float
    def __init__(self, merchant_id: _Optional[str] = ..., activations: _Optional[int] = ..., completes: _Optional[int] = ..., unique_drivers: _Optional[int] = ..., completion_rate: _Optional[float] = ...) -> None: ...

class GetMyMerchantInsightsRequest(_message.Message):
    __slots__ = ("period",)
    PERIOD_FIELD_NUMBER: _ClassVar[int]
    period: str
    def __init__(self, period: _Optional[str] = ...) -> None: ...

class PeakHour(_message.Message):
    __slots__ = ("hour", "sessions")
    HOUR_FIELD_NUMBER: _ClassVar[int]
    SESSIONS_FIELD_NUMBER: _ClassVar[int]
    hour: int
    sessions: int
    def __init__(self, hour: _Optional[int] = ..., sessions: _Optional[int] = ...) -> None: ...

class GetMyMerchantInsightsResponse(_message.Message):
    __slots__ = ("period", "ev_sessions_nearby", "unique_drivers", "avg_duration_minutes", "avg_kwh", "peak_hours")
    PERIOD_FIELD_NUMBER: _ClassVar[int]
    EV_SESSIONS_NEARBY_FIELD_NUMBER: _ClassVar[int]
    UNIQUE_DRIVERS_FIELD_NUMBER: _ClassVar[int]
    AVG_DURATION_MINUTES_FIELD_NUMBER: _ClassVar[int]
    AVG_KWH_FIELD_NUMBER: _ClassVar[int]
    PEAK_HOURS_FIELD_NUMBER: _ClassVar[int]
    period: str
    ev_sessions_nearby: int
    unique_drivers: int
    avg_duration_minutes: float
    avg_kwh: float
    peak_hours: _containers.RepeatedCompositeFieldContainer[PeakHour]
    def __init__(self, period: _Optional[str] = ..., ev_sessions_nearby: _Optional[int] = ..., unique_drivers: _Optional[int] = ..., avg_duration_minutes: _Optional[float] = ..., avg_kwh: _Optional[float] = ..., peak_hours: _Optional[_Iterable[_Union[PeakHour, _Mapping]]] = ...) -> None: ...

class AuthorizeMerchantClaimRequest(_message.Message):
    __slots__ = ("merchant_id", "place_id", "email", "owner_user_id")
    MERCHANT_ID_FIELD_NUMBER: _ClassVar[int]
    PLACE_ID_FIELD_NUMBER: _ClassVar[int]
    EMAIL_FIELD_NUMBER: _ClassVar[int]
    OWNER_USER_ID_FIELD_NUMBER: _ClassVar[int]
    merchant_id: str
    place_id: str
    email: str
    owner_user_id: str
    def __init__(self, merchant_id: _Optional[str] = ..., place_id: _Optional[str] = ..., email: _Optional[str] = ..., owner_user_id: _Optional[str] = ...) -> None: ...

class AuthorizeMerchantClaimResponse(_message.Message):
    __slots__ = ("merchant_id", "merchant_name")
    MERCHANT_ID_FIELD_NUMBER: _ClassVar[int]
    MERCHANT_NAME_FIELD_NUMBER: _ClassVar[int]
    merchant_id: str
    merchant_name: str
    def __init__(self, merchant_id: _Optional[str] = ..., merchant_name: _Optional[str] = ...) -> None: ...

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

class BatchListChargerMerchantsRequest(_message.Message):
    __slots__ = ("charger_ids",)
    CHARGER_IDS_FIELD_NUMBER: _ClassVar[int]
    charger_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, charger_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class ChargerMerchants(_message.Message):
    __slots__ = ("charger_id", "merchants")
    CHARGER_ID_FIELD_NUMBER: _ClassVar[int]
    MERCHANTS_FIELD_NUMBER: _ClassVar[int]
    charger_id: str
    merchants: _containers.RepeatedCompositeFieldContainer[ChargerMerchant]
    def __init__(self, charger_id: _Optional[str] = ..., merchants: _Optional[_Iterable[_Union[ChargerMerchant, _Mapping]]] = ...) -> None: ...

class BatchListChargerMerchantsResponse(_message.Message):
    __slots__ = ("chargers",)
    CHARGERS_FIELD_NUMBER: _ClassVar[int]
    chargers: _containers.RepeatedCompositeFieldContainer[ChargerMerchants]
    def __init__(self, chargers: _Optional[_Iterable[_Union[ChargerMerchants, _Mapping]]] = ...) -> None: ...
