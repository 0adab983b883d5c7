"""Sign-in through Envoy's REST: Google and Apple ID tokens checked against the fakes' published keys, the sponsor
console's email code, and the merchant claim link emailed through the fake SendGrid (docs/app-contract.md
"Sign-in")."""

from __future__ import annotations

import asyncio
import datetime
import secrets
import urllib.parse
import uuid
from typing import Any

import grpc
import httpx
import pytest
from nerava.accounts.v1 import accounts_pb2, accounts_pb2_grpc
from nerava.merchants.v1 import merchants_pb2 as mpb
from nerava.merchants.v1 import merchants_pb2_grpc
from sqlalchemy.ext.asyncio import AsyncEngine

from fakes.fleet import FakeFleet
from fakes.identity_providers import FakeIdentityProvider
from fakes.sendgrid import FakeSendGrid
from fakes.twilio_verify import FakeTwilioVerify
from services.accounts import sign_in, store
from tests.support.identity import APPLE_CLIENT_ID, DRIVER_GOOGLE_CLIENT_ID, MERCHANT_GOOGLE_CLIENT_ID
from tests.support.mesh import Mesh
from tests.support.people import Person
from tests.support.rpc import as_service, error_metadata, error_reason, phone_login, random_phone


def _reason(reply: httpx.Response) -> str:
    for detail in reply.json().get("details", []):
        if detail.get("@type", "").endswith("google.rpc.ErrorInfo"):
            return str(detail["reason"])
    return ""


def _email(domain: str = "example.com") -> str:
    return f"{secrets.token_hex(5)}@{domain}"


@pytest.fixture(params=["google", "apple"])
def provider(request: pytest.FixtureRequest, google: FakeIdentityProvider, apple: FakeIdentityProvider) -> Any:
    """(path, fake, the driver app's client id) of each driver sign-in."""
    if request.param == "google":
        return "/v1/auth/google", google, DRIVER_GOOGLE_CLIENT_ID
    return "/v1/auth/apple", apple, APPLE_CLIENT_ID


async def test_a_provider_sign_in_creates_a_driver_once_and_finds_it_again(
    rest: httpx.AsyncClient, provider: Any
) -> None:
    path, fake, client_id = provider
    subject, email = secrets.token_hex(8), _email()
    first = await rest.post(path, json={"id_token": fake.mint(audience=client_id, subject=subject, email=email)})
    assert first.status_code == 200, first.text
    body = first.json()
    assert body["token_type"] == "bearer"
    assert body["user"]["email"] == email
    assert body["user"]["roles"] == ["ROLE_DRIVER"]
    me = await rest.get("/v1/auth/me", headers={"authorization": f"Bearer {body['access_token']}"})
    assert me.json()["user"]["public_id"] == body["user"]["public_id"]
    # The provider account is the key: a later token without the email still finds the same user.
    again = await rest.post(path, json={"id_token": fake.mint(audience=client_id, subject=subject)})
    assert again.json()["user"]["public_id"] == body["user"]["public_id"]


@pytest.mark.parametrize("case", ["bad signature", "wrong audience", "expired", "other issuer's key"])
async def test_an_id_token_that_does_not_check_out_is_refused(
    rest: httpx.AsyncClient, provider: Any, google: FakeIdentityProvider, apple: FakeIdentityProvider, case: str
) -> None:
    path, fake, client_id = provider
    claims: dict[str, Any] = {"audience": client_id, "email": _email()}
    if case == "bad signature":
        token = fake.mint_with_foreign_key(**claims)
    elif case == "wrong audience":
        token = fake.mint(**{**claims, "audience": "someone-elses-app"})
    elif case == "expired":
        token = fake.mint(**claims, expires_in=-3600)
    else:  # signed by the other provider: its key is not in this provider's key set
        token = (apple if fake is google else google).mint(**claims)
    reply = await rest.post(path, json={"id_token": token})
    assert reply.status_code == 401, reply.text
    assert _reason(reply) == "ID_TOKEN_INVALID"


async def test_the_merchant_portals_client_id_is_not_the_driver_apps(
    rest: httpx.AsyncClient, google: FakeIdentityProvider
) -> None:
    portal_token = google.mint(audience=MERCHANT_GOOGLE_CLIENT_ID, email=_email())
    assert (await rest.post("/v1/auth/google", json={"id_token": portal_token})).status_code == 401
    driver_token = google.mint(audience=DRIVER_GOOGLE_CLIENT_ID, email=_email())
    assert (await rest.post("/v1/auth/merchant/google", json={"id_token": driver_token})).status_code == 401


async def test_only_a_verified_email_finds_an_existing_account(
    rest: httpx.AsyncClient, google: FakeIdentityProvider, accounts_engine: AsyncEngine
) -> None:
    email = _email()
    async with accounts_engine.begin() as conn:
        existing, _ = await store.get_or_create_user(
            conn, phone=None, email=email, auth_provider=accounts_pb2.AUTH_PROVIDER_EMAIL, initial_roles=["admin"]
        )
    forged = google.mint(audience=DRIVER_GOOGLE_CLIENT_ID, email=email, email_verified=False)
    stranger = (await rest.post("/v1/auth/google", json={"id_token": forged})).json()["user"]
    assert stranger["public_id"] != str(existing.public_id)
    assert stranger["roles"] == ["ROLE_DRIVER"]
    verified = google.mint(audience=DRIVER_GOOGLE_CLIENT_ID, email=email)
    owner = (await rest.post("/v1/auth/google", json={"id_token": verified})).json()["user"]
    assert owner["public_id"] == str(existing.public_id)
    assert owner["roles"] == ["ROLE_ADMIN"]


# --- the sponsor console -----------------------------------------------------------------------------------


async def _console_login(rest: httpx.AsyncClient, twilio: FakeTwilioVerify, email: str) -> dict[str, Any]:
    started = await rest.post("/v1/console/auth/email-otp/start", json={"email": email.upper()})
    assert started.json() == {"otp_sent": True}
    code = twilio.last_code_sent_to(email)
    verified = await rest.post("/v1/console/auth/email-otp/verify", json={"email": email, "code": code})
    assert verified.status_code == 200, verified.text
    return dict(verified.json())


async def test_a_first_console_login_creates_a_sponsor(rest: httpx.AsyncClient, twilio: FakeTwilioVerify) -> None:
    email = _email()
    first = await _console_login(rest, twilio, email)
    assert first["user"]["is_new"] is True
    assert first["user"]["roles"] == ["ROLE_SPONSOR"]
    assert first["user"]["email"] == email
    again = await _console_login(rest, twilio, email)
    assert again["user"]["is_new"] is False
    assert again["user"]["public_id"] == first["user"]["public_id"]


async def test_an_existing_account_keeps_its_roles_at_the_console(
    rest: httpx.AsyncClient, twilio: FakeTwilioVerify, accounts_engine: AsyncEngine
) -> None:
    admin_email, driver_email = _email(), _email()
    async with accounts_engine.begin() as conn:
        for email, role in ((admin_email, "admin"), (driver_email, "driver")):
            await store.get_or_create_user(
                conn, phone=None, email=email, auth_provider=accounts_pb2.AUTH_PROVIDER_EMAIL, initial_roles=[role]
            )
    admin = await _console_login(rest, twilio, admin_email)
    assert (admin["user"]["roles"], admin["user"]["is_new"]) == (["ROLE_ADMIN"], False)
    driver = await _console_login(rest, twilio, driver_email)
    assert driver["user"]["roles"] == ["ROLE_DRIVER"]  # sponsor only through an admin
    campaigns = await rest.get("/v1/campaigns/", headers={"authorization": f"Bearer {driver['access_token']}"})
    assert campaigns.status_code == 403


# --- claiming a store --------------------------------------------------------------------------------------


async def _store(mesh: Mesh, admin: Person, website: str, place_id: str = "") -> str:
    stub = merchants_pb2_grpc.MerchantsServiceStub(mesh.channels["merchants"])
    created = await stub.CreateMerchant(
        mpb.CreateMerchantRequest(
            request_id=str(uuid.uuid4()),
            merchant=mpb.Merchant(
                name="Claimable Coffee",
                category="coffee",
                lat=30.2672,
                lng=-97.7431,
                address="2 Claim Street",
                zone_slug="austin-downtown",
                website=website,
                place_id=place_id,
            ),
        ),
        metadata=admin.auth,
    )
    return created.merchant.id


def _domain() -> str:
    return f"coffee-{secrets.token_hex(4)}.example"


async def _send_link(mesh: Mesh, merchant_id: str, email: str) -> accounts_pb2.SendMerchantClaimLinkResponse:
    stub = accounts_pb2_grpc.AccountsServiceStub(mesh.channels["accounts"])
    request = accounts_pb2.SendMerchantClaimLinkRequest(merchant_id=merchant_id, email=email)
    return await stub.SendMerchantClaimLink(request, metadata=as_service("merchants"))


def _token_in(sendgrid: FakeSendGrid, email: str) -> str:
    text = sendgrid.last_to(email).text
    link = next(word for word in text.split() if word.startswith("http://portal.test/claim/verify?"))
    return urllib.parse.parse_qs(urllib.parse.urlsplit(link).query)["token"][0]


async def test_a_claim_link_makes_its_address_the_owner_of_that_store_only(
    mesh: Mesh, rest: httpx.AsyncClient, admin: Person, sendgrid: FakeSendGrid
) -> None:
    domain = _domain()
    merchant_id = await _store(mesh, admin, f"https://www.{domain}/menu")
    other_store = await _store(mesh, admin, f"https://{_domain()}")
    email = f"owner@{domain}"
    await _send_link(mesh, merchant_id, email)
    token = _token_in(sendgrid, email)
    opened = await rest.get("/v1/merchant/claim/verify-magic-link", params={"token": token})
    assert opened.status_code == 200, opened.text
    body = opened.json()
    assert body["merchant_id"] == merchant_id
    assert body["user"]["roles"] == ["ROLE_MERCHANT"]
    owner = {"authorization": f"Bearer {body['access_token']}"}
    mine = await rest.get("/v1/merchants/me", headers=owner)
    assert mine.status_code == 200, mine.text
    assert mine.json()["merchant"]["id"] == merchant_id
    # The merchant role reaches only the claimed store.
    assert (await rest.get(f"/v1/merchants/{other_store}/summary", headers=owner)).status_code == 404
    # Single use.
    reused = await rest.get("/v1/merchant/claim/verify-magic-link", params={"token": token})
    assert reused.status_code == 401
    assert _reason(reused) == "CLAIM_LINK_INVALID"


@pytest.mark.parametrize(
    ("website", "email_domain"),
    [
        ("https://www.{domain}", "gmail.com"),  # a free-mail address proves nothing
        ("https://www.{domain}", "other-{domain}"),  # another business's domain
        ("", "{domain}"),  # the store has no website: an admin assigns its owner
        ("https://{domain}.business.site", "{domain}.business.site"),  # a shared site builder
    ],
)
async def test_a_claim_by_someone_who_does_not_own_the_business_is_refused(
    mesh: Mesh, admin: Person, sendgrid: FakeSendGrid, website: str, email_domain: str
) -> None:
    domain = _domain()
    merchant_id = await _store(mesh, admin, website.format(domain=domain))
    email = f"someone@{email_domain.format(domain=domain)}"
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await _send_link(mesh, merchant_id, email)
    assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert error_reason(refused.value) == "MERCHANT_CLAIM_REFUSED"
    assert error_metadata(refused.value)["reason"] == "CLAIM_NOT_OWNER"
    with pytest.raises(LookupError):
        sendgrid.last_to(email)


async def test_a_store_with_an_owner_cannot_be_claimed_by_another(
    mesh: Mesh, rest: httpx.AsyncClient, admin: Person, sendgrid: FakeSendGrid
) -> None:
    domain = _domain()
    merchant_id = await _store(mesh, admin, f"https://{domain}")
    first, second = f"owner@{domain}", f"partner@{domain}"
    await _send_link(mesh, merchant_id, first)
    await _send_link(mesh, merchant_id, second)  # both may ask while the store has no owner
    late = _token_in(sendgrid, second)
    claimed = await rest.get("/v1/merchant/claim/verify-magic-link", params={"token": _token_in(sendgrid, first)})
    assert claimed.status_code == 200
    refused = await rest.get("/v1/merchant/claim/verify-magic-link", params={"token": late})
    assert refused.status_code == 403
    assert _reason(refused) == "MERCHANT_CLAIM_REFUSED"
    with pytest.raises(grpc.aio.AioRpcError) as again:
        await _send_link(mesh, merchant_id, second)
    assert error_metadata(again.value)["reason"] == "MERCHANT_ALREADY_CLAIMED"


async def test_an_expired_or_unknown_claim_link_is_refused(
    mesh: Mesh, rest: httpx.AsyncClient, admin: Person, accounts_engine: AsyncEngine
) -> None:
    domain = _domain()
    merchant_id = await _store(mesh, admin, f"https://{domain}")
    token = secrets.token_urlsafe(32)
    async with accounts_engine.begin() as conn:
        await store.insert_claim_link(
            conn,
            token_hash=sign_in.claim_token_hash(token),
            merchant_id=merchant_id,
            email=f"owner@{domain}",
            expires_at=datetime.datetime(2020, 1, 1, tzinfo=datetime.UTC),
        )
    for candidate in (token, secrets.token_urlsafe(32)):
        reply = await rest.get("/v1/merchant/claim/verify-magic-link", params={"token": candidate})
        assert reply.status_code == 401
        assert _reason(reply) == "CLAIM_LINK_INVALID"


async def test_a_claim_link_that_could_not_be_emailed_is_not_kept(
    mesh: Mesh, admin: Person, sendgrid: FakeSendGrid
) -> None:
    domain = _domain()
    merchant_id = await _store(mesh, admin, f"https://{domain}")
    sendgrid.fail_next(503)
    with pytest.raises(grpc.aio.AioRpcError) as failed:
        await _send_link(mesh, merchant_id, f"owner@{domain}")
    assert failed.value.code() == grpc.StatusCode.UNAVAILABLE
    assert error_reason(failed.value) == "EMAIL_UNAVAILABLE"


async def test_the_portals_google_sign_in_claims_the_store_of_its_place(
    mesh: Mesh, rest: httpx.AsyncClient, admin: Person, google: FakeIdentityProvider
) -> None:
    domain, place_id = _domain(), f"ChIJ{secrets.token_hex(10)}"
    merchant_id = await _store(mesh, admin, f"https://www.{domain}", place_id=place_id)
    token = google.mint(audience=MERCHANT_GOOGLE_CLIENT_ID, email=f"owner@{domain}", hosted_domain=domain)
    signed_in = await rest.post("/v1/auth/merchant/google", json={"id_token": token, "place_id": place_id})
    assert signed_in.status_code == 200, signed_in.text
    assert signed_in.json()["merchant_id"] == merchant_id
    assert signed_in.json()["user"]["roles"] == ["ROLE_MERCHANT"]
    # Without a place, a Google account only signs in: no store, no role.
    plain = google.mint(audience=MERCHANT_GOOGLE_CLIENT_ID, email=_email())
    only = await rest.post("/v1/auth/merchant/google", json={"id_token": plain})
    assert only.status_code == 200
    assert "merchant_id" not in only.json()
    assert only.json()["user"].get("roles", []) == []
    # A Google account whose address Google has not verified cannot sign in to the portal.
    unverified = google.mint(audience=MERCHANT_GOOGLE_CLIENT_ID, email=f"x@{domain}", email_verified=False)
    refused = await rest.post("/v1/auth/merchant/google", json={"id_token": unverified, "place_id": place_id})
    assert refused.status_code == 401
    assert _reason(refused) == "EMAIL_NOT_VERIFIED"


# --- Tesla -------------------------------------------------------------------------------------------------


async def _tesla_consent(rest: httpx.AsyncClient, fleet: FakeFleet, email: str) -> dict[str, str]:
    """The app's GET login-url, then the browser at Tesla's consent page: the query Tesla sends the app back with."""
    started = (await rest.get("/v1/auth/tesla/login-url")).json()
    fleet.login_as(email)
    async with httpx.AsyncClient() as browser:
        redirect = await browser.get(started["authorization_url"])
    assert redirect.status_code == 302
    back = urllib.parse.urlsplit(redirect.headers["location"])
    assert f"{back.scheme}://{back.netloc}{back.path}" == "http://localhost:5173/tesla-callback"
    query = {key: values[0] for key, values in urllib.parse.parse_qs(back.query).items()}
    assert query["state"] == started["state"]
    return query


async def test_tesla_sign_in_creates_the_driver_and_links_the_car_in_one_flow(
    rest: httpx.AsyncClient, fleet: FakeFleet
) -> None:
    email = _email()
    car = fleet.add_tesla_vehicle(email, display_name="Red")
    back = await _tesla_consent(rest, fleet, email)
    signed_in = await rest.post("/v1/auth/tesla/login", json={"code": back["code"], "state": back["state"]})
    assert signed_in.status_code == 200, signed_in.text
    body = signed_in.json()
    assert body["user"]["roles"] == ["ROLE_DRIVER"]
    assert body["user"]["auth_provider"] == "AUTH_PROVIDER_TESLA"
    assert [(v["id"], v["display_name"]) for v in body["vehicles"]] == [(car.id, "Red")]
    driver = {"authorization": f"Bearer {body['access_token']}"}
    status = (await rest.get("/v1/auth/tesla/status", headers=driver)).json()
    assert status["connected"] is True
    assert status["vehicle_id"] == car.id  # the account's only car is selected
    # The state and the code are single use.
    replayed = await rest.post("/v1/auth/tesla/login", json={"code": back["code"], "state": back["state"]})
    assert replayed.status_code == 401
    assert _reason(replayed) == "TESLA_SIGN_IN_FAILED"
    # The same Tesla account signs in as the same driver.
    again = await _tesla_consent(rest, fleet, email)
    second = await rest.post("/v1/auth/tesla/login", json={"code": again["code"], "state": again["state"]})
    assert second.json()["user"]["public_id"] == body["user"]["public_id"]


async def test_a_sign_in_state_does_not_work_at_the_connect_callback(rest: httpx.AsyncClient, fleet: FakeFleet) -> None:
    email = _email()
    fleet.add_tesla_vehicle(email)
    back = await _tesla_consent(rest, fleet, email)
    page = await rest.get("/v1/auth/tesla/callback", params=back)
    assert "error=invalid_state" in page.text
    forged = await rest.post("/v1/auth/tesla/login", json={"code": back["code"], "state": "not-our-state"})
    assert forged.status_code == 401


async def test_tesla_sign_in_finds_the_driver_who_connected_that_tesla(
    mesh: Mesh, rest: httpx.AsyncClient, fleet: FakeFleet, twilio: FakeTwilioVerify
) -> None:
    email = _email()
    fleet.add_tesla_vehicle(email)
    login = await phone_login(mesh.channels["accounts"], twilio, random_phone())
    driver = {"authorization": f"Bearer {login.access_token}"}
    connect = (await rest.get("/v1/auth/tesla/connect", headers=driver)).json()
    fleet.login_as(email)
    async with httpx.AsyncClient() as browser:
        tesla = await browser.get(connect["authorization_url"])
    callback = urllib.parse.urlsplit(tesla.headers["location"])
    assert (await rest.get(f"{callback.path}?{callback.query}")).status_code == 302
    back = await _tesla_consent(rest, fleet, email)
    signed_in = await rest.post("/v1/auth/tesla/login", json={"code": back["code"], "state": back["state"]})
    assert signed_in.status_code == 200, signed_in.text
    assert signed_in.json()["user"]["public_id"] == login.user.public_id
    assert signed_in.json()["user"]["roles"] == ["ROLE_DRIVER"]


async def test_a_claim_link_opened_twice_at_once_signs_in_once(
    mesh: Mesh, rest: httpx.AsyncClient, admin: Person, sendgrid: FakeSendGrid
) -> None:
    domain = _domain()
    merchant_id = await _store(mesh, admin, f"https://{domain}")
    email = f"owner@{domain}"
    await _send_link(mesh, merchant_id, email)
    token = _token_in(sendgrid, email)
    opened = await asyncio.gather(
        *(rest.get("/v1/merchant/claim/verify-magic-link", params={"token": token}) for _ in range(4))
    )
    assert sorted(reply.status_code for reply in opened) == [200, 401, 401, 401]
