"""Command-line tools for flow authors and admins: `helpdesk flows validate`, `helpdesk triage`,
`helpdesk eval triage`. Typer apps, mounted by bot/cli.py; they need no database.

Outside bot/engine on purpose: checking flows against the knowledge base, the templates and the
settings means importing those rooms, which the engine itself never does (docs/architecture.md)."""

from __future__ import annotations

import json
import sys
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer

from bot.engine.engine import Engine
from bot.engine.loader import FlowSet, Known, load_flows
from bot.engine.spec import Flow
from bot.engine.state import FALLBACK_FLOW, V_START, ConversationState, Emit, TriageGuess
from bot.engine.triage import Triage
from bot.graph.actions.registry import ACTION_NAMES
from bot.settings import TriageSettings

TRIAGE_LABELS: tuple[str, ...] = (
    "password_reset", "account_locked", "mfa", "vpn", "network", "printer", "email", "software_request",
    "access_request", "hardware", "computer_problem", "meetings", "phone", "onboarding", "security",
    "ticket_status", "outage_check", "human", "smalltalk", "out_of_scope",
)
# Labels that are not an IT flow, for "not-IT messages sent into an IT flow".
NOT_IT_LABELS = frozenset({"human", "smalltalk", "out_of_scope", "fallback"})
# The actions a flow's `action:` step may name: the one registry (importing it contacts nothing).
ACTIONS: frozenset[str] = ACTION_NAMES

flows_app = typer.Typer(help="Conversation flows.", no_args_is_help=True)
eval_app = typer.Typer(help="Measure the bot against labelled data.", no_args_is_help=True)

DirOption = Annotated[Path | None, typer.Option("--dir", help="Flows folder (default: flows.dir from settings)",
                                                file_okay=False)]


def _flows_dir(directory: Path | None) -> Path:
    if directory is not None:
        return directory
    try:
        from bot.settings import load_settings

        return load_settings().flows_dir
    except Exception:
        return Path("flows")


def known_references() -> Known:
    """What flows may refer to: templates, actions, the knowledge base's article ids and the ticket
    categories from the settings (falling back to the shipped defaults when settings don't load)."""
    from bot.kb.loader import load_dir
    from bot.render.renderer import Renderer
    from bot.settings import DEFAULT_CATEGORIES

    categories: frozenset[str] = frozenset(DEFAULT_CATEGORIES)
    articles: frozenset[str] | None = None
    try:
        from bot.settings import load_settings

        settings = load_settings()
        categories = frozenset(settings.tickets.categories)
        kb_dir = settings.kb_dir
    except Exception:
        kb_dir = Path("kb_articles")
    if kb_dir.is_dir():
        articles = frozenset(a.id for a in load_dir(kb_dir).articles)
    return Known(templates=Renderer().template_names(), actions=ACTIONS, articles=articles,
                 categories=categories)


def _load(directory: Path | None, *, strict: bool = False) -> FlowSet:
    folder = _flows_dir(directory)
    if not folder.is_dir():
        typer.echo(f"helpdesk: no flows folder at {folder}", err=True)
        raise typer.Exit(2)
    flows = load_flows(folder, known_references())
    if strict and flows.errors:
        for error in flows.errors:
            typer.echo(str(error), err=True)
        raise typer.Exit(1)
    return flows


def build_triage(directory: Path | None = None) -> Triage:
    """Triage over the flows that load; broken files are reported on stderr and skipped."""
    flows = _load(directory)
    for error in flows.errors:
        typer.echo(f"warning: {error} (flow skipped)", err=True)
    return Triage(flows.flows)


# ----- helpdesk flows validate ------------------------------------------------------------------


@flows_app.command("validate")
def validate(directory: DirOption = None) -> None:
    """Check every flow file; print problems as `file:line: message`; exit 1 if any."""
    flows = _load(directory)
    for error in flows.errors:
        typer.echo(str(error))
    missing = [label for label in TRIAGE_LABELS if label not in flows.flows]
    if flows.errors:
        typer.echo(f"{len(flows.errors)} problem(s); {len(flows.flows)} flow(s) valid", err=True)
        raise typer.Exit(1)
    examples = sum(len(f.triggers.examples) for f in flows.flows.values())
    note = f"; no flow yet for: {', '.join(missing)}" if missing else ""
    typer.echo(f"{len(flows.flows)} flows valid ({sum(len(f.steps) for f in flows.flows.values())} steps, "
               f"{examples} trigger examples){note}")


# ----- helpdesk triage --------------------------------------------------------------------------


def guess_record(triage: Triage, text: str) -> dict[str, Any]:
    guess = triage.classify(text)
    return {
        "text": text,
        "intent": guess.intent,
        "confidence": guess.confidence,
        "alternatives": [{"intent": i, "confidence": c} for i, c in guess.alternatives],
    }


def triage(
    text: Annotated[str | None, typer.Argument(help="The message to sort")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object")] = False,
    jsonl: Annotated[bool, typer.Option("--jsonl", help='Read {"text": ...} lines from stdin')] = False,
    directory: DirOption = None,
) -> None:
    """Which flow a message starts, with confidence and runners-up."""
    if text is None and not jsonl:
        typer.echo("helpdesk triage: give TEXT, or --jsonl with lines on stdin", err=True)
        raise typer.Exit(2)
    model = build_triage(directory)
    if jsonl:
        for number, line in enumerate(sys.stdin, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                said = str(row["text"]) if isinstance(row, dict) else str(row)
            except (ValueError, KeyError) as exc:
                typer.echo(f"line {number}: expected {{\"text\": ...}}: {exc}", err=True)
                raise typer.Exit(2) from None
            typer.echo(json.dumps(guess_record(model, said), ensure_ascii=False))
        return
    record = guess_record(model, text or "")
    if as_json:
        typer.echo(json.dumps(record, ensure_ascii=False))
        return
    typer.echo(f"{record['intent']}  {record['confidence']:.2f}")
    for alternative in record["alternatives"]:
        typer.echo(f"  {alternative['intent']}  {alternative['confidence']:.2f}")


# ----- helpdesk eval triage ---------------------------------------------------------------------


@dataclass(slots=True)
class TriageReport:
    total: int = 0
    correct: int = 0
    per_label: dict[str, dict[str, float]] = field(default_factory=dict)
    confusions: list[tuple[str, str, int]] = field(default_factory=list)
    misrouted: list[dict[str, Any]] = field(default_factory=list)
    not_it_total: int = 0
    not_it_into_it: int = 0
    # What the person would actually get (flows given): flow_started (right / wrong flow), did_you_mean
    # (the right flow among the options or not), not_it (the out-of-scope or small-talk answer),
    # fallback (knowledge base, then a person). Keys "expected kind -> outcome".
    outcomes: Counter[str] = field(default_factory=Counter)

    @property
    def accuracy(self) -> float:
        return self.correct / self.total if self.total else 0.0

    @property
    def not_it_into_it_rate(self) -> float:
        return self.not_it_into_it / self.not_it_total if self.not_it_total else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "total": self.total, "correct": self.correct, "accuracy": round(self.accuracy, 4),
            "not_it": {"total": self.not_it_total, "sent_into_it_flow": self.not_it_into_it,
                       "rate": round(self.not_it_into_it_rate, 4)},
            "labels": self.per_label,
            "confusions": [{"expected": e, "predicted": p, "count": n} for e, p, n in self.confusions],
            "misrouted": self.misrouted,
            "outcomes": dict(sorted(self.outcomes.items())),
        }


def person_gets(engine: Engine, triage: Triage, text: str, guess: TriageGuess, expected: str,
                thresholds: TriageSettings) -> str:
    """What the bot would do with `text` as an opening message, as the pipeline decides it."""
    plausible = triage.plausible(text, guess, min_confidence=thresholds.min_confidence,
                                 floor=thresholds.suggest_floor)
    transition = engine.route(ConversationState(), text, guess, datetime(2026, 1, 5, 9, tzinfo=UTC),
                              start_threshold=thresholds.start_threshold, min_confidence=thresholds.min_confidence,
                              margin=thresholds.ambiguity_margin, plausible=plausible)
    started = next((str(e.data.get("flow")) for e in transition.effects
                    if isinstance(e, Emit) and e.type == "flow_started"), None)
    if transition.state.awaiting == "did_you_mean":
        offered = [v.removeprefix(V_START) for v in transition.state.offered]
        return "did_you_mean (right one offered)" if expected in offered else "did_you_mean (not offered)"
    if started in ("out_of_scope", "smalltalk"):
        return "not_it reply" if expected in NOT_IT_LABELS else "not_it reply (wrong)"
    if started is None or started == FALLBACK_FLOW:
        return "fallback"
    return "flow_started (right)" if started == expected else "flow_started (wrong)"


def evaluate(triage: Triage, rows: Iterable[Mapping[str, Any]],
             flows: Mapping[str, Flow] | None = None, thresholds: TriageSettings | None = None) -> TriageReport:
    """Accuracy, per-label precision and recall, confusion pairs and the misrouted messages; with the
    flows, also what the person would get (`outcomes`)."""
    thresholds = thresholds or TriageSettings()
    report = TriageReport()
    expected_count: Counter[str] = Counter()
    predicted_count: Counter[str] = Counter()
    hits: Counter[str] = Counter()
    pairs: Counter[tuple[str, str]] = Counter()
    it_labels = {k for k, f in flows.items() if f.it} - NOT_IT_LABELS if flows else None
    engine = Engine(flows) if flows else None
    for row in rows:
        text, expected = str(row["text"]), str(row["intent"])
        guess = triage.classify(text)
        if engine is not None:
            kind = "it" if expected not in NOT_IT_LABELS else "not_it"
            report.outcomes[f"{kind} -> {person_gets(engine, triage, text, guess, expected, thresholds)}"] += 1
        report.total += 1
        expected_count[expected] += 1
        predicted_count[guess.intent] += 1
        if expected in NOT_IT_LABELS:
            report.not_it_total += 1
            into_it = guess.intent in it_labels if it_labels is not None else guess.intent not in NOT_IT_LABELS
            report.not_it_into_it += int(into_it)
        if guess.intent == expected:
            report.correct += 1
            hits[expected] += 1
        else:
            pairs[(expected, guess.intent)] += 1
            report.misrouted.append({"text": text, "expected": expected, "predicted": guess.intent,
                                     "confidence": guess.confidence})
    for label in sorted(set(expected_count) | set(predicted_count)):
        precision = hits[label] / predicted_count[label] if predicted_count[label] else 0.0
        recall = hits[label] / expected_count[label] if expected_count[label] else 0.0
        report.per_label[label] = {"precision": round(precision, 4), "recall": round(recall, 4),
                                   "support": expected_count[label]}
    report.confusions = [(e, p, n) for (e, p), n in pairs.most_common()]
    return report


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError as exc:
            raise ValueError(f"{path}:{number}: not JSON: {exc}") from None
        if not isinstance(row, dict) or "text" not in row or "intent" not in row:
            raise ValueError(f'{path}:{number}: expected {{"text": ..., "intent": ...}}')
        rows.append(row)
    return rows


@eval_app.command("triage")
def eval_triage(
    file: Annotated[Path, typer.Argument(help='JSONL with {"text", "intent"} lines', exists=True, dir_okay=False)],
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable report")] = False,
    directory: DirOption = None,
    show: Annotated[int, typer.Option("--show", help="Misrouted messages to list")] = 50,
) -> None:
    """Accuracy, per-label precision/recall, top confusions and the misrouted messages."""
    try:
        rows = read_jsonl(file)
    except ValueError as exc:
        typer.echo(f"helpdesk: {exc}", err=True)
        raise typer.Exit(2) from None
    flows = _load(directory)
    try:
        from bot.settings import load_settings

        thresholds = load_settings().triage
    except Exception:  # the thresholds' defaults; `config check` reports a broken file
        thresholds = TriageSettings()
    report = evaluate(Triage(flows.flows), rows, flows.flows, thresholds)
    if as_json:
        typer.echo(json.dumps(report.as_dict(), ensure_ascii=False, indent=2))
        return
    typer.echo(f"accuracy {report.accuracy:.1%} ({report.correct}/{report.total})")
    if report.not_it_total:
        typer.echo(f"not-IT messages sent into an IT flow: {report.not_it_into_it_rate:.1%} "
                   f"({report.not_it_into_it}/{report.not_it_total})")
    typer.echo("")
    typer.echo(f"{'label':<20} {'precision':>9} {'recall':>7} {'support':>8}")
    for label, values in report.per_label.items():
        typer.echo(f"{label:<20} {values['precision']:>9.2f} {values['recall']:>7.2f} {int(values['support']):>8}")
    if report.outcomes:
        typer.echo("\nwhat the person would get (expected kind -> outcome: count)")
        for outcome, count in sorted(report.outcomes.items()):
            typer.echo(f"  {outcome}: {count}")
    if report.confusions:
        typer.echo("\ntop confusions (expected -> predicted: count)")
        for expected, predicted, count in report.confusions[:15]:
            typer.echo(f"  {expected} -> {predicted}: {count}")
    if report.misrouted:
        typer.echo(f"\nmisrouted messages ({len(report.misrouted)}; showing {min(show, len(report.misrouted))})")
        for miss in report.misrouted[:show]:
            typer.echo(f"  [{miss['expected']} -> {miss['predicted']} {miss['confidence']:.2f}] {miss['text']}")
