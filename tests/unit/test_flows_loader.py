"""The loader: every kind of mistake in a flow file is reported with file, line and what was expected,
and a broken file never takes the other flows down."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from bot.engine.loader import Known, load_flows
from bot.flows_cli import ACTIONS, TRIAGE_LABELS, known_references

ROOT = Path(__file__).resolve().parents[2]
KNOWN = Known(templates=frozenset({"help", "smalltalk"}), actions=frozenset({"reset_password"}),
              articles=frozenset({"kb-vpn-1"}), categories=frozenset({"vpn", "human"}))

GOOD = """\
id: {id}
title: Demo
category: vpn
steps:
  - id: ask_device
    kind: ask
    slot: device
    text: Which device?
  - id: done
    kind: end
"""


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / f"{name}.yaml"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def errors_for(tmp_path: Path, text: str, name: str = "demo") -> list[str]:
    write(tmp_path, name, text)
    return [str(e) for e in load_flows(tmp_path, KNOWN).errors]


def test_valid_flow_loads(tmp_path: Path) -> None:
    write(tmp_path, "demo", GOOD.format(id="demo"))
    flows = load_flows(tmp_path, KNOWN)
    assert flows.errors == []
    assert list(flows.flows) == ["demo"]


def test_unknown_step_kind_names_file_line_and_kinds(tmp_path: Path) -> None:
    errors = errors_for(tmp_path, GOOD.format(id="demo").replace("kind: end", "kind: finish"))
    assert len(errors) == 1
    assert errors[0].startswith(f"{tmp_path / 'demo.yaml'}:9:") or ":1" in errors[0]
    assert "unknown step kind 'finish'" in errors[0] and "say, ask, branch" in errors[0]


def test_bad_next_target(tmp_path: Path) -> None:
    text = GOOD.format(id="demo").replace("    text: Which device?\n", "    text: Which device?\n    next: nowhere\n")
    errors = errors_for(tmp_path, text)
    assert any(":5:" in e and "next 'nowhere' is not a step" in e and "expected one of ask_device, done" in e
               for e in errors), errors


def test_unknown_template(tmp_path: Path) -> None:
    text = GOOD.format(id="demo").replace("    text: Which device?\n", "    template: nope\n")
    errors = errors_for(tmp_path, text)
    assert any(":5:" in e and "unknown template 'nope'" in e and "expected one of help, smalltalk" in e
               for e in errors), errors


def test_unknown_action(tmp_path: Path) -> None:
    text = GOOD.format(id="demo").replace("  - id: done\n", "  - id: act\n    kind: action\n    action: format_disk\n"
                                          "  - id: done\n")
    errors = errors_for(tmp_path, text)
    assert any(":9:" in e and "unknown action 'format_disk'" in e and "reset_password" in e for e in errors), errors


def test_unknown_article(tmp_path: Path) -> None:
    text = GOOD.format(id="demo").replace("  - id: done\n", "  - id: kb\n    kind: kb\n    articles: [kb-nope]\n"
                                          "  - id: done\n")
    errors = errors_for(tmp_path, text)
    assert any(":9:" in e and "unknown article 'kb-nope'" in e for e in errors), errors


def test_unreachable_step(tmp_path: Path) -> None:
    text = GOOD.format(id="demo") + "  - id: orphan\n    kind: say\n    text: never\n"
    text = text.replace("  - id: done\n    kind: end\n", "  - id: done\n    kind: end\n")
    text = text.replace("    text: Which device?\n", "    text: Which device?\n    next: done\n")
    write(tmp_path, "demo", text.replace("  - id: orphan", "  - id: orphan"))
    errors = [str(e) for e in load_flows(tmp_path, KNOWN).errors]
    assert any(":12:" in e and "'orphan' is unreachable" in e for e in errors), errors


def test_cycle_without_exit(tmp_path: Path) -> None:
    text = """\
    id: demo
    title: Loop
    category: vpn
    steps:
      - id: first
        kind: ask
        slot: a
        text: A?
        next: second
      - id: second
        kind: ask
        slot: b
        text: B?
        next: first
      - id: done
        kind: end
    """
    errors = errors_for(tmp_path, text)
    assert any("in a loop with no way to an end" in e and ":5:" in e for e in errors), errors


def test_malformed_yaml(tmp_path: Path) -> None:
    errors = errors_for(tmp_path, "id: demo\nsteps: [\n  - {id: x\n")
    assert len(errors) == 1 and "not valid YAML" in errors[0]
    assert errors[0].split(":")[1].isdigit()


def test_duplicate_flow_ids_and_name_mismatch(tmp_path: Path) -> None:
    write(tmp_path, "demo", GOOD.format(id="demo"))
    write(tmp_path, "other", GOOD.format(id="demo"))
    errors = [str(e) for e in load_flows(tmp_path, KNOWN).errors]
    assert any("other.yaml:1:" in e and "must match the file name" in e for e in errors), errors


def test_duplicate_step_ids(tmp_path: Path) -> None:
    text = GOOD.format(id="demo").replace("  - id: done\n", "  - id: ask_device\n    kind: say\n    text: hi\n"
                                          "  - id: done\n")
    errors = errors_for(tmp_path, text)
    assert any("used twice" in e for e in errors), errors


def test_unknown_key_and_category(tmp_path: Path) -> None:
    text = GOOD.format(id="demo").replace("category: vpn", "category: plumbing")
    errors = errors_for(tmp_path, text)
    assert any(":1:" in e and "category 'plumbing' is not a ticket category" in e for e in errors), errors
    text = GOOD.format(id="demo").replace("    slot: device\n", "    slot: device\n    colour: red\n")
    errors = errors_for(tmp_path, text)
    assert any(":8:" in e and "unknown key 'colour'" in e for e in errors), errors


def test_broken_file_does_not_take_others_down(tmp_path: Path) -> None:
    write(tmp_path, "demo", GOOD.format(id="demo"))
    write(tmp_path, "broken", "id: broken\nsteps: [")
    flows = load_flows(tmp_path, KNOWN)
    assert list(flows.flows) == ["demo"]
    assert len(flows.errors) == 1 and "broken.yaml" in flows.errors[0].file


# ----- the shipped flows ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def shipped() -> dict[str, object]:
    flows = load_flows(ROOT / "flows", known_references())
    assert [str(e) for e in flows.errors] == []
    return dict(flows.flows)


def test_every_triage_label_is_a_flow(shipped: dict[str, object]) -> None:
    assert set(TRIAGE_LABELS) | {"fallback"} == set(shipped)


def test_it_flows_have_rich_triggers() -> None:
    flows = load_flows(ROOT / "flows", known_references()).flows
    for label in TRIAGE_LABELS:
        flow = flows[label]
        assert flow.category == label
        minimum = 25 if label in ("human", "ticket_status", "outage_check", "onboarding") else 40
        assert len(flow.triggers.examples) >= minimum, label
        assert flow.triggers.keywords, label
    assert flows["fallback"].category == "human" and not flows["fallback"].triggers.examples


def test_sensitive_actions_always_confirm() -> None:
    from bot.engine.spec import ActionStep

    for flow in load_flows(ROOT / "flows", known_references()).flows.values():
        for step in flow.steps:
            if isinstance(step, ActionStep):
                assert step.action in ACTIONS
                if step.action in ("reset_password", "mfa_reset", "revoke_sessions"):
                    assert step.confirm, f"{flow.id}.{step.id}"


def test_no_kb_step_pins_article_ids() -> None:
    from bot.engine.spec import KbStep

    for flow in load_flows(ROOT / "flows", known_references()).flows.values():
        assert all(not s.articles for s in flow.steps if isinstance(s, KbStep)), flow.id


ALL_AT_ONCE = """\
id: demo
title: Demo
category: vpn
steps:
  - id: ask_device
    kind: ask
    slot: device
    text: Which device?
    colour: blue
  - id: ask_code
    kind: ask
    input: checkbox
    slot: code
    text: Code?
  - id: tell
    kind: say
    text: "You said {{ device }} and {{ eror }}; {{ maybe | default('') }}"
    next: nowhere
  - id: articles
    kind: kb
    articles: [no-such-article]
  - id: done
    kind: escalate
    summary: "{{ device }} {{ symptom }}"
"""


def test_every_problem_at_once_in_plain_words_with_lines(tmp_path: Path) -> None:
    """Schema problems (an unknown key, a bad input kind) and reference problems (a missing target,
    an unknown article, undefined slots) all come in one run, each at its own line."""
    errors = errors_for(tmp_path, ALL_AT_ONCE)
    text = "\n".join(errors)
    assert ":9: step 'ask_device': unknown key 'colour'" in text, text
    assert ":12: step 'ask_code': `input` is 'checkbox'; expected one of 'text', 'choice' or 'form'" in text, text
    assert ":15: step 'tell': text uses {{ eror }}" in text, text
    assert ":15: step 'tell': next 'nowhere' is not a step of this flow" in text, text
    assert ":19: step 'articles': unknown article 'no-such-article'" in text, text
    assert ":22: step 'done': summary uses {{ symptom }}" in text, text
    assert "maybe" not in text and "{{ device }}" not in text  # guarded, and a slot the flow asks for
    for pydantic_words in ("Field required", "Input should", "Value error", "validation error"):
        assert pydantic_words not in text


def test_validate_command_checks_pinned_articles_and_setting_categories(tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from bot.flows_cli import flows_app

    write(tmp_path, "demo", GOOD.format(id="demo").replace(
        "  - id: done\n", "  - id: articles\n    kind: kb\n    articles: [not-an-article]\n  - id: done\n"))
    monkeypatch.chdir(ROOT)
    result = CliRunner().invoke(flows_app, ["--dir", str(tmp_path)])
    assert result.exit_code == 1 and "unknown article 'not-an-article'" in result.output, result.output
    monkeypatch.setenv("HELPDESK_CONFIG", str(write(tmp_path.parent, "cfg", "tickets:\n  categories: [plumbing]\n")))
    known = known_references()
    assert known.categories == frozenset({"plumbing"})
    assert known.articles is not None and "vpn-wont-connect" in known.articles
