"""The `helpdesk` command. Each subcommand loads settings, builds what it needs, and exits with a
clear message (never a traceback) when settings, flows or the database are wrong."""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

# The shared helpers live in bot/clikit.py so the sub-command modules need not import this one.
from bot.clikit import fail, run, settings_or_exit
from bot.logs import configure_logging
from bot.settings import Settings, SettingsError

T = TypeVar("T")

app = typer.Typer(help="IT help desk bot for Slack and Microsoft Teams.", no_args_is_help=True,
                  add_completion=False, pretty_exceptions_enable=False)
db_app = typer.Typer(help="Database migrations.", no_args_is_help=True)
config_app = typer.Typer(help="Settings.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(config_app, name="config")


def _mount_subcommands() -> None:
    from bot.channels.teams.cli import app as teams_app
    from bot.flows_cli import eval_app, flows_app, triage
    from bot.itsm.cli import itsm_app
    from bot.kb.cli import app as kb_app
    from bot.outages.cli import outage_app
    from bot.store.inbox_cli import inbox_app
    from bot.tickets.cli import report, tickets_app

    app.add_typer(flows_app, name="flows", help="Conversation flows: validate them.")
    # A plain command, not a group: options may follow TEXT (`helpdesk triage TEXT --json`).
    app.command("triage", help="Which flow a message goes to.")(triage)
    app.add_typer(eval_app, name="eval", help="Evaluate triage on labelled messages.")
    app.add_typer(kb_app, name="kb", help="Knowledge base: search, lint, gaps, stats.")
    app.add_typer(tickets_app, name="tickets", help="Technician queue: open, list, show, claim, assign, resolve.")
    app.command("report", help="Help desk figures (docs/metrics.md).")(report)
    app.add_typer(outage_app, name="outage", help="Outage notices: post, update, resolve, recall, list, status.")
    app.add_typer(teams_app, name="teams", help="Microsoft Teams app package.")
    app.add_typer(inbox_app, name="inbox", help="Acknowledged deliveries: list them, re-queue failed ones.")
    app.add_typer(itsm_app, name="itsm", help="The help desk's own ticket system: check the connection.")


_mount_subcommands()


@db_app.command("upgrade")
def db_upgrade(revision: Annotated[str, typer.Argument(help="Target revision")] = "head") -> None:
    """Apply database migrations (creates the SQLite file on first use)."""
    from bot.settings import mask_url
    from bot.store.migrate import upgrade

    settings = settings_or_exit()
    url = settings.database_url
    run(lambda: upgrade(url, revision), database_url=url)
    typer.echo(f"database at {mask_url(url)} is at {revision}")


@config_app.command("check")
def config_check(as_json: Annotated[bool, typer.Option("--json", help="JSON output")] = False) -> None:
    """Print the effective settings (file + environment), secrets masked."""
    settings = settings_or_exit(log=False)
    data = settings.masked()
    if as_json:
        typer.echo(json.dumps(data, indent=2))
        return
    typer.echo(f"# settings from {settings.config_file} and HELPDESK_* environment variables")
    for section, values in data.items():
        typer.echo(f"{section}:")
        for key, value in values.items():
            typer.echo(f"  {key}: {json.dumps(value)}")


@app.command()
def chat(as_email: Annotated[str, typer.Option("--as", help="Directory email to chat as")] = "alice@example.com",
         web: Annotated[bool, typer.Option("--web", help="Also serve the web console (server.host/port)")] = False,
         ) -> None:
    """Talk to the bot in the terminal (buttons are numbered choices)."""
    from bot.app import build_app
    from bot.channels.console.chat import ConsoleChat
    from bot.store.migrate import upgrade

    settings = settings_or_exit(log=False)
    # The terminal is the conversation: only problems are logged to it.
    configure_logging(settings.log.format, "WARNING" if settings.log.level == "INFO" else settings.log.level)

    async def _chat() -> None:
        await upgrade(settings.database_url)
        bot_app = await build_app(settings)
        try:
            if web:
                from bot.channels.serve import start_beside_chat

                print(start_beside_chat(bot_app, settings.server.host, settings.server.port), flush=True)
            await ConsoleChat(bot_app, as_email).run()
        finally:
            await bot_app.aclose()

    run(_chat, database_url=settings.database_url)


@app.command()
def simulate(
    file: Annotated[Path, typer.Argument(help="YAML transcript", exists=True, dir_okay=False)],
    as_email: Annotated[str | None, typer.Option("--as", help="Who speaks when a turn does not say")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON event per line")] = False,
) -> None:
    """Run a scripted conversation on a fresh temporary database and print the events."""
    from bot.channels.console.simulate import (
        TranscriptError,
        check_expectations,
        load_transcript,
        run_transcript,
        transcript_settings,
    )

    try:
        doc = load_transcript(file)
        overrides = transcript_settings(doc)
    except TranscriptError as exc:
        fail(f"helpdesk: {exc}")
        return
    # The transcript's `settings:` block applies here exactly as in the test suite's runner.
    settings = settings_or_exit(log=False, overrides=overrides)
    configure_logging(settings.log.format, "WARNING")
    try:
        events = run(lambda: run_transcript(doc, settings, as_email=as_email))
    except TranscriptError as exc:
        fail(f"helpdesk: {exc}")
        return
    for event in events:
        if as_json:
            typer.echo(json.dumps(event, ensure_ascii=False, default=str))
        else:
            typer.echo(_describe(event))
    problems = check_expectations(events, doc.get("expect") or [])
    if problems:
        for problem in problems:
            typer.echo(f"EXPECTATION FAILED: {problem}", err=True)
        raise typer.Exit(1)


def _describe(event: dict[str, Any]) -> str:
    kind = event.get("type")
    if kind == "turn":
        what = event.get("say") or (f"[clicks {event['click']}]" if "click" in event else f"[form {event.get('form')}]")
        return f"\n{event.get('as')}> {what}"
    if kind == "reply":
        buttons = event.get("buttons") or []
        suffix = ("\n   " + "   ".join(f"[{n}] {b}" for n, b in enumerate(buttons, 1))) if buttons else ""
        return f"bot> {event.get('text')}{suffix}"
    if kind == "delivered":
        buttons = event.get("buttons") or []
        suffix = ("\n   " + "   ".join(f"[{n}] {b}" for n, b in enumerate(buttons, 1))) if buttons else ""
        return f"  -> to {event.get('to')}: {event.get('text')}{suffix}"
    rest = {k: v for k, v in event.items() if k != "type"}
    return f"  · {kind} {json.dumps(rest, ensure_ascii=False, default=str)}"


@app.command()
def serve(host: Annotated[str | None, typer.Option("--host", help="Listen address (server.host)")] = None,
          port: Annotated[int | None, typer.Option("--port", help="Listen port (server.port)")] = None) -> None:
    """Serve the enabled channels: Slack (HTTP or Socket Mode), Teams, and GET /healthz."""
    from bot.channels.serve import serve as run_server

    settings = settings_or_exit()
    run(lambda: _serve_when_database_ready(settings, lambda: run_server(settings, host, port)),
        database_url=settings.database_url)


async def _serve_when_database_ready(settings: Settings, start: Callable[[], Coroutine[Any, Any, None]]) -> None:
    """`serve` waits for a database that is still starting (a compose stack, a failover) with
    backoff, one line per try, then starts; it gives up after `database.connect_retries`."""
    from sqlalchemy import text

    from bot.settings import mask_url
    from bot.store.db import create_engine, database_unavailable

    log = logging.getLogger("bot.serve")
    retries = settings.database.connect_retries
    for attempt in range(retries + 1):
        engine = create_engine(settings.database_url)
        try:
            async with engine.connect() as connection:
                await connection.execute(text("SELECT 1"))
            break
        except Exception as exc:
            why = database_unavailable(exc)
            if why is None or attempt >= retries:
                raise
            wait = min(30.0, 2.0 ** attempt)
            log.warning("database at %s not reachable (%s); trying again in %.0fs (%d of %d)",
                        mask_url(settings.database_url), why, wait, attempt + 1, retries)
            await asyncio.sleep(wait)
        finally:
            await engine.dispose()
    await start()


@app.command()
def purge(days: Annotated[int | None, typer.Option("--days", help="Override retention.message_days")] = None,
          ) -> None:
    """Purge message text and transcripts older than retention.message_days (audit events stay)."""
    from bot.store.db import create_engine, session_factory
    from bot.store.retention import purge as run_purge

    settings = settings_or_exit()
    keep = settings.retention.message_days if days is None else days
    if keep <= 0:
        fail("helpdesk purge: retention.message_days is 0 (keep everything); pass --days N to purge", 2)

    async def _purge() -> dict[str, int]:
        from datetime import UTC, datetime

        engine = create_engine(settings.database_url)
        try:
            # A command-line entry point: the real clock is the injected clock here (as build_app's default).
            return await run_purge(session_factory(engine), now=datetime.now(UTC), days=keep)
        finally:
            await engine.dispose()

    counts = run(_purge)
    typer.echo(f"purged text older than {keep} days: " + ", ".join(f"{k} {v}" for k, v in counts.items()))


person_app = typer.Typer(help="Data-subject requests: export or forget what is held about a person.",
                         no_args_is_help=True)
app.add_typer(person_app, name="person")


def _with_sessions(settings: Settings, work: Callable[[Any], Coroutine[Any, Any, T]]) -> T:
    from bot.store.db import create_engine, session_factory

    async def _run() -> T:
        engine = create_engine(settings.database_url)
        try:
            return await work(session_factory(engine))
        finally:
            await engine.dispose()

    return run(_run)


@person_app.command("export")
def person_export(email: Annotated[str, typer.Argument(help="The person's directory email")]) -> None:
    """Print, as JSON, everything held about a person."""
    from bot.store.retention import export_person

    settings = settings_or_exit()
    data = _with_sessions(settings, lambda sessions: export_person(sessions, email))
    typer.echo(json.dumps(data, indent=2, ensure_ascii=False, default=str))


@person_app.command("forget")
def person_forget(
    email: Annotated[str, typer.Argument(help="The person's directory email")],
    by: Annotated[str, typer.Option("--as", help="Who carries out the request (kept in the audit)")] = "operator",
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask for confirmation")] = False,
) -> None:
    """Erase a person: identities and conversations deleted, their text scrubbed, their email
    pseudonymised in the records that stay; the request itself is audited. Prints the records in the
    help desk's ticket system (Jira, ServiceNow) that still hold their data, to erase there."""
    from datetime import UTC, datetime

    from bot.store.retention import forget_person, pseudonym

    settings = settings_or_exit()
    if "@" not in email:
        fail(f"helpdesk person forget: {email!r} is not an email address", 2)
    if not yes and not typer.confirm(f"Forget everything held about {email}? This cannot be undone"):
        fail("nothing changed", 1)
    done = _with_sessions(settings, lambda sessions: forget_person(
        sessions, email, now=datetime.now(UTC), actor=by))
    typer.echo(f"forgot {email} (now {pseudonym(email)}): "
               + ", ".join(f"{k} {v}" for k, v in done.counts.items()))
    # Their tickets' records in the help desk's ticket system still hold their data (docs/itsm.md).
    from bot.itsm.sync import LABELS

    for record in done.remote:
        ref = record["ticket_ref"]
        where = " ".join(p for p in (record["remote_key"], record["url"]) if p) \
            or f"the record of {ref} being created as this ran (its summary starts [{ref}])"
        typer.echo(f"also in {LABELS.get(record['system'], record['system'])}: {where} "
                   f"(ticket {ref}): erase it there; the bot cannot")


@app.command()
def worker() -> None:
    """Run an outbox worker process (for scale-out; the embedded default delivers in-process)."""
    from bot.channels.registry import build_senders
    from bot.outbox.worker import OutboxWorker, pacing_from_settings
    from bot.store.db import create_engine, session_factory

    settings = settings_or_exit()

    async def _work() -> None:
        engine = create_engine(settings.database_url)
        senders = build_senders(settings)
        if settings.itsm.enabled:  # calls to the help desk's ticket system (docs/itsm.md)
            from bot.core.pipeline import system_clock
            from bot.itsm.sync import PLATFORM, ItsmSync
            from bot.itsm.wiring import build_system

            senders[PLATFORM] = ItsmSync(settings, build_system(settings.itsm), session_factory(engine),
                                         clock=system_clock)
        if not senders:
            fail("helpdesk worker: no channel is enabled (slack.enabled / teams.enabled / itsm.system)")
        cfg = settings.outbox
        w = OutboxWorker(session_factory(engine), senders, max_attempts=cfg.max_attempts,
                         lease_seconds=cfg.lease_seconds, poll_seconds=cfg.poll_seconds,
                         pacing=pacing_from_settings(cfg), concurrency=cfg.concurrency)
        try:
            await w.run_forever()
        finally:
            await engine.dispose()

    run(_work, database_url=settings.database_url)


def main() -> None:
    try:
        app()
    except SettingsError as exc:  # pragma: no cover - settings_or_exit handles the usual path
        print(f"helpdesk: {exc}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
