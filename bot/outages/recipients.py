"""Turning a notice's audience into recipients: announcement channels, and direct messages to people
(at the conversation they last used with the bot, else by email), each person once."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.core.models import Address, Platform
from bot.outages.audience import AudienceSource, Member
from bot.outages.model import Audience, Recipient
from bot.store.repos import UnitOfWork
from bot.store.tables import PersonIdentityRow, PersonRow


async def expand_audience(session: AsyncSession, audience: Audience, source: AudienceSource,
                          dm_platform: str) -> list[Recipient]:
    """Every recipient of `audience`; people are listed by `source`, and reached on `dm_platform`
    unless they came as user ids of a platform's channel."""
    recipients: dict[str, Recipient] = {}
    for platform, channels in audience.channels.items():
        for channel in channels:
            key = f"channel:{platform}:{channel}"
            recipients[key] = Recipient(key, "channel", platform, Address(Platform(platform), channel))
    people: list[Member] = []
    if audience.everyone:
        people.extend(await source.everyone())
    for group in audience.groups:
        people.extend(await source.group_members(group))
    for target in audience.member_channels:
        platform, _, channel = target.rpartition(":")
        people.extend(await source.channel_members(platform or dm_platform, channel))
    if people:
        known: dict[str, dict[str, Address]] = {}
        emails_of = await _emails_of_users(session, dm_platform, [m for m in people if m.user_id and not m.email])
        for member in people:
            # Members of a platform channel come as user ids: on that platform, by user id
            # (a person the bot knows is the same recipient as their directory email).
            platform = (member.platform or dm_platform) if member.user_id else dm_platform
            if platform not in known:
                known[platform] = await _direct_addresses(session, platform)
            email = (member.email or emails_of.get((platform, member.user_id), "")).lower()
            key = f"dm:{platform}:{email or member.user_id}"
            if key in recipients:
                continue
            address = known[platform].get(email) if email else None
            if address is None:
                address = Address(Platform(platform), member.user_id if member.user_id else f"email:{email}")
            recipients[key] = Recipient(key, "dm", platform, address, email or None)
    return list(recipients.values())


async def _direct_addresses(session: AsyncSession, platform: str) -> dict[str, Address]:
    """Known DM conversations on a platform, by email (people who have talked to the bot)."""
    rows = (await session.execute(
        select(PersonRow.email, PersonIdentityRow.direct_address, PersonIdentityRow.seen_at)
        .join(PersonRow, PersonRow.id == PersonIdentityRow.person_id)
        .where(PersonIdentityRow.platform == platform, PersonIdentityRow.direct_address.is_not(None))
        .order_by(PersonIdentityRow.seen_at)
    )).all()
    return {str(email).lower(): Address.from_json(address) for email, address, _ in rows if address}


async def _emails_of_users(session: AsyncSession, dm_platform: str,
                          members: Sequence[Member]) -> dict[tuple[str, str], str]:
    """Directory emails of platform user ids the bot has met, by (platform, user id)."""
    found: dict[tuple[str, str], str] = {}
    by_platform: dict[str, list[str]] = {}
    for member in members:
        by_platform.setdefault(member.platform or dm_platform, []).append(member.user_id)
    for platform, ids in by_platform.items():
        for start in range(0, len(ids), 500):
            rows = (await session.execute(
                select(PersonIdentityRow.platform_user_id, PersonRow.email)
                .join(PersonRow, PersonRow.id == PersonIdentityRow.person_id)
                .where(PersonIdentityRow.platform == platform,
                       PersonIdentityRow.platform_user_id.in_(ids[start:start + 500])))).all()
            found.update({(platform, str(user)): str(email) for user, email in rows if email})
    return found


async def dm_address(uow: UnitOfWork, email: str, dm_platform: str) -> Address:
    """Where to message one person directly: the conversation they last used, else by email."""
    return await uow.direct_address(email) or Address(Platform(dm_platform), f"email:{email.lower()}")
