"""Text that people type, made safe to keep and to show.

At the boundary (`bounded_incoming`, first thing the pipeline does): NUL and other C0/C1 control
characters are removed (PostgreSQL refuses `\\x00` in text and JSON; no person means them), and a
message is capped at `MAX_TEXT_CHARS` with a note saying how much was not kept, so a 10 MB paste is
neither stored whole in the conversation row nor copied into tickets and events.

Where it is shown (`neutralise`, applied by the renderer to every interpolated value): bidirectional
overrides and isolates and other invisible format characters are replaced by a visible `[U+202E]`,
so typed text cannot reorder or hide what a technician reads.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import replace

from bot.core.models import Action, Incoming, Platform

# What is kept of one message (Slack's own limit is 40,000 characters; a problem description that
# runs past this is a paste, and its first part is what a technician reads).
MAX_TEXT_CHARS = 8000
# One form field.
MAX_FIELD_CHARS = 2000

_CONTROLS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
# Bidi embeddings/overrides/isolates, marks, zero-width and other invisible format characters.
# U+200C/U+200D (joiners) are left alone: emoji and several scripts need them.
_INVISIBLE = re.compile(r"[\u061c\u180e\u200b\u200e\u200f\u202a-\u202e\u2060-\u2064\u2066-\u2069\ufeff\ufff9-\ufffb]")


def clean(text: str) -> str:
    """Without NUL and other control characters (newline, tab and carriage return stay)."""
    return _CONTROLS.sub("", text)


def cap(text: str, limit: int = MAX_TEXT_CHARS) -> str:
    """At most `limit` characters, with a note of what was left out."""
    if len(text) <= limit:
        return text
    dropped = len(text) - limit
    return f"{text[:limit]}\n[message truncated: {dropped:,} more characters were not kept]"


def bounded(text: str | None, limit: int = MAX_TEXT_CHARS) -> str | None:
    return None if text is None else cap(clean(text), limit)


def bounded_incoming(incoming: Incoming) -> Incoming:
    """The incoming turn as the bot keeps it: clean, and capped (see the module docstring)."""
    action = incoming.action
    if action is not None:
        action = Action(
            value=clean(action.value)[:MAX_FIELD_CHARS],
            form_values=tuple((clean(k)[:200], cap(clean(v), MAX_FIELD_CHARS)) for k, v in action.form_values),
            message_ref=action.message_ref,
        )
    return replace(incoming, text=bounded(incoming.text), command=bounded(incoming.command), action=action)


def neutralise(text: str) -> str:
    """Invisible and direction-changing characters made visible (`[U+202E]`)."""
    return _INVISIBLE.sub(lambda m: f"[U+{ord(m.group(0)):04X}]", text)


def escape_mrkdwn(text: str) -> str:
    """Slack's three control characters, `&` first (docs.slack.dev, "Escaping text")."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


_TEAMS_SPECIAL = re.compile(r"([\\`*_\[\]<>#|~])")


def escape_teams(text: str) -> str:
    """Adaptive Card TextBlock markdown: neutralise emphasis, links and angle brackets."""
    return _TEAMS_SPECIAL.sub(r"\\\1", text)


ESCAPERS: dict[Platform, Callable[[str], str]] = {
    Platform.SLACK: escape_mrkdwn,
    Platform.TEAMS: escape_teams,
    Platform.CONSOLE: lambda text: text,
}
