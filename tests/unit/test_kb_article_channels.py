""""Show me" in each channel's own formatting: headings, steps, links and code, escaped where needed,
and the title and summary shown once."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from bot.core.models import Platform
from bot.kb.loader import parse_article
from bot.kb.render import article_to_dict
from bot.render.renderer import Renderer

ARTICLE = """---
id: vpn-test
title: Fix the VPN
summary: Get the VPN client connected again.
category: vpn
---
# Fix the VPN

## First checks

1. Open **Company Portal** and install the [VPN client](https://intranet.example.com/vpn).
2. Run `ipconfig /flushdns`, then reconnect.

## If it still fails

- If the speed is < 10 Mbps & dropping, restart.

```
vpnclient --reset
```
"""


@pytest.fixture(scope="module")
def shown() -> dict[Platform, str]:
    article = parse_article(ARTICLE, path=Path("vpn-test.md"))
    assert article is not None
    data = article_to_dict(article)
    renderer = Renderer()
    context = {"title": data["title"], "summary": data["summary"], "article": data}
    return {
        platform: renderer.text(platform, template="kb_article", context=context)
        for platform in (Platform.SLACK, Platform.TEAMS, Platform.CONSOLE)
    }


def test_title_and_summary_are_shown_once(shown: dict[Platform, str]) -> None:
    for text in shown.values():
        assert text.count("Fix the VPN") == 1, text
        assert text.count("Get the VPN client connected again.") == 1, text


def test_slack_gets_mrkdwn_with_links_bold_and_escapes(shown: dict[Platform, str]) -> None:
    text = shown[Platform.SLACK]
    assert "*First checks*" in text and "## " not in text
    assert "1. Open *Company Portal* and install the <https://intranet.example.com/vpn|VPN client>." in text
    assert "`ipconfig /flushdns`" in text
    assert "• If the speed is &lt; 10 Mbps &amp; dropping, restart." in text  # Slack's control characters
    assert "```\nvpnclient --reset\n```" in text


def test_teams_gets_card_markdown_not_escaped_markdown(shown: dict[Platform, str]) -> None:
    text = shown[Platform.TEAMS]
    assert "\\" not in text, text  # nothing like \#\# or \*\*
    assert "**First checks**" in text
    assert "1. Open **Company Portal** and install the [VPN client](https://intranet.example.com/vpn)." in text
    assert "2. Run ipconfig /flushdns, then reconnect." in text  # cards have no code spans
    assert "vpnclient --reset" in text


def test_console_gets_plain_markdown(shown: dict[Platform, str]) -> None:
    text = shown[Platform.CONSOLE]
    assert "## First checks" in text
    assert "VPN client (https://intranet.example.com/vpn)" in text
    assert "```\nvpnclient --reset\n```" in text


ADJACENT_BOLD = """---
id: bold-test
title: Share a calendar
summary: Open a colleague's calendar.
category: email
---
# Share a calendar

## Steps

- **Outlook on the web:** **Calendar** → **Add calendar**, then **** nothing.
"""


@pytest.mark.parametrize("platform", [Platform.SLACK, Platform.TEAMS, Platform.CONSOLE])
def test_adjacent_bold_spans_keep_their_space(platform: Platform) -> None:
    """"**Outlook on the web:** **Calendar**" once became "Outlook on the web:Calendar" (7 articles)."""
    article = parse_article(ADJACENT_BOLD, path=Path("bold-test.md"))
    assert article is not None
    data = article_to_dict(article)
    text = Renderer().text(platform, template="kb_article",
                           context={"title": data["title"], "summary": data["summary"], "article": data})
    words = text.replace("*", "")
    assert "Outlook on the web: Calendar → Add calendar" in words, text
    assert "web:Calendar" not in words


def test_every_shipped_article_keeps_the_space_between_bold_spans() -> None:
    root = Path(__file__).resolve().parents[2] / "kb_articles"
    for path in sorted(root.glob("*.md")):
        article = parse_article(path.read_text(encoding="utf-8"), path=path)
        if article is None or "** **" not in path.read_text(encoding="utf-8"):
            continue
        data = article_to_dict(article)
        text = Renderer().text(Platform.CONSOLE, template="kb_article",
                               context={"title": data["title"], "summary": data["summary"], "article": data})
        assert "****" not in text, path.name
        assert not re.search(r"[a-z]:[A-Z]", text.replace("**", "")), path.name  # "web:Calendar"
