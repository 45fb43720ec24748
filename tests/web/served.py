"""The whole app served by uvicorn on loopback for tests that go over real HTTP (the browser tests,
Sign in with Slack through the stand-in's redirects): the repository's flows, KB, demo directory and
roles; Slack pointed at the Slack Web API stand-in; the outbox worker running in-process, as
`helpdesk serve` runs it."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from collections.abc import Awaitable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

from pydantic import SecretStr

from tests.channels.slack_harness import TINA, TOKEN, make_settings
from tests.standins.slack_api import DEFAULT_USERS, TEAM, SlackStandIn
from tests.web.console_harness import EMPLOYEE

T = TypeVar("T")


class MovingClock:
    """The injected clock: a fixed date that moves with real time (the worker's pacing needs time to pass)."""

    def __init__(self, start: datetime = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)) -> None:
        self.start, self.t0 = start, time.monotonic()

    def __call__(self) -> datetime:
        return self.start + timedelta(seconds=time.monotonic() - self.t0)


@dataclass
class Served:
    url: str
    app: Any
    standin: SlackStandIn
    loop: asyncio.AbstractEventLoop

    def run(self, coroutine: Awaitable[T]) -> T:
        """Run a coroutine on the server's event loop (where the app lives)."""
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout=30)  # type: ignore[arg-type]

    def open_ticket(self, summary: str, requester: str = EMPLOYEE, category: str = "printer") -> str:
        async def go() -> str:
            from bot.store.repos import UnitOfWork

            service = self.app.services["tickets"]
            person = await service.person(requester)
            async with self.app.sessions() as session, session.begin():
                uow = UnitOfWork(session, now=self.app.clock(), actor=requester)
                row = await service.open(uow, person, category=category, summary=summary, channel="slack")
            return str(row.ref)

        return self.run(go())


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def serving(tmp_path: Path, sign_in: str = "demo") -> Iterator[Served]:
    """The whole app under uvicorn on loopback, Slack at the stand-in. `sign_in`: the console's demo
    sign-in, or "slack" (Sign in with Slack through the stand-in's OpenID Connect endpoints)."""
    users = {**DEFAULT_USERS, TINA: {"email": "tina.tech@example.com", "real_name": "Tina Technician"},
             "U0TECH0003": {"email": "theo.tech@example.com", "real_name": "Theo Technician"}}
    with SlackStandIn(token=TOKEN, users=users) as standin:
        settings = make_settings(tmp_path, standin)
        settings.web.session_secret = SecretStr("browser-test-session-secret-0123456789")
        if sign_in == "slack":
            settings.web.sign_in = "slack"
            settings.web.slack_client_id = standin.oidc_client_id
            settings.web.slack_client_secret = SecretStr(standin.oidc_client_secret)
            settings.web.slack_team_id = TEAM
        port = _free_port()
        ready: Future[tuple[Any, asyncio.AbstractEventLoop]] = Future()
        stop = threading.Event()

        async def main() -> None:
            import uvicorn

            from bot.app import build_app
            from bot.channels.registry import build_senders
            from bot.channels.serve import MOUNTS, build_asgi
            from bot.store.migrate import upgrade

            await upgrade(settings.database_url)
            app = await build_app(settings, clock=MovingClock())
            try:
                mounts = [m for m in (factory(app, settings) for factory in MOUNTS) if m is not None]
                senders = build_senders(settings, app)
                for mount in mounts:
                    senders.update(mount.senders())
                app.start_worker(senders)
                config = uvicorn.Config(build_asgi(app, mounts), host="127.0.0.1", port=port, log_config=None,
                                        access_log=False, lifespan="on")
                server = uvicorn.Server(config)
                task = asyncio.create_task(server.serve())
                while not server.started:
                    await asyncio.sleep(0.05)
                ready.set_result((app, asyncio.get_running_loop()))
                while not stop.is_set():
                    await asyncio.sleep(0.1)
                server.should_exit = True
                await task
            finally:
                await app.aclose()

        def thread_main() -> None:
            try:
                asyncio.run(main())
            except BaseException as exc:
                if not ready.done():
                    ready.set_exception(exc)

        thread = threading.Thread(target=thread_main, name="console-server", daemon=True)
        thread.start()
        app, loop = ready.result(timeout=120)
        standin.oidc_clock = lambda: app.clock().timestamp()  # ID tokens dated by the app's clock
        try:
            yield Served(f"http://127.0.0.1:{port}", app, standin, loop)
        finally:
            stop.set()
            thread.join(timeout=30)
