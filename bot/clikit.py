"""What every `helpdesk` sub-command shares: load settings or exit with a clear message, fail
cleanly, run a coroutine turning known startup and database faults into messages.

bot/cli.py mounts the sub-commands (bot/tickets/cli.py, bot/outages/cli.py...); they import these
helpers from here, not from bot/cli.py, so no sub-command module imports the module that mounts it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import typer

from bot.logs import configure_logging
from bot.settings import Settings, SettingsError, load_settings

T = TypeVar("T")


def fail(message: str, code: int = 2) -> None:
    typer.echo(message, err=True)
    raise typer.Exit(code)


def settings_or_exit(log: bool = True, overrides: dict[str, Any] | None = None) -> Settings:
    try:
        settings = load_settings(**(overrides or {}))
    except SettingsError as exc:
        fail(f"helpdesk: {exc}")
        raise  # unreachable; keeps type checkers happy
    if log:
        configure_logging(settings.log.format, settings.log.level)
    return settings


def run(coro_factory: Callable[[], Coroutine[Any, Any, T]], database_url: str | None = None) -> T:
    from bot.app import StartupError
    from bot.store.db import database_unavailable

    try:
        return asyncio.run(coro_factory())
    except StartupError as exc:
        fail(f"helpdesk: {exc}")
        raise
    except Exception as exc:
        why = database_unavailable(exc) if database_url is not None else None
        if why is None:
            raise
        from bot.settings import mask_url

        fail(f"helpdesk: cannot use the database at {mask_url(database_url or '')}: {why}")
        raise
    except KeyboardInterrupt:
        raise typer.Exit(130) from None
