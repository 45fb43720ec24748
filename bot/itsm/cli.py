"""`helpdesk itsm check`: can the bot reach the ticket system, sign in, and use its mappings?"""

from __future__ import annotations

import asyncio

import typer

itsm_app = typer.Typer(help="The help desk's own ticket system (Jira Service Management, ServiceNow, webhook).",
                       no_args_is_help=True)


@itsm_app.command("check")
def check() -> None:
    """Test the connection, the integration account's permissions and the field mappings."""
    from bot.clikit import fail, settings_or_exit
    from bot.itsm.wiring import build_system, settings_problems

    settings = settings_or_exit(log=False)
    cfg = settings.itsm
    if not cfg.enabled:
        fail("helpdesk itsm check: no ticket system is configured (set itsm.system: jira | servicenow | webhook; "
             "docs/itsm.md)")
    problems = settings_problems(settings)
    if problems:
        fail("helpdesk itsm check: settings problems:\n  " + "\n  ".join(problems))

    async def go() -> list[tuple[bool, str, str]]:
        system = build_system(cfg)
        try:
            return [(line.ok, line.what, line.detail) for line in await system.check()]
        finally:
            await system.aclose()

    lines = asyncio.run(go())
    typer.echo(f"{cfg.system} at {cfg.base_url}")
    for ok, what, detail in lines:
        typer.echo(f"  {'ok ' if ok else 'NO '} {what}: {detail}")
    failed = sum(1 for ok, _, _ in lines if not ok)
    typer.echo("all good" if not failed else f"{failed} problem(s): fix them and run `helpdesk itsm check` again")
    raise typer.Exit(0 if not failed else 1)
