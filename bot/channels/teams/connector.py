"""Outgoing calls to the Bot Connector (the Agents SDK's `ConnectorClient`), paced and retried.

- Token: MSAL client credentials (app id + password or certificate) at `teams.oauth_authority` for
  `teams.oauth_scope`, through httpx (HTTPS_PROXY, SSL_CERT_FILE honoured, no instance discovery:
  national clouds work); none at all in anonymous development mode.
- Where: the token is sent only to a service URL `auth.service_url_allowed` accepts (https, a host
  in `teams.service_url_hosts`); anything else is refused before any connection is made.
- Pacing: Teams throttles per bot per conversation (7 messages per second, 8 per 2 s, 60 per 30 s,
  1800 per hour at the time of writing) and per app per tenant (50 per second). Every call waits
  for room in its conversation's windows and in the app-wide rate, so a broadcast slows down
  instead of collecting 429s.
- Errors become `ConnectorError` with the status and any `Retry-After`; `transient` marks what is
  worth retrying (429, 412, 502, 504, 5xx, network), `unreachable` what never will be (403: bot
  not installed / blocked; 404: conversation not found).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import urlsplit

import aiohttp
from microsoft_agents.activity import Activity, ChannelAccount, ConversationParameters
from microsoft_agents.hosting.core.connector.client import ConnectorClient

from bot.channels.teams.auth import service_url_allowed, token_authority
from bot.graph.directory import DirectoryError
from bot.graph.graph_client import MsalTokenProvider
from bot.settings import GraphSettings, Settings, TeamsSettings

log = logging.getLogger("bot.teams.connector")

T = TypeVar("T")
TRANSIENT = frozenset({408, 412, 429, 500, 502, 503, 504})
UNREACHABLE = frozenset({403, 404})


class ConnectorError(Exception):
    def __init__(self, status: int | None, message: str, retry_after: float | None = None, *,
                 refused: bool = False) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after
        self.refused = refused  # never sent: the destination is not one the bot's token may go to

    @property
    def transient(self) -> bool:
        return not self.refused and (self.status is None or self.status in TRANSIENT)

    @property
    def unreachable(self) -> bool:
        return self.refused or self.status in UNREACHABLE


def _retry_after(headers: Mapping[str, str] | None) -> float | None:
    if not headers:
        return None
    value = headers.get("Retry-After") or headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


def backoff(attempt: int, retry_after: float | None = None, *, base: float = 0.5, cap: float = 30.0) -> float:
    """Exponential backoff with full jitter; never sooner than the connector's Retry-After."""
    delay = random.uniform(0, min(cap, base * 2 ** attempt))
    return max(delay, retry_after + random.uniform(0, 0.25) if retry_after is not None else 0.0)


class SlidingWindows:
    """`count` calls per `seconds`, for several windows at once (one per key)."""

    def __init__(self, windows: Sequence[tuple[int, float]], clock: Callable[[], float] = time.monotonic) -> None:
        self.windows = [(int(c), float(s)) for c, s in windows]
        self.clock = clock
        self.longest = max((s for _, s in self.windows), default=0.0)
        self._calls: dict[str, deque[float]] = {}
        self._lock = asyncio.Lock()

    def _wait(self, calls: deque[float], now: float) -> float:
        while calls and now - calls[0] >= self.longest:
            calls.popleft()
        wait = 0.0
        for count, seconds in self.windows:
            recent = [t for t in calls if now - t < seconds]
            if len(recent) >= count:
                wait = max(wait, recent[-count] + seconds - now)
        return wait

    async def acquire(self, key: str) -> None:
        while True:
            async with self._lock:
                now = self.clock()
                calls = self._calls.setdefault(key, deque())
                wait = self._wait(calls, now)
                if wait <= 0:
                    calls.append(now)
                    return
            await asyncio.sleep(min(wait, 5.0))


def parse_windows(specs: Sequence[str]) -> list[tuple[int, float]]:
    """`["7/1", "60/30"]` -> [(7, 1.0), (60, 30.0)]."""
    windows = []
    for spec in specs:
        count, _, seconds = str(spec).partition("/")
        windows.append((int(count), float(seconds or 1)))
    return windows


class TokenSource:
    """Bearer tokens for the connector from MSAL (cached and renewed by it), through httpx with the
    environment's proxy and CA settings; none at all in anonymous development mode."""

    def __init__(self, provider: MsalTokenProvider | None) -> None:
        self._provider = provider

    @property
    def anonymous(self) -> bool:
        return self._provider is None

    async def token(self) -> str:
        if self._provider is None:
            return ""
        try:
            return await self._provider.token()
        except DirectoryError as exc:  # token endpoint refused or unreachable: no secret in the message
            raise ConnectorError(None, f"no connector token: {exc}") from None

    def close(self) -> None:
        if self._provider is not None:
            self._provider.close()


def connector_tokens(settings: Settings) -> TokenSource:
    """The app's connector token source: client credentials (secret or certificate) at
    `teams.oauth_authority` for `teams.oauth_scope` (see bot/channels/teams/auth.py)."""
    teams = settings.teams
    if not teams.app_id:
        return TokenSource(None)
    authority = token_authority(teams)
    parts = urlsplit(authority)
    tenant = parts.path.strip("/").split("/")[-1] or "botframework.com"
    graph_like = GraphSettings(
        tenant_id=tenant, client_id=teams.app_id, client_secret=teams.app_password,
        certificate_path=settings.path(teams.certificate_path) if teams.certificate_path is not None else None,
        authority_host=f"{parts.scheme}://{parts.netloc}")
    return TokenSource(MsalTokenProvider(graph_like, scope=teams.oauth_scope))


@dataclass
class _Client:
    client: ConnectorClient
    token: str
    created: float


class TeamsConnector:
    """Posts, updates and deletes activities; creates personal conversations."""

    CLIENT_TTL = 600.0  # rebuild the HTTP session (with a fresh token from MSAL's cache) this often

    def __init__(self, tokens: TokenSource, *, conversation_windows: Sequence[tuple[int, float]] = (),
                 app_per_second: float = 30.0, timeout: float = 15.0,
                 settings: TeamsSettings | None = None) -> None:
        self.tokens = tokens
        self.settings = settings or TeamsSettings()
        self.conversation_pacer = SlidingWindows(conversation_windows)
        self.app_pacer = SlidingWindows([(max(1, int(app_per_second)), 1.0)])
        self.timeout = timeout
        self._clients: dict[str, _Client] = {}
        self._lock = asyncio.Lock()
        self._retired: list[ConnectorClient] = []

    def check_destination(self, service_url: str) -> None:
        """The bot's token goes only to Microsoft's connector: https, an allowed host."""
        if not self.tokens.anonymous and not service_url_allowed(service_url, self.settings):
            raise ConnectorError(None, f"service URL refused (not https on a host in teams.service_url_hosts): "
                                       f"{service_url[:200]}", refused=True)

    async def _client(self, service_url: str) -> ConnectorClient:
        self.check_destination(service_url)
        async with self._lock:
            cached = self._clients.get(service_url)
            if cached is not None and time.monotonic() - cached.created < self.CLIENT_TTL:
                return cached.client
            token = await self.tokens.token()
            session = aiohttp.ClientSession(base_url=service_url if service_url.endswith("/") else service_url + "/",
                                            timeout=aiohttp.ClientTimeout(total=self.timeout),
                                            trust_env=True)  # HTTPS_PROXY / NO_PROXY, like Graph
            client = ConnectorClient(service_url, token, session=session)
            if cached is not None:
                self._retired.append(cached.client)  # in-flight calls may still use it; closed at shutdown
            self._clients[service_url] = _Client(client, token, time.monotonic())
            return client

    async def aclose(self) -> None:
        for client in [c.client for c in self._clients.values()] + self._retired:
            with contextlib.suppress(Exception):
                await client.close()
        self._clients.clear()
        self._retired.clear()
        self.tokens.close()

    async def _call(self, service_url: str, pace_key: str | None,
                    operation: Callable[[ConnectorClient], Awaitable[T]]) -> T:
        if pace_key is not None:
            await self.conversation_pacer.acquire(pace_key)
        await self.app_pacer.acquire("app")
        client = await self._client(service_url)
        try:
            return await operation(client)
        except aiohttp.ClientResponseError as exc:
            raise ConnectorError(exc.status, f"connector answered {exc.status}: {str(exc.message)[:300]}",
                                 _retry_after(exc.headers)) from None
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise ConnectorError(None, f"connector unreachable: {type(exc).__name__}: {exc}") from None

    async def post(self, service_url: str, conversation_id: str, activity: Mapping[str, Any],
                   reply_to_id: str | None = None) -> str:
        body = Activity.model_validate(dict(activity))

        async def go(client: ConnectorClient) -> str:
            if reply_to_id:
                response = await client.conversations.reply_to_activity(conversation_id, reply_to_id, body)
            else:
                response = await client.conversations.send_to_conversation(conversation_id, body)
            return str(response.id or "")

        return await self._call(service_url, conversation_id, go)

    async def update(self, service_url: str, conversation_id: str, activity_id: str,
                     activity: Mapping[str, Any]) -> str:
        body = Activity.model_validate({**dict(activity), "id": activity_id})

        async def go(client: ConnectorClient) -> str:
            response = await client.conversations.update_activity(conversation_id, activity_id, body)
            return str(getattr(response, "id", None) or activity_id)

        return await self._call(service_url, conversation_id, go)

    async def delete(self, service_url: str, conversation_id: str, activity_id: str) -> None:
        async def go(client: ConnectorClient) -> None:
            await client.conversations.delete_activity(conversation_id, activity_id)

        await self._call(service_url, conversation_id, go)

    async def create_personal(self, service_url: str, *, tenant_id: str | None, bot_id: str | None,
                              member_id: str) -> str:
        """Open (or find) the 1:1 chat with a person: `member_id` is their Teams id (29:...) or
        Entra object id. Fails with 403/404 when the app is not installed for them."""
        params = ConversationParameters.model_validate({
            "isGroup": False,
            **({"bot": {"id": bot_id}} if bot_id else {}),
            "members": [ChannelAccount(id=member_id).model_dump(by_alias=True, exclude_none=True)],
            **({"tenantId": tenant_id, "channelData": {"tenant": {"id": tenant_id}}} if tenant_id else {}),
        })

        async def go(client: ConnectorClient) -> str:
            response = await client.conversations.create_conversation(params)
            return str(response.id or "")

        return await self._call(service_url, None, go)

    async def send_typing(self, service_url: str, conversation_id: str) -> None:
        with contextlib.suppress(ConnectorError):
            await self.post(service_url, conversation_id, {"type": "typing"})


async def with_retries(operation: Callable[[], Awaitable[T]], *, attempts: int = 4,
                       budget: float = 20.0, sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> T:
    """Retry transient connector failures in-process (for replies that do not go through the
    outbox): backoff with jitter, honouring Retry-After, within a time budget."""
    started = time.monotonic()
    for attempt in range(attempts):
        try:
            return await operation()
        except ConnectorError as exc:
            if not exc.transient or attempt == attempts - 1:
                raise
            delay = backoff(attempt, exc.retry_after)
            if time.monotonic() - started + delay > budget:
                raise
            log.info("connector %s; retrying in %.2fs", exc.status, delay)
            await sleep(delay)
    raise AssertionError("unreachable")
