from __future__ import annotations

from pathlib import Path

import pytest

from bot.settings import SettingsError, load_settings


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "helpdesk.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults_load_from_the_shipped_file() -> None:
    settings = load_settings()
    assert settings.directory.backend == "demo"
    assert settings.database_url.startswith("sqlite+aiosqlite:///")
    assert settings.config_file is not None and settings.config_file.name == "helpdesk.yaml"


def test_env_overrides_nested_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HELPDESK_DATABASE__URL", "postgresql+asyncpg://bot:pw@db/helpdesk")
    monkeypatch.setenv("HELPDESK_LOG__FORMAT", "json")
    monkeypatch.setenv("HELPDESK_TRIAGE__START_THRESHOLD", "0.7")
    settings = load_settings()
    assert settings.database_url == "postgresql+asyncpg://bot:pw@db/helpdesk"
    assert settings.log.format == "json"
    assert settings.triage.start_threshold == 0.7
    # Keys the environment did not touch keep the file's values.
    assert settings.database.pool_size == 10


def test_helpdesk_config_names_another_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path, "app:\n  name: Acme IT\n")
    monkeypatch.setenv("HELPDESK_CONFIG", str(path))
    assert load_settings().app.name == "Acme IT"


def test_invalid_value_names_file_line_key_and_expectation(tmp_path: Path) -> None:
    path = write(tmp_path, "app:\n  name: x\nlog:\n  format: xml\n")
    with pytest.raises(SettingsError) as caught:
        load_settings(path)
    message = str(caught.value)
    assert f"{path}:4" in message
    assert "log.format" in message
    assert "'text' or 'json'" in message


def test_unknown_key_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, "database:\n  uri: sqlite://\n")
    with pytest.raises(SettingsError, match=r"database\.uri.*Extra inputs are not permitted"):
        load_settings(path)


def test_invalid_env_value_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HELPDESK_SERVER__PORT", "not-a-port")
    with pytest.raises(SettingsError, match=r"server\.port"):
        load_settings()


def test_secret_in_file_stops_startup(tmp_path: Path) -> None:
    path = write(tmp_path, "slack:\n  enabled: true\n  bot_token: xoxb-123-456-abcdefabcdef\n")
    with pytest.raises(SettingsError) as caught:
        load_settings(path)
    message = str(caught.value)
    assert f"{path}:3" in message and "HELPDESK_SLACK__BOT_TOKEN" in message
    assert "xoxb-123" not in message


def test_malformed_yaml_is_reported_with_line(tmp_path: Path) -> None:
    path = write(tmp_path, "app:\n  name: [unclosed\n")
    with pytest.raises(SettingsError, match=rf"{path}:\d+: not valid YAML"):
        load_settings(path)


def test_masked_hides_secrets_and_url_passwords(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HELPDESK_SLACK__BOT_TOKEN", "xoxb-secret-token-value")
    monkeypatch.setenv("HELPDESK_GRAPH__CLIENT_SECRET", "graph-secret-value")
    monkeypatch.setenv("HELPDESK_DATABASE__URL", "postgresql+asyncpg://bot:hunter2@db/helpdesk")
    dumped = str(load_settings().masked())
    assert "xoxb-secret" not in dumped and "graph-secret" not in dumped and "hunter2" not in dumped
    assert "********" in dumped


def test_config_check_command_masks(monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from bot.cli import app

    monkeypatch.setenv("HELPDESK_SLACK__SIGNING_SECRET", "s3cr3t-signing")
    result = CliRunner().invoke(app, ["config", "check"])
    assert result.exit_code == 0, result.output
    assert "s3cr3t" not in result.output and "signing_secret" in result.output


def test_config_check_reports_invalid_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from bot.cli import app

    monkeypatch.setenv("HELPDESK_LOG__LEVEL", "LOUD")
    result = CliRunner().invoke(app, ["config", "check"])
    assert result.exit_code == 2
    assert "log.level" in result.output


# ----- issue 20/17: secrets never echoed, the environment checked like the file -------------------

@pytest.mark.parametrize("yaml_text", [
    "slack:\n  bot_tokn: xoxb-LEAKED-123456\n",
    "slack:\n  Bot_Token: xoxb-LEAKED-123456\n",
    "graph:\n  clientsecret: xoxb-LEAKED-123456\n",
])
def test_misspelt_secret_key_in_file_is_named_not_echoed(tmp_path: Path, yaml_text: str) -> None:
    path = write(tmp_path, yaml_text)
    with pytest.raises(SettingsError) as caught:
        load_settings(path)
    message = str(caught.value)
    key = yaml_text.split("\n")[1].split(":")[0].strip()
    assert key in message and "Extra inputs are not permitted" in message
    assert "LEAKED" not in message and "input_value" not in message


@pytest.mark.parametrize("name", [
    "HELPDESK_SLACK__BOT_TOKN", "HELPDESK_GRAPH__CLIENTSECRET", "HELPDESK_SLAK__BOT_TOKEN"])
def test_misspelt_secret_in_env_is_named_not_echoed(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    monkeypatch.setenv(name, "xoxb-LEAKED-123456")
    with pytest.raises(SettingsError) as caught:
        load_settings()
    message = str(caught.value)
    assert name in message and "LEAKED" not in message


def test_wrongly_cased_env_secret_is_accepted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HELPDESK_SLACK__Bot_Token", "xoxb-fine-123456")
    settings = load_settings()
    assert settings.slack.bot_token is not None
    assert settings.slack.bot_token.get_secret_value() == "xoxb-fine-123456"


def test_unknown_env_variable_is_refused_with_did_you_mean(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HELPDESK_DATABSE__URL", "postgresql+asyncpg://bot:hunter2@db/helpdesk")
    with pytest.raises(SettingsError) as caught:
        load_settings()
    message = str(caught.value)
    assert "HELPDESK_DATABSE__URL: unknown setting (did you mean HELPDESK_DATABASE__URL?)" in message
    assert "hunter2" not in message


@pytest.mark.parametrize("value", ["a@x.com,b@x.com", " a@x.com , b@x.com ", '["a@x.com", "b@x.com"]'])
def test_list_values_from_env(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("HELPDESK_ROLES__TECHNICIANS", value)
    assert load_settings().roles.technicians == ["a@x.com", "b@x.com"]


def test_malformed_json_list_from_env_is_one_clear_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HELPDESK_ROLES__ADMINS", '["a@x.com",')
    with pytest.raises(SettingsError) as caught:
        load_settings()
    message = str(caught.value)
    assert "HELPDESK_ROLES__ADMINS: expected a list" in message
    assert "Traceback" not in message and len(message.splitlines()) == 2


def test_malformed_json_in_dict_env_var_is_one_clear_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HELPDESK_OUTBOX__LANE_RATE_PER_SECOND", "{slack: 2")
    with pytest.raises(SettingsError) as caught:
        load_settings()
    message = str(caught.value)
    assert "HELPDESK_OUTBOX__LANE_RATE_PER_SECOND: expected a JSON object" in message
    assert len(message.splitlines()) == 2


def test_dict_env_var_as_json_and_by_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HELPDESK_OUTBOX__LANE_RATE_PER_SECOND", '{"slack": 2.5}')
    monkeypatch.setenv("HELPDESK_OUTBOX__GLOBAL_RATE_PER_SECOND__teams", "7")
    settings = load_settings()
    assert settings.outbox.lane_rate_per_second["slack"] == 2.5
    assert settings.outbox.global_rate_per_second["teams"] == 7.0


def test_wrong_list_item_type_names_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HELPDESK_TRIAGE__START_THRESHOLD", "high")
    with pytest.raises(SettingsError, match=r"HELPDESK_TRIAGE__START_THRESHOLD.*triage\.start_threshold"):
        load_settings()


def test_db_password_in_url_query_is_masked(monkeypatch: pytest.MonkeyPatch) -> None:
    from bot.settings import mask_url

    monkeypatch.setenv("HELPDESK_DATABASE__URL", "postgresql+asyncpg://bot@db/helpdesk?password=hunter2&ssl=require")
    masked = load_settings().masked()["database"]["url"]
    assert "hunter2" not in masked and "ssl=require" in masked
    assert mask_url("postgresql+asyncpg://bot:pw@db/h?sslpassword=x1y2") == "postgresql+asyncpg://bot:***@db/h?sslpassword=***"
