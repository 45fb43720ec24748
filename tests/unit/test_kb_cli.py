"""`helpdesk kb ...` as scripts and the held-out check drive it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bot.kb.cli import app, parse_since

pytestmark = pytest.mark.clock  # runs again with the system clock a year ahead (.ci/run)

REPO = Path(__file__).resolve().parents[2]
KB = str(REPO / "kb_articles")
runner = CliRunner()


def test_search_jsonl_one_line_per_query_best_first() -> None:
    stdin = '{"query": "forgot my pasword"}\n\n{"query": "recipe for lasagna"}\nvpn wont conect\n'
    result = runner.invoke(app, ["search", "--jsonl", "--kb", KB, "--limit", "3"], input=stdin)
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [line["query"] for line in lines] == ["forgot my pasword", "recipe for lasagna", "vpn wont conect"]
    first = lines[0]["hits"]
    assert first[0]["id"] == "reset-forgotten-password" and set(first[0]) == {"id", "title", "score"}
    assert len(first) <= 3 and [h["score"] for h in first] == sorted(
        (h["score"] for h in first), reverse=True
    )
    # Nothing answers it: at most the nearest articles by meaning, scoring far below a real answer.
    assert all(h["score"] < first[0]["score"] / 2 for h in lines[1]["hits"])
    assert lines[2]["hits"][0]["id"] == "vpn-wont-connect"


def test_search_json_and_text() -> None:
    result = runner.invoke(app, ["search", "outlook crashes", "--kb", KB, "--json"])
    payload = json.loads(result.stdout)
    assert payload["confidence"] == "high" and payload["hits"][0]["id"] == "outlook-not-opening"
    text = runner.invoke(app, ["search", "outlook crashes", "--kb", KB, "--limit", "1"])
    assert "Outlook will not open" in text.stdout


def test_search_on_foreign_articles_without_front_matter(tmp_path: Path) -> None:
    (tmp_path / "q1.md").write_text("# How can I change my billing address?\n\nGo to Settings.\n")
    (tmp_path / "q2.md").write_text("# How do I cancel my order?\n\nUse Orders > Cancel.\n")
    result = runner.invoke(
        app, ["search", "--jsonl", "--kb", str(tmp_path)], input='{"query": "cancle order"}\n'
    )
    assert json.loads(result.stdout)["hits"][0]["id"] == "q2"


def test_lint_reports_file_and_line_and_fails_on_errors(tmp_path: Path) -> None:
    (tmp_path / "ok.md").write_text("# Fine\n\nText.\n")
    (tmp_path / "bad.md").write_text("---\ntitle: x\nsummary: [oops\n---\n")
    result = runner.invoke(app, ["lint", "--kb", str(tmp_path)])
    assert result.exit_code == 1
    assert f"{tmp_path / 'bad.md'}:3: error:" in result.stdout
    assert "1 article(s) loaded" in result.stdout
    clean = runner.invoke(app, ["lint", "--kb", KB, "--strict"])
    assert clean.exit_code == 0, clean.stdout


def test_parse_since() -> None:
    from datetime import UTC, datetime

    now = datetime(2025, 6, 30, tzinfo=UTC)
    assert parse_since("30d", now) == datetime(2025, 5, 31, tzinfo=UTC)
    assert parse_since("2025-06-01", now) == datetime(2025, 6, 1, tzinfo=UTC)
    assert parse_since(None, now) is None
