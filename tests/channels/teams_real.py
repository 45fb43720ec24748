"""A Teams bot on the REAL stack: the shipped flows (flows/), the knowledge base over kb_articles/,
the demo directory with the real resolver and self-service runner, the real ticket desk and the
outage service. Only the Bot Connector is a stand-in (loopback). People are the demo directory's:
a Teams activity carries their directory `id` as `from.aadObjectId`, as Entra does."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import select

from bot.app import App, build_app
from bot.channels.registry import build_senders
from bot.channels.teams.channel import TeamsChannel
from bot.channels.teams.routes import teams_routes
from bot.channels.teams.wiring import teams_channel
from bot.outbox.worker import OutboxWorker
from bot.settings import Settings, load_settings
from bot.store.migrate import upgrade
from bot.store.tables import EventRow, OutboxRow
from tests.channels.teams_support import TENANT, asgi_client
from tests.standins.bot_connector import BotConnectorStandIn

BOT = "28:cccccccc-0000-4000-8000-000000000001"
QUEUE = "19:PLACEHOLDERqueue0001@thread.tacv2"
ANNOUNCE = "19:PLACEHOLDERannounce0001@thread.tacv2"


@dataclass(frozen=True)
class Member:
    """A demo-directory person as Teams sees them."""

    email: str
    name: str
    aad: str  # = the demo directory's `id` (an Entra object id)
    mri: str
    chat: str  # their personal chat with the bot


def _member(n: int, email: str, name: str) -> Member:
    return Member(email, name, f"0d8f8a1e-0000-4000-8000-{n:012d}", f"29:1demoUser{n:04d}",
                  f"a:1demoPersonalChat{n:04d}")


ALICE = _member(1, "alice@example.com", "Alice Employee")
BOB = _member(2, "bob@example.com", "Bob Builder")
TOM = _member(10, "tom.tech@example.com", "Tom Technician")
TINA = _member(11, "tina.tech@example.com", "Tina Technician")
THEO = _member(12, "theo.tech@example.com", "Theo Technician")
ADA = _member(20, "ada.admin@example.com", "Ada Admin")
MEMBERS = {m.email: m for m in (ALICE, BOB, TOM, TINA, THEO, ADA)}

_ids = itertools.count(1)


def real_settings(tmp_path: Path, *, flows_dir: str = "flows", **sections: Any) -> Settings:
    teams = {"enabled": True, "allow_anonymous": True, "queue_channel": QUEUE, "interim_after_seconds": 30.0,
             "tenant_id": TENANT}
    teams.update(sections.pop("teams", {}))
    return load_settings(database={"url": f"sqlite+aiosqlite:///{tmp_path / 'bot.db'}"}, flows={"dir": flows_dir},
                         teams=teams, app={"data_dir": str(tmp_path)}, **sections)


@dataclass
class RealTeamsBot:
    app: App
    channel: TeamsChannel
    client: httpx.AsyncClient
    standin: BotConnectorStandIn
    worker: OutboxWorker

    @property
    def url(self) -> str:
        return self.standin.url

    async def post(self, activity: dict[str, Any]) -> httpx.Response:
        response = await self.client.post("/api/messages", json=activity)
        await self.settle()
        return response

    async def settle(self) -> None:
        for _ in range(4):
            await self.channel.drain()
            await self.worker.drain()
        await self.channel.drain()

    async def events(self) -> list[dict[str, Any]]:
        async with self.app.sessions() as session:
            rows = (await session.execute(select(EventRow).order_by(EventRow.id))).scalars()
            return [{"type": r.type, **r.data} for r in rows]

    async def outbox(self) -> list[OutboxRow]:
        async with self.app.sessions() as session:
            return list((await session.execute(select(OutboxRow).order_by(OutboxRow.id))).scalars())

    # ----- activities ------------------------------------------------------------------------

    def _base(self, who: Member, conversation: dict[str, Any]) -> dict[str, Any]:
        return {"type": "message", "id": f"act-{next(_ids)}", "channelId": "msteams", "serviceUrl": self.url,
                "timestamp": "2026-11-23T09:00:00.000Z", "locale": "en-US",
                "from": {"id": who.mri, "name": who.name, "aadObjectId": who.aad},
                "recipient": {"id": BOT, "name": "Help desk"}, "conversation": conversation,
                "channelData": {"tenant": {"id": TENANT}}}

    def personal(self, who: Member, text: str) -> dict[str, Any]:
        data = self._base(who, {"conversationType": "personal", "id": who.chat, "tenantId": TENANT})
        data["text"] = text
        data["textFormat"] = "plain"
        return data

    def submit(self, who: Member, value: dict[str, Any], *, reply_to: str = "1700000000001") -> dict[str, Any]:
        """Action.Submit in the personal chat: a message without text, `value` = the action's data."""
        data = self._base(who, {"conversationType": "personal", "id": who.chat, "tenantId": TENANT})
        data["value"] = dict(value)
        data["replyToId"] = reply_to
        return data

    def installed(self, who: Member) -> dict[str, Any]:
        data = self._base(who, {"conversationType": "personal", "id": who.chat})
        data.update(type="conversationUpdate", membersAdded=[{"id": BOT}, {"id": who.mri, "aadObjectId": who.aad}])
        return data

    def in_channel(self, who: Member, text: str, *, channel: str, root: str, mention: bool = False) -> dict[str, Any]:
        """A message in a channel thread (`<channel>;messageid=<root>`), optionally @mentioning the bot."""
        data = self._base(who, {"id": f"{channel};messageid={root}", "isGroup": True,
                                "conversationType": "channel", "tenantId": TENANT})
        data["channelData"].update({"channel": {"id": channel}, "team": {"id": "19:PLACEHOLDERteam0001@thread.tacv2"},
                                    "teamsChannelId": channel})
        data["text"] = f"<at>Help desk</at> {text}" if mention else text
        data["entities"] = [{"type": "mention", "text": "<at>Help desk</at>",
                             "mentioned": {"id": BOT, "name": "Help desk"}}] if mention else []
        return data

    def execute(self, who: Member, data_value: dict[str, Any], *, conversation: str, reply_to: str,
                personal: bool = False) -> dict[str, Any]:
        """Action.Execute: an `adaptiveCard/action` invoke."""
        data = self._base(who, {"id": conversation, "conversationType": "personal" if personal else "channel",
                                "tenantId": TENANT})
        data.update(type="invoke", name="adaptiveCard/action", replyToId=reply_to,
                    value={"action": {"type": "Action.Execute", "verb": data_value.get("verb", "click"),
                                      "data": dict(data_value)}, "trigger": "manual"})
        return data


async def make_real_bot(settings: Settings, standin: BotConnectorStandIn, *, clock: Any = None) -> RealTeamsBot:
    await upgrade(settings.database_url)
    app = await build_app(settings, clock=clock) if clock is not None else await build_app(settings)
    routes = teams_routes(app)
    channel = teams_channel(app)
    worker = OutboxWorker(app.sessions, build_senders(settings, app), max_attempts=3,
                          **({"clock": clock} if clock is not None else {}))
    return RealTeamsBot(app, channel, asgi_client(routes), standin, worker)


async def real_bot_context(settings: Settings, standin: BotConnectorStandIn) -> AsyncIterator[RealTeamsBot]:
    bot = await make_real_bot(settings, standin)
    try:
        yield bot
    finally:
        await bot.client.aclose()
        await bot.app.aclose()
