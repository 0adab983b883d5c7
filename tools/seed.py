"""The demo world of `make run`: the four demo identities (dev login code 000000)."""

from __future__ import annotations

import asyncio

from services.accounts.seed import ensure_phone_user
from services.common.db import create_engine

DEMO_USERS = (
    ("+15125550100", ["driver"], "Demo Driver"),
    ("+15125550101", ["sponsor"], "Demo Sponsor"),
    ("+15125550102", ["merchant"], "Demo Merchant Owner"),
    ("+15125550103", ["admin"], "Demo Admin"),
)


async def seed(database_url: str) -> None:
    engine = create_engine(database_url, "accounts")
    try:
        for phone, roles, name in DEMO_USERS:
            await ensure_phone_user(engine, phone, roles, name=name)
    finally:
        await engine.dispose()


if __name__ == "__main__":
    import os

    asyncio.run(seed(os.environ["DATABASE_URL"]))
