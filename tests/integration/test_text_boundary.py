"""Size and shape at the boundary (issue 20), on SQLite and PostgreSQL: a NUL byte in a problem
description still opens the ticket, and a 10 MB message is answered without being kept whole."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from sqlalchemy import select

from bot.channels.console.channel import click_incoming, text_incoming
from bot.core.text import MAX_TEXT_CHARS
from bot.settings import load_settings
from bot.store.tables import ConversationRow, EventRow, TicketRow

ROOT = Path(__file__).resolve().parents[2]


def _settings(tmp_path: Path) -> Any:
    return load_settings(ROOT / "config" / "helpdesk.yaml", app={"data_dir": str(tmp_path)},
                         flows={"dir": str(ROOT / "flows")}, kb={"dir": str(ROOT / "kb_articles")})


def _button(result: Any, label: str) -> str:
    for outbound in result.replies:
        for button in outbound.reply.buttons:
            if button.label == label:
                return str(button.value)
    raise AssertionError(f"no {label!r} button in {[o.reply.text for o in result.replies]}")


async def _escalate(app: Any, email: str, problem: str) -> Any:
    await app.pipeline.handle(text_incoming(email, "I need to talk to a person", event_id="b1"))
    asked = await app.pipeline.handle(text_incoming(email, problem, event_id="b2"))
    return await app.pipeline.handle(click_incoming(email, _button(asked, "I can't work"), event_id="b3"))


async def test_nul_byte_in_a_problem_description_opens_the_ticket(migrated: str, tmp_path: Path) -> None:
    from bot.app import build_app

    app = await build_app(_settings(tmp_path), database_url=migrated)
    try:
        done = await _escalate(app, "alice@example.com", "Outlook\x00 crashes\x07 on start")
        assert "HD-" in "\n".join(o.reply.text for o in done.replies)
        async with app.sessions() as session:
            ticket = (await session.execute(select(TicketRow))).scalar_one()
        assert "Outlook crashes on start" in ticket.summary + str(ticket.details) + str(ticket.transcript)
    finally:
        await app.aclose()


async def test_ten_megabyte_message_is_answered_and_capped(migrated: str, tmp_path: Path) -> None:
    from bot.app import build_app

    app = await build_app(_settings(tmp_path), database_url=migrated)
    huge = "my laptop is slow " + "x" * (10 * 1024 * 1024)
    try:
        result = await app.pipeline.handle(text_incoming("alice@example.com", huge, event_id="big"))
        assert result.replies
        async with app.sessions() as session:
            rows = (await session.execute(select(ConversationRow))).scalars().all()
            events = (await session.execute(select(EventRow))).scalars().all()
        kept = sum(len(json.dumps(r.slots)) + len(json.dumps(r.data)) for r in rows)
        logged = sum(len(json.dumps(e.data)) for e in events)
        assert kept < 3 * MAX_TEXT_CHARS and logged < 3 * MAX_TEXT_CHARS, (kept, logged)
        stored = json.dumps([r.slots for r in rows] + [r.data for r in rows] + [e.data for e in events])
        if "x" * 100 in stored:
            assert "message truncated" in stored
    finally:
        await app.aclose()
