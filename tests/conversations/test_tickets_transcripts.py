"""Ticket transcripts (tests/conversations/tickets_*.yaml) through the whole pipeline."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.channels.console.simulate import check_expectations, load_transcript, run_transcript
from bot.settings import load_settings

pytestmark = pytest.mark.clock  # runs again with the system clock a year ahead (.ci/run)

HERE = Path(__file__).parent
TRANSCRIPTS = sorted(HERE.glob("tickets_*.yaml"))


@pytest.mark.parametrize("path", TRANSCRIPTS, ids=[p.stem for p in TRANSCRIPTS])
async def test_ticket_transcript(path: Path) -> None:
    doc = load_transcript(path)
    settings = load_settings(flows={"dir": str(HERE / "flows")}, **doc.get("settings", {}))
    events = await run_transcript(doc, settings)
    problems = check_expectations(events, doc.get("expect") or [])
    assert not problems, "\n".join(problems)
