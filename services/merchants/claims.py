"""Who may claim a store (AuthorizeMerchantClaim, called by accounts for the emailed claim link and the portal's
Google sign-in), and making them its owner.

The rule (docs/app-contract.md "Sign-in"): the claimant's email must be at the store's own web domain — the
domain of its website (Places' `websiteUri`, or what an admin entered), `www.` and subdomains of the address
allowed, so `owner@joescoffee.com` and `owner@austin.joescoffee.com` may claim a store at
`https://www.joescoffee.com/menu`. Receiving mail at the business's domain is what shows the person runs it.
A store without a website, or with one on a shared host (free mail, social pages, site builders), is never
claimed this way: an admin assigns its owner. A store owned by someone else is refused; the owner claiming
again is accepted, so a retried claim is safe.
"""

from __future__ import annotations

import dataclasses
import urllib.parse
from typing import Any, Final

import sqlalchemy as sa
from nerava.merchants.v1 import merchants_pb2 as pb
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from services.common.errors import FailedPrecondition, PermissionDenied
from services.merchants import store
from services.merchants.reasons import Reason
from services.merchants.records import merchant_not_found

# Domains anyone can have an address or a page at: an address or website there proves nothing about a business.
SHARED_DOMAINS: Final = frozenset(
    {
        "gmail.com", "googlemail.com", "yahoo.com", "hotmail.com", "outlook.com", "live.com", "icloud.com",
        "me.com", "aol.com", "proton.me", "protonmail.com", "gmx.com", "mail.com", "yandex.com",
        "facebook.com", "instagram.com", "yelp.com", "google.com", "business.site", "square.site",
        "wixsite.com", "squarespace.com", "godaddysites.com", "linktr.ee", "toasttab.com",
    }
)  # fmt: skip


def website_domain(website: str) -> str | None:
    """The host of a store's website, lower-cased without `www.`; None when it has none."""
    text = website.strip()
    if not text:
        return None
    host = urllib.parse.urlsplit(text if "://" in text else f"https://{text}").hostname or ""
    host = host.lower().rstrip(".").removeprefix("www.")
    return host or None


def _under(host: str, domain: str) -> bool:
    return host == domain or host.endswith("." + domain)


def may_claim(email: str, website: str) -> bool:
    """The claim rule of the module docstring."""
    site = website_domain(website)
    _, _, mail_domain = email.strip().lower().rpartition("@")
    if site is None or not mail_domain or any(_under(site, shared) for shared in SHARED_DOMAINS):
        return False
    # Either side may be the subdomain: mail at austin.joescoffee.com for joescoffee.com, or the other way round.
    return _under(mail_domain, site) or _under(site, mail_domain)


# --- queries (the tables are in store.py) -------------------------------------------------------------------


async def store_for_claim(conn: AsyncConnection, merchant_id: str, place_id: str) -> Any:
    """The store by its id, else by its Google place id, locked for the claim; None when unknown."""
    where = store.merchants.c.id == merchant_id if merchant_id else store.merchants.c.place_id == place_id
    return (await conn.execute(sa.select(store.merchants).where(where).with_for_update())).first()


async def set_owner(conn: AsyncConnection, merchant_id: str, owner_user_id: str) -> None:
    await conn.execute(
        sa.update(store.merchants)
        .where(store.merchants.c.id == merchant_id)
        .values(owner_user_id=owner_user_id, updated_at=sa.func.now())
    )


async def verify_pending_claim(conn: AsyncConnection, merchant_id: str, email: str, user_id: str) -> None:
    """The funnel's claim of the store by this (lower-cased) address, if any, is VERIFIED for the user."""
    await conn.execute(
        sa.update(store.merchant_claims)
        .where(store.merchant_claims.c.merchant_id == merchant_id, store.merchant_claims.c.email == email)
        .values(status=pb.MERCHANT_CLAIM_STATUS_VERIFIED, user_id=user_id, updated_at=sa.func.now())
    )


@dataclasses.dataclass(frozen=True, slots=True)
class ClaimedStore:
    merchant_id: str
    name: str


async def authorize_claim(
    engine: AsyncEngine, merchant_id: str, place_id: str, email: str, owner_user_id: str
) -> ClaimedStore:
    """The store (by its id, else its Google place id) `email` may claim (the rule of the module docstring);
    with `owner_user_id` (empty: only asking), that user becomes its owner and the funnel's pending claim by this
    address is verified. MERCHANT_NOT_FOUND, MERCHANT_ALREADY_CLAIMED (someone else owns it), CLAIM_NOT_OWNER."""
    async with engine.begin() as conn:
        row = await store_for_claim(conn, merchant_id, place_id)
        if row is None:
            raise merchant_not_found(merchant_id or place_id)
        if row.owner_user_id and row.owner_user_id != (owner_user_id or None):
            raise FailedPrecondition(Reason.MERCHANT_ALREADY_CLAIMED, "this store already has an owner")
        if not may_claim(email, row.website):
            raise PermissionDenied(
                Reason.CLAIM_NOT_OWNER, "the email address is not at the store's own web domain; ask Nerava support"
            )
        if owner_user_id and row.owner_user_id != owner_user_id:
            await set_owner(conn, row.id, owner_user_id)
        if owner_user_id:
            # The funnel's pending claim for this address (if it went that way) is now verified.
            await verify_pending_claim(conn, row.id, email.strip().lower(), owner_user_id)
    return ClaimedStore(row.id, row.name)
