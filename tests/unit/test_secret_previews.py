"""A secret is shown exactly, only in the message body, and never in what a notification preview
shows: Slack's `text`, Teams' activity `summary` and card `fallbackText` (issue 13)."""

from __future__ import annotations

import json

import pytest

from bot.channels.slack.blocks import BlockKit
from bot.channels.teams.cards import message_activity
from bot.core.models import SECRET_PREVIEW, Platform, Reply
from bot.render.renderer import Renderer

# Markdown marks that a TextBlock, mrkdwn or a stripping preview would alter or drop.
SECRETS = ["*e5%LJdH5BjTDy3L", "a_b_c*d*e`f`g", "&<x>#$%?@!=+-", "__x__**y**~z~"]


def secret_reply(renderer: Renderer, platform: Platform, value: str) -> Reply:
    parts = {"label": "Your Temporary Access Pass", "value": value, "advice": "Use it at aka.ms/mysecurityinfo."}
    text = renderer.text(platform, template="secret_once", context={"secret": value, **parts})
    return Reply(text=text, private=True, secret=True, template="secret_once", rich={"secret": parts})


@pytest.mark.parametrize("value", SECRETS)
def test_teams_summary_and_fallback_never_hold_the_secret_and_the_card_shows_it_exactly(value: str) -> None:
    renderer = Renderer()
    activity = message_activity(renderer, secret_reply(renderer, Platform.TEAMS, value))
    card = activity["attachments"][0]["content"]
    assert activity["summary"] == SECRET_PREVIEW and card["fallbackText"] == SECRET_PREVIEW
    runs = [i for b in card["body"] if b["type"] == "RichTextBlock" for i in b["inlines"]]
    assert [r["text"] for r in runs] == [value]  # a TextRun: markdown is not applied
    blocks = [b["text"] for b in card["body"] if b["type"] == "TextBlock"]
    assert blocks[0] == "Your Temporary Access Pass:"
    assert all(value not in t for t in blocks)


@pytest.mark.parametrize("value", SECRETS)
def test_slack_notification_text_never_holds_the_secret_and_the_block_shows_it_exactly(value: str) -> None:
    renderer = Renderer()
    message = BlockKit(renderer).message(secret_reply(renderer, Platform.SLACK, value))
    assert message["text"] == SECRET_PREVIEW
    literal = [b for b in message["blocks"] if b["type"] == "rich_text"]
    assert literal[0]["elements"][0]["elements"][0]["text"] == value  # rich text: no mrkdwn
    sections = json.dumps([b for b in message["blocks"] if b["type"] == "section"])
    assert "Your Temporary Access Pass" in sections and json.dumps(value)[1:-1] not in sections


@pytest.mark.parametrize("value", SECRETS)
def test_console_shows_the_secret_exactly(value: str) -> None:
    renderer = Renderer()
    reply = secret_reply(renderer, Platform.CONSOLE, value)
    assert f"Your Temporary Access Pass: {value}\n" in reply.text
