from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from bot.app import App, build_app
from bot.channels.registry import build_senders
from bot.channels.teams.channel import TeamsChannel
from bot.channels.teams.routes import teams_routes
from bot.channels.teams.wiring import teams_channel
from bot.outbox.worker import OutboxWorker
from bot.settings import Settings, load_settings
from bot.store.migrate import upgrade
from tests.channels.teams_support import QUEUE, asgi_client, write_flows
from tests.standins.bot_connector import BotConnectorStandIn


def teams_settings(tmp_path: Path, **teams: Any) -> Settings:
    """The real stack (demo directory, self-service, knowledge base, tickets, outages) with the small
    flow set of teams_support (card mechanics) and anonymous Teams for the stand-in."""
    flows = tmp_path / "flows"
    write_flows(flows)
    values = {"enabled": True, "allow_anonymous": True, "queue_channel": QUEUE, "interim_after_seconds": 30.0}
    values.update(teams)
    return load_settings(database={"url": f"sqlite+aiosqlite:///{tmp_path / 'bot.db'}"},
                         flows={"dir": str(flows)}, teams=values, app={"data_dir": str(tmp_path)})


@dataclass
class TeamsBot:
    app: App
    channel: TeamsChannel
    client: httpx.AsyncClient
    standin: BotConnectorStandIn
    worker: OutboxWorker

    async def post(self, activity: dict[str, Any], headers: dict[str, str] | None = None) -> httpx.Response:
        response = await self.client.post("/api/messages", json=activity, headers=headers or {})
        await self.settle()
        return response

    async def settle(self) -> None:
        """Let background turns finish and deliver the outbox."""
        for _ in range(3):
            await self.channel.drain()
            await self.worker.drain()
        await self.channel.drain()


async def make_bot(settings: Settings, standin: BotConnectorStandIn) -> TeamsBot:
    await upgrade(settings.database_url)
    app = await build_app(settings)
    routes = teams_routes(app)
    channel = teams_channel(app)
    worker = OutboxWorker(app.sessions, build_senders(settings, app), max_attempts=3)
    return TeamsBot(app, channel, asgi_client(routes), standin, worker)


@pytest.fixture
async def standin() -> AsyncIterator[BotConnectorStandIn]:
    server = await BotConnectorStandIn().start()
    try:
        yield server
    finally:
        await server.stop()


@pytest.fixture
async def bot(tmp_path: Path, standin: BotConnectorStandIn) -> AsyncIterator[TeamsBot]:
    teams_bot = await make_bot(teams_settings(tmp_path), standin)
    try:
        yield teams_bot
    finally:
        await teams_bot.client.aclose()
        await teams_bot.app.aclose()
