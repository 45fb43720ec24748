"""Slots from what was said (bot/engine/listen.py and the engine's use of it): pure, no I/O."""

from __future__ import annotations

from datetime import UTC, date, datetime

from jinja2 import Environment

from bot.engine.engine import Engine
from bot.engine.listen import DeviceFact, Facts, NameMatch, a_date, error_code, match_names
from bot.engine.loader import Known, parse_flow
from bot.engine.state import V_GUESS_NO, V_GUESS_YES, ConversationState, Emit, Say, UserTurn

NOW = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)

FLOW = """\
id: demo
title: Demo
category: vpn
steps:
  - id: device
    kind: ask
    input: choice
    slot: device
    listen: device
    text: Which computer?
    choices:
      - {label: Company Windows laptop, value: windows}
      - {label: Company Mac, value: mac}
      - {label: My own computer, value: personal, synonyms: [my own laptop]}
  - id: symptom
    kind: ask
    input: choice
    slot: symptom
    text: What happens?
    choices:
      - {label: "It won't connect", value: no_connect, synonyms: ["won't connect", "can't connect"]}
      - {label: Drops, value: drops, synonyms: [keeps dropping]}
  - id: error
    kind: ask
    slot: error
    listen: error_code
    text: Error?
  - id: group
    kind: ask
    slot: group
    listen: group
    text: Which group?
  - id: urgency
    kind: ask
    input: choice
    slot: urgency
    listen: urgency
    text: How bad?
    choices:
      - {label: "I can't work", value: high}
      - {label: It can wait, value: low}
  - id: done
    kind: end
    text: "{{ device }} {{ symptom }} {{ error }} {{ group }} {{ urgency }}"
"""

LAPTOP = Facts(devices=(DeviceFact("ALICE-LT01", "Windows", "windows"), DeviceFact("Alice iPhone", "iOS", "mobile")))


def _engine() -> Engine:
    flow, errors = parse_flow(FLOW, "demo.yaml", Known(), Environment(autoescape=False))  # noqa: S701
    assert flow is not None and not errors, errors
    return Engine({"demo": flow})


def _asked(effects: tuple[object, ...]) -> list[str]:
    return [str(e.data["slot"]) for e in effects if isinstance(e, Emit) and e.type == "asked"]


def test_error_codes_and_dates_as_people_say_them() -> None:
    assert error_code("it shows error code E52") == "E52"
    assert error_code("error 809 when connecting") == "809"
    assert error_code("saving fails with 0x80070005") == "0x80070005"
    assert error_code("the printer says E52") == "E52"
    assert error_code("since the 2024 update") is None and error_code("error in 2025") is None
    today = date(2026, 11, 23)
    assert a_date("back on 2026-12-04", today) == "2026-12-04"
    assert a_date("until tomorrow", today) == "2026-11-24"
    assert a_date("away until 4 December", today) == "2026-12-04"
    assert a_date("from Jan 5", today) == "2027-01-05"  # the next 5 January
    assert a_date("no date here", today) is None


def test_names_match_fuzzily_and_only_exact_is_exact() -> None:
    groups = [("marketing-share", "Marketing shared drive (marketing-share)",
               ("Marketing shared drive", "marketing-share", "")),
              ("orphan-share", "Share nobody owns (orphan-share)", ("Share nobody owns", "orphan-share", "")),
              ("engineering", "Engineering", ("Engineering", "engineering", "Platform and product engineers"))]
    found = match_names("group", "I need access to the marketing share", groups)
    assert [(n.value, n.exact) for n in found] == [("marketing-share", False)]
    assert [(n.value, n.exact) for n in match_names("group", "engineering", groups)] == [("engineering", True)]
    assert [n.value for n in match_names("group", "add me to the engneering group", groups)] == ["engineering"]
    assert match_names("group", "I need a new keyboard", groups) == []


def test_opening_fills_what_it_says_and_skips_those_questions() -> None:
    engine = _engine()
    out = engine.start(ConversationState(), "demo", "my mac keeps dropping, error 809, I can't work", NOW)
    assert out.state.slots["device"] == "mac" and out.state.slots["symptom"] == "drops"
    assert out.state.slots["error"] == "809" and out.state.slots["urgency"] == "high"
    assert _asked(out.effects) == ["group"]  # the only question nothing answered


def test_uncertain_guess_is_confirmed_in_one_line_and_no_asks_the_question() -> None:
    engine = _engine()
    out = engine.start(ConversationState(), "demo", "vpn won't connect", NOW, facts=LAPTOP)
    says = [e for e in out.effects if isinstance(e, Say)]
    assert out.state.awaiting == "guess" and says[-1].context["question"] == "Your Windows computer ALICE-LT01?"
    assert out.state.slots["symptom"] == "no_connect"
    yes = engine.advance(out.state, UserTurn(value=V_GUESS_YES), NOW)
    assert yes.state.slots["device"] == "windows" and _asked(yes.effects) == ["error"]
    no = engine.advance(out.state, UserTurn(value=V_GUESS_NO), NOW)
    assert "device" not in no.state.slots and _asked(no.effects) == ["device"]
    # Typing the answer instead of yes/no is the answer.
    typed = engine.advance(out.state, UserTurn(text="my own laptop"), NOW)
    assert typed.state.slots["device"] == "personal"


def test_a_later_message_fills_later_questions_and_a_name_is_confirmed() -> None:
    engine = _engine()
    out = engine.start(ConversationState(), "demo", "vpn problem", NOW)
    assert _asked(out.effects) == ["device"]
    out = engine.advance(out.state, UserTurn(text="Company Windows laptop"), NOW)
    out = engine.advance(out.state, UserTurn(text="it keeps dropping, code 691"), NOW)
    assert out.state.slots["symptom"] == "drops" and out.state.slots["error"] == "691"
    assert _asked(out.effects) == ["group"]
    facts = Facts(names=(NameMatch("group", "marketing-share", "Marketing shared drive (marketing-share)", False),))
    out = engine.advance(out.state, UserTurn(text="marketing share", facts=facts), NOW)
    assert out.state.awaiting == "guess"
    out = engine.advance(out.state, UserTurn(text="yes"), NOW)
    assert out.state.slots["group"] == "marketing-share" and _asked(out.effects) == ["urgency"]


def test_negated_urgency_is_not_urgency() -> None:
    engine = _engine()
    out = engine.start(ConversationState(), "demo", "vpn keeps dropping, not urgent, it can wait", NOW)
    assert "urgency" not in out.state.slots or out.state.slots["urgency"] == "low"


def test_cancel_at_a_did_you_mean_prompt_cancels_the_prompt() -> None:
    from bot.engine.state import TriageGuess

    flow, _ = parse_flow(FLOW, "demo.yaml", Known(), Environment(autoescape=False))  # noqa: S701
    other, _ = parse_flow(FLOW.replace("id: demo", "id: other"), "other.yaml", Known(),
                          Environment(autoescape=False))  # noqa: S701
    assert flow is not None and other is not None
    engine = Engine({"demo": flow, "other": other})
    prompt = engine.route(ConversationState(), "cant log in", TriageGuess("demo", 0.4, (("other", 0.35),)), NOW,
                          start_threshold=0.55, min_confidence=0.3, margin=0.08)
    assert prompt.state.awaiting == "did_you_mean"
    out = engine.advance(prompt.state, UserTurn(text="cancel"), NOW)
    assert out.state.awaiting is None and not out.state.active
    assert [e.type for e in out.effects if isinstance(e, Emit)] == ["prompt_cancelled"]
    assert [e.template for e in out.effects if isinstance(e, Say)] == ["cancelled"]
