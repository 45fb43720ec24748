"""Who is in a channel, for the channels the settings enable: the `ChannelMembers` port
(bot/core/ports.py) where the platform can list a conversation's members. bot/app.py asks this
module (it imports no composition code, so the app can, without a cycle)."""

from __future__ import annotations

from bot.core.ports import ChannelMembers
from bot.settings import Settings


def build_member_listers(settings: Settings) -> list[ChannelMembers]:
    """Slack lists a channel's members (`conversations.members`). Teams has no lister here: an
    outage's `--members-of teams:...` uses what the directory knows, as before."""
    listers: list[ChannelMembers] = []
    if settings.slack.enabled and settings.slack.bot_token:
        from bot.channels.slack.api import SlackApi
        from bot.channels.slack.members import SlackChannelMembers

        slack = settings.slack
        listers.append(SlackChannelMembers(lambda: SlackApi(slack)))
    return listers
