import datetime

from buf.validate import validate_pb2 as _validate_pb2
from google.api import annotations_pb2 as _annotations_pb2
from google.api import httpbody_pb2 as _httpbody_pb2
from google.protobuf import field_mask_pb2 as _field_mask_pb2
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

class CampaignStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CAMPAIGN_STATUS_UNSPECIFIED: _ClassVar[CampaignStatus]
    CAMPAIGN_STATUS_DRAFT: _ClassVar[CampaignStatus]
    CAMPAIGN_STATUS_ACTIVE: _ClassVar[CampaignStatus]
    CAMPAIGN_STATUS_PAUSED: _ClassVar[CampaignStatus]
    CAMPAIGN_STATUS_EXHAUSTED: _ClassVar[CampaignStatus]
    CAMPAIGN_STATUS_ENDED: _ClassVar[CampaignStatus]
    CAMPAIGN_STATUS_CANCELED: _ClassVar[CampaignStatus]

class RewardKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    REWARD_KIND_UNSPECIFIED: _ClassVar[RewardKind]
    REWARD_KIND_CASH: _ClassVar[RewardKind]
    REWARD_KIND_NOVA: _ClassVar[RewardKind]

class FundingStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    FUNDING_STATUS_UNSPECIFIED: _ClassVar[FundingStatus]
    FUNDING_STATUS_UNFUNDED: _ClassVar[FundingStatus]
    FUNDING_STATUS_PENDING: _ClassVar[FundingStatus]
    FUNDING_STATUS_FUNDED: _ClassVar[FundingStatus]

class GrantStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    GRANT_STATUS_UNSPECIFIED: _ClassVar[GrantStatus]
    GRANT_STATUS_PENDING: _ClassVar[GrantStatus]
    GRANT_STATUS_GRANTED: _ClassVar[GrantStatus]
    GRANT_STATUS_CLAWED_BACK: _ClassVar[GrantStatus]
    GRANT_STATUS_FAILED: _ClassVar[GrantStatus]

class CheckoutStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CHECKOUT_STATUS_UNSPECIFIED: _ClassVar[CheckoutStatus]
    CHECKOUT_STATUS_CREATED: _ClassVar[CheckoutStatus]
    CHECKOUT_STATUS_ALREADY_PENDING: _ClassVar[CheckoutStatus]

class RuleFailure(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    RULE_FAILURE_UNSPECIFIED: _ClassVar[RuleFailure]
    RULE_FAILURE_MIN_DURATION: _ClassVar[RuleFailure]
    RULE_FAILURE_MAX_DURATION: _ClassVar[RuleFailure]
    RULE_FAILURE_CHARGER: _ClassVar[RuleFailure]
    RULE_FAILURE_NETWORK: _ClassVar[RuleFailure]
    RULE_FAILURE_ZONE: _ClassVar[RuleFailure]
    RULE_FAILURE_GEO_RADIUS: _ClassVar[RuleFailure]
    RULE_FAILURE_TIME_OF_DAY: _ClassVar[RuleFailure]
    RULE_FAILURE_DAY_OF_WEEK: _ClassVar[RuleFailure]
    RULE_FAILURE_MIN_POWER: _ClassVar[RuleFailure]
    RULE_FAILURE_CONNECTOR_TYPE: _ClassVar[RuleFailure]
    RULE_FAILURE_DRIVER_SESSION_COUNT_BELOW_MIN: _ClassVar[RuleFailure]
    RULE_FAILURE_DRIVER_SESSION_COUNT_ABOVE_MAX: _ClassVar[RuleFailure]
    RULE_FAILURE_DRIVER_ALLOWLIST: _ClassVar[RuleFailure]
    RULE_FAILURE_MIN_QUALITY_SCORE: _ClassVar[RuleFailure]
    RULE_FAILURE_CAP_PER_DRIVER_PER_DAY: _ClassVar[RuleFailure]
    RULE_FAILURE_CAP_PER_DRIVER_PER_CAMPAIGN: _ClassVar[RuleFailure]
    RULE_FAILURE_CAP_PER_DRIVER_PER_CHARGER: _ClassVar[RuleFailure]
    RULE_FAILURE_BUDGET_EXHAUSTED: _ClassVar[RuleFailure]
    RULE_FAILURE_MAX_SESSIONS_REACHED: _ClassVar[RuleFailure]

class EvaluationOutcome(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    EVALUATION_OUTCOME_UNSPECIFIED: _ClassVar[EvaluationOutcome]
    EVALUATION_OUTCOME_GRANTED: _ClassVar[EvaluationOutcome]
    EVALUATION_OUTCOME_NO_MATCH: _ClassVar[EvaluationOutcome]
    EVALUATION_OUTCOME_SESSION_TOO_SHORT: _ClassVar[EvaluationOutcome]
    EVALUATION_OUTCOME_SUPERSEDED: _ClassVar[EvaluationOutcome]
    EVALUATION_OUTCOME_PREVIOUS_GRANT_KEPT: _ClassVar[EvaluationOutcome]
CAMPAIGN_STATUS_UNSPECIFIED: CampaignStatus
CAMPAIGN_STATUS_DRAFT: CampaignStatus
CAMPAIGN_STATUS_ACTIVE: CampaignStatus
CAMPAIGN_STATUS_PAUSED: CampaignStatus
CAMPAIGN_STATUS_EXHAUSTED: CampaignStatus
CAMPAIGN_STATUS_ENDED: CampaignStatus
CAMPAIGN_STATUS_CANCELED: CampaignStatus
REWARD_KIND_UNSPECIFIED: RewardKind
REWARD_KIND_CASH: RewardKind
REWARD_KIND_NOVA: RewardKind
FUNDING_STATUS_UNSPECIFIED: FundingStatus
FUNDING_STATUS_UNFUNDED: FundingStatus
FUNDING_STATUS_PENDING: FundingStatus
FUNDING_STATUS_FUNDED: FundingStatus
GRANT_STATUS_UNSPECIFIED: GrantStatus
GRANT_STATUS_PENDING: GrantStatus
GRANT_STATUS_GRANTED: GrantStatus
GRANT_STATUS_CLAWED_BACK: GrantStatus
GRANT_STATUS_FAILED: GrantStatus
CHECKOUT_STATUS_UNSPECIFIED: CheckoutStatus
CHECKOUT_STATUS_CREATED: CheckoutStatus
CHECKOUT_STATUS_ALREADY_PENDING: CheckoutStatus
RULE_FAILURE_UNSPECIFIED: RuleFailure
RULE_FAILURE_MIN_DURATION: RuleFailure
RULE_FAILURE_MAX_DURATION: RuleFailure
RULE_FAILURE_CHARGER: RuleFailure
RULE_FAILURE_NETWORK: RuleFailure
RULE_FAILURE_ZONE: RuleFailure
RULE_FAILURE_GEO_RADIUS: RuleFailure
RULE_FAILURE_TIME_OF_DAY: RuleFailure
RULE_FAILURE_DAY_OF_WEEK: RuleFailure
RULE_FAILURE_MIN_POWER: RuleFailure
RULE_FAILURE_CONNECTOR_TYPE: RuleFailure
RULE_FAILURE_DRIVER_SESSION_COUNT_BELOW_MIN: RuleFailure
RULE_FAILURE_DRIVER_SESSION_COUNT_ABOVE_MAX: RuleFailure
RULE_FAILURE_DRIVER_ALLOWLIST: RuleFailure
RULE_FAILURE_MIN_QUALITY_SCORE: RuleFailure
RULE_FAILURE_CAP_PER_DRIVER_PER_DAY: RuleFailure
RULE_FAILURE_CAP_PER_DRIVER_PER_CAMPAIGN: RuleFailure
RULE_FAILURE_CAP_PER_DRIVER_PER_CHARGER: RuleFailure
RULE_FAILURE_BUDGET_EXHAUSTED: RuleFailure
RULE_FAILURE_MAX_SESSIONS_REACHED: RuleFailure
EVALUATION_OUTCOME_UNSPECIFIED: EvaluationOutcome
EVALUATION_OUTCOME_GRANTED: EvaluationOutcome
EVALUATION_OUTCOME_NO_MATCH: EvaluationOutcome
EVALUATION_OUTCOME_SESSION_TOO_SHORT: EvaluationOutcome
EVALUATION_OUTCOME_SUPERSEDED: EvaluationOutcome
EVALUATION_OUTCOME_PREVIOUS_GRANT_KEPT: EvaluationOutcome

class CampaignRules(_message.Message):
    __slots__ = ("min_duration_minutes", "max_duration_minutes", "charger_ids", "charger_networks", "zone_ids", "geo_center_lat", "geo_center_lng", "geo_radius_m", "time_start", "time_end", "days_of_week", "min_power_kw", "connector_types", "driver_session_count_min", "driver_session_count_max", "driver_allowlist", "min_quality_score")
    MIN_DURATION_MINUTES_FIELD_NUMBER: _ClassVar[int]
    MAX_DURATION_MINUTES_FIELD_NUMBER: _ClassVar[int]
    CHARGER_IDS_FIELD_NUMBER: _ClassVar[int]
    CHARGER_NETWORKS_FIELD_NUMBER: _ClassVar[int]
    ZONE_IDS_FIELD_NUMBER: _ClassVar[int]
    GEO_CENTER_LAT_FIELD_NUMBER: _ClassVar[int]
    GEO_CENTER_LNG_FIELD_NUMBER: _ClassVar[int]
    GEO_RADIUS_M_FIELD_NUMBER: _ClassVar[int]
    TIME_START_FIELD_NUMBER: _ClassVar[int]
    TIME_END_FIELD_NUMBER: _ClassVar[int]
    DAYS_OF_WEEK_FIELD_NUMBER: _ClassVar[int]
    MIN_POWER_KW_FIELD_NUMBER: _ClassVar[int]
    CONNECTOR_TYPES_FIELD_NUMBER: _ClassVar[int]
    DRIVER_SESSION_COUNT_MIN_FIELD_NUMBER: _ClassVar[int]
    DRIVER_SESSION_COUNT_MAX_FIELD_NUMBER: _ClassVar[int]
    DRIVER_ALLOWLIST_FIELD_NUMBER: _ClassVar[int]
    MIN_QUALITY_SCORE_FIELD_NUMBER: _ClassVar[int]
    min_duration_minutes: int
    max_duration_minutes: int
    charger_ids: _containers.RepeatedScalarFieldContainer[str]
    charger_networks: _containers.RepeatedScalarFieldContainer[str]
    zone_ids: _containers.RepeatedScalarFieldContainer[str]
    geo_center_lat: float
    geo_center_lng: float
    geo_radius_m: int
    time_start: str
    time_end: str
    days_of_week: _containers.RepeatedScalarFieldContainer[int]
    min_power_kw: float
    connector_types: _containers.RepeatedScalarFieldContainer[str]
    driver_session_count_min: int
    driver_session_count_max: int
    driver_allowlist: _containers.RepeatedScalarFieldContainer[str]
    min_quality_score: int
    def __init__(self, min_duration_minutes: _Optional[int] = ..., max_duration_minutes: _Optional[int] = ..., charger_ids: _Optional[_Iterable[str]] = ..., charger_networks: _Optional[_Iterable[str]] = ..., zone_ids: _Optional[_Iterable[str]] = ..., geo_center_lat: _Optional[float] = ..., geo_center_lng: _Optional[float] = ..., geo_radius_m: _Optional[int] = ..., time_start: _Optional[str] = ..., time_end: _Optional[str] = ..., days_of_week: _Optional[_Iterable[int]] = ..., min_power_kw: _Optional[float] = ..., connector_types: _Optional[_Iterable[str]] = ..., driver_session_count_min: _Optional[int] = ..., driver_session_count_max: _Optional[int] = ..., driver_allowlist: _Optional[_Iterable[str]] = ..., min_quality_score: _Optional[int] = ...) -> None: ...

class CampaignCaps(_message.Message):
    __slots__ = ("per_day", "per_campaign", "per_charger")
    PER_DAY_FIELD_NUMBER: _ClassVar[int]
    PER_CAMPAIGN_FIELD_NUMBER: _ClassVar[int]
    PER_CHARGER_FIELD_NUMBER: _ClassVar[int]
    per_day: int
    per_campaign: int
    per_charger: int
    def __init__(self, per_day: _Optional[int] = ..., per_campaign: _Optional[int] = ..., per_charger: _Optional[int] = ...) -> None: ...

class Campaign(_message.Message):
    __slots__ = ("id", "created_by_user_id", "sponsor_name", "sponsor_email", "sponsor_logo_url", "sponsor_type", "name", "description", "campaign_type", "status", "priority", "reward_kind", "cost_per_session_cents", "budget_cents", "spent_cents", "remaining_cents", "gross_funding_cents", "platform_fee_cents", "max_sessions", "sessions_granted", "start_date", "end_date", "time_zone", "max_grants_per_driver_per_day", "max_grants_per_driver_per_campaign", "max_grants_per_driver_per_charger", "rules", "funding_status", "funded_at", "pause_reason", "created_at", "updated_at", "refunded_cents")
    ID_FIELD_NUMBER: _ClassVar[int]
    CREATED_BY_USER_ID_FIELD_NUMBER: _ClassVar[int]
    SPONSOR_NAME_FIELD_NUMBER: _ClassVar[int]
    SPONSOR_EMAIL_FIELD_NUMBER: _ClassVar[int]
    SPONSOR_LOGO_URL_FIELD_NUMBER: _ClassVar[int]
    SPONSOR_TYPE_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    CAMPAIGN_TYPE_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    REWARD_KIND_FIELD_NUMBER: _ClassVar[int]
    COST_PER_SESSION_CENTS_FIELD_NUMBER: _ClassVar[int]
    BUDGET_CENTS_FIELD_NUMBER: _ClassVar[int]
    SPENT_CENTS_FIELD_NUMBER: _ClassVar[int]
    REMAINING_CENTS_FIELD_NUMBER: _ClassVar[int]
    GROSS_FUNDING_CENTS_FIELD_NUMBER: _ClassVar[int]
    PLATFORM_FEE_CENTS_FIELD_NUMBER: _ClassVar[int]
    MAX_SESSIONS_FIELD_NUMBER: _ClassVar[int]
    SESSIONS_GRANTED_FIELD_NUMBER: _ClassVar[int]
    START_DATE_FIELD_NUMBER: _ClassVar[int]
    END_DATE_FIELD_NUMBER: _ClassVar[int]
    TIME_ZONE_FIELD_NUMBER: _ClassVar[int]
    MAX_GRANTS_PER_DRIVER_PER_DAY_FIELD_NUMBER: _ClassVar[int]
    MAX_GRANTS_PER_DRIVER_PER_CAMPAIGN_FIELD_NUMBER: _ClassVar[int]
    MAX_GRANTS_PER_DRIVER_PER_CHARGER_FIELD_NUMBER: _ClassVar[int]
    RULES_FIELD_NUMBER: _ClassVar[int]
    FUNDING_STATUS_FIELD_NUMBER: _ClassVar[int]
    FUNDED_AT_FIELD_NUMBER: _ClassVar[int]
    PAUSE_REASON_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    REFUNDED_CENTS_FIELD_NUMBER: _ClassVar[int]
    id: str
    created_by_user_id: str
    sponsor_name: str
    sponsor_email: str
    sponsor_logo_url: str
    sponsor_type: str
    name: str
    description: str
    campaign_type: str
    status: CampaignStatus
    priority: int
    reward_kind: RewardKind
    cost_per_session_cents: int
    budget_cents: int
    spent_cents: int
    remaining_cents: int
    gross_funding_cents: int
    platform_fee_cents: int
    max_sessions: int
    sessions_granted: int
    start_date: _timestamp_pb2.Timestamp
    end_date: _timestamp_pb2.Timestamp
    time_zone: str
    max_grants_per_driver_per_day: int
    max_grants_per_driver_per_campaign: int
    max_grants_per_driver_per_charger: int
    rules: CampaignRules
    funding_status: FundingStatus
    funded_at: _timestamp_pb2.Timestamp
    pause_reason: str
    created_at: _timestamp_pb2.Timestamp
    updated_at: _timestamp_pb2.Timestamp
    refunded_cents: int
    def __init__(self, id: _Optional[str] = ..., created_by_user_id: _Optional[str] = ..., sponsor_name: _Optional[str] = ..., sponsor_email: _Optional[str] = ..., sponsor_logo_url: _Optional[str] = ..., sponsor_type: _Optional[str] = ..., name: _Optional[str] = ..., description: _Optional[str] = ..., campaign_type: _Optional[str] = ..., status: _Optional[_Union[CampaignStatus, str]] = ..., priority: _Optional[int] = ..., reward_kind: _Optional[_Union[RewardKind, str]] = ..., cost_per_session_cents: _Optional[int] = ..., budget_cents: _Optional[int] = ..., spent_cents: _Optional[int] = ..., remaining_cents: _Optional[int] = ..., gross_funding_cents: _Optional[int] = ..., platform_fee_cents: _Optional[int] = ..., max_sessions: _Optional[int] = ..., sessions_granted: _Optional[int] = ..., start_date: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end_date: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., time_zone: _Optional[str] = ..., max_grants_per_driver_per_day: _Optional[int] = ..., max_grants_per_driver_per_campaign: _Optional[int] = ..., max_grants_per_driver_per_charger: _Optional[int] = ..., rules: _Optional[_Union[CampaignRules, _Mapping]] = ..., funding_status: _Optional[_Union[FundingStatus, str]] = ..., funded_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., pause_reason: _Optional[str] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., refunded_cents: _Optional[int] = ...) -> None: ...

class Grant(_message.Message):
    __slots__ = ("id", "session_event_id", "campaign_id", "campaign_name", "driver_user_id", "amount_cents", "reward_kind", "status", "granted_at", "created_at", "charger_id", "duration_minutes", "clawed_back_at", "clawback_reason")
    ID_FIELD_NUMBER: _ClassVar[int]
    SESSION_EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    CAMPAIGN_ID_FIELD_NUMBER: _ClassVar[int]
    CAMPAIGN_NAME_FIELD_NUMBER: _ClassVar[int]
    DRIVER_USER_ID_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_CENTS_FIELD_NUMBER: _ClassVar[int]
    REWARD_KIND_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    GRANTED_AT_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    CHARGER_ID_FIELD_NUMBER: _ClassVar[int]
    DURATION_MINUTES_FIELD_NUMBER: _ClassVar[int]
    CLAWED_BACK_AT_FIELD_NUMBER: _ClassVar[int]
    CLAWBACK_REASON_FIELD_NUMBER: _ClassVar[int]
    id: str
    session_event_id: str
    campaign_id: str
    campaign_name: str
    driver_user_id: str
    amount_cents: int
    reward_kind: RewardKind
    status: GrantStatus
    granted_at: _timestamp_pb2.Timestamp
    created_at: _timestamp_pb2.Timestamp
    charger_id: str
    duration_minutes: int
    clawed_back_at: _timestamp_pb2.Timestamp
    clawback_reason: str
    def __init__(self, id: _Optional[str] = ..., session_event_id: _Optional[str] = ..., campaign_id: _Optional[str] = ..., campaign_name: _Optional[str] = ..., driver_user_id: _Optional[str] = ..., amount_cents: _Optional[int] = ..., reward_kind: _Optional[_Union[RewardKind, str]] = ..., status: _Optional[_Union[GrantStatus, str]] = ..., granted_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., charger_id: _Optional[str] = ..., duration_minutes: _Optional[int] = ..., clawed_back_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., clawback_reason: _Optional[str] = ...) -> None: ...

class DriverCampaign(_message.Message):
    __slots__ = ("id", "name", "sponsor_name", "sponsor_logo_url", "description", "reward_cents", "reward_kind", "campaign_type", "eligible", "ineligible_reason", "end_date", "min_duration_minutes", "time_start", "time_end", "time_zone")
    ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    SPONSOR_NAME_FIELD_NUMBER: _ClassVar[int]
    SPONSOR_LOGO_URL_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    REWARD_CENTS_FIELD_NUMBER: _ClassVar[int]
    REWARD_KIND_FIELD_NUMBER: _ClassVar[int]
    CAMPAIGN_TYPE_FIELD_NUMBER: _ClassVar[int]
    ELIGIBLE_FIELD_NUMBER: _ClassVar[int]
    INELIGIBLE_REASON_FIELD_NUMBER: _ClassVar[int]
    END_DATE_FIELD_NUMBER: _ClassVar[int]
    MIN_DURATION_MINUTES_FIELD_NUMBER: _ClassVar[int]
    TIME_START_FIELD_NUMBER: _ClassVar[int]
    TIME_END_FIELD_NUMBER: _ClassVar[int]
    TIME_ZONE_FIELD_NUMBER: _ClassVar[int]
    id: str
    name: str
    sponsor_name: str
    sponsor_logo_url: str
    description: str
    reward_cents: int
    reward_kind: RewardKind
    campaign_type: str
    eligible: bool
    ineligible_reason: RuleFailure
    end_date: _timestamp_pb2.Timestamp
    min_duration_minutes: int
    time_start: str
    time_end: str
    time_zone: str
    def __init__(self, id: _Optional[str] = ..., name: _Optional[str] = ..., sponsor_name: _Optional[str] = ..., sponsor_logo_url: _Optional[str] = ..., description: _Optional[str] = ..., reward_cents: _Optional[int] = ..., reward_kind: _Optional[_Union[RewardKind, str]] = ..., campaign_type: _Optional[str] = ..., eligible: _Optional[bool] = ..., ineligible_reason: _Optional[_Union[RuleFailure, str]] = ..., end_date: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., min_duration_minutes: _Optional[int] = ..., time_start: _Optional[str] = ..., time_end: _Optional[str] = ..., time_zone: _Optional[str] = ...) -> None: ...

class CandidateResult(_message.Message):
    __slots__ = ("campaign_id", "campaign_name", "priority", "granted", "failure", "detail")
    CAMPAIGN_ID_FIELD_NUMBER: _ClassVar[int]
    CAMPAIGN_NAME_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    GRANTED_FIELD_NUMBER: _ClassVar[int]
    FAILURE_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    campaign_id: str
    campaign_name: str
    priority: int
    granted: bool
    failure: RuleFailure
    detail: str
    def __init__(self, campaign_id: _Optional[str] = ..., campaign_name: _Optional[str] = ..., priority: _Optional[int] = ..., granted: _Optional[bool] = ..., failure: _Optional[_Union[RuleFailure, str]] = ..., detail: _Optional[str] = ...) -> None: ...

class RuleFailureCount(_message.Message):
    __slots__ = ("failure", "sessions")
    FAILURE_FIELD_NUMBER: _ClassVar[int]
    SESSIONS_FIELD_NUMBER: _ClassVar[int]
    failure: RuleFailure
    sessions: int
    def __init__(self, failure: _Optional[_Union[RuleFailure, str]] = ..., sessions: _Optional[int] = ...) -> None: ...

class EndedSession(_message.Message):
    __slots__ = ("session_id", "end_sequence", "driver_id", "charger_id", "charger_network", "zone_id", "lat", "lng", "session_start", "session_end", "duration_minutes", "kwh_delivered", "max_power_kw", "connector_type", "quality_score", "driver_completed_sessions")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    END_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    DRIVER_ID_FIELD_NUMBER: _ClassVar[int]
    CHARGER_ID_FIELD_NUMBER: _ClassVar[int]
    CHARGER_NETWORK_FIELD_NUMBER: _ClassVar[int]
    ZONE_ID_FIELD_NUMBER: _ClassVar[int]
    LAT_FIELD_NUMBER: _ClassVar[int]
    LNG_FIELD_NUMBER: _ClassVar[int]
    SESSION_START_FIELD_NUMBER: _ClassVar[int]
    SESSION_END_FIELD_NUMBER: _ClassVar[int]
    DURATION_MINUTES_FIELD_NUMBER: _ClassVar[int]
    KWH_DELIVERED_FIELD_NUMBER: _ClassVar[int]
    MAX_POWER_KW_FIELD_NUMBER: _ClassVar[int]
    CONNECTOR_TYPE_FIELD_NUMBER: _ClassVar[int]
    QUALITY_SCORE_FIELD_NUMBER: _ClassVar[int]
    DRIVER_COMPLETED_SESSIONS_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    end_sequence: int
    driver_id: str
    charger_id: str
    charger_network: str
    zone_id: str
    lat: float
    lng: float
    session_start: _timestamp_pb2.Timestamp
    session_end: _timestamp_pb2.Timestamp
    duration_minutes: int
    kwh_delivered: float
    max_power_kw: float
    connector_type: str
    quality_score: int
    driver_completed_sessions: int
    def __init__(self, session_id: _Optional[str] = ..., end_sequence: _Optional[int] = ..., driver_id: _Optional[str] = ..., charger_id: _Optional[str] = ..., charger_network: _Optional[str] = ..., zone_id: _Optional[str] = ..., lat: _Optional[float] = ..., lng: _Optional[float] = ..., session_start: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., session_end: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., duration_minutes: _Optional[int] = ..., kwh_delivered: _Optional[float] = ..., max_power_kw: _Optional[float] = ..., connector_type: _Optional[str] = ..., quality_score: _Optional[int] = ..., driver_completed_sessions: _Optional[int] = ...) -> None: ...

class ListCampaignsRequest(_message.Message):
    __slots__ = ("status", "sponsor_name", "limit", "offset", "page_size", "page_token")
    STATUS_FIELD_NUMBER: _ClassVar[int]
    SPONSOR_NAME_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    status: str
    sponsor_name: str
    limit: int
    offset: int
    page_size: int
    page_token: str
    def __init__(self, status: _Optional[str] = ..., sponsor_name: _Optional[str] = ..., limit: _Optional[int] = ..., offset: _Optional[int] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListCampaignsResponse(_message.Message):
    __slots__ = ("campaigns", "count", "next_page_token")
    CAMPAIGNS_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    campaigns: _containers.RepeatedCompositeFieldContainer[Campaign]
    count: int
    next_page_token: str
    def __init__(self, campaigns: _Optional[_Iterable[_Union[Campaign, _Mapping]]] = ..., count: _Optional[int] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class CreateCampaignRequest(_message.Message):
    __slots__ = ("sponsor_name", "sponsor_email", "sponsor_logo_url", "sponsor_type", "name", "description", "campaign_type", "priority", "reward_kind", "cost_per_session_cents", "budget_cents", "max_sessions", "start_date", "end_date", "time_zone", "rules", "caps", "request_id")
    SPONSOR_NAME_FIELD_NUMBER: _ClassVar[int]
    SPONSOR_EMAIL_FIELD_NUMBER: _ClassVar[int]
    SPONSOR_LOGO_URL_FIELD_NUMBER: _ClassVar[int]
    SPONSOR_TYPE_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    CAMPAIGN_TYPE_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    REWARD_KIND_FIELD_NUMBER: _ClassVar[int]
    COST_PER_SESSION_CENTS_FIELD_NUMBER: _ClassVar[int]
    BUDGET_CENTS_FIELD_NUMBER: _ClassVar[int]
    MAX_SESSIONS_FIELD_NUMBER: _ClassVar[int]
    START_DATE_FIELD_NUMBER: _ClassVar[int]
    END_DATE_FIELD_NUMBER: _ClassVar[int]
    TIME_ZONE_FIELD_NUMBER: _ClassVar[int]
    RULES_FIELD_NUMBER: _ClassVar[int]
    CAPS_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    sponsor_name: str
    sponsor_email: str
    sponsor_logo_url: str
    sponsor_type: str
    name: str
    description: str
    campaign_type: str
    priority: int
    reward_kind: RewardKind
    cost_per_session_cents: int
    budget_cents: int
    max_sessions: int
    start_date: str
    end_date: str
    time_zone: str
    rules: CampaignRules
    caps: CampaignCaps
    request_id: str
    def __init__(self, sponsor_name: _Optional[str] = ..., sponsor_email: _Optional[str] = ..., sponsor_logo_url: _Optional[str] = ..., sponsor_type: _Optional[str] = ..., name: _Optional[str] = ..., description: _Optional[str] = ..., campaign_type: _Optional[str] = ..., priority: _Optional[int] = ..., reward_kind: _Optional[_Union[RewardKind, str]] = ..., cost_per_session_cents: _Optional[int] = ..., budget_cents: _Optional[int] = ..., max_sessions: _Optional[int] = ..., start_date: _Optional[str] = ..., end_date: _Optional[str] = ..., time_zone: _Optional[str] = ..., rules: _Optional[_Union[CampaignRules, _Mapping]] = ..., caps: _Optional[_Union[CampaignCaps, _Mapping]] = ..., request_id: _Optional[str] = ...) -> None: ...

class CreateCampaignResponse(_message.Message):
    __slots__ = ("campaign",)
    CAMPAIGN_FIELD_NUMBER: _ClassVar[int]
    campaign: Campaign
    def __init__(self, campaign: _Optional[_Union[Campaign, _Mapping]] = ...) -> None: ...

class GetCampaignRequest(_message.Message):
    __slots__ = ("campaign_id",)
    CAMPAIGN_ID_FIELD_NUMBER: _ClassVar[int]
    campaign_id: str
    def __init__(self, campaign_id: _Optional[str] = ...) -> None: ...

class GetCampaignResponse(_message.Message):
    __slots__ = ("campaign",)
    CAMPAIGN_FIELD_NUMBER: _ClassVar[int]
    campaign: Campaign
    def __init__(self, campaign: _Optional[_Union[Campaign, _Mapping]] = ...) -> None: ...

class UpdateCampaignRequest(_message.Message):
    __slots__ = ("campaign_id", "name", "description", "campaign_type", "priority", "reward_kind", "cost_per_session_cents", "budget_cents", "max_sessions", "start_date", "end_date", "time_zone", "rules", "caps", "update_mask")
    CAMPAIGN_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    CAMPAIGN_TYPE_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    REWARD_KIND_FIELD_NUMBER: _ClassVar[int]
    COST_PER_SESSION_CENTS_FIELD_NUMBER: _ClassVar[int]
    BUDGET_CENTS_FIELD_NUMBER: _ClassVar[int]
    MAX_SESSIONS_FIELD_NUMBER: _ClassVar[int]
    START_DATE_FIELD_NUMBER: _ClassVar[int]
    END_DATE_FIELD_NUMBER: _ClassVar[int]
    TIME_ZONE_FIELD_NUMBER: _ClassVar[int]
    RULES_FIELD_NUMBER: _ClassVar[int]
    CAPS_FIELD_NUMBER: _ClassVar[int]
    UPDATE_MASK_FIELD_NUMBER: _ClassVar[int]
    campaign_id: str
    name: str
    description: str
    campaign_type: str
    priority: int
    reward_kind: RewardKind
    cost_per_session_cents: int
    budget_cents: int
    max_sessions: int
    start_date: str
    end_date: str
    time_zone: str
    rules: CampaignRules
    caps: CampaignCaps
    update_mask: _field_mask_pb2.FieldMask
    def __init__(self, campaign_id: _Optional[str] = ..., name: _Optional[str] = ..., description: _Optional[str] = ..., campaign_type: _Optional[str] = ..., priority: _Optional[int] = ..., reward_kind: _Optional[_Union[RewardKind, str]] = ..., cost_per_session_cents: _Optional[int] = ..., budget_cents: _Optional[int] = ..., max_sessions: _Optional[int] = ..., start_date: _Optional[str] = ..., end_date: _Optional[str] = ..., time_zone: _Optional[str] = ..., rules: _Optional[_Union[CampaignRules, _Mapping]] = ..., caps: _Optional[_Union[CampaignCaps, _Mapping]] = ..., update_mask: _Optional[_Union[_field_mask_pb2.FieldMask, _Mapping]] = ...) -> None: ...

class UpdateCampaignResponse(_message.Message):
    __slots__ = ("campaign",)
    CAMPAIGN_FIELD_NUMBER: _ClassVar[int]
    campaign: Campaign
    def __init__(self, campaign: _Optional[_Union[Campaign, _Mapping]] = ...) -> None: ...

class EditCampaignRequest(_message.Message):
    __slots__ = ("campaign_id", "http_body")
    CAMPAIGN_ID_FIELD_NUMBER: _ClassVar[int]
    HTTP_BODY_FIELD_NUMBER: _ClassVar[int]
    campaign_id: str
    http_body: _httpbody_pb2.HttpBody
    def __init__(self, campaign_id: _Optional[str] = ..., http_body: _Optional[_Union[_httpbody_pb2.HttpBody, _Mapping]] = ...) -> None: ...

class EditCampaignResponse(_message.Message):
    __slots__ = ("campaign",)
    CAMPAIGN_FIELD_NUMBER: _ClassVar[int]
    campaign: Campaign
    def __init__(self, campaign: _Optional[_Union[Campaign, _Mapping]] = ...) -> None: ...

class ActivateCampaignRequest(_message.Message):
    __slots__ = ("campaign_id",)
    CAMPAIGN_ID_FIELD_NUMBER: _ClassVar[int]
    campaign_id: str
    def __init__(self, campaign_id: _Optional[str] = ...) -> None: ...

class ActivateCampaignResponse(_message.Message):
    __slots__ = ("campaign",)
    CAMPAIGN_FIELD_NUMBER: _ClassVar[int]
    campaign: Campaign
    def __init__(self, campaign: _Optional[_Union[Campaign, _Mapping]] = ...) -> None: ...

class PauseCampaignRequest(_message.Message):
    __slots__ = ("campaign_id", "reason")
    CAMPAIGN_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    campaign_id: str
    reason: str
    def __init__(self, campaign_id: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class PauseCampaignResponse(_message.Message):
    __slots__ = ("campaign",)
    CAMPAIGN_FIELD_NUMBER: _ClassVar[int]
    campaign: Campaign
    def __init__(self, campaign: _Optional[_Union[Campaign, _Mapping]] = ...) -> None: ...

class ResumeCampaignRequest(_message.Message):
    __slots__ = ("campaign_id",)
    CAMPAIGN_ID_FIELD_NUMBER: _ClassVar[int]
    campaign_id: str
    def __init__(self, campaign_id: _Optional[str] = ...) -> None: ...

class ResumeCampaignResponse(_message.Message):
    __slots__ = ("campaign",)
    CAMPAIGN_FIELD_NUMBER: _ClassVar[int]
    campaign: Campaign
    def __init__(self, campaign: _Optional[_Union[Campaign, _Mapping]] = ...) -> None: ...

class CancelCampaignRequest(_message.Message):
    __slots__ = ("campaign_id",)
    CAMPAIGN_ID_FIELD_NUMBER: _ClassVar[int]
    campaign_id: str
    def __init__(self, campaign_id: _Optional[str] = ...) -> None: ...

class CancelCampaignResponse(_message.Message):
    __slots__ = ("campaign", "refunded_cents")
    CAMPAIGN_FIELD_NUMBER: _ClassVar[int]
    REFUNDED_CENTS_FIELD_NUMBER: _ClassVar[int]
    campaign: Campaign
    refunded_cents: int
    def __init__(self, campaign: _Optional[_Union[Campaign, _Mapping]] = ..., refunded_cents: _Optional[int] = ...) -> None: ...

class FundCampaignFromPlatformRequest(_message.Message):
    __slots__ = ("campaign_id", "reason", "request_id")
    CAMPAIGN_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    campaign_id: str
    reason: str
    request_id: str
    def __init__(self, campaign_id: _Optional[str] = ..., reason: _Optional[str] = ..., request_id: _Optional[str] = ...) -> None: ...

class FundCampaignFromPlatformResponse(_message.Message):
    __slots__ = ("campaign",)
    CAMPAIGN_FIELD_NUMBER: _ClassVar[int]
    campaign: Campaign
    def __init__(self, campaign: _Optional[_Union[Campaign, _Mapping]] = ...) -> None: ...

class FundCampaignRequest(_message.Message):
    __slots__ = ("campaign_id", "request_id")
    CAMPAIGN_ID_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    campaign_id: str
    request_id: str
    def __init__(self, campaign_id: _Optional[str] = ..., request_id: _Optional[str] = ...) -> None: ...

class FundCampaignResponse(_message.Message):
    __slots__ = ("checkout_url", "session_id", "status", "message", "gross_cents", "platform_fee_cents", "net_budget_cents", "expires_at")
    CHECKOUT_URL_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    GROSS_CENTS_FIELD_NUMBER: _ClassVar[int]
    PLATFORM_FEE_CENTS_FIELD_NUMBER: _ClassVar[int]
    NET_BUDGET_CENTS_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    checkout_url: str
    session_id: str
    status: CheckoutStatus
    message: str
    gross_cents: int
    platform_fee_cents: int
    net_budget_cents: int
    expires_at: _timestamp_pb2.Timestamp
    def __init__(self, checkout_url: _Optional[str] = ..., session_id: _Optional[str] = ..., status: _Optional[_Union[CheckoutStatus, str]] = ..., message: _Optional[str] = ..., gross_cents: _Optional[int] = ..., platform_fee_cents: _Optional[int] = ..., net_budget_cents: _Optional[int] = ..., expires_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ListGrantsRequest(_message.Message):
    __slots__ = ("campaign_id", "status", "limit", "offset", "page_size", "page_token")
    CAMPAIGN_ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    campaign_id: str
    status: GrantStatus
    limit: int
    offset: int
    page_size: int
    page_token: str
    def __init__(self, campaign_id: _Optional[str] = ..., status: _Optional[_Union[GrantStatus, str]] = ..., limit: _Optional[int] = ..., offset: _Optional[int] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListGrantsResponse(_message.Message):
    __slots__ = ("grants", "total", "count", "next_page_token")
    GRANTS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    grants: _containers.RepeatedCompositeFieldContainer[Grant]
    total: int
    count: int
    next_page_token: str
    def __init__(self, grants: _Optional[_Iterable[_Union[Grant, _Mapping]]] = ..., total: _Optional[int] = ..., count: _Optional[int] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class GetBudgetRequest(_message.Message):
    __slots__ = ("campaign_id",)
    CAMPAIGN_ID_FIELD_NUMBER: _ClassVar[int]
    campaign_id: str
    def __init__(self, campaign_id: _Optional[str] = ...) -> None: ...

class GetBudgetResponse(_message.Message):
    __slots__ = ("budget_cents", "spent_cents", "remaining_cents", "pct_used", "sessions_granted", "max_sessions", "cost_per_session_cents", "remaining_sessions", "gross_funding_cents", "platform_fee_cents")
    BUDGET_CENTS_FIELD_NUMBER: _ClassVar[int]
    SPENT_CENTS_FIELD_NUMBER: _ClassVar[int]
    REMAINING_CENTS_FIELD_NUMBER: _ClassVar[int]
    PCT_USED_FIELD_NUMBER: _ClassVar[int]
    SESSIONS_GRANTED_FIELD_NUMBER: _ClassVar[int]
    MAX_SESSIONS_FIELD_NUMBER: _ClassVar[int]
    COST_PER_SESSION_CENTS_FIELD_NUMBER: _ClassVar[int]
    REMAINING_SESSIONS_FIELD_NUMBER: _ClassVar[int]
    GROSS_FUNDING_CENTS_FIELD_NUMBER: _ClassVar[int]
    PLATFORM_FEE_CENTS_FIELD_NUMBER: _ClassVar[int]
    budget_cents: int
    spent_cents: int
    remaining_cents: int
    pct_used: float
    sessions_granted: int
    max_sessions: int
    cost_per_session_cents: int
    remaining_sessions: int
    gross_funding_cents: int
    platform_fee_cents: int
    def __init__(self, budget_cents: _Optional[int] = ..., spent_cents: _Optional[int] = ..., remaining_cents: _Optional[int] = ..., pct_used: _Optional[float] = ..., sessions_granted: _Optional[int] = ..., max_sessions: _Optional[int] = ..., cost_per_session_cents: _Optional[int] = ..., remaining_sessions: _Optional[int] = ..., gross_funding_cents: _Optional[int] = ..., platform_fee_cents: _Optional[int] = ...) -> None: ...

class ListDriverCampaignsRequest(_message.Message):
    __slots__ = ("lat", "lng", "charger_id", "page_size", "page_token")
    LAT_FIELD_NUMBER: _ClassVar[int]
    LNG_FIELD_NUMBER: _ClassVar[int]
    CHARGER_ID_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    lat: float
    lng: float
    charger_id: str
    page_size: int
    page_token: str
    def __init__(self, lat: _Optional[float] = ..., lng: _Optional[float] = ..., charger_id: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListDriverCampaignsResponse(_message.Message):
    __slots__ = ("campaigns", "next_page_token")
    CAMPAIGNS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    campaigns: _containers.RepeatedCompositeFieldContainer[DriverCampaign]
    next_page_token: str
    def __init__(self, campaigns: _Optional[_Iterable[_Union[DriverCampaign, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class SimulateCampaignRequest(_message.Message):
    __slots__ = ("campaign_id", "since", "until")
    CAMPAIGN_ID_FIELD_NUMBER: _ClassVar[int]
    SINCE_FIELD_NUMBER: _ClassVar[int]
    UNTIL_FIELD_NUMBER: _ClassVar[int]
    campaign_id: str
    since: _timestamp_pb2.Timestamp
    until: _timestamp_pb2.Timestamp
    def __init__(self, campaign_id: _Optional[str] = ..., since: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., until: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class SimulateCampaignResponse(_message.Message):
    __slots__ = ("sessions_evaluated", "sessions_matched", "grants", "spend_cents", "unique_drivers", "budget_exhausted_at", "failures", "since", "until")
    SESSIONS_EVALUATED_FIELD_NUMBER: _ClassVar[int]
    SESSIONS_MATCHED_FIELD_NUMBER: _ClassVar[int]
    GRANTS_FIELD_NUMBER: _ClassVar[int]
    SPEND_CENTS_FIELD_NUMBER: _ClassVar[int]
    UNIQUE_DRIVERS_FIELD_NUMBER: _ClassVar[int]
    BUDGET_EXHAUSTED_AT_FIELD_NUMBER: _ClassVar[int]
    FAILURES_FIELD_NUMBER: _ClassVar[int]
    SINCE_FIELD_NUMBER: _ClassVar[int]
    UNTIL_FIELD_NUMBER: _ClassVar[int]
    sessions_evaluated: int
    sessions_matched: int
    grants: int
    spend_cents: int
    unique_drivers: int
    budget_exhausted_at: _timestamp_pb2.Timestamp
    failures: _containers.RepeatedCompositeFieldContainer[RuleFailureCount]
    since: _timestamp_pb2.Timestamp
    until: _timestamp_pb2.Timestamp
    def __init__(self, sessions_evaluated: _Optional[int] = ..., sessions_matched: _Optional[int] = ..., grants: _Optional[int] = ..., spend_cents: _Optional[int] = ..., unique_drivers: _Optional[int] = ..., budget_exhausted_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., failures: _Optional[_Iterable[_Union[RuleFailureCount, _Mapping]]] = ..., since: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., until: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class GetReputationRequest(_message.Message):
    __slots__ = ("time_zone",)
    TIME_ZONE_FIELD_NUMBER: _ClassVar[int]
    time_zone: str
    def __init__(self, time_zone: _Optional[str] = ...) -> None: ...

class GetReputationResponse(_message.Message):
    __slots__ = ("points", "tier", "tier_color", "next_tier", "points_to_next", "progress_to_next", "streak_days")
    POINTS_FIELD_NUMBER: _ClassVar[int]
    TIER_FIELD_NUMBER: _ClassVar[int]
    TIER_COLOR_FIELD_NUMBER: _ClassVar[int]
    NEXT_TIER_FIELD_NUMBER: _ClassVar[int]
    POINTS_TO_NEXT_FIELD_NUMBER: _ClassVar[int]
    PROGRESS_TO_NEXT_FIELD_NUMBER: _ClassVar[int]
    STREAK_DAYS_FIELD_NUMBER: _ClassVar[int]
    points: int
    tier: str
    tier_color: str
    next_tier: str
    points_to_next: int
    progress_to_next: float
    streak_days: int
    def __init__(self, points: _Optional[int] = ..., tier: _Optional[str] = ..., tier_color: _Optional[str] = ..., next_tier: _Optional[str] = ..., points_to_next: _Optional[int] = ..., progress_to_next: _Optional[float] = ..., streak_days: _Optional[int] = ...) -> None: ...

class ClawbackGrantRequest(_message.Message):
    __slots__ = ("grant_id", "reason", "request_id")
    GRANT_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    grant_id: str
    reason: str
    request_id: str
    def __init__(self, grant_id: _Optional[str] = ..., reason: _Optional[str] = ..., request_id: _Optional[str] = ...) -> None: ...

class ClawbackGrantResponse(_message.Message):
    __slots__ = ("grant", "campaign_remaining_cents")
    GRANT_FIELD_NUMBER: _ClassVar[int]
    CAMPAIGN_REMAINING_CENTS_FIELD_NUMBER: _ClassVar[int]
    grant: Grant
    campaign_remaining_cents: int
    def __init__(self, grant: _Optional[_Union[Grant, _Mapping]] = ..., campaign_remaining_cents: _Optional[int] = ...) -> None: ...

class RecordCampaignFundingRequest(_message.Message):
    __slots__ = ("campaign_id", "checkout_session_id", "gross_cents", "platform_fee_cents", "net_budget_cents", "paid_at")
    CAMPAIGN_ID_FIELD_NUMBER: _ClassVar[int]
    CHECKOUT_SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    GROSS_CENTS_FIELD_NUMBER: _ClassVar[int]
    PLATFORM_FEE_CENTS_FIELD_NUMBER: _ClassVar[int]
    NET_BUDGET_CENTS_FIELD_NUMBER: _ClassVar[int]
    PAID_AT_FIELD_NUMBER: _ClassVar[int]
    campaign_id: str
    checkout_session_id: str
    gross_cents: int
    platform_fee_cents: int
    net_budget_cents: int
    paid_at: _timestamp_pb2.Timestamp
    def __init__(self, campaign_id: _Optional[str] = ..., checkout_session_id: _Optional[str] = ..., gross_cents: _Optional[int] = ..., platform_fee_cents: _Optional[int] = ..., net_budget_cents: _Optional[int] = ..., paid_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class RecordCampaignFundingResponse(_message.Message):
    __slots__ = ("campaign", "replayed")
    CAMPAIGN_FIELD_NUMBER: _ClassVar[int]
    REPLAYED_FIELD_NUMBER: _ClassVar[int]
    campaign: Campaign
    replayed: bool
    def __init__(self, campaign: _Optional[_Union[Campaign, _Mapping]] = ..., replayed: _Optional[bool] = ...) -> None: ...

class BatchGetSessionGrantsRequest(_message.Message):
    __slots__ = ("session_ids",)
    SESSION_IDS_FIELD_NUMBER: _ClassVar[int]
    session_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, session_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class BatchGetSessionGrantsResponse(_message.Message):
    __slots__ = ("grants",)
    GRANTS_FIELD_NUMBER: _ClassVar[int]
    grants: _containers.RepeatedCompositeFieldContainer[Grant]
    def __init__(self, grants: _Optional[_Iterable[_Union[Grant, _Mapping]]] = ...) -> None: ...

class EvaluateSessionRequest(_message.Message):
    __slots__ = ("session",)
    SESSION_FIELD_NUMBER: _ClassVar[int]
    session: EndedSession
    def __init__(self, session: _Optional[_Union[EndedSession, _Mapping]] = ...) -> None: ...

class EvaluateSessionResponse(_message.Message):
    __slots__ = ("outcome", "grant", "candidates", "reputation_points_awarded", "replayed")
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    GRANT_FIELD_NUMBER: _ClassVar[int]
    CANDIDATES_FIELD_NUMBER: _ClassVar[int]
    REPUTATION_POINTS_AWARDED_FIELD_NUMBER: _ClassVar[int]
    REPLAYED_FIELD_NUMBER: _ClassVar[int]
    outcome: EvaluationOutcome
    grant: Grant
    candidates: _containers.RepeatedCompositeFieldContainer[CandidateResult]
    reputation_points_awarded: int
    replayed: bool
    def __init__(self, outcome: _Optional[_Union[EvaluationOutcome, str]] = ..., grant: _Optional[_Union[Grant, _Mapping]] = ..., candidates: _Optional[_Iterable[_Union[CandidateResult, _Mapping]]] = ..., reputation_points_awarded: _Optional[int] = ..., replayed: _Optional[bool] = ...) -> None: ...

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

class ChargerPlace(_message.Message):
    __slots__ = ("charger_id", "network", "zone_id", "lat", "lng")
    CHARGER_ID_FIELD_NUMBER: _ClassVar[int]
    NETWORK_FIELD_NUMBER: _ClassVar[int]
    ZONE_ID_FIELD_NUMBER: _ClassVar[int]
    LAT_FIELD_NUMBER: _ClassVar[int]
    LNG_FIELD_NUMBER: _ClassVar[int]
    charger_id: str
    network: str
    zone_id: str
    lat: float
    lng: float
    def __init__(self, charger_id: _Optional[str] = ..., network: _Optional[str] = ..., zone_id: _Optional[str] = ..., lat: _Optional[float] = ..., lng: _Optional[float] = ...) -> None: ...

class ListChargerRewardsRequest(_message.Message):
    __slots__ = ("chargers",)
    CHARGERS_FIELD_NUMBER: _ClassVar[int]
    chargers: _containers.RepeatedCompositeFieldContainer[ChargerPlace]
    def __init__(self, chargers: _Optional[_Iterable[_Union[ChargerPlace, _Mapping]]] = ...) -> None: ...

class ChargerReward(_message.Message):
    __slots__ = ("charger_id", "reward_cents", "reward_kind", "campaign_id")
    CHARGER_ID_FIELD_NUMBER: _ClassVar[int]
    REWARD_CENTS_FIELD_NUMBER: _ClassVar[int]
    REWARD_KIND_FIELD_NUMBER: _ClassVar[int]
    CAMPAIGN_ID_FIELD_NUMBER: _ClassVar[int]
    charger_id: str
    reward_cents: int
    reward_kind: RewardKind
    campaign_id: str
    def __init__(self, charger_id: _Optional[str] = ..., reward_cents: _Optional[int] = ..., reward_kind: _Optional[_Union[RewardKind, str]] = ..., campaign_id: _Optional[str] = ...) -> None: ...

class ListChargerRewardsResponse(_message.Message):
    __slots__ = ("rewards",)
    REWARDS_FIELD_NUMBER: _ClassVar[int]
    rewards: _containers.RepeatedCompositeFieldContainer[ChargerReward]
    def __init__(self, rewards: _Optional[_Iterable[_Union[ChargerReward, _Mapping]]] = ...) -> None: ...
