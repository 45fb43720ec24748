"""`helpdesk serve`: one ASGI app (uvicorn) for the channels the settings enable.

`GET /healthz` answers 200 `{"ok": true}` while the process serves (cheap: no I/O, for liveness);
`GET /readyz` answers 200 when the database answers, 503 otherwise (for the load balancer);
`GET /metrics` is the Prometheus text format (bot/metrics.py). Each enabled
channel is a *mount* that adds its routes (Slack HTTP mode: `POST /slack/events`; Teams:
`POST /api/messages`), its outbox senders, and start/stop hooks (Slack Socket Mode connects in
`start`). To add a channel, append a factory to `MOUNTS`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import Any, Protocol

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from bot.core.ports import Sender
from bot.settings import Settings

log = logging.getLogger("bot.serve")


class BodyLimit:
    """Every route reads at most `limit` bytes of body: a larger declared Content-Length gets 413
    before anything is read, and a body sent without one (chunked) is cut off at the limit, so a
    100 MB request never sits in memory. The body read is handed to the app unchanged."""

    def __init__(self, app: Any, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None:
            text = declared.decode("latin-1").strip()
            if not text.isdigit():
                await _plain(send, 400, "Bad Content-Length")
                log.warning("request refused: bad Content-Length", extra={"path": scope.get("path")})
                return
            if int(text) > self.limit:
                await _plain(send, 413, "Request body too large")
                log.warning("request refused: body of %s bytes over the %d limit", text, self.limit,
                            extra={"path": scope.get("path")})
                return
        chunks: list[bytes] = []
        size = 0
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.limit:
                await _plain(send, 413, "Request body too large")
                log.warning("request refused: body over the %d limit", self.limit, extra={"path": scope.get("path")})
                return
            chunks.append(chunk)
            more = bool(message.get("more_body"))
        body = b"".join(chunks)
        sent = False

        async def replay() -> dict[str, Any]:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return dict(await receive())

        await self.app(scope, replay, send)


async def _plain(send: Any, status: int, text: str) -> None:
    body = text.encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"text/plain; charset=utf-8"),
                            (b"content-length", str(len(body)).encode()), (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})


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


def _console(app: Any, settings: Settings) -> ChannelMount | None:
    """The web console under /console/ (bot/web, docs/console.md)."""
    if not settings.web.enabled:
        return None
    from bot.web.console import Console, ConsoleMount

    return ConsoleMount(app, Console(app, transcripts=try_transcript))


async def try_transcript(doc: Mapping[str, Any], settings: Any) -> list[dict[str, Any]]:
    """The console's "Try a transcript" (bot/web/console.py), run on the console channel as
    `helpdesk simulate` runs it; a transcript that cannot be run as written is refused with why."""
    from bot.channels.console.simulate import TranscriptError, run_transcript
    from bot.web.console import TranscriptRefused

    try:
        return await run_transcript(doc, settings)
    except TranscriptError as exc:
        raise TranscriptRefused(str(exc)) from exc


# Channel factories, in order; each adds its routes (Slack: POST /slack/events, Teams: POST /api/messages,
# the ticket system's webhook: POST /itsm/webhook, the web console: /console/).
MOUNTS: list[Callable[[Any, Settings], ChannelMount | None]] = [_slack, _teams, _itsm, _console]


def settings_problems(settings: Settings) -> list[str]:
    problems = []
    if settings.slack.enabled:
        from bot.channels.slack.mount import missing_settings

        missing = missing_settings(settings)
        if missing:
            problem = (f"slack is enabled in {settings.slack.mode} mode but {', '.join(missing)} "
                       "is not set (see docs/slack.md)")
            if (settings.slack.mode == "http" and settings.slack.app_token and not settings.slack.signing_secret):
                problem += ("; HELPDESK_SLACK__APP_TOKEN is set: for Socket Mode (no public URL) set "
                            "HELPDESK_SLACK__MODE=socket")
            problems.append(problem)
    problems.extend(demo_directory_problems(settings))
    from bot.itsm.wiring import settings_problems as itsm_problems

    problems += [f"{p} (see docs/itsm.md)" for p in itsm_problems(settings)]
    if settings.web.enabled:
        from bot.web.auth import slack_problems

        problems += slack_problems(settings)
    return problems


def demo_directory_problems(settings: Settings) -> list[str]:
    """The demo directory knows only its fictional people: on a real Slack workspace or Teams tenant
    it would answer everyone "I couldn't find your account". Refused unless directory.allow_demo."""
    if settings.directory.backend != "demo" or settings.directory.allow_demo:
        return []
    real = []
    if settings.slack.enabled and "slack.com" in settings.slack.api_url.lower():
        real.append("Slack")
    if settings.teams.enabled and not settings.teams.allow_anonymous:
        real.append("Teams")
    if not real:
        return []
    return [f"{' and '.join(real)} {'is' if len(real) == 1 else 'are'} enabled with the demo directory, which "
            "knows only fictional people and would tell everyone \"I couldn't find your account\": set "
            "HELPDESK_DIRECTORY__BACKEND=graph (docs/graph.md), or HELPDESK_DIRECTORY__ALLOW_DEMO=true for a "
            "test workspace"]


def build_asgi(app: Any, mounts: Sequence[ChannelMount]) -> Starlette:
    async def healthz(request: Request) -> JSONResponse:
        # Liveness: the process answers. No I/O, so a slow database never gets replicas restarted.
        return JSONResponse({"ok": True, "channels": [m.name for m in mounts]})

    async def readyz(request: Request) -> JSONResponse:
        # Readiness: this replica can do work (the database answers within 3 s).
        from sqlalchemy import text

        try:
            async with asyncio.timeout(3):
                async with app.db.connect() as connection:
                    await connection.execute(text("SELECT 1"))
        except Exception as exc:
            return JSONResponse({"ok": False, "database": "unreachable", "error": type(exc).__name__},
                                status_code=503)
        return JSONResponse({"ok": True, "database": "ok", "channels": [m.name for m in mounts]})

    async def metrics(request: Request) -> Response:
        from bot.metrics import CONTENT_TYPE, exposition

        return Response(await exposition(app.sessions, app.clock()), media_type=CONTENT_TYPE)

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

    routes: list[BaseRoute] = [Route("/healthz", healthz, methods=["GET"]), Route("/readyz", readyz, methods=["GET"])]
    if app.settings.metrics.enabled:
        routes.append(Route("/metrics", metrics, methods=["GET"]))
    for mount in mounts:
        routes.extend(mount.routes())
    limit = int(getattr(getattr(getattr(app, "settings", None), "server", None), "max_body_bytes", 1_048_576))
    return Starlette(routes=routes, lifespan=lifespan, middleware=[Middleware(BodyLimit, limit=limit)])


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


def start_beside_chat(app: Any, host: str, port: int) -> str:
    """`helpdesk chat --web` (`make demo`): serve the console in the chat's process and event loop.
    Returns the line to print: the console's address, or why it is not served."""
    import socket

    import uvicorn

    from bot.web.console import Console, ConsoleMount

    if not app.settings.web.enabled:
        return "Web console: off (web.enabled is false)."
    try:
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind((host, port))
    except OSError as exc:
        return f"Web console: not started, {host}:{port} is in use ({exc.strerror}); set HELPDESK_SERVER__PORT."

    class _Quiet(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self) -> Any:  # Ctrl-C belongs to the chat
            yield

    mount = ConsoleMount(app, Console(app, transcripts=try_transcript))
    config = uvicorn.Config(build_asgi(app, [mount]), host=host, port=port, log_config=None, access_log=False,
                            lifespan="off")
    app.background(_Quiet(config).serve(), "web-console")
    shown = "localhost" if host in ("127.0.0.1", "::1") else host
    who = ", ".join(email for email, _ in mount.console._demo_people()[:3])
    extra = f" (demo sign-in: {who})" if mount.console.demo and who else ""
    return f"Web console: http://{shown}:{port}/console/{extra}"
