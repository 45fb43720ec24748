"""The pure conversation engine, `advance(state, stimulus, ...) -> Transition`: running a flow's steps.

It reads a flow and the conversation state, and returns the next state and a list of effects
(say, search the knowledge base, run an action, open a ticket, record an event). It does no I/O:
the core runs the effects and feeds results (search hits, action outcomes, ticket ids) back in as
stimuli. Everything here is testable without mocks. Its vocabulary (state, stimuli, effects, button
values) is in bot/engine/state.py; reading a person's reply in bot/engine/replies.py.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from bot.core.models import Button, Form, FormField
from bot.core.ports import KbResult
from bot.engine.listen import Facts, Heard, hear, hear_step
from bot.engine.replies import NEW_REQUEST_WORDS, NO, SOLVED, UNSOLVED, YES, global_command, normalise, pick_choice
from bot.engine.spec import (
    ActionStep,
    AskStep,
    BranchStep,
    Choice,
    EndStep,
    EscalateStep,
    Flow,
    KbStep,
    SayStep,
)
from bot.engine.state import (
    DECLINED,
    FALLBACK_FLOW,
    INPUT_PREFIX,
    V_CANCEL,
    V_CHOICE,
    V_CONFIRM_NO,
    V_CONFIRM_YES,
    V_GUESS_NO,
    V_GUESS_YES,
    V_HUMAN,
    V_KB_SHOW,
    V_KB_SOLVED,
    V_KB_UNSOLVED,
    V_RESUME,
    V_RESUME_NEW,
    V_SOMETHING_ELSE,
    V_START,
    ActionAnswer,
    ConversationState,
    Effect,
    Emit,
    FlowRuntimeError,
    KbAnswer,
    OpenTicket,
    Retriage,
    RunAction,
    Say,
    SearchKb,
    ShowArticle,
    Stimulus,
    TicketAnswer,
    Transition,
    TriageGuess,
    UserTurn,
)

# ----- prompts and context ---------------------------------------------------------------------


def _context(state: ConversationState, flow: Flow | None, extra: Mapping[str, Any] | None = None,
             person: Mapping[str, Any] | None = None) -> dict[str, Any]:
    ctx: dict[str, Any] = dict(state.slots)
    ctx["slots"] = dict(state.slots)
    ctx["first_message"] = state.first_message
    ctx["flow"] = {"id": flow.id, "title": flow.title} if flow else {}
    if person:
        ctx["person"] = dict(person)
    if extra:
        ctx.update(extra)
    return ctx


def _heard_event(heard: Heard) -> dict[str, Any]:
    return {"slot": heard.slot, "value": heard.value[:200], "sure": heard.sure}


def _shown_articles(state: ConversationState) -> list[str]:
    """The articles of the list the person is answering (its "Show me" buttons)."""
    return [v[len(V_KB_SHOW):] for v in state.offered if v.startswith(V_KB_SHOW)]


def _matches(value: Any, accepted: str | list[str]) -> bool:
    options = accepted if isinstance(accepted, list) else [accepted]
    text = str(value if value is not None else "").lower()
    return any(text == str(o).lower() for o in options) or ("*" in options and bool(text))




# Questions whose answer is a directory name (not a device or a date): a sentence naming none of
# them, typed at the guess, is offered as something new (see `_guess_answer`).
NAMED_LISTENS = frozenset({"group", "app", "mailbox"})


def _resume_offer(state: ConversationState, text: str, template: str, title: str, back: str) -> Transition:
    """Ask whether to go back to the flow (`back`) or start something new with `text` (kept until
    they answer); `_resume` handles the answer."""
    buttons = (Button(back, V_RESUME), Button("Start something new", V_RESUME_NEW))
    new = replace(state, awaiting="resume", pending_text=text, offered=tuple(b.value for b in buttons))
    return Transition(new, (Say(template=template, context={"title": title}, buttons=buttons),))


def _choice_buttons(choices: Sequence[Choice]) -> tuple[Button, ...]:
    return tuple(Button(c.label, V_CHOICE + c.value) for c in choices)


def _form(step: AskStep) -> Form:
    return Form(
        form_id=step.id,
        title=step.title or "A few details",
        fields=tuple(
            FormField(
                name=f.name, label=f.label, kind=f.kind, required=f.required,
                options=tuple(Button(o.label, o.value) for o in f.options),
                pattern=f.pattern, placeholder=f.placeholder,
            )
            for f in step.fields
        ),
    )


# ----- the engine -------------------------------------------------------------------------------


class Engine:
    """Advances conversations through flows. Holds only the flows (data); no I/O."""

    def __init__(self, flows: Mapping[str, Flow], *, idle_timeout: timedelta = timedelta(minutes=60),
                 resume_window: timedelta = timedelta(hours=24)) -> None:
        self.flows = flows
        self.idle_timeout = idle_timeout
        self.resume_window = resume_window

    # -- entry points --

    def start(self, state: ConversationState, flow_id: str, first_message: str, now: datetime,
              *, slots: Mapping[str, Any] | None = None, facts: Facts | None = None) -> Transition:
        flow = self.flows.get(flow_id)
        if flow is None:
            raise FlowRuntimeError(f"no flow {flow_id!r}")
        fresh = ConversationState(
            flow_id=flow.id, step_id=flow.steps[0].id, slots=dict(slots or {}),
            first_message=first_message, started_at=now, updated_at=now, version=state.version,
        )
        effects: list[Effect] = [Emit("flow_started", {"flow": flow.id})]
        # The opening message answers what it can: those questions are skipped or confirmed.
        fresh = self._listen(fresh, flow, first_message, facts or Facts(), now, effects)
        return self._run(fresh, flow, flow.steps[0].id, effects)

    def route(self, state: ConversationState, text: str, guess: TriageGuess, now: datetime, *,
              start_threshold: float, min_confidence: float, margin: float,
              plausible: Sequence[str] = (), facts: Facts | None = None) -> Transition:
        """No flow is active: start the flow triage chose (with `facts` the directory found in the
        message), ask "Did you mean", or fall back. `plausible`: IT labels to offer when the guess is
        under the floor (Triage.plausible)."""
        alternatives = [a for a in guess.alternatives if a[0] != guess.intent and a[0] in self.flows]
        close = [a for a in alternatives if guess.confidence - a[1] <= margin and a[1] >= min_confidence]
        offer = [p for p in plausible if p in self.flows][:3]
        if not offer and guess.intent in self.flows and guess.confidence >= start_threshold and not close:
            return self.start(state, guess.intent, text, now, facts=facts)
        if offer or (guess.intent in self.flows and guess.confidence >= min_confidence):
            options = offer or [guess.intent, *[a[0] for a in close or alternatives][:2]]
            buttons = tuple(Button(self.flows[o].title, V_START + o) for o in options)
            buttons += (Button("Something else", V_SOMETHING_ELSE),)
            new = replace(state, awaiting="did_you_mean", first_message=text, offered=tuple(b.value for b in buttons),
                          updated_at=now)
            return Transition(new, (Say(template="did_you_mean", context={"message": text}, buttons=buttons),))
        return self.start(state, FALLBACK_FLOW, text, now) if FALLBACK_FLOW in self.flows else \
            Transition(state, (Say(template="no_match", context={"message": text}),))

    def resume_check(self, state: ConversationState, now: datetime) -> Transition | None:
        """Called before a new message. An idle flow is either offered back or forgotten."""
        if not state.active or state.updated_at is None or state.awaiting in ("resume", "approval"):
            # Waiting for a technician is not the person being idle: the check expires on its own.
            return None
        idle = now - state.updated_at
        if idle < self.idle_timeout:
            return None
        flow = self.flows.get(state.flow_id or "")
        if idle >= self.resume_window or flow is None:
            return self._finish(state, flow, "abandoned", [])
        return None

    def advance(self, state: ConversationState, stimulus: Stimulus, now: datetime,
                person: Mapping[str, Any] | None = None) -> Transition:
        flow = self.flows.get(state.flow_id or "")
        if isinstance(stimulus, UserTurn):
            return self._user_turn(state, flow, stimulus, now)
        if flow is None or state.step_id is None:
            raise FlowRuntimeError("a result arrived for a conversation with no active flow")
        step = self._step(flow, state.step_id)
        state = replace(state, updated_at=now)
        if isinstance(stimulus, KbAnswer) and isinstance(step, KbStep):
            return self._kb_results(state, flow, step, stimulus.result)
        if isinstance(stimulus, ActionAnswer) and isinstance(step, ActionStep):
            return self._action_result(state, flow, step, stimulus)
        if isinstance(stimulus, TicketAnswer):
            return self._ticket_opened(state, flow, step, stimulus)
        raise FlowRuntimeError(f"unexpected {type(stimulus).__name__} at step {step.id!r}")

    def idle_prompt(self, state: ConversationState, text: str, now: datetime) -> Transition:
        """Offer to pick up an idle flow; the new message is kept in case they want something new."""
        flow = self.flows.get(state.flow_id or "")
        title = flow.title if flow else "your earlier request"
        return _resume_offer(replace(state, updated_at=now), text, "resume_offer", title,
                             "Pick up where we left off")

    def is_idle(self, state: ConversationState, now: datetime) -> bool:
        return bool(state.active and state.updated_at and now - state.updated_at >= self.idle_timeout
                    and state.awaiting not in ("resume", "approval"))

    # -- user input --

    def _user_turn(self, state: ConversationState, flow: Flow | None, turn: UserTurn,
                   now: datetime) -> Transition:
        if state.awaiting == "did_you_mean" and not state.active:
            return self._did_you_mean(state, turn, now)
        if flow is None or state.step_id is None:
            raise FlowRuntimeError("no active flow")
        state = replace(state, updated_at=now)
        if state.awaiting == "resume":
            return self._resume(state, flow, turn, now)
        command = "cancel" if turn.value == V_CANCEL else "human" if turn.value == V_HUMAN else \
            global_command(turn.text) if turn.value is None else None
        if command == "cancel":
            return self._finish(state, flow, "abandoned", [Say(template="cancelled")])
        if command == "restart":
            restarted = self.start(ConversationState(version=state.version), flow.id, state.first_message, now)
            return Transition(restarted.state,
                              (Emit("flow_ended", {"flow": flow.id, "outcome": "abandoned"}),
                               Say(template="restarting", context={"title": flow.title}), *restarted.effects))
        if command == "human":
            return self._escalate_now(state, flow, "The person asked for a technician.")
        step = self._step(flow, state.step_id or "")
        if state.awaiting == "guess" and isinstance(step, AskStep):
            return self._guess_answer(state, flow, step, turn, now)
        if state.awaiting in ("answer", "choice", "form") and isinstance(step, AskStep):
            # Anything else the answer says fills later questions (not this one: `_answer` does).
            listened: list[Effect] = []
            if turn.value is None and turn.text:
                state = self._listen(state, flow, turn.text, turn.facts, now, listened, skip=step.slot)
            answered = self._answer(state, flow, step, turn, now)
            return Transition(answered.state, (*listened, *answered.effects))
        if state.awaiting == "kb_feedback" and isinstance(step, KbStep):
            return self._kb_feedback(state, flow, step, turn, now)
        if state.awaiting == "confirm" and isinstance(step, ActionStep):
            return self._confirm(state, flow, step, turn)
        if state.awaiting == "action_input" and isinstance(step, ActionStep):
            return self._action_input(state, flow, step, turn)
        if state.awaiting == "approval" and isinstance(step, ActionStep):
            # Anything said while a technician decides (or "Continue" once they have): ask the
            # action again; it knows whether the check is approved, refused, pending or expired.
            return self._run_action(replace(state, awaiting=None), flow, step, [])
        # Waiting for something the person cannot give (a search, an action): re-show where we are.
        return Transition(state, (Say(template="still_working"),))

    def _did_you_mean(self, state: ConversationState, turn: UserTurn, now: datetime) -> Transition:
        value = turn.value or ""
        if turn.value == V_CANCEL or (turn.value is None and global_command(turn.text) == "cancel"):
            # "cancel" answers the prompt; it is not a new request to sort.
            return Transition(ConversationState(version=state.version, updated_at=now),
                              (Emit("prompt_cancelled", {"prompt": "did_you_mean"}), Say(template="cancelled")))
        if not value and turn.text:
            said = normalise(turn.text)
            for offered in state.offered:
                if offered.startswith(V_START):
                    flow = self.flows.get(offered[len(V_START):])
                    if flow and said in (normalise(flow.title), flow.id):
                        value = offered
            if said.isdigit() and 1 <= int(said) <= len(state.offered):
                value = state.offered[int(said) - 1]
        base = replace(state, awaiting=None, offered=())
        if value.startswith(V_START) and value[len(V_START):] in self.flows:
            return self.start(base, value[len(V_START):], state.first_message, now)
        if value == V_SOMETHING_ELSE and FALLBACK_FLOW in self.flows:
            return self.start(base, FALLBACK_FLOW, state.first_message, now)
        return Transition(base, (Retriage(turn.text or ""),))

    def _resume(self, state: ConversationState, flow: Flow, turn: UserTurn, now: datetime) -> Transition:
        choice = turn.value
        said = normalise(turn.text)
        if choice is None and said in YES | {"pick up where we left off", "back to the question", "continue", "1"}:
            choice = V_RESUME
        elif choice is None and said in {"start something new", "something new", "new", "2"}:
            choice = V_RESUME_NEW
        if choice == V_RESUME:
            back = replace(state, awaiting=None, pending_text="")
            step = self._step(flow, back.step_id or "")
            return self._prompt_again(back, flow, step)
        text = state.pending_text if choice == V_RESUME_NEW or said in NO else (turn.text or "")
        return self._finish(state, flow, "abandoned", [Retriage(text)])

    def _answer(self, state: ConversationState, flow: Flow, step: AskStep, turn: UserTurn,
                now: datetime) -> Transition:
        slots = dict(state.slots)
        if step.input == "choice":
            choice = pick_choice(step.choices, turn)
            if choice is None and turn.value is None and turn.text:
                # "it won't connect at all", "my mac": the choice its synonyms (or the listen words) name.
                heard = hear_step(step, turn.text, turn.facts, now.date(), answering=True)
                choice = next((c for c in step.choices if heard and heard.sure and c.value == heard.value), None)
            if choice is None and turn.value is None and len(normalise(turn.text).split()) >= NEW_REQUEST_WORDS:
                # A sentence that is none of the choices ("actually my outlook won't open"): ask
                # whether this is something new rather than repeating the question.
                return _resume_offer(state, turn.text or "", "switch_offer", flow.title, "Back to the question")
            if choice is None:
                return Transition(state, (Say(text=step.retry_text, context=_context(state, flow),
                                              buttons=_choice_buttons(step.choices)),))
            slots[step.slot] = choice.value
            slots[f"{step.slot}_label"] = choice.label
            return self._run(replace(state, slots=slots, awaiting=None), flow,
                             choice.next or step.next or flow.following(step.id), [])
        if step.input == "form":
            values = dict(turn.form or {})
            problems = []
            for spec in step.fields:
                value = str(values.get(spec.name, "") or "").strip()
                if spec.required and not value:
                    problems.append(f"{spec.label} is required")
                elif value and spec.pattern and not re.fullmatch(spec.pattern, value):
                    problems.append(f"{spec.label} doesn't look right")
                elif value and spec.kind == "choice" and value not in {o.value for o in spec.options}:
                    problems.append(f"{spec.label}: pick one of the options")
                slots[spec.name] = value[:2000]
            if turn.form is None or problems:
                say = Say(text=step.retry_text if problems else step.text, template=None if problems else step.template,
                          context=_context(state, flow, {"problems": problems}), form=_form(step))
                return Transition(state, (say,))
            return self._run(replace(state, slots=slots, awaiting=None), flow, step.next or flow.following(step.id), [])
        text = (turn.text or "").strip()
        if not text and turn.value:
            text = turn.value.removeprefix(V_CHOICE)
        if not text or (step.pattern and not re.fullmatch(step.pattern, text)):
            return Transition(state, (Say(text=step.retry_text, context=_context(state, flow)),))
        if step.listen in NAMED_LISTENS and turn.value is None and normalise(text) in YES | NO:
            # "yes" where a name is asked names nothing: ask for the name again, never request "yes".
            return Transition(state, (Say(text=step.text, template=step.template, context=_context(state, flow)),))
        if step.listen in ("group", "app", "mailbox", "date") and turn.value is None:
            # A name as people say it ("marketing share") becomes the directory's name, confirmed
            # unless typed exactly; a date becomes YYYY-MM-DD.
            heard = hear_step(step, text, turn.facts, now.date(), answering=True)
            if heard is not None and heard.value == state.guesses.get(DECLINED + step.slot, {}).get("value"):
                heard = None  # the person already said it isn't that one: take their words
            if heard is not None and not heard.sure:
                guessed = replace(state, guesses={**state.guesses, step.slot: heard.as_guess()})
                return self._confirm_guess(guessed, flow, step, [Emit("heard", _heard_event(heard))])
            if heard is not None:
                slots[step.slot] = heard.value
                slots[f"{step.slot}_label"] = heard.label
                return self._run(replace(state, slots=slots, awaiting=None), flow,
                                 step.next or flow.following(step.id), [])
        slots[step.slot] = text[:4000]
        return self._run(replace(state, slots=slots, awaiting=None), flow, step.next or flow.following(step.id), [])

    def _guess_answer(self, state: ConversationState, flow: Flow, step: AskStep, turn: UserTurn,
                      now: datetime) -> Transition:
        """The person answers "Your Windows computer ALICE-LT01?": yes takes the guess, no asks the
        real question, anything else is their answer to it."""
        guess = dict(state.guesses.get(step.slot) or {})
        rest = {k: v for k, v in state.guesses.items() if k != step.slot}
        said = normalise(turn.text)
        base = replace(state, guesses=rest, awaiting=None)
        if guess and (turn.value == V_GUESS_YES or (turn.value is None and said in YES)):
            slots = {**state.slots, step.slot: guess.get("value", ""), f"{step.slot}_label": guess.get("label", "")}
            return self._run(replace(base, slots=slots), flow, self._after(flow, step, guess.get("value", "")),
                             [Emit("guess_confirmed", {"slot": step.slot})])
        if turn.value == V_GUESS_NO or (turn.value is None and said in NO) or not guess:
            # Remembered, so the name they type next is not "corrected" back to the same guess.
            declined = replace(base, guesses={**rest, DECLINED + step.slot: {"value": guess.get("value", "")}})
            return self._ask(declined, flow, step, [Emit("guess_declined", {"slot": step.slot})])
        if (turn.value is None and step.listen in NAMED_LISTENS
                and len(said.split()) >= NEW_REQUEST_WORDS
                and hear_step(step, turn.text or "", turn.facts, now.date(), answering=True) is None):
            # "my outlook keeps asking for password" at "Finance?": a sentence that names nothing the
            # question is about is more likely a new problem than the name to request; ask, rather
            # than take it as the group (the guess stays, so "Back to the question" asks it again).
            return _resume_offer(state, turn.text or "", "switch_offer", flow.title, "Back to the question")
        answering = replace(base, awaiting="choice" if step.input == "choice" else "answer")
        return self._answer(answering, flow, step, turn, now)

    def _after(self, flow: Flow, step: AskStep, value: str) -> str | None:
        """Where an answered question goes: its choice's `next`, else the step's."""
        choice = next((c for c in step.choices if c.value == value), None)
        return (choice.next if choice else None) or step.next or flow.following(step.id)

    def _listen(self, state: ConversationState, flow: Flow, text: str, facts: Facts, now: datetime,
                effects: list[Effect], *, skip: str | None = None) -> ConversationState:
        """Fill the questions `text` answers: sure values become slots, guesses wait for their question."""
        filled = {**state.slots, **({skip: True} if skip else {})}
        slots = dict(state.slots)
        guesses = dict(state.guesses)
        for heard in hear(flow, text, facts, now, filled):
            if heard.sure:
                slots[heard.slot] = heard.value
                slots[f"{heard.slot}_label"] = heard.label
                guesses.pop(heard.slot, None)
            elif heard.slot not in guesses:
                guesses[heard.slot] = heard.as_guess()
            effects.append(Emit("heard", _heard_event(heard)))
        return replace(state, slots=slots, guesses=guesses)

    def _kb_feedback(self, state: ConversationState, flow: Flow, step: KbStep, turn: UserTurn,
                     now: datetime) -> Transition:
        value = turn.value or ""
        said = normalise(turn.text)
        if not value:
            if said in SOLVED or said in YES:
                value = V_KB_SOLVED
            elif said in UNSOLVED or said in NO:
                value = V_KB_UNSOLVED
            elif said.isdigit() and 1 <= int(said) <= len(state.offered):
                value = state.offered[int(said) - 1]
        if value.startswith(V_KB_SHOW):
            article = value[len(V_KB_SHOW):]
            # Remembered (a `last_` slot: not a ticket detail) so "This solved it" credits this one.
            opened = replace(state, slots={**state.slots, "last_kb_opened": article})
            return Transition(opened, (Emit("kb_opened", {"article": article}), ShowArticle(article)))
        if value == V_KB_SOLVED:
            shown = _shown_articles(state)
            solved: dict[str, Any] = {"articles": shown}
            last = state.slots.get("last_kb_opened")
            if isinstance(last, str) and last in shown:
                solved["article"] = last  # the one they read before saying it solved it
            elif len(shown) == 1:
                solved["article"] = shown[0]
            effects: list[Effect] = [Emit("kb_solved", solved)]
            if step.on_solved:
                return self._run(replace(state, awaiting=None), flow, step.on_solved, effects)
            effects.append(Say(template="glad_it_helped"))
            return self._finish(state, flow, "deflected", effects)
        if value == V_KB_UNSOLVED:
            effects = [Emit("kb_unsolved", {"articles": _shown_articles(state)})]
            target = step.on_unsolved or step.next or flow.following(step.id)
            return self._run(replace(state, awaiting=None), flow, target, effects)
        # Free text that answers a later question ("it shows error code E52" after "tell me the
        # code") is that answer: taken, and the flow goes on as not solved by the articles.
        if turn.text and not value:
            listened: list[Effect] = []
            heard_state = self._listen(state, flow, turn.text, turn.facts, now, listened)
            if listened:
                effects = [*listened, Emit("kb_unsolved", {"articles": _shown_articles(state)}),
                           Say(template="noted", context={"heard": [e.data for e in listened if isinstance(e, Emit)]})]
                target = step.on_unsolved or step.next or flow.following(step.id)
                return self._run(replace(heard_state, awaiting=None), flow, target, effects)
        # Free text while articles are shown: keep it as more detail and ask again.
        slots = dict(state.slots)
        if turn.text:
            slots["more_detail"] = (str(slots.get("more_detail", "")) + " " + turn.text).strip()[:4000]
        return Transition(replace(state, slots=slots),
                          (Say(template="kb_feedback_prompt", buttons=self._kb_buttons(state.offered)),))

    def _confirm(self, state: ConversationState, flow: Flow, step: ActionStep, turn: UserTurn) -> Transition:
        said = normalise(turn.text)
        if turn.value == V_CONFIRM_YES or (turn.value is None and said in YES):
            return self._run_action(replace(state, awaiting=None), flow, step, [])
        if turn.value == V_CONFIRM_NO or (turn.value is None and said in NO):
            effects: list[Effect] = [Say(template="action_declined")]
            if step.on_failure:
                return self._run(replace(state, awaiting=None), flow, step.on_failure, effects)
            return self._finish(state, flow, "abandoned", effects)
        return self._prompt_again(state, flow, step)

    def _action_input(self, state: ConversationState, flow: Flow, step: ActionStep, turn: UserTurn) -> Transition:
        slot = state.action_input_slot or "input"
        value = turn.value.removeprefix(V_CHOICE) if turn.value else (turn.text or "").strip()
        if not value:
            return self._prompt_again(state, flow, step)
        slots = dict(state.slots)
        slots[INPUT_PREFIX + slot] = value[:500]
        return self._run_action(replace(state, slots=slots, awaiting=None), flow, step, [])

    # -- results from the core --

    def _kb_results(self, state: ConversationState, flow: Flow, step: KbStep, result: KbResult) -> Transition:
        # An article the person already saw in this conversation (and said did not help) is not
        # offered again by a later step; pinned articles are the author's explicit choice.
        hits = [h for h in result.hits if (h.article_id not in state.tried_articles or h.article_id in step.articles)
                and h.article_id not in step.exclude]
        if not hits or result.confidence == "none":
            # The gap report shows what the person wrote; the query may be one a flow built.
            effects: list[Effect] = [Emit("kb_gap", {"query": result.query, "said": state.first_message})]
            target = step.on_no_match or step.on_unsolved or step.next or flow.following(step.id)
            return self._run(replace(state, awaiting=None), flow, target, effects)
        ids = tuple(h.article_id for h in hits)
        buttons = tuple(Button(f"Show me {n}" if len(hits) > 1 else "Show me", V_KB_SHOW + h.article_id)
                        for n, h in enumerate(hits, 1))
        buttons += (Button("This solved it", V_KB_SOLVED, "primary"), Button("Still need help", V_KB_UNSOLVED))
        new = replace(state, awaiting="kb_feedback", tried_articles=state.tried_articles + ids,
                      offered=tuple(b.value for b in buttons))
        context = _context(state, flow, {
            "intro": step.text or "",
            "confidence": result.confidence,
            "hits": [{"id": h.article_id, "title": h.title, "summary": h.summary, "url": h.url} for h in hits],
        })
        return Transition(new, (
            Emit("kb_suggested", {"articles": list(ids), "query": result.query}),
            Say(template=step.template or "kb_results", context=context, buttons=buttons),
        ))

    def _action_result(self, state: ConversationState, flow: Flow, step: ActionStep,
                       answer: ActionAnswer) -> Transition:
        outcome = answer.outcome
        slots = dict(state.slots)
        slots.update({f"{step.action}_{k}": v for k, v in outcome.data.items()
                      if isinstance(v, str | int | float | bool)})
        slots["last_action"] = {"name": step.action, "ok": outcome.ok, "code": outcome.code}
        # A flow can branch on how the action went (`when: {storage_quota_code: nearly_full}`).
        slots[f"{step.action}_code"] = outcome.code
        # Someone else decides (a technician confirming identity, a group owner approving access):
        # the action names what it waits for as `approval_id` (`verification_id` for identity checks).
        approval_id = (outcome.data.get("approval_id") or outcome.data.get("verification_id")
                       if outcome.code == "pending_approval" else None)
        if approval_id:
            # Pending is not done: the flow waits here, remembering which check it waits for.
            slots[INPUT_PREFIX + "approval_id"] = str(approval_id)
        elif outcome.code != "needs_input":
            slots = {k: v for k, v in slots.items() if not k.startswith(INPUT_PREFIX)}
        elif outcome.input_slot:
            # Asked again (a wrong verification code): the last answer is not kept.
            slots.pop(INPUT_PREFIX + outcome.input_slot, None)
        state = replace(state, slots=slots, tried_actions=(*state.tried_actions, f"{step.action}:{outcome.code}"))
        effects: list[Effect] = []
        if outcome.code == "needs_input" and outcome.input_slot:
            buttons = tuple(Button(b.label, V_CHOICE + b.value) for b in outcome.choices)
            new = replace(state, awaiting="action_input", action_input_slot=outcome.input_slot,
                          offered=tuple(b.value for b in buttons))
            return Transition(new, (Say(template="action_prompt",
                                        context={"prompt": outcome.prompt or "Please answer:"}, buttons=buttons),))
        if approval_id:
            return Transition(replace(state, awaiting="approval", offered=()), (
                Say(template="action_message", context={"message": outcome.message, "ok": outcome.ok}),))
        if outcome.message:
            effects.append(Say(template="action_message", context={"message": outcome.message, "ok": outcome.ok}))
        if outcome.code == "dry_run":
            # Nothing was changed, so nothing that follows a real change ("Sign in with the temporary
            # password now") is true: the flow ends here, and not as resolved.
            return self._finish(replace(state, awaiting=None), flow, "abandoned", effects)
        if outcome.ok and not outcome.escalate:
            return self._run(replace(state, awaiting=None), flow, step.on_success or step.next or
                             flow.following(step.id), effects)
        if step.on_failure and not outcome.escalate:
            return self._run(replace(state, awaiting=None), flow, step.on_failure, effects)
        reason = outcome.message or f"The {step.action} action did not succeed ({outcome.code})."
        # The action's message already tells the person it goes to a technician: don't say it twice.
        escalated = self._escalate_now(state, flow, reason, announce=not outcome.message)
        return Transition(escalated.state, (*effects, *escalated.effects))

    def _ticket_opened(self, state: ConversationState, flow: Flow, step: Any, answer: TicketAnswer) -> Transition:
        effects: list[Effect] = [Say(template="ticket_opened", context={
            "ticket_id": answer.ticket_id, "priority": answer.priority,
            "first_response": answer.first_response, "existing": answer.existing,
        }, buttons=answer.buttons)]
        nxt = step.next if isinstance(step, EscalateStep) else None
        if nxt:
            return self._run(replace(state, awaiting=None), flow, nxt, effects)
        return self._finish(state, flow, "escalated", effects)

    # -- running steps --

    def _step(self, flow: Flow, step_id: str) -> Any:
        try:
            return flow.step(step_id)
        except KeyError:
            raise FlowRuntimeError(f"flow {flow.id!r} has no step {step_id!r}") from None

    def _run(self, state: ConversationState, flow: Flow, step_id: str | None,
             effects: list[Effect]) -> Transition:
        """Run steps from `step_id` until one waits for the person or the core, or the flow ends."""
        guard = 0
        while True:
            guard += 1
            if guard > 200:
                raise FlowRuntimeError(f"flow {flow.id!r} ran 200 steps without waiting (a loop?)")
            if step_id is None:
                return self._finish(state, flow, "resolved", effects)
            step = self._step(flow, step_id)
            state = replace(state, step_id=step.id)
            ctx = _context(state, flow)
            if isinstance(step, SayStep):
                effects.append(Say(text=step.text, template=step.template, context=ctx))
                step_id = step.next or flow.following(step.id)
            elif isinstance(step, BranchStep):
                step_id = step.default
                for case in step.cases:
                    if all(_matches(state.slots.get(k), v) for k, v in case.when.items()):
                        step_id = case.next
                        break
            elif isinstance(step, AskStep):
                if step.slot and step.input != "form" and step.slot in state.slots:
                    # Already answered by what the person said: not asked again.
                    effects.append(Emit("skipped", {"step": step.id, "slot": step.slot}))
                    step_id = self._after(flow, step, str(state.slots[step.slot]))
                    continue
                if step.slot in state.guesses:
                    return self._confirm_guess(state, flow, step, effects)
                return self._ask(state, flow, step, effects)
            elif isinstance(step, KbStep):
                if step.text and step.template:
                    effects.append(Say(text=step.text, context=ctx))
                query = step.query or "{{ first_message }}"
                new = replace(state, awaiting="kb_results")
                effects.append(SearchKb(query=query, pinned=step.articles, limit=step.limit, category=flow.category))
                return Transition(new, tuple(effects))
            elif isinstance(step, ActionStep):
                if step.text:
                    effects.append(Say(text=step.text, context=ctx))
                if step.confirm:
                    buttons = (Button(step.confirm_label, V_CONFIRM_YES, "primary"), Button("No", V_CONFIRM_NO))
                    new = replace(state, awaiting="confirm", offered=tuple(b.value for b in buttons))
                    effects.append(Say(text=step.confirm, context=ctx, buttons=buttons))
                    return Transition(new, tuple(effects))
                return self._run_action(state, flow, step, effects)
            elif isinstance(step, EscalateStep):
                if step.text or step.template:
                    effects.append(Say(text=step.text, template=step.template, context=ctx))
                effects.append(self._ticket(state, flow, step))
                return Transition(replace(state, awaiting="ticket"), tuple(effects))
            elif isinstance(step, EndStep):
                if step.text or step.template:
                    effects.append(Say(text=step.text, template=step.template, context=ctx))
                return self._finish(state, flow, step.outcome, effects)
            else:  # pragma: no cover - the schema admits no other kind
                raise FlowRuntimeError(f"unknown step kind at {step.id!r}")

    def _confirm_guess(self, state: ConversationState, flow: Flow, step: AskStep,
                       effects: list[Effect]) -> Transition:
        guess = state.guesses[step.slot]
        buttons = (Button("Yes", V_GUESS_YES, "primary"), Button("No", V_GUESS_NO))
        effects.append(Emit("asked", {"step": step.id, "slot": step.slot, "confirm": True}))
        effects.append(Say(template="guess_confirm", context={"question": guess.get("confirm", "")}, buttons=buttons))
        return Transition(replace(state, step_id=step.id, awaiting="guess", offered=tuple(b.value for b in buttons)),
                          tuple(effects))

    def _ask(self, state: ConversationState, flow: Flow, step: AskStep, effects: list[Effect]) -> Transition:
        ctx = _context(state, flow)
        effects.append(Emit("asked", {"step": step.id, "slot": step.slot, "confirm": False}))
        if step.input == "choice":
            buttons = _choice_buttons(step.choices)
            effects.append(Say(text=step.text, template=step.template, context=ctx, buttons=buttons))
            new = replace(state, awaiting="choice", offered=tuple(b.value for b in buttons))
        elif step.input == "form":
            effects.append(Say(text=step.text, template=step.template, context=ctx, form=_form(step)))
            new = replace(state, awaiting="form", offered=())
        else:
            effects.append(Say(text=step.text, template=step.template, context=ctx))
            new = replace(state, awaiting="answer", offered=())
        return Transition(new, tuple(effects))

    def _run_action(self, state: ConversationState, flow: Flow, step: ActionStep,
                    effects: list[Effect]) -> Transition:
        inputs = {k[len(INPUT_PREFIX):]: str(v) for k, v in state.slots.items() if k.startswith(INPUT_PREFIX)}
        effects.append(RunAction(name=step.action, args=dict(step.args), inputs=inputs))
        return Transition(replace(state, step_id=step.id, awaiting="action_result"), tuple(effects))

    def _prompt_again(self, state: ConversationState, flow: Flow, step: Any) -> Transition:
        ctx = _context(state, flow)
        if isinstance(step, AskStep):
            if step.slot in state.guesses:  # back to "Finance?", not to the question behind it
                return self._confirm_guess(state, flow, step, [])
            return self._ask(state, flow, step, [])
        if isinstance(step, KbStep) and state.awaiting in ("kb_feedback", None):
            return Transition(replace(state, awaiting="kb_feedback"),
                              (Say(template="kb_feedback_prompt", buttons=self._kb_buttons(state.offered)),))
        if isinstance(step, ActionStep) and step.confirm and state.awaiting in ("confirm", None):
            confirm = (Button(step.confirm_label, V_CONFIRM_YES, "primary"), Button("No", V_CONFIRM_NO))
            return Transition(replace(state, awaiting="confirm"),
                              (Say(text=step.confirm, context=ctx, buttons=confirm),))
        if isinstance(step, ActionStep) and state.awaiting == "action_input":
            buttons = tuple(Button(v.removeprefix(V_CHOICE), v) for v in state.offered)
            return Transition(state, (Say(template="action_prompt", context={"prompt": "Please answer:"},
                                          buttons=buttons),))
        return self._run(state, flow, step.id, [])

    def _kb_buttons(self, offered: Sequence[str]) -> tuple[Button, ...]:
        labels = {V_KB_SOLVED: "This solved it", V_KB_UNSOLVED: "Still need help"}
        shows = [v for v in offered if v.startswith(V_KB_SHOW)]
        buttons = [Button(f"Show me {n}" if len(shows) > 1 else "Show me", v) for n, v in enumerate(shows, 1)]
        buttons += [Button(labels[v], v) for v in (V_KB_SOLVED, V_KB_UNSOLVED)]
        return tuple(buttons)

    def _ticket(self, state: ConversationState, flow: Flow, step: EscalateStep | None,
                reason: str = "") -> OpenTicket:
        details = {k: v for k, v in state.slots.items() if not k.startswith("last_")}
        if reason:
            details["escalation_reason"] = reason
        return OpenTicket(
            category=(step.category if step and step.category else flow.category),
            impact=step.impact if step else "low",
            urgency=step.urgency if step else "low",
            summary=(step.summary if step and step.summary else "{{ flow.title }}: {{ first_message }}"),
            flow_id=flow.id,
            details=details,
            tried_articles=state.tried_articles,
            tried_actions=state.tried_actions,
            first_message=state.first_message,
        )

    def _escalate_now(self, state: ConversationState, flow: Flow, reason: str, *,
                      announce: bool = True) -> Transition:
        """Open a ticket with everything collected so far (talk to a person, a failed action)."""
        step = next((s for s in flow.steps if isinstance(s, EscalateStep)), None)
        ticket = self._ticket(state, flow, step, reason)
        new = replace(state, awaiting="ticket", step_id=step.id if step else state.step_id)
        if step is None:
            # No escalate step to continue from: the ticket answer ends the flow as escalated.
            new = replace(new, step_id=state.step_id)
        return Transition(new, (Say(template="escalating"), ticket) if announce else (ticket,))

    def _finish(self, state: ConversationState, flow: Flow | None, outcome: str,
                effects: list[Effect]) -> Transition:
        if flow is not None:
            # The flow ends before anything the person asked next is sorted (Retriage), so events
            # read in order: this flow ended, then the next one started.
            later = [e for e in effects if isinstance(e, Retriage)]
            effects = [e for e in effects if not isinstance(e, Retriage)]
            effects += [Emit("flow_ended", {"flow": flow.id, "outcome": outcome}), *later]
        return Transition(ConversationState(version=state.version, updated_at=state.updated_at), tuple(effects))
