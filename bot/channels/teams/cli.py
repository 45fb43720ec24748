"""`helpdesk teams ...` (mounted by bot/cli.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(help="Microsoft Teams app.", no_args_is_help=True)


@app.callback()
def teams() -> None:
    """Microsoft Teams app."""


@app.command("package")
def package(
    out: Annotated[Path, typer.Option("--out", help="Where to write the zip")] = Path("dist/helpdesk-teams.zip"),
    app_id: Annotated[str | None, typer.Option("--app-id", help="Bot app id (default: teams.app_id)")] = None,
) -> None:
    """Build the Teams app package (manifest.json, color.png, outline.png) to upload in Teams."""
    from bot.channels.teams.package import PackageError, build_package
    from bot.clikit import fail, settings_or_exit

    settings = settings_or_exit(log=False)
    try:
        written = build_package(settings, out, app_id)
    except PackageError as exc:
        fail(f"helpdesk teams package: {exc}")
        return
    typer.echo(f"wrote {written} (upload it in Teams: Apps > Manage your apps > Upload an app)")
