"""Which outbox senders exist for the channels the settings enable."""

from __future__ import annotations

from bot.outbox.worker import Sender
from bot.settings import Settings


def build_senders(settings: Settings) -> dict[str, Sender]:
    """Senders for a process that only delivers (`helpdesk worker`). Call inside the event loop.

    `helpdesk serve` replaces these with the senders of the channels it mounts, so that direct
    replies and outbox deliveries share one Slack client and one pacer.
    """
    senders: dict[str, Sender] = {}
    if settings.slack.enabled:
        from bot.channels.slack.api import SlackApi
        from bot.channels.slack.blocks import BlockKit
        from bot.channels.slack.sender import SlackSender
        from bot.render.renderer import Renderer

        senders["slack"] = SlackSender(SlackApi(settings.slack), BlockKit(Renderer()))
    return senders
