"""Does a message name an active incident's service? Fuzzy, typo-tolerant, and strict about short
words: a term is compared with every run of as many words in the message (rapidfuzz ratio), so
"outlok" finds Outlook and "e-mail" finds email, while "team" does not find Teams at the default
threshold and three-letter terms (VPN, SAP) must appear as a word."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from rapidfuzz import fuzz

_WORD = re.compile(r"[a-z0-9][a-z0-9'&+-]*")


def words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def term_score(term: str, said: Sequence[str]) -> float:
    """0-100: how well `term` appears in the message's words."""
    parts = words(term)
    if not parts or not said:
        return 0.0
    joined_term = " ".join(parts)
    if len(joined_term.replace(" ", "")) <= 3:
        return 100.0 if joined_term in {" ".join(said[i:i + len(parts)]) for i in range(len(said))} else 0.0
    best = 0.0
    for size in {len(parts), len(parts) + 1, max(1, len(parts) - 1)}:
        for start in range(0, max(1, len(said) - size + 1)):
            window = " ".join(said[start:start + size])
            best = max(best, fuzz.ratio(joined_term, window), fuzz.ratio(joined_term.replace(" ", ""),
                                                                           window.replace(" ", "")))
            if best >= 100:
                return best
    return best


@dataclass(frozen=True, slots=True)
class Match:
    incident_id: int
    score: float
    term: str


def best_match(text: str, incidents: Iterable[tuple[int, Sequence[str]]], threshold: float) -> Match | None:
    """The incident whose terms (service, aliases, keywords) best match `text`, at or above threshold."""
    said = words(text)[:200]
    best: Match | None = None
    for incident_id, terms in incidents:
        for term in terms:
            score = term_score(term, said)
            if score >= threshold and (best is None or score > best.score):
                best = Match(incident_id, score, term)
    return best
