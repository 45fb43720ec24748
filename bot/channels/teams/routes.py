"""`POST /api/messages` for `helpdesk serve` (Starlette, beside the Slack endpoints)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from bot.channels.teams.wiring import teams_channel

if TYPE_CHECKING:
    from bot.app import App

MESSAGES_PATH = "/api/messages"


def teams_routes(app: App) -> list[Route]:
    """The Teams routes; raises StartupError for unsafe or incomplete Teams settings."""
    channel = teams_channel(app)

    async def messages(request: Request) -> Response:
        return await channel.handle_request(request)

    return [Route(MESSAGES_PATH, messages, methods=["POST"], name="teams_messages")]
