"""Slots from what was said: what a flow's questions can learn from free text (pure, no I/O).

An ask step declares what it listens for: its choices' `synonyms`, and `listen:` one of
error_code, device, os, group, app, mailbox, date, urgency, impact (docs/flows.md, "Listening").
Whatever needs the directory (the person's devices, group names) is looked up by the core and
passed in as `Facts`; this module only reads text and those facts.

A value is either *sure* (the person said it: "my mailbox is full") and fills the slot, so the
question is never asked, or a *guess* ("Your Windows computer ALICE-LT01?") that the engine
confirms in one line before using it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from rapidfuzz import fuzz

from bot.engine.spec import AskStep, Choice, Flow

NAME_KINDS = frozenset({"group", "app", "mailbox"})
# Kinds the core must look up in the directory before the engine can hear them.
DIRECTORY_KINDS = NAME_KINDS | {"device"}


@dataclass(frozen=True, slots=True)
class DeviceFact:
    """One of the person's managed devices, as the directory has it."""

    name: str
    operating_system: str  # "Windows", "macOS", "iOS"...
    family: str  # windows | mac | mobile | other


@dataclass(frozen=True, slots=True)
class NameMatch:
    """A directory object whose name matches words the person used."""

    kind: str  # group | app | mailbox
    value: str  # what the action takes (a group's mail nickname)
    label: str  # how the person sees it: "Marketing shared drive (marketing-share)"
    exact: bool  # the person typed its name exactly


@dataclass(frozen=True, slots=True)
class Facts:
    """What the core looked up for this message (the engine does no I/O)."""

    devices: tuple[DeviceFact, ...] = ()
    names: tuple[NameMatch, ...] = ()


@dataclass(frozen=True, slots=True)
class Heard:
    slot: str
    value: str
    label: str
    sure: bool = True
    confirm: str = ""  # the one-line question for a guess

    def as_guess(self) -> dict[str, str]:
        return {"value": self.value, "label": self.label, "confirm": self.confirm}


# ----- text ---------------------------------------------------------------------------------------


def _plain(text: str | None) -> str:
    """Lower case, apostrophes dropped ("won't" = "wont"), punctuation to spaces."""
    lowered = (text or "").lower().replace("’", "'").replace("'", "")
    return " " + re.sub(r"\s+", " ", re.sub(r"[^\w@.-]+", " ", lowered)).strip() + " "


def said_phrase(text: str | None, phrase: str) -> bool:
    """Whether `phrase` occurs in `text` as whole words (case, apostrophes and punctuation aside)."""
    wanted = _plain(phrase).strip()
    return bool(wanted) and f" {wanted} " in _plain(text)


_NEGATED = re.compile(r"\b(not|no|never|dont|isnt|wasnt|without)\s+$")

# Built-in words for `listen: urgency` and `listen: impact`, by the choice values they stand for.
URGENCY_WORDS: dict[str, tuple[str, ...]] = {
    "high": ("cant work", "cannot work", "can not work", "unable to work", "urgent", "urgently", "asap",
             "emergency", "critical", "right now", "immediately", "completely blocked", "im blocked",
             "stopping me", "deadline today"),
    "medium": ("slows me down", "slowing me down", "annoying", "workaround", "can work around"),
    "low": ("no rush", "not urgent", "can wait", "whenever", "low priority", "no hurry", "when you can"),
}
IMPACT_WORDS: dict[str, tuple[str, ...]] = {
    "others": ("nobody can", "no one can", "noone can", "everyone", "everybody", "whole team", "whole office",
               "whole floor", "all of us", "colleagues too", "others too", "other people", "the team cant",
               "none of us", "all users", "all staff"),
    "just_me": ("just me", "only me", "only mine", "just mine", "colleagues can", "others can", "others are fine",
                "everyone else can"),
}
# `listen: impact` choices may use either vocabulary for their values.
_IMPACT_VALUES = {"others": ("others", "high", "many", "everyone"), "just_me": ("just_me", "me", "low", "single")}

_OS_WORDS: dict[str, tuple[str, ...]] = {
    "windows": ("windows", "windows laptop", "windows pc", "pc", "surface", "dell", "lenovo", "thinkpad", "hp laptop"),
    "mac": ("mac", "macbook", "imac", "macos", "mac os", "os x", "apple laptop"),
    "mobile": ("iphone", "ipad", "android", "my phone", "mobile", "tablet", "samsung", "pixel"),
}
_OS_NAME = {"windows": "Windows", "mac": "Mac", "mobile": "phone"}

# Error codes as people quote them: "error 809", "code E52", "0x80070005", "error: 651".
_ERROR_CODE = re.compile(
    r"\b(?:error|err|code|fault|status)(?:\s+code)?\s*[:#]?\s*(0x[0-9a-f]{4,8}|[a-z]{0,3}-?\d{2,6}[a-z]?)\b"
    r"|\b(0x[0-9a-f]{8})\b"
    r"|\b(?:shows|says|showing|displays|displaying)\s+([a-z]{1,2}-?\d{2,4})\b",
    re.IGNORECASE,
)

_MONTHS = {m: i for i, m in enumerate(
    ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"), 1)}


def error_code(text: str | None) -> str | None:
    match = _ERROR_CODE.search(text or "")
    if not match:
        return None
    code = next(g for g in match.groups() if g)
    if code.isdigit() and len(code) == 4 and 1990 <= int(code) <= 2100:
        return None  # a year, not a code
    return code.upper() if not code.lower().startswith("0x") else code.lower()


def a_date(text: str | None, today: date) -> str | None:
    """The first date the text names, as YYYY-MM-DD: ISO dates, "today", "tomorrow", "14 December",
    "Dec 14". A day and month without a year is the next such day."""
    said = (text or "").lower()
    iso = re.search(r"\b(\d{4})-(\d{2})-(\d{2})\b", said)
    if iso:
        try:
            return date(int(iso[1]), int(iso[2]), int(iso[3])).isoformat()
        except ValueError:
            return None
    for word, delta in (("today", 0), ("tomorrow", 1), ("yesterday", -1)):
        if said_phrase(said, word):
            return (today + timedelta(days=delta)).isoformat()
    found = re.search(r"\b(\d{1,2})(?:st|nd|rd|th)?\s+(?:of\s+)?([a-z]{3,9})\b", said) or \
        re.search(r"\b([a-z]{3,9})\s+(\d{1,2})(?:st|nd|rd|th)?\b", said)
    if not found:
        return None
    first, second = found.group(1), found.group(2)
    day, month = (first, second) if first.isdigit() else (second, first)
    number = _MONTHS.get(month[:3])
    if number is None or (len(month) > 3 and not any(m.startswith(month) or month.startswith(m) for m in (
            "january", "february", "march", "april", "may", "june", "july", "august", "september",
            "october", "november", "december"))):
        return None
    try:
        when = date(today.year, number, int(day))
    except ValueError:
        return None
    if when < today:
        when = date(today.year + 1, number, int(day))
    return when.isoformat()


# ----- hearing one step ---------------------------------------------------------------------------


def _by_phrases(text: str, choices: Iterable[Choice], phrases: Mapping[str, tuple[str, ...]]) -> Choice | None:
    """The one choice whose phrases the text contains (the longest phrase wins a tie; a negated
    phrase, "not urgent", is not the phrase)."""
    best: tuple[int, Choice] | None = None
    rival = False
    plain = _plain(text)
    for choice in choices:
        for phrase in (*choice.synonyms, *phrases.get(choice.value, ())):
            wanted = _plain(phrase).strip()
            at = plain.find(f" {wanted} ") if wanted else -1
            if at < 0 or _NEGATED.search(plain[: at + 1]):
                continue
            size = len(wanted)
            if best is None or size > best[0]:
                rival = best is not None and best[1].value != choice.value and size == best[0]
                best = (size, choice)
            elif size == best[0] and best[1].value != choice.value:
                rival = True
    return None if best is None or rival else best[1]


def _impact_phrases(choices: Iterable[Choice]) -> dict[str, tuple[str, ...]]:
    out: dict[str, tuple[str, ...]] = {}
    for choice in choices:
        for meaning, values in _IMPACT_VALUES.items():
            if choice.value in values:
                out[choice.value] = IMPACT_WORDS[meaning]
    return out


def hear_step(step: AskStep, text: str, facts: Facts, today: date, *, answering: bool = False) -> Heard | None:
    """What `text` says about this one question, or None. `answering`: the text is the answer to
    this very question (so a name typed exactly is sure)."""
    if not step.slot or step.input == "form":
        return None
    if step.input == "choice":
        phrases: dict[str, tuple[str, ...]] = {}
        if step.listen == "urgency":
            phrases = dict(URGENCY_WORDS)
        elif step.listen == "impact":
            phrases = _impact_phrases(step.choices)
        elif step.listen in ("device", "os"):
            phrases = dict(_OS_WORDS)
            for device in facts.devices:
                phrases[device.family] = (*phrases.get(device.family, ()), device.name)
        choice = _by_phrases(text, step.choices, phrases)
        if choice is not None:
            return Heard(step.slot, choice.value, choice.label)
        if step.listen == "device" and not answering:
            return _device_guess(step, facts)
        return None
    if step.listen == "error_code":
        code = error_code(text)
        return Heard(step.slot, code, code) if code else None
    if step.listen == "date":
        when = a_date(text, today)
        return Heard(step.slot, when, when) if when else None
    if step.listen in NAME_KINDS:
        found = [n for n in facts.names if n.kind == step.listen]
        if len(found) != 1:
            return None
        name = found[0]
        sure = name.exact and answering
        return Heard(step.slot, name.value, name.label, sure=sure, confirm="" if sure else f"{name.label}?")
    return None


def _device_guess(step: AskStep, facts: Facts) -> Heard | None:
    """The person's one computer, when they have exactly one of a kind the question offers."""
    values = {c.value: c for c in step.choices}
    computers = [d for d in facts.devices if d.family in ("windows", "mac") and d.family in values]
    if len(computers) != 1:
        return None
    device = computers[0]
    choice = values[device.family]
    return Heard(step.slot, choice.value, choice.label, sure=False,
                 confirm=f"Your {_OS_NAME.get(device.family, device.operating_system)} computer {device.name}?")


def hear(flow: Flow, text: str, facts: Facts, now: datetime, filled: Mapping[str, Any]) -> list[Heard]:
    """Everything `text` answers among the flow's questions not answered yet."""
    if not text.strip():
        return []
    found: list[Heard] = []
    for step in flow.steps:
        if isinstance(step, AskStep) and step.slot and step.slot not in filled \
                and (step.listen or any(c.synonyms for c in step.choices)):
            heard = hear_step(step, text, facts, now.date())
            if heard is not None and heard.slot not in {h.slot for h in found}:
                found.append(heard)
    return found


def listens_for(flow: Flow, filled: Mapping[str, Any]) -> frozenset[str]:
    """The directory kinds this flow still listens for (what the core should look up)."""
    return frozenset(s.listen for s in flow.steps
                     if isinstance(s, AskStep) and s.listen in DIRECTORY_KINDS and s.slot not in filled)


# ----- names as people say them -------------------------------------------------------------------

# Words that say what kind of thing it is, not which one ("the marketing share").
_GENERIC = frozenset({
    "share", "shared", "drive", "folder", "group", "team", "teams", "site", "sharepoint", "channel", "app",
    "application", "mailbox", "mail", "list", "the", "a", "an", "of", "and", "for", "to", "access", "security",
    "distribution", "space", "workspace", "files", "all",
})
STOP_WORDS = _STOP = _GENERIC | frozenset({
    "i", "need", "want", "please", "pls", "me", "my", "our", "can", "you", "add", "join", "give", "get", "be",
    "added", "in", "on", "into", "request", "requesting", "would", "like", "could", "its", "it", "is", "name",
})


def _words(text: str) -> list[str]:
    return [w for w in re.split(r"[^a-z0-9]+", text.lower()) if w]


def name_score(text: str, names: Iterable[str]) -> float:
    """How well `text` names something called any of `names` (0..100): every distinctive word of
    a name must be matched, allowing typos."""
    said = [w for w in _words(text) if w not in _STOP]
    if not said:
        return 0.0
    best = 0.0
    for name in names:
        distinctive = [w for w in _words(name) if w not in _GENERIC] or _words(name)
        if not distinctive:
            continue
        score = min(max(fuzz.ratio(w, s) for s in said) for w in distinctive)
        best = max(best, float(score))
    return best


NAME_MATCH = 85.0


def match_names(kind: str, text: str, candidates: Iterable[tuple[str, str, Iterable[str]]]) -> list[NameMatch]:
    """The directory object `text` names, if one clearly does. `candidates`: (value, label, names to
    match on: display name, mail nickname, description)."""
    scored: list[tuple[float, str, str, bool]] = []
    for value, label, names in candidates:
        names = [n for n in names if n]
        score = name_score(text, names)
        if score >= NAME_MATCH:
            # Exact: the text is the name, as written ("engineering", "marketing-share"); anything
            # looser ("marketing share", "the engineering group") is confirmed first.
            exact = any(text.strip().casefold() == n.casefold() for n in names)
            scored.append((score, value, label, exact))
    scored.sort(key=lambda s: -s[0])
    if not scored or (len(scored) > 1 and scored[1][0] >= scored[0][0] - 5 and scored[1][1] != scored[0][1]):
        return []
    _, value, label, exact = scored[0]
    return [NameMatch(kind, value, label, exact)]
