"""What the knowledge base learns from use, read from the append-only `events` table.

The conversation engine writes the events; this module defines their data and the reports:

| type           | data                                                          |
|----------------|---------------------------------------------------------------|
| `kb_suggested` | `{"articles": [ids], "query": normalised query}`              |
| `kb_opened`    | `{"article": id}`                                             |
| `kb_solved`    | `{"articles": [ids shown], "article": the one that solved it}` |
| `kb_unsolved`  | `{"article": id}` or `{"articles": [ids]}`                    |
| `kb_gap`       | `{"query": normalised query, "example": what the person wrote[:200]}` |

`gaps()` lists the questions asked most often without a good match (so writers know what to write
next), `stats()` how each article fares. "Solved" is credited only to the article named in
`kb_solved` (the one the person opened, or the only one shown); a list where they opened none
credits no article.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from rapidfuzz import fuzz
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.core.ports import KbResult, KnowledgeBase
from bot.kb.text import normalise_query
from bot.store.tables import EventRow

KB_SUGGESTED = "kb_suggested"
KB_OPENED = "kb_opened"
KB_SOLVED = "kb_solved"
KB_UNSOLVED = "kb_unsolved"
KB_GAP = "kb_gap"
KB_EVENT_TYPES = (KB_SUGGESTED, KB_OPENED, KB_SOLVED, KB_UNSOLVED, KB_GAP)

EXAMPLE_CHARS = 200
# Two normalised questions this similar (token sort ratio) are counted as one gap.
SAME_QUESTION_SIMILARITY = 88


# ----- event data (the engine emits these) ---------------------------------------------------------


def gap_event(query: str) -> dict[str, Any]:
    """Data of a `kb_gap` event for a question the knowledge base could not answer."""
    example = " ".join(query.split())
    if len(example) > EXAMPLE_CHARS:
        example = example[: EXAMPLE_CHARS - 1].rstrip() + "…"
    return {"query": normalise_query(query), "example": example}


def suggested_event(result: KbResult) -> dict[str, Any]:
    """Data of a `kb_suggested` event for the hits that were shown."""
    return {"articles": [hit.article_id for hit in result.hits], "query": normalise_query(result.query)}


def article_event(article_ids: str | Sequence[str]) -> dict[str, Any]:
    """Data of `kb_opened` (one id) or `kb_solved` / `kb_unsolved` (one id or several tried)."""
    if isinstance(article_ids, str):
        return {"article": article_ids}
    return {"articles": list(article_ids)}


# ----- reports ----------------------------------------------------------------------------------------


@dataclass(slots=True)
class Gap:
    """A question people asked that found no good article."""

    query: str
    count: int
    examples: list[str] = field(default_factory=list)
    first_seen: datetime | None = None
    last_seen: datetime | None = None
    variants: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "query": self.query,
            "count": self.count,
            "examples": self.examples,
            "variants": self.variants,
            "first_seen": self.first_seen.isoformat() if self.first_seen else None,
            "last_seen": self.last_seen.isoformat() if self.last_seen else None,
        }


@dataclass(slots=True)
class ArticleStats:
    article_id: str
    shown: int = 0
    opened: int = 0
    solved: int = 0
    unsolved: int = 0

    @property
    def solve_rate(self) -> float | None:
        """Solved over solved + not solved; None before anyone said either."""
        answered = self.solved + self.unsolved
        return self.solved / answered if answered else None

    def to_json(self) -> dict[str, Any]:
        return {
            "article": self.article_id,
            "shown": self.shown,
            "opened": self.opened,
            "solved": self.solved,
            "unsolved": self.unsolved,
            "solve_rate": self.solve_rate,
        }


async def gaps(
    session: AsyncSession,
    since: datetime | None = None,
    limit: int = 20,
    *,
    examples: int = 3,
    kb: KnowledgeBase | None = None,
) -> list[Gap]:
    """The most-asked questions without a good article, most asked first.

    Questions are grouped by their normalised form, then near-identical groups are merged
    ("reset password outlook" and "outlook reset password"). With `kb`, questions that the
    knowledge base now answers with high confidence (someone wrote the article) are left out.
    """
    statement = select(EventRow.at, EventRow.data).where(EventRow.type == KB_GAP)
    if since is not None:
        statement = statement.where(EventRow.at >= since)
    rows = (await session.execute(statement.order_by(EventRow.at, EventRow.id))).all()

    groups: dict[str, Gap] = {}
    for at, data in rows:
        data = data or {}
        example = str(data.get("example") or "")
        key = str(data.get("query") or normalise_query(example))
        if not key:
            continue
        gap = groups.get(key)
        if gap is None:
            gap = groups[key] = Gap(query=key, count=0, first_seen=at)
        gap.count += 1
        gap.last_seen = at
        if example and example not in gap.examples and len(gap.examples) < examples:
            gap.examples.append(example)

    merged = _merge_similar(sorted(groups.values(), key=lambda g: (-g.count, g.query)), examples)
    if kb is not None:
        merged = [
            g for g in merged if kb.search(g.examples[0] if g.examples else g.query).confidence != "high"
        ]
    return merged[:limit]


def _merge_similar(ordered: list[Gap], examples: int) -> list[Gap]:
    kept: list[Gap] = []
    for gap in ordered:
        home = next(
            (k for k in kept if fuzz.token_sort_ratio(k.query, gap.query) >= SAME_QUESTION_SIMILARITY), None
        )
        if home is None:
            kept.append(gap)
            continue
        home.count += gap.count
        home.variants.append(gap.query)
        for example in gap.examples:
            if example not in home.examples and len(home.examples) < examples:
                home.examples.append(example)
        if gap.first_seen and (home.first_seen is None or gap.first_seen < home.first_seen):
            home.first_seen = gap.first_seen
        if gap.last_seen and (home.last_seen is None or gap.last_seen > home.last_seen):
            home.last_seen = gap.last_seen
    return sorted(kept, key=lambda g: (-g.count, g.query))


async def stats(session: AsyncSession, since: datetime | None = None) -> list[ArticleStats]:
    """Per article: times shown, opened, solved and not solved; most shown first."""
    types = (KB_SUGGESTED, KB_OPENED, KB_SOLVED, KB_UNSOLVED)
    statement = select(EventRow.type, EventRow.data).where(EventRow.type.in_(types))
    if since is not None:
        statement = statement.where(EventRow.at >= since)
    per_article: dict[str, ArticleStats] = {}

    def bump(article_id: str, kind: str) -> None:
        entry = per_article.setdefault(article_id, ArticleStats(article_id))
        if kind == KB_SUGGESTED:
            entry.shown += 1
        elif kind == KB_OPENED:
            entry.opened += 1
        elif kind == KB_SOLVED:
            entry.solved += 1
        else:
            entry.unsolved += 1

    for kind, data in (await session.execute(statement)).all():
        if kind == KB_SOLVED:
            # "This solved it" credits the article that solved it (the one read, or the only one
            # shown), never every article listed beside it.
            credited = _solved_article(data or {})
            if credited:
                bump(credited, kind)
            continue
        for article_id in _article_ids(data or {}):
            bump(article_id, kind)
    return sorted(per_article.values(), key=lambda s: (-s.shown, -s.opened, s.article_id))


def _solved_article(data: dict[str, Any]) -> str | None:
    single = data.get("article")
    if isinstance(single, str) and single:
        return single
    many = [str(a) for a in data.get("articles") or [] if a] if isinstance(data.get("articles"), list) else []
    return many[0] if len(many) == 1 else None


def _article_ids(data: dict[str, Any]) -> Iterable[str]:
    ids: list[str] = []
    single = data.get("article")
    if isinstance(single, str) and single:
        ids.append(single)
    many = data.get("articles")
    if isinstance(many, list):
        ids.extend(str(a) for a in many if a)
    return dict.fromkeys(ids)  # each article once per event
