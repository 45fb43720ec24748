"""Which outbox senders exist for the channels the settings enable."""

from __future__ import annotations

from typing import Any

from bot.outbox.worker import Sender
from bot.settings import Settings


def build_senders(settings: Settings, app: Any = None) -> dict[str, Sender]:
    """`app` (a bot.app.App) lets senders share the serving process's clients and pacing."""
    senders: dict[str, Sender] = {}
    if settings.teams.enabled:
        from bot.channels.teams.wiring import teams_sender

        senders["teams"] = teams_sender(settings, app)
    return senders
