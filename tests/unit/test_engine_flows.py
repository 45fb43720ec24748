"""The pure engine driven through real step kinds: no mocks, no I/O."""

from __future__ import annotations

import textwrap
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from jinja2 import Environment

from bot.core.ports import ActionOutcome, KbHit, KbResult
from bot.engine.engine import Engine
from bot.engine.loader import Known, parse_flow
from bot.engine.spec import Flow
from bot.engine.state import (
    V_CHOICE,
    V_CONFIRM_YES,
    V_KB_SOLVED,
    V_KB_UNSOLVED,
    V_RESUME,
    ActionAnswer,
    ConversationState,
    Emit,
    OpenTicket,
    RunAction,
    Say,
    SearchKb,
    TicketAnswer,
    Transition,
    TriageGuess,
    UserTurn,
)

pytestmark = pytest.mark.clock  # runs again with the system clock a year ahead (.ci/run)

NOW = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)

FLOW = """\
id: demo
title: Demo
category: vpn
steps:
  - id: device
    kind: ask
    input: choice
    slot: device
    text: Which device?
    choices:
      - {label: Laptop, value: laptop}
      - {label: Phone, value: phone, next: phone_form}
  - id: code
    kind: ask
    slot: code
    pattern: '\\d{3}'
    retry_text: Three digits please.
    text: Error code?
  - id: route
    kind: branch
    cases:
      - when: {code: "809"}
        next: fix
    default: articles
  - id: fix
    kind: action
    action: reset_password
    confirm: Reset it?
    on_success: done
  - id: articles
    kind: kb
    query: "vpn {{ code }}"
  - id: escalate
    kind: escalate
    urgency: high
  - id: phone_form
    kind: ask
    input: form
    text: Details
    fields:
      - {name: model, label: Model}
      - {name: number, label: Number, pattern: '\\d+'}
    next: escalate
  - id: done
    kind: end
    outcome: resolved
"""


def flow() -> Flow:
    parsed, errors = parse_flow(textwrap.dedent(FLOW), "demo.yaml", Known(), Environment())  # noqa: S701 - parsed only
    assert parsed is not None and errors == [], errors
    return parsed


def engine() -> Engine:
    return Engine({"demo": flow()}, idle_timeout=timedelta(minutes=30), resume_window=timedelta(hours=24))


def kinds(t: Transition, kind: type) -> list[Any]:
    return [e for e in t.effects if isinstance(e, kind)]


def ended(t: Transition) -> str | None:
    found = [e.data["outcome"] for e in t.effects if isinstance(e, Emit) and e.type == "flow_ended"]
    return found[0] if found else None


def start() -> tuple[Engine, Transition]:
    e = engine()
    return e, e.start(ConversationState(), "demo", "vpn broken", NOW)


def answer(e: Engine, t: Transition, text: str | None = None, value: str | None = None,
           form: dict[str, str] | None = None) -> Transition:
    return e.advance(t.state, UserTurn(text=text, value=value, form=form), NOW)


def test_say_ask_choice_text_pattern_branch_and_action_confirm_yes() -> None:
    e, t = start()
    assert t.state.awaiting == "choice" and kinds(t, Say)[0].buttons[0].label == "Laptop"
    t = answer(e, t, value=V_CHOICE + "laptop")
    assert t.state.slots["device"] == "laptop" and t.state.awaiting == "answer"
    t = answer(e, t, text="abc")
    assert kinds(t, Say)[0].text == "Three digits please." and t.state.step_id == "code"
    t = answer(e, t, text="809")
    assert t.state.awaiting == "confirm"
    t = answer(e, t, value=V_CONFIRM_YES)
    assert kinds(t, RunAction)[0].name == "reset_password"
    t = e.advance(t.state, ActionAnswer(ActionOutcome(ok=True, code="done", message="Done.")), NOW)
    assert ended(t) == "resolved"


def test_action_declined_and_failure_escalates() -> None:
    e, t = start()
    t = answer(e, answer(e, t, text="1"), text="809")
    declined = answer(e, t, text="no")
    assert ended(declined) == "abandoned"
    t = answer(e, t, value=V_CONFIRM_YES)
    t = e.advance(t.state, ActionAnswer(ActionOutcome(ok=False, code="error", message="Graph down")), NOW)
    ticket = kinds(t, OpenTicket)[0]
    assert ticket.urgency == "high" and ticket.details["code"] == "809"
    assert "Graph down" in ticket.details["escalation_reason"]
    t = e.advance(t.state, TicketAnswer("HD-1", "P2", "within 4 hours"), NOW)
    assert ended(t) == "escalated"


def test_action_needs_input() -> None:
    e, t = start()
    t = answer(e, answer(e, answer(e, t, text="laptop"), text="809"), value=V_CONFIRM_YES)
    from bot.core.models import Button

    t = e.advance(t.state, ActionAnswer(ActionOutcome(ok=False, code="needs_input", input_slot="device",
                                                      prompt="Which?", choices=(Button("PC-1", "pc1"),))), NOW)
    assert t.state.awaiting == "action_input"
    t = answer(e, t, value=V_CHOICE + "pc1")
    assert kinds(t, RunAction)[0].inputs == {"device": "pc1"}


def test_kb_solved_unsolved_and_no_match() -> None:
    e, t = start()
    t = answer(e, answer(e, t, text="laptop"), text="123")
    search = kinds(t, SearchKb)[0]
    assert search.query == "vpn {{ code }}" and search.category == "vpn"
    hits = KbResult("vpn 123", (KbHit("kb-1", "Fix VPN", "", 0.9),), "high")
    shown = e.advance(t.state, _kb(hits), NOW)
    assert shown.state.awaiting == "kb_feedback"
    assert ended(answer(e, shown, value=V_KB_SOLVED)) == "deflected"
    assert kinds(answer(e, shown, value=V_KB_UNSOLVED), OpenTicket)
    nothing = e.advance(t.state, _kb(KbResult("vpn 123", (), "none")), NOW)
    assert kinds(nothing, OpenTicket)


def _kb(result: KbResult) -> Any:
    from bot.engine.state import KbAnswer

    return KbAnswer(result)


def test_form_validation() -> None:
    e, t = start()
    t = answer(e, t, value=V_CHOICE + "phone")
    assert kinds(t, Say)[0].form is not None
    bad = answer(e, t, form={"model": "", "number": "x"})
    assert bad.state.awaiting == "form"
    good = answer(e, t, form={"model": "iPhone", "number": "123"})
    assert kinds(good, OpenTicket)[0].details["model"] == "iPhone"


def test_cancel_start_over_and_talk_to_a_person_anywhere() -> None:
    e, t = start()
    t = answer(e, t, text="laptop")
    assert ended(answer(e, t, text="Cancel")) == "abandoned"
    restarted = answer(e, t, text="start over")
    assert restarted.state.step_id == "device" and restarted.state.slots == {}
    human = answer(e, t, text="talk to a person")
    assert kinds(human, OpenTicket)[0].details["device"] == "laptop"


def test_idle_resume_and_expiry() -> None:
    e, t = start()
    t = answer(e, t, text="laptop")
    later = NOW + timedelta(hours=2)
    assert e.is_idle(t.state, later) and e.resume_check(t.state, later) is None
    prompt = e.idle_prompt(t.state, "hello again", later)
    back = e.advance(prompt.state, UserTurn(value=V_RESUME), later)
    assert back.state.step_id == "code" and back.state.awaiting == "answer"
    expired = e.resume_check(t.state, NOW + timedelta(days=2))
    assert expired is not None and ended(expired) == "abandoned"


def test_route_thresholds() -> None:
    e = engine()
    sure = e.route(ConversationState(), "vpn", TriageGuess("demo", 0.9), NOW,
                   start_threshold=0.55, min_confidence=0.3, margin=0.08)
    assert sure.state.flow_id == "demo"
    unsure = e.route(ConversationState(), "vpn", TriageGuess("demo", 0.4), NOW,
                     start_threshold=0.55, min_confidence=0.3, margin=0.08)
    assert unsure.state.awaiting == "did_you_mean"
    assert [b.label for b in kinds(unsure, Say)[0].buttons][-1] == "Something else"


def test_a_misspelt_choice_is_taken_and_an_ambiguous_one_is_not() -> None:
    e, t = start()
    assert answer(e, t, text="laptp").state.slots["device"] == "laptop"
    assert answer(e, t, text="phne").state.slots["device"] == "phone"
    again = answer(e, t, text="pc")
    assert again.state.step_id == "device" and kinds(again, Say)[0].text.startswith("Sorry")


def test_a_sentence_that_is_no_choice_offers_a_new_request() -> None:
    from bot.engine.state import V_RESUME_NEW, Retriage

    e, t = start()
    offer = answer(e, t, text="actually my outlook won't open")
    assert offer.state.awaiting == "resume" and offer.state.pending_text == "actually my outlook won't open"
    assert kinds(offer, Say)[0].template == "switch_offer"
    assert [b.label for b in kinds(offer, Say)[0].buttons] == ["Back to the question", "Start something new"]
    back = e.advance(offer.state, UserTurn(value=V_RESUME), NOW)
    assert back.state.step_id == "device" and back.state.awaiting == "choice"
    assert answer(e, back, text="laptop").state.slots["device"] == "laptop"
    new = e.advance(offer.state, UserTurn(value=V_RESUME_NEW), NOW)
    assert ended(new) == "abandoned" and kinds(new, Retriage)[0].text == "actually my outlook won't open"
    typed = answer(e, offer, text="2")
    assert kinds(typed, Retriage)[0].text == "actually my outlook won't open"
