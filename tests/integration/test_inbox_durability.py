"""Nothing acknowledged is lost (issue 20): SIGKILL and SIGTERM of a real `helpdesk serve` during a
burst of signed Slack events, then a restart: every acknowledged message is answered exactly once,
on SQLite and on PostgreSQL. (bench/durability.py runs the same with 1,000 events.)"""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from tests.integration.durability import run, table
from tests.integration.pg_scratch import scratch_database

EVENTS = 150


@pytest.mark.timeout(400)
@pytest.mark.parametrize("mode", ["kill", "term"])
async def test_sqlite_every_acknowledged_message_is_answered_once(tmp_path: Path, mode: str) -> None:
    outcome = await run(mode, database_url=f"sqlite+aiosqlite:///{tmp_path / 'durable.db'}", database="sqlite",
                        workdir=tmp_path, events=EVENTS)
    print(table([outcome]))
    assert outcome.acked, "nothing was acknowledged"
    assert outcome.missing == [], f"acknowledged but never answered: {outcome.missing[:10]}"
    assert outcome.duplicates == [], f"answered twice: {outcome.duplicates[:10]}"
    if mode == "term":
        # uvicorn drains, shuts down, then re-raises the signal it caught: -SIGTERM (or 0).
        assert outcome.exit_code in (0, -signal.SIGTERM), f"serve ended with {outcome.exit_code}"


@pytest.mark.timeout(400)
@pytest.mark.parametrize("mode", ["kill", "term"])
async def test_postgres_every_acknowledged_message_is_answered_once(tmp_path: Path, mode: str) -> None:
    async with scratch_database("helpdesk_inbox") as url:
        outcome = await run(mode, database_url=url, database="postgresql", workdir=tmp_path, events=EVENTS)
    print(table([outcome]))
    assert outcome.acked, "nothing was acknowledged"
    assert outcome.missing == [], f"acknowledged but never answered: {outcome.missing[:10]}"
    assert outcome.duplicates == [], f"answered twice: {outcome.duplicates[:10]}"
    if mode == "term":
        # uvicorn drains, shuts down, then re-raises the signal it caught: -SIGTERM (or 0).
        assert outcome.exit_code in (0, -signal.SIGTERM), f"serve ended with {outcome.exit_code}"
