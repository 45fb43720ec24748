"""Feedback and gaps are read back from `events` rows the engine writes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from bot.core.ports import KbHit, KbResult
from bot.kb import feedback
from bot.kb.search import KbIndex
from bot.store.db import create_engine, session_factory
from bot.store.migrate import upgrade
from bot.store.tables import EventRow

pytestmark = pytest.mark.clock  # runs again with the system clock a year ahead (.ci/run)

REPO = Path(__file__).resolve().parents[2]
T0 = datetime(2025, 6, 1, 9, 0, tzinfo=UTC)


@pytest.fixture
async def session(tmp_path: Path):  # type: ignore[no-untyped-def]
    url = f"sqlite+aiosqlite:///{tmp_path / 'kb.db'}"
    await upgrade(url)
    engine = create_engine(url)
    async with session_factory(engine)() as s:
        yield s
    await engine.dispose()


async def add(session: AsyncSession, kind: str, data: dict[str, object], minutes: int = 0) -> None:
    session.add(EventRow(at=T0 + timedelta(minutes=minutes), type=kind, data=data))
    await session.flush()


def test_gap_event_normalises_and_truncates() -> None:
    event = feedback.gap_event("Hi!! My  VPN won't connect, please help " + "x" * 300)
    assert event["query"].startswith("vpn connect")
    assert len(event["example"]) <= 200
    assert (
        feedback.gap_event("VPN wont connect")["query"] == feedback.gap_event("vpn won't connect!")["query"]
    )


def test_suggested_and_article_events() -> None:
    result = KbResult("Printer jammed", (KbHit("print-job-stuck", "t", "s", 1.0),), "high")
    assert feedback.suggested_event(result) == {"articles": ["print-job-stuck"], "query": "printer jammed"}
    assert feedback.article_event("a") == {"article": "a"}
    assert feedback.article_event(["a", "b"]) == {"articles": ["a", "b"]}


async def test_gaps_are_counted_grouped_and_ordered(session: AsyncSession) -> None:
    for minute, text in enumerate(
        ["How do I book a parking space?", "book parking space", "parking space book", "Expense report tool?"]
    ):
        await add(session, feedback.KB_GAP, feedback.gap_event(text), minute)
    found = await feedback.gaps(session)
    assert [(g.count, g.query) for g in found] == [(3, "book parking space"), (1, "expense report tool")]
    top = found[0]
    assert top.examples[0] == "How do I book a parking space?" and len(top.examples) == 3
    assert top.first_seen is not None and top.last_seen is not None and top.first_seen < top.last_seen

    later = await feedback.gaps(session, since=T0 + timedelta(minutes=3))
    assert [g.query for g in later] == ["expense report tool"]


async def test_gaps_now_answered_by_an_article_are_left_out(session: AsyncSession) -> None:
    await add(session, feedback.KB_GAP, feedback.gap_event("my vpn will not connect at home"))
    await add(session, feedback.KB_GAP, feedback.gap_event("where do I book a desk"))
    kb = KbIndex.from_dir(REPO / "kb_articles")
    assert [g.query for g in await feedback.gaps(session, kb=kb)] == ["book desk"]


async def test_stats_per_article(session: AsyncSession) -> None:
    await add(session, feedback.KB_SUGGESTED, {"articles": ["a", "b"], "query": "q"})
    await add(session, feedback.KB_SUGGESTED, {"articles": ["a"], "query": "q"})
    await add(session, feedback.KB_OPENED, {"article": "a"})
    await add(session, feedback.KB_SOLVED, {"article": "a"})
    await add(session, feedback.KB_UNSOLVED, {"articles": ["a", "b"]})
    rows = {s.article_id: s for s in await feedback.stats(session)}
    a, b = rows["a"], rows["b"]
    assert (a.shown, a.opened, a.solved, a.unsolved) == (2, 1, 1, 1)
    assert (b.shown, b.opened, b.solved, b.unsolved) == (1, 0, 0, 1)
    assert a.solve_rate == 0.5 and b.solve_rate == 0.0
    assert [s.article_id for s in await feedback.stats(session)] == ["a", "b"]


async def test_solved_is_credited_only_to_the_article_that_solved_it(session: AsyncSession) -> None:
    await add(session, feedback.KB_SUGGESTED, {"articles": ["a", "b", "c"], "query": "q"})
    await add(session, feedback.KB_SOLVED, {"articles": ["a", "b", "c"], "article": "b"})
    await add(session, feedback.KB_SOLVED, {"articles": ["a", "c"]})  # none opened: nobody credited
    await add(session, feedback.KB_SOLVED, {"articles": ["c"]})  # the only one shown
    rows = {s.article_id: s for s in await feedback.stats(session)}
    assert (rows["a"].solved, rows["b"].solved, rows["c"].solved) == (0, 1, 1)
