"""Signing in with another party's word for who the person is: a Google or Apple ID token, or a merchant claim
link emailed to an address the merchants service accepted as the store's owner (docs/app-contract.md "Sign-in").

Accounts of providers: the provider's stable account id (`sub`) is linked to one Nerava user
(external_identities). The first sign-in with a provider account finds the user with the same email when the
provider vouches for that email (`email_verified`), else creates one; an unverified email is never used to find
or create an account, so an ID token cannot take over someone else's account by naming their address.

The merchants service (whether an address may claim a store) and the sessions service (the Tesla sign-in) are
reached through peers.py.
"""

from __future__ import annotations

import datetime
import hashlib
import secrets
import time
import urllib.parse
from collections.abc import Callable, Sequence

from nerava.accounts.v1 import accounts_pb2
from sqlalchemy.ext.asyncio import AsyncEngine

from services.accounts import domain, store
from services.accounts.adapters.email import EmailError, SendGridEmail
from services.accounts.adapters.id_tokens import IdentityProviderUnavailable, IdTokenInvalid, IdTokenVerifier
from services.accounts.peers import LinkedVehicle, MerchantClaims, TeslaLogin, TeslaSignIns
from services.accounts.reasons import Reason
from services.accounts.tokens import SignedIn, Tokens
from services.common.errors import FailedPrecondition, PermissionDenied, Unauthenticated, Unavailable


def claim_token_hash(token: str) -> bytes:
    """SHA-256 of the link's token: 256 random bits need no slow hash, and the lookup is one indexed read."""
    return hashlib.sha256(token.encode()).digest()


async def verified_identity(
    verifier: IdTokenVerifier, id_token: str, *, need_email: bool
) -> tuple[str, str | None, str]:
    """(subject, verified email or None, name) of a valid ID token; the sign-in errors otherwise."""
    if not verifier.configured:
        raise FailedPrecondition(Reason.SIGN_IN_NOT_CONFIGURED, "this sign-in is not available here")
    try:
        identity = await verifier.verify(id_token)
    except IdTokenInvalid as exc:
        raise Unauthenticated(Reason.ID_TOKEN_INVALID, "the ID token was not accepted; sign in again") from exc
    except IdentityProviderUnavailable as exc:
        raise Unavailable(
            Reason.IDENTITY_PROVIDER_UNAVAILABLE, "the sign-in provider did not answer; try again"
        ) from exc
    email = identity.email if identity.email_verified else None
    if need_email and email is None:
        raise Unauthenticated(Reason.EMAIL_NOT_VERIFIED, "the provider did not verify this account's email")
    return identity.subject, email, identity.name


async def user_for_identity(
    engine: AsyncEngine,
    *,
    provider: str,
    subject: str,
    email: str | None,
    name: str,
    auth_provider: int,
    initial_roles: Sequence[str],
) -> store.UserRow:
    """The user linked to the provider account, linking (or creating) one on its first sign-in."""
    async with engine.begin() as conn:
        user = await store.user_of_identity(conn, provider, subject)
        if user is None:
            if email is not None:
                user, _ = await store.get_or_create_user(
                    conn, phone=None, email=email, auth_provider=auth_provider, initial_roles=initial_roles
                )
            else:
                user = await store.create_user(conn, auth_provider=auth_provider, name=name, roles=initial_roles)
            await store.link_identity(conn, provider=provider, subject=subject, user_id=user.id)
            # A simultaneous first sign-in may have linked the account to the user it created: that one wins.
            user = await store.user_of_identity(conn, provider, subject)
            assert user is not None
    if not user.active:
        raise PermissionDenied(Reason.USER_INACTIVE, "this account is deactivated")
    return user


class ClaimLinks:
    """The emailed single-use claim link (see the module docstring)."""

    def __init__(
        self, engine: AsyncEngine, email: SendGridEmail, claims: MerchantClaims, *, portal_url: str, ttl_s: int
    ) -> None:
        self._engine = engine
        self._email = email
        self._claims = claims
        self._portal = portal_url.rstrip("/")
        self._ttl = datetime.timedelta(seconds=ttl_s)

    async def send(self, merchant_id: str, email: str, now: datetime.datetime) -> datetime.datetime:
        if not self._email.configured:
            raise FailedPrecondition(Reason.SIGN_IN_NOT_CONFIGURED, "claim links cannot be emailed here")
        claimed_store = await self._claims.authorize(email=email, merchant_id=merchant_id)
        token = secrets.token_urlsafe(32)
        expires_at = now + self._ttl
        link = f"{self._portal}/claim/verify?{urllib.parse.urlencode({'token': token})}"
        async with self._engine.begin() as conn:
            await store.insert_claim_link(
                conn, token_hash=claim_token_hash(token), merchant_id=merchant_id, email=email, expires_at=expires_at
            )
            # Sent before the commit: a link that could not be emailed is never stored.
            try:
                await self._email.send(
                    to=email,
                    subject=f"Claim {claimed_store.merchant_name} on Nerava",
                    text=(
                        f"Open this link to claim {claimed_store.merchant_name} on Nerava and sign in to the "
                        f"merchant portal:\n\n{link}\n\nIt works once and expires in {self._ttl.seconds // 60} "
                        "minutes. If you did not ask for it, ignore this email."
                    ),
                )
            except EmailError as exc:
                raise Unavailable(Reason.EMAIL_UNAVAILABLE, "the claim email could not be sent; try again") from exc
        return expires_at

    async def open(self, token: str, now: datetime.datetime) -> tuple[store.UserRow, str]:
        """Consumes the link and makes its address's account the store's owner: (user, merchant_id)."""
        async with self._engine.connect() as conn:
            link = await store.claim_link(conn, claim_token_hash(token), now)
        if link is None:
            raise Unauthenticated(Reason.CLAIM_LINK_INVALID, "this claim link is invalid, expired or already used")
        merchant_id, email = link
        # The account first, committed on its own: the owner id the merchants service records must exist
        # whatever happens after.
        async with self._engine.begin() as conn:
            user, _ = await store.get_or_create_user(
                conn, phone=None, email=email, auth_provider=accounts_pb2.AUTH_PROVIDER_EMAIL, initial_roles=()
            )
        if not user.active:
            raise PermissionDenied(Reason.USER_INACTIVE, "this account is deactivated")
        async with self._engine.begin() as conn:
            if await store.use_claim_link(conn, claim_token_hash(token), now) is None:
                raise Unauthenticated(Reason.CLAIM_LINK_INVALID, "this claim link is invalid, expired or already used")
            # Inside the link's transaction: if the merchants service refuses or fails, the link stays unused.
            await self._claims.authorize(email=email, merchant_id=merchant_id, owner_user_id=str(user.public_id))
            await store.add_role(conn, user.id, domain.MERCHANT)
        return user, merchant_id


# external_identities.provider: one Google account is one identity for the driver app and the merchant portal.
GOOGLE, APPLE, TESLA = "google", "apple", "tesla"
_AUTH_PROVIDERS = {
    GOOGLE: accounts_pb2.AUTH_PROVIDER_GOOGLE,
    APPLE: accounts_pb2.AUTH_PROVIDER_APPLE,
    TESLA: accounts_pb2.AUTH_PROVIDER_TESLA,
}


class ExternalSignIn:
    """The ID-token sign-ins and the claim links, for the servicer: each sign-in ends with a new token family."""

    def __init__(
        self,
        engine: AsyncEngine,
        *,
        tokens: Tokens,
        google: IdTokenVerifier,
        apple: IdTokenVerifier,
        merchant_google: IdTokenVerifier,
        claims: MerchantClaims,
        links: ClaimLinks,
        tesla: TeslaSignIns,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._engine = engine
        self._tokens = tokens
        self._clock = clock
        self._tesla = tesla
        self.google = google
        self.apple = apple
        self.merchant_google = merchant_google
        self.claims = claims
        self.links = links

    async def driver(self, verifier: IdTokenVerifier, id_token: str, provider: str) -> SignedIn:
        """The driver app's sign-in: a new account is a driver's."""
        subject, email, name = await verified_identity(verifier, id_token, need_email=False)
        user = await user_for_identity(
            self._engine,
            provider=provider,
            subject=subject,
            email=email,
            name=name,
            auth_provider=_AUTH_PROVIDERS[provider],
            initial_roles=(domain.DRIVER,),
        )
        return await self._tokens.sign_in(user)

    async def provider_driver(self, provider: str, subject: str, linked_driver_id: str) -> store.UserRow:
        """The driver of a vehicle provider's account (the sessions service completing a Tesla sign-in). The
        provider vouches for no email here: the account is found by the provider's id, else it is the driver who
        already connected that provider account to their cars, else a new driver."""
        async with self._engine.begin() as conn:
            if linked_driver_id and await store.user_of_identity(conn, provider, subject) is None:
                known = await store.user_by_public_id(conn, linked_driver_id)
                if known is not None:
                    await store.link_identity(conn, provider=provider, subject=subject, user_id=known.id)
        return await user_for_identity(
            self._engine,
            provider=provider,
            subject=subject,
            email=None,
            name="",
            auth_provider=_AUTH_PROVIDERS[provider],
            initial_roles=(domain.DRIVER,),
        )

    async def tesla_login_url(self) -> TeslaLogin:
        return await self._tesla.start()

    async def tesla(self, code: str, state: str) -> tuple[SignedIn, list[LinkedVehicle]]:
        """Tesla's code and state → the driver (found or created by sessions through provider_driver), with the
        Tesla account and its vehicles linked to them."""
        linked = await self._tesla.complete(code, state)
        async with self._engine.connect() as conn:
            user = await store.user_by_public_id(conn, linked.driver_id)
        if user is None or not user.active:
            raise PermissionDenied(Reason.USER_INACTIVE, "this account is deactivated")
        return await self._tokens.sign_in(user), linked.vehicles

    async def merchant(self, id_token: str, place_id: str) -> tuple[SignedIn, str | None]:
        """The portal's sign-in: a new account has no role until it claims a store; with a place id, the store
        is claimed in the same step (the claim rule applied to the Google-verified email)."""
        subject, email, name = await verified_identity(self.merchant_google, id_token, need_email=True)
        assert email is not None
        user = await user_for_identity(
            self._engine,
            provider=GOOGLE,
            subject=subject,
            email=email,
            name=name,
            auth_provider=accounts_pb2.AUTH_PROVIDER_GOOGLE,
            initial_roles=(),
        )
        if not place_id:
            return await self._tokens.sign_in(user), None
        claimed = await self.claims.authorize(email=email, place_id=place_id, owner_user_id=str(user.public_id))
        async with self._engine.begin() as conn:
            await store.add_role(conn, user.id, domain.MERCHANT)
        return await self._tokens.sign_in(user), claimed.merchant_id

    async def send_claim_link(self, merchant_id: str, email: str) -> datetime.datetime:
        """Emails a link claiming the store to an address the merchants service accepts; when it expires."""
        return await self.links.send(merchant_id, email, self._now())

    async def claim_link(self, token: str) -> tuple[SignedIn, str]:
        """The emailed claim link opened: its address's account owns the store and signs in; (…, merchant_id)."""
        user, merchant_id = await self.links.open(token, self._now())
        return await self._tokens.sign_in(user), merchant_id

    def _now(self) -> datetime.datetime:
        return datetime.datetime.fromtimestamp(self._clock(), datetime.UTC)
