"""The same tests/conversations/ transcripts on the console and on Slack (the real stack both times,
the Slack Web API stand-in): the event streams agree on types, flows, outcomes, actions and tickets.
Teams: test_teams_transcripts.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.channels.console.simulate import load_transcript
from tests.channels.transcript_cases import ALL, CONVERSATIONS, console_events, flows_for
from tests.channels.transcript_slack import slack_transcript_events
from tests.channels.transcript_teams import signature

pytestmark = pytest.mark.clock  # runs again with the system clock a year ahead (.ci/run)


@pytest.mark.parametrize("name", ALL)
async def test_same_transcript_on_console_and_slack(name: str, tmp_path: Path) -> None:
    doc = load_transcript(CONVERSATIONS / f"{name}.yaml")
    console = await console_events(doc, name)
    slack = await slack_transcript_events(doc, tmp_path, flows_dir=flows_for(name), **dict(doc.get("settings") or {}))
    assert signature(console)
    assert signature(slack) == signature(console)
