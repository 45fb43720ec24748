"""The web console on the real stack (the repository's flows, knowledge base, demo directory, roles,
ticket desk and outages) on a temporary SQLite database, driven in-process through httpx."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from bot.settings import Settings, load_settings
from bot.web.console import Console

ROOT = Path(__file__).resolve().parents[2]
SECRET = b"console-test-session-secret-0123456789"
TECH = "tom.tech@example.com"
TINA = "tina.tech@example.com"
ADMIN = "ada.admin@example.com"
EMPLOYEE = "alice@example.com"


class Clock:
    """The one clock of the code under test."""

    def __init__(self, start: datetime = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


def console_settings(tmp: Path, **sections: Any) -> Settings:
    values: dict[str, Any] = {
        "app": {"data_dir": str(tmp)},
        "database": {"url": f"sqlite+aiosqlite:///{tmp / 'console.db'}"},
        "flows": {"dir": str(ROOT / "flows")},
        "kb": {"dir": str(ROOT / "kb_articles")},
        "directory": {"backend": "demo", "demo_file": str(ROOT / "config" / "demo_directory.yaml")},
        "slack": {"enabled": False},
        "teams": {"enabled": False},
    }
    for section, items in sections.items():
        values.setdefault(section, {}).update(items)
    return load_settings(ROOT / "config" / "helpdesk.yaml", **values)


@dataclass
class ConsoleHarness:
    client: httpx.AsyncClient
    app: Any
    console: Console
    clock: Clock

    async def sign_in(self, email: str) -> httpx.Response:
        page = await self.client.get("/console/signin")
        token = re.search(r'name="csrf" value="([^"]+)"', page.text)
        assert token, page.text
        return await self.client.post("/console/signin/demo", data={"csrf": token.group(1), "email": email,
                                                                     "next": "/console/queue"})

    async def csrf(self, path: str = "/console/queue") -> str:
        page = await self.client.get(path)
        found = re.search(r'<meta name="csrf-token" content="([^"]+)"', page.text)
        assert found, page.text[:500]
        return found.group(1)

    async def open_ticket(self, summary: str, *, requester: str = EMPLOYEE, category: str = "printer") -> str:
        from bot.store.repos import UnitOfWork

        service = self.app.services["tickets"]
        requester_person = await service.person(requester)
        async with self.app.sessions() as session, session.begin():
            uow = UnitOfWork(session, now=self.clock(), actor=requester)
            row = await service.open(uow, requester_person, category=category, summary=summary)
        return str(row.ref)
