"""Triage: which flow does an opening message belong to?

Fuzzy matching (rapidfuzz) of the message against each flow's trigger examples and keywords.
Returns a calibrated confidence in [0, 1] and the runner-up labels.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from rapidfuzz import fuzz, process

from bot.engine.engine import TriageGuess
from bot.engine.spec import Flow

_SHORTHAND = {
    "pwd": "password", "pw": "password", "passwd": "password", "pls": "please", "plz": "please",
    "cant": "can't", "cannot": "can't", "wont": "won't", "dont": "don't", "u": "you", "ur": "your",
    "wifi": "wi-fi", "pc": "computer", "laptop's": "laptop",
}


def normalise(text: str) -> str:
    words = re.findall(r"[a-z0-9@.'-]+", text.lower())
    return " ".join(_SHORTHAND.get(w, w) for w in words)


@dataclass(frozen=True, slots=True)
class _Example:
    intent: str
    text: str


class Triage:
    """Scores a message against every flow's triggers."""

    def __init__(self, flows: Mapping[str, Flow]) -> None:
        self.examples: list[_Example] = []
        self.keywords: dict[str, tuple[str, ...]] = {}
        for flow in flows.values():
            for example in flow.triggers.examples:
                self.examples.append(_Example(flow.id, normalise(example)))
            self.keywords[flow.id] = tuple(normalise(k) for k in flow.triggers.keywords)
        self._choices = [e.text for e in self.examples]

    @property
    def labels(self) -> list[str]:
        return sorted({e.intent for e in self.examples} | set(self.keywords))

    def classify(self, text: str) -> TriageGuess:
        said = normalise(text)[:1000]
        if not said or not self._choices:
            return TriageGuess("out_of_scope" if said else "smalltalk", 0.0)
        scores: dict[str, float] = {}
        for _, score, index in process.extract(said, self._choices, scorer=fuzz.WRatio, limit=30):
            intent = self.examples[index].intent
            scores[intent] = max(scores.get(intent, 0.0), score / 100.0)
        tokens = set(said.split())
        for intent, keywords in self.keywords.items():
            hits = sum(1 for k in keywords if (k in tokens if " " not in k else k in said))
            if hits:
                scores[intent] = min(1.0, scores.get(intent, 0.0) + 0.1 * hits)
        ranked = sorted(scores.items(), key=lambda item: item[1], reverse=True)
        best, confidence = ranked[0]
        return TriageGuess(best, round(confidence, 4), tuple((i, round(s, 4)) for i, s in ranked[1:4]))
