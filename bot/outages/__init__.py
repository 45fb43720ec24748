"""Outage notices: incidents and maintenance, live copies, reactions, linked tickets, spike alerts."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from bot.core.ports import ChannelMembers
from bot.outages.audience import AudienceSource, ChannelMembersAudience, StaticAudience, demo_audience
from bot.outages.service import OutageService

log = logging.getLogger("bot.outages")


def dm_platform(settings: Any) -> str:
    chosen = str(settings.outages.dm_platform)
    if chosen != "auto":
        return chosen
    if settings.slack.enabled:
        return "slack"
    if settings.teams.enabled:
        return "teams"
    return "console"


def audience_source(settings: Any, directory: Any, listers: Iterable[ChannelMembers] = ()) -> AudienceSource:
    """The demo directory file, or a directory object that can list people and group members; the
    members of a channel come from the channel itself where it can list them (`listers`, the
    `ChannelMembers` port: Slack's `conversations.members`), else from that source."""
    source = _directory_source(settings, directory)
    listers = list(listers)
    return ChannelMembersAudience(source, listers) if listers else source


def _directory_source(settings: Any, directory: Any) -> AudienceSource:
    if all(hasattr(directory, name) for name in ("everyone", "group_members", "channel_members")):
        source: AudienceSource = directory
        return source
    if settings.directory.backend == "demo" and settings.demo_directory_file.exists():
        return demo_audience(settings.demo_directory_file)
    log.warning("the %s directory cannot list people; outage notices reach announcement channels only",
                settings.directory.backend)
    return StaticAudience([])


def install(app: Any) -> OutageService:
    """Wire outages into a built app: the service, the turn handler (before the flow engine) and the
    periodic job. Called by `build_app`."""
    from bot.outages.handler import OutageHandler

    settings = app.settings
    service = OutageService(
        sessions=app.sessions, renderer=app.renderer, settings=settings.outages,
        audience=audience_source(settings, app.directory, app.channel_members), dm_platform=dm_platform(settings),
        timezone=settings.app.timezone, technicians=settings.roles.technicians, admins=settings.roles.admins)
    app.services["outages"] = service
    app.pipeline.add_handler(OutageHandler(service, app.pipeline, timezone=settings.app.timezone))

    async def outage_tick() -> None:
        await service.tick(app.clock())

    app.add_tick(outage_tick)
    app.services.setdefault("home_sections", []).append(home_section(service))  # Slack Home: active outages
    return service


def home_section(service: OutageService) -> Any:
    """The "active outages" section of the Slack Home tab (docs/slack.md): the live notice of each
    incident and maintenance, with its buttons (a Home button runs in the person's DM)."""
    from bot.core.models import Person, Platform, Reply

    async def active_outages(person: Person, platform: Platform) -> list[Reply]:
        async with service.sessions() as session:
            current = await service.current(session)
        return [service.notice(incident, platform.value) for incident in current[:5]]

    return active_outages


__all__ = ["OutageService", "dm_platform", "install"]
