"""The same transcripts on the console and on Teams give the same conversation.

`tests/conversations/*.yaml` did not exist yet when this was written; these sample transcripts in
tests/channels/transcripts/ use the same format as `helpdesk simulate`. The console run is
`run_transcript` itself; the Teams run turns each `say`/`click`/`form` into a real-shaped activity
posted to /api/messages, reads the cards that reached the Bot Connector stand-in to find the
button or form, and reads the event stream back from the audit trail. Both must agree on the
event types, flows, outcomes, actions and tickets."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy import select

import bot.app as app_module
from bot.channels.console.simulate import run_transcript
from bot.store.tables import EventRow
from tests.channels.conftest import TeamsBot, make_bot, teams_settings
from tests.channels.teams_support import (
    ALICE_CHAT,
    FakeActions,
    FakeDesk,
    FakeKb,
    FakeResolver,
    personal_message,
    personal_submit,
)
from tests.standins.bot_connector import BotConnectorStandIn

TRANSCRIPTS = sorted((Path(__file__).parent / "transcripts").glob("*.yaml"))
COMPARED = ("flow", "outcome", "name", "ok", "category", "intent")


def signature(events: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    keep = [e for e in events if e["type"] not in {"turn", "delivered", "teams_installed", "reply"}]
    return [(e["type"], *(e.get(k) for k in COMPARED)) for e in keep]


async def console_events(doc: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    settings = teams_settings(tmp_path / "console")
    real_build = app_module.build_app

    async def build_with_fakes(*args: Any, **kwargs: Any) -> Any:
        app = await real_build(*args, **kwargs)
        resolver = FakeResolver()
        app.resolver = app.pipeline.resolver = resolver
        app.pipeline.actions, app.pipeline.kb = FakeActions(), FakeKb()
        desk = FakeDesk()
        app.pipeline.tickets = desk
        # A small fake desk stands in for bot/tickets here.
        app.pipeline.handlers = [h for h in app.pipeline.handlers if type(h).__name__ != "TicketHandler"]
        app.pipeline.add_handler(desk)
        return app

    monkeypatch.setattr(app_module, "build_app", build_with_fakes)
    try:
        return await run_transcript(doc, settings)
    finally:
        monkeypatch.setattr(app_module, "build_app", real_build)


async def teams_events(doc: dict[str, Any], bot: TeamsBot) -> list[dict[str, Any]]:
    url = bot.standin.url
    for turn in doc["turns"]:
        if "say" in turn:
            await bot.post(personal_message(url, str(turn["say"])))
        elif "click" in turn:
            card = bot.standin.posts(ALICE_CHAT)[-1]
            wanted = str(turn["click"])
            data = next(a["data"] for a in bot.standin.actions(card) if a["title"] == wanted)
            await bot.post(personal_submit(url, data))
        elif "form" in turn:
            card = bot.standin.posts(ALICE_CHAT)[-1]
            data = dict(bot.standin.actions(card)[0]["data"])
            data.update({f"f_{k}": str(v) for k, v in turn["form"].items()})
            await bot.post(personal_submit(url, data))
    async with bot.app.sessions() as session:
        rows = (await session.execute(select(EventRow).order_by(EventRow.id))).scalars()
        return [{"type": r.type, **r.data} for r in rows]


@pytest.mark.parametrize("path", TRANSCRIPTS, ids=[p.stem for p in TRANSCRIPTS])
async def test_same_transcript_on_console_and_teams(path: Path, tmp_path: Path, standin: BotConnectorStandIn,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    console = await console_events(doc, tmp_path, monkeypatch)
    bot = await make_bot(teams_settings(tmp_path / "teams"), standin)
    try:
        teams = await teams_events(doc, bot)
    finally:
        await bot.client.aclose()
        await bot.app.aclose()
    assert signature(teams) == signature(console)
    assert any(e["type"] == "flow_ended" for e in teams)
    # Teams got as many bot messages as the console printed replies (cards instead of text).
    replies = [e for e in console if e["type"] == "reply"]
    assert len(bot.standin.posts(ALICE_CHAT)) == len(replies)
