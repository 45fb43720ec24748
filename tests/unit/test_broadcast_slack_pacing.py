"""A broadcast through the production Slack client: the outbox's pacing and the Slack client's
limiter must not multiply, a 429 pauses what it hit for its Retry-After, and channel members are
reached by user id. Time is virtual (ratios, never stopwatch asserts)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from pydantic import SecretStr
from slack_sdk.errors import SlackApiError

from bot.channels.members import build_member_listers
from bot.channels.slack.api import RateLimiter, SlackApi, SlackRetryLater
from bot.channels.slack.blocks import BlockKit
from bot.channels.slack.members import SlackChannelMembers
from bot.channels.slack.sender import SlackSender
from bot.core.models import Address, Platform, Reply
from bot.outages import audience_source
from bot.outages.audience import ChannelMembersAudience, StaticAudience
from bot.outbox.worker import Delivery, Pacer, Pacing
from bot.render.renderer import Renderer
from bot.settings import SlackSettings, load_settings
from bot.store.repos import reply_to_json
from tests.standins.slack_api import BOT_USER, SlackStandIn, dm_of, synthetic_members

pytestmark = pytest.mark.clock  # runs again with the system clock a year ahead (.ci/run)


class VirtualTime:
    def __init__(self) -> None:
        self.t = 1000.0

    def clock(self) -> float:
        return self.t

    async def sleep(self, seconds: float) -> None:
        self.t += seconds


class FakeClient:
    """AsyncWebClient's shape: `chat_postMessage(**params)` -> response with `.data`; can answer 429."""

    def __init__(self, time: VirtualTime) -> None:
        self.time = time
        self.calls: list[tuple[str, dict[str, Any], float]] = []
        self.limit: dict[str, float] = {}  # method -> Retry-After of its next call

    def __getattr__(self, name: str) -> Any:
        method = name.replace("_", ".", 1)

        async def call(**params: Any) -> Any:
            self.calls.append((method, params, self.time.t))
            if method in self.limit:
                retry_after = self.limit.pop(method)
                response = SimpleNamespace(status_code=429, headers={"Retry-After": f"{retry_after:g}"},
                                           data={"ok": False, "error": "ratelimited"})
                raise SlackApiError("ratelimited", response)  # type: ignore[no-untyped-call]
            if method == "users.lookupByEmail":
                return SimpleNamespace(data={"ok": True, "user": {"id": "U" + params["email"].split("@")[0]}})
            if method == "conversations.open":
                return SimpleNamespace(data={"ok": True, "channel": {"id": dm_of(params["users"])}})
            return SimpleNamespace(data={"ok": True, "channel": params.get("channel"), "ts": f"{len(self.calls)}.0"})

        return call

    def posts(self) -> list[tuple[str, dict[str, Any], float]]:
        return [c for c in self.calls if c[0] == "chat.postMessage"]


def _api(time: VirtualTime, **settings: Any) -> tuple[SlackApi, FakeClient]:
    client = FakeClient(time)
    api = SlackApi(SlackSettings(bot_token=SecretStr("xoxb-test"), **settings), client=client)  # type: ignore[arg-type]
    api.limiter = RateLimiter(clock=time.clock, sleep=time.sleep)
    return api, client


def _delivery(n: int, conversation: str) -> Delivery:
    return Delivery(n, f"outage:1:post:dm:slack:{conversation}", "slack",
                    Address(Platform.SLACK, conversation).to_json(),
                    {"kind": "post", "reply": reply_to_json(Reply(text="Email is delayed"))}, 1,
                    f"slack:{conversation}", "outage:1")


async def test_lookups_do_not_spend_the_message_budget() -> None:
    """A DM to an email costs users.lookupByEmail + conversations.open + chat.postMessage; only the
    post counts against `rate_per_minute_global`, so N DMs take N / rate, not 3N / rate."""
    time = VirtualTime()
    api, client = _api(time, rate_per_minute_global=600.0)  # 10 messages a second
    sender = SlackSender(api, BlockKit(Renderer()))
    count, rate = 60, 10.0
    started = time.t
    for n in range(count):
        await sender.send(_delivery(n, f"email:user{n}@example.com"))
    assert len(client.posts()) == count
    assert len(client.calls) == 3 * count
    ratio = (time.t - started) / (count / rate)
    assert ratio <= 1.05  # before: ~2.8 (every call charged to the message budget)


async def test_channel_members_are_posted_by_user_id_without_conversations_open() -> None:
    time = VirtualTime()
    api, client = _api(time)
    sender = SlackSender(api, BlockKit(Renderer()))
    for n in range(5):
        await sender.send(_delivery(n, f"U{n:010d}"))
    assert [c[1]["channel"] for c in client.posts()] == [f"U{n:010d}" for n in range(5)]
    assert not [c for c in client.calls if c[0] in ("conversations.open", "users.lookupByEmail")]


async def test_429_pauses_only_what_it_hit_for_its_retry_after() -> None:
    time = VirtualTime()
    api, client = _api(time, post_rate_per_channel=100.0, rate_per_minute_global=60_000.0)
    client.limit["chat.postMessage"] = 3
    with pytest.raises(SlackRetryLater) as caught:
        await api.call("chat.postMessage", channel="D1", text="x")
    assert caught.value.retry_after == 3
    limited_at = time.t
    await api.call("chat.postMessage", channel="D2", text="x")  # another channel: no wait
    assert time.t == limited_at
    await api.call("chat.postMessage", channel="D1", text="x")  # the limited channel: Retry-After
    assert time.t - limited_at == pytest.approx(3.0)
    # A 429 on a lookup holds lookups back, not messages.
    client.limit["users.lookupByEmail"] = 5
    with pytest.raises(SlackRetryLater):
        await api.call("users.lookupByEmail", email="a@example.com")
    before = time.t
    await api.call("chat.postMessage", channel="D3", text="x")
    assert time.t == before
    await api.call("users.lookupByEmail", email="a@example.com")
    assert time.t - before == pytest.approx(5.0)


def test_a_429_burst_lowers_the_platform_rate_once() -> None:
    """All deliveries in flight when the workspace limit hits answer 429 within the same moment:
    one decrease per episode (0.8x), not 0.8^concurrency."""
    pacer = Pacer(Pacing(lane_rate={"slack": 1.0}, global_rate={"slack": 100.0}))
    now = 50.0
    for lane in range(16):
        pacer.rate_limited("slack", f"slack:U{lane}", 1.0, None, now + lane * 0.001)
    assert pacer.platforms["slack"].rate == pytest.approx(80.0)
    # The pause is Retry-After long; a new episode after it lowers the rate again.
    assert not pacer.platform_ready("slack", now + 0.5)
    for lane in range(2):
        pacer.rate_limited("slack", f"slack:W{lane}", 1.0, None, now + 1.5 + lane * 0.001)
    assert pacer.platforms["slack"].rate == pytest.approx(64.0)
    # ... and successes climb back to the configured rate.
    for _ in range(1000):
        pacer.succeeded("slack", now + 3)
    assert pacer.platforms["slack"].rate == pytest.approx(100.0)


async def test_members_of_a_slack_channel_are_paged_and_exclude_the_bot() -> None:
    members = [*synthetic_members(2500), BOT_USER]
    with SlackStandIn(token="xoxb-test", channels={"C0BIG": members}) as standin:
        settings = SlackSettings(bot_token=SecretStr("xoxb-test"), api_url=standin.url)
        source = ChannelMembersAudience(StaticAudience([], channels={"C0DEMO": ["a@example.com"]}),
                                        [SlackChannelMembers(lambda: SlackApi(settings))])
        found = await source.channel_members("slack", "C0BIG")
        assert [m.user_id for m in found] == synthetic_members(2500)
        assert {m.platform for m in found} == {"slack"}
        assert len(standin.calls_to("conversations.members")) == 3  # 1000 a page
        # Not a channel Slack knows: the directory's list, if any.
        assert [m.email for m in await source.channel_members("slack", "C0DEMO")] == ["a@example.com"]


async def test_a_restarted_sender_finds_a_copy_posted_by_user_id() -> None:
    """After a crash the new process has no DM cache: find_delivered opens the DM and finds the copy."""
    with SlackStandIn(token="xoxb-test") as standin:
        settings = SlackSettings(bot_token=SecretStr("xoxb-test"), api_url=standin.url)
        first = SlackApi(settings)
        delivery = _delivery(1, "U0000000007")
        ts = await SlackSender(first, BlockKit(Renderer())).send(delivery)
        await first.aclose()
        assert list(standin.messages) == [dm_of("U0000000007")]
        assert not standin.calls_to("conversations.open")
        second = SlackApi(settings)
        interrupted = Delivery(delivery.id, delivery.idempotency_key, "slack", delivery.address,
                               {**delivery.payload, "_interrupted": True}, 2, delivery.lane, delivery.group_key)
        assert await SlackSender(second, BlockKit(Renderer())).find_delivered(interrupted) == ts
        await second.aclose()


def test_only_an_enabled_slack_with_a_token_lists_channel_members() -> None:
    """build_app hands outages the listers the settings enable (bot/channels/members.py)."""
    on = load_settings(slack={"enabled": True, "bot_token": "xoxb-test"})
    listers = build_member_listers(on)
    assert [(type(lister).__name__, lister.platform) for lister in listers] == [("SlackChannelMembers", "slack")]
    assert isinstance(audience_source(on, None, listers), ChannelMembersAudience)
    assert build_member_listers(load_settings()) == []
    assert build_member_listers(load_settings(teams={"enabled": True})) == []  # Teams: the directory answers
