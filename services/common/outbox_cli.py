"""`python -m services.common.outbox_cli` (`make outbox`): the dead-letter list of every service's outbox — rows
given up after their bounded retries or refused for good — and their replay.

    make outbox                                  list every service's parked rows
    make outbox ARGS="--service ledger --replay all"
    make outbox ARGS="--service incentives --replay 12,15"

A replay puts the rows back in the queue with a fresh attempt count; receivers dedupe on the row's key, so a
replay of something already applied does nothing twice.
"""

from __future__ import annotations

import argparse
import asyncio
import sys

import sqlalchemy as sa

from services.common.config import Env
from services.common.db import create_engine
from services.common.outbox import dead_letters, outbox_table, replay_dead_letters

SERVICES_WITH_OUTBOX = ("sessions", "incentives", "ledger")


async def _main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--service", choices=SERVICES_WITH_OUTBOX, help="one service (default: all, to list)")
    parser.add_argument("--replay", help='"all" or comma-separated row ids (needs --service)')
    args = parser.parse_args(argv)
    if args.replay and not args.service:
        parser.error("--replay needs --service")
    url = Env().str("DATABASE_URL")
    for service in [args.service] if args.service else SERVICES_WITH_OUTBOX:
        engine = create_engine(url, service, pool_size=1, max_overflow=0)
        table = outbox_table(sa.MetaData())
        try:
            if args.replay:
                ids = None if args.replay == "all" else [int(i) for i in args.replay.split(",")]
                print(f"{service}: {await replay_dead_letters(engine, table, ids)} row(s) back in the queue")
                continue
            parked = await dead_letters(engine, table)
            print(f"{service}: {len(parked)} parked row(s)")
            for row in parked:
                when = row.failed_at.isoformat(timespec="seconds")
                print(
                    f"  #{row.id} {row.topic} {row.key} attempts={row.attempts} failed_at={when} {row.last_error[:200]}"
                )
        finally:
            await engine.dispose()
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(_main(sys.argv[1:])))
