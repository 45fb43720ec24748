"""Block Kit layout within Slack's limits, and the pure payload translation."""

from __future__ import annotations

import json

from bot.channels.slack.blocks import (
    BUTTON_VALUE,
    MESSAGE_BLOCKS,
    SECTION_TEXT,
    V_MORE,
    BlockKit,
    cut,
)
from bot.channels.slack.translate import parse_command, parse_event, parse_view_submission, to_incoming
from bot.core.models import Button, Form, FormField, Platform, PlatformUser, Reply
from bot.render.renderer import Renderer, escape_mrkdwn


def kit() -> BlockKit:
    return BlockKit(Renderer())


def test_cut_never_splits_an_entity_or_a_link() -> None:
    assert cut("ab &amp; cd", 5) == "ab "
    assert cut("see <https://x.example|here> now", 10) == "see "
    assert cut("short", 10) == "short"


def test_long_text_is_split_into_sections_and_the_rest_behind_a_button() -> None:
    text = "\n\n".join(f"Paragraph {n}: " + "word " * 120 for n in range(60))
    message = kit().message(Reply(text=text))
    blocks = message["blocks"]
    assert len(blocks) <= MESSAGE_BLOCKS
    assert all(len(b["text"]["text"]) <= SECTION_TEXT for b in blocks if b["type"] == "section")
    values = [e["value"] for b in blocks if b["type"] == "actions" for e in b["elements"]]
    assert any(v.startswith(V_MORE) for v in values)
    key = next(v for v in values if v.startswith(V_MORE)).removeprefix(V_MORE)
    modal = kit().more_modal(key)  # a fresh kit has no memory of it: a clear note instead
    assert modal["type"] == "modal" and "no longer available" in json.dumps(modal)


def test_many_buttons_become_rows_of_five_with_unique_ids_and_clipped_labels() -> None:
    buttons = tuple(Button("L" * 100 if n == 0 else f"Choice {n}", f"choice:{n}") for n in range(12))
    blocks = kit().message(Reply(text="Pick one", buttons=buttons))["blocks"]
    rows = [b for b in blocks if b["type"] == "actions"]
    assert [len(r["elements"]) for r in rows] == [5, 5, 2]
    ids = [e["action_id"] for r in rows for e in r["elements"]]
    assert len(set(ids)) == len(ids) == 12
    assert len(rows[0]["elements"][0]["text"]["text"]) == 75


def test_an_over_long_button_value_is_sent_as_a_reference() -> None:
    blocks = BlockKit(Renderer())
    long_value = "x" * (BUTTON_VALUE + 10)
    sent = blocks.message(Reply(text="t", buttons=(Button("Go", long_value),)))["blocks"][-1]["elements"][0]["value"]
    assert len(sent) <= BUTTON_VALUE and blocks.resolve_ref(sent) == long_value


def test_user_text_stays_escaped_in_blocks_and_fallback() -> None:
    text = escape_mrkdwn("<!channel> & <@U1>")
    message = kit().message(Reply(text=text))
    assert message["text"] == "&lt;!channel&gt; &amp; &lt;@U1&gt;"
    assert message["blocks"][0]["text"] == {"type": "mrkdwn", "text": message["text"], "verbatim": True}


def test_a_form_becomes_a_button_and_then_a_modal() -> None:
    form = Form("details", "A very long form title that Slack would refuse", (
        FormField("code", "Error code", pattern="[0-9]+"),
        FormField("when", "Since", kind="choice", options=(Button("Today", "today"),), required=False),
        FormField("notes", "Notes", kind="multiline", placeholder="Anything else"),
    ))
    blocks = kit()
    message = blocks.message(Reply(text="Please fill this in", form=form))
    value = message["blocks"][-1]["elements"][0]["value"]
    again = blocks.form_of(value)
    assert again == form
    modal = blocks.modal(form, '{"c":"D1","t":null}')
    assert len(modal["title"]["text"]) <= 24 and modal["callback_id"] == "details"
    inputs = {b["block_id"]: b for b in modal["blocks"] if b["type"] == "input"}
    assert inputs["when"]["optional"] is True and inputs["when"]["element"]["type"] == "static_select"
    assert inputs["notes"]["element"]["multiline"] is True


def test_home_view_stays_under_the_block_limit() -> None:
    sections = [Reply(text=f"Ticket {n}", buttons=(Button("Open", f"t:{n}"),)) for n in range(80)]
    view = kit().home("Welcome", [Button("Help", "cmd:help")], sections)
    assert view["type"] == "home" and len(view["blocks"]) <= 100


def test_translation_of_events_commands_and_views() -> None:
    body = {"team_id": "T1", "event_id": "Ev1", "event": {"type": "message", "channel_type": "im", "channel": "D1",
                                                           "user": "U1", "text": "hi", "ts": "1.1"}}
    inbound = parse_event(body, bot_user_id="UB")
    assert inbound is not None
    incoming = to_incoming(inbound, PlatformUser(Platform.SLACK, "U1", email="a@x"))
    assert incoming.conversation_key == "slack:T1:D1" and incoming.is_direct and incoming.event_id == "Ev1"
    edited = {**body, "event": {**body["event"], "subtype": "message_changed"}}
    assert parse_event(edited) is None
    mention = {"team_id": "T1", "event_id": "Ev2", "event": {"type": "app_mention", "channel": "C1", "user": "U1",
                                                              "text": "<@UB> vpn", "ts": "2.2"}}
    parsed = parse_event(mention, bot_user_id="UB")
    assert parsed is not None and parsed.text == "vpn"
    turn = to_incoming(parsed, PlatformUser(Platform.SLACK, "U1"))
    assert turn.conversation_key == "slack:T1:C1:2.2" and turn.reply_to.thread_id == "2.2" and not turn.is_direct
    command = parse_command({"team_id": "T1", "user_id": "U1", "channel_id": "C1", "text": "", "trigger_id": "tr"})
    assert command.command == "help" and command.needs_dm and command.event_id == "command:tr"
    view = parse_view_submission({"user": {"id": "U1"}, "team": {"id": "T1"}, "trigger_id": "t2", "view": {
        "id": "V1", "callback_id": "details", "private_metadata": "not json",
        "state": {"values": {"b": {"code": {"type": "plain_text_input", "value": "42"}}}}}})
    assert view is not None and view.needs_dm and view.action is not None
    assert view.action.value == "form:details" and view.action.values == {"code": "42"}


def test_manifest_matches_the_code() -> None:
    from pathlib import Path

    import yaml

    from bot.channels.slack.translate import COMMAND, SHORTCUT_CALLBACK

    manifest = yaml.safe_load((Path(__file__).resolve().parents[2] / "config" / "slack-manifest.yaml").read_text())
    features = manifest["features"]
    assert [c["command"] for c in features["slash_commands"]] == [COMMAND]
    assert [s["callback_id"] for s in features["shortcuts"]] == [SHORTCUT_CALLBACK]
    settings = manifest["settings"]
    assert settings["event_subscriptions"]["request_url"].endswith("/slack/events")
    assert settings["interactivity"]["request_url"].endswith("/slack/events")
    assert {"app_home_opened", "app_mention", "message.im"} <= set(settings["event_subscriptions"]["bot_events"])
    assert "users:read.email" in manifest["oauth_config"]["scopes"]["bot"]
