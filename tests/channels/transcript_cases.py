"""Which tests/conversations/ transcripts every channel runs, and the console run they are compared with."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from bot.channels.console.simulate import run_transcript
from bot.settings import load_settings

CONVERSATIONS = Path(__file__).parents[1] / "conversations"
# Transcripts that pass on the console with the shipped flows today (others are being reworked).
REPRESENTATIVE = ("access_request", "human", "out_of_scope", "outage_check", "phone", "security", "smalltalk",
                  "ticket_status")
# Ticket transcripts (several people, the queue) run with their own flows (tests/conversations/flows).
TICKETS = ("tickets_duplicate", "tickets_escalate_claim_relay", "tickets_release_close", "tickets_sla")
ALL = REPRESENTATIVE + TICKETS


def flows_for(name: str) -> str:
    return str(CONVERSATIONS / "flows") if name.startswith("tickets_") else "flows"


_CONSOLE: dict[str, list[dict[str, Any]]] = {}


async def console_events(doc: Mapping[str, Any], name: str) -> list[dict[str, Any]]:
    """The console run (deterministic: a fake clock, one delivery at a time), once per test session
    for the Teams and Slack comparisons."""
    if name not in _CONSOLE:
        extra = dict(doc.get("settings") or {})
        _CONSOLE[name] = await run_transcript(doc, load_settings(flows={"dir": flows_for(name)}, **extra))
    return [dict(e) for e in _CONSOLE[name]]
