"""Tickets in the conversation: the pipeline's `TicketDesk` and a `TurnHandler`.

The handler takes, before the flow engine:
- `/helpdesk <verb> ...` commands for tickets (help, queue, mine, status, show, claim, assign, resolve,
  reopen, note, reply, open); other verbs are left to other handlers;
- ticket buttons (`ticket:<op>:<ref>[:arg]`) and ticket forms (`form:ticket_<op>:<ref>`);
- a message in a ticket's queue thread (Slack/Teams): a technician's text is relayed to the
  requester, `note: ...` (or `/helpdesk note`) stays internal;
- an employee's free chat while a technician is talking to them (the relay window, docs/tickets.md).

Every operation checks the person's role in `TicketService`, whatever the payload says.
"""

from __future__ import annotations

import contextlib
import logging
import shlex
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

from sqlalchemy import select

from bot.core.models import Button, Reply
from bot.core.pipeline import Turn
from bot.engine.engine import OpenTicket, TicketAnswer
from bot.store.repos import UnitOfWork
from bot.store.tables import EventRow
from bot.tickets.service import (
    B_ASSIGN,
    B_ASSIGN_TO,
    B_CLAIM,
    B_FIXED,
    B_NOTE,
    B_RATE,
    B_REOPEN,
    B_REPLY,
    B_RESOLVE,
    B_SPLIT,
    FORM_NOTE,
    FORM_REPLY,
    FORM_RESOLVE,
    Forbidden,
    InvalidState,
    Outcome,
    TicketError,
    TicketService,
    TicketView,
    find_by_thread,
    note_form,
    reply_form,
    resolve_form,
)

log = logging.getLogger("bot.tickets")

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

    # ----- TicketDesk ---------------------------------------------------------------------

    async def open_for_flow(self, turn: Turn, request: OpenTicket, summary: str) -> TicketAnswer:
        svc = self.service
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
        if incoming.command is not None:
            return await self._command(turn, incoming.command)
        if incoming.action is not None:
            value = incoming.action.value
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
        if incoming.is_direct and not turn.state.active and turn.state.awaiting is None:
            row = await self.service.relay_target(turn.uow, turn.person)
            if row is not None:
                await self._guard(turn, row.ref, self._requester_reply(turn, row.ref, text))
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
                self._ack(turn, await svc.reply_to_requester(uow, person, ref, rest))

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
        items = [{"ref": t.ref, "priority": t.priority, "status": t.status, "summary": t.summary[:80],
                  "assignee": await self.service.name_of(t.assignee_email) if t.assignee_email else "",
                  "requester": t.requester_name} for t in tickets]
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
                self._ack(turn, await svc.reply_to_requester(uow, person, ref, text))
        else:
            raise UsageError("I don't know that ticket form.")

    # ----- relay --------------------------------------------------------------------------

    async def _thread_message(self, turn: Turn, ref: str, text: str) -> None:
        """A message in the ticket's queue thread. Technicians only; `note:` keeps it internal."""
        svc = self.service
        if not turn.person.is_technician:
            raise Forbidden(ref, "only technicians work tickets in the queue channel")
        lowered = text.lower()
        if lowered.startswith(("note:", "internal:", "//")):
            body = text.split(":", 1)[1] if ":" in text[:9] else text[2:]
            self._ack(turn, await svc.note(turn.uow, turn.person, ref, body.strip()))
            return
        # The technician's message is already in the thread for everyone: no acknowledgement there.
        await svc.reply_to_requester(turn.uow, turn.person, ref, text)

    async def _requester_reply(self, turn: Turn, ref: str, text: str) -> None:
        outcome = await self.service.reply_from_requester(turn.uow, turn.person, ref, text)
        self._ack(turn, outcome)

