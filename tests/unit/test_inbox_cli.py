"""`helpdesk inbox list|retry`: a delivery that failed for good is visible and can be handled again."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from bot.cli import app
from bot.store.db import create_engine, session_factory
from bot.store.inbox import Inbox
from bot.store.migrate import upgrade
from bot.store.tables import EventRow, InboxRow

pytestmark = pytest.mark.clock  # stamps come from an injected clock; the CLI prints them, never "ago"

AT = datetime(2030, 1, 7, 9, 0, tzinfo=UTC)


async def _fill(url: str) -> list[int]:
    engine = create_engine(url)
    try:
        inbox = Inbox(session_factory(engine), clock=lambda: AT, max_attempts=1)
        ids = []
        for n, text in enumerate(["my password is hunter2 please reset", "vpn down", "printer"]):
            row_id = await inbox.put(f"slack:Ev{n}", "slack", {"text": text})
            assert row_id is not None
            ids.append(row_id)
        await inbox.done(ids[0])
        for row_id in ids[1:]:
            item = await inbox.get(row_id)
            assert item is not None
            await inbox.retry_later(item, "OperationalError: (sqlite3.OperationalError) database is locked "
                                          "while the turn was writing its state; " + "x" * 200)
        return ids
    finally:
        await engine.dispose()


async def _rows(url: str) -> tuple[list[InboxRow], list[EventRow]]:
    engine = create_engine(url)
    try:
        async with session_factory(engine)() as session:
            rows = list((await session.execute(select(InboxRow).order_by(InboxRow.id))).scalars().all())
            events = list((await session.execute(select(EventRow).where(EventRow.type == "inbox_requeued")))
                          .scalars().all())
            return rows, events
    finally:
        await engine.dispose()


@pytest.fixture
def database(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[str, list[int]]:
    url = f"sqlite+aiosqlite:///{tmp_path / 'cli.db'}"
    asyncio.run(upgrade(url))
    monkeypatch.setenv("HELPDESK_DATABASE__URL", url)
    monkeypatch.setenv("HELPDESK_LOG__LEVEL", "WARNING")
    return url, asyncio.run(_fill(url))


def test_list_shows_failed_rows_without_the_message_text(database: tuple[str, list[int]]) -> None:
    _, ids = database
    result = CliRunner().invoke(app, ["inbox", "list", "--failed"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].split() == ["ID", "PLATFORM", "KEY", "ATTEMPTS", "STATUS", "SINCE", "LAST", "ERROR"]
    assert [line.split()[:5] for line in lines[1:3]] == [
        [str(ids[1]), "slack", "slack:Ev1", "1", "failed"], [str(ids[2]), "slack", "slack:Ev2", "1", "failed"]]
    assert "2030-01-07 09:00" in lines[1] and "database is locked" in lines[1]
    assert "x" * 100 not in result.output  # the error is truncated
    for text in ("hunter2", "vpn down", "printer"):
        assert text not in result.output
    assert "helpdesk inbox retry" in result.output  # says what to do next
    everything = CliRunner().invoke(app, ["inbox", "list"])
    assert everything.exit_code == 0 and "slack:Ev0" in everything.output and " done " in everything.output


def test_retry_requeues_the_named_rows_and_says_what_happens_next(database: tuple[str, list[int]]) -> None:
    url, ids = database
    result = CliRunner().invoke(app, ["inbox", "retry", str(ids[1]), "--as", "lead@example.com"])
    assert result.exit_code == 0, result.output
    assert f"re-queued 1 failed delivery (row {ids[1]})" in result.output
    assert "duplicate" in result.output and "told" in result.output
    rows, events = asyncio.run(_rows(url))
    assert [(r.status, r.attempts, r.locked_until) for r in rows] == [
        ("done", 1, None), ("pending", 0, None), ("failed", 1, None)]
    assert [e.actor for e in events] == ["lead@example.com"]


def test_retry_all_failed_and_rows_that_cannot_be_requeued(database: tuple[str, list[int]]) -> None:
    url, ids = database
    runner = CliRunner()
    mixed = runner.invoke(app, ["inbox", "retry", str(ids[0]), str(ids[1]), "4242"])
    assert mixed.exit_code == 1, mixed.output
    assert f"re-queued 1 failed delivery (row {ids[1]})" in mixed.output
    assert f"row {ids[0]} not re-queued: it is done, not failed" in mixed.output
    assert "row 4242 not re-queued: no such row" in mixed.output
    rest = runner.invoke(app, ["inbox", "retry", "--all-failed"])
    assert rest.exit_code == 0 and f"re-queued 1 failed delivery (row {ids[2]})" in rest.output
    nothing = runner.invoke(app, ["inbox", "retry", "--all-failed"])
    assert nothing.exit_code == 0 and "no failed deliveries to re-queue" in nothing.output
    empty = runner.invoke(app, ["inbox", "list", "--failed"])
    assert empty.exit_code == 0 and "no failed deliveries" in empty.output
    rows, _ = asyncio.run(_rows(url))
    assert [r.status for r in rows] == ["done", "pending", "pending"]


def test_retry_needs_ids_or_all_failed_but_not_both(database: tuple[str, list[int]]) -> None:
    url, ids = database
    runner = CliRunner()
    neither = runner.invoke(app, ["inbox", "retry"])
    assert neither.exit_code == 2 and "row ids or --all-failed" in neither.output
    both = runner.invoke(app, ["inbox", "retry", str(ids[1]), "--all-failed"])
    assert both.exit_code == 2 and "not both" in both.output
    assert runner.invoke(app, ["inbox", "retry", "abc"]).exit_code == 2
    rows, events = asyncio.run(_rows(url))
    assert [r.status for r in rows] == ["done", "failed", "failed"] and events == []
