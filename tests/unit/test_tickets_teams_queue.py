"""Ticket cards go to the Teams queue channel configured as `teams.queue_channel` (docs/teams.md),
unless `tickets.queues` routes the category elsewhere."""

from __future__ import annotations

from typing import Any

from bot.core.models import Address, Platform
from bot.render.renderer import Renderer
from bot.settings import load_settings
from bot.tickets.service import TicketService

QUEUE = "19:queue@thread.tacv2"


def service(**tickets: Any) -> TicketService:
    settings = load_settings(teams={"enabled": True, "allow_anonymous": True, "queue_channel": QUEUE},
                             tickets=tickets)
    return TicketService(settings, Renderer(), resolver=None)  # type: ignore[arg-type]


def test_teams_queue_channel_is_the_default_queue() -> None:
    assert service().queue_targets("printer") == [Address(Platform.TEAMS, QUEUE)]


def test_a_category_route_wins_over_the_queue_channel() -> None:
    routed = service(queues={"default": {"teams": ""}, "security": {"teams": "19:sec@thread.tacv2"}})
    assert routed.queue_targets("security") == [Address(Platform.TEAMS, "19:sec@thread.tacv2")]
    assert routed.queue_targets("printer") == [Address(Platform.TEAMS, QUEUE)]
