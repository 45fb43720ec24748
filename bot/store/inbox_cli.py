"""`helpdesk inbox list|retry`: deliveries the bot acknowledged, and the ones that failed for good.

Mounted by bot/cli.py as `helpdesk inbox`. A Slack message whose turn failed `inbox.max_attempts`
times is `failed` (the person was told something went wrong). Once the cause is gone (a database or
Graph outage over, a fix deployed), `retry` makes such rows due again and any running replica's
inbox loop handles them (bot/store/inbox.py). Never prints what the person wrote: only ids, keys,
counts, times and the error's first line (secrets removed when it was stored).
Exit codes: 0 done, 1 some named rows could not be re-queued, 2 usage or setup problem.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Annotated, Any, TypeVar

import typer

T = TypeVar("T")

inbox_app = typer.Typer(help="Acknowledged deliveries: list them, re-queue the ones that failed for good.",
                        no_args_is_help=True)

ERROR_WIDTH = 80


def _with_inbox(work: Callable[[Any], Awaitable[T]]) -> T:
    from bot.clikit import run, settings_or_exit
    from bot.logs import configure_logging
    from bot.store.db import create_engine, session_factory
    from bot.store.inbox import Inbox
    from bot.store.migrate import upgrade

    settings = settings_or_exit(log=False)
    configure_logging(settings.log.format, "WARNING")

    async def go() -> T:
        await upgrade(settings.database_url)
        engine = create_engine(settings.database_url, pool_size=2)
        try:
            # A command-line entry point: the real clock is the injected clock here (as build_app's default).
            inbox = Inbox(session_factory(engine), clock=lambda: datetime.now(UTC),
                          max_attempts=settings.inbox.max_attempts)
            return await work(inbox)
        finally:
            await engine.dispose()

    return run(go, database_url=settings.database_url)


def _when(at: datetime | None) -> str:
    if at is None:
        return "-"
    if at.tzinfo is None:  # SQLite hands back naive UTC
        at = at.replace(tzinfo=UTC)
    return at.astimezone(UTC).strftime("%Y-%m-%d %H:%M")


def _short(text: str | None) -> str:
    text = " ".join((text or "").split())
    return text if len(text) <= ERROR_WIDTH else text[:ERROR_WIDTH - 1] + "…"


@inbox_app.command("list")
def list_rows(
    failed: Annotated[bool, typer.Option("--failed", help="Only deliveries that failed for good")] = False,
    limit: Annotated[int, typer.Option(help="At most this many rows, oldest first", min=1)] = 200,
) -> None:
    """Deliveries in the inbox: id, platform, event key, attempts, status, since when (received, UTC),
    last change (done or failed, UTC) and the last error. Never the message text."""
    entries = _with_inbox(lambda inbox: inbox.entries(failed_only=failed, limit=limit))
    if not entries:
        typer.echo("no failed deliveries" if failed else "the inbox is empty")
        return
    rows = [(str(e.id), e.platform, e.key, str(e.attempts), e.status, _when(e.created_at), _when(e.done_at),
             _short(e.last_error)) for e in entries]
    header = ("ID", "PLATFORM", "KEY", "ATTEMPTS", "STATUS", "SINCE", "LAST", "ERROR")
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header) - 1)]
    for row in [header, *rows]:
        typer.echo("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=False)) + "  " + row[-1])
    if any(e.status == "failed" for e in entries):
        typer.echo("re-queue with: helpdesk inbox retry ID... | --all-failed")


@inbox_app.command("retry")
def retry(
    ids: Annotated[list[int] | None, typer.Argument(help="Row ids (from `helpdesk inbox list --failed`)",
                                                    show_default=False)] = None,
    all_failed: Annotated[bool, typer.Option("--all-failed", help="Every delivery that failed for good")] = False,
    by: Annotated[str, typer.Option("--as", help="Who re-queues them (kept in the audit)")] = "operator",
) -> None:
    """Make failed deliveries due again: any running `helpdesk serve` handles them within
    inbox.poll_seconds, from the stored delivery, as a first attempt."""
    from bot.clikit import fail

    if not ids and not all_failed:
        fail("helpdesk inbox retry: give row ids or --all-failed", 2)
    if ids and all_failed:
        fail("helpdesk inbox retry: row ids or --all-failed, not both", 2)
    wanted = sorted(set(ids or []))

    async def work(inbox: Any) -> tuple[list[int], dict[int, str]]:
        requeued = await inbox.requeue(None if all_failed else wanted, actor=by)
        left = [i for i in wanted if i not in requeued]
        found = {e.id: e.status for e in await inbox.entries(ids=left)} if left else {}
        return requeued, {i: found.get(i, "") for i in left}

    requeued, refused = _with_inbox(work)
    if requeued:
        noun = "delivery" if len(requeued) == 1 else "deliveries"
        rows = ("row " if len(requeued) == 1 else "rows ") + ", ".join(str(i) for i in requeued)
        typer.echo(f"re-queued {len(requeued)} failed {noun} ({rows}): a running `helpdesk serve` handles "
                   "them within inbox.poll_seconds. A turn that had in fact completed is recognised by its "
                   "event id as a duplicate and only marked done (nothing is done or said twice); a person "
                   "already told their message failed is not told again if it fails again.")
    elif all_failed:
        typer.echo("no failed deliveries to re-queue")
    for row_id, status in refused.items():
        why = f"it is {status}, not failed" if status else "no such row"
        typer.echo(f"row {row_id} not re-queued: {why}", err=True)
    if refused:
        raise typer.Exit(1)
