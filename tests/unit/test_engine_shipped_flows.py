"""Every shipped flow runs end to end through the engine, and every text it shows renders (the
renderer is strict: a slot used before it is collected fails here, not in a conversation)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from bot.core.models import Platform
from bot.core.ports import ActionOutcome, KbResult
from bot.engine.engine import Engine
from bot.engine.loader import load_flows
from bot.engine.spec import AskStep
from bot.engine.state import (
    V_CHOICE,
    V_CONFIRM_YES,
    ActionAnswer,
    ConversationState,
    Emit,
    KbAnswer,
    OpenTicket,
    RunAction,
    Say,
    SearchKb,
    TicketAnswer,
    Transition,
    UserTurn,
)
from bot.flows_cli import known_references
from bot.render.renderer import Renderer

pytestmark = pytest.mark.clock  # runs again with the system clock a year ahead (.ci/run)

ROOT = Path(__file__).resolve().parents[2]
NOW = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
FLOWS = load_flows(ROOT / "flows", known_references()).flows
RENDERER = Renderer()


def render_all(state: ConversationState, t: Transition) -> None:
    ctx: dict[str, Any] = dict(state.slots)
    ctx.update({"slots": dict(state.slots), "first_message": state.first_message, "flow": {"id": "x", "title": "x"},
                "person": {"first_name": "Alice", "name": "Alice A", "email": "alice@example.com"}})
    for effect in t.effects:
        if isinstance(effect, Say):
            RENDERER.text(Platform.SLACK, template=effect.template if not effect.text else None,
                          source=effect.text, context={**ctx, **dict(effect.context)})
        if isinstance(effect, SearchKb):
            RENDERER.text(Platform.CONSOLE, source=effect.query, context=ctx)
        if isinstance(effect, RunAction):
            for source in effect.args.values():
                RENDERER.text(Platform.CONSOLE, source=source, context=ctx)
        if isinstance(effect, OpenTicket):
            for source in (effect.summary, effect.impact, effect.urgency):
                value = RENDERER.text(Platform.CONSOLE, source=source, context=ctx)
                if source is not effect.summary:
                    assert value in ("high", "medium", "low"), value


def drive(flow_id: str, choice_index: int) -> str:
    e = Engine(FLOWS)
    t = e.start(ConversationState(), flow_id, "it is broken since this morning", NOW)
    for _ in range(40):
        render_all(t.state, t)
        outcome = [x.data["outcome"] for x in t.effects if isinstance(x, Emit) and x.type == "flow_ended"]
        if outcome:
            return str(outcome[0])
        pending = [x for x in t.effects if isinstance(x, SearchKb | RunAction | OpenTicket)]
        state = t.state
        if pending and isinstance(pending[-1], SearchKb):
            t = e.advance(state, KbAnswer(KbResult("q", (), "none")), NOW)
        elif pending and isinstance(pending[-1], RunAction):
            t = e.advance(state, ActionAnswer(ActionOutcome(ok=True, code="done", data={"enabled": True})), NOW)
        elif pending and isinstance(pending[-1], OpenTicket):
            t = e.advance(state, TicketAnswer("HD-1", "P3", "today"), NOW)
        elif state.awaiting == "confirm":
            t = e.advance(state, UserTurn(value=V_CONFIRM_YES), NOW)
        else:
            step = FLOWS[flow_id].step(state.step_id or "")
            assert isinstance(step, AskStep), (flow_id, state)
            if step.input == "choice":
                choice = step.choices[min(choice_index, len(step.choices) - 1)]
                t = e.advance(state, UserTurn(value=V_CHOICE + choice.value), NOW)
            elif step.input == "form":
                values = {f.name: (f.options[0].value if f.options else "2026-02-01" if f.pattern else "text")
                          for f in step.fields}
                t = e.advance(state, UserTurn(form=values), NOW)
            else:
                t = e.advance(state, UserTurn(text="error 809 since today"), NOW)
    raise AssertionError(f"{flow_id} did not finish")


@pytest.mark.parametrize("flow_id", sorted(FLOWS))
@pytest.mark.parametrize("choice_index", [0, 1, 2, 3, 4, 5])
def test_every_flow_path_finishes_and_renders(flow_id: str, choice_index: int) -> None:
    assert drive(flow_id, choice_index) in ("resolved", "escalated", "abandoned", "deflected")
