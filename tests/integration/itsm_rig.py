"""What the ITSM connector tests share: a bot app with a connector whose HTTP goes to a stand-in,
one injected clock for the app, the worker and the stand-in, and the webhook route `serve` mounts."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import select, update

from bot.app import App, build_app
from bot.channels.serve import build_asgi
from bot.itsm.sync import ItsmSync
from bot.itsm.wiring import mount
from bot.outbox.worker import OutboxWorker
from bot.settings import load_settings
from bot.store.migrate import upgrade
from bot.store.repos import UnitOfWork
from bot.store.tables import OutboxRow, TicketRow
from bot.tickets.service import TicketService

FLOWS = Path(__file__).resolve().parents[1] / "conversations" / "flows"
START = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@dataclass
class Rig:
    app: App
    standin: Any
    sync: ItsmSync
    clock: Clock
    web: httpx.AsyncClient

    @property
    def tickets(self) -> TicketService:
        svc = self.app.services["tickets"]
        assert isinstance(svc, TicketService)
        return svc

    async def person(self, email: str) -> Any:
        found = await self.tickets.person(email)
        assert found is not None
        return found

    async def deliver(self, rounds: int = 30) -> None:
        """Run the outbox for the ticket system (chat messages stay queued for inspection)."""
        worker = OutboxWorker(self.app.sessions, {"itsm": self.sync}, clock=self.clock)
        for _ in range(rounds):
            if not await worker.run_once():
                async with self.app.sessions() as session:
                    waiting = (await session.execute(select(OutboxRow.id).where(
                        OutboxRow.platform == "itsm", OutboxRow.status.in_(("pending", "sending"))))).first()
                if waiting is None:
                    return
                self.clock.advance(10)  # a Retry-After, or a call waiting for its ticket's create

    async def webhooks(self, *, drop: int | None = None) -> list[httpx.Response]:
        """Deliver what the stand-in's webhooks queued (all but `drop`, a lost one)."""
        sent = []
        queued, self.standin.webhooks = self.standin.webhooks, []
        for number, (headers, body) in enumerate(queued):
            if number != drop:
                sent.append(await self.web.post("/itsm/webhook", content=body, headers=headers))
        return sent

    async def outbox(self) -> list[OutboxRow]:
        async with self.app.sessions() as session:
            return list((await session.execute(select(OutboxRow).order_by(OutboxRow.id))).scalars())

    async def to_alice(self) -> list[str]:
        return [r.payload["reply"]["text"] for r in await self.outbox()
                if r.platform == "slack" and r.address["conversation_id"].endswith("alice@example.com")]

    async def status(self, ref: str) -> str:
        async with self.app.sessions() as session:
            return str((await session.execute(select(TicketRow.status).where(TicketRow.ref == ref))).scalar_one())

    async def open(self, summary: str, category: str, *, impact: str = "medium", urgency: str = "high",
                   transcript: tuple[str, ...] = ()) -> str:
        async with self.app.sessions() as session, session.begin():
            uow = UnitOfWork(session, now=self.clock(), actor="alice@example.com")
            row = await self.tickets.open(uow, await self.person("alice@example.com"), category=category,
                                          summary=summary, channel="slack", impact=impact, urgency=urgency,
                                          transcript=transcript)
            ref = row.ref
        async with self.app.sessions() as session, session.begin():  # the queue post went out (its thread)
            await session.execute(update(OutboxRow).where(OutboxRow.idempotency_key.like("ticket:%:queue-post:%"))
                                  .values(status="sent", message_ref="1700.0001"))
        return ref

    async def aclose(self) -> None:
        await self.web.aclose()
        await self.app.aclose()


async def make_rig(url: str, itsm: dict[str, Any], standin: Any, connector: Any) -> Rig:
    """`connector(settings.itsm, transport=...)` builds the system under test against `standin`."""
    await upgrade(url)
    settings = load_settings(flows={"dir": str(FLOWS)}, slack={"enabled": True},
                             tickets={"queues": {"default": {"slack": "CQUEUE"}}}, itsm=itsm)
    clock = standin.clock
    app = await build_app(settings, clock=clock, database_url=url)
    sync = app.services["itsm"]
    assert isinstance(sync, ItsmSync)
    await sync.system.aclose()
    sync.system = connector(settings.itsm, transport=standin.transport())
    itsm_mount = mount(app, settings)  # what `helpdesk serve` mounts: POST /itsm/webhook and the sender
    assert itsm_mount is not None and itsm_mount.senders() == {"itsm": sync}
    web = httpx.AsyncClient(transport=httpx.ASGITransport(app=build_asgi(app, [itsm_mount])),
                            base_url="https://bot.example.com")
    return Rig(app, standin, sync, clock, web)
