"""`helpdesk outage post|update|resolve|recall|list|status --as EMAIL`: admin notices from a shell.

Mounted by bot/cli.py as `helpdesk outage`. The `--as` person must be an admin (list/status: a
technician) in the directory; exit 0 ok, 1 not found or closed, 2 bad input, 4 role forbids.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

import typer

outage_app = typer.Typer(help="Outage notices (admins).", no_args_is_help=True)

AsOption = Annotated[str, typer.Option("--as", help="Directory email of the admin acting")]


def _run(as_email: str, need_admin: bool, action: Callable[[Any, Any, Any], Awaitable[Any]]) -> Any:
    from bot.app import build_app
    from bot.clikit import fail, run, settings_or_exit
    from bot.core.models import Platform, PlatformUser
    from bot.outages.model import OutageError
    from bot.store.migrate import upgrade
    from bot.store.repos import UnitOfWork

    settings = settings_or_exit()

    async def go() -> Any:
        await upgrade(settings.database_url)
        app = await build_app(settings, strict_flows=False)
        try:
            person = await app.resolver.resolve(PlatformUser(Platform.CONSOLE, as_email, email=as_email))
            if person is None:
                return ("forbidden", f"{as_email} is not in the directory")
            if not (person.is_admin if need_admin else person.is_technician):
                return ("forbidden", f"{as_email} may not do that (role)")
            service = app.services["outages"]
            async with app.sessions() as session, session.begin():
                uow = UnitOfWork(session, now=app.clock(), actor=person.email)
                try:
                    return ("ok", await action(service, uow, person))
                except OutageError as exc:
                    return (exc.code, str(exc))
        finally:
            await app.aclose()

    outcome, value = run(go)
    if outcome == "forbidden":
        fail(f"helpdesk: {value}", 4)
    if outcome in ("not_found", "closed"):
        fail(f"helpdesk: {value}", 1)
    if outcome != "ok":
        fail(f"helpdesk: {value}", 2)
    return value


@outage_app.command("post")
def post(
    as_email: AsOption,
    service: Annotated[str, typer.Option(help="Service name, e.g. Outlook")],
    summary: Annotated[str, typer.Option(help="What is happening")] = "",
    severity: Annotated[str, typer.Option(help="minor | major | critical")] = "major",
    aliases: Annotated[str, typer.Option(help="Other names, comma separated")] = "",
    keywords: Annotated[str, typer.Option(help="Words people use, comma separated")] = "",
    category: Annotated[str, typer.Option(help="Triage label (email, vpn...) for ticket links")] = "",
    impact: str = "",
    workaround: str = "",
    fix: Annotated[str, typer.Option(help="Expected fix time")] = "",
    next_update: Annotated[str, typer.Option(help="HH:MM, +30m or ISO")] = "",
    channels: Annotated[str, typer.Option(help="Announcement channels: C1,slack:C2,teams:19:..")] = "",
    dm: Annotated[str, typer.Option(help="everyone | group:NAME[,NAME] | channel:ID")] = "",
    groups: Annotated[str, typer.Option(help="DM members of these directory groups")] = "",
    members_of: Annotated[str, typer.Option(help="DM members of these channels")] = "",
    maintenance: Annotated[bool, typer.Option(help="Scheduled maintenance (needs --starts/--ends)")] = False,
    starts: str = "",
    ends: str = "",
    reminder: Annotated[str, typer.Option(help="Reminder minutes before the start")] = "",
) -> None:
    """Post a notice; prints its number."""
    from bot.outages.commands import draft_from

    options = {k: v for k, v in {
        "service": service, "summary": summary, "severity": severity, "aliases": aliases, "keywords": keywords,
        "category": category, "impact": impact, "workaround": workaround, "fix": fix, "next-update": next_update,
        "channels": channels, "dm": dm, "groups": groups, "members-of": members_of, "starts": starts, "ends": ends,
        "reminder": reminder, "maintenance": "true" if maintenance else ""}.items() if v}

    async def action(svc: Any, uow: Any, person: Any) -> Any:
        draft = draft_from(options, now=uow.now, tz=svc.tz.key, default_platform=svc.dm_platform)
        result = await svc.post(uow, draft, actor=person.email)
        return f"{result.incident.id}\t{result.edits} recipients"

    typer.echo(_run(as_email, True, action))


@outage_app.command("update")
def update_notice(
    incident: Annotated[int, typer.Argument(help="Notice number")],
    as_email: AsOption,
    summary: Annotated[str | None, typer.Option()] = None,
    severity: Annotated[str | None, typer.Option()] = None,
    impact: Annotated[str | None, typer.Option()] = None,
    workaround: Annotated[str | None, typer.Option()] = None,
    fix: Annotated[str | None, typer.Option()] = None,
    next_update: Annotated[str | None, typer.Option()] = None,
    aliases: Annotated[str | None, typer.Option()] = None,
    keywords: Annotated[str | None, typer.Option()] = None,
) -> None:
    """Edit every copy of a notice in place."""
    from bot.outages.commands import changes_from

    options = {k: v for k, v in {"summary": summary, "severity": severity, "impact": impact,
                                 "workaround": workaround, "fix": fix, "next-update": next_update,
                                 "aliases": aliases, "keywords": keywords}.items() if v is not None}

    async def action(svc: Any, uow: Any, person: Any) -> Any:
        result = await svc.update(uow, incident, changes_from(options, now=uow.now, tz=svc.tz.key),
                                  actor=person.email)
        return f"{incident}\t{result.edits} copies being edited"

    typer.echo(_run(as_email, True, action))


@outage_app.command("resolve")
def resolve(incident: Annotated[int, typer.Argument()], as_email: AsOption,
            note: Annotated[str, typer.Option(help="What fixed it")] = "") -> None:
    """Mark every copy resolved; tell affected people and requesters of linked tickets."""

    async def action(svc: Any, uow: Any, person: Any) -> Any:
        result = await svc.resolve(uow, incident, actor=person.email, note=note)
        return f"{incident}\t{result.edits} copies being marked resolved, {result.notified} people told"

    typer.echo(_run(as_email, True, action))


@outage_app.command("recall")
def recall(incident: Annotated[int, typer.Argument()], as_email: AsOption) -> None:
    """A mistaken notice: cancel undelivered copies, delete delivered ones."""

    async def action(svc: Any, uow: Any, person: Any) -> Any:
        result = await svc.recall(uow, incident, actor=person.email)
        return f"{incident}\t{result.cancelled} cancelled, {result.deleted} being deleted"

    typer.echo(_run(as_email, True, action))


@outage_app.command("list")
def list_notices(as_email: AsOption,
                 as_json: Annotated[bool, typer.Option("--json", help="JSON lines")] = False) -> None:
    """Active incidents and scheduled or running maintenance."""

    async def action(svc: Any, uow: Any, person: Any) -> Any:
        return [{"id": i.id, "kind": i.kind, "status": i.status, "service": i.service, "severity": i.severity,
                 "summary": i.summary} for i in await svc.current(uow.session)]

    for row in _run(as_email, False, action):
        typer.echo(json.dumps(row) if as_json else f"{row['id']}\t{row['status']}\t{row['service']}\t{row['summary']}")


@outage_app.command("status")
def status(incident: Annotated[int, typer.Argument()], as_email: AsOption,
           as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Delivery and reach: sent, pending, failed with reasons, affected, acknowledged."""

    async def action(svc: Any, uow: Any, person: Any) -> Any:
        report = await svc.report(uow.session, incident)
        return report.to_json() if as_json else svc.render_report(report, _console())

    result = _run(as_email, False, action)
    typer.echo(json.dumps(result) if as_json else result)


def _console() -> Any:
    from bot.core.models import Platform

    return Platform.CONSOLE
