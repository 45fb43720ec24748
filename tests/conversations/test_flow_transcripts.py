"""Every flow and every self-service action, end to end: the transcripts in tests/conversations/
(except tickets_*.yaml, which have their own runner and flows) run through the whole pipeline with
the default settings: the real flows/, kb_articles/ and the demo directory."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.channels.console.simulate import check_expectations, load_transcript, run_transcript
from bot.settings import load_settings

pytestmark = pytest.mark.clock  # runs again with the system clock a year ahead (.ci/run)

HERE = Path(__file__).parent
TRANSCRIPTS = sorted(p for p in HERE.glob("*.yaml") if not p.name.startswith("tickets_"))
FLOWS = sorted(p.stem for p in (HERE.parent.parent / "flows").glob("*.yaml"))
ACTIONS = ("reset_password", "account_status", "revoke_sessions", "mfa_reset", "request_group_access",
           "device_actions", "set_out_of_office", "storage_quota")


def test_every_flow_and_action_has_transcripts() -> None:
    names = {p.stem for p in TRANSCRIPTS}
    missing = [f for f in FLOWS if f not in names or f"{f}_failure" not in names]
    missing += [f"action_{a}_{kind}" for a in ACTIONS for kind in ("ok", "fail") if f"action_{a}_{kind}" not in names]
    assert not missing, f"transcripts missing: {missing}"


@pytest.mark.parametrize("path", TRANSCRIPTS, ids=[p.stem for p in TRANSCRIPTS])
async def test_flow_transcript(path: Path) -> None:
    doc = load_transcript(path)
    expected = doc.get("expect") or []
    assert any("type" in e for e in expected), f"{path.name}: a transcript must expect something"
    settings = load_settings(**doc.get("settings", {}))
    events = await run_transcript(doc, settings)
    problems = check_expectations(events, expected)
    replies = [e.get("text", "") for e in events if e["type"] == "reply"]
    assert not problems, "\n".join(problems) + "\n--- replies:\n" + "\n".join(map(str, replies))
