"""`helpdesk purge`, `helpdesk person export|forget`: the command-line side of retention."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bot.cli import app
from bot.store.migrate import upgrade


@pytest.fixture
def database(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    url = f"sqlite+aiosqlite:///{tmp_path / 'cli.db'}"
    asyncio.run(upgrade(url))
    monkeypatch.setenv("HELPDESK_DATABASE__URL", url)
    monkeypatch.setenv("HELPDESK_LOG__LEVEL", "WARNING")
    return url


def test_person_export_prints_json(database: str) -> None:
    result = CliRunner().invoke(app, ["person", "export", "Nobody@Example.com"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["email"] == "nobody@example.com" and data["tickets"] == [] and data["events"] == []


def test_person_forget_asks_first_and_refuses_what_is_not_an_email(database: str) -> None:
    runner = CliRunner()
    declined = runner.invoke(app, ["person", "forget", "alice@example.com"], input="n\n")
    assert declined.exit_code == 1 and "nothing changed" in declined.output
    assert runner.invoke(app, ["person", "forget", "alice", "--yes"]).exit_code == 2
    done = runner.invoke(app, ["person", "forget", "alice@example.com", "--yes", "--as", "dpo@example.com"])
    assert done.exit_code == 0 and "forgotten:" in done.output


def test_purge_runs_and_zero_days_is_refused(database: str, monkeypatch: pytest.MonkeyPatch) -> None:
    runner = CliRunner()
    ran = runner.invoke(app, ["purge", "--days", "30"])
    assert ran.exit_code == 0 and "purged text older than 30 days" in ran.output
    monkeypatch.setenv("HELPDESK_RETENTION__MESSAGE_DAYS", "0")
    refused = runner.invoke(app, ["purge"])
    assert refused.exit_code == 2 and "keep everything" in refused.output


def test_person_forget_says_which_records_in_the_ticket_system_to_erase_there(
        database: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from bot.store import retention

    async def forgotten(sessions: object, email: str, **_: object) -> retention.Forgotten:
        return retention.Forgotten({"tickets": 1}, [
            {"ticket_ref": "HD-1005", "system": "jira", "remote_key": "ITHELP-12",
             "url": "https://example.atlassian.net/servicedesk/customer/portal/1/ITHELP-12"},
            {"ticket_ref": "HD-1006", "system": "servicenow", "remote_key": "INC0010012", "url": ""},
            {"ticket_ref": "HD-1007", "system": "jira", "remote_key": "", "url": ""}])

    monkeypatch.setattr(retention, "forget_person", forgotten)
    done = CliRunner().invoke(app, ["person", "forget", "alice@example.com", "--yes"])
    assert done.exit_code == 0, done.output
    assert "tickets 1" in done.output
    assert ("also in Jira: ITHELP-12 https://example.atlassian.net/servicedesk/customer/portal/1/ITHELP-12 "
            "(ticket HD-1005): erase it there; the bot cannot") in done.output
    assert "also in ServiceNow: INC0010012 (ticket HD-1006): erase it there; the bot cannot" in done.output
    assert ("also in Jira: the record of HD-1007 being created as this ran (its summary starts [HD-1007]) "
            "(ticket HD-1007)") in done.output


def test_person_forget_with_nothing_elsewhere_says_nothing_about_it(database: str) -> None:
    done = CliRunner().invoke(app, ["person", "forget", "alice@example.com", "--yes"])
    assert done.exit_code == 0 and "also in" not in done.output
