"""`helpdesk kb ...`: search, lint, gaps and stats. Mounted by bot/cli.py as the `kb` sub-command."""

from __future__ import annotations

import asyncio
import json
import re
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

import typer

from bot.kb.loader import load_dir
from bot.kb.search import KbIndex

app = typer.Typer(
    help="Knowledge base: search articles, check them, and see what people asked that no article answers.",
    no_args_is_help=True,
)

KbOption = Annotated[
    Path | None,
    typer.Option("--kb", help="Articles folder (default: the settings' kb.dir).", show_default=False),
]
SinceOption = Annotated[
    str | None,
    typer.Option("--since", help="Only events newer than this: 30d, 12h, 2w or a date (YYYY-MM-DD)."),
]


def _kb_dir(kb: Path | None) -> Path:
    if kb is not None:
        return kb
    from bot.settings import load_settings

    return load_settings().kb_dir


def _load_index(kb: Path | None) -> KbIndex:
    root = _kb_dir(kb)
    index = KbIndex.from_dir(root)
    errors = [p for p in index.problems if p.severity == "error"]
    if errors:
        typer.echo(
            f"{len(errors)} article(s) skipped; run `helpdesk kb lint --kb {root}` for details", err=True
        )
    return index


def _hit_json(hit: Any) -> dict[str, Any]:
    return {"id": hit.article_id, "title": hit.title, "score": hit.score}


@app.command()
def search(
    query: Annotated[str | None, typer.Argument(help="What to look for.", show_default=False)] = None,
    kb: KbOption = None,
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, help="How many hits.")] = 5,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object.")] = False,
    jsonl: Annotated[
        bool,
        typer.Option("--jsonl", help='Batch: stdin {"query": ...} lines -> stdout {"query", "hits"} lines.'),
    ] = False,
) -> None:
    """Search the articles. With --jsonl, index once and answer every line of stdin."""
    if jsonl:
        if query is not None:
            raise typer.BadParameter("give either QUERY or --jsonl, not both")
        index = _load_index(kb)
        _search_jsonl(index, limit)
        return
    if query is None:
        raise typer.BadParameter("QUERY is required (or use --jsonl)")
    index = _load_index(kb)
    result = index.search(query, limit=limit)
    if as_json:
        payload = {
            "query": query,
            "confidence": result.confidence,
            "hits": [{**_hit_json(h), "summary": h.summary} for h in result.hits],
        }
        typer.echo(json.dumps(payload, ensure_ascii=False))
        return
    typer.echo(f"confidence: {result.confidence}")
    if not result.hits:
        typer.echo("no matching article")
    for rank, hit in enumerate(result.hits, start=1):
        typer.echo(f"{rank}. [{hit.score:.3f}] {hit.title}  ({hit.article_id})")
        if hit.summary:
            typer.echo(f"     {hit.summary}")


def _search_jsonl(index: KbIndex, limit: int) -> None:
    out = sys.stdout
    for line in sys.stdin:
        text = line.strip()
        if not text:
            continue
        query: str
        try:
            parsed = json.loads(text)
        except json.JSONDecodeError:
            parsed = text  # a bare line of text is a query too
        if isinstance(parsed, dict):
            query = str(parsed.get("query") or parsed.get("text") or "")
        elif isinstance(parsed, str):
            query = parsed
        else:
            query = ""
        # Every ranked hit, even under "no good match": a batch is judged on ranking, and the
        # chat-side cut-off (KbIndex.search) would only hide a right answer ranked low.
        hits = [
            {
                "id": index.articles[r.index].id,
                "title": index.articles[r.index].title,
                "score": round(r.score, 4),
            }
            for r in (index.rank(query, limit=limit) if query else [])
        ]
        out.write(json.dumps({"query": query, "hits": hits}, ensure_ascii=False) + "\n")
        out.flush()


@app.command()
def lint(
    kb: KbOption = None,
    strict: Annotated[bool, typer.Option("--strict", help="Fail on warnings too.")] = False,
) -> None:
    """Check every article: report each problem with file and line. Exit 1 on errors."""
    root = _kb_dir(kb)
    loaded = load_dir(root)
    for problem in loaded.problems:
        typer.echo(str(problem))
    errors = len(loaded.errors)
    warnings = len(loaded.problems) - errors
    typer.echo(
        f"{len(loaded.articles)} article(s) loaded from {root}; {errors} error(s), {warnings} warning(s)"
    )
    if errors or (strict and warnings):
        raise typer.Exit(1)


def parse_since(value: str | None, now: datetime | None = None) -> datetime | None:
    """`30d`, `12h`, `2w`, `45m` before now, or an ISO date/time (UTC when no zone is given)."""
    if not value:
        return None
    now = now or datetime.now(UTC)
    match = re.fullmatch(r"\s*(\d+)\s*([mhdw])\s*", value)
    if match:
        amount, unit = int(match.group(1)), match.group(2)
        delta = {
            "m": timedelta(minutes=amount),
            "h": timedelta(hours=amount),
            "d": timedelta(days=amount),
            "w": timedelta(weeks=amount),
        }[unit]
        return now - delta
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError as exc:
        raise typer.BadParameter(f"--since {value!r}: expected 30d, 12h, 2w or YYYY-MM-DD") from exc
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


async def _with_session(work: Any) -> Any:
    from bot.settings import load_settings
    from bot.store.db import create_engine, session_factory
    from bot.store.migrate import upgrade

    settings = load_settings()
    await upgrade(settings.database_url)
    engine = create_engine(settings.database_url)
    try:
        async with session_factory(engine)() as session:
            return await work(session)
    finally:
        await engine.dispose()


@app.command()
def gaps(
    kb: KbOption = None,
    since: SinceOption = None,
    limit: Annotated[int, typer.Option("--limit", "-n", min=1)] = 20,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """The most-asked questions without a good article, with examples: what to write next."""
    from bot.kb import feedback

    index = _load_index(kb)
    start = parse_since(since)
    found: list[feedback.Gap] = asyncio.run(
        _with_session(lambda s: feedback.gaps(s, since=start, limit=limit, kb=index))
    )
    if as_json:
        for gap in found:
            typer.echo(json.dumps(gap.to_json(), ensure_ascii=False))
        return
    if not found:
        typer.echo("no unanswered questions recorded")
    for gap in found:
        typer.echo(f"{gap.count:5d}  {gap.query}")
        for example in gap.examples:
            typer.echo(f"         e.g. {example}")


@app.command()
def stats(
    kb: KbOption = None,
    since: SinceOption = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Per article: times shown, opened, solved and not solved."""
    from bot.kb import feedback

    index = _load_index(kb)
    start = parse_since(since)
    rows: list[feedback.ArticleStats] = asyncio.run(_with_session(lambda s: feedback.stats(s, since=start)))
    if as_json:
        for row in rows:
            typer.echo(json.dumps(row.to_json(), ensure_ascii=False))
        return
    typer.echo(f"{'shown':>6} {'opened':>6} {'solved':>6} {'unsolved':>8}  article")
    for row in rows:
        known = "" if row.article_id in index.article_ids() else "  (no longer in the knowledge base)"
        typer.echo(
            f"{row.shown:6d} {row.opened:6d} {row.solved:6d} {row.unsolved:8d}  {row.article_id}{known}"
        )
    if not rows:
        typer.echo("no knowledge-base use recorded")
