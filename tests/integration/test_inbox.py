"""The inbox (bot/store/inbox.py): a delivery is stored once, claimed by one replica at a time,
reclaimed from a crashed one, handed back on shutdown; on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from bot.store.db import create_engine, session_factory
from bot.store.inbox import Inbox
from bot.store.migrate import upgrade
from bot.store.tables import InboxRow
from tests.integration.pg_scratch import scratch_database


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2030, 1, 7, 9, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


@contextlib.asynccontextmanager
async def _database(kind: str, tmp_path: Path) -> AsyncIterator[str]:
    if kind == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'inbox.db'}"
    else:
        async with scratch_database("helpdesk_inbox_unit") as url:
            yield url


@pytest.fixture(params=["sqlite", "postgresql"])
async def sessions(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[object]:
    async with _database(request.param, tmp_path) as url:
        await upgrade(url)
        engine = create_engine(url)
        try:
            yield session_factory(engine)
        finally:
            await engine.dispose()


async def test_a_redelivery_is_stored_once(sessions: object) -> None:
    inbox = Inbox(sessions, clock=Clock())  # type: ignore[arg-type]
    first = await inbox.put("slack:Ev1", "slack", {"text": "hi"})
    assert first is not None
    assert await inbox.put("slack:Ev1", "slack", {"text": "hi"}) is None
    assert await inbox.counts() == {"pending": 1}


async def test_replicas_never_claim_the_same_row(sessions: object) -> None:
    clock = Clock()
    writer = Inbox(sessions, clock=clock, worker_id="host:1")  # type: ignore[arg-type]
    for n in range(60):
        await writer.put(f"slack:Ev{n}", "slack", {"n": n}, claim=False)
    replicas = [Inbox(sessions, clock=clock, worker_id=f"host:{100 + i}") for i in range(4)]  # type: ignore[arg-type]

    async def grab(inbox: Inbox) -> list[int]:
        got: list[int] = []
        while True:
            items = await inbox.claim(7)
            if not items:
                return got
            got.extend(i.id for i in items)

    claimed = await asyncio.gather(*(grab(r) for r in replicas))
    every = [row for rows in claimed for row in rows]
    assert len(every) == 60 and len(set(every)) == 60


async def test_a_crashed_replicas_rows_are_claimed_after_the_lease(sessions: object) -> None:
    clock = Clock()
    crashed = Inbox(sessions, clock=clock, lease_seconds=30, worker_id="elsewhere:1")  # type: ignore[arg-type]
    row_id = await crashed.put("slack:Ev1", "slack", {"n": 1})  # claimed by its writer, which then dies
    other = Inbox(sessions, clock=clock, worker_id="elsewhere:2")  # type: ignore[arg-type]
    assert await other.claim() == []
    clock.now += timedelta(seconds=31)
    items = await other.claim()
    assert [i.id for i in items] == [row_id] and items[0].attempts == 2
    await other.done(row_id)
    clock.now += timedelta(hours=1)
    assert await other.claim() == []


async def test_rows_of_a_dead_process_on_this_host_are_due_at_once(sessions: object) -> None:
    import socket

    clock = Clock()
    dead = Inbox(sessions, clock=clock, worker_id=f"{socket.gethostname()}:999999999")  # type: ignore[arg-type]
    await dead.put("slack:Ev1", "slack", {"n": 1})
    alive = Inbox(sessions, clock=clock)  # type: ignore[arg-type]
    assert await alive.claim() == []
    assert await alive.recover_orphans() == 1
    assert len(await alive.claim()) == 1


async def test_release_hands_unfinished_rows_back_and_retry_gives_up_after_the_last_attempt(sessions: object) -> None:
    clock = Clock()
    inbox = Inbox(sessions, clock=clock, max_attempts=2)  # type: ignore[arg-type]
    row_id = await inbox.put("slack:Ev1", "slack", {"n": 1})
    assert row_id is not None
    await inbox.release([row_id])
    [item] = await inbox.claim()
    assert await inbox.retry_later(item, "boom") is False  # attempt 2 of 2
    async with sessions() as session:  # type: ignore[operator]
        row = (await session.execute(select(InboxRow))).scalar_one()
    assert (row.status, row.last_error) == ("failed", "boom")


async def test_handled_rows_are_purged_after_a_week_and_pending_ones_never(sessions: object) -> None:
    clock = Clock()
    inbox = Inbox(sessions, clock=clock)  # type: ignore[arg-type]
    done = await inbox.put("slack:Ev1", "slack", {"n": 1})
    assert done is not None
    await inbox.done(done)
    await inbox.put("slack:Ev2", "slack", {"n": 2}, claim=False)
    clock.now += timedelta(days=6)
    assert await inbox.purge() == 0
    clock.now += timedelta(days=2)
    assert await inbox.purge() == 1
    assert await inbox.counts() == {"pending": 1}
