"""Every transcript in tests/conversations/ also passes from the command line (`helpdesk simulate`),
with its `settings:` block applied exactly as the pytest runners apply it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bot.cli import app

pytestmark = pytest.mark.clock  # runs again with the system clock a year ahead (.ci/run)

HERE = Path(__file__).parent
TRANSCRIPTS = sorted(HERE.glob("*.yaml"))


@pytest.mark.parametrize("path", TRANSCRIPTS, ids=[p.stem for p in TRANSCRIPTS])
def test_transcript_passes_from_the_command_line(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if path.name.startswith("tickets_"):
        # The ticket transcripts run against their own flows (as in test_tickets_transcripts.py).
        monkeypatch.setenv("HELPDESK_FLOWS__DIR", str(HERE / "flows"))
    result = CliRunner().invoke(app, ["simulate", str(path), "--json"])
    assert result.exit_code == 0, result.output[-3000:]
    events = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert events, "simulate --json printed no events"


def test_simulate_refuses_a_malformed_settings_block(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("settings: [tickets]\nturns: [{say: hi}]\nexpect: [{type: reply}]\n", encoding="utf-8")
    result = CliRunner().invoke(app, ["simulate", str(bad)])
    assert result.exit_code != 0
    assert "settings:" in result.output


def test_simulate_refuses_an_unquoted_yes_instead_of_sending_true(tmp_path: Path) -> None:
    # YAML reads `say: yes` as the boolean true; sending "True" would test something nobody typed.
    bad = tmp_path / "yes.yaml"
    bad.write_text("turns: [{say: hi}, {say: yes}]\nexpect: [{type: reply}]\n", encoding="utf-8")
    result = CliRunner().invoke(app, ["simulate", str(bad)])
    assert result.exit_code == 2, result.output
    assert "turn 2" in result.output and "quote it" in result.output
