"""Who is in a Slack channel: the `ChannelMembers` port (bot/core/ports.py) from Slack's
`conversations.members` (cursor-paged, 1000 a page), the bot's own user (`auth.test`) left out.

`api_factory` makes a `SlackApi`, closed after each listing, so a CLI process (`helpdesk outage
post --members-of slack:C0123`) leaves nothing open. Wired by bot/channels/registry.py.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from bot.channels.slack.api import SlackApi, SlackUndeliverable
from bot.core.ports import ChannelUnreachable


class SlackChannelMembers:
    platform = "slack"
    PAGE = 1000

    def __init__(self, api_factory: Callable[[], SlackApi]) -> None:
        self.api_factory = api_factory

    async def members(self, conversation_id: str) -> list[str]:
        api = self.api_factory()
        members: dict[str, None] = {}
        try:
            try:
                bot_user = str((await api.call_soon("auth.test")).get("user_id") or "")
            except SlackUndeliverable:
                bot_user = ""
            cursor = ""
            while True:
                params: dict[str, Any] = {"channel": conversation_id, "limit": self.PAGE}
                if cursor:
                    params["cursor"] = cursor
                try:
                    data = await api.call_soon("conversations.members", **params)
                except SlackUndeliverable as exc:
                    if members or cursor:
                        raise  # half a channel is not the audience the admin asked for
                    # Not a Slack channel the bot can see.
                    raise ChannelUnreachable(str(exc)) from exc
                members.update(dict.fromkeys(str(m) for m in data.get("members") or [] if m and m != bot_user))
                cursor = str((data.get("response_metadata") or {}).get("next_cursor") or "")
                if not cursor:
                    break
        finally:
            await api.aclose()
        return list(members)
