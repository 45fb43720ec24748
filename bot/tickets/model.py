"""What a ticket is to its callers: statuses, button and form ids, errors, plain views, the mirror port."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from bot.core.models import Form, FormField
from bot.store.repos import UnitOfWork
from bot.store.tables import TicketNoteRow, TicketRow

NEW, CLAIMED, WAITING, RESOLVED, CLOSED, REOPENED = (
    "new", "claimed", "waiting_on_requester", "resolved", "closed", "reopened")
OPEN_STATUSES = (NEW, CLAIMED, WAITING, REOPENED)
CLAIMABLE = (NEW, REOPENED)
STATUS_LABELS = {NEW: "New", CLAIMED: "Claimed", WAITING: "Waiting on requester", RESOLVED: "Resolved",
                 CLOSED: "Closed", REOPENED: "Reopened"}
QUEUE_POST = "queue-post"
CONSOLE_FANOUT = "technicians"

# Button values (the handler parses them; the service checks roles whatever they say).
B_CLAIM, B_ASSIGN, B_ASSIGN_TO, B_RESOLVE, B_REOPEN, B_NOTE, B_REPLY = (
    "ticket:claim:", "ticket:assign:", "ticket:assign_to:", "ticket:resolve:", "ticket:reopen:", "ticket:note:",
    "ticket:reply:")
B_FIXED, B_RATE, B_SPLIT = "ticket:fixed:", "ticket:rate:", "ticket:split:"
# "Send it to the requester after all": a thread message that looked like a note was kept as one.
B_SEND_NOTE = "ticket:send_note:"
FORM_NOTE, FORM_REPLY, FORM_RESOLVE = "ticket_note:", "ticket_reply:", "ticket_resolve:"


# What the person said about how many people are hit: a ticket's impact is never lower than their
# words ("No, nobody can print" is not a P4).
LEVELS = ("low", "medium", "high")
IMPACT_WORDS = re.compile(
    r"\b(?:nobody|no one|noone|none of us|everyone|everybody|all of us|all users|whole (?:team|office|floor|"
    r"department|company|building)|entire (?:team|office|floor|department|company|building)|"
    r"(?:the )?(?:whole|entire) \w+ (?:team|office|floor)|company[- ]wide|all (?:staff|employees|printers))\b",
    re.IGNORECASE)
def raised_level(current: str, said: str, words: re.Pattern[str], to: str = "high") -> str:
    """`current`, raised to `to` when the person's words say so."""
    current = current if current in LEVELS else "low"
    return to if words.search(said) and LEVELS.index(to) > LEVELS.index(current) else current


# ----- errors -----------------------------------------------------------------------------------


class TicketError(Exception):
    """An operation that cannot be done. `code` is the CLI exit code; `kind` picks the message."""

    code = 1
    kind = "error"

    def __init__(self, ref: str, detail: str = "") -> None:
        super().__init__(f"{ref}: {detail}" if detail else ref)
        self.ref = ref
        self.detail = detail


class NotFound(TicketError):
    kind = "not_found"


class Forbidden(TicketError):
    code = 4
    kind = "forbidden"


class HeldByOther(TicketError):
    code = 3
    kind = "held"

    def __init__(self, ref: str, holder: str, holder_name: str) -> None:
        super().__init__(ref, f"held by {holder_name} <{holder}>")
        self.holder = holder
        self.holder_name = holder_name


class InvalidState(TicketError):
    kind = "invalid"


# ----- plain views ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class NoteView:
    at: datetime
    author: str
    kind: str
    text: str


@dataclass(frozen=True, slots=True)
class TicketView:
    """A ticket as plain data, for replies, the CLI and reports."""

    ref: str
    requester_email: str
    requester_name: str
    category: str
    priority: str
    status: str
    assignee_email: str | None
    summary: str
    created_at: datetime
    details: Mapping[str, Any] = field(default_factory=dict)
    tried_articles: tuple[str, ...] = ()
    tried_actions: tuple[str, ...] = ()
    transcript: tuple[str, ...] = ()
    notes: tuple[NoteView, ...] = ()
    channel: str = "console"
    # The next SLA target of an open ticket (first response, then resolution), for the queue.
    due_at: datetime | None = None
    due_target: str = ""
    overdue: bool = False
    # An SLA target (first response or resolution) has been missed.
    breached: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.ref, "requester": self.requester_email, "requester_name": self.requester_name,
            "category": self.category, "priority": self.priority, "status": self.status,
            "assignee": self.assignee_email, "summary": self.summary, "created_at": self.created_at.isoformat(),
            "channel": self.channel, "details": dict(self.details), "tried_articles": list(self.tried_articles),
            "tried_actions": list(self.tried_actions), "transcript": list(self.transcript),
            "notes": [{"at": n.at.isoformat(), "author": n.author, "kind": n.kind, "text": n.text}
                      for n in self.notes],
        }


def aware(value: datetime | None) -> datetime | None:
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=UTC)


def view_of(row: TicketRow, notes: Sequence[TicketNoteRow] = ()) -> TicketView:
    return TicketView(
        ref=row.ref, requester_email=row.requester_email, requester_name=row.requester_name,
        category=row.category, priority=row.priority, status=row.status, assignee_email=row.assignee_email,
        summary=row.summary, created_at=aware(row.created_at) or row.created_at, details=dict(row.details or {}),
        tried_articles=tuple(row.tried_articles or ()), tried_actions=tuple(row.tried_actions or ()),
        transcript=tuple(str(t) for t in (row.transcript or ())),
        notes=tuple(NoteView(aware(n.at) or n.at, n.author, n.kind, n.text) for n in notes), channel=row.channel,
        breached=bool(row.fr_breached_at or row.res_breached_at),
    )


@dataclass(frozen=True, slots=True)
class Outcome:
    """What an operation did, for the caller's reply."""

    ticket: TicketView
    action: str  # claimed | already_yours | assigned | resolved | reopened | noted | relayed | ...
    extra: Mapping[str, Any] = field(default_factory=dict)


# ----- the help desk's own ticket system -----------------------------------------------------------


class TicketMirror(Protocol):
    """Keeps each ticket in step with the help desk's ticket system (bot/itsm). Called inside the
    ticket change's unit of work, so what it queues commits (or not) with the change."""

    def created(self, uow: UnitOfWork, row: TicketRow) -> None: ...

    def comment(self, uow: UnitOfWork, row: TicketRow, note_id: int, author: str, text: str, *,
                public: bool) -> None: ...

    def status(self, uow: UnitOfWork, row: TicketRow, status: str, note: str) -> None: ...


# ----- forms a technician fills in ----------------------------------------------------------------


def note_form(ref: str) -> Form:
    return Form(form_id=FORM_NOTE + ref, title=f"Internal note on {ref}",
                fields=(FormField("note", "Note (technicians only)", kind="multiline"),), submit_label="Save note")


def reply_form(ref: str) -> Form:
    return Form(form_id=FORM_REPLY + ref, title=f"Reply on {ref}",
                fields=(FormField("message", "Your message", kind="multiline"),), submit_label="Send")


def resolve_form(ref: str) -> Form:
    return Form(form_id=FORM_RESOLVE + ref, title=f"Resolve {ref}",
                fields=(FormField("note", "What fixed it (sent to the requester)", kind="multiline",
                                  required=False),), submit_label="Resolve")
