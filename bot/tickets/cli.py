"""`helpdesk tickets ...` and `helpdesk report`: the queue from the command line.

Every command acts as the person `--as EMAIL` names, resolved through the directory, with the same
role checks as chat. Exit codes: 0 done, 1 not found / not possible, 2 usage or setup problem,
3 someone else already holds the ticket (the holder is printed), 4 the role forbids it.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Annotated, Any, TypeVar

import typer

from bot.core.models import Person

T = TypeVar("T")

tickets_app = typer.Typer(help="Technician queue: open, list, show, claim, assign, resolve tickets.",
                          no_args_is_help=True)

AsOption = Annotated[str, typer.Option("--as", help="Directory email of the person acting")]


def _settings() -> Any:
    from bot.clikit import settings_or_exit
    from bot.logs import configure_logging

    settings = settings_or_exit(log=False)
    configure_logging(settings.log.format, "WARNING")
    return settings


def _run(as_email: str, operation: Callable[[Any, Any, Person], Awaitable[T]], *, verb: str) -> T:
    """Run one operation in its own transaction as `as_email`; map ticket errors to exit codes."""
    from sqlalchemy.exc import DBAPIError

    from bot.graph.factory import build_directory, build_resolver
    from bot.render.renderer import Renderer
    from bot.settings import mask_url
    from bot.store.db import create_engine, session_factory
    from bot.store.repos import UnitOfWork
    from bot.tickets.handler import atomic
    from bot.tickets.model import HeldByOther, TicketError
    from bot.tickets.service import TicketService

    settings = _settings()

    async def go() -> T:
        engine = create_engine(settings.database_url, pool_size=2)
        directory = build_directory(settings)
        service = TicketService(settings, Renderer(), build_resolver(settings, directory),
                                sessions=session_factory(engine))
        mirror = None
        if settings.itsm.enabled:  # changes made here reach the ticket system too (through the outbox)
            from bot.core.pipeline import system_clock
            from bot.itsm.sync import ItsmSync
            from bot.itsm.wiring import build_system

            mirror = ItsmSync(settings, build_system(settings.itsm), session_factory(engine), clock=system_clock)
            mirror.tickets = service
            service.mirror = mirror
        try:
            actor = await service.person(as_email)
            if actor is None:
                typer.echo(f"helpdesk: {as_email} is not in the directory", err=True)
                raise typer.Exit(4)
            sessions = session_factory(engine)
            failed: TicketError | None = None
            async with sessions() as session, session.begin():
                uow = UnitOfWork(session, now=datetime.now(UTC), actor=actor.email.lower())
                try:
                    async with atomic(uow):
                        result = await operation(service, uow, actor)
                except TicketError as exc:
                    # The refusal is audited too; the operation itself left nothing behind.
                    uow.emit("ticket_refused", subject=exc.ref, id=exc.ref, reason=exc.kind, op=verb)
                    failed = exc
            if isinstance(failed, HeldByOther):
                typer.echo(f"{failed.ref} is already held by {failed.holder_name} <{failed.holder}>")
                raise typer.Exit(failed.code)
            if failed is not None:
                typer.echo(f"helpdesk: {failed}", err=True)
                raise typer.Exit(failed.code)
            return result
        except DBAPIError as exc:
            typer.echo(f"helpdesk: database problem at {mask_url(settings.database_url)} "
                       f"(run `helpdesk db upgrade`?): {str(exc.orig)[:300]}", err=True)
            raise typer.Exit(2) from None
        finally:
            closer = getattr(directory, "aclose", None)
            if closer is not None:
                await closer()
            if mirror is not None:
                await mirror.system.aclose()
            await engine.dispose()

    try:
        return asyncio.run(go())
    except (OSError, ConnectionError) as exc:
        typer.echo(f"helpdesk: cannot reach the database at {mask_url(settings.database_url)}: {exc}", err=True)
        raise typer.Exit(2) from None


def _print_view(view: Any, as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps(view.to_json(), ensure_ascii=False))
        return
    typer.echo(f"{view.ref}  {view.priority}  {view.category}  {view.status}  "
               f"assignee={view.assignee_email or '-'}  requester={view.requester_email}")
    typer.echo(f"  {view.summary}")
    for key, value in view.details.items():
        typer.echo(f"  {key}: {value}")
    for note in view.notes:
        typer.echo(f"  [{note.at:%Y-%m-%d %H:%M}] {note.kind} {note.author}: {note.text}")


@tickets_app.command("open")
def open_ticket(
    as_email: AsOption,
    for_email: Annotated[str, typer.Option("--for", help="The requester's directory email")],
    category: Annotated[str, typer.Option("--category", help="Triage label, e.g. printer")],
    summary: Annotated[str, typer.Option("--summary", help="What is wrong")],
    impact: Annotated[str, typer.Option(help="high | medium | low")] = "low",
    urgency: Annotated[str, typer.Option(help="high | medium | low")] = "low",
) -> None:
    """Log a phone or walk-up request for someone (technicians); prints the new ticket id."""

    async def op(service: Any, uow: Any, actor: Person) -> str:
        service.require_technician(actor)
        requester = await service.person(for_email)
        if requester is None:
            typer.echo(f"helpdesk: {for_email} is not in the directory", err=True)
            raise typer.Exit(1)
        row = await service.open(uow, requester, category=category, summary=summary, impact=impact.lower(),
                                 urgency=urgency.lower(), channel=service.active_platforms()[0].value,
                                 opened_by=actor)
        return str(row.ref)

    typer.echo(_run(as_email, op, verb="open"))


@tickets_app.command("list")
def list_tickets(
    as_email: AsOption,
    scope: Annotated[str, typer.Option(help="queue | mine | open | requested")] = "open",
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line")] = False,
) -> None:
    """List tickets (employees only ever see their own)."""

    async def op(service: Any, uow: Any, actor: Person) -> list[Any]:
        result: list[Any] = await service.list_tickets(uow, actor, scope, limit=500)
        return result

    for view in _run(as_email, op, verb="list"):
        if as_json:
            typer.echo(json.dumps(view.to_json(), ensure_ascii=False))
        else:
            typer.echo(f"{view.ref}  {view.priority}  {view.status:<21} {view.assignee_email or '-':<28} "
                       f"{view.summary[:60]}")


@tickets_app.command("show")
def show_ticket(
    ticket: Annotated[str, typer.Argument(help="e.g. HD-1001")],
    as_email: AsOption,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Show one ticket with its log (internal notes for technicians only)."""

    async def op(service: Any, uow: Any, actor: Person) -> Any:
        return await service.show(uow, actor, ticket)

    _print_view(_run(as_email, op, verb="show"), as_json)


@tickets_app.command("claim")
def claim_ticket(ticket: Annotated[str, typer.Argument()], as_email: AsOption) -> None:
    """Claim a ticket. Exactly one of any number of simultaneous claimants wins (exit 0); every
    other caller, including one who already holds it, exits 3 and is told who holds it."""

    async def op(service: Any, uow: Any, actor: Person) -> Any:
        return await service.claim(uow, actor, ticket)

    outcome = _run(as_email, op, verb="claim")
    if outcome.action == "already_yours":
        # Only the caller whose claim changed the ticket exits 0, so racing callers can count winners
        # by exit code even when several of them act as the same person.
        typer.echo(f"{outcome.ticket.ref} is already held by you <{outcome.ticket.assignee_email}>")
        raise typer.Exit(3)
    typer.echo(f"{outcome.ticket.ref} claimed")


@tickets_app.command("assign")
def assign_ticket(ticket: Annotated[str, typer.Argument()],
                  to: Annotated[str, typer.Argument(help="Technician's email")], as_email: AsOption) -> None:
    """Assign a ticket to a technician."""

    async def op(service: Any, uow: Any, actor: Person) -> Any:
        return await service.assign(uow, actor, ticket, to)

    outcome = _run(as_email, op, verb="assign")
    typer.echo(f"{outcome.ticket.ref} assigned to {outcome.ticket.assignee_email}")


@tickets_app.command("resolve")
def resolve_ticket(ticket: Annotated[str, typer.Argument()], as_email: AsOption,
                   note: Annotated[str, typer.Option(help="What fixed it (sent to the requester)")] = "") -> None:
    """Resolve a ticket; the requester is asked whether it is fixed and for a rating."""

    async def op(service: Any, uow: Any, actor: Person) -> Any:
        return await service.resolve(uow, actor, ticket, note)

    typer.echo(f"{_run(as_email, op, verb='resolve').ticket.ref} resolved")


@tickets_app.command("reopen")
def reopen_ticket(ticket: Annotated[str, typer.Argument()], as_email: AsOption,
                  reason: Annotated[str, typer.Option()] = "") -> None:
    """Reopen a resolved (or, for technicians, closed) ticket."""

    async def op(service: Any, uow: Any, actor: Person) -> Any:
        return await service.reopen(uow, actor, ticket, reason)

    typer.echo(f"{_run(as_email, op, verb='reopen').ticket.ref} reopened")


@tickets_app.command("note")
def note_ticket(ticket: Annotated[str, typer.Argument()], text: Annotated[str, typer.Argument()],
                as_email: AsOption) -> None:
    """Add an internal note (never sent to the requester)."""

    async def op(service: Any, uow: Any, actor: Person) -> Any:
        return await service.note(uow, actor, ticket, text)

    typer.echo(f"{_run(as_email, op, verb='note').ticket.ref} noted")


@tickets_app.command("reply")
def reply_ticket(ticket: Annotated[str, typer.Argument()], text: Annotated[str, typer.Argument()],
                 as_email: AsOption) -> None:
    """Send a message to the requester (technicians) or to the technicians (the requester)."""

    async def op(service: Any, uow: Any, actor: Person) -> Any:
        row = await service.get(uow, ticket)
        if row.requester_email == actor.email.lower():
            return await service.reply_from_requester(uow, actor, ticket, text)
        return await service.reply_to_requester(uow, actor, ticket, text)

    typer.echo(f"{_run(as_email, op, verb='reply').ticket.ref} sent")


def report(
    since: Annotated[str, typer.Option(help="Window: 30d, 12h, 2w")] = "30d",
    output: Annotated[str, typer.Option("--format", help="text | json | csv")] = "text",
) -> None:
    """Help desk figures (defined in docs/metrics.md)."""
    from bot.settings import mask_url
    from bot.store.db import create_engine, session_factory
    from bot.tickets.report import ReportError, build_report, format_report, parse_since

    settings = _settings()
    if output not in ("text", "json", "csv"):
        typer.echo("helpdesk: --format is text, json or csv", err=True)
        raise typer.Exit(2)
    try:
        window = parse_since(since)
    except ReportError as exc:
        typer.echo(f"helpdesk: {exc}", err=True)
        raise typer.Exit(2) from None

    async def go() -> dict[str, Any]:
        engine = create_engine(settings.database_url, pool_size=2)
        try:
            return await build_report(session_factory(engine), settings, since=window)
        finally:
            await engine.dispose()

    try:
        data = asyncio.run(go())
    except Exception as exc:
        typer.echo(f"helpdesk: cannot build the report from {mask_url(settings.database_url)} "
                   f"(run `helpdesk db upgrade`?): {str(exc)[:300]}", err=True)
        raise typer.Exit(2) from None
    typer.echo(format_report(data, output), nl=False)


if __name__ == "__main__":  # pragma: no cover
    tickets_app()
