"""The one path every message takes (DESIGN.md, "One path for every message").

1. Drop duplicates by event id.  2. Resolve the sender to a directory person.  3. Load the
conversation state under a lock.  4. Let the handlers decide (ticket commands, relays, outages...,
and last the flow engine).  5. Commit state, events and outbox rows in one transaction, then hand
the replies to the channel.
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from collections import deque
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Protocol

from jinja2 import UndefinedError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.core.models import (
    Address,
    Button,
    Incoming,
    Outbound,
    Person,
    Platform,
    PlatformUser,
    Reply,
    person_address,
)
from bot.core.ports import (
    ActionOutcome,
    ActionRequest,
    ActionRunner,
    KbHit,
    KbResult,
    KnowledgeBase,
    PersonResolver,
    SharedState,
    TextRenderer,
)
from bot.core.text import ESCAPERS, bounded_incoming, neutralise
from bot.engine.engine import Engine
from bot.engine.listen import Facts, listens_for
from bot.engine.replies import global_command
from bot.engine.state import (
    V_HUMAN,
    ActionAnswer,
    ConversationState,
    Emit,
    FlowRuntimeError,
    KbAnswer,
    OpenTicket,
    Retriage,
    RunAction,
    Say,
    SearchKb,
    ShowArticle,
    TicketAnswer,
    Transition,
    TriageGuess,
    UserTurn,
)
from bot.store.db import utcnow
from bot.store.repos import ConcurrentUpdate, SqlSharedState, UnitOfWork

log = logging.getLogger("bot.pipeline")

Clock = Callable[[], datetime]


# The one real clock (bot/store/db.py); everything else takes an injected `Clock`.
system_clock: Clock = utcnow


class TriageModel(Protocol):
    def classify(self, text: str) -> TriageGuess: ...


class TicketDesk(Protocol):
    """Opens tickets for flows and lists the person's open ones (bot/tickets implements it)."""

    async def open_for_flow(self, turn: Turn, request: OpenTicket, summary: str) -> TicketAnswer: ...

    async def open_tickets(self, turn: Turn) -> list[dict[str, str]]:
        """The person's own open tickets, as `{"id", "summary", "status"}`, for `ticket_status`."""
        ...


class Listener(Protocol):
    """Looks up what a message may name in the directory (the person's devices, groups...), so the
    pure engine can hear it (bot/graph/listening.py implements it)."""

    async def facts(self, person: Person, text: str, kinds: frozenset[str]) -> Facts: ...


class TurnHandler(Protocol):
    """Gets a turn before the flow engine; returns True when it handled it."""

    async def handle(self, turn: Turn) -> bool: ...


@dataclass(slots=True)
class TurnResult:
    replies: list[Outbound] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    duplicate: bool = False
    person: Person | None = None
    # Replies written to the outbox in the turn's transaction (`Pipeline.durable_replies`).
    queued: int = 0


@dataclass(slots=True)
class Turn:
    """One message being handled: everything a handler needs, in one transaction."""

    incoming: Incoming
    person: Person
    uow: UnitOfWork
    state: ConversationState
    renderer: TextRenderer
    now: datetime
    replies: list[Outbound] = field(default_factory=list)

    @property
    def platform(self) -> Platform:
        return self.incoming.platform

    def render(self, *, template: str | None = None, source: str | None = None,
               context: Mapping[str, Any] | None = None, platform: Platform | None = None) -> str:
        values = {"person": person_context(self.person), **dict(context or {})}
        return self.renderer.text(platform or self.platform, template=template, source=source, context=values)

    def reply(self, reply: Reply, *, address: Address | None = None) -> None:
        """Answer in the conversation the message came from (sent after commit)."""
        self.replies.append(Outbound(address=address or self.incoming.reply_to, reply=reply))
        if reply.secret:
            self.emit("reply", text="[shown once to its owner, not stored]", buttons=[], private=True)
        else:
            self.emit("reply", text=reply.text, buttons=[b.label for b in reply.buttons],
                      **({"form": reply.form.form_id} if reply.form else {}))

    def say(self, template: str, context: Mapping[str, Any] | None = None,
            buttons: Sequence[Button] = (), private: bool = False) -> None:
        self.reply(Reply(text=self.render(template=template, context=context), buttons=tuple(buttons),
                         private=private, template=template))

    def emit(self, type: str, **data: Any) -> dict[str, Any]:
        return self.uow.emit(type, **data)

    def send(self, outbound: Outbound, *, idempotency_key: str, group_key: str | None = None,
             kind: str = "post") -> None:
        """A message that must arrive elsewhere (queue channel, another person): via the outbox."""
        self.uow.enqueue(outbound, idempotency_key=idempotency_key, group_key=group_key, kind=kind)


def person_context(person: Person) -> dict[str, Any]:
    first = person.display_name.split()[0] if person.display_name else person.email.split("@")[0]
    return {"name": person.display_name, "first_name": first, "email": person.email}


class UowActionContext:
    """What a self-service action (or a periodic job) may do inside a transaction: audit, and
    notify people through the outbox. `platform` is where people are reached when we have never
    seen their direct conversation."""

    def __init__(self, uow: UnitOfWork, platform: Platform, key_prefix: str,
                 reply_to: Address | None = None) -> None:
        self.uow = uow
        self.platform = platform
        self.key_prefix = key_prefix
        # The conversation the person wrote in, when there is one: an action that makes them wait
        # (a technician confirming their identity) answers there later.
        self.reply_to = reply_to
        # Verification codes, grants, pending identity checks and rate limits: in the turn's
        # transaction, visible to every replica. Expiry is judged at the turn's time (the injected
        # clock's reading the UnitOfWork records everything with), not by the real clock.
        self.state: SharedState = SqlSharedState(uow.session, clock=uow.now.timestamp)

    def emit(self, type: str, **data: Any) -> None:
        self.uow.emit(type, **data)

    async def notify(self, email: str, text: str, buttons: Sequence[Button] = ()) -> None:
        address = await self.uow.direct_address(email) or person_address(self.platform, email)
        self.notify_at(address, text, buttons, who=email)

    def notify_at(self, address: Address, text: str, buttons: Sequence[Button] = (), *, who: str = "") -> None:
        """A message in a given conversation (where someone asked), through the outbox."""
        key = f"notify:{self.key_prefix}:{who or address.conversation_id}:{len(self.uow.enqueued)}"
        # Notices are plain sentences that quote what people typed (names, a reason): escaped once,
        # for the platform they land on, so nothing typed can format, link or ping.
        text = ESCAPERS[address.platform](neutralise(text))
        self.uow.enqueue(Outbound(address, Reply(text=text, buttons=tuple(buttons))), idempotency_key=key)


def turn_action_context(turn: Turn) -> UowActionContext:
    return UowActionContext(turn.uow, turn.platform, turn.incoming.event_id, reply_to=turn.incoming.reply_to)


class Pipeline:
    def __init__(
        self,
        *,
        sessions: async_sessionmaker[AsyncSession],
        resolver: PersonResolver,
        engine: Engine,
        triage: TriageModel,
        renderer: TextRenderer,
        kb: KnowledgeBase | None = None,
        actions: ActionRunner | None = None,
        tickets: TicketDesk | None = None,
        handlers: Sequence[TurnHandler] = (),
        clock: Clock = system_clock,
        triage_thresholds: tuple[float, float, float] = (0.55, 0.30, 0.08),
        suggest_floor: float = 0.10,
        on_commit: Callable[[], None] | None = None,
        listener: Listener | None = None,
    ) -> None:
        self.sessions = sessions
        self.resolver = resolver
        self.engine = engine
        self.triage = triage
        self.renderer = renderer
        self.kb = kb
        self.actions = actions
        self.tickets = tickets
        self.handlers = list(handlers)
        self.clock = clock
        self.start_threshold, self.min_confidence, self.margin = triage_thresholds
        self.suggest_floor = suggest_floor
        self.on_commit = on_commit
        self.listener = listener
        # Told of every turn (platform, outcome, seconds): the composition root counts them for /metrics.
        self.on_turn: Callable[[str, str, float], None] | None = None
        # Platforms whose replies go through the outbox (their channel runs turns from the inbox).
        self.durable_replies: set[str] = set()
        self._locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()

    def add_handler(self, handler: TurnHandler) -> None:
        self.handlers.append(handler)

    async def record_once(self, key: str, event: str, *, person: Person | None = None,
                          user: PlatformUser | None = None, direct: Address | None = None, **data: Any) -> bool:
        """Something a channel hears outside a turn (the app installed in a conversation), recorded
        once under `key` in one transaction: the person remembered with their direct conversation
        when known, and the event. False when it was already recorded (a repeated delivery)."""
        async with self.sessions() as session, session.begin():
            uow = UnitOfWork(session, now=self.clock(), actor=person.email if person else None)
            if not await uow.first_time(key):
                return False
            if person is not None and user is not None:
                await uow.remember_person(person, user, direct)
            uow.emit(event, **data)
        return True

    async def handle(self, incoming: Incoming) -> TurnResult:
        started = time.perf_counter()
        incoming = bounded_incoming(incoming)
        lock = self._locks.get(incoming.conversation_key)
        if lock is None:
            lock = asyncio.Lock()
            self._locks[incoming.conversation_key] = lock
        outcome = "ok"
        try:
            async with lock:
                try:
                    person = await self.resolver.resolve(incoming.sender)
                except Exception as exc:
                    # The directory is down and nothing is cached: say so, lose nothing (the
                    # event id is not marked handled, so a platform retry gets another chance).
                    log.exception("directory lookup failed", extra={"conversation": incoming.conversation_key})
                    outcome = "directory_unavailable"
                    # A response with a status (a 500) is an error from the service, not "can't reach".
                    answered = isinstance(getattr(exc, "status", None), int)
                    text = self.renderer.text(incoming.platform, template="directory_unavailable",
                                              context={"answered": answered})
                    # Nothing is stored (no transaction), but every reply a person sees is an event.
                    events: list[dict[str, Any]] = [{"type": "directory_unavailable", "answered": answered},
                              {"type": "reply", "text": text, "buttons": []}]
                    return TurnResult(replies=[Outbound(incoming.reply_to, Reply(text=text))], events=events)
                for attempt in range(3):
                    try:
                        result = await self._handle_once(incoming, person)
                        break
                    except ConcurrentUpdate:
                        if attempt == 2:
                            raise
                        log.warning("conversation changed concurrently; retrying",
                                    extra={"conversation": incoming.conversation_key})
                outcome = "duplicate" if result.duplicate else "ok"
                return result
        except Exception:
            outcome = "error"
            raise
        finally:
            elapsed = time.perf_counter() - started
            log.info("message handled", extra={
                "conversation": incoming.conversation_key, "event_id": incoming.event_id,
                "platform": incoming.platform.value, "outcome": outcome,
                "duration_ms": round(elapsed * 1000, 1),
            })
            if self.on_turn is not None:
                self.on_turn(incoming.platform.value, outcome, elapsed)

    async def _handle_once(self, incoming: Incoming, person: Person | None) -> TurnResult:
        now = self.clock()
        async with self.sessions() as session, session.begin():
            uow = UnitOfWork(session, now=now, conversation_key=incoming.conversation_key,
                             actor=person.email if person else incoming.sender.email)
            if not await uow.first_time(f"{incoming.platform.value}:{incoming.event_id}"):
                return TurnResult(duplicate=True, person=person)
            if person is None:
                uow.emit("person_unknown", platform=incoming.platform.value, user=incoming.sender.user_id)
                text = self.renderer.text(incoming.platform, template="unknown_person", context={})
                uow.emit("reply", text=text, buttons=[])  # every reply a person sees is an event
                produced = [Outbound(incoming.reply_to, Reply(text=text))]
                replies = self._durable(uow, incoming, produced)
            else:
                direct = incoming.direct_to or (incoming.reply_to if incoming.is_direct else None)
                await uow.remember_person(person, incoming.sender, direct)
                state = await uow.lock_conversation(incoming.conversation_key, incoming.platform.value)
                version = state.version
                turn = Turn(incoming=incoming, person=person, uow=uow, state=state, renderer=self.renderer,
                            now=now)
                await self._decide(turn)
                expires = now + self.engine.resume_window if turn.state.active else None
                await uow.save_conversation(incoming.conversation_key, turn.state, version, person.email, expires)
                produced = turn.replies
                replies = self._durable(uow, incoming, produced)
        if self.on_commit is not None and uow.enqueued:
            self.on_commit()
        return TurnResult(replies=replies, events=uow.events, person=person,
                          queued=len(produced) - len(replies))

    def _durable(self, uow: UnitOfWork, incoming: Incoming, replies: list[Outbound]) -> list[Outbound]:
        """On platforms in `durable_replies`, the turn's replies become outbox rows in the turn's
        transaction (so a crash after the commit neither loses nor repeats them) and nothing is
        left for the channel to send. A secret is never written down: a turn that shows one keeps
        all its replies for the channel to send at once, in order, after the commit."""
        if incoming.platform.value not in self.durable_replies or any(o.reply.secret for o in replies):
            return replies
        for number, outbound in enumerate(replies):
            address = outbound.address
            if outbound.reply.private and address.user_id is None:
                # Only its owner sees it where it lands (Slack: an ephemeral message in a channel).
                address = replace(address, user_id=incoming.sender.user_id)
            uow.enqueue(replace(outbound, address=address),
                        idempotency_key=f"reply:{incoming.platform.value}:{incoming.event_id}:{number}")
        return []

    # ----- decide --------------------------------------------------------------------------

    async def _decide(self, turn: Turn) -> None:
        for handler in self.handlers:
            if await handler.handle(turn):
                return
        incoming = turn.incoming
        # A `/helpdesk ...` no handler took is a request in the person's words ("/helpdesk my vpn
        # is down"); the command name itself is never part of what triage reads.
        text = incoming.command if incoming.command is not None else incoming.text
        if incoming.command is not None and not incoming.command.strip():
            turn.say("help")
            return
        user_turn = UserTurn(
            text=text,
            value=incoming.action.value if incoming.action else None,
            form=incoming.action.values if incoming.action and incoming.action.form_values else None,
        )
        state = turn.state
        try:
            if state.active and self.engine.is_idle(state, turn.now):
                ended = self.engine.resume_check(state, turn.now)
                if ended is not None:
                    await self._apply(turn, ended)
                    state = turn.state
                elif user_turn.text and user_turn.value is None:
                    await self._apply(turn, self.engine.idle_prompt(state, user_turn.text, turn.now))
                    return
            if state.active or state.awaiting == "did_you_mean":
                if state.active and user_turn.text and user_turn.value is None:
                    user_turn = replace(user_turn, facts=await self._facts(turn, state.flow_id, user_turn.text,
                                                                           state.slots))
                await self._apply(turn, self.engine.advance(state, user_turn, turn.now))
                return
            if user_turn.value is not None and user_turn.value.startswith("start:"):
                flow_id = user_turn.value.removeprefix("start:")
                if flow_id in self.engine.flows:
                    await self._apply(turn, self.engine.start(state, flow_id, "", turn.now))
                    return
            if user_turn.value == V_HUMAN and "human" in self.engine.flows:
                await self._apply(turn, self.engine.start(state, "human", "", turn.now))
                return
            text = (user_turn.text or "").strip()
            if not text:
                if user_turn.value is not None:
                    # A button from a conversation that has since ended.
                    turn.say("stale_button")
                else:
                    turn.say("help")
                return
            if global_command(text) == "cancel":
                # Nothing is running: "cancel" is not a request to sort (nor "not an IT matter").
                turn.emit("nothing_to_cancel")
                turn.say("nothing_to_cancel")
                return
            await self._route(turn, text)
        except UndefinedError as exc:
            # A flow's text names a slot this conversation never filled: the documented apology and
            # an offer of a technician, never a raw template error (`flows validate` catches most).
            log.error("flow template error: %s", exc, extra={"conversation": incoming.conversation_key})
            # The flow may have reached its end in this turn (its state already cleared): name it anyway.
            failed_flow = turn.state.flow_id or state.flow_id
            failed_step = turn.state.step_id or state.step_id
            turn.emit("flow_error", flow=failed_flow, step=failed_step, error=str(exc)[:500])
            if failed_flow:
                turn.emit("flow_ended", flow=failed_flow, outcome="abandoned")
            turn.state = ConversationState(version=state.version)
            turn.say("error", buttons=[Button("Talk to a person", V_HUMAN)])
        except FlowRuntimeError as exc:
            log.error("flow error: %s", exc, extra={"conversation": incoming.conversation_key})
            turn.emit("flow_error", flow=state.flow_id, step=state.step_id, error=str(exc)[:500])
            if state.flow_id:
                turn.emit("flow_ended", flow=state.flow_id, outcome="abandoned")
            turn.state = ConversationState(version=state.version)
            turn.say("error", buttons=[Button("Talk to a person", V_HUMAN)])

    async def _route(self, turn: Turn, text: str) -> None:
        await self.route(turn, text)

    async def route(self, turn: Turn, text: str, *, skip: Collection[str] = ()) -> None:
        """Triage `text` and act on it as an opening message. A handler that held a message back (an
        outage status shown first) hands it on with this; `skip` leaves out labels already answered."""
        guess = self.triage.classify(text)
        if skip:
            rest = [a for a in ((guess.intent, guess.confidence), *guess.alternatives) if a[0] not in skip]
            guess = TriageGuess(rest[0][0], rest[0][1], tuple(rest[1:])) if rest else TriageGuess(guess.intent, 0.0)
        turn.emit("triaged", intent=guess.intent, confidence=guess.confidence)
        await self._apply(turn, await self._triage_route(turn, text, guess))

    async def _triage_route(self, turn: Turn, text: str, guess: TriageGuess) -> Transition:
        """Start the flow (with what the message already says), ask "Did you mean" (also under the
        floor when the message names something IT), or fall back."""
        plausible_of = getattr(self.triage, "plausible", None)
        plausible = plausible_of(text, guess, min_confidence=self.min_confidence, floor=self.suggest_floor) \
            if plausible_of is not None else ()
        facts = await self._facts(turn, guess.intent, text, {})
        return self.engine.route(turn.state, text, guess, turn.now, start_threshold=self.start_threshold,
                                 min_confidence=self.min_confidence, margin=self.margin, plausible=plausible,
                                 facts=facts)

    async def _facts(self, turn: Turn, flow_id: str | None, text: str, filled: Mapping[str, Any]) -> Facts:
        """The directory facts the flow listens for in `text` (nothing when it listens for none)."""
        flow = self.engine.flows.get(flow_id or "")
        if flow is None or self.listener is None:
            return Facts()
        kinds = listens_for(flow, filled)
        if not kinds:
            return Facts()
        try:
            return await self.listener.facts(turn.person, text, kinds)
        except Exception:  # listening is a convenience: the question is simply asked
            log.warning("directory lookup for listening failed", exc_info=True)
            return Facts()

    async def _apply(self, turn: Turn, transition: Transition) -> None:
        """Carry out a transition's effects, feeding results back into the engine."""
        turn.state = transition.state
        pending: deque[Any] = deque(transition.effects)
        rounds = 0
        while pending:
            rounds += 1
            if rounds > 500:
                raise FlowRuntimeError("too many effects in one turn")
            effect = pending.popleft()
            follow: Transition | None = None
            if isinstance(effect, Say):
                if effect.template == "ticket_status" and "tickets" not in effect.context:
                    effect = await self._with_tickets(turn, effect)
                self._say(turn, effect)
            elif isinstance(effect, Emit):
                turn.emit(effect.type, **self._event_data(effect, turn))
            elif isinstance(effect, SearchKb):
                follow = self.engine.advance(turn.state, KbAnswer(self._search(turn, effect)), turn.now)
            elif isinstance(effect, ShowArticle):
                self._show_article(turn, effect.article_id)
            elif isinstance(effect, RunAction):
                follow = self.engine.advance(turn.state, await self._run_action(turn, effect), turn.now)
            elif isinstance(effect, OpenTicket):
                follow = self.engine.advance(turn.state, await self._open_ticket(turn, effect), turn.now)
            elif isinstance(effect, Retriage):
                if effect.text.strip():
                    guess = self.triage.classify(effect.text)
                    turn.emit("triaged", intent=guess.intent, confidence=guess.confidence)
                    follow = await self._triage_route(turn, effect.text, guess)
                else:
                    turn.say("help")
            if follow is not None:
                turn.state = follow.state
                pending.extendleft(reversed(follow.effects))

    def _event_data(self, effect: Emit, turn: Turn) -> dict[str, Any]:
        data = dict(effect.data)
        if effect.type == "kb_gap":
            query = str(data.get("query", ""))
            # `example` is what the person wrote: this turn's words, else the conversation's first
            # message; never the query a flow built from them ("mailbox full archive storage quota").
            said = (turn.incoming.text or "").strip() or str(data.get("said") or "").strip() or query
            data = {"query": " ".join(query.lower().split())[:200], "example": " ".join(said.split())[:200]}
        return data

    def _flow_context(self, turn: Turn) -> dict[str, Any]:
        flow = self.engine.flows.get(turn.state.flow_id or "")
        ctx: dict[str, Any] = dict(turn.state.slots)
        ctx.update({"slots": dict(turn.state.slots), "first_message": turn.state.first_message,
                    "flow": {"id": flow.id, "title": flow.title} if flow else {}})
        return ctx

    async def _with_tickets(self, turn: Turn, say: Say) -> Say:
        """The `ticket_status` template lists the person's own open tickets (it promised to)."""
        if self.tickets is None:
            return say
        try:
            items = await self.tickets.open_tickets(turn)
        except Exception:  # the flow still answers with how to look them up
            log.exception("listing tickets for ticket_status failed")
            return say
        return replace(say, context={**dict(say.context), "tickets": items})

    def _say(self, turn: Turn, say: Say) -> None:
        context = {**self._flow_context(turn), **dict(say.context)}
        text = turn.render(template=say.template if not say.text else None, source=say.text, context=context)
        turn.reply(Reply(text=text, buttons=say.buttons, form=say.form, private=say.private,
                         template=say.template))

    def _search(self, turn: Turn, effect: SearchKb) -> KbResult:
        query = turn.render(source=effect.query, context=self._flow_context(turn), platform=Platform.CONSOLE)
        query = query.strip() or turn.state.first_message
        if self.kb is None:
            return KbResult(query=query, hits=(), confidence="none")
        result = self.kb.search(query, limit=effect.limit, category=effect.category)
        if not effect.pinned:
            return result
        pinned: list[KbHit] = []
        for article_id in effect.pinned:
            article = self.kb.render_article(article_id)
            if article is not None:
                pinned.append(KbHit(article_id, str(article.get("title", article_id)),
                                    str(article.get("summary", "")), 1.0, article.get("url")))
        seen = {h.article_id for h in pinned}
        hits = (pinned + [h for h in result.hits if h.article_id not in seen])[: effect.limit]
        return KbResult(query=query, hits=tuple(hits), confidence="high" if pinned else result.confidence)

    def _show_article(self, turn: Turn, article_id: str) -> None:
        article = self.kb.render_article(article_id) if self.kb else None
        if article is None:
            turn.say("article_missing", {"article_id": article_id})
            return
        # The template formats the article for the channel (the `article_body` filter: Slack
        # mrkdwn escaped, Teams card markdown, plain text), below its title and summary.
        turn.say("kb_article", {"title": article.get("title", ""), "summary": article.get("summary", ""),
                                "article": article},
                 buttons=[Button("This solved it", "kb:solved", "primary"), Button("Still need help", "kb:unsolved")])

    async def _run_action(self, turn: Turn, effect: RunAction) -> ActionAnswer:
        context = self._flow_context(turn)
        args = {k: turn.render(source=v, context=context, platform=Platform.CONSOLE) for k, v in effect.args.items()}
        args.update(effect.inputs)  # raw answers, never rendered as templates
        if self.actions is None or effect.name not in self.actions.names():
            outcome = ActionOutcome(ok=False, code="unavailable",
                                    message="That self-service action isn't available here.", escalate=True)
            turn.emit("action", name=effect.name, ok=False, code="unavailable")
            return ActionAnswer(outcome)
        request = ActionRequest(name=effect.name, person=turn.person, args=args,
                                conversation_key=turn.incoming.conversation_key)
        try:
            outcome = await self.actions.run(request, turn_action_context(turn))
        except Exception as exc:  # an action must never take the conversation down
            log.exception("action %s failed", effect.name)
            turn.emit("action", name=effect.name, ok=False, code="error", error=type(exc).__name__)
            outcome = ActionOutcome(ok=False, code="error", escalate=True,
                                    message="I couldn't complete that because of a problem on our side.")
        shown = False
        if outcome.secret:
            secret = outcome.secret
            label = str(outcome.data.get("secret_label", "Your temporary password"))
            advice = str(outcome.data.get("secret_advice", ""))
            text = turn.render(template="secret_once", context={"secret": secret, "label": label, "advice": advice})
            # The action's own message introduces the secret ("Here is your temporary password..."),
            # so it comes first, then the secret itself.
            if outcome.message:
                turn.say("action_message", {"message": outcome.message, "ok": outcome.ok})
            turn.reply(Reply(text=text, private=True, secret=True, template="secret_once",
                             rich={"secret": {"label": label, "value": secret, "advice": advice}}))
            outcome = replace(outcome, secret=None, message="")
            shown = True
        return ActionAnswer(outcome, secret_shown=shown)

    async def _open_ticket(self, turn: Turn, effect: OpenTicket) -> TicketAnswer:
        context = self._flow_context(turn)
        summary = turn.render(source=effect.summary, context=context, platform=Platform.CONSOLE)[:300]
        impact = turn.render(source=effect.impact, context=context, platform=Platform.CONSOLE).strip().lower()
        urgency = turn.render(source=effect.urgency, context=context, platform=Platform.CONSOLE).strip().lower()
        request = replace(effect, impact=impact or "low", urgency=urgency or "low")
        if self.tickets is None:
            raise FlowRuntimeError("no ticket desk is configured")
        return await self.tickets.open_for_flow(turn, request, summary)
