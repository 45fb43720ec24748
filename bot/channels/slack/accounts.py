"""Whose Slack account is this user id: the `PlatformAccounts` port (bot/core/ports.py), answered
the way the Slack channel finds a message's sender (`users.info` with the bot token → the profile
email, cached by `IdentityCache`). The web console's Sign in with Slack asks it; built by
bot/channels/accounts.py. The Slack client is made on first use, so a process that never signs
anyone in opens nothing."""

from __future__ import annotations

from bot.channels.slack.api import SlackApi
from bot.channels.slack.channel import IdentityCache, IdentityUnavailable
from bot.core.models import PlatformUser
from bot.core.ports import AccountUnavailable
from bot.settings import SlackSettings


class SlackAccounts:
    platform = "slack"

    def __init__(self, settings: SlackSettings, cache_seconds: float) -> None:
        self.settings = settings
        self.cache_seconds = cache_seconds
        self._api: SlackApi | None = None
        self._cache: IdentityCache | None = None

    async def account(self, user_id: str) -> PlatformUser:
        if self._cache is None:
            self._api = SlackApi(self.settings)
            self._cache = IdentityCache(self._api, self.cache_seconds)
        try:
            return await self._cache.user(user_id)
        except IdentityUnavailable as exc:
            raise AccountUnavailable(str(exc)) from None

    async def aclose(self) -> None:
        if self._api is not None:
            await self._api.aclose()
            self._api = None
            self._cache = None
