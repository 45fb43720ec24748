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
from bot.store.tables import EventRow, InboxRow
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


@pytest.mark.clock
async def test_failed_rows_are_kept_a_month_so_the_help_desk_can_act(sessions: object) -> None:
    clock = Clock()
    inbox = Inbox(sessions, clock=clock, max_attempts=1)  # type: ignore[arg-type]
    done = await inbox.put("slack:Ev1", "slack", {"n": 1})
    failed = await inbox.put("slack:Ev2", "slack", {"n": 2})
    assert done is not None and failed is not None
    await inbox.done(done)
    [item] = [i for i in [await inbox.get(failed)] if i is not None]
    assert await inbox.retry_later(item, "RuntimeError: boom") is False
    clock.now += timedelta(days=8)
    assert await inbox.purge() == 1  # the done row
    assert await inbox.counts() == {"failed": 1}
    clock.now += timedelta(days=21)
    assert await inbox.purge() == 0  # 29 days
    clock.now += timedelta(days=2)
    assert await inbox.purge() == 1
    assert await inbox.counts() == {}


@pytest.mark.clock
async def test_failed_rows_are_listed_without_their_text_and_requeued(sessions: object) -> None:
    clock = Clock()
    inbox = Inbox(sessions, clock=clock, max_attempts=1)  # type: ignore[arg-type]
    ids = []
    for n in range(3):
        row_id = await inbox.put(f"slack:Ev{n}", "slack", {"text": f"my secret message {n}"})
        assert row_id is not None
        ids.append(row_id)
    await inbox.done(ids[0])
    for row_id in ids[1:]:
        item = await inbox.get(row_id)
        assert item is not None
        assert await inbox.retry_later(item, "OperationalError: database is locked") is False
    clock.now += timedelta(minutes=5)

    everything = await inbox.entries()
    assert [e.status for e in everything] == ["done", "failed", "failed"]
    failed = await inbox.entries(failed_only=True)
    assert [(e.id, e.key, e.attempts, e.last_error) for e in failed] == [
        (ids[1], "slack:Ev1", 1, "OperationalError: database is locked"),
        (ids[2], "slack:Ev2", 1, "OperationalError: database is locked")]
    assert not hasattr(failed[0], "payload")

    # Only failed rows are re-queued; a done row or an unknown id is left alone.
    assert await inbox.requeue([ids[0], ids[1], 999_999]) == [ids[1]]
    [entry] = [e for e in await inbox.entries() if e.id == ids[1]]
    assert (entry.status, entry.attempts) == ("pending", 0)
    # Due at once for any replica's poller, and claimed as a first attempt.
    [claimed] = await Inbox(sessions, clock=clock, worker_id="other:1").claim()  # type: ignore[arg-type]
    assert (claimed.id, claimed.attempts, claimed.payload) == (ids[1], 1, {"text": "my secret message 1"})
    assert await inbox.requeue(None, actor="lead@example.com") == [ids[2]]  # --all-failed
    assert await inbox.requeue(None) == []
    assert await inbox.counts() == {"done": 1, "pending": 2}
    # Each re-queue is audited: who, when, which rows (ids and keys, never the text).
    async with sessions() as session:  # type: ignore[operator]
        events = (await session.execute(select(EventRow).where(EventRow.type == "inbox_requeued")
                                        .order_by(EventRow.id))).scalars().all()
    assert [(e.actor, e.data) for e in events] == [
        ("operator", {"count": 1, "ids": [ids[1]], "keys": ["slack:Ev1"]}),
        ("lead@example.com", {"count": 1, "ids": [ids[2]], "keys": ["slack:Ev2"]})]
    assert "secret message" not in str([e.data for e in events])


@pytest.mark.clock
async def test_the_person_is_told_once_per_message_even_when_it_fails_again(sessions: object) -> None:
    clock = Clock()
    inbox = Inbox(sessions, clock=clock, max_attempts=1)  # type: ignore[arg-type]
    row_id = await inbox.put("slack:Ev1", "slack", {"n": 1})
    assert row_id is not None
    item = await inbox.get(row_id)
    assert item is not None
    assert await inbox.retry_later(item, "RuntimeError: a bug") is False
    assert await inbox.tell_once(row_id) is True
    assert await inbox.tell_once(row_id) is False
    assert await inbox.requeue([row_id]) == [row_id]
    [again] = await inbox.claim()
    assert await inbox.retry_later(again, "RuntimeError: the same bug") is False
    assert await inbox.tell_once(row_id) is False
    [entry] = await inbox.entries(failed_only=True)
    assert entry.told_at is not None and entry.last_error == "RuntimeError: the same bug"


async def test_a_stored_error_carries_no_secret_nor_the_statement_parameters(sessions: object) -> None:
    inbox = Inbox(sessions, clock=Clock(), max_attempts=1)  # type: ignore[arg-type]
    row_id = await inbox.put("slack:Ev1", "slack", {"n": 1})
    assert row_id is not None
    item = await inbox.get(row_id)
    assert item is not None
    error = ("OperationalError: (psycopg.OperationalError) connection to postgresql://helpdesk:S3cretPw@db:5432/x "
             "failed; Authorization: Bearer abcdefghijklmnop; client_secret=hunter2hunter2\n"
             "[SQL: INSERT INTO conversations (text) VALUES (%s)]\n[parameters: ('my password is Tr0ub4dor',)]")
    assert await inbox.retry_later(item, error) is False
    [entry] = await inbox.entries(failed_only=True)
    stored = entry.last_error or ""
    assert stored.startswith("OperationalError: (psycopg.OperationalError) connection to postgresql://")
    for leaked in ("S3cretPw", "abcdefghijklmnop", "hunter2hunter2", "Tr0ub4dor", "INSERT INTO"):
        assert leaked not in stored
