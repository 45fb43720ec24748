"""Production settings: demo values only with the demo directory, `serve` refusing real channels with
the demo directory, the Socket Mode hint, and public holidays by country checked at load."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.channels.serve import settings_problems
from bot.settings import SettingsError, load_settings

SHIPPED = Path(__file__).resolve().parents[2] / "config" / "helpdesk.yaml"


def test_the_demo_directory_brings_its_demo_people() -> None:
    settings = load_settings()
    assert settings.directory.backend == "demo"
    assert "tom.tech@example.com" in settings.roles.technicians
    assert settings.roles.admins == ["ada.admin@example.com"]
    assert settings.actions.protected_accounts == ["breakglass@example.com"]
    assert "example.com" in settings.app.hr_contact


@pytest.mark.parametrize("how", ["env", "file"])
def test_a_graph_deploy_inherits_no_demo_values(how: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if how == "env":
        monkeypatch.setenv("HELPDESK_DIRECTORY__BACKEND", "graph")
        settings = load_settings()
    else:
        path = tmp_path / "helpdesk.yaml"
        path.write_text(SHIPPED.read_text().replace("backend: demo ", "backend: graph"), encoding="utf-8")
        settings = load_settings(path)
    assert settings.directory.backend == "graph"
    assert settings.roles.technicians == [] and settings.roles.admins == []
    assert settings.actions.protected_accounts == [] and settings.actions.protected_groups == []
    assert settings.actions.group_access_allowlist == []
    assert settings.tickets.holidays == []
    assert "example.com" not in settings.app.hr_contact + settings.app.facilities_contact
    dumped = str(settings.masked())
    assert "tom.tech" not in dumped and "breakglass" not in dumped


def test_values_set_in_the_file_or_env_win_over_the_demo_ones(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "helpdesk.yaml"
    path.write_text("roles:\n  technicians: [me@acme.com]\n", encoding="utf-8")
    monkeypatch.setenv("HELPDESK_ACTIONS__PROTECTED_ACCOUNTS", '["root@acme.com"]')
    settings = load_settings(path)
    assert settings.roles.technicians == ["me@acme.com"]
    assert settings.roles.admins == ["ada.admin@example.com"]  # not set: the demo's
    assert settings.actions.protected_accounts == ["root@acme.com"]


def test_serve_refuses_real_slack_and_teams_with_the_demo_directory() -> None:
    slack = {"enabled": True, "mode": "http", "bot_token": "xoxb-1", "signing_secret": "s"}
    problems = settings_problems(load_settings(slack=slack))
    assert len(problems) == 1 and "demo directory" in problems[0]
    assert "HELPDESK_DIRECTORY__BACKEND=graph" in problems[0] and "HELPDESK_DIRECTORY__ALLOW_DEMO" in problems[0]
    teams = settings_problems(load_settings(teams={"enabled": True, "app_id": "x"}))
    assert any("Teams is enabled with the demo directory" in p for p in teams)
    # A test workspace may say so; a stand-in API and the Agents Playground are not real people.
    assert settings_problems(load_settings(slack=slack, directory={"allow_demo": True})) == []
    assert settings_problems(load_settings(slack={**slack, "api_url": "http://127.0.0.1:9/api/"})) == []
    assert settings_problems(load_settings(teams={"enabled": True, "allow_anonymous": True})) == []


def test_only_the_app_token_says_socket_mode_needs_the_mode() -> None:
    settings = load_settings(slack={"enabled": True, "bot_token": "xoxb-1", "app_token": "xapp-1"},
                             directory={"allow_demo": True})
    [problem] = settings_problems(settings)
    assert "HELPDESK_SLACK__SIGNING_SECRET" in problem and "HELPDESK_SLACK__MODE=socket" in problem
    socket = load_settings(slack={"enabled": True, "mode": "socket", "bot_token": "xoxb-1", "app_token": "xapp-1"},
                           directory={"allow_demo": True})
    assert settings_problems(socket) == []


def test_holiday_country_and_subdivision_are_checked_at_load() -> None:
    settings = load_settings(tickets={"holiday_country": "DE", "holiday_subdivision": "BY"})
    assert settings.tickets.holiday_country == "DE"
    with pytest.raises(SettingsError) as caught:
        load_settings(tickets={"holiday_country": "XX"})
    assert "tickets" in str(caught.value) and "XX" in str(caught.value)
    with pytest.raises(SettingsError, match="holiday_subdivision needs holiday_country"):
        load_settings(tickets={"holiday_subdivision": "BY"})
