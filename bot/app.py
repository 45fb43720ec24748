"""Composition root: `build_app(settings)` wires stores, services and channels. No logic here."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from bot.core.models import Platform
from bot.core.pipeline import Pipeline, system_clock
from bot.core.ports import (
    ActionRunner,
    ChannelMembers,
    DurableInbox,
    KnowledgeBase,
    PersonResolver,
    PlatformAccounts,
)
from bot.engine.engine import Engine
from bot.engine.loader import FlowSet, Known, load_flows
from bot.engine.triage import Triage
from bot.outbox.worker import OutboxWorker, Sender, pacing_from_settings
from bot.render.renderer import Renderer
from bot.settings import Settings
from bot.store.db import create_engine, session_factory

log = logging.getLogger("bot.app")



class StartupError(Exception):
    """The bot cannot start: broken flows, bad settings. The message says what to fix."""


@dataclass
class App:
    settings: Settings
    db: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    renderer: Renderer
    flows: FlowSet
    engine: Engine
    triage: Triage
    pipeline: Pipeline
    resolver: PersonResolver
    kb: KnowledgeBase | None = None
    actions: ActionRunner | None = None
    directory: Any = None
    services: dict[str, Any] = field(default_factory=dict)
    # Who is in a channel, per platform that can list it (bot/channels/members.py).
    channel_members: list[ChannelMembers] = field(default_factory=list)
    # Whose account a platform user id is, per platform that can say (bot/channels/accounts.py).
    accounts: dict[str, PlatformAccounts] = field(default_factory=dict)
    worker: OutboxWorker | None = None
    clock: Callable[[], datetime] = system_clock
    _inbox: DurableInbox | None = None
    _tasks: list[asyncio.Task[Any]] = field(default_factory=list)
    _closers: list[Callable[[], Any]] = field(default_factory=list)

    @property
    def default_platform(self) -> Platform:
        """Where people are reached when we have never seen their direct conversation."""
        if self.settings.slack.enabled:
            return Platform.SLACK
        if self.settings.teams.enabled:
            return Platform.TEAMS
        return Platform.CONSOLE

    def durable_inbox(self) -> DurableInbox:
        """Where a channel commits what it acknowledges before handling it (bot/store/inbox.py)."""
        if self._inbox is None:
            from bot.store.inbox import Inbox

            cfg = self.settings.inbox
            # The real clock, not `self.clock`: the inbox's times are leases and retry backoff (pacing),
            # which must run on while a test's or simulate's injected clock stands still.
            self._inbox = Inbox(self.sessions, lease_seconds=cfg.lease_seconds, max_attempts=cfg.max_attempts)
        return self._inbox

    def start_worker(self, senders: Mapping[str, Sender]) -> OutboxWorker:
        """Deliver outbox rows in this process (the embedded default)."""
        cfg = self.settings.outbox
        self.worker = OutboxWorker(self.sessions, senders, max_attempts=cfg.max_attempts,
                                   lease_seconds=cfg.lease_seconds, poll_seconds=cfg.poll_seconds,
                                   clock=self.clock, pacing=pacing_from_settings(cfg),
                                   concurrency=cfg.concurrency)
        self.pipeline.on_commit = self.worker.wake
        self._tasks.append(asyncio.create_task(self.worker.run_forever(), name="outbox-worker"))
        return self.worker

    def add_tick(self, hook: Callable[[], Any]) -> None:
        """A periodic job (SLA reminders, claim release, auto-close...): an async callable run every
        few seconds by `run_ticks`, and after every turn by `helpdesk simulate` (with its fake clock)."""
        self.services.setdefault("tick_hooks", []).append(hook)

    async def tick(self) -> None:
        for hook in self.services.get("tick_hooks", []):
            try:
                await hook()
            except Exception:
                log.exception("periodic job failed")

    async def run_ticks(self, interval: float = 15.0) -> None:
        while True:
            await self.tick()
            await asyncio.sleep(interval)

    def background(self, coro: Any, name: str) -> None:
        self._tasks.append(asyncio.create_task(coro, name=name))

    def on_close(self, closer: Callable[[], Any]) -> None:
        self._closers.append(closer)

    async def aclose(self) -> None:
        if self.worker is not None:
            self.worker.stop()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        for closer in reversed(self._closers):
            result = closer()
            if asyncio.iscoroutine(result):
                with contextlib.suppress(Exception):
                    await result
        await self.db.dispose()


def _build_kb(settings: Settings) -> Any:
    from bot.kb.watcher import ReloadingKb

    return ReloadingKb(settings.kb_dir, interval=settings.kb.reload_seconds)


def _build_directory(settings: Settings, clock: Callable[[], datetime]
                     ) -> tuple[Any, PersonResolver, Any]:
    from bot.graph.factory import build_action_runner, build_directory, build_resolver
    from bot.graph.policy import PolicyError

    directory = build_directory(settings)
    try:
        runner = build_action_runner(settings, directory, clock=clock)
    except PolicyError as exc:
        raise StartupError(f"self-service policy: {exc}") from exc
    return directory, build_resolver(settings, directory), runner


def _wire_tickets(app: App) -> Any:
    from bot.tickets.handler import TicketHandler
    from bot.tickets.service import TicketService

    service = TicketService(app.settings, app.renderer, app.resolver, sessions=app.sessions, clock=app.clock)
    handler = TicketHandler(service)
    app.pipeline.tickets = handler
    app.pipeline.add_handler(handler)
    app.services["tickets"] = service
    from bot.tickets.home import home_section

    app.services.setdefault("home_sections", []).append(home_section(service))  # Slack Home: open tickets
    app.add_tick(service.tick)  # SLA reminders and breaches, claim release, auto-close
    if app.settings.itsm.enabled:
        from bot.itsm.wiring import wire

        wire(app, service)  # the help desk's own ticket system (docs/itsm.md)
    return handler


async def build_app(settings: Settings, *, clock: Callable[[], datetime] = system_clock,
                    strict_flows: bool = True, database_url: str | None = None) -> App:
    db = create_engine(database_url or settings.database_url, echo=settings.database.echo,
                       pool_size=settings.database.pool_size)
    sessions = session_factory(db)
    renderer = Renderer()
    renderer.env.globals.update(app_name=settings.app.name, hr_contact=settings.app.hr_contact,
                                facilities_contact=settings.app.facilities_contact)
    kb = _build_kb(settings)
    directory, resolver, actions = _build_directory(settings, clock)
    known = Known(
        templates=renderer.template_names(),
        actions=actions.names() if actions is not None else None,
        articles=kb.article_ids() if kb is not None else None,
        categories=frozenset(settings.tickets.categories),
    )
    flows = load_flows(settings.flows_dir, known)
    if flows.errors:
        listing = "\n  ".join(str(e) for e in flows.errors)
        if strict_flows:
            await db.dispose()
            raise StartupError(f"flow files have problems (run `helpdesk flows validate`):\n  {listing}")
        log.error("skipping broken flow files:\n  %s", listing)
    engine = Engine(flows.flows, idle_timeout=timedelta(minutes=settings.flows.idle_timeout_minutes),
                    resume_window=timedelta(hours=settings.flows.resume_window_hours))
    triage = _triage_for(flows)
    t = settings.triage
    pipeline = Pipeline(sessions=sessions, resolver=resolver, engine=engine, triage=triage, renderer=renderer,
                        kb=kb, actions=actions, clock=clock,
                        triage_thresholds=(t.start_threshold, t.min_confidence, t.ambiguity_margin),
                        suggest_floor=t.suggest_floor)
    app = App(settings=settings, db=db, sessions=sessions, renderer=renderer, flows=flows, engine=engine,
              triage=triage, pipeline=pipeline, resolver=resolver, kb=kb, actions=actions, directory=directory,
              clock=clock)
    from bot.metrics import observe_turn

    pipeline.on_turn = observe_turn  # GET /metrics: turns and their latency
    app.on_close(actions.aclose)  # closes the directory too
    kb.start()
    app.on_close(kb.close)
    tickets = _wire_tickets(app)
    _wire_self_service(app, actions)
    from bot.graph.listening import DirectoryListener

    pipeline.listener = DirectoryListener(directory)  # what a message names: devices, groups
    from bot.channels.accounts import build_account_lookups
    from bot.channels.members import build_member_listers
    from bot.outages import install as install_outages

    app.channel_members = build_member_listers(settings)
    app.accounts = build_account_lookups(settings)
    for lookup in app.accounts.values():
        app.on_close(lookup.aclose)

    install_outages(app)  # its turn handler runs before the flow engine
    _wire_retention(app)
    from bot.tickets.handler import RelayHandler

    # Last of the handlers: an outage status, a command or a confident new request goes first.
    app.pipeline.add_handler(RelayHandler(tickets, app.pipeline))
    return app


_TRIAGE_CACHE: dict[str, Triage] = {}


def _triage_for(flows: FlowSet) -> Triage:
    """Triage trains on the flows' trigger examples (a few seconds); one model per set of flows
    per process, so tests and `simulate` runs that build many apps train it once."""
    fingerprint = hashlib.sha256(json.dumps(
        {fid: [f.triggers.model_dump(mode="json"), f.category] for fid, f in sorted(flows.flows.items())},
        sort_keys=True).encode()).hexdigest()
    if fingerprint not in _TRIAGE_CACHE:
        _TRIAGE_CACHE[fingerprint] = Triage(dict(flows.flows))
    return _TRIAGE_CACHE[fingerprint]


def _wire_retention(app: App) -> None:
    """The scheduled purge (retention.message_days): at most every purge_every_hours per process;
    every step is idempotent, so replicas running it at once do no harm."""
    from bot.store.retention import purge

    cfg = app.settings.retention
    last: list[datetime] = []

    async def job() -> None:
        now = app.clock()
        if cfg.message_days <= 0 or (last and now - last[0] < timedelta(hours=cfg.purge_every_hours)):
            return
        last[:] = [now]
        counts = await purge(app.sessions, now=now, days=cfg.message_days)
        log.info("retention purge", extra={"days": cfg.message_days, **{f"purged_{k}": v for k, v in counts.items()}})

    app.add_tick(job)


def _wire_self_service(app: App, runner: Any) -> None:
    from bot.graph.handler import ApprovalHandler, expire_access_requests

    app.pipeline.add_handler(ApprovalHandler(runner.approvals))
    app.add_tick(lambda: expire_access_requests(app, runner.approvals))
