"""Outbox pacing: token buckets per lane and per platform, 429 pauses, `outbox:` references,
crash-resume without duplicates or gaps. Time is a fake clock: no stopwatch assertions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from bot.core.models import Address, Outbound, Platform, Reply
from bot.outbox.worker import Delivery, OutboxWorker, Pacing, RetryLater, TokenBucket
from bot.store.db import create_engine, session_factory
from bot.store.migrate import upgrade
from bot.store.repos import UnitOfWork
from bot.store.tables import OutboxRow

pytestmark = pytest.mark.clock  # runs again with the system clock a year ahead (.ci/run)


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


class RecordingSender:
    """Records every platform call; can rate-limit or 'crash' on demand."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.sent: list[tuple[str, str, str, datetime]] = []  # (kind, key, ref, at)
        self.delivered: dict[str, str] = {}
        self.limit_next: int = 0

    async def send(self, delivery: Delivery) -> str | None:
        if self.limit_next:
            self.limit_next -= 1
            raise RetryLater("ratelimited", retry_after=5)
        kind = str(delivery.payload.get("kind"))
        ref = str(delivery.payload.get("update_ref") or f"ts-{delivery.id}")
        self.sent.append((kind, delivery.idempotency_key, ref, self.clock()))
        self.delivered[delivery.idempotency_key] = ref
        return ref

    async def find_delivered(self, delivery: Delivery) -> str | None:
        return self.delivered.get(delivery.idempotency_key)


async def _setup(tmp_path: Path, clock: Clock) -> Any:
    url = f"sqlite+aiosqlite:///{tmp_path / 'pace.db'}"
    await upgrade(url)
    engine = create_engine(url)
    return engine, session_factory(engine)


async def _enqueue(sessions: Any, clock: Clock, rows: list[tuple[str, str, str | None]]) -> None:
    """rows: (conversation id, idempotency key, update_ref)"""
    async with sessions() as session, session.begin():
        uow = UnitOfWork(session, now=clock())
        for conversation, key, ref in rows:
            uow.enqueue(Outbound(Address(Platform.SLACK, conversation), Reply(text=key), update_ref=ref),
                        idempotency_key=key, kind="update" if ref else "post")


async def _run_for(worker: OutboxWorker, clock: Clock, seconds: float, step: float = 0.05) -> None:
    elapsed = 0.0
    while elapsed < seconds:
        await worker.run_once()
        clock.advance(step)
        elapsed += step


def test_token_bucket_allows_burst_then_rate() -> None:
    bucket = TokenBucket(rate=2.0, burst=3, now=0.0)
    taken = 0
    t = 0.0
    while t < 10.0:
        if bucket.ready(t):
            bucket.take(t)
            taken += 1
        t += 0.01
    assert 3 + 2 * 10 - 1 <= taken <= 3 + 2 * 10 + 1


async def test_one_lane_is_paced_to_its_rate(tmp_path: Path) -> None:
    clock = Clock()
    engine, sessions = await _setup(tmp_path, clock)
    sender = RecordingSender(clock)
    await _enqueue(sessions, clock, [("C1", f"k{i}", None) for i in range(30)])
    worker = OutboxWorker(sessions, {"slack": sender}, clock=clock,
                          pacing=Pacing(lane_rate={"slack": 2.0}, lane_burst=1))
    start = clock()
    await _run_for(worker, clock, 30.0)
    await engine.dispose()
    assert len(sender.sent) == 30
    took = (sender.sent[-1][3] - start).total_seconds()
    # N rows on one lane at rate r take at least (N - burst) / r.
    assert took >= (30 - 1) / 2.0 * 0.95
    assert took <= (30 - 1) / 2.0 * 1.2
    assert [k for _, k, _, _ in sender.sent] == [f"k{i}" for i in range(30)]  # in order


async def test_global_rate_bounds_many_lanes(tmp_path: Path) -> None:
    clock = Clock()
    engine, sessions = await _setup(tmp_path, clock)
    sender = RecordingSender(clock)
    await _enqueue(sessions, clock, [(f"D{i}", f"k{i}", None) for i in range(200)])
    worker = OutboxWorker(sessions, {"slack": sender}, clock=clock, batch=50,
                          pacing=Pacing(lane_rate={"slack": 1.0}, global_rate={"slack": 20.0}, global_burst=5))
    start = clock()
    await _run_for(worker, clock, 20.0, step=0.02)
    await engine.dispose()
    assert len(sender.sent) == 200 and len({k for _, k, _, _ in sender.sent}) == 200
    took = (sender.sent[-1][3] - start).total_seconds()
    bound = 200 / 20.0
    assert bound * 0.9 <= took <= bound * 1.15, took


async def test_rate_limit_pauses_lane_without_using_attempts(tmp_path: Path) -> None:
    clock = Clock()
    engine, sessions = await _setup(tmp_path, clock)
    sender = RecordingSender(clock)
    sender.limit_next = 20  # more 429s than max_attempts
    await _enqueue(sessions, clock, [("C1", "k0", None), ("C2", "other", None)])
    worker = OutboxWorker(sessions, {"slack": sender}, clock=clock, max_attempts=3,
                          pacing=Pacing(lane_rate={"slack": 1.0}))
    for _ in range(40):
        await worker.run_once()
        clock.advance(6)
    async with sessions() as session:
        rows = {r.idempotency_key: r for r in (await session.execute(select(OutboxRow))).scalars()}
    await engine.dispose()
    assert rows["k0"].status == "sent" and rows["other"].status == "sent"


async def test_update_waits_for_its_post_and_uses_its_message_id(tmp_path: Path) -> None:
    clock = Clock()
    engine, sessions = await _setup(tmp_path, clock)
    sender = RecordingSender(clock)
    # The edit is older than its post in the queue (enqueued in another lane order): it must wait.
    await _enqueue(sessions, clock, [("C9", "edit", "outbox:post")])
    clock.advance(1)
    await _enqueue(sessions, clock, [("C8", "post", None), ("C7", "edit-orphan", "outbox:missing")])
    worker = OutboxWorker(sessions, {"slack": sender}, clock=clock)
    for _ in range(5):
        await worker.run_once()
        clock.advance(1.5)
    async with sessions() as session:
        rows = {r.idempotency_key: r for r in (await session.execute(select(OutboxRow))).scalars()}
    await engine.dispose()
    post_ref = rows["post"].message_ref
    assert post_ref and rows["edit"].status == "sent" and rows["edit"].message_ref == post_ref
    assert ("update", "edit", post_ref) in [(k, i, r) for k, i, r, _ in sender.sent]
    assert rows["edit-orphan"].status == "cancelled"


async def test_crash_midway_resumes_without_duplicates_or_gaps(tmp_path: Path) -> None:
    clock = Clock()
    engine, sessions = await _setup(tmp_path, clock)
    sender = RecordingSender(clock)
    await _enqueue(sessions, clock, [(f"D{i}", f"k{i}", None) for i in range(100)])
    first = OutboxWorker(sessions, {"slack": sender}, clock=clock, worker_id="dead:1", lease_seconds=30)
    await first.run_once()
    # Crash: a claim whose sends reached the platform (half of them) but were never recorded.
    claimed = await first.claim()
    for delivery in claimed[: len(claimed) // 2]:
        await sender.send(delivery)
    clock.advance(31)  # the lease runs out
    second = OutboxWorker(sessions, {"slack": sender}, clock=clock, worker_id="new:2")
    await second.drain()
    async with sessions() as session:
        statuses = [r.status for r in (await session.execute(select(OutboxRow))).scalars()]
    await engine.dispose()
    keys = [k for _, k, _, _ in sender.sent]
    assert sorted(set(keys)) == sorted(f"k{i}" for i in range(100))  # no gap
    assert len(keys) == 100  # no duplicate
    assert statuses == ["sent"] * 100
