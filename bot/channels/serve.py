"""`helpdesk serve`: one ASGI app (uvicorn) for the channels the settings enable.

`GET /healthz` answers 200 `{"ok": true}` when the database answers, 503 otherwise. Each enabled
channel is a *mount* that adds its routes (Slack HTTP mode: `POST /slack/events`; Teams:
`POST /api/messages`), its outbox senders, and start/stop hooks (Slack Socket Mode connects in
`start`). To add a channel, append a factory to `MOUNTS`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any, Protocol

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Route

from bot.outbox.worker import Sender
from bot.settings import Settings

log = logging.getLogger("bot.serve")


class ChannelMount(Protocol):
    name: str

    def routes(self) -> Sequence[BaseRoute]: ...

    def senders(self) -> dict[str, Sender]: ...

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


def _slack(app: Any, settings: Settings) -> ChannelMount | None:
    if not settings.slack.enabled:
        return None
    from bot.channels.slack.mount import SlackMount

    return SlackMount(app, settings)


class _TeamsMount:
    name = "teams"

    def __init__(self, app: Any) -> None:
        from bot.channels.teams.routes import teams_routes

        self._routes = teams_routes(app)  # builds the channel (closed with the app)

    def routes(self) -> Sequence[BaseRoute]:
        return self._routes

    def senders(self) -> dict[str, Sender]:
        return {}  # build_senders(settings, app) shares the channel's connector

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None


def _teams(app: Any, settings: Settings) -> ChannelMount | None:
    return _TeamsMount(app) if settings.teams.enabled else None


def _itsm(app: Any, settings: Settings) -> ChannelMount | None:
    from bot.itsm.wiring import mount

    return mount(app, settings)


# Channel factories, in order; each adds its routes (Slack: POST /slack/events, Teams: POST /api/messages,
# the ticket system's webhook: POST /itsm/webhook).
MOUNTS: list[Callable[[Any, Settings], ChannelMount | None]] = [_slack, _teams, _itsm]


def settings_problems(settings: Settings) -> list[str]:
    problems = []
    if settings.slack.enabled:
        from bot.channels.slack.mount import missing_settings

        missing = missing_settings(settings)
        if missing:
            problems.append(f"slack is enabled in {settings.slack.mode} mode but {', '.join(missing)} "
                            "is not set (see docs/slack.md)")
    from bot.itsm.wiring import settings_problems as itsm_problems

    problems += [f"{p} (see docs/itsm.md)" for p in itsm_problems(settings)]
    return problems


def build_asgi(app: Any, mounts: Sequence[ChannelMount]) -> Starlette:
    async def healthz(request: Request) -> JSONResponse:
        from sqlalchemy import text

        try:
            async with asyncio.timeout(3):
                async with app.db.connect() as connection:
                    await connection.execute(text("SELECT 1"))
        except Exception as exc:
            return JSONResponse({"ok": False, "error": type(exc).__name__}, status_code=503)
        return JSONResponse({"ok": True, "channels": [m.name for m in mounts]})

    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        for mount in mounts:
            await mount.start()
        try:
            yield
        finally:
            for mount in reversed(mounts):
                with contextlib.suppress(Exception):
                    await mount.stop()

    routes: list[BaseRoute] = [Route("/healthz", healthz, methods=["GET"])]
    for mount in mounts:
        routes.extend(mount.routes())
    return Starlette(routes=routes, lifespan=lifespan)


async def serve(settings: Settings, host: str | None = None, port: int | None = None) -> None:
    import uvicorn

    from bot.app import StartupError, build_app
    from bot.channels.registry import build_senders
    from bot.store.migrate import upgrade

    problems = settings_problems(settings)
    if problems:
        raise StartupError("cannot serve:\n  " + "\n  ".join(problems))
    await upgrade(settings.database_url)
    app = await build_app(settings)
    try:
        mounts = [m for m in (factory(app, settings) for factory in MOUNTS) if m is not None]
        if not mounts:
            log.warning("no channel is enabled (slack.enabled / teams.enabled): serving /healthz only")
        senders = build_senders(settings, app)
        for mount in mounts:
            senders.update(mount.senders())
        if settings.outbox.in_process and senders:
            app.start_worker(senders)
        app.background(app.run_ticks(15.0), "ticks")
        config = uvicorn.Config(build_asgi(app, mounts), host=host or settings.server.host,
                                port=port or settings.server.port, log_config=None, access_log=False,
                                lifespan="on", timeout_graceful_shutdown=10)
        await uvicorn.Server(config).serve()
    finally:
        await app.aclose()
