"""`python -m services.reconcile [--since RFC3339]` (`make reconcile`): every cross-service money invariant on
DATABASE_URL, Stripe read with STRIPE_API_KEY at STRIPE_API_BASE; prints each invariant and exits 1 with the
offending ids on any drift. Without STRIPE_API_KEY the two Stripe invariants are skipped (and said so)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import sys

from services.common.config import Env
from services.common.db import create_engine
from services.ledger.adapters.stripe_payouts import StripePayouts
from services.reconcile.checks import reconcile


async def _main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--since", help="only what was created since this moment (RFC 3339)", default=None)
    args = parser.parse_args(argv)
    since = datetime.datetime.fromisoformat(args.since) if args.since else None
    env = Env()
    engine = create_engine(env.str("DATABASE_URL"), "ledger", pool_size=1, max_overflow=0)
    api_key = env.str("STRIPE_API_KEY", "")
    async with contextlib.AsyncExitStack() as stack:
        stack.push_async_callback(engine.dispose)
        stripe = None
        if api_key:
            stripe = await stack.enter_async_context(
                StripePayouts(api_key=api_key, base_url=env.str("STRIPE_API_BASE", "https://api.stripe.com"))
            )
        else:
            print("STRIPE_API_KEY is not set: checkout_payment and payout_transfer are not checked")
        report = await reconcile(engine, stripe, now=datetime.datetime.now(datetime.UTC), since=since)
    for line in report.lines():
        print(line)
    return 0 if report.holds else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(_main(sys.argv[1:])))
