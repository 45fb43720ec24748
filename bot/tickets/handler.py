"""Tickets in the conversation: the pipeline's `TicketDesk` and a `TurnHandler`.

The handler takes, before the flow engine:
- `/helpdesk <verb> ...` commands for tickets (help, queue, mine, status, show, claim, assign, resolve,
  reopen, note, reply, open); other verbs are left to other handlers;
- ticket buttons (`ticket:<op>:<ref>[:arg]`) and ticket forms (`form:ticket_<op>:<ref>`);
- a message in a ticket's queue thread (Slack/Teams): a technician's text is relayed to the
  requester, `note: ...` (or `/helpdesk note`) stays internal;
- an employee's free chat while a technician is talking to them (the relay window, docs/tickets.md):
  `RelayHandler`, registered after every other handler, so commands, outage answers and confident new
  requests are handled as such; an unclear message is asked about ("Send this to Tina on HD-1005, or is
  it something new?").

Every operation checks the person's role in `TicketService`, whatever the payload says.
"""

from __future__ import annotations

import contextlib
import logging
import re
import shlex
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from bot.core.models import Button, Reply
from bot.core.pipeline import Turn
from bot.engine.replies import global_command
from bot.engine.state import ConversationState, OpenTicket, TicketAnswer
from bot.store.repos import UnitOfWork
from bot.store.tables import EventRow, TicketNoteRow
from bot.tickets.model import (
    B_ASSIGN,
    B_ASSIGN_TO,
    B_CLAIM,
    B_FIXED,
    B_NOTE,
    B_RATE,
    B_REOPEN,
    B_REPLY,
    B_RESOLVE,
    B_SEND_NOTE,
    B_SPLIT,
    FORM_NOTE,
    FORM_REPLY,
    FORM_RESOLVE,
    IMPACT_WORDS,
    OPEN_STATUSES,
    Forbidden,
    InvalidState,
    Outcome,
    TicketError,
    TicketView,
    note_form,
    raised_level,
    reply_form,
    resolve_form,
)
from bot.tickets.queries import find_by_thread
from bot.tickets.service import TicketService

if TYPE_CHECKING:
    from bot.core.pipeline import Pipeline

log = logging.getLogger("bot.tickets")

# The documented explicit prefixes: stored as an internal note, no question asked.
NOTE_PREFIX = re.compile(r"^\s*(?:note|internal)\s*:|^\s*//")
# Text that *looks* like a note ("Internal note: ...", "[internal] ...", "Tech only - ...", "Note to self"):
# kept as an internal note too, and the technician is told so, with a button to send it after all.
# Relaying a note by mistake leaks it to the employee; keeping a message back costs one click.
NOTE_LIKE = re.compile(
    r"^[\W_]*(?:internal|private|confidential|(?:tech(?:nician)?s?|staff|team|admin|desk|it)[\s-]*"
    r"(?:only|notes?)\b|notes?\s*(?:[:\-\u2013\u2014\])]|to\s+(?:self|team|techs?|the\s+team)\b)|"
    r"(?:not|do\s+not|don'?t)\s+(?:for|send|relay|share|tell|forward)\b)"
    r"|[\[(](?:internal|private|note|tech(?:s| only)?)[\])]",
    re.IGNORECASE)
# "reply HD-1005 thanks, that worked" typed without the slash command.
TYPED_REPLY = re.compile(r"^\s*reply\s+(?:to\s+)?([a-z]+-\d+)\b[\s:,.-]*(.*)$", re.IGNORECASE | re.DOTALL)
# The start of an answer to a technician's question: relayed, whatever else it mentions.
ANSWER_LIKE = re.compile(r"^\s*(?:yes|yeah|yep|yup|no|nope|nah|ok|okay|sure|thanks|thank you|it does|it did|"
                         r"it is|it was|it doesn'?t|it didn'?t|done|tried|still)\b", re.IGNORECASE)
# What the conversation waits for while the bot asks "Send this to Tina on HD-1005, or something new?"
AWAITING_RELAY = "relay_choice"
V_RELAY_SEND, V_RELAY_NEW = "relay:send:", "relay:new"

VERBS = frozenset({"help", "", "queue", "mine", "status", "tickets", "list", "show", "claim", "assign", "resolve",
                   "reopen", "note", "reply", "open", "open-from-message", "my"})
# Slack's message shortcut "Open a help desk ticket from this message" (docs/slack.md): the command is
# `open-from-message <permalink>` and `Incoming.text` is the message's text.
FROM_MESSAGE = "open-from-message"


class UsageError(Exception):
    """A command typed wrongly; the message says how to type it."""


@contextlib.asynccontextmanager
async def atomic(uow: UnitOfWork) -> AsyncIterator[None]:
    """A savepoint around one ticket operation: a refused operation leaves no half-change, no
    event and no message behind, while the rest of the turn commits."""
    events, enqueued = len(uow.events), len(uow.enqueued)
    nested = await uow.session.begin_nested()
    try:
        yield
    except BaseException:
        await nested.rollback()
        del uow.events[events:]
        del uow.enqueued[enqueued:]
        raise
    else:
        await nested.commit()


def parse_open_args(tokens: Sequence[str]) -> dict[str, str]:
    """`--for EMAIL --category C --summary S [--impact I] [--urgency U]`."""
    wanted = {"--for": "for", "--category": "category", "--summary": "summary", "--impact": "impact",
              "--urgency": "urgency"}
    values: dict[str, str] = {}
    rest: list[str] = []
    items = list(tokens)
    while items:
        token = items.pop(0)
        if token in wanted and items:
            values[wanted[token]] = items.pop(0)
        else:
            rest.append(token)
    if rest and "summary" not in values:
        values["summary"] = " ".join(rest)
    missing = [k for k in ("for", "category", "summary") if not values.get(k)]
    if missing:
        raise UsageError('usage: /helpdesk open --for someone@example.com --category printer --summary "what is wrong" '
                         "[--impact high|medium|low] [--urgency high|medium|low]")
    return values


class TicketHandler:
    """Implements `TicketDesk` (escalation from flows) and `TurnHandler` (commands, buttons, relay)."""

    def __init__(self, service: TicketService) -> None:
        self.service = service
        self.pipeline: Pipeline | None = None  # set by RelayHandler: "Something new" is triaged

    # ----- TicketDesk ---------------------------------------------------------------------

    async def open_for_flow(self, turn: Turn, request: OpenTicket, summary: str) -> TicketAnswer:
        svc = self.service
        said = " ".join([request.first_message, summary, *(str(v) for v in request.details.values()
                                                            if isinstance(v, str))])
        impact = raised_level(request.impact, said, IMPACT_WORDS)
        if impact != request.impact:
            turn.emit("impact_raised", impact=impact, was=request.impact)
            request = replace(request, impact=impact)
        existing = await svc.open_duplicate_of(turn.uow, turn.person, request.category)
        if existing is not None:
            details = {**dict(request.details), "first_message": request.first_message}
            row, note = await svc.add_update(turn.uow, turn.person, existing.ref, summary, details)
            return TicketAnswer(row.ref, row.priority, svc.first_response_text(row.priority, turn.now), existing=True,
                                buttons=(Button("Open a separate ticket", f"{B_SPLIT}{row.ref}:{note.id}"),))
        row = await svc.open(
            turn.uow, turn.person, category=request.category, summary=summary, impact=request.impact,
            urgency=request.urgency, channel=turn.platform.value, details=dict(request.details),
            tried_articles=request.tried_articles, tried_actions=request.tried_actions,
            transcript=await self._transcript(turn, request), conversation_key=turn.incoming.conversation_key,
            flow_id=request.flow_id)
        return TicketAnswer(row.ref, row.priority, svc.first_response_text(row.priority, turn.now))

    async def open_tickets(self, turn: Turn) -> list[dict[str, str]]:
        views = await self.service.list_tickets(turn.uow, turn.person, scope="requested")
        return [{"id": v.ref, "summary": v.summary, "status": v.status} for v in views if v.status in OPEN_STATUSES]

    async def _transcript(self, turn: Turn, request: OpenTicket) -> list[str]:
        """The person's first message and the bot's last few messages of this conversation."""
        limit = self.service.cfg.transcript_lines
        if limit == 0:
            return []
        name = turn.person.display_name.split()[0] if turn.person.display_name else turn.person.email
        query = select(EventRow.data).where(EventRow.conversation_key == turn.incoming.conversation_key,
                                            EventRow.type == "reply")
        if turn.state.started_at is not None:
            query = query.where(EventRow.at >= turn.state.started_at)
        rows = (await turn.uow.session.execute(query.order_by(EventRow.id.desc()).limit(limit))).scalars()
        lines = [f"{name}: {request.first_message}"] if request.first_message else []
        bot = [f"bot: {' '.join(str(d.get('text', '')).split())[:300]}" for d in rows]
        return (lines + list(reversed(bot)))[-limit:]

    # ----- TurnHandler --------------------------------------------------------------------

    async def handle(self, turn: Turn) -> bool:
        incoming = turn.incoming
        pending = ""
        if turn.state.awaiting == AWAITING_RELAY and not turn.state.active:
            # Whatever comes next answers (or replaces) "Send this to ..., or something new?".
            pending = turn.state.pending_text
            turn.state = ConversationState(version=turn.state.version)
        if incoming.command is not None:
            return await self._command(turn, incoming.command)
        if incoming.action is not None:
            value = incoming.action.value
            if value.startswith(V_RELAY_SEND) or value == V_RELAY_NEW:
                await self._relay_choice(turn, value, pending)
                return True
            if value.startswith("ticket:"):
                await self._guard(turn, value.split(":")[2] if value.count(":") >= 2 else "",
                                  self._button(turn, value))
                return True
            if value.startswith("form:ticket_"):
                form_id = value.removeprefix("form:")
                await self._guard(turn, form_id.split(":", 1)[-1], self._form(turn, form_id, incoming.action.values))
                return True
            return False
        text = (incoming.text or "").strip()
        if not text:
            return False
        if incoming.reply_to.thread_id and not incoming.is_direct:
            ref = await find_by_thread(turn.uow, incoming.platform.value, incoming.reply_to.conversation_id,
                                       incoming.reply_to.thread_id)
            if ref is None:
                return False
            await self._guard(turn, ref, self._thread_message(turn, ref, text))
            return True
        typed = TYPED_REPLY.match(text) if incoming.is_direct and not turn.state.active else None
        if typed is not None:
            await self._command(turn, f"reply {typed.group(1)} {typed.group(2)}".strip())
            return True
        return False

    # ----- plumbing -----------------------------------------------------------------------

    def _private(self, turn: Turn) -> bool:
        return not turn.incoming.is_direct

    def _say(self, turn: Turn, template: str, context: Mapping[str, Any], buttons: Sequence[Button] = ()) -> None:
        turn.say(template, context, buttons=buttons, private=self._private(turn))

    def _ack(self, turn: Turn, outcome: Outcome, **extra: Any) -> None:
        self._say(turn, "ticket_ack", {"action": outcome.action, "ticket_id": outcome.ticket.ref,
                                       "priority": outcome.ticket.priority,
                                       "requester_name": outcome.ticket.requester_name,
                                       "to_name": "", **dict(outcome.extra), **extra})

    async def _guard(self, turn: Turn, ref: str, operation: Any) -> None:
        try:
            async with atomic(turn.uow):
                await operation
        except TicketError as exc:
            context: dict[str, Any] = {"kind": exc.kind, "ticket_id": exc.ref, "detail": exc.detail,
                                       "holder_name": getattr(exc, "holder_name", "")}
            turn.emit("ticket_refused", subject=exc.ref, id=exc.ref, reason=exc.kind)
            self._say(turn, "ticket_error", context)
        except UsageError as exc:
            self._say(turn, "ticket_error", {"kind": "usage", "ticket_id": ref, "detail": str(exc),
                                             "holder_name": ""})

    # ----- commands -----------------------------------------------------------------------

    async def _command(self, turn: Turn, command: str) -> bool:
        try:
            tokens = shlex.split(command)
        except ValueError:
            tokens = command.split()
        verb = tokens[0].lower() if tokens else ""
        if verb not in VERBS:
            return False
        if verb == "my" and [t.lower() for t in tokens[1:]] != ["tickets"]:
            return False  # "/helpdesk my vpn is down" is a request, not "my tickets"
        args = tokens[1:]
        ref = args[0].upper() if args else ""
        await self._guard(turn, ref, self._run_command(turn, verb, args))
        return True

    async def _run_command(self, turn: Turn, verb: str, args: list[str]) -> None:
        svc, uow, person = self.service, turn.uow, turn.person
        if verb in ("help", ""):
            # `/helpdesk`, `/helpdesk help` and Home's "Get help": what the bot does, then the commands.
            self._say(turn, "help", {})
            self._say(turn, "ticket_help", {"technician": person.is_technician})
            return
        if verb == "my":  # Home's "My tickets" quick action (`cmd:my tickets`), or typed
            verb = "status"
        if verb in ("queue", "mine", "status", "tickets", "list"):
            scope = {"queue": "queue", "mine": "mine", "list": "open"}.get(verb, "requested")
            if not person.is_technician:
                scope = "requested"
            await self._show_list(turn, await svc.list_tickets(uow, person, scope), scope)
            return
        if verb == FROM_MESSAGE:
            await self._open_from_message(turn, args[0] if args else "")
            return
        if verb == "open":
            values = parse_open_args(args)
            self.service.require_technician(person)
            requester = await svc.person(values["for"])
            if requester is None:
                raise UsageError(f"{values['for']} is not in the directory")
            row = await svc.open(uow, requester, category=values["category"], summary=values["summary"],
                                 impact=values.get("impact", "low"), urgency=values.get("urgency", "low"),
                                 channel=turn.platform.value, opened_by=person)
            self._say(turn, "ticket_ack", {"action": "opened", "ticket_id": row.ref, "priority": row.priority,
                                           "requester_name": requester.display_name, "to_name": ""})
            return
        if not args:
            raise UsageError(f"usage: /helpdesk {verb} HD-1001" + (" text" if verb in ("note", "reply") else ""))
        ref, rest = args[0].upper(), " ".join(args[1:]).strip()
        if verb == "show":
            await self._show(turn, await svc.show(uow, person, ref))
        elif verb == "claim":
            self._ack(turn, await svc.claim(uow, person, ref))
        elif verb == "assign":
            if not rest:
                await self._assign_choice(turn, ref)
                return
            self._ack(turn, await svc.assign(uow, person, ref, rest))
        elif verb == "resolve":
            self._ack(turn, await svc.resolve(uow, person, ref, rest))
        elif verb == "reopen":
            self._ack(turn, await svc.reopen(uow, person, ref, rest))
        elif verb == "note":
            if not rest:
                raise UsageError(f"usage: /helpdesk note {ref} text of the note")
            self._ack(turn, await svc.note(uow, person, ref, rest))
        elif verb == "reply":
            if not rest:
                raise UsageError(f"usage: /helpdesk reply {ref} your message")
            row = await svc.get(uow, ref)
            if row.requester_email == person.email.lower():
                await self._requester_reply(turn, ref, rest)
            else:
                await self._technician_message(turn, ref, rest, acknowledge=True)

    async def _open_from_message(self, turn: Turn, link: str) -> None:
        """A ticket for the person who used the shortcut, with the message's text and a link to it."""
        message = (turn.incoming.text or "").strip()
        if not message:
            raise UsageError("That message has no text to open a ticket from.")
        first_line = message.splitlines()[0]
        summary = first_line if len(first_line) <= 150 else first_line[:149] + "…"
        details = {"message": message[:2000], **({"link": link} if link else {})}
        row = await self.service.open(turn.uow, turn.person, category="human", summary=summary,
                                      channel=turn.platform.value, details=details,
                                      conversation_key=turn.incoming.conversation_key)
        self._say(turn, "ticket_opened", {"existing": False, "ticket_id": row.ref, "priority": row.priority,
                                          "first_response": self.service.first_response_text(row.priority,
                                                                                             turn.now)})

    async def _show_list(self, turn: Turn, tickets: list[TicketView], scope: str) -> None:
        titles = {"queue": "Open tickets nobody has claimed:", "mine": "Tickets you hold:",
                  "open": "All open tickets:", "requested": "Your tickets:"}
        empties = {"queue": "The queue is empty.", "mine": "You don't hold any open tickets.",
                   "open": "There are no open tickets.", "requested": "You have no tickets."}
        tz = self.service.calendar.timezone
        items = [{"ref": t.ref, "priority": t.priority, "status": t.status, "summary": t.summary[:80],
                  "assignee": await self.service.name_of(t.assignee_email) if t.assignee_email else "",
                  "requester": t.requester_name, "due_target": t.due_target, "overdue": t.overdue,
                  "due": t.due_at.astimezone(tz).strftime("%a %d %b %H:%M") if t.due_at else ""}
                 for t in tickets]
        buttons = tuple(Button(f"Claim {t.ref}", B_CLAIM + t.ref) for t in tickets[:5]) if scope == "queue" else ()
        self._say(turn, "ticket_list", {"tickets": items, "title": titles[scope], "empty": empties[scope],
                                        "show_requester": scope != "requested"}, buttons)

    async def _show(self, turn: Turn, view: TicketView) -> None:
        tz = self.service.calendar.timezone
        self._say(turn, "ticket_detail", {
            "ticket_id": view.ref, "priority": view.priority, "category": view.category, "status": view.status,
            "assignee": await self.service.name_of(view.assignee_email) if view.assignee_email else "",
            "summary": view.summary, "requester": view.requester_name,
            "opened": view.created_at.astimezone(tz).strftime("%a %d %b %H:%M"),
            "notes": [{"at": n.at.astimezone(tz).strftime("%d %b %H:%M"), "kind": n.kind, "author": n.author,
                       "text": n.text} for n in view.notes]})

    async def _assign_choice(self, turn: Turn, ref: str) -> None:
        self.service.require_technician(turn.person, ref)
        row = await self.service.get(turn.uow, ref)
        buttons = [Button(await self.service.name_of(email), f"{B_ASSIGN_TO}{row.ref}:{email}")
                   for email in self.service.technician_emails()]
        self._say(turn, "ticket_assign_choice", {"ticket_id": row.ref}, buttons)

    # ----- buttons and forms --------------------------------------------------------------

    async def _button(self, turn: Turn, value: str) -> None:
        svc, uow, person = self.service, turn.uow, turn.person
        parts = value.split(":")
        op = parts[1] + ":"
        ref = parts[2].upper() if len(parts) > 2 else ""
        arg = ":".join(parts[3:])
        if not ref:
            raise UsageError("That button is missing its ticket.")
        prefix = "ticket:" + op
        if prefix == B_CLAIM:
            self._ack(turn, await svc.claim(uow, person, ref))
        elif prefix == B_ASSIGN:
            await self._assign_choice(turn, ref)
        elif prefix == B_ASSIGN_TO:
            self._ack(turn, await svc.assign(uow, person, ref, arg))
        elif prefix == B_RESOLVE:
            svc.require_technician(person, ref)
            await svc.get(uow, ref)
            self._form_reply(turn, resolve_form(ref))
        elif prefix == B_NOTE:
            svc.require_technician(person, ref)
            await svc.get(uow, ref)
            self._form_reply(turn, note_form(ref))
        elif prefix == B_REPLY:
            row = await svc.get(uow, ref)
            if row.requester_email != person.email.lower():
                svc.require_technician(person, ref)
            self._form_reply(turn, reply_form(ref))
        elif prefix == B_REOPEN:
            self._ack(turn, await svc.reopen(uow, person, ref))
        elif prefix == B_FIXED:
            outcome = await svc.confirm_fixed(uow, person, ref, arg == "yes")
            if outcome.action == "confirmed":
                buttons = [Button(str(n), f"{B_RATE}{ref}:{n}") for n in range(1, 6)]
                self._say(turn, "ticket_feedback", {"kind": "ask_rating", "ticket_id": ref}, buttons)
            else:
                self._say(turn, "ticket_feedback", {"kind": "reopened", "ticket_id": ref})
        elif prefix == B_RATE:
            if not arg.isdigit():
                raise InvalidState(ref, "a rating is 1 to 5")
            await svc.rate(uow, person, ref, int(arg))
            self._say(turn, "ticket_feedback", {"kind": "rated", "ticket_id": ref, "rating": int(arg)})
        elif prefix == B_SEND_NOTE:
            if not arg.isdigit():
                raise InvalidState(ref, "that button is missing its note")
            self._ack(turn, await svc.send_note_to_requester(uow, person, ref, int(arg)))
        elif prefix == B_SPLIT:
            if not arg.isdigit():
                raise InvalidState(ref, "nothing to split")
            new = await svc.split(uow, person, ref, int(arg))
            self._say(turn, "ticket_ack", {"action": "split", "ticket_id": new.ref, "priority": new.priority,
                                           "requester_name": new.requester_name, "to_name": ""})
        else:
            raise UsageError("I don't know that ticket button.")

    def _form_reply(self, turn: Turn, form: Any) -> None:
        turn.reply(Reply(text=form.title, form=form, private=self._private(turn)))

    async def _form(self, turn: Turn, form_id: str, values: Mapping[str, str]) -> None:
        svc, uow, person = self.service, turn.uow, turn.person
        ref = form_id.split(":", 1)[-1].upper()
        if form_id.startswith(FORM_NOTE):
            self._ack(turn, await svc.note(uow, person, ref, values.get("note", "")))
        elif form_id.startswith(FORM_RESOLVE):
            self._ack(turn, await svc.resolve(uow, person, ref, values.get("note", "")))
        elif form_id.startswith(FORM_REPLY):
            text = values.get("message", "").strip()
            if not text:
                raise InvalidState(ref, "the message is empty")
            row = await svc.get(uow, ref)
            if row.requester_email == person.email.lower():
                await self._requester_reply(turn, ref, text)
            else:
                await self._technician_message(turn, ref, text, acknowledge=True)
        else:
            raise UsageError("I don't know that ticket form.")

    # ----- relay --------------------------------------------------------------------------

    async def _thread_message(self, turn: Turn, ref: str, text: str) -> None:
        """A message in the ticket's queue thread. Technicians only; `note:` keeps it internal."""
        if not turn.person.is_technician:
            raise Forbidden(ref, "only technicians work tickets in the queue channel")
        explicit = NOTE_PREFIX.match(text)
        if explicit:
            self._ack(turn, await self.service.note(turn.uow, turn.person, ref, text[explicit.end():].strip()))
            return
        # The technician's message is already in the thread for everyone: no acknowledgement there.
        await self._technician_message(turn, ref, text, acknowledge=False)

    async def _technician_message(self, turn: Turn, ref: str, text: str, *, acknowledge: bool) -> None:
        """A technician writing to the requester; text that looks like an internal note stays one."""
        svc = self.service
        if NOTE_LIKE.search(text[:60]):
            outcome = await svc.note(turn.uow, turn.person, ref, text)
            row = await svc.get(turn.uow, ref)
            first = row.requester_name.split()[0] if row.requester_name else "the requester"
            self._say(turn, "ticket_ack", {
                "action": "kept_as_note", "ticket_id": outcome.ticket.ref, "priority": outcome.ticket.priority,
                "requester_name": row.requester_name, "to_name": ""},
                buttons=(Button(f"Send it to {first}", f"{B_SEND_NOTE}{outcome.ticket.ref}:"
                                                       f"{outcome.extra['note_id']}"),))
            return
        outcome = await svc.reply_to_requester(turn.uow, turn.person, ref, text)
        if acknowledge:
            self._ack(turn, outcome)

    async def _requester_reply(self, turn: Turn, ref: str, text: str) -> None:
        outcome = await self.service.reply_from_requester(turn.uow, turn.person, ref, text)
        self._ack(turn, outcome)


    async def _relay_choice(self, turn: Turn, value: str, text: str) -> None:
        """The answer to "Send this to Tina on HD-1005, or is it something new?"."""
        if not text:
            turn.say("stale_button")
            return
        if value.startswith(V_RELAY_SEND):
            ref = value.removeprefix(V_RELAY_SEND).upper()
            await self._guard(turn, ref, self._requester_reply(turn, ref, text))
            return
        turn.emit("relay_declined", text_length=len(text))
        if self.pipeline is not None:
            await self.pipeline.route(turn, text)


class RelayHandler:
    """An employee's free chat while a technician is talking to them (docs/tickets.md, "Relay").

    Registered after every other handler, so a matching outage status has already been shown. Here:
    "cancel", "start over", "talk to a person", outage questions and "my tickets" are left to the
    usual path; a message triage is sure is a new, different request is handled as one (and the
    person is told it did not go to the technician); a possible new request is asked about; anything
    else (an answer, "thanks", "yes, E52") goes to the technician, and the reply names them.
    """

    # Labels that are never a message *for* the technician: the usual path answers them.
    PASS_ON = frozenset({"outage_check", "ticket_status"})
    # Labels that never count as "a new request" (an answer to a technician often reads like these).
    NOT_NEW = frozenset({"smalltalk", "out_of_scope", "human", "fallback"})

    def __init__(self, tickets: TicketHandler, pipeline: Pipeline) -> None:
        self.tickets = tickets
        self.pipeline = pipeline
        tickets.pipeline = pipeline

    async def handle(self, turn: Turn) -> bool:
        incoming = turn.incoming
        if incoming.command is not None or incoming.action is not None or not incoming.is_direct:
            return False
        text = (incoming.text or "").strip()
        if not text or turn.state.active or turn.state.awaiting is not None:
            return False
        svc = self.tickets.service
        row = await svc.relay_target(turn.uow, turn.person)
        if row is None:
            return False
        if global_command(text) is not None:
            return False  # cancel / start over / talk to a person work as everywhere else
        pipeline = self.pipeline
        guess = pipeline.triage.classify(text)
        tech = await svc.name_of(row.assignee_email) if row.assignee_email else "the technicians"
        context = {"ticket_id": row.ref, "to_name": tech}
        it_label = guess.intent in pipeline.engine.flows and guess.intent not in self.NOT_NEW
        if guess.intent in self.PASS_ON and guess.confidence >= pipeline.min_confidence:
            turn.emit("relay_skipped", id=row.ref, reason=guess.intent)
            return False
        # About the ticket: its category, or a topic word its summary shares ("normal mode still
        # crashes" on "Outlook crashes every time...") - an answer to the technician, not a new request.
        # An answer-shaped message ("yes, also on battery") or one sharing a topic word with the
        # technician's last message is an answer too.
        stems = getattr(pipeline.triage, "content_stems", None)
        about = f"{row.summary} {row.category.replace('_', ' ')} {await self._last_from_technician(turn, row.id)}"
        related = guess.intent == row.category or bool(ANSWER_LIKE.match(text)) or bool(
            stems is not None and stems(text) & stems(about))
        if it_label and not related and guess.confidence >= pipeline.start_threshold \
                and row.category in pipeline.engine.flows and row.category not in self.NOT_NEW:
            turn.emit("relay_skipped", id=row.ref, reason="new_request")
            turn.say("relay_not_sent", context)
            return False
        if it_label and not related and guess.confidence >= pipeline.min_confidence:
            first = tech.split()[0] if row.assignee_email else "the technicians"
            turn.state = replace(turn.state, awaiting=AWAITING_RELAY, pending_text=text, updated_at=turn.now)
            turn.emit("relay_asked", id=row.ref)
            turn.say("relay_or_new", context, buttons=[
                Button(f"Send to {first}", f"{V_RELAY_SEND}{row.ref}", "primary"),
                Button("Something new", V_RELAY_NEW)])
            return True
        await self.tickets._guard(turn, row.ref, self.tickets._requester_reply(turn, row.ref, text))
        return True

    @staticmethod
    async def _last_from_technician(turn: Turn, ticket_id: int) -> str:
        query = (select(TicketNoteRow.text).where(TicketNoteRow.ticket_id == ticket_id,
                                                  TicketNoteRow.kind == "to_requester")
                 .order_by(TicketNoteRow.id.desc()).limit(1))
        return str((await turn.uow.session.execute(query)).scalar_one_or_none() or "")
