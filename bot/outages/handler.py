"""Outage-aware turns, before the flow engine sees them:

- a message about an active incident's service gets the live status first ("Known issue: ...")
  with "I'm affected" and "Something else" (which hands the message on to normal triage);
- an "is anything down?" question gets the list of active incidents and maintenance;
- the notice buttons (affected, got it), the resolution follow-up (fixed / still broken), the spike
  alert buttons (declare / dismiss);
- `/helpdesk outage ...` commands and the notice modal, for admins (checked here, server-side).
"""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from bot.core.models import Button, Form, FormField, Reply
from bot.engine.state import ConversationState
from bot.outages.commands import changes_from, draft_from, incident_id, parse_args
from bot.outages.model import SEVERITIES, V_AFFECTED, V_OTHER, NoticeDraft, OutageError, group_key
from bot.outages.service import OutageService

if TYPE_CHECKING:
    from bot.core.pipeline import Pipeline, Turn

log = logging.getLogger("bot.outages")

FORM_ID = "outage_post"
AWAITING = "outage_status"
# Labels whose question an outage status answers (the flow of that name would only repeat it).
OUTAGE_LABEL = "outage_check"


class OutageHandler:
    def __init__(self, service: OutageService, pipeline: Pipeline, *, timezone: str = "UTC") -> None:
        self.service = service
        self.pipeline = pipeline
        self.tz = timezone

    async def handle(self, turn: Turn) -> bool:
        incoming = turn.incoming
        if incoming.command is not None:
            words = incoming.command.strip().split(None, 1)
            if words and words[0].lower() == "outage":
                await self._command(turn, words[1] if len(words) > 1 else "")
                return True
            return False
        if incoming.action is not None:
            value = incoming.action.value
            if value.startswith("outage:"):
                await self._button(turn, value)
                return True
            if value == f"form:{FORM_ID}" or value.startswith(f"form:{FORM_ID}:"):
                await self._form(turn, value.removeprefix(f"form:{FORM_ID}").lstrip(":"))
                return True
            return False
        text = (incoming.text or "").strip()
        if text.lower().startswith("helpdesk outage"):
            await self._command(turn, text[len("helpdesk outage"):])
            return True
        if not text or turn.state.active or turn.state.awaiting == "did_you_mean":
            return False
        return await self._triage(turn, text)

    # ----- outage-aware triage --------------------------------------------------------------

    async def _triage(self, turn: Turn, text: str) -> bool:
        session = turn.uow.session
        current = await self.service.current(session)
        if not current:
            return False
        incident = await self.service.match(session, text)
        if incident is not None and not await self._declined(turn, incident.id):
            context = self.service.context(incident, turn.now)
            turn.state = replace(turn.state, awaiting=AWAITING, pending_text=text, first_message=text,
                                 updated_at=turn.now)
            turn.emit("outage_status_shown", subject=group_key(incident.id), incident=incident.id,
                      service=incident.service)
            turn.say("outage_known", context, buttons=[
                Button("I'm affected", f"{V_AFFECTED}{incident.id}", "primary"),
                Button("Something else", f"{V_OTHER}{incident.id}")])
            return True
        guess = self.pipeline.triage.classify(text)
        if guess.intent == OUTAGE_LABEL and guess.confidence >= self.pipeline.min_confidence:
            listed = [{"id": i.id, "service": i.service, "summary": i.summary,
                       "state": self._state(i.kind, i.status, self.service.context(i, turn.now))} for i in current]
            turn.state = replace(turn.state, awaiting=AWAITING, pending_text=text, first_message=text,
                                 updated_at=turn.now)
            turn.emit("outage_status_shown", incidents=[i.id for i in current])
            buttons = [Button(i.service, f"{V_AFFECTED}{i.id}") for i in current if i.status == "active"][:5]
            turn.say("outage_active_list", {"incidents": listed},
                     buttons=[*buttons, Button("Something else", f"{V_OTHER}0")])
            return True
        return False

    @staticmethod
    def _state(kind: str, status: str, context: dict[str, Any]) -> str:
        if kind == "maintenance" and status == "scheduled":
            return f"planned maintenance {context['starts']} to {context['ends']}"
        if kind == "maintenance":
            return f"maintenance until {context['ends']}"
        return f"{context['severity']} incident since {context['since']}"

    async def _declined(self, turn: Turn, incident: int) -> bool:
        """The person already said their problem is something else: do not hold them up again."""
        from sqlalchemy import func, select

        from bot.store.tables import EventRow

        count = await turn.uow.session.scalar(select(func.count()).select_from(EventRow).where(
            EventRow.type == "outage_other", EventRow.subject == group_key(incident),
            EventRow.actor == turn.person.email))
        return bool(count)

    # ----- buttons --------------------------------------------------------------------------

    def _clear(self, turn: Turn) -> str:
        """Forget the message held back for the status; returns it."""
        text = turn.state.pending_text if turn.state.awaiting == AWAITING else ""
        if turn.state.awaiting == AWAITING and not turn.state.active:
            turn.state = ConversationState(version=turn.state.version)
        return text

    async def _button(self, turn: Turn, value: str) -> None:
        parts = value.split(":")
        action, args = parts[1] if len(parts) > 1 else "", parts[2:]
        try:
            if action in ("affected", "ack"):
                await self._react(turn, int(args[0]), affected=action == "affected")
            elif action == "other":
                await self._something_else(turn, int(args[0]) if args and args[0].isdigit() else 0)
            elif action in ("fixed", "broken") and len(args) >= 2:
                fixed = action == "fixed"
                ticket = ":".join(args[1:])
                if await self.service.ticket_feedback(turn.uow, int(args[0]), ticket, fixed=fixed,
                                                      email=turn.person.email):
                    turn.say("outage_ticket_feedback", {"fixed": fixed, "ticket_id": ticket})
                else:
                    turn.say("stale_button")
            elif action == "declare" and args:
                await self._declare(turn, args[0])
            elif action == "dismiss" and args:
                if not turn.person.is_technician:
                    turn.say("outage_command", {"outcome": "forbidden", "action": "dismiss alerts about"})
                    return
                turn.emit("outage_spike_dismissed", subject=f"spike:{args[0]}", label=args[0])
                turn.say("outage_command", {"outcome": "dismissed", "label": args[0]})
            else:
                turn.say("stale_button")
        except (OutageError, ValueError, IndexError):
            turn.say("stale_button")

    async def _react(self, turn: Turn, incident: int, *, affected: bool) -> None:
        self._clear(turn)
        address = turn.incoming.direct_to or (turn.incoming.reply_to if turn.incoming.is_direct else None)
        row = await self.service.react(turn.uow, incident, email=turn.person.email, platform=turn.platform.value,
                                       address=address, affected=affected)
        resolved = row.status not in ("active", "scheduled")
        if affected:
            turn.say("outage_affected_thanks", {"service": row.service, "resolved": resolved}, private=True)
        else:
            turn.say("outage_ack_thanks", {"service": row.service}, private=True)

    async def _something_else(self, turn: Turn, incident: int) -> None:
        text = self._clear(turn)
        if incident:
            turn.emit("outage_other", subject=group_key(incident), incident=incident)
        if not text:
            turn.say("help")
            return
        await self.pipeline.route(turn, text, skip={OUTAGE_LABEL})

    # ----- admin commands -------------------------------------------------------------------

    async def _command(self, turn: Turn, rest: str) -> None:
        try:
            positional, options = parse_args(rest)
        except OutageError as exc:
            turn.say("outage_command", {"outcome": "usage", "problem": str(exc)})
            return
        verb = positional[0].lower() if positional else ""
        args = positional[1:]
        person = turn.person
        if verb in ("list", "status"):
            if not person.is_technician:
                turn.say("outage_command", {"outcome": "forbidden", "action": "read"})
                return
        elif not person.is_admin:
            turn.say("outage_command", {"outcome": "forbidden", "action": verb or "post"})
            turn.emit("outage_forbidden", command=verb or "form")
            return
        uow = turn.uow
        try:
            if verb == "":
                self._show_form(turn, None)
            elif verb == "post":
                draft = draft_from(options, now=turn.now, tz=self.tz, default_platform=self._platform(turn))
                result = await self.service.post(uow, draft, actor=person.email, report_to=turn.incoming.reply_to)
                turn.say("outage_command", {"outcome": "posted", "incident_id": result.incident.id,
                                            "service": result.incident.service, "recipients": result.edits})
            elif verb == "update":
                changes = changes_from(options, now=turn.now, tz=self.tz)
                result = await self.service.update(uow, incident_id(args), changes, actor=person.email)
                turn.say("outage_command", {"outcome": "updated", "incident_id": result.incident.id,
                                            "edits": result.edits})
            elif verb == "resolve":
                result = await self.service.resolve(uow, incident_id(args), actor=person.email,
                                                    note=options.get("note", " ".join(args[1:])))
                turn.say("outage_command", {"outcome": "resolved", "incident_id": result.incident.id,
                                            "edits": result.edits, "notified": result.notified})
            elif verb == "recall":
                result = await self.service.recall(uow, incident_id(args), actor=person.email)
                turn.say("outage_command", {"outcome": "recalled", "incident_id": result.incident.id,
                                            "cancelled": result.cancelled, "deleted": result.deleted})
            elif verb == "list":
                rows = await self.service.current(uow.session)
                turn.say("outage_command", {"outcome": "list", "incidents": [
                    {"id": r.id, "service": r.service, "status": r.status, "summary": r.summary} for r in rows]})
            elif verb == "status":
                report = await self.service.report(uow.session, incident_id(args))
                turn.reply(Reply(text=self.service.render_report(report, turn.platform), template="outage_report"))
            else:
                turn.say("outage_command", {"outcome": "usage", "problem": f"Unknown outage command {verb!r}."})
        except OutageError as exc:
            outcome = {"not_found": "not_found", "closed": "closed"}.get(exc.code, "usage")
            number = args[0] if args else ""
            turn.say("outage_command", {"outcome": outcome, "problem": str(exc), "incident_id": number,
                                        "status": str(exc).rsplit(" ", 1)[-1]})

    def _platform(self, turn: Turn) -> str:
        return turn.platform.value if turn.platform.value != "console" else self.service.dm_platform

    # ----- the notice form (a modal on Slack) -----------------------------------------------

    def _show_form(self, turn: Turn, label: str | None) -> None:
        draft = self.service.draft_for(label) if label else NoticeDraft(service="")
        severity = tuple(Button(s.capitalize(), s) for s in SEVERITIES)
        audience = (Button("Announcement channels", "channels"), Button("Everyone (direct message)", "everyone"),
                    Button("Members of groups", "groups"))
        form = Form(
            form_id=f"{FORM_ID}:{label}" if label else FORM_ID,
            title="Outage notice",
            submit_label="Post notice",
            fields=(
                FormField("service", "Service", required=not label, placeholder=draft.service or "e.g. Outlook email"),
                FormField("summary", "What's happening", kind="multiline", required=not label,
                          placeholder=draft.summary or "e.g. Email is delayed by up to 30 minutes"),
                FormField("severity", "Severity", kind="choice", options=severity),
                FormField("aliases", "Other names people use (comma separated)", required=False,
                          placeholder="email, mail, exchange"),
                FormField("impact", "Impact", kind="multiline", required=False),
                FormField("workaround", "Workaround", kind="multiline", required=False),
                FormField("fix", "Expected fix", required=False, placeholder="e.g. by 11:00"),
                FormField("next_update", "Next update (HH:MM)", required=False, pattern=r"^(\d{1,2}:\d{2})?$"),
                FormField("category", "Tickets about it (links them to the notice)", kind="choice",
                          required=False, options=self._categories()),
                FormField("audience", "Audience", kind="choice", options=audience),
                FormField("groups", "Groups (only for Members of groups)", required=False,
                          only_if=("audience", "groups")),
            ),
        )
        text = self.service.renderer.text(turn.platform, template="outage_command", context={"outcome": "form"})
        turn.reply(Reply(text=text, form=form, private=True, template="outage_command"))

    def _categories(self) -> tuple[Button, ...]:
        """The IT flows, as a notice's category: tickets opened in it while it is active are linked."""
        flows = self.pipeline.engine.flows
        not_it = {"human", "smalltalk", "out_of_scope", "fallback", OUTAGE_LABEL, "ticket_status"}
        return tuple(Button(f.title, f.id) for f in sorted(flows.values(), key=lambda f: f.title)
                     if f.id not in not_it)

    async def _declare(self, turn: Turn, label: str) -> None:
        if not turn.person.is_admin:
            turn.say("outage_command", {"outcome": "forbidden", "action": "post"})
            return
        self._show_form(turn, label)

    async def _form(self, turn: Turn, label: str) -> None:
        if not turn.person.is_admin:
            turn.say("outage_command", {"outcome": "forbidden", "action": "post"})
            return
        values = turn.incoming.action.values if turn.incoming.action else {}
        options = {k.replace("_", "-"): v for k, v in values.items() if v and k != "audience"}
        audience = values.get("audience", "")
        if audience == "everyone":
            options["dm"] = "everyone"
        elif audience == "groups" and values.get("groups"):
            options["groups"] = values["groups"]
        defaults = self.service.draft_for(label) if label else None
        try:
            draft = draft_from(options, now=turn.now, tz=self.tz, default_platform=self._platform(turn),
                               defaults=defaults)
            result = await self.service.post(turn.uow, draft, actor=turn.person.email,
                                             report_to=turn.incoming.reply_to)
        except OutageError as exc:
            turn.say("outage_command", {"outcome": "usage", "problem": str(exc)})
            return
        turn.say("outage_command", {"outcome": "posted", "incident_id": result.incident.id,
                                    "service": result.incident.service, "recipients": result.edits})
