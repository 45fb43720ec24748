"""The console channel only translates: lines in, numbered choices and prompts out."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bot.channels.console.channel import (
    click_incoming,
    format_reply,
    pick_button,
    text_incoming,
)
from bot.core.models import Button, Platform, Reply
from tests.helpers import GREETING_FLOW, INTAKE_FLOW, write_flows

FORM_FLOW = """
id: hardware
title: Broken equipment
category: hardware
triggers:
  examples: ["my dock is broken"]
steps:
  - id: kind
    kind: ask
    text: What kind of problem?
    slot: kind
    input: choice
    choices:
      - {label: Broken, value: broken}
      - {label: Missing, value: missing}
  - id: details
    kind: ask
    input: form
    text: A few details please.
    title: Equipment details
    fields:
      - {name: asset_tag, label: Asset tag, pattern: "[A-Z]{2}-\\\\d{4}"}
      - {name: location, label: Location, required: false}
  - id: done
    kind: end
    text: "Noted {{ kind }} {{ asset_tag }} at {{ location or 'unknown place' }}."
"""


def test_text_and_click_become_incoming() -> None:
    incoming = text_incoming("Alice@Example.com", "/helpdesk mine")
    assert incoming.platform is Platform.CONSOLE
    assert incoming.conversation_key == "console:alice@example.com"
    assert incoming.sender.email == "alice@example.com"
    assert incoming.command == "mine"
    click = click_incoming("alice@example.com", "choice:yes")
    assert click.action is not None and click.action.value == "choice:yes" and click.text is None


def test_buttons_are_numbered_and_picked_by_number_or_label() -> None:
    buttons = (Button("Yes, reset it", "confirm:yes"), Button("No", "confirm:no"))
    shown = format_reply(Reply("Reset your password?", buttons=buttons))
    assert "[1] Yes, reset it" in shown and "[2] No" in shown
    assert pick_button(buttons, "2") == buttons[1]
    assert pick_button(buttons, "yes, reset it") == buttons[0]
    assert pick_button(buttons, "maybe") is None
    assert "only you can see this" in format_reply(Reply("secret", private=True))


def test_chat_session_end_to_end(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`helpdesk chat`: a typed conversation with a choice and a form, through the whole pipeline."""
    flows = write_flows(tmp_path / "flows", FORM_FLOW, GREETING_FLOW)
    monkeypatch.setenv("HELPDESK_FLOWS__DIR", str(flows))
    monkeypatch.setenv("HELPDESK_APP__DATA_DIR", str(tmp_path / "data"))
    typed = iter(["my dock is broken", "1", "AB-1234", "desk 4", "quit"])
    monkeypatch.setattr("builtins.input", lambda prompt="": next(typed))
    from bot.cli import app

    result = CliRunner().invoke(app, ["chat", "--as", "bob@example.com"])
    assert result.exit_code == 0, result.output
    out = result.output
    assert "chatting as bob@example.com" in out
    assert "What kind of problem?" in out and "[1] Broken" in out
    assert "Equipment details" in out
    assert "Noted broken AB-1234 at desk 4." in out


def test_simulate_prints_json_events(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    flows = write_flows(tmp_path / "flows", INTAKE_FLOW, GREETING_FLOW, FORM_FLOW)
    monkeypatch.setenv("HELPDESK_FLOWS__DIR", str(flows))
    transcript = tmp_path / "t.yaml"
    transcript.write_text(
        "as: bob@example.com\n"
        "turns:\n"
        "  - say: my dock is broken\n"
        "  - click: Missing\n"
        "  - form: {asset_tag: 'bad tag'}\n"
        "  - form: {asset_tag: AB-1234, location: HQ}\n"
        "expect:\n"
        "  - {type: flow_started, flow: hardware}\n"
        "  - {type: reply, text: '~doesn''t look right'}\n"
        "  - {type: flow_ended, flow: hardware, outcome: resolved}\n",
        encoding="utf-8",
    )
    from bot.cli import app

    result = CliRunner().invoke(app, ["simulate", str(transcript), "--json"])
    assert result.exit_code == 0, result.output
    events = [json.loads(line) for line in result.output.splitlines() if line.strip()]
    assert all("type" in e for e in events)
    types = [e["type"] for e in events]
    assert "flow_started" in types and "reply" in types and types[-1] == "flow_ended"
    reply = next(e for e in events if e["type"] == "reply")
    assert set(reply) >= {"text", "buttons"}


def test_simulate_reports_an_unknown_button(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    flows = write_flows(tmp_path / "flows", FORM_FLOW, GREETING_FLOW)
    monkeypatch.setenv("HELPDESK_FLOWS__DIR", str(flows))
    transcript = tmp_path / "t.yaml"
    transcript.write_text("turns:\n  - say: my dock is broken\n  - click: Purple\n", encoding="utf-8")
    from bot.cli import app

    result = CliRunner().invoke(app, ["simulate", str(transcript)])
    assert result.exit_code == 2
    assert "no button 'Purple'" in result.output and "Broken, Missing" in result.output


def test_simulate_fails_on_unmet_expectation(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    flows = write_flows(tmp_path / "flows", GREETING_FLOW)
    monkeypatch.setenv("HELPDESK_FLOWS__DIR", str(flows))
    transcript = tmp_path / "t.yaml"
    transcript.write_text("turns:\n  - say: hello\nexpect:\n  - {type: ticket_created}\n", encoding="utf-8")
    from bot.cli import app

    result = CliRunner().invoke(app, ["simulate", str(transcript)])
    assert result.exit_code == 1
    assert "EXPECTATION FAILED" in result.output


def test_console_renderer_prints_user_text_verbatim() -> None:
    from bot.render.renderer import Renderer

    text = Renderer().text(Platform.CONSOLE, source="You said: {{ said }}", context={"said": "<!channel> & co"})
    assert text == "You said: <!channel> & co"


def test_slack_rendering_escapes_user_text() -> None:
    from bot.render.renderer import Renderer

    renderer = Renderer()
    said = "<!channel> <@U123> <https://evil|click here> & more"
    text = renderer.text(Platform.SLACK, source="You said: {{ said }} about {{ t|bold }}",
                         context={"said": said, "t": "<x>"})
    assert text == ("You said: &lt;!channel&gt; &lt;@U123&gt; &lt;https://evil|click here&gt; &amp; more "
                    "about *&lt;x&gt;*")
    teams = renderer.text(Platform.TEAMS, source="{{ said }}", context={"said": "[click](https://evil) *x*"})
    assert "[" not in teams.replace("\\[", "") and "\\*x\\*" in teams


def test_chat_output_stream_is_plain(tmp_path: Path) -> None:
    from bot.channels.console.chat import ConsoleChat

    out = io.StringIO()
    chat = ConsoleChat(app=None, email="a@b.c", out=out)
    chat.show(Reply("hello", buttons=(Button("One", "1"),)))
    assert out.getvalue() == "bot> hello\n   [1] One\n"


def test_an_unknown_helpdesk_command_is_read_as_a_request(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    transcript = tmp_path / "t.yaml"
    transcript.write_text(
        "turns:\n  - say: /helpdesk my vpn wont connect\n"
        "expect:\n  - {type: triaged, intent: vpn}\n  - {type: flow_started, flow: vpn}\n",
        encoding="utf-8")
    from bot.cli import app

    result = CliRunner().invoke(app, ["simulate", str(transcript), "--json"])
    assert result.exit_code == 0, result.output


async def test_a_recalled_notice_is_said_not_printed_as_an_empty_line() -> None:
    from bot.channels.console.chat import ConsoleChat

    out = io.StringIO()
    chat = ConsoleChat(app=None, email="alice@example.com", out=out)
    await chat._delivered("alice@example.com", Reply(text=""), "delete", None)  # type: ignore[arg-type]
    await chat._delivered("alice@example.com", Reply(text="  "), "update", None)  # type: ignore[arg-type]
    lines = out.getvalue().splitlines()
    assert lines == ["bot> (an earlier notice was withdrawn)"]
