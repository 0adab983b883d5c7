"""AccountsService over real gRPC, against real PostgreSQL, Redis and the fake Twilio Verify server."""

from __future__ import annotations

import asyncio
import uuid
from typing import cast

import grpc
import jwt
import pytest
import sqlalchemy as sa
from cryptography.hazmat.primitives.asymmetric.ec import EllipticCurvePublicKey
from jwt.algorithms import ECAlgorithm
from nerava.accounts.v1 import accounts_pb2, accounts_pb2_grpc

from fakes.twilio_verify import FakeTwilioVerify
from services.accounts.seed import ensure_phone_user
from services.common.db import create_engine
from tests.support.mesh import Mesh
from tests.support.rpc import bad_fields, bearer, error_reason, phone_login, random_phone


@pytest.fixture
def accounts(mesh: Mesh) -> accounts_pb2_grpc.AccountsServiceAsyncStub:
    return accounts_pb2_grpc.AccountsServiceStub(mesh.channels["accounts"])


async def test_first_phone_login_creates_a_driver(
    mesh: Mesh, twilio: FakeTwilioVerify, accounts: accounts_pb2_grpc.AccountsServiceAsyncStub
) -> None:
    phone = random_phone()
    login = await phone_login(mesh.channels["accounts"], twilio, phone)
    assert login.token_type == "bearer"
    assert login.user.phone == phone
    assert list(login.user.roles) == [accounts_pb2.ROLE_DRIVER]
    me = await accounts.GetMe(accounts_pb2.GetMeRequest(), metadata=bearer(login.access_token))
    assert me.user.public_id == login.user.public_id
    again = await phone_login(mesh.channels["accounts"], twilio, phone)
    assert again.user.public_id == login.user.public_id  # the same user, not a second account


async def test_access_token_verifies_against_the_published_jwks(
    mesh: Mesh, twilio: FakeTwilioVerify, accounts: accounts_pb2_grpc.AccountsServiceAsyncStub
) -> None:
    login = await phone_login(mesh.channels["accounts"], twilio, random_phone())
    jwks = await accounts.GetJwks(accounts_pb2.GetJwksRequest())
    kid = jwt.get_unverified_header(login.access_token)["kid"]
    key = next(k for k in jwks.keys if k.kid == kid)
    assert (key.kty, key.crv, key.alg) == ("EC", "P-256", "ES256")
    # A JWK without the private "d" deserializes to the public key.
    public = cast(
        EllipticCurvePublicKey, ECAlgorithm.from_jwk({"kty": key.kty, "crv": key.crv, "x": key.x, "y": key.y})
    )
    claims = jwt.decode(login.access_token, public, algorithms=["ES256"], audience="nerava-api", issuer="nerava")
    assert claims["sub"] == login.user.public_id
    assert claims["roles"] == ["driver"]
    assert claims["exp"] - claims["iat"] == 3600


async def test_malformed_phone_is_invalid_argument_naming_the_field(
    accounts: accounts_pb2_grpc.AccountsServiceAsyncStub,
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await accounts.StartPhoneLogin(accounts_pb2.StartPhoneLoginRequest(phone="12"))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert bad_fields(caught.value) == ["phone"]
    assert error_reason(caught.value) == "INVALID_ARGUMENT"


async def test_sixth_wrong_code_locks_the_phone(
    mesh: Mesh, twilio: FakeTwilioVerify, accounts: accounts_pb2_grpc.AccountsServiceAsyncStub
) -> None:
    phone = random_phone()
    await accounts.StartPhoneLogin(accounts_pb2.StartPhoneLoginRequest(phone=phone))
    right = twilio.last_code_sent_to(phone)
    wrong = "000001" if right != "000001" else "000002"
    for _ in range(5):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await accounts.VerifyPhoneLogin(accounts_pb2.VerifyPhoneLoginRequest(phone=phone, code=wrong))
        assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert error_reason(caught.value) == "INVALID_CODE"
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await accounts.VerifyPhoneLogin(accounts_pb2.VerifyPhoneLoginRequest(phone=phone, code=wrong))
    assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert error_reason(caught.value) == "OTP_LOCKED"
    # Locked means locked: a new code cannot be requested, and even a right code is refused.
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await accounts.StartPhoneLogin(accounts_pb2.StartPhoneLoginRequest(phone=phone))
    assert error_reason(caught.value) == "OTP_LOCKED"
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await accounts.VerifyPhoneLogin(accounts_pb2.VerifyPhoneLoginRequest(phone=phone, code=right))
    assert error_reason(caught.value) == "OTP_LOCKED"


async def test_starting_beyond_the_limit_is_rate_limited(accounts: accounts_pb2_grpc.AccountsServiceAsyncStub) -> None:
    phone = random_phone()
    for _ in range(5):
        assert (await accounts.StartPhoneLogin(accounts_pb2.StartPhoneLoginRequest(phone=phone))).otp_sent
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await accounts.StartPhoneLogin(accounts_pb2.StartPhoneLoginRequest(phone=phone))
    assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert error_reason(caught.value) == "OTP_RATE_LIMITED"


async def test_refresh_rotates_and_reuse_revokes_the_family(
    mesh: Mesh, twilio: FakeTwilioVerify, accounts: accounts_pb2_grpc.AccountsServiceAsyncStub
) -> None:
    login = await phone_login(mesh.channels["accounts"], twilio, random_phone())
    first = await accounts.RefreshToken(accounts_pb2.RefreshTokenRequest(refresh_token=login.refresh_token))
    assert first.refresh_token != login.refresh_token
    second = await accounts.RefreshToken(accounts_pb2.RefreshTokenRequest(refresh_token=first.refresh_token))
    # The original token comes back: reuse. The family dies, including the newest token.
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await accounts.RefreshToken(accounts_pb2.RefreshTokenRequest(refresh_token=login.refresh_token))
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert error_reason(caught.value) == "REFRESH_TOKEN_REUSED"
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await accounts.RefreshToken(accounts_pb2.RefreshTokenRequest(refresh_token=second.refresh_token))
    assert error_reason(caught.value) == "REFRESH_TOKEN_INVALID"


async def test_reuse_does_not_touch_other_families(
    mesh: Mesh, twilio: FakeTwilioVerify, accounts: accounts_pb2_grpc.AccountsServiceAsyncStub
) -> None:
    phone = random_phone()
    laptop = await phone_login(mesh.channels["accounts"], twilio, phone)
    phone_app = await phone_login(mesh.channels["accounts"], twilio, phone)
    await accounts.RefreshToken(accounts_pb2.RefreshTokenRequest(refresh_token=laptop.refresh_token))
    with pytest.raises(grpc.aio.AioRpcError):
        await accounts.RefreshToken(accounts_pb2.RefreshTokenRequest(refresh_token=laptop.refresh_token))
    still = await accounts.RefreshToken(accounts_pb2.RefreshTokenRequest(refresh_token=phone_app.refresh_token))
    assert still.access_token


async def test_concurrent_refreshes_of_one_token_yield_one_winner(
    mesh: Mesh, twilio: FakeTwilioVerify, accounts: accounts_pb2_grpc.AccountsServiceAsyncStub
) -> None:
    login = await phone_login(mesh.channels["accounts"], twilio, random_phone())
    results = await asyncio.gather(
        *(
            accounts.RefreshToken(accounts_pb2.RefreshTokenRequest(refresh_token=login.refresh_token))
            for _ in range(10)
        ),
        return_exceptions=True,
    )
    winners = [r for r in results if isinstance(r, accounts_pb2.RefreshTokenResponse)]
    assert len(winners) == 1
    losers = [r for r in results if isinstance(r, grpc.aio.AioRpcError)]
    assert {error_reason(e) for e in losers} <= {"REFRESH_TOKEN_REUSED", "REFRESH_TOKEN_INVALID"}


async def test_logout_revokes_this_device_or_all(
    mesh: Mesh, twilio: FakeTwilioVerify, accounts: accounts_pb2_grpc.AccountsServiceAsyncStub
) -> None:
    phone = random_phone()
    one = await phone_login(mesh.channels["accounts"], twilio, phone)
    two = await phone_login(mesh.channels["accounts"], twilio, phone)
    three = await phone_login(mesh.channels["accounts"], twilio, phone)
    out = await accounts.Logout(
        accounts_pb2.LogoutRequest(refresh_token=one.refresh_token), metadata=bearer(one.access_token)
    )
    assert out.revoked_families == 1
    with pytest.raises(grpc.aio.AioRpcError):
        await accounts.RefreshToken(accounts_pb2.RefreshTokenRequest(refresh_token=one.refresh_token))
    everything = await accounts.Logout(accounts_pb2.LogoutRequest(all_devices=True), metadata=bearer(two.access_token))
    assert everything.revoked_families == 2
    for login in (two, three):
        with pytest.raises(grpc.aio.AioRpcError):
            await accounts.RefreshToken(accounts_pb2.RefreshTokenRequest(refresh_token=login.refresh_token))


async def test_get_me_needs_a_valid_token(accounts: accounts_pb2_grpc.AccountsServiceAsyncStub) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await accounts.GetMe(accounts_pb2.GetMeRequest())
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
    forged = jwt.encode({"sub": str(uuid.uuid4()), "roles": ["admin"]}, "not-the-key", algorithm="HS256")
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await accounts.GetMe(accounts_pb2.GetMeRequest(), metadata=bearer(forged))
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_only_write_admins_change_roles_and_changes_are_audited(
    mesh: Mesh, twilio: FakeTwilioVerify, accounts: accounts_pb2_grpc.AccountsServiceAsyncStub, database_url: str
) -> None:
    engine = create_engine(database_url, "accounts")
    admin_phone, reader_phone = random_phone(), random_phone()
    await ensure_phone_user(engine, admin_phone, ["admin"])
    await ensure_phone_user(engine, reader_phone, ["admin_readonly"])
    admin = await phone_login(mesh.channels["accounts"], twilio, admin_phone)
    reader = await phone_login(mesh.channels["accounts"], twilio, reader_phone)
    driver = await phone_login(mesh.channels["accounts"], twilio, random_phone())
    change = accounts_pb2.SetUserRolesRequest(
        user_id=driver.user.public_id,
        roles=[accounts_pb2.ROLE_DRIVER, accounts_pb2.ROLE_SPONSOR],
        reason="pilot sponsor",
    )
    for outsider in (driver, reader):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await accounts.SetUserRoles(change, metadata=bearer(outsider.access_token))
        assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
    changed = await accounts.SetUserRoles(change, metadata=bearer(admin.access_token))
    assert set(changed.user.roles) == {accounts_pb2.ROLE_DRIVER, accounts_pb2.ROLE_SPONSOR}
    listed = await accounts.ListUsers(
        accounts_pb2.ListUsersRequest(role=accounts_pb2.ROLE_SPONSOR), metadata=bearer(reader.access_token)
    )
    assert driver.user.public_id in {u.public_id for u in listed.users}
    # The role change revoked the driver's access tokens; a refreshed one carries the new roles, still not admin.
    renewed = await accounts.RefreshToken(accounts_pb2.RefreshTokenRequest(refresh_token=driver.refresh_token))
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await accounts.ListUsers(accounts_pb2.ListUsersRequest(), metadata=bearer(renewed.access_token))
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await accounts.SetUserRoles(
            accounts_pb2.SetUserRolesRequest(
                user_id=admin.user.public_id, roles=[accounts_pb2.ROLE_DRIVER], reason="oops"
            ),
            metadata=bearer(admin.access_token),
        )
    assert error_reason(caught.value) == "CANNOT_REMOVE_OWN_ADMIN"
    async with engine.connect() as conn:
        audit = (
            await conn.execute(
                sa.text(
                    "SELECT actor, target, details->>'new_roles' AS new_roles, reason FROM audit_log"
                    " WHERE action = 'user.roles.set' AND target = :target ORDER BY id DESC LIMIT 1"
                ),
                {"target": f"user:{driver.user.public_id}"},
            )
        ).one()
    assert (audit.actor, audit.new_roles, audit.reason) == (admin.user.public_id, "driver,sponsor", "pilot sponsor")
    # The new role reaches the token at the next refresh.
    refreshed = await accounts.RefreshToken(accounts_pb2.RefreshTokenRequest(refresh_token=renewed.refresh_token))
    assert sorted(jwt.decode(refreshed.access_token, options={"verify_signature": False})["roles"]) == [
        "driver",
        "sponsor",
    ]
    await engine.dispose()


async def test_list_users_pages_without_repeats(
    mesh: Mesh, twilio: FakeTwilioVerify, accounts: accounts_pb2_grpc.AccountsServiceAsyncStub, database_url: str
) -> None:
    engine = create_engine(database_url, "accounts")
    admin_phone = random_phone()
    await ensure_phone_user(engine, admin_phone, ["admin"])
    await engine.dispose()
    admin = await phone_login(mesh.channels["accounts"], twilio, admin_phone)
    for _ in range(3):
        await phone_login(mesh.channels["accounts"], twilio, random_phone())
    seen: list[str] = []
    token = ""
    while True:
        page = await accounts.ListUsers(
            accounts_pb2.ListUsersRequest(page_size=2, page_token=token), metadata=bearer(admin.access_token)
        )
        seen.extend(u.public_id for u in page.users)
        token = page.next_page_token
        if not token:
            break
    assert len(seen) == len(set(seen)) >= 4
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await accounts.ListUsers(
            accounts_pb2.ListUsersRequest(page_token="garbage"), metadata=bearer(admin.access_token)
        )
    assert bad_fields(caught.value) == ["page_token"]


async def test_device_registration_is_idempotent(
    mesh: Mesh, twilio: FakeTwilioVerify, accounts: accounts_pb2_grpc.AccountsServiceAsyncStub
) -> None:
    login = await phone_login(mesh.channels["accounts"], twilio, random_phone())
    request = accounts_pb2.RegisterDeviceRequest(
        token=f"apns-{uuid.uuid4().hex}", platform=accounts_pb2.DEVICE_PLATFORM_IOS
    )
    assert (await accounts.RegisterDevice(request, metadata=bearer(login.access_token))).created
    assert not (await accounts.RegisterDevice(request, metadata=bearer(login.access_token))).created
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await accounts.RegisterDevice(
            accounts_pb2.RegisterDeviceRequest(token="short", platform=accounts_pb2.DEVICE_PLATFORM_UNSPECIFIED),
            metadata=bearer(login.access_token),
        )
    assert set(bad_fields(caught.value)) == {"token", "platform"}


async def test_email_login_is_case_insensitive_and_creates_one_driver(
    twilio: FakeTwilioVerify, accounts: accounts_pb2_grpc.AccountsServiceAsyncStub
) -> None:
    address = f"Driver.{uuid.uuid4().hex[:8]}@Example.com"
    started = await accounts.StartEmailLogin(accounts_pb2.StartEmailLoginRequest(email=address))
    assert started.otp_sent
    code = twilio.last_code_sent_to(address.lower())
    login = await accounts.VerifyEmailLogin(accounts_pb2.VerifyEmailLoginRequest(email=address.upper(), code=code))
    assert login.user.email == address.lower()
    assert login.user.auth_provider == accounts_pb2.AUTH_PROVIDER_EMAIL
    assert list(login.user.roles) == [accounts_pb2.ROLE_DRIVER]
    assert twilio.sent[-1].channel == "email"
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await accounts.StartEmailLogin(accounts_pb2.StartEmailLoginRequest(email="not-an-email"))
    assert bad_fields(caught.value) == ["email"]
