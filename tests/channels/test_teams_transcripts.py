"""The same tests/conversations/ transcripts on the console and on Teams (the real stack both times):
the event streams agree on types, flows, outcomes, actions and tickets (transcript_teams.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.channels.console.simulate import load_transcript
from tests.channels.teams_real import real_settings
from tests.channels.transcript_cases import ALL, CONVERSATIONS, console_events, flows_for
from tests.channels.transcript_teams import signature, teams_transcript_events
from tests.standins.bot_connector import BotConnectorStandIn

pytestmark = pytest.mark.clock  # runs again with the system clock a year ahead (.ci/run)


@pytest.mark.parametrize("name", ALL)
async def test_same_transcript_on_console_and_teams(name: str, tmp_path: Path) -> None:
    doc = load_transcript(CONVERSATIONS / f"{name}.yaml")
    console = await console_events(doc, name)
    standin = await BotConnectorStandIn().start()
    try:
        settings = real_settings(tmp_path, flows_dir=flows_for(name), **dict(doc.get("settings") or {}))
        teams = await teams_transcript_events(doc, settings, standin)
    finally:
        await standin.stop()
    assert signature(console)
    assert signature(teams) == signature(console)
