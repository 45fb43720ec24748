"""An interrupted delivery stays "to be checked" until a check succeeds (issue 20).

When the "was it delivered?" check meets a temporary error (429, 5xx, timeout), the next attempt
must check again rather than send blind: a blind send duplicates a message that had arrived.
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from bot.core.models import Address, Outbound, Platform, Reply
from bot.outbox.worker import Delivery, OutboxWorker, RetryLater
from bot.store.db import create_engine, session_factory
from bot.store.migrate import upgrade
from bot.store.repos import UnitOfWork
from bot.store.tables import OutboxRow

pytestmark = pytest.mark.clock  # runs again with the system clock a year ahead (.ci/run)

KEY = "ticket:HD-1001:relay:1"


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2030, 1, 7, 9, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


class FlakyCheckPlatform:
    """The message already arrived (a crash came after the send); the check fails `check_failures` times."""

    def __init__(self, check_failures: int, error: Exception) -> None:
        self.received: Counter[str] = Counter({KEY: 1})
        self.check_failures = check_failures
        self.error = error
        self.checks = 0

    async def send(self, delivery: Delivery) -> str | None:
        self.received[delivery.idempotency_key] += 1
        return "m-dup"

    async def find_delivered(self, delivery: Delivery) -> str | None:
        self.checks += 1
        if self.checks <= self.check_failures:
            raise self.error
        return "m-1" if self.received[delivery.idempotency_key] else None


async def _interrupted_row(tmp_path: Path, clock: Clock) -> tuple[Any, Any]:
    url = f"sqlite+aiosqlite:///{tmp_path / 'outbox.db'}"
    await upgrade(url)
    engine = create_engine(url)
    sessions = session_factory(engine)
    async with sessions() as session, session.begin():
        # Queued with the same clock the worker reads (one clock governs the code under test).
        UnitOfWork(session, now=clock.now).enqueue(
            Outbound(Address(Platform.CONSOLE, "alice@example.com"), Reply(text="hello")), idempotency_key=KEY)
    async with sessions() as session, session.begin():
        row = (await session.execute(select(OutboxRow))).scalar_one()
        # A worker claimed it, called the platform and died before recording the result.
        row.status, row.attempts, row.locked_by = "sending", 1, "gone:1"
        row.locked_until = clock.now - timedelta(seconds=1)
    return engine, sessions


@pytest.mark.parametrize("error", [RetryLater("429 ratelimited", retry_after=2.0), RetryLater("HTTP 503"),
                                   RetryLater("timeout")], ids=["429", "503", "timeout"])
async def test_check_that_fails_temporarily_is_repeated_before_any_send(tmp_path: Path, error: Exception) -> None:
    clock = Clock()
    engine, sessions = await _interrupted_row(tmp_path, clock)
    platform = FlakyCheckPlatform(check_failures=2, error=error)
    worker = OutboxWorker(sessions, {"console": platform}, clock=clock)
    for _ in range(6):
        await worker.run_once()
        clock.now += timedelta(seconds=400)
    assert platform.checks == 3
    assert platform.received[KEY] == 1  # never sent twice
    async with sessions() as session:
        row = (await session.execute(select(OutboxRow))).scalar_one()
    assert (row.status, row.message_ref) == ("sent", "m-1")
    await engine.dispose()


async def test_row_waiting_for_a_check_is_still_marked_to_be_checked(tmp_path: Path) -> None:
    clock = Clock()
    engine, sessions = await _interrupted_row(tmp_path, clock)
    platform = FlakyCheckPlatform(check_failures=1, error=RetryLater("HTTP 502"))
    worker = OutboxWorker(sessions, {"console": platform}, clock=clock)
    await worker.run_once()
    async with sessions() as session:
        row = (await session.execute(select(OutboxRow))).scalar_one()
    # Not "pending" (which would send blind next time): still "sending", due again after the back-off.
    assert row.status == "sending"
    assert row.locked_until is not None
    await engine.dispose()
