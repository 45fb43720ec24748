"""One Slack Web API client per process, paced, with Slack's errors sorted into retry / give up.

Every outgoing call goes through `SlackApi.call`. Messages (`chat.postMessage` & co) take a token
from a per-channel bucket (Slack allows about one message per second per channel with short bursts)
and from the app's workspace-wide message budget (`rate_per_minute_global`). Other methods
(users.lookupByEmail, conversations.open/history/members...) have their own per-method tiers on
Slack's side and do NOT spend the message budget: charging them to it would make every DM of a
broadcast cost three tokens and deliver at a third of the configured rate. A 429 pauses the bucket
it hit (the channel's for messages, the method's otherwise) for `Retry-After` seconds and raises
`RetryLater`, so the outbox reschedules the row and direct replies wait and try again. `ok: false` errors that can pass
(`internal_error`, `ratelimited`...) are `RetryLater`; the rest (`channel_not_found`,
`not_in_channel`, `invalid_blocks`...) are `Undeliverable`.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.core.ports import RetryLater, Undeliverable
from bot.settings import SlackSettings

log = logging.getLogger("bot.slack.api")

# ok:false codes worth trying again later; anything else is permanent for that message.
TRANSIENT_ERRORS = frozenset({
    "ratelimited", "rate_limited", "internal_error", "fatal_error", "service_unavailable",
    "request_timeout", "team_added_to_org", "accesslimited",
})

# Methods that post into a channel, paced per channel and by the workspace-wide message budget.
CHANNEL_PACED = frozenset({"chat.postMessage", "chat.update", "chat.delete", "chat.postEphemeral"})
# The rate of a bucket that only exists to hold a 429's pause.
UNPACED = 1e9


class SlackRetryLater(RetryLater):
    def __init__(self, reason: str, retry_after: float | None = None, *, method: str = "") -> None:
        super().__init__(reason, retry_after)
        self.method = method


class SlackUndeliverable(Undeliverable):
    def __init__(self, reason: str, *, error: str = "", method: str = "") -> None:
        super().__init__(reason)
        self.error = error
        self.method = method


@dataclass(slots=True)
class _Bucket:
    rate: float
    burst: float
    tokens: float
    stamp: float
    blocked_until: float = 0.0


class RateLimiter:
    """Token buckets by key. `acquire` waits for a token; `pause` honours a Retry-After."""

    def __init__(self, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> None:
        self._buckets: dict[str, _Bucket] = {}
        self._clock = clock
        self._sleep = sleep

    def _bucket(self, key: str, rate: float, burst: float) -> _Bucket:
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = _Bucket(rate, burst, burst, self._clock())
            self._buckets[key] = bucket
            if len(self._buckets) > 50_000:  # forget idle channels
                for old in list(self._buckets)[:10_000]:
                    del self._buckets[old]
        return bucket

    def delay(self, key: str, rate: float, burst: float) -> float:
        """Take a token now or say how long to wait (reserving the token either way)."""
        bucket = self._bucket(key, rate, burst)
        now = self._clock()
        bucket.tokens = min(bucket.burst, bucket.tokens + (now - bucket.stamp) * bucket.rate)
        bucket.stamp = now
        bucket.tokens -= 1.0
        wait = max(0.0, -bucket.tokens / bucket.rate)
        return max(wait, bucket.blocked_until - now)

    async def acquire(self, key: str, rate: float, burst: float) -> float:
        wait = self.delay(key, rate, burst)
        if wait > 0:
            await self._sleep(wait)
        return wait

    def pause(self, key: str, seconds: float) -> None:
        bucket = self._buckets.get(key)
        if bucket is not None:
            bucket.blocked_until = max(bucket.blocked_until, self._clock() + seconds)


def _retry_after(error: SlackApiError) -> float:
    headers = getattr(error.response, "headers", {}) or {}
    value = None
    for name, raw in dict(headers).items():
        if str(name).lower() == "retry-after":
            value = raw[0] if isinstance(raw, list) else raw
    try:
        return max(0.0, float(value)) if value is not None else 1.0
    except (TypeError, ValueError):
        return 1.0


class SlackApi:
    """The process's Web API client, pacer and error mapping (shared by the channel and the outbox)."""

    def __init__(self, settings: SlackSettings, *, client: AsyncWebClient | None = None) -> None:
        self.settings = settings
        token = settings.bot_token.get_secret_value() if settings.bot_token else None
        self._token = token
        self._client = client
        self.limiter = RateLimiter()
        self._session: aiohttp.ClientSession | None = None
        self._global_rate = settings.rate_per_minute_global / 60.0
        # A tenth of a second's worth: this is the last gate before the network, and deliveries the
        # outbox released together after a pause of the event loop (a database write, the
        # periodic job) must still reach Slack spaced out, not as one burst that earns a 429.
        self._global_burst = max(1.0, self._global_rate / 10)

    @property
    def client(self) -> AsyncWebClient:
        """Created on first use, inside the running event loop (aiohttp needs one)."""
        if self._client is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=100),
                timeout=aiohttp.ClientTimeout(total=self.settings.api_timeout_seconds),
            )
            self._client = AsyncWebClient(token=self._token, base_url=self.settings.api_url,
                                          session=self._session, timeout=int(self.settings.api_timeout_seconds))
        return self._client

    async def aclose(self) -> None:
        if self._session is not None and not self._session.closed:
            await self._session.close()

    async def call(self, method: str, *, channel: str | None = None, **params: Any) -> dict[str, Any]:
        """Call a Web API method (`chat.postMessage`...) paced; returns the response body."""
        if method in CHANNEL_PACED:
            await self.limiter.acquire("global", self._global_rate, self._global_burst)
        pace_key = f"chan:{channel}" if channel and method in CHANNEL_PACED else f"method:{method}"
        if channel and method in CHANNEL_PACED:
            await self.limiter.acquire(pace_key, self.settings.post_rate_per_channel,
                                       float(self.settings.post_burst_per_channel))
        else:  # not paced here; only a 429's pause (Retry-After) on this method holds calls back
            await self.limiter.acquire(pace_key, UNPACED, UNPACED)
        if channel is not None:
            params["channel"] = channel
        function = getattr(self.client, method.replace(".", "_"))
        try:
            response = await function(**params)
        except SlackApiError as exc:
            status = getattr(exc.response, "status_code", 200)
            error = str((exc.response.data or {}).get("error", "")) if isinstance(exc.response.data, dict) else ""
            if status == 429:
                seconds = _retry_after(exc)
                self.limiter.pause(pace_key, seconds)
                log.warning("slack rate limited", extra={"method": method, "retry_after": seconds})
                raise SlackRetryLater(f"{method}: ratelimited", seconds, method=method) from None
            if status >= 500 or error in TRANSIENT_ERRORS:
                raise SlackRetryLater(f"{method}: {error or status}", None, method=method) from None
            raise SlackUndeliverable(f"{method}: {error or status}", error=error, method=method) from None
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise SlackRetryLater(f"{method}: {type(exc).__name__}", None, method=method) from None
        data = response.data
        return data if isinstance(data, dict) else {}

    async def call_soon(self, method: str, *, channel: str | None = None, budget: float = 30.0,
                        **params: Any) -> dict[str, Any]:
        """`call`, retried in place on temporary failures (for direct replies that skip the outbox)."""
        deadline = time.monotonic() + budget
        attempt = 0
        while True:
            try:
                return await self.call(method, channel=channel, **params)
            except SlackRetryLater as exc:
                attempt += 1
                wait = exc.retry_after if exc.retry_after is not None else min(8.0, 0.5 * 2 ** attempt)
                wait += random.random() * 0.1
                if attempt >= 5 or time.monotonic() + wait > deadline:
                    raise
                await asyncio.sleep(wait)
