"""Who a notice goes to: announcement channels, and direct messages to everyone in the directory,
to members of directory groups, or to members of a channel.

`AudienceSource` is the small port the outage service needs. The demo directory implements it from
config/demo_directory.yaml (users with `groups:` lists, optional `channels:` with members); a Graph
or Slack backed source can implement the same three methods.

`ChannelMembersAudience` wraps a source so that `--members-of slack:C0123` asks Slack itself
(the `ChannelMembers` port, bot/channels/slack/members.py: `conversations.members`, paged): an
admin reaches everyone in a channel, however large, without listing them anywhere. Those members
come as Slack user ids (`Member.user_id`); their copies are posted straight to the user id (no
email lookup, no conversations.open per person).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import yaml

from bot.core.ports import ChannelMembers, ChannelUnreachable


@dataclass(frozen=True, slots=True)
class Member:
    """A person to reach: by directory email, or by a platform user id (`platform`, `user_id`) when
    the audience came from the platform itself (members of a Slack channel)."""

    email: str
    display_name: str = ""
    user_id: str = ""
    platform: str = ""


class AudienceSource(Protocol):
    async def everyone(self) -> Sequence[Member]:
        """Every enabled person in the directory."""
        ...

    async def group_members(self, group: str) -> Sequence[Member]:
        """Enabled members of a directory group (by name or id); empty when unknown."""
        ...

    async def channel_members(self, platform: str, channel: str) -> Sequence[Member]:
        """People in a chat channel, by directory email; empty when unknown."""
        ...


class StaticAudience:
    """An audience from plain data: the demo directory, tests and benchmarks."""

    def __init__(self, people: Iterable[Member], groups: Mapping[str, Iterable[str]] | None = None,
                 channels: Mapping[str, Iterable[str]] | None = None) -> None:
        self.people = {m.email.lower(): m for m in people}
        self.groups = {k.lower(): [e.lower() for e in v] for k, v in (groups or {}).items()}
        # "platform:channel" or just "channel" -> emails
        self.channels = {k: [e.lower() for e in v] for k, v in (channels or {}).items()}

    def _members(self, emails: Iterable[str]) -> list[Member]:
        return [self.people.get(e) or Member(e) for e in dict.fromkeys(emails)]

    async def everyone(self) -> Sequence[Member]:
        return list(self.people.values())

    async def group_members(self, group: str) -> Sequence[Member]:
        return self._members(self.groups.get(group.lower(), []))

    async def channel_members(self, platform: str, channel: str) -> Sequence[Member]:
        emails = self.channels.get(f"{platform}:{channel}") or self.channels.get(channel) or []
        return self._members(emails)


def demo_audience(path: Path) -> StaticAudience:
    """The demo directory's enabled people, their groups, and any `channels:` listed there."""
    data: dict[str, Any] = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    people: list[Member] = []
    groups: dict[str, list[str]] = {}
    for user in data.get("users", []) or []:
        if not user.get("enabled", True) or not user.get("email"):
            continue
        email = str(user["email"]).lower()
        people.append(Member(email, str(user.get("display_name", ""))))
        for group in user.get("groups", []) or []:
            groups.setdefault(str(group), []).append(email)
    for group in data.get("groups", []) or []:
        if isinstance(group, Mapping) and group.get("members"):
            groups.setdefault(str(group.get("name") or group.get("id")), []).extend(
                str(m).lower() for m in group["members"])
    channels: dict[str, list[str]] = {}
    raw_channels = data.get("channels", {}) or {}
    if isinstance(raw_channels, Mapping):
        for name, members in raw_channels.items():
            channels[str(name)] = [str(m).lower() for m in members or []]
    return StaticAudience(people, groups, channels)


class ChannelMembersAudience:
    """`channel_members(platform, C)` asked of the platform itself when its channel can list members
    (the `ChannelMembers` port; Slack: `conversations.members`), everything else from the wrapped
    source. A conversation the platform cannot list (ChannelUnreachable) falls back to the wrapped
    source (the directory may list it); a platform with no lister (Teams) uses the wrapped source."""

    def __init__(self, base: AudienceSource, listers: Iterable[ChannelMembers]) -> None:
        self.base = base
        self.listers = {lister.platform: lister for lister in listers}

    async def everyone(self) -> Sequence[Member]:
        return await self.base.everyone()

    async def group_members(self, group: str) -> Sequence[Member]:
        return await self.base.group_members(group)

    async def channel_members(self, platform: str, channel: str) -> Sequence[Member]:
        lister = self.listers.get(platform)
        if lister is None:
            return await self.base.channel_members(platform, channel)
        try:
            users = await lister.members(channel)
        except ChannelUnreachable:
            return await self.base.channel_members(platform, channel)
        return [Member("", user_id=user, platform=platform) for user in users]
