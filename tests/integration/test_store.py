"""Migrations from empty on both databases; dedup; conversation state under concurrency."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from sqlalchemy import func, inspect, select

from bot.channels.console.channel import text_incoming
from bot.store.db import create_engine, session_factory
from bot.store.migrate import upgrade
from bot.store.tables import ConversationRow, EventRow, ProcessedEventRow
from tests.helpers import GREETING_FLOW, INTAKE_FLOW, settings_with_flows

pytestmark = pytest.mark.clock  # runs again with the system clock a year ahead (.ci/run)


async def test_migrations_from_empty(db_url: str) -> None:
    await upgrade(db_url)
    await upgrade(db_url)  # a second run is a no-op
    engine = create_engine(db_url)
    async with engine.connect() as conn:
        tables = await conn.run_sync(lambda sync: set(inspect(sync).get_table_names()))
    await engine.dispose()
    assert {"people", "person_identities", "conversations", "events", "processed_events", "outbox",
            "alembic_version"} <= tables


async def test_db_upgrade_command_creates_sqlite_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from bot.cli import app

    monkeypatch.setenv("HELPDESK_APP__DATA_DIR", str(tmp_path / "fresh"))
    result = await asyncio.to_thread(CliRunner().invoke, app, ["db", "upgrade"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "fresh" / "helpdesk.db").exists()


async def _app(tmp_path: Path, url: str):  # type: ignore[no-untyped-def]
    from bot.app import build_app

    await upgrade(url)
    settings = settings_with_flows(tmp_path, INTAKE_FLOW, GREETING_FLOW)
    return await build_app(settings, database_url=url)


async def test_duplicate_event_ids_change_nothing(db_url: str, tmp_path: Path) -> None:
    app = await _app(tmp_path, db_url)
    try:
        first = await app.pipeline.handle(text_incoming("alice@example.com", "my monitor is broken", event_id="E1"))
        again = await app.pipeline.handle(text_incoming("alice@example.com", "my monitor is broken", event_id="E1"))
        assert not first.duplicate and first.replies
        assert again.duplicate and not again.replies and not again.events
        async with app.sessions() as session:
            starts = await session.scalar(select(func.count()).select_from(EventRow)
                                          .where(EventRow.type == "flow_started"))
            seen = await session.scalar(select(func.count()).select_from(ProcessedEventRow))
        assert starts == 1 and seen == 1
    finally:
        await app.aclose()


async def test_redelivery_racing_the_first_delivery_is_dropped(db_url: str, tmp_path: Path) -> None:
    """A Slack retry can arrive while the first delivery is still being handled (another replica)."""
    app_a = await _app(tmp_path, db_url)
    app_b = await _app(tmp_path, db_url)
    try:
        results = await asyncio.gather(*[
            app.pipeline.handle(text_incoming("bob@example.com", "keyboard does not work", event_id="E-race"))
            for app in (app_a, app_b, app_a, app_b)
        ])
        assert sum(not r.duplicate for r in results) == 1
    finally:
        await app_a.aclose()
        await app_b.aclose()


@pytest.mark.postgres
async def test_concurrent_messages_never_corrupt_a_conversation(pg_url: str, tmp_path: Path) -> None:
    """Two replicas, one conversation, answers arriving at the same moment: every answer is applied
    exactly once, in some order, and the version counts every message."""
    replicas = [await _app(tmp_path, pg_url) for _ in range(3)]
    try:
        await replicas[0].pipeline.handle(text_incoming("alice@example.com", "my monitor is broken", event_id="s"))
        answers = ["laptop", "since monday", "just me"]
        await asyncio.gather(*[
            replicas[n].pipeline.handle(text_incoming("alice@example.com", text, event_id=f"a{n}"))
            for n, text in enumerate(answers)
        ])
        async with replicas[0].sessions() as session:
            row = await session.get(ConversationRow, "console:alice@example.com")
            ended = await session.scalar(select(func.count()).select_from(EventRow)
                                         .where(EventRow.type == "flow_ended"))
        assert row is not None
        assert row.version == 4  # one start + three answers, none lost
        assert row.flow_id is None and ended == 1  # all three questions answered, flow finished
        async with replicas[0].sessions() as session:
            replies = (await session.scalars(select(EventRow.data).where(EventRow.type == "reply")
                                             .order_by(EventRow.id))).all()
        final = replies[-1]["text"]
        assert all(answer in final for answer in answers)
    finally:
        for app in replicas:
            await app.aclose()


async def test_state_survives_restart(tmp_path: Path, sqlite_url: str) -> None:
    app = await _app(tmp_path, sqlite_url)
    await app.pipeline.handle(text_incoming("alice@example.com", "my monitor is broken"))
    await app.pipeline.handle(text_incoming("alice@example.com", "laptop"))
    await app.aclose()
    app = await _app(tmp_path, sqlite_url)
    try:
        result = await app.pipeline.handle(text_incoming("alice@example.com", "yesterday"))
        assert result.replies[0].reply.text == "Anyone else affected?"
    finally:
        await app.aclose()


async def test_unknown_person_gets_a_clear_answer(tmp_path: Path, sqlite_url: str) -> None:
    app = await _app(tmp_path, sqlite_url)
    try:
        result = await app.pipeline.handle(text_incoming("mallory@evil.example", "reset the CEO's password"))
        assert "couldn't find your account" in result.replies[0].reply.text
        assert [e["type"] for e in result.events] == ["person_unknown", "reply"]
        assert result.events[1]["text"] == result.replies[0].reply.text  # every reply seen is an event
    finally:
        await app.aclose()


@pytest.mark.parametrize("status", [None, 500])
async def test_directory_down_reply_is_an_event_and_says_what_happened(tmp_path: Path, sqlite_url: str,
                                                                        status: int | None) -> None:
    """`simulate --json` shows the "directory unavailable" reply; a 500 is an error from Microsoft
    365, not "can't reach"."""
    from bot.graph.directory import Unavailable

    app = await _app(tmp_path, sqlite_url)

    class Down:
        async def resolve(self, user: object) -> None:
            raise Unavailable("get_user: HTTP 500" if status else "Graph unreachable", status=status)

    app.pipeline.resolver = Down()
    try:
        result = await app.pipeline.handle(text_incoming("alice@example.com", "my vpn is broken"))
        text = result.replies[0].reply.text
        assert [e["type"] for e in result.events] == ["directory_unavailable", "reply"]
        assert result.events[1]["text"] == text
        if status:
            assert "answered with an error" in text and "can't reach" not in text
        else:
            assert "can't reach the company directory" in text
    finally:
        await app.aclose()


async def test_huge_message_is_handled_and_bounded(tmp_path: Path, sqlite_url: str) -> None:
    app = await _app(tmp_path, sqlite_url)
    try:
        await app.pipeline.handle(text_incoming("alice@example.com", "my monitor is broken"))
        result = await app.pipeline.handle(text_incoming("alice@example.com", "x" * 10_000_000))
        assert result.replies
        async with app.sessions() as session:
            row = await session.get(ConversationRow, "console:alice@example.com")
        assert row is not None and len(row.slots["device"]) <= 4000
    finally:
        await app.aclose()


async def test_state_events_and_outbox_commit_together(tmp_path: Path, sqlite_url: str) -> None:
    """A crash in the middle of a turn leaves nothing half-written."""
    from bot.core.models import Address, Outbound, Platform, Reply

    app = await _app(tmp_path, sqlite_url)

    class Boom(Exception):
        pass

    class Crashing:
        async def handle(self, turn):  # type: ignore[no-untyped-def]
            turn.emit("something")
            turn.send(Outbound(Address(Platform.CONSOLE, "tom.tech@example.com"), Reply("hi")), idempotency_key="k1")
            raise Boom

    app.pipeline.add_handler(Crashing())
    try:
        with pytest.raises(Boom):
            await app.pipeline.handle(text_incoming("alice@example.com", "hello", event_id="crash-1"))
        async with app.sessions() as session:
            assert await session.scalar(select(func.count()).select_from(EventRow)) == 0
            assert await session.scalar(select(func.count()).select_from(ProcessedEventRow)) == 0
        app.pipeline.handlers.clear()
        retried = await app.pipeline.handle(text_incoming("alice@example.com", "hello", event_id="crash-1"))
        assert not retried.duplicate  # the crashed attempt did not mark the event as handled
    finally:
        await app.aclose()


async def test_sessions_factory_roundtrip(sqlite_url: str) -> None:
    await upgrade(sqlite_url)
    engine = create_engine(sqlite_url)
    sessions = session_factory(engine)
    async with sessions() as session:
        assert await session.scalar(select(func.count()).select_from(EventRow)) == 0
    await engine.dispose()
