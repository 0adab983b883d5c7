import datetime

from buf.validate import validate_pb2 as _validate_pb2
from nerava.audit.v1 import audit_pb2 as _audit_pb2
from google.api import annotations_pb2 as _annotations_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Role(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ROLE_UNSPECIFIED: _ClassVar[Role]
    ROLE_DRIVER: _ClassVar[Role]
    ROLE_SPONSOR: _ClassVar[Role]
    ROLE_MERCHANT: _ClassVar[Role]
    ROLE_ADMIN: _ClassVar[Role]
    ROLE_ADMIN_READONLY: _ClassVar[Role]

class AuthProvider(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    AUTH_PROVIDER_UNSPECIFIED: _ClassVar[AuthProvider]
    AUTH_PROVIDER_PHONE: _ClassVar[AuthProvider]
    AUTH_PROVIDER_EMAIL: _ClassVar[AuthProvider]
    AUTH_PROVIDER_GOOGLE: _ClassVar[AuthProvider]
    AUTH_PROVIDER_APPLE: _ClassVar[AuthProvider]
    AUTH_PROVIDER_TESLA: _ClassVar[AuthProvider]

class DevicePlatform(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DEVICE_PLATFORM_UNSPECIFIED: _ClassVar[DevicePlatform]
    DEVICE_PLATFORM_IOS: _ClassVar[DevicePlatform]
    DEVICE_PLATFORM_ANDROID: _ClassVar[DevicePlatform]
ROLE_UNSPECIFIED: Role
ROLE_DRIVER: Role
ROLE_SPONSOR: Role
ROLE_MERCHANT: Role
ROLE_ADMIN: Role
ROLE_ADMIN_READONLY: Role
AUTH_PROVIDER_UNSPECIFIED: AuthProvider
AUTH_PROVIDER_PHONE: AuthProvider
AUTH_PROVIDER_EMAIL: AuthProvider
AUTH_PROVIDER_GOOGLE: AuthProvider
AUTH_PROVIDER_APPLE: AuthProvider
AUTH_PROVIDER_TESLA: AuthProvider
DEVICE_PLATFORM_UNSPECIFIED: DevicePlatform
DEVICE_PLATFORM_IOS: DevicePlatform
DEVICE_PLATFORM_ANDROID: DevicePlatform

class User(_message.Message):
    __slots__ = ("public_id", "auth_provider", "phone", "email", "name", "roles", "created_at", "active")
    PUBLIC_ID_FIELD_NUMBER: _ClassVar[int]
    AUTH_PROVIDER_FIELD_NUMBER: _ClassVar[int]
    PHONE_FIELD_NUMBER: _ClassVar[int]
    EMAIL_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    ROLES_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    ACTIVE_FIELD_NUMBER: _ClassVar[int]
    public_id: str
    auth_provider: AuthProvider
    phone: str
    email: str
    name: str
    roles: _containers.RepeatedScalarFieldContainer[Role]
    created_at: _timestamp_pb2.Timestamp
    active: bool
    def __init__(self, public_id: _Optional[str] = ..., auth_provider: _Optional[_Union[AuthProvider, str]] = ..., phone: _Optional[str] = ..., email: _Optional[str] = ..., name: _Optional[str] = ..., roles: _Optional[_Iterable[_Union[Role, str]]] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., active: _Optional[bool] = ...) -> None: ...

class TokenPair(_message.Message):
    __slots__ = ("access_token", "refresh_token", "token_type", "expires_in")
    ACCESS_TOKEN_FIELD_NUMBER: _ClassVar[int]
    REFRESH_TOKEN_FIELD_NUMBER: _ClassVar[int]
    TOKEN_TYPE_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_IN_FIELD_NUMBER: _ClassVar[int]
    access_token: str
    refresh_token: str
    token_type: str
    expires_in: int
    def __init__(self, access_token: _Optional[str] = ..., refresh_token: _Optional[str] = ..., token_type: _Optional[str] = ..., expires_in: _Optional[int] = ...) -> None: ...

class StartPhoneLoginRequest(_message.Message):
    __slots__ = ("phone",)
    PHONE_FIELD_NUMBER: _ClassVar[int]
    phone: str
    def __init__(self, phone: _Optional[str] = ...) -> None: ...

class StartPhoneLoginResponse(_message.Message):
    __slots__ = ("otp_sent",)
    OTP_SENT_FIELD_NUMBER: _ClassVar[int]
    otp_sent: bool
    def __init__(self, otp_sent: _Optional[bool] = ...) -> None: ...

class VerifyPhoneLoginRequest(_message.Message):
    __slots__ = ("phone", "code")
    PHONE_FIELD_NUMBER: _ClassVar[int]
    CODE_FIELD_NUMBER: _ClassVar[int]
    phone: str
    code: str
    def __init__(self, phone: _Optional[str] = ..., code: _Optional[str] = ...) -> None: ...

class VerifyPhoneLoginResponse(_message.Message):
    __slots__ = ("access_token", "refresh_token", "token_type", "expires_in", "user")
    ACCESS_TOKEN_FIELD_NUMBER: _ClassVar[int]
    REFRESH_TOKEN_FIELD_NUMBER: _ClassVar[int]
    TOKEN_TYPE_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_IN_FIELD_NUMBER: _ClassVar[int]
    USER_FIELD_NUMBER: _ClassVar[int]
    access_token: str
    refresh_token: str
    token_type: str
    expires_in: int
    user: User
    def __init__(self, access_token: _Optional[str] = ..., refresh_token: _Optional[str] = ..., token_type: _Optional[str] = ..., expires_in: _Optional[int] = ..., user: _Optional[_Union[User, _Mapping]] = ...) -> None: ...

class StartEmailLoginRequest(_message.Message):
    __slots__ = ("email",)
    EMAIL_FIELD_NUMBER: _ClassVar[int]
    email: str
    def __init__(self, email: _Optional[str] = ...) -> None: ...

class StartEmailLoginResponse(_message.Message):
    __slots__ = ("otp_sent",)
    OTP_SENT_FIELD_NUMBER: _ClassVar[int]
    otp_sent: bool
    def __init__(self, otp_sent: _Optional[bool] = ...) -> None: ...

class VerifyEmailLoginRequest(_message.Message):
    __slots__ = ("email", "code")
    EMAIL_FIELD_NUMBER: _ClassVar[int]
    CODE_FIELD_NUMBER: _ClassVar[int]
    email: str
    code: str
    def __init__(self, email: _Optional[str] = ..., code: _Optional[str] = ...) -> None: ...

class VerifyEmailLoginResponse(_message.Message):
    __slots__ = ("access_token", "refresh_token", "token_type", "expires_in", "user")
    ACCESS_TOKEN_FIELD_NUMBER: _ClassVar[int]
    REFRESH_TOKEN_FIELD_NUMBER: _ClassVar[int]
    TOKEN_TYPE_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_IN_FIELD_NUMBER: _ClassVar[int]
    USER_FIELD_NUMBER: _ClassVar[int]
    access_token: str
    refresh_token: str
    token_type: str
    expires_in: int
    user: User
    def __init__(self, access_token: _Optional[str] = ..., refresh_token: _Optional[str] = ..., token_type: _Optional[str] = ..., expires_in: _Optional[int] = ..., user: _Optional[_Union[User, _Mapping]] = ...) -> None: ...

class RefreshTokenRequest(_message.Message):
    __slots__ = ("refresh_token",)
    REFRESH_TOKEN_FIELD_NUMBER: _ClassVar[int]
    refresh_token: str
    def __init__(self, refresh_token: _Optional[str] = ...) -> None: ...

class RefreshTokenResponse(_message.Message):
    __slots__ = ("access_token", "refresh_token", "token_type", "expires_in")
    ACCESS_TOKEN_FIELD_NUMBER: _ClassVar[int]
    REFRESH_TOKEN_FIELD_NUMBER: _ClassVar[int]
    TOKEN_TYPE_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_IN_FIELD_NUMBER: _ClassVar[int]
    access_token: str
    refresh_token: str
    token_type: str
    expires_in: int
    def __init__(self, access_token: _Optional[str] = ..., refresh_token: _Optional[str] = ..., token_type: _Optional[str] = ..., expires_in: _Optional[int] = ...) -> None: ...

class LogoutRequest(_message.Message):
    __slots__ = ("refresh_token", "all_devices")
    REFRESH_TOKEN_FIELD_NUMBER: _ClassVar[int]
    ALL_DEVICES_FIELD_NUMBER: _ClassVar[int]
    refresh_token: str
    all_devices: bool
    def __init__(self, refresh_token: _Optional[str] = ..., all_devices: _Optional[bool] = ...) -> None: ...

class LogoutResponse(_message.Message):
    __slots__ = ("revoked_families",)
    REVOKED_FAMILIES_FIELD_NUMBER: _ClassVar[int]
    revoked_families: int
    def __init__(self, revoked_families: _Optional[int] = ...) -> None: ...

class GetMeRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetMeResponse(_message.Message):
    __slots__ = ("user",)
    USER_FIELD_NUMBER: _ClassVar[int]
    user: User
    def __init__(self, user: _Optional[_Union[User, _Mapping]] = ...) -> None: ...

class GetJwksRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetJwksResponse(_message.Message):
    __slots__ = ("keys",)
    KEYS_FIELD_NUMBER: _ClassVar[int]
    keys: _containers.RepeatedCompositeFieldContainer[JsonWebKey]
    def __init__(self, keys: _Optional[_Iterable[_Union[JsonWebKey, _Mapping]]] = ...) -> None: ...

class JsonWebKey(_message.Message):
    __slots__ = ("kty", "crv", "x", "y", "kid", "use", "alg")
    KTY_FIELD_NUMBER: _ClassVar[int]
    CRV_FIELD_NUMBER: _ClassVar[int]
    X_FIELD_NUMBER: _ClassVar[int]
    Y_FIELD_NUMBER: _ClassVar[int]
    KID_FIELD_NUMBER: _ClassVar[int]
    USE_FIELD_NUMBER: _ClassVar[int]
    ALG_FIELD_NUMBER: _ClassVar[int]
    kty: str
    crv: str
    x: str
    y: str
    kid: str
    use: str
    alg: str
    def __init__(self, kty: _Optional[str] = ..., crv: _Optional[str] = ..., x: _Optional[str] = ..., y: _Optional[str] = ..., kid: _Optional[str] = ..., use: _Optional[str] = ..., alg: _Optional[str] = ...) -> None: ...

class RegisterDeviceRequest(_message.Message):
    __slots__ = ("token", "platform")
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    PLATFORM_FIELD_NUMBER: _ClassVar[int]
    token: str
    platform: DevicePlatform
    def __init__(self, token: _Optional[str] = ..., platform: _Optional[_Union[DevicePlatform, str]] = ...) -> None: ...

class RegisterDeviceResponse(_message.Message):
    __slots__ = ("created",)
    CREATED_FIELD_NUMBER: _ClassVar[int]
    created: bool
    def __init__(self, created: _Optional[bool] = ...) -> None: ...

class ListUsersRequest(_message.Message):
    __slots__ = ("page_size", "page_token", "role")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    role: Role
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., role: _Optional[_Union[Role, str]] = ...) -> None: ...

class ListUsersResponse(_message.Message):
    __slots__ = ("users", "next_page_token")
    USERS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    users: _containers.RepeatedCompositeFieldContainer[User]
    next_page_token: str
    def __init__(self, users: _Optional[_Iterable[_Union[User, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class SetUserRolesRequest(_message.Message):
    __slots__ = ("user_id", "roles", "reason")
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    ROLES_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    user_id: str
    roles: _containers.RepeatedScalarFieldContainer[Role]
    reason: str
    def __init__(self, user_id: _Optional[str] = ..., roles: _Optional[_Iterable[_Union[Role, str]]] = ..., reason: _Optional[str] = ...) -> None: ...

class SetUserRolesResponse(_message.Message):
    __slots__ = ("user",)
    USER_FIELD_NUMBER: _ClassVar[int]
    user: User
    def __init__(self, user: _Optional[_Union[User, _Mapping]] = ...) -> None: ...

class GetUserRequest(_message.Message):
    __slots__ = ("user_id",)
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    user_id: str
    def __init__(self, user_id: _Optional[str] = ...) -> None: ...

class GetUserResponse(_message.Message):
    __slots__ = ("user",)
    USER_FIELD_NUMBER: _ClassVar[int]
    user: User
    def __init__(self, user: _Optional[_Union[User, _Mapping]] = ...) -> None: ...

class SignInWithGoogleRequest(_message.Message):
    __slots__ = ("id_token",)
    ID_TOKEN_FIELD_NUMBER: _ClassVar[int]
    id_token: str
    def __init__(self, id_token: _Optional[str] = ...) -> None: ...

class SignInWithGoogleResponse(_message.Message):
    __slots__ = ("access_token", "refresh_token", "token_type", "expires_in", "user")
    ACCESS_TOKEN_FIELD_NUMBER: _ClassVar[int]
    REFRESH_TOKEN_FIELD_NUMBER: _ClassVar[int]
    TOKEN_TYPE_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_IN_FIELD_NUMBER: _ClassVar[int]
    USER_FIELD_NUMBER: _ClassVar[int]
    access_token: str
    refresh_token: str
    token_type: str
    expires_in: int
    user: User
    def __init__(self, access_token: _Optional[str] = ..., refresh_token: _Optional[str] = ..., token_type: _Optional[str] = ..., expires_in: _Optional[int] = ..., user: _Optional[_Union[User, _Mapping]] = ...) -> None: ...

class SignInWithAppleRequest(_message.Message):
    __slots__ = ("id_token",)
    ID_TOKEN_FIELD_NUMBER: _ClassVar[int]
    id_token: str
    def __init__(self, id_token: _Optional[str] = ...) -> None: ...

class SignInWithAppleResponse(_message.Message):
    __slots__ = ("access_token", "refresh_token", "token_type", "expires_in", "user")
    ACCESS_TOKEN_FIELD_NUMBER: _ClassVar[int]
    REFRESH_TOKEN_FIELD_NUMBER: _ClassVar[int]
    TOKEN_TYPE_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_IN_FIELD_NUMBER: _ClassVar[int]
    USER_FIELD_NUMBER: _ClassVar[int]
    access_token: str
    refresh_token: str
    token_type: str
    expires_in: int
    user: User
    def __init__(self, access_token: _Optional[str] = ..., refresh_token: _Optional[str] = ..., token_type: _Optional[str] = ..., expires_in: _Optional[int] = ..., user: _Optional[_Union[User, _Mapping]] = ...) -> None: ...

class StartConsoleLoginRequest(_message.Message):
    __slots__ = ("email",)
    EMAIL_FIELD_NUMBER: _ClassVar[int]
    email: str
    def __init__(self, email: _Optional[str] = ...) -> None: ...

class StartConsoleLoginResponse(_message.Message):
    __slots__ = ("otp_sent",)
    OTP_SENT_FIELD_NUMBER: _ClassVar[int]
    otp_sent: bool
    def __init__(self, otp_sent: _Optional[bool] = ...) -> None: ...

class VerifyConsoleLoginRequest(_message.Message):
    __slots__ = ("email", "code")
    EMAIL_FIELD_NUMBER: _ClassVar[int]
    CODE_FIELD_NUMBER: _ClassVar[int]
    email: str
    code: str
    def __init__(self, email: _Optional[str] = ..., code: _Optional[str] = ...) -> None: ...

class ConsoleUser(_message.Message):
    __slots__ = ("public_id", "email", "roles", "is_new")
    PUBLIC_ID_FIELD_NUMBER: _ClassVar[int]
    EMAIL_FIELD_NUMBER: _ClassVar[int]
    ROLES_FIELD_NUMBER: _ClassVar[int]
    IS_NEW_FIELD_NUMBER: _ClassVar[int]
    public_id: str
    email: str
    roles: _containers.RepeatedScalarFieldContainer[Role]
    is_new: bool
    def __init__(self, public_id: _Optional[str] = ..., email: _Optional[str] = ..., roles: _Optional[_Iterable[_Union[Role, str]]] = ..., is_new: _Optional[bool] = ...) -> None: ...

class VerifyConsoleLoginResponse(_message.Message):
    __slots__ = ("access_token", "refresh_token", "token_type", "expires_in", "user")
    ACCESS_TOKEN_FIELD_NUMBER: _ClassVar[int]
    REFRESH_TOKEN_FIELD_NUMBER: _ClassVar[int]
    TOKEN_TYPE_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_IN_FIELD_NUMBER: _ClassVar[int]
    USER_FIELD_NUMBER: _ClassVar[int]
    access_token: str
    refresh_token: str
    token_type: str
    expires_in: int
    user: ConsoleUser
    def __init__(self, access_token: _Optional[str] = ..., refresh_token: _Optional[str] = ..., token_type: _Optional[str] = ..., expires_in: _Optional[int] = ..., user: _Optional[_Union[ConsoleUser, _Mapping]] = ...) -> None: ...

class SignInMerchantWithGoogleRequest(_message.Message):
    __slots__ = ("id_token", "place_id")
    ID_TOKEN_FIELD_NUMBER: _ClassVar[int]
    PLACE_ID_FIELD_NUMBER: _ClassVar[int]
    id_token: str
    place_id: str
    def __init__(self, id_token: _Optional[str] = ..., place_id: _Optional[str] = ...) -> None: ...

class SignInMerchantWithGoogleResponse(_message.Message):
    __slots__ = ("access_token", "refresh_token", "token_type", "expires_in", "user", "merchant_id")
    ACCESS_TOKEN_FIELD_NUMBER: _ClassVar[int]
    REFRESH_TOKEN_FIELD_NUMBER: _ClassVar[int]
    TOKEN_TYPE_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_IN_FIELD_NUMBER: _ClassVar[int]
    USER_FIELD_NUMBER: _ClassVar[int]
    MERCHANT_ID_FIELD_NUMBER: _ClassVar[int]
    access_token: str
    refresh_token: str
    token_type: str
    expires_in: int
    user: User
    merchant_id: str
    def __init__(self, access_token: _Optional[str] = ..., refresh_token: _Optional[str] = ..., token_type: _Optional[str] = ..., expires_in: _Optional[int] = ..., user: _Optional[_Union[User, _Mapping]] = ..., merchant_id: _Optional[str] = ...) -> None: ...

class SendMerchantClaimLinkRequest(_message.Message):
    __slots__ = ("merchant_id", "email")
    MERCHANT_ID_FIELD_NUMBER: _ClassVar[int]
    EMAIL_FIELD_NUMBER: _ClassVar[int]
    merchant_id: str
    email: str
    def __init__(self, merchant_id: _Optional[str] = ..., email: _Optional[str] = ...) -> None: ...

class SendMerchantClaimLinkResponse(_message.Message):
    __slots__ = ("expires_at",)
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    expires_at: _timestamp_pb2.Timestamp
    def __init__(self, expires_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class VerifyMerchantClaimLinkRequest(_message.Message):
    __slots__ = ("token",)
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    token: str
    def __init__(self, token: _Optional[str] = ...) -> None: ...

class VerifyMerchantClaimLinkResponse(_message.Message):
    __slots__ = ("access_token", "refresh_token", "token_type", "expires_in", "user", "merchant_id")
    ACCESS_TOKEN_FIELD_NUMBER: _ClassVar[int]
    REFRESH_TOKEN_FIELD_NUMBER: _ClassVar[int]
    TOKEN_TYPE_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_IN_FIELD_NUMBER: _ClassVar[int]
    USER_FIELD_NUMBER: _ClassVar[int]
    MERCHANT_ID_FIELD_NUMBER: _ClassVar[int]
    access_token: str
    refresh_token: str
    token_type: str
    expires_in: int
    user: User
    merchant_id: str
    def __init__(self, access_token: _Optional[str] = ..., refresh_token: _Optional[str] = ..., token_type: _Optional[str] = ..., expires_in: _Optional[int] = ..., user: _Optional[_Union[User, _Mapping]] = ..., merchant_id: _Optional[str] = ...) -> None: ...

class GetTeslaLoginUrlRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetTeslaLoginUrlResponse(_message.Message):
    __slots__ = ("authorization_url", "state")
    AUTHORIZATION_URL_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    authorization_url: str
    state: str
    def __init__(self, authorization_url: _Optional[str] = ..., state: _Optional[str] = ...) -> None: ...

class SignInWithTeslaRequest(_message.Message):
    __slots__ = ("code", "state")
    CODE_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    code: str
    state: str
    def __init__(self, code: _Optional[str] = ..., state: _Optional[str] = ...) -> None: ...

class SignedInVehicle(_message.Message):
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

class SignInWithTeslaResponse(_message.Message):
    __slots__ = ("access_token", "refresh_token", "token_type", "expires_in", "user", "vehicles")
    ACCESS_TOKEN_FIELD_NUMBER: _ClassVar[int]
    REFRESH_TOKEN_FIELD_NUMBER: _ClassVar[int]
    TOKEN_TYPE_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_IN_FIELD_NUMBER: _ClassVar[int]
    USER_FIELD_NUMBER: _ClassVar[int]
    VEHICLES_FIELD_NUMBER: _ClassVar[int]
    access_token: str
    refresh_token: str
    token_type: str
    expires_in: int
    user: User
    vehicles: _containers.RepeatedCompositeFieldContainer[SignedInVehicle]
    def __init__(self, access_token: _Optional[str] = ..., refresh_token: _Optional[str] = ..., token_type: _Optional[str] = ..., expires_in: _Optional[int] = ..., user: _Optional[_Union[User, _Mapping]] = ..., vehicles: _Optional[_Iterable[_Union[SignedInVehicle, _Mapping]]] = ...) -> None: ...

class ResolveProviderDriverRequest(_message.Message):
    __slots__ = ("provider", "subject", "linked_driver_id")
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_FIELD_NUMBER: _ClassVar[int]
    LINKED_DRIVER_ID_FIELD_NUMBER: _ClassVar[int]
    provider: str
    subject: str
    linked_driver_id: str
    def __init__(self, provider: _Optional[str] = ..., subject: _Optional[str] = ..., linked_driver_id: _Optional[str] = ...) -> None: ...

class ResolveProviderDriverResponse(_message.Message):
    __slots__ = ("driver_id",)
    DRIVER_ID_FIELD_NUMBER: _ClassVar[int]
    driver_id: str
    def __init__(self, driver_id: _Optional[str] = ...) -> None: ...

class ListAuditEntriesRequest(_message.Message):
    __slots__ = ("actor", "action", "target", "since", "until", "page_size", "page_token")
    ACTOR_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    TARGET_FIELD_NUMBER: _ClassVar[int]
    SINCE_FIELD_NUMBER: _ClassVar[int]
    UNTIL_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    actor: str
    action: str
    target: str
    since: _timestamp_pb2.Timestamp
    until: _timestamp_pb2.Timestamp
    page_size: int
    page_token: str
    def __init__(self, actor: _Optional[str] = ..., action: _Optional[str] = ..., target: _Optional[str] = ..., since: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., until: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListAuditEntriesResponse(_message.Message):
    __slots__ = ("entries", "next_page_token")
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    entries: _containers.RepeatedCompositeFieldContainer[_audit_pb2.AuditEntry]
    next_page_token: str
    def __init__(self, entries: _Optional[_Iterable[_Union[_audit_pb2.AuditEntry, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class Flag(_message.Message):
    __slots__ = ("name", "enabled", "environment", "description", "updated_at", "updated_by")
    NAME_FIELD_NUMBER: _ClassVar[int]
    ENABLED_FIELD_NUMBER: _ClassVar[int]
    ENVIRONMENT_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    UPDATED_BY_FIELD_NUMBER: _ClassVar[int]
    name: str
    enabled: bool
    environment: str
    description: str
    updated_at: _timestamp_pb2.Timestamp
    updated_by: str
    def __init__(self, name: _Optional[str] = ..., enabled: _Optional[bool] = ..., environment: _Optional[str] = ..., description: _Optional[str] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., updated_by: _Optional[str] = ...) -> None: ...

class ListFlagsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListFlagsResponse(_message.Message):
    __slots__ = ("flags",)
    FLAGS_FIELD_NUMBER: _ClassVar[int]
    flags: _containers.RepeatedCompositeFieldContainer[Flag]
    def __init__(self, flags: _Optional[_Iterable[_Union[Flag, _Mapping]]] = ...) -> None: ...

class GetFlagRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class GetFlagResponse(_message.Message):
    __slots__ = ("flag",)
    FLAG_FIELD_NUMBER: _ClassVar[int]
    flag: Flag
    def __init__(self, flag: _Optional[_Union[Flag, _Mapping]] = ...) -> None: ...

class ToggleFlagRequest(_message.Message):
    __slots__ = ("name", "enabled", "reason")
    NAME_FIELD_NUMBER: _ClassVar[int]
    ENABLED_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    name: str
    enabled: bool
    reason: str
    def __init__(self, name: _Optional[str] = ..., enabled: _Optional[bool] = ..., reason: _Optional[str] = ...) -> None: ...

class ToggleFlagResponse(_message.Message):
    __slots__ = ("flag",)
    FLAG_FIELD_NUMBER: _ClassVar[int]
    flag: Flag
    def __init__(self, flag: _Optional[_Union[Flag, _Mapping]] = ...) -> None: ...
