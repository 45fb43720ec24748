"""Faults at the command line end in one clear line, not a traceback (issue 20): a database that
cannot be reached at start-up, transcripts of the wrong shape or encoding, `triage TEXT --json`."""

from __future__ import annotations

import asyncio
import io
import json
import logging
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bot.cli import app

UNREACHABLE = "postgresql+asyncpg://postgres@127.0.0.1:1/helpdesk?password=hunter2"


def _one_line(output: str) -> str:
    lines = [line for line in output.splitlines() if line.strip()]
    assert len(lines) == 1, output
    assert "Traceback" not in output and "hunter2" not in output
    return lines[0]


@pytest.mark.parametrize("args", [["db", "upgrade"], ["chat", "--as", "alice@example.com"], ["serve"]])
def test_unreachable_database_at_start_up_is_one_line(monkeypatch: pytest.MonkeyPatch, args: list[str]) -> None:
    monkeypatch.setenv("HELPDESK_DATABASE__URL", UNREACHABLE)
    monkeypatch.setenv("HELPDESK_DATABASE__CONNECT_RETRIES", "0")
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2
    line = _one_line(result.output)
    assert line.startswith("helpdesk: cannot use the database at postgresql+asyncpg://postgres@127.0.0.1:1/")
    assert "password=***" in line


def test_missing_postgres_database_for_db_upgrade_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.conftest import _pg_reachable

    if _pg_reachable() is not None:
        pytest.skip("PostgreSQL not reachable")
    monkeypatch.setenv("HELPDESK_DATABASE__URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/no_such_db_h20b")
    result = CliRunner().invoke(app, ["db", "upgrade"])
    assert result.exit_code == 2
    assert 'database "no_such_db_h20b" does not exist' in _one_line(result.output)


async def test_worker_logs_one_line_per_failed_poll_and_keeps_polling() -> None:
    from bot.logs import configure_logging
    from bot.outbox.worker import OutboxWorker
    from bot.store.db import create_engine, session_factory

    stream = io.StringIO()
    configure_logging("text", "INFO", stream=stream)
    engine = create_engine(UNREACHABLE)
    worker = OutboxWorker(session_factory(engine), {}, poll_seconds=0.05)
    task = asyncio.create_task(worker.run_forever())
    try:
        await asyncio.sleep(0.6)
        assert not task.done()  # still polling
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await engine.dispose()
        logging.getLogger().handlers.clear()
    lines = [line for line in stream.getvalue().splitlines() if "outbox worker" in line]
    assert len(lines) >= 2, stream.getvalue()
    assert all("database unavailable" in line for line in lines)
    assert "Traceback" not in stream.getvalue() and "hunter2" not in stream.getvalue()


@pytest.mark.parametrize(("content", "expected"), [
    (b"as: [alice@example.com, bob@example.com]\nturns:\n  - say: hi\n", "`as:` must be one email address"),
    (b"turns:\n  - say: hi\n    as: [a@x.com]\n", "turn 1: `as:` must be one email address"),
    (b"turns: hello\n", "`turns:` must be a list"),
    (b"turns:\n  - say: caf\xe9\n", "not UTF-8 text"),
])
def test_bad_transcripts_are_one_clear_line(tmp_path: Path, content: bytes, expected: str) -> None:
    path = tmp_path / "t.yaml"
    path.write_bytes(content)
    result = CliRunner().invoke(app, ["simulate", str(path)])
    assert result.exit_code == 2
    assert expected in _one_line(result.output)


def test_triage_text_then_json_as_the_readme_shows() -> None:
    result = CliRunner().invoke(app, ["triage", "vpn keeps dropping", "--json"])
    assert result.exit_code == 0, result.output
    record = json.loads(result.output)
    assert record["text"] == "vpn keeps dropping" and record["intent"]
    before = CliRunner().invoke(app, ["triage", "--json", "vpn keeps dropping"])
    assert json.loads(before.output)["intent"] == record["intent"]
