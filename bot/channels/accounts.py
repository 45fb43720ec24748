"""Whose account is a platform user id, for the channels the settings enable: the
`PlatformAccounts` port (bot/core/ports.py). bot/app.py asks this module and hands the answers to
the rooms that need them (the web console's Sign in with Slack)."""

from __future__ import annotations

from bot.core.ports import PlatformAccounts
from bot.settings import Settings


def build_account_lookups(settings: Settings) -> dict[str, PlatformAccounts]:
    """Slack answers with `users.info` whenever a bot token is configured (Sign in with Slack may be
    chosen explicitly; `helpdesk serve` refuses it without the token). Teams people sign in to the
    console with Entra ID, so no Teams lookup is needed."""
    lookups: dict[str, PlatformAccounts] = {}
    if settings.slack.bot_token:
        from bot.channels.slack.accounts import SlackAccounts

        lookups["slack"] = SlackAccounts(settings.slack, float(settings.directory.cache_seconds or 600))
    return lookups
