"""Which outbox senders exist for the channels the settings enable."""

from __future__ import annotations

from typing import Any

from bot.core.ports import Sender
from bot.settings import Settings


def build_senders(settings: Settings, app: Any = None) -> dict[str, Sender]:
    """`app` (a bot.app.App) lets senders share the serving process's clients and pacing.

    Call inside the running event loop. Without `app` (`helpdesk worker`) each channel builds
    its own client.
    """
    senders: dict[str, Sender] = {}
    if settings.slack.enabled:
        channel = app.services.get("slack") if app is not None else None
        if channel is not None:
            senders["slack"] = channel.sender  # the mounted channel's client and pacer
        else:
            from bot.channels.slack.api import SlackApi
            from bot.channels.slack.blocks import BlockKit
            from bot.channels.slack.sender import SlackSender
            from bot.render.renderer import Renderer

            senders["slack"] = SlackSender(SlackApi(settings.slack), BlockKit(Renderer()))
    if settings.teams.enabled:
        from bot.channels.teams.wiring import teams_sender

        senders["teams"] = teams_sender(settings, app)
    return senders
