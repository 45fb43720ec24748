"""The same tests/conversations/ transcripts on the console and on Teams (the real stack both times):
the event streams agree on types, flows, outcomes, actions and tickets."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.channels.console.simulate import load_transcript, run_transcript
from bot.settings import load_settings
from tests.channels.teams_real import real_settings
from tests.channels.transcript_teams import signature, teams_transcript_events
from tests.standins.bot_connector import BotConnectorStandIn

CONVERSATIONS = Path(__file__).parents[1] / "conversations"
# Transcripts that pass on the console with the shipped flows today (others are being reworked).
REPRESENTATIVE = ("access_request", "human", "out_of_scope", "outage_check", "phone", "security", "smalltalk",
                  "ticket_status")
# Ticket transcripts run with their own flows (tests/conversations/flows).
TICKETS = ("tickets_duplicate", "tickets_escalate_claim_relay", "tickets_release_close", "tickets_sla")


def _flows(name: str) -> str:
    return str(CONVERSATIONS / "flows") if name.startswith("tickets_") else "flows"


@pytest.mark.parametrize("name", REPRESENTATIVE + TICKETS)
async def test_same_transcript_on_console_and_teams(name: str, tmp_path: Path) -> None:
    doc = load_transcript(CONVERSATIONS / f"{name}.yaml")
    extra = dict(doc.get("settings") or {})
    console = await run_transcript(doc, load_settings(flows={"dir": _flows(name)}, **extra))
    standin = await BotConnectorStandIn().start()
    try:
        teams = await teams_transcript_events(doc, real_settings(tmp_path, flows_dir=_flows(name), **extra), standin)
    finally:
        await standin.stop()
    assert signature(teams) == signature(console)
    assert signature(console)
