import datetime

from buf.validate import validate_pb2 as _validate_pb2
from google.api import annotations_pb2 as _annotations_pb2
from google.api import httpbody_pb2 as _httpbody_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from nerava.incentives.v1 import incentives_pb2 as _incentives_pb2
from nerava.audit.v1 import audit_pb2 as _audit_pb2
from nerava.outbox.v1 import outbox_pb2 as _outbox_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class EndReason(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    END_REASON_UNSPECIFIED: _ClassVar[EndReason]
    END_REASON_UNPLUGGED: _ClassVar[EndReason]
    END_REASON_MANUAL: _ClassVar[EndReason]
    END_REASON_STALE_CLEANUP: _ClassVar[EndReason]
    END_REASON_TELEMETRY_DISCONNECTED: _ClassVar[EndReason]

class SessionSource(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SESSION_SOURCE_UNSPECIFIED: _ClassVar[SessionSource]
    SESSION_SOURCE_TESLA_API: _ClassVar[SessionSource]
    SESSION_SOURCE_TESLA_TELEMETRY: _ClassVar[SessionSource]
    SESSION_SOURCE_SMARTCAR: _ClassVar[SessionSource]

class PollError(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    POLL_ERROR_UNSPECIFIED: _ClassVar[PollError]
    POLL_ERROR_NO_VEHICLE_CONNECTION: _ClassVar[PollError]
    POLL_ERROR_NO_VEHICLE_SELECTED: _ClassVar[PollError]
    POLL_ERROR_TOKEN_EXPIRED: _ClassVar[PollError]
    POLL_ERROR_VEHICLE_UNAVAILABLE: _ClassVar[PollError]
    POLL_ERROR_RATE_LIMITED: _ClassVar[PollError]
    POLL_ERROR_POLL_FAILED: _ClassVar[PollError]

class IngestAction(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    INGEST_ACTION_UNSPECIFIED: _ClassVar[IngestAction]
    INGEST_ACTION_CREATED: _ClassVar[IngestAction]
    INGEST_ACTION_UPDATED: _ClassVar[IngestAction]
    INGEST_ACTION_ENDED: _ClassVar[IngestAction]
    INGEST_ACTION_IGNORED: _ClassVar[IngestAction]
END_REASON_UNSPECIFIED: EndReason
END_REASON_UNPLUGGED: EndReason
END_REASON_MANUAL: EndReason
END_REASON_STALE_CLEANUP: EndReason
END_REASON_TELEMETRY_DISCONNECTED: EndReason
SESSION_SOURCE_UNSPECIFIED: SessionSource
SESSION_SOURCE_TESLA_API: SessionSource
SESSION_SOURCE_TESLA_TELEMETRY: SessionSource
SESSION_SOURCE_SMARTCAR: SessionSource
POLL_ERROR_UNSPECIFIED: PollError
POLL_ERROR_NO_VEHICLE_CONNECTION: PollError
POLL_ERROR_NO_VEHICLE_SELECTED: PollError
POLL_ERROR_TOKEN_EXPIRED: PollError
POLL_ERROR_VEHICLE_UNAVAILABLE: PollError
POLL_ERROR_RATE_LIMITED: PollError
POLL_ERROR_POLL_FAILED: PollError
INGEST_ACTION_UNSPECIFIED: IngestAction
INGEST_ACTION_CREATED: IngestAction
INGEST_ACTION_UPDATED: IngestAction
INGEST_ACTION_ENDED: IngestAction
INGEST_ACTION_IGNORED: IngestAction

class LocationPoint(_message.Message):
    __slots__ = ("lat", "lng", "ts")
    LAT_FIELD_NUMBER: _ClassVar[int]
    LNG_FIELD_NUMBER: _ClassVar[int]
    TS_FIELD_NUMBER: _ClassVar[int]
    lat: float
    lng: float
    ts: _timestamp_pb2.Timestamp
    def __init__(self, lat: _Optional[float] = ..., lng: _Optional[float] = ..., ts: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class SessionIncentive(_message.Message):
    __slots__ = ("grant_id", "campaign_id", "campaign_name", "amount_cents", "reward_kind", "status", "granted_at")
    GRANT_ID_FIELD_NUMBER: _ClassVar[int]
    CAMPAIGN_ID_FIELD_NUMBER: _ClassVar[int]
    CAMPAIGN_NAME_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_CENTS_FIELD_NUMBER: _ClassVar[int]
    REWARD_KIND_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    GRANTED_AT_FIELD_NUMBER: _ClassVar[int]
    grant_id: str
    campaign_id: str
    campaign_name: str
    amount_cents: int
    reward_kind: _incentives_pb2.RewardKind
    status: _incentives_pb2.GrantStatus
    granted_at: _timestamp_pb2.Timestamp
    def __init__(self, grant_id: _Optional[str] = ..., campaign_id: _Optional[str] = ..., campaign_name: _Optional[str] = ..., amount_cents: _Optional[int] = ..., reward_kind: _Optional[_Union[_incentives_pb2.RewardKind, str]] = ..., status: _Optional[_Union[_incentives_pb2.GrantStatus, str]] = ..., granted_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ChargingSession(_message.Message):
    __slots__ = ("id", "driver_id", "vehicle_id", "source", "session_start", "session_end", "duration_minutes", "charger_id", "charger_name", "charger_network", "zone_id", "connector_type", "power_kw", "max_power_kw", "kwh_delivered", "verified", "lat", "lng", "battery_start_pct", "battery_end_pct", "quality_score", "ended_reason", "location_trail", "incentive", "last_telemetry_at")
    ID_FIELD_NUMBER: _ClassVar[int]
    DRIVER_ID_FIELD_NUMBER: _ClassVar[int]
    VEHICLE_ID_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    SESSION_START_FIELD_NUMBER: _ClassVar[int]
    SESSION_END_FIELD_NUMBER: _ClassVar[int]
    DURATION_MINUTES_FIELD_NUMBER: _ClassVar[int]
    CHARGER_ID_FIELD_NUMBER: _ClassVar[int]
    CHARGER_NAME_FIELD_NUMBER: _ClassVar[int]
    CHARGER_NETWORK_FIELD_NUMBER: _ClassVar[int]
    ZONE_ID_FIELD_NUMBER: _ClassVar[int]
    CONNECTOR_TYPE_FIELD_NUMBER: _ClassVar[int]
    POWER_KW_FIELD_NUMBER: _ClassVar[int]
    MAX_POWER_KW_FIELD_NUMBER: _ClassVar[int]
    KWH_DELIVERED_FIELD_NUMBER: _ClassVar[int]
    VERIFIED_FIELD_NUMBER: _ClassVar[int]
    LAT_FIELD_NUMBER: _ClassVar[int]
    LNG_FIELD_NUMBER: _ClassVar[int]
    BATTERY_START_PCT_FIELD_NUMBER: _ClassVar[int]
    BATTERY_END_PCT_FIELD_NUMBER: _ClassVar[int]
    QUALITY_SCORE_FIELD_NUMBER: _ClassVar[int]
    ENDED_REASON_FIELD_NUMBER: _ClassVar[int]
    LOCATION_TRAIL_FIELD_NUMBER: _ClassVar[int]
    INCENTIVE_FIELD_NUMBER: _ClassVar[int]
    LAST_TELEMETRY_AT_FIELD_NUMBER: _ClassVar[int]
    id: str
    driver_id: str
    vehicle_id: str
    source: SessionSource
    session_start: _timestamp_pb2.Timestamp
    session_end: _timestamp_pb2.Timestamp
    duration_minutes: int
    charger_id: str
    charger_name: str
    charger_network: str
    zone_id: str
    connector_type: str
    power_kw: float
    max_power_kw: float
    kwh_delivered: float
    verified: bool
    lat: float
    lng: float
    battery_start_pct: int
    battery_end_pct: int
    quality_score: int
    ended_reason: EndReason
    location_trail: _containers.RepeatedCompositeFieldContainer[LocationPoint]
    incentive: SessionIncentive
    last_telemetry_at: _timestamp_pb2.Timestamp
    def __init__(self, id: _Optional[str] = ..., driver_id: _Optional[str] = ..., vehicle_id: _Optional[str] = ..., source: _Optional[_Union[SessionSource, str]] = ..., session_start: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., session_end: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., duration_minutes: _Optional[int] = ..., charger_id: _Optional[str] = ..., charger_name: _Optional[str] = ..., charger_network: _Optional[str] = ..., zone_id: _Optional[str] = ..., connector_type: _Optional[str] = ..., power_kw: _Optional[float] = ..., max_power_kw: _Optional[float] = ..., kwh_delivered: _Optional[float] = ..., verified: _Optional[bool] = ..., lat: _Optional[float] = ..., lng: _Optional[float] = ..., battery_start_pct: _Optional[int] = ..., battery_end_pct: _Optional[int] = ..., quality_score: _Optional[int] = ..., ended_reason: _Optional[_Union[EndReason, str]] = ..., location_trail: _Optional[_Iterable[_Union[LocationPoint, _Mapping]]] = ..., incentive: _Optional[_Union[SessionIncentive, _Mapping]] = ..., last_telemetry_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class Charger(_message.Message):
    __slots__ = ("id", "name", "lat", "lng", "distance_m", "network_name", "power_kw", "num_evse", "connector_types", "pricing_per_kwh_cents", "address", "city", "state", "zone_id", "pricing_per_kwh", "has_merchant_perk", "merchant_perk_title", "campaign_reward_cents", "campaign_reward_kind")
    ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    LAT_FIELD_NUMBER: _ClassVar[int]
    LNG_FIELD_NUMBER: _ClassVar[int]
    DISTANCE_M_FIELD_NUMBER: _ClassVar[int]
    NETWORK_NAME_FIELD_NUMBER: _ClassVar[int]
    POWER_KW_FIELD_NUMBER: _ClassVar[int]
    NUM_EVSE_FIELD_NUMBER: _ClassVar[int]
    CONNECTOR_TYPES_FIELD_NUMBER: _ClassVar[int]
    PRICING_PER_KWH_CENTS_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    CITY_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    ZONE_ID_FIELD_NUMBER: _ClassVar[int]
    PRICING_PER_KWH_FIELD_NUMBER: _ClassVar[int]
    HAS_MERCHANT_PERK_FIELD_NUMBER: _ClassVar[int]
    MERCHANT_PERK_TITLE_FIELD_NUMBER: _ClassVar[int]
    CAMPAIGN_REWARD_CENTS_FIELD_NUMBER: _ClassVar[int]
    CAMPAIGN_REWARD_KIND_FIELD_NUMBER: _ClassVar[int]
    id: str
    name: str
    lat: float
    lng: float
    distance_m: float
    network_name: str
    power_kw: float
    num_evse: int
    connector_types: _containers.RepeatedScalarFieldContainer[str]
    pricing_per_kwh_cents: int
    address: str
    city: str
    state: str
    zone_id: str
    pricing_per_kwh: float
    has_merchant_perk: bool
    merchant_perk_title: str
    campaign_reward_cents: int
    campaign_reward_kind: _incentives_pb2.RewardKind
    def __init__(self, id: _Optional[str] = ..., name: _Optional[str] = ..., lat: _Optional[float] = ..., lng: _Optional[float] = ..., distance_m: _Optional[float] = ..., network_name: _Optional[str] = ..., power_kw: _Optional[float] = ..., num_evse: _Optional[int] = ..., connector_types: _Optional[_Iterable[str]] = ..., pricing_per_kwh_cents: _Optional[int] = ..., address: _Optional[str] = ..., city: _Optional[str] = ..., state: _Optional[str] = ..., zone_id: _Optional[str] = ..., pricing_per_kwh: _Optional[float] = ..., has_merchant_perk: _Optional[bool] = ..., merchant_perk_title: _Optional[str] = ..., campaign_reward_cents: _Optional[int] = ..., campaign_reward_kind: _Optional[_Union[_incentives_pb2.RewardKind, str]] = ...) -> None: ...

class SearchLocation(_message.Message):
    __slots__ = ("lat", "lng", "name")
    LAT_FIELD_NUMBER: _ClassVar[int]
    LNG_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    lat: float
    lng: float
    name: str
    def __init__(self, lat: _Optional[float] = ..., lng: _Optional[float] = ..., name: _Optional[str] = ...) -> None: ...

class TeslaVehicle(_message.Message):
    __slots__ = ("id", "vin", "display_name", "model", "year", "color")
    ID_FIELD_NUMBER: _ClassVar[int]
    VIN_FIELD_NUMBER: _ClassVar[int]
    DISPLAY_NAME_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    YEAR_FIELD_NUMBER: _ClassVar[int]
    COLOR_FIELD_NUMBER: _ClassVar[int]
    id: str
    vin: str
    display_name: str
    model: str
    year: int
    color: str
    def __init__(self, id: _Optional[str] = ..., vin: _Optional[str] = ..., display_name: _Optional[str] = ..., model: _Optional[str] = ..., year: _Optional[int] = ..., color: _Optional[str] = ...) -> None: ...

class EvCode(_message.Message):
    __slots__ = ("code", "merchant_name", "merchant_place_id", "expires_at", "status", "created_at")
    CODE_FIELD_NUMBER: _ClassVar[int]
    MERCHANT_NAME_FIELD_NUMBER: _ClassVar[int]
    MERCHANT_PLACE_ID_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    code: str
    merchant_name: str
    merchant_place_id: str
    expires_at: _timestamp_pb2.Timestamp
    status: str
    created_at: _timestamp_pb2.Timestamp
    def __init__(self, code: _Optional[str] = ..., merchant_name: _Optional[str] = ..., merchant_place_id: _Optional[str] = ..., expires_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., status: _Optional[str] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ChargerRecord(_message.Message):
    __slots__ = ("external_id", "name", "lat", "lng", "network_name", "power_kw", "num_evse", "connector_types", "pricing_per_kwh_cents", "address", "city", "state", "zone_id")
    EXTERNAL_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    LAT_FIELD_NUMBER: _ClassVar[int]
    LNG_FIELD_NUMBER: _ClassVar[int]
    NETWORK_NAME_FIELD_NUMBER: _ClassVar[int]
    POWER_KW_FIELD_NUMBER: _ClassVar[int]
    NUM_EVSE_FIELD_NUMBER: _ClassVar[int]
    CONNECTOR_TYPES_FIELD_NUMBER: _ClassVar[int]
    PRICING_PER_KWH_CENTS_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    CITY_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    ZONE_ID_FIELD_NUMBER: _ClassVar[int]
    external_id: str
    name: str
    lat: float
    lng: float
    network_name: str
    power_kw: float
    num_evse: int
    connector_types: _containers.RepeatedScalarFieldContainer[str]
    pricing_per_kwh_cents: int
    address: str
    city: str
    state: str
    zone_id: str
    def __init__(self, external_id: _Optional[str] = ..., name: _Optional[str] = ..., lat: _Optional[float] = ..., lng: _Optional[float] = ..., network_name: _Optional[str] = ..., power_kw: _Optional[float] = ..., num_evse: _Optional[int] = ..., connector_types: _Optional[_Iterable[str]] = ..., pricing_per_kwh_cents: _Optional[int] = ..., address: _Optional[str] = ..., city: _Optional[str] = ..., state: _Optional[str] = ..., zone_id: _Optional[str] = ...) -> None: ...

class PollChargingStateRequest(_message.Message):
    __slots__ = ("lat", "lng")
    LAT_FIELD_NUMBER: _ClassVar[int]
    LNG_FIELD_NUMBER: _ClassVar[int]
    lat: float
    lng: float
    def __init__(self, lat: _Optional[float] = ..., lng: _Optional[float] = ...) -> None: ...

class PollChargingStateResponse(_message.Message):
    __slots__ = ("session_active", "session_id", "duration_minutes", "kwh_delivered", "battery_level", "minutes_to_full", "charger_power_kw", "recommended_interval_s", "session_ended", "incentive_granted", "incentive_amount_cents", "incentive_reward_kind", "vehicle_asleep", "error", "cached", "telemetry_mode", "session_reopened")
    SESSION_ACTIVE_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    DURATION_MINUTES_FIELD_NUMBER: _ClassVar[int]
    KWH_DELIVERED_FIELD_NUMBER: _ClassVar[int]
    BATTERY_LEVEL_FIELD_NUMBER: _ClassVar[int]
    MINUTES_TO_FULL_FIELD_NUMBER: _ClassVar[int]
    CHARGER_POWER_KW_FIELD_NUMBER: _ClassVar[int]
    RECOMMENDED_INTERVAL_S_FIELD_NUMBER: _ClassVar[int]
    SESSION_ENDED_FIELD_NUMBER: _ClassVar[int]
    INCENTIVE_GRANTED_FIELD_NUMBER: _ClassVar[int]
    INCENTIVE_AMOUNT_CENTS_FIELD_NUMBER: _ClassVar[int]
    INCENTIVE_REWARD_KIND_FIELD_NUMBER: _ClassVar[int]
    VEHICLE_ASLEEP_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    CACHED_FIELD_NUMBER: _ClassVar[int]
    TELEMETRY_MODE_FIELD_NUMBER: _ClassVar[int]
    SESSION_REOPENED_FIELD_NUMBER: _ClassVar[int]
    session_active: bool
    session_id: str
    duration_minutes: int
    kwh_delivered: float
    battery_level: int
    minutes_to_full: int
    charger_power_kw: float
    recommended_interval_s: int
    session_ended: bool
    incentive_granted: bool
    incentive_amount_cents: int
    incentive_reward_kind: _incentives_pb2.RewardKind
    vehicle_asleep: bool
    error: PollError
    cached: bool
    telemetry_mode: bool
    session_reopened: bool
    def __init__(self, session_active: _Optional[bool] = ..., session_id: _Optional[str] = ..., duration_minutes: _Optional[int] = ..., kwh_delivered: _Optional[float] = ..., battery_level: _Optional[int] = ..., minutes_to_full: _Optional[int] = ..., charger_power_kw: _Optional[float] = ..., recommended_interval_s: _Optional[int] = ..., session_ended: _Optional[bool] = ..., incentive_granted: _Optional[bool] = ..., incentive_amount_cents: _Optional[int] = ..., incentive_reward_kind: _Optional[_Union[_incentives_pb2.RewardKind, str]] = ..., vehicle_asleep: _Optional[bool] = ..., error: _Optional[_Union[PollError, str]] = ..., cached: _Optional[bool] = ..., telemetry_mode: _Optional[bool] = ..., session_reopened: _Optional[bool] = ...) -> None: ...

class GetActiveSessionRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetActiveSessionResponse(_message.Message):
    __slots__ = ("session", "active", "last_ended_session")
    SESSION_FIELD_NUMBER: _ClassVar[int]
    ACTIVE_FIELD_NUMBER: _ClassVar[int]
    LAST_ENDED_SESSION_FIELD_NUMBER: _ClassVar[int]
    session: ChargingSession
    active: bool
    last_ended_session: ChargingSession
    def __init__(self, session: _Optional[_Union[ChargingSession, _Mapping]] = ..., active: _Optional[bool] = ..., last_ended_session: _Optional[_Union[ChargingSession, _Mapping]] = ...) -> None: ...

class ListChargingSessionsRequest(_message.Message):
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

class ListChargingSessionsResponse(_message.Message):
    __slots__ = ("sessions", "count", "next_page_token")
    SESSIONS_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    sessions: _containers.RepeatedCompositeFieldContainer[ChargingSession]
    count: int
    next_page_token: str
    def __init__(self, sessions: _Optional[_Iterable[_Union[ChargingSession, _Mapping]]] = ..., count: _Optional[int] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class GetChargingSessionRequest(_message.Message):
    __slots__ = ("session_id",)
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    def __init__(self, session_id: _Optional[str] = ...) -> None: ...

class GetChargingSessionResponse(_message.Message):
    __slots__ = ("session",)
    SESSION_FIELD_NUMBER: _ClassVar[int]
    session: ChargingSession
    def __init__(self, session: _Optional[_Union[ChargingSession, _Mapping]] = ...) -> None: ...

class EndChargingSessionRequest(_message.Message):
    __slots__ = ("session_id",)
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    def __init__(self, session_id: _Optional[str] = ...) -> None: ...

class EndChargingSessionResponse(_message.Message):
    __slots__ = ("session", "ended", "already_ended")
    SESSION_FIELD_NUMBER: _ClassVar[int]
    ENDED_FIELD_NUMBER: _ClassVar[int]
    ALREADY_ENDED_FIELD_NUMBER: _ClassVar[int]
    session: ChargingSession
    ended: bool
    already_ended: bool
    def __init__(self, session: _Optional[_Union[ChargingSession, _Mapping]] = ..., ended: _Optional[bool] = ..., already_ended: _Optional[bool] = ...) -> None: ...

class IngestTelemetryRequest(_message.Message):
    __slots__ = ("http_body",)
    HTTP_BODY_FIELD_NUMBER: _ClassVar[int]
    http_body: _httpbody_pb2.HttpBody
    def __init__(self, http_body: _Optional[_Union[_httpbody_pb2.HttpBody, _Mapping]] = ...) -> None: ...

class IngestTelemetryResponse(_message.Message):
    __slots__ = ("action", "session_id")
    ACTION_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    action: IngestAction
    session_id: str
    def __init__(self, action: _Optional[_Union[IngestAction, str]] = ..., session_id: _Optional[str] = ...) -> None: ...

class HandleSmartcarWebhookRequest(_message.Message):
    __slots__ = ("http_body",)
    HTTP_BODY_FIELD_NUMBER: _ClassVar[int]
    http_body: _httpbody_pb2.HttpBody
    def __init__(self, http_body: _Optional[_Union[_httpbody_pb2.HttpBody, _Mapping]] = ...) -> None: ...

class HandleSmartcarWebhookResponse(_message.Message):
    __slots__ = ("challenge", "action", "session_id")
    CHALLENGE_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    challenge: str
    action: IngestAction
    session_id: str
    def __init__(self, challenge: _Optional[str] = ..., action: _Optional[_Union[IngestAction, str]] = ..., session_id: _Optional[str] = ...) -> None: ...

class ConnectTeslaRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ConnectTeslaResponse(_message.Message):
    __slots__ = ("authorization_url", "state")
    AUTHORIZATION_URL_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    authorization_url: str
    state: str
    def __init__(self, authorization_url: _Optional[str] = ..., state: _Optional[str] = ...) -> None: ...

class HandleTeslaCallbackRequest(_message.Message):
    __slots__ = ("code", "state", "error", "error_description", "locale", "issuer")
    CODE_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    ERROR_DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    LOCALE_FIELD_NUMBER: _ClassVar[int]
    ISSUER_FIELD_NUMBER: _ClassVar[int]
    code: str
    state: str
    error: str
    error_description: str
    locale: str
    issuer: str
    def __init__(self, code: _Optional[str] = ..., state: _Optional[str] = ..., error: _Optional[str] = ..., error_description: _Optional[str] = ..., locale: _Optional[str] = ..., issuer: _Optional[str] = ...) -> None: ...

class HandleTeslaCallbackResponse(_message.Message):
    __slots__ = ("http_body",)
    HTTP_BODY_FIELD_NUMBER: _ClassVar[int]
    http_body: _httpbody_pb2.HttpBody
    def __init__(self, http_body: _Optional[_Union[_httpbody_pb2.HttpBody, _Mapping]] = ...) -> None: ...

class GetTeslaStatusRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetTeslaStatusResponse(_message.Message):
    __slots__ = ("connected", "vehicle_name", "vehicle_model", "vehicle_year", "exterior_color", "battery_level", "vin", "vehicle_id", "vehicles", "telemetry_enabled", "needs_reconnect")
    CONNECTED_FIELD_NUMBER: _ClassVar[int]
    VEHICLE_NAME_FIELD_NUMBER: _ClassVar[int]
    VEHICLE_MODEL_FIELD_NUMBER: _ClassVar[int]
    VEHICLE_YEAR_FIELD_NUMBER: _ClassVar[int]
    EXTERIOR_COLOR_FIELD_NUMBER: _ClassVar[int]
    BATTERY_LEVEL_FIELD_NUMBER: _ClassVar[int]
    VIN_FIELD_NUMBER: _ClassVar[int]
    VEHICLE_ID_FIELD_NUMBER: _ClassVar[int]
    VEHICLES_FIELD_NUMBER: _ClassVar[int]
    TELEMETRY_ENABLED_FIELD_NUMBER: _ClassVar[int]
    NEEDS_RECONNECT_FIELD_NUMBER: _ClassVar[int]
    connected: bool
    vehicle_name: str
    vehicle_model: str
    vehicle_year: int
    exterior_color: str
    battery_level: int
    vin: str
    vehicle_id: str
    vehicles: _containers.RepeatedCompositeFieldContainer[TeslaVehicle]
    telemetry_enabled: bool
    needs_reconnect: bool
    def __init__(self, connected: _Optional[bool] = ..., vehicle_name: _Optional[str] = ..., vehicle_model: _Optional[str] = ..., vehicle_year: _Optional[int] = ..., exterior_color: _Optional[str] = ..., battery_level: _Optional[int] = ..., vin: _Optional[str] = ..., vehicle_id: _Optional[str] = ..., vehicles: _Optional[_Iterable[_Union[TeslaVehicle, _Mapping]]] = ..., telemetry_enabled: _Optional[bool] = ..., needs_reconnect: _Optional[bool] = ...) -> None: ...

class DisconnectTeslaRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ConfigureTelemetryRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ConfigureTelemetryResponse(_message.Message):
    __slots__ = ("telemetry_enabled", "vin")
    TELEMETRY_ENABLED_FIELD_NUMBER: _ClassVar[int]
    VIN_FIELD_NUMBER: _ClassVar[int]
    telemetry_enabled: bool
    vin: str
    def __init__(self, telemetry_enabled: _Optional[bool] = ..., vin: _Optional[str] = ...) -> None: ...

class ConnectSmartcarRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ConnectSmartcarResponse(_message.Message):
    __slots__ = ("authorization_url", "state")
    AUTHORIZATION_URL_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    authorization_url: str
    state: str
    def __init__(self, authorization_url: _Optional[str] = ..., state: _Optional[str] = ...) -> None: ...

class HandleSmartcarCallbackRequest(_message.Message):
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

class HandleSmartcarCallbackResponse(_message.Message):
    __slots__ = ("http_body",)
    HTTP_BODY_FIELD_NUMBER: _ClassVar[int]
    http_body: _httpbody_pb2.HttpBody
    def __init__(self, http_body: _Optional[_Union[_httpbody_pb2.HttpBody, _Mapping]] = ...) -> None: ...

class GetSmartcarStatusRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetSmartcarStatusResponse(_message.Message):
    __slots__ = ("connected", "vehicle_id", "vehicle_ids", "needs_reconnect")
    CONNECTED_FIELD_NUMBER: _ClassVar[int]
    VEHICLE_ID_FIELD_NUMBER: _ClassVar[int]
    VEHICLE_IDS_FIELD_NUMBER: _ClassVar[int]
    NEEDS_RECONNECT_FIELD_NUMBER: _ClassVar[int]
    connected: bool
    vehicle_id: str
    vehicle_ids: _containers.RepeatedScalarFieldContainer[str]
    needs_reconnect: bool
    def __init__(self, connected: _Optional[bool] = ..., vehicle_id: _Optional[str] = ..., vehicle_ids: _Optional[_Iterable[str]] = ..., needs_reconnect: _Optional[bool] = ...) -> None: ...

class DisconnectSmartcarRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class DisconnectSmartcarResponse(_message.Message):
    __slots__ = ("disconnected",)
    DISCONNECTED_FIELD_NUMBER: _ClassVar[int]
    disconnected: bool
    def __init__(self, disconnected: _Optional[bool] = ...) -> None: ...

class DisconnectTeslaResponse(_message.Message):
    __slots__ = ("disconnected",)
    DISCONNECTED_FIELD_NUMBER: _ClassVar[int]
    disconnected: bool
    def __init__(self, disconnected: _Optional[bool] = ...) -> None: ...

class SelectVehicleRequest(_message.Message):
    __slots__ = ("vehicle_id",)
    VEHICLE_ID_FIELD_NUMBER: _ClassVar[int]
    vehicle_id: str
    def __init__(self, vehicle_id: _Optional[str] = ...) -> None: ...

class SelectVehicleResponse(_message.Message):
    __slots__ = ("success", "vehicle")
    SUCCESS_FIELD_NUMBER: _ClassVar[int]
    VEHICLE_FIELD_NUMBER: _ClassVar[int]
    success: bool
    vehicle: TeslaVehicle
    def __init__(self, success: _Optional[bool] = ..., vehicle: _Optional[_Union[TeslaVehicle, _Mapping]] = ...) -> None: ...

class VerifyChargingRequest(_message.Message):
    __slots__ = ("lat", "lng", "merchant_place_id", "merchant_name", "charger_id")
    LAT_FIELD_NUMBER: _ClassVar[int]
    LNG_FIELD_NUMBER: _ClassVar[int]
    MERCHANT_PLACE_ID_FIELD_NUMBER: _ClassVar[int]
    MERCHANT_NAME_FIELD_NUMBER: _ClassVar[int]
    CHARGER_ID_FIELD_NUMBER: _ClassVar[int]
    lat: float
    lng: float
    merchant_place_id: str
    merchant_name: str
    charger_id: str
    def __init__(self, lat: _Optional[float] = ..., lng: _Optional[float] = ..., merchant_place_id: _Optional[str] = ..., merchant_name: _Optional[str] = ..., charger_id: _Optional[str] = ...) -> None: ...

class VerifyChargingResponse(_message.Message):
    __slots__ = ("is_charging", "battery_level", "charge_rate_kw", "ev_code", "expires_at", "message")
    IS_CHARGING_FIELD_NUMBER: _ClassVar[int]
    BATTERY_LEVEL_FIELD_NUMBER: _ClassVar[int]
    CHARGE_RATE_KW_FIELD_NUMBER: _ClassVar[int]
    EV_CODE_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    is_charging: bool
    battery_level: int
    charge_rate_kw: float
    ev_code: str
    expires_at: _timestamp_pb2.Timestamp
    message: str
    def __init__(self, is_charging: _Optional[bool] = ..., battery_level: _Optional[int] = ..., charge_rate_kw: _Optional[float] = ..., ev_code: _Optional[str] = ..., expires_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., message: _Optional[str] = ...) -> None: ...

class ListEvCodesRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListEvCodesResponse(_message.Message):
    __slots__ = ("codes", "json_array")
    CODES_FIELD_NUMBER: _ClassVar[int]
    JSON_ARRAY_FIELD_NUMBER: _ClassVar[int]
    codes: _containers.RepeatedCompositeFieldContainer[EvCode]
    json_array: _httpbody_pb2.HttpBody
    def __init__(self, codes: _Optional[_Iterable[_Union[EvCode, _Mapping]]] = ..., json_array: _Optional[_Union[_httpbody_pb2.HttpBody, _Mapping]] = ...) -> None: ...

class SearchChargersRequest(_message.Message):
    __slots__ = ("q", "lat", "lng", "radius_m", "page_size", "page_token")
    Q_FIELD_NUMBER: _ClassVar[int]
    LAT_FIELD_NUMBER: _ClassVar[int]
    LNG_FIELD_NUMBER: _ClassVar[int]
    RADIUS_M_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    q: str
    lat: float
    lng: float
    radius_m: int
    page_size: int
    page_token: str
    def __init__(self, q: _Optional[str] = ..., lat: _Optional[float] = ..., lng: _Optional[float] = ..., radius_m: _Optional[int] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class SearchChargersResponse(_message.Message):
    __slots__ = ("chargers", "location", "next_page_token")
    CHARGERS_FIELD_NUMBER: _ClassVar[int]
    LOCATION_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    chargers: _containers.RepeatedCompositeFieldContainer[Charger]
    location: SearchLocation
    next_page_token: str
    def __init__(self, chargers: _Optional[_Iterable[_Union[Charger, _Mapping]]] = ..., location: _Optional[_Union[SearchLocation, _Mapping]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class GetChargerRequest(_message.Message):
    __slots__ = ("charger_id", "lat", "lng")
    CHARGER_ID_FIELD_NUMBER: _ClassVar[int]
    LAT_FIELD_NUMBER: _ClassVar[int]
    LNG_FIELD_NUMBER: _ClassVar[int]
    charger_id: str
    lat: float
    lng: float
    def __init__(self, charger_id: _Optional[str] = ..., lat: _Optional[float] = ..., lng: _Optional[float] = ...) -> None: ...

class GetChargerResponse(_message.Message):
    __slots__ = ("id", "name", "address", "city", "state", "lat", "lng", "network_name", "connector_types", "power_kw", "num_evse", "status", "distance_m", "drive_time_min", "total_sessions_30d", "unique_drivers_30d", "avg_duration_min", "drivers_charging_now", "pricing_per_kwh_cents", "zone_id", "pricing_per_kwh", "pricing_source", "active_reward_cents", "active_reward_kind", "nearby_merchants", "nerava_score", "has_merchant_perk", "merchant_perk_title")
    ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    CITY_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    LAT_FIELD_NUMBER: _ClassVar[int]
    LNG_FIELD_NUMBER: _ClassVar[int]
    NETWORK_NAME_FIELD_NUMBER: _ClassVar[int]
    CONNECTOR_TYPES_FIELD_NUMBER: _ClassVar[int]
    POWER_KW_FIELD_NUMBER: _ClassVar[int]
    NUM_EVSE_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    DISTANCE_M_FIELD_NUMBER: _ClassVar[int]
    DRIVE_TIME_MIN_FIELD_NUMBER: _ClassVar[int]
    TOTAL_SESSIONS_30D_FIELD_NUMBER: _ClassVar[int]
    UNIQUE_DRIVERS_30D_FIELD_NUMBER: _ClassVar[int]
    AVG_DURATION_MIN_FIELD_NUMBER: _ClassVar[int]
    DRIVERS_CHARGING_NOW_FIELD_NUMBER: _ClassVar[int]
    PRICING_PER_KWH_CENTS_FIELD_NUMBER: _ClassVar[int]
    ZONE_ID_FIELD_NUMBER: _ClassVar[int]
    PRICING_PER_KWH_FIELD_NUMBER: _ClassVar[int]
    PRICING_SOURCE_FIELD_NUMBER: _ClassVar[int]
    ACTIVE_REWARD_CENTS_FIELD_NUMBER: _ClassVar[int]
    ACTIVE_REWARD_KIND_FIELD_NUMBER: _ClassVar[int]
    NEARBY_MERCHANTS_FIELD_NUMBER: _ClassVar[int]
    NERAVA_SCORE_FIELD_NUMBER: _ClassVar[int]
    HAS_MERCHANT_PERK_FIELD_NUMBER: _ClassVar[int]
    MERCHANT_PERK_TITLE_FIELD_NUMBER: _ClassVar[int]
    id: str
    name: str
    address: str
    city: str
    state: str
    lat: float
    lng: float
    network_name: str
    connector_types: _containers.RepeatedScalarFieldContainer[str]
    power_kw: float
    num_evse: int
    status: str
    distance_m: float
    drive_time_min: int
    total_sessions_30d: int
    unique_drivers_30d: int
    avg_duration_min: float
    drivers_charging_now: int
    pricing_per_kwh_cents: int
    zone_id: str
    pricing_per_kwh: float
    pricing_source: str
    active_reward_cents: int
    active_reward_kind: _incentives_pb2.RewardKind
    nearby_merchants: _containers.RepeatedCompositeFieldContainer[NearbyMerchant]
    nerava_score: int
    has_merchant_perk: bool
    merchant_perk_title: str
    def __init__(self, id: _Optional[str] = ..., name: _Optional[str] = ..., address: _Optional[str] = ..., city: _Optional[str] = ..., state: _Optional[str] = ..., lat: _Optional[float] = ..., lng: _Optional[float] = ..., network_name: _Optional[str] = ..., connector_types: _Optional[_Iterable[str]] = ..., power_kw: _Optional[float] = ..., num_evse: _Optional[int] = ..., status: _Optional[str] = ..., distance_m: _Optional[float] = ..., drive_time_min: _Optional[int] = ..., total_sessions_30d: _Optional[int] = ..., unique_drivers_30d: _Optional[int] = ..., avg_duration_min: _Optional[float] = ..., drivers_charging_now: _Optional[int] = ..., pricing_per_kwh_cents: _Optional[int] = ..., zone_id: _Optional[str] = ..., pricing_per_kwh: _Optional[float] = ..., pricing_source: _Optional[str] = ..., active_reward_cents: _Optional[int] = ..., active_reward_kind: _Optional[_Union[_incentives_pb2.RewardKind, str]] = ..., nearby_merchants: _Optional[_Iterable[_Union[NearbyMerchant, _Mapping]]] = ..., nerava_score: _Optional[int] = ..., has_merchant_perk: _Optional[bool] = ..., merchant_perk_title: _Optional[str] = ...) -> None: ...

class NearbyMerchant(_message.Message):
    __slots__ = ("place_id", "merchant_id", "name", "photo_url", "distance_m", "walk_time_min", "has_exclusive", "phone", "category", "lat", "lng", "exclusive_title", "is_nerava_merchant", "join_request_count")
    PLACE_ID_FIELD_NUMBER: _ClassVar[int]
    MERCHANT_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    PHOTO_URL_FIELD_NUMBER: _ClassVar[int]
    DISTANCE_M_FIELD_NUMBER: _ClassVar[int]
    WALK_TIME_MIN_FIELD_NUMBER: _ClassVar[int]
    HAS_EXCLUSIVE_FIELD_NUMBER: _ClassVar[int]
    PHONE_FIELD_NUMBER: _ClassVar[int]
    CATEGORY_FIELD_NUMBER: _ClassVar[int]
    LAT_FIELD_NUMBER: _ClassVar[int]
    LNG_FIELD_NUMBER: _ClassVar[int]
    EXCLUSIVE_TITLE_FIELD_NUMBER: _ClassVar[int]
    IS_NERAVA_MERCHANT_FIELD_NUMBER: _ClassVar[int]
    JOIN_REQUEST_COUNT_FIELD_NUMBER: _ClassVar[int]
    place_id: str
    merchant_id: str
    name: str
    photo_url: str
    distance_m: int
    walk_time_min: int
    has_exclusive: bool
    phone: str
    category: str
    lat: float
    lng: float
    exclusive_title: str
    is_nerava_merchant: bool
    join_request_count: int
    def __init__(self, place_id: _Optional[str] = ..., merchant_id: _Optional[str] = ..., name: _Optional[str] = ..., photo_url: _Optional[str] = ..., distance_m: _Optional[int] = ..., walk_time_min: _Optional[int] = ..., has_exclusive: _Optional[bool] = ..., phone: _Optional[str] = ..., category: _Optional[str] = ..., lat: _Optional[float] = ..., lng: _Optional[float] = ..., exclusive_title: _Optional[str] = ..., is_nerava_merchant: _Optional[bool] = ..., join_request_count: _Optional[int] = ...) -> None: ...

class CheckLocationRequest(_message.Message):
    __slots__ = ("lat", "lng")
    LAT_FIELD_NUMBER: _ClassVar[int]
    LNG_FIELD_NUMBER: _ClassVar[int]
    lat: float
    lng: float
    def __init__(self, lat: _Optional[float] = ..., lng: _Optional[float] = ...) -> None: ...

class CheckLocationResponse(_message.Message):
    __slots__ = ("in_charger_radius", "nearest_charger_id", "distance_m", "nearest_charger_name", "radius_m")
    IN_CHARGER_RADIUS_FIELD_NUMBER: _ClassVar[int]
    NEAREST_CHARGER_ID_FIELD_NUMBER: _ClassVar[int]
    DISTANCE_M_FIELD_NUMBER: _ClassVar[int]
    NEAREST_CHARGER_NAME_FIELD_NUMBER: _ClassVar[int]
    RADIUS_M_FIELD_NUMBER: _ClassVar[int]
    in_charger_radius: bool
    nearest_charger_id: str
    distance_m: float
    nearest_charger_name: str
    radius_m: int
    def __init__(self, in_charger_radius: _Optional[bool] = ..., nearest_charger_id: _Optional[str] = ..., distance_m: _Optional[float] = ..., nearest_charger_name: _Optional[str] = ..., radius_m: _Optional[int] = ...) -> None: ...

class ImportChargersRequest(_message.Message):
    __slots__ = ("source", "chargers")
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    CHARGERS_FIELD_NUMBER: _ClassVar[int]
    source: str
    chargers: _containers.RepeatedCompositeFieldContainer[ChargerRecord]
    def __init__(self, source: _Optional[str] = ..., chargers: _Optional[_Iterable[_Union[ChargerRecord, _Mapping]]] = ...) -> None: ...

class ImportChargersResponse(_message.Message):
    __slots__ = ("created", "updated", "unchanged")
    CREATED_FIELD_NUMBER: _ClassVar[int]
    UPDATED_FIELD_NUMBER: _ClassVar[int]
    UNCHANGED_FIELD_NUMBER: _ClassVar[int]
    created: int
    updated: int
    unchanged: int
    def __init__(self, created: _Optional[int] = ..., updated: _Optional[int] = ..., unchanged: _Optional[int] = ...) -> None: ...

class BrowseChargersRequest(_message.Message):
    __slots__ = ("search", "network", "state", "limit", "offset")
    SEARCH_FIELD_NUMBER: _ClassVar[int]
    NETWORK_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    search: str
    network: str
    state: str
    limit: int
    offset: int
    def __init__(self, search: _Optional[str] = ..., network: _Optional[str] = ..., state: _Optional[str] = ..., limit: _Optional[int] = ..., offset: _Optional[int] = ...) -> None: ...

class BrowsedCharger(_message.Message):
    __slots__ = ("id", "name", "network_name", "lat", "lng", "address", "city", "state", "power_kw", "num_evse", "connector_types", "pricing_per_kwh_cents", "total_sessions", "unique_drivers")
    ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    NETWORK_NAME_FIELD_NUMBER: _ClassVar[int]
    LAT_FIELD_NUMBER: _ClassVar[int]
    LNG_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    CITY_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    POWER_KW_FIELD_NUMBER: _ClassVar[int]
    NUM_EVSE_FIELD_NUMBER: _ClassVar[int]
    CONNECTOR_TYPES_FIELD_NUMBER: _ClassVar[int]
    PRICING_PER_KWH_CENTS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_SESSIONS_FIELD_NUMBER: _ClassVar[int]
    UNIQUE_DRIVERS_FIELD_NUMBER: _ClassVar[int]
    id: str
    name: str
    network_name: str
    lat: float
    lng: float
    address: str
    city: str
    state: str
    power_kw: float
    num_evse: int
    connector_types: _containers.RepeatedScalarFieldContainer[str]
    pricing_per_kwh_cents: int
    total_sessions: int
    unique_drivers: int
    def __init__(self, id: _Optional[str] = ..., name: _Optional[str] = ..., network_name: _Optional[str] = ..., lat: _Optional[float] = ..., lng: _Optional[float] = ..., address: _Optional[str] = ..., city: _Optional[str] = ..., state: _Optional[str] = ..., power_kw: _Optional[float] = ..., num_evse: _Optional[int] = ..., connector_types: _Optional[_Iterable[str]] = ..., pricing_per_kwh_cents: _Optional[int] = ..., total_sessions: _Optional[int] = ..., unique_drivers: _Optional[int] = ...) -> None: ...

class BrowseChargersResponse(_message.Message):
    __slots__ = ("chargers", "total")
    CHARGERS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    chargers: _containers.RepeatedCompositeFieldContainer[BrowsedCharger]
    total: int
    def __init__(self, chargers: _Optional[_Iterable[_Union[BrowsedCharger, _Mapping]]] = ..., total: _Optional[int] = ...) -> None: ...

class GetChargerUtilizationRequest(_message.Message):
    __slots__ = ("charger_ids", "since_days")
    CHARGER_IDS_FIELD_NUMBER: _ClassVar[int]
    SINCE_DAYS_FIELD_NUMBER: _ClassVar[int]
    charger_ids: str
    since_days: int
    def __init__(self, charger_ids: _Optional[str] = ..., since_days: _Optional[int] = ...) -> None: ...

class ChargerUtilization(_message.Message):
    __slots__ = ("charger_id", "total_sessions", "unique_drivers", "avg_duration_minutes")
    CHARGER_ID_FIELD_NUMBER: _ClassVar[int]
    TOTAL_SESSIONS_FIELD_NUMBER: _ClassVar[int]
    UNIQUE_DRIVERS_FIELD_NUMBER: _ClassVar[int]
    AVG_DURATION_MINUTES_FIELD_NUMBER: _ClassVar[int]
    charger_id: str
    total_sessions: int
    unique_drivers: int
    avg_duration_minutes: float
    def __init__(self, charger_id: _Optional[str] = ..., total_sessions: _Optional[int] = ..., unique_drivers: _Optional[int] = ..., avg_duration_minutes: _Optional[float] = ...) -> None: ...

class GetChargerUtilizationResponse(_message.Message):
    __slots__ = ("chargers",)
    CHARGERS_FIELD_NUMBER: _ClassVar[int]
    chargers: _containers.RepeatedCompositeFieldContainer[ChargerUtilization]
    def __init__(self, chargers: _Optional[_Iterable[_Union[ChargerUtilization, _Mapping]]] = ...) -> None: ...

class SummarizeChargerSessionsRequest(_message.Message):
    __slots__ = ("charger_ids", "since", "time_zone")
    CHARGER_IDS_FIELD_NUMBER: _ClassVar[int]
    SINCE_FIELD_NUMBER: _ClassVar[int]
    TIME_ZONE_FIELD_NUMBER: _ClassVar[int]
    charger_ids: _containers.RepeatedScalarFieldContainer[str]
    since: _timestamp_pb2.Timestamp
    time_zone: str
    def __init__(self, charger_ids: _Optional[_Iterable[str]] = ..., since: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., time_zone: _Optional[str] = ...) -> None: ...

class HourSessions(_message.Message):
    __slots__ = ("hour", "sessions")
    HOUR_FIELD_NUMBER: _ClassVar[int]
    SESSIONS_FIELD_NUMBER: _ClassVar[int]
    hour: int
    sessions: int
    def __init__(self, hour: _Optional[int] = ..., sessions: _Optional[int] = ...) -> None: ...

class SummarizeChargerSessionsResponse(_message.Message):
    __slots__ = ("total_sessions", "unique_drivers", "avg_duration_minutes", "avg_kwh", "hours")
    TOTAL_SESSIONS_FIELD_NUMBER: _ClassVar[int]
    UNIQUE_DRIVERS_FIELD_NUMBER: _ClassVar[int]
    AVG_DURATION_MINUTES_FIELD_NUMBER: _ClassVar[int]
    AVG_KWH_FIELD_NUMBER: _ClassVar[int]
    HOURS_FIELD_NUMBER: _ClassVar[int]
    total_sessions: int
    unique_drivers: int
    avg_duration_minutes: float
    avg_kwh: float
    hours: _containers.RepeatedCompositeFieldContainer[HourSessions]
    def __init__(self, total_sessions: _Optional[int] = ..., unique_drivers: _Optional[int] = ..., avg_duration_minutes: _Optional[float] = ..., avg_kwh: _Optional[float] = ..., hours: _Optional[_Iterable[_Union[HourSessions, _Mapping]]] = ...) -> None: ...

class StartTeslaSignInRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class StartTeslaSignInResponse(_message.Message):
    __slots__ = ("authorization_url", "state")
    AUTHORIZATION_URL_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    authorization_url: str
    state: str
    def __init__(self, authorization_url: _Optional[str] = ..., state: _Optional[str] = ...) -> None: ...

class CompleteTeslaSignInRequest(_message.Message):
    __slots__ = ("code", "state")
    CODE_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    code: str
    state: str
    def __init__(self, code: _Optional[str] = ..., state: _Optional[str] = ...) -> None: ...

class CompleteTeslaSignInResponse(_message.Message):
    __slots__ = ("driver_id", "vehicles")
    DRIVER_ID_FIELD_NUMBER: _ClassVar[int]
    VEHICLES_FIELD_NUMBER: _ClassVar[int]
    driver_id: str
    vehicles: _containers.RepeatedCompositeFieldContainer[TeslaVehicle]
    def __init__(self, driver_id: _Optional[str] = ..., vehicles: _Optional[_Iterable[_Union[TeslaVehicle, _Mapping]]] = ...) -> None: ...

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

class CaptureIntentRequest(_message.Message):
    __slots__ = ("lat", "lng", "accuracy_m", "client_ts")
    LAT_FIELD_NUMBER: _ClassVar[int]
    LNG_FIELD_NUMBER: _ClassVar[int]
    ACCURACY_M_FIELD_NUMBER: _ClassVar[int]
    CLIENT_TS_FIELD_NUMBER: _ClassVar[int]
    lat: float
    lng: float
    accuracy_m: float
    client_ts: str
    def __init__(self, lat: _Optional[float] = ..., lng: _Optional[float] = ..., accuracy_m: _Optional[float] = ..., client_ts: _Optional[str] = ...) -> None: ...

class IntentMerchant(_message.Message):
    __slots__ = ("place_id", "merchant_id", "name", "lat", "lng", "distance_m", "types", "photo_url", "icon_url", "badges", "charger_id", "exclusive_title", "open_now", "open_until")
    PLACE_ID_FIELD_NUMBER: _ClassVar[int]
    MERCHANT_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    LAT_FIELD_NUMBER: _ClassVar[int]
    LNG_FIELD_NUMBER: _ClassVar[int]
    DISTANCE_M_FIELD_NUMBER: _ClassVar[int]
    TYPES_FIELD_NUMBER: _ClassVar[int]
    PHOTO_URL_FIELD_NUMBER: _ClassVar[int]
    ICON_URL_FIELD_NUMBER: _ClassVar[int]
    BADGES_FIELD_NUMBER: _ClassVar[int]
    CHARGER_ID_FIELD_NUMBER: _ClassVar[int]
    EXCLUSIVE_TITLE_FIELD_NUMBER: _ClassVar[int]
    OPEN_NOW_FIELD_NUMBER: _ClassVar[int]
    OPEN_UNTIL_FIELD_NUMBER: _ClassVar[int]
    place_id: str
    merchant_id: str
    name: str
    lat: float
    lng: float
    distance_m: float
    types: _containers.RepeatedScalarFieldContainer[str]
    photo_url: str
    icon_url: str
    badges: _containers.RepeatedScalarFieldContainer[str]
    charger_id: str
    exclusive_title: str
    open_now: bool
    open_until: str
    def __init__(self, place_id: _Optional[str] = ..., merchant_id: _Optional[str] = ..., name: _Optional[str] = ..., lat: _Optional[float] = ..., lng: _Optional[float] = ..., distance_m: _Optional[float] = ..., types: _Optional[_Iterable[str]] = ..., photo_url: _Optional[str] = ..., icon_url: _Optional[str] = ..., badges: _Optional[_Iterable[str]] = ..., charger_id: _Optional[str] = ..., exclusive_title: _Optional[str] = ..., open_now: _Optional[bool] = ..., open_until: _Optional[str] = ...) -> None: ...

class IntentNextActions(_message.Message):
    __slots__ = ("request_wallet_pass", "require_vehicle_onboarding")
    REQUEST_WALLET_PASS_FIELD_NUMBER: _ClassVar[int]
    REQUIRE_VEHICLE_ONBOARDING_FIELD_NUMBER: _ClassVar[int]
    request_wallet_pass: bool
    require_vehicle_onboarding: bool
    def __init__(self, request_wallet_pass: _Optional[bool] = ..., require_vehicle_onboarding: _Optional[bool] = ...) -> None: ...

class CaptureIntentResponse(_message.Message):
    __slots__ = ("session_id", "confidence_tier", "charger_summary", "chargers", "merchants", "fallback_message", "next_actions")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    CONFIDENCE_TIER_FIELD_NUMBER: _ClassVar[int]
    CHARGER_SUMMARY_FIELD_NUMBER: _ClassVar[int]
    CHARGERS_FIELD_NUMBER: _ClassVar[int]
    MERCHANTS_FIELD_NUMBER: _ClassVar[int]
    FALLBACK_MESSAGE_FIELD_NUMBER: _ClassVar[int]
    NEXT_ACTIONS_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    confidence_tier: str
    charger_summary: Charger
    chargers: _containers.RepeatedCompositeFieldContainer[Charger]
    merchants: _containers.RepeatedCompositeFieldContainer[IntentMerchant]
    fallback_message: str
    next_actions: IntentNextActions
    def __init__(self, session_id: _Optional[str] = ..., confidence_tier: _Optional[str] = ..., charger_summary: _Optional[_Union[Charger, _Mapping]] = ..., chargers: _Optional[_Iterable[_Union[Charger, _Mapping]]] = ..., merchants: _Optional[_Iterable[_Union[IntentMerchant, _Mapping]]] = ..., fallback_message: _Optional[str] = ..., next_actions: _Optional[_Union[IntentNextActions, _Mapping]] = ...) -> None: ...

class GetIntentSessionRequest(_message.Message):
    __slots__ = ("session_id",)
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    def __init__(self, session_id: _Optional[str] = ...) -> None: ...

class GetIntentSessionResponse(_message.Message):
    __slots__ = ("session_id", "driver_id", "lat", "lng", "confidence_tier", "charger_id", "captured_at")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    DRIVER_ID_FIELD_NUMBER: _ClassVar[int]
    LAT_FIELD_NUMBER: _ClassVar[int]
    LNG_FIELD_NUMBER: _ClassVar[int]
    CONFIDENCE_TIER_FIELD_NUMBER: _ClassVar[int]
    CHARGER_ID_FIELD_NUMBER: _ClassVar[int]
    CAPTURED_AT_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    driver_id: str
    lat: float
    lng: float
    confidence_tier: str
    charger_id: str
    captured_at: _timestamp_pb2.Timestamp
    def __init__(self, session_id: _Optional[str] = ..., driver_id: _Optional[str] = ..., lat: _Optional[float] = ..., lng: _Optional[float] = ..., confidence_tier: _Optional[str] = ..., charger_id: _Optional[str] = ..., captured_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class GetAccountStatsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class FavoriteCharger(_message.Message):
    __slots__ = ("charger_id", "name", "sessions")
    CHARGER_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    SESSIONS_FIELD_NUMBER: _ClassVar[int]
    charger_id: str
    name: str
    sessions: int
    def __init__(self, charger_id: _Optional[str] = ..., name: _Optional[str] = ..., sessions: _Optional[int] = ...) -> None: ...

class GetAccountStatsResponse(_message.Message):
    __slots__ = ("total_sessions", "total_kwh", "total_earned_cents", "total_nova", "favorite_charger", "member_since", "current_streak", "co2_avoided_kg")
    TOTAL_SESSIONS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_KWH_FIELD_NUMBER: _ClassVar[int]
    TOTAL_EARNED_CENTS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_NOVA_FIELD_NUMBER: _ClassVar[int]
    FAVORITE_CHARGER_FIELD_NUMBER: _ClassVar[int]
    MEMBER_SINCE_FIELD_NUMBER: _ClassVar[int]
    CURRENT_STREAK_FIELD_NUMBER: _ClassVar[int]
    CO2_AVOIDED_KG_FIELD_NUMBER: _ClassVar[int]
    total_sessions: int
    total_kwh: float
    total_earned_cents: int
    total_nova: int
    favorite_charger: FavoriteCharger
    member_since: _timestamp_pb2.Timestamp
    current_streak: int
    co2_avoided_kg: float
    def __init__(self, total_sessions: _Optional[int] = ..., total_kwh: _Optional[float] = ..., total_earned_cents: _Optional[int] = ..., total_nova: _Optional[int] = ..., favorite_charger: _Optional[_Union[FavoriteCharger, _Mapping]] = ..., member_since: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., current_streak: _Optional[int] = ..., co2_avoided_kg: _Optional[float] = ...) -> None: ...

class BackgroundPingRequest(_message.Message):
    __slots__ = ("lat", "lng")
    LAT_FIELD_NUMBER: _ClassVar[int]
    LNG_FIELD_NUMBER: _ClassVar[int]
    lat: float
    lng: float
    def __init__(self, lat: _Optional[float] = ..., lng: _Optional[float] = ...) -> None: ...

class BackgroundPingResponse(_message.Message):
    __slots__ = ("matched", "session_active", "session_id", "already_active", "charger_id", "charger_name", "reason")
    MATCHED_FIELD_NUMBER: _ClassVar[int]
    SESSION_ACTIVE_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    ALREADY_ACTIVE_FIELD_NUMBER: _ClassVar[int]
    CHARGER_ID_FIELD_NUMBER: _ClassVar[int]
    CHARGER_NAME_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    matched: bool
    session_active: bool
    session_id: str
    already_active: bool
    charger_id: str
    charger_name: str
    reason: PollError
    def __init__(self, matched: _Optional[bool] = ..., session_active: _Optional[bool] = ..., session_id: _Optional[str] = ..., already_active: _Optional[bool] = ..., charger_id: _Optional[str] = ..., charger_name: _Optional[str] = ..., reason: _Optional[_Union[PollError, str]] = ...) -> None: ...
