"""Which outbox senders exist for the channels the settings enable."""

from __future__ import annotations

from bot.outbox.worker import Sender
from bot.settings import Settings


def build_senders(settings: Settings) -> dict[str, Sender]:
    senders: dict[str, Sender] = {}
    return senders
