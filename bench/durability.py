"""Durability benchmark: SIGKILL and SIGTERM of `helpdesk serve` during a burst of signed Slack
events, then a restart; prints a table of what was acknowledged and what was answered (once).

    PYTHONPATH=. python bench/durability.py [--events 1000] [--quick] [--postgres URL] [--keep DIR]

`--quick` sends 200 events. PostgreSQL runs when --postgres gives an admin URL (a scratch database
is created and dropped), or HELPDESK_TEST_POSTGRES_URL is set.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.integration.durability import Outcome, run, table  # noqa: E402


async def _postgres(admin_url: str, mode: str, workdir: Path, events: int) -> Outcome:
    from sqlalchemy import text
    from sqlalchemy.engine import make_url
    from sqlalchemy.ext.asyncio import create_async_engine

    name = f"helpdesk_durability_{uuid.uuid4().hex[:8]}"
    admin = create_async_engine(admin_url, isolation_level="AUTOCOMMIT")
    async with admin.connect() as conn:
        await conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        url = make_url(admin_url).set(database=name).render_as_string(hide_password=False)
        return await run(mode, database_url=url, database="postgresql", workdir=workdir, events=events)
    finally:
        async with admin.connect() as conn:
            await conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        await admin.dispose()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1000)
    parser.add_argument("--quick", action="store_true", help="200 events")
    parser.add_argument("--postgres", default=os.environ.get("HELPDESK_TEST_POSTGRES_URL"))
    parser.add_argument("--modes", default="kill,term")
    parser.add_argument("--keep", default=None, help="keep the logs and databases in this directory")
    args = parser.parse_args()
    events = 200 if args.quick else args.events
    outcomes: list[Outcome] = []
    base = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="helpdesk-durability-"))
    for mode in args.modes.split(","):
        workdir = base / f"sqlite-{mode}"
        workdir.mkdir(parents=True, exist_ok=True)
        outcomes.append(await run(mode, database_url=f"sqlite+aiosqlite:///{workdir / 'durable.db'}",
                                  database="sqlite", workdir=workdir, events=events))
        print(table(outcomes[-1:]), flush=True)
        if args.postgres:
            workdir = base / f"pg-{mode}"
            workdir.mkdir(parents=True, exist_ok=True)
            outcomes.append(await _postgres(args.postgres, mode, workdir, events))
            print(table(outcomes[-1:]), flush=True)
    print()
    print(table(outcomes))
    print(f"\nlogs in {base}")
    if any(not o.ok for o in outcomes):
        sys.exit(1)


if __name__ == "__main__":
    asyncio.run(main())
