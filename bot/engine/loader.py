"""Load and check flow files. Every problem is reported with file, line and what was expected.

Checks beyond the schema: duplicate step ids, `next` targets, named templates, action names,
pinned article ids, steps no path reaches, and loops that can never reach an end.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from jinja2 import Environment, TemplateSyntaxError
from pydantic import ValidationError

from bot.engine.spec import (
    ActionStep,
    AskStep,
    BranchStep,
    EndStep,
    EscalateStep,
    Flow,
    KbStep,
)


@dataclass(frozen=True, slots=True)
class FlowError:
    file: str
    line: int
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.message}"


@dataclass(slots=True)
class FlowSet:
    flows: dict[str, Flow] = field(default_factory=dict)
    errors: list[FlowError] = field(default_factory=list)

    def get(self, flow_id: str) -> Flow | None:
        return self.flows.get(flow_id)


@dataclass(frozen=True, slots=True)
class Known:
    """What flows may refer to. `None` means "don't check" (e.g. the KB is not loaded)."""

    templates: frozenset[str] | None = None
    actions: frozenset[str] | None = None
    articles: frozenset[str] | None = None
    categories: frozenset[str] | None = None


# ----- line numbers -----------------------------------------------------------------------------


def _node_at(node: yaml.Node | None, loc: Iterable[Any]) -> yaml.Node | None:
    """Follow a pydantic error location through the YAML node tree."""
    for part in loc:
        if node is None:
            return None
        if isinstance(node, yaml.MappingNode):
            nxt = None
            for key_node, value_node in node.value:
                if key_node.value == str(part):
                    nxt = value_node
                    break
            if nxt is None:
                # Discriminated unions add the kind as a path element: skip it.
                continue
            node = nxt
        elif isinstance(node, yaml.SequenceNode):
            if isinstance(part, int) and part < len(node.value):
                node = node.value[part]
            else:
                continue
        else:
            return node
    return node


def _line(node: yaml.Node | None) -> int:
    return int(node.start_mark.line) + 1 if node is not None else 1


def _step_lines(root: yaml.Node | None) -> dict[str, int]:
    lines: dict[str, int] = {}
    steps = _node_at(root, ["steps"])
    if isinstance(steps, yaml.SequenceNode):
        for item in steps.value:
            ident = _node_at(item, ["id"])
            if isinstance(ident, yaml.ScalarNode):
                lines[str(ident.value)] = _line(item)
    return lines


# ----- checks -----------------------------------------------------------------------------------


def _targets(step: Any, flow: Flow) -> list[tuple[str, str]]:
    """(label, target) pairs a step can go to; implicit `next` means the following step."""
    found: list[tuple[str, str]] = []
    if isinstance(step, BranchStep):
        found += [("cases.next", case.next) for case in step.cases]
        found.append(("default", step.default))
        return found
    if isinstance(step, EndStep):
        return found
    if isinstance(step, AskStep):
        found += [("choices.next", c.next) for c in step.choices if c.next]
    if isinstance(step, KbStep):
        found += [(name, t) for name, t in (("on_solved", step.on_solved), ("on_no_match", step.on_no_match))
                  if t]
        if step.on_unsolved:
            found.append(("on_unsolved", step.on_unsolved))
    if isinstance(step, ActionStep):
        found += [(name, t) for name, t in (("on_success", step.on_success), ("on_failure", step.on_failure))
                  if t]
    nxt = step.next or flow.following(step.id)
    if nxt:
        found.append(("next", nxt))
    return found


def _ends(step: Any, flow: Flow) -> bool:
    """Can this step finish the flow by itself (an exit)?"""
    if isinstance(step, EndStep | EscalateStep):
        return True
    if isinstance(step, KbStep) and not step.on_solved:
        return True  # "This solved it" ends the flow
    if isinstance(step, ActionStep) and not step.on_failure:
        return True  # failure escalates
    if isinstance(step, BranchStep):
        return False
    return not step.next and flow.following(step.id) is None


def check_flow(flow: Flow, file: str, root: yaml.Node | None, known: Known, jinja: Environment) -> list[FlowError]:
    errors: list[FlowError] = []
    lines = _step_lines(root)

    def err(step_id: str | None, message: str) -> None:
        errors.append(FlowError(file, lines.get(step_id or "", _line(root)), message))

    if known.categories is not None and flow.category not in known.categories:
        err(None, f"category {flow.category!r} is not a triage label; expected one of "
                  f"{', '.join(sorted(known.categories))}")
    ids = [s.id for s in flow.steps]
    seen: set[str] = set()
    for step in flow.steps:
        if step.id in seen:
            err(step.id, f"step id {step.id!r} is used twice")
        seen.add(step.id)
    for step in flow.steps:
        for label, target in _targets(step, flow):
            if target not in seen:
                err(step.id, f"step {step.id!r}: {label} {target!r} is not a step of this flow; "
                             f"expected one of {', '.join(ids)}")
        template = getattr(step, "template", None)
        if template and known.templates is not None and template not in known.templates:
            err(step.id, f"step {step.id!r}: unknown template {template!r}; expected one of "
                         f"{', '.join(sorted(known.templates))}")
        for attr in ("text", "query", "summary", "confirm", "impact", "urgency"):
            source = getattr(step, attr, None)
            if isinstance(source, str) and source:
                try:
                    jinja.parse(source)
                except TemplateSyntaxError as exc:
                    err(step.id, f"step {step.id!r}: {attr} is not a valid template: {exc.message}")
        if isinstance(step, ActionStep) and known.actions is not None and step.action not in known.actions:
            err(step.id, f"step {step.id!r}: unknown action {step.action!r}; expected one of "
                         f"{', '.join(sorted(known.actions))}")
        if isinstance(step, ActionStep):
            for source in step.args.values():
                try:
                    jinja.parse(source)
                except TemplateSyntaxError as exc:
                    err(step.id, f"step {step.id!r}: an argument is not a valid template: {exc.message}")
        if isinstance(step, KbStep) and known.articles is not None:
            for article in (*step.articles, *step.exclude):
                if article not in known.articles:
                    err(step.id, f"step {step.id!r}: unknown article {article!r} (no such id in the "
                                 f"knowledge base)")
        if isinstance(step, EscalateStep) and step.category and known.categories is not None \
                and step.category not in known.categories:
            err(step.id, f"step {step.id!r}: category {step.category!r} is not a triage label")
    if errors:
        return errors

    # Reachability from the first step.
    graph = {s.id: [t for _, t in _targets(s, flow)] for s in flow.steps}
    reachable: set[str] = set()
    stack = [flow.steps[0].id]
    while stack:
        current = stack.pop()
        if current in reachable:
            continue
        reachable.add(current)
        stack.extend(graph[current])
    for step in flow.steps:
        if step.id not in reachable:
            err(step.id, f"step {step.id!r} is unreachable: no step leads to it")

    # Every reachable step must be able to reach an exit (no loop without a way out).
    can_exit = {s.id for s in flow.steps if _ends(s, flow)}
    changed = True
    while changed:
        changed = False
        for step_id, targets in graph.items():
            if step_id not in can_exit and any(t in can_exit for t in targets):
                can_exit.add(step_id)
                changed = True
    for step in flow.steps:
        if step.id in reachable and step.id not in can_exit:
            err(step.id, f"step {step.id!r} is in a loop with no way to an end, escalate or kb step")
    return errors


# libyaml parses the flows ten times faster than pure Python (every app start, every transcript).
_LOADER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def parse_flow(text: str, file: str, known: Known, jinja: Environment) -> tuple[Flow | None, list[FlowError]]:
    try:
        root = yaml.compose(text, Loader=_LOADER)
        data = yaml.load(text, Loader=_LOADER)  # noqa: S506 - a safe loader (libyaml's when available)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else 1
        return None, [FlowError(file, line, f"not valid YAML: {getattr(exc, 'problem', None) or exc}")]
    if not isinstance(data, dict):
        return None, [FlowError(file, 1, "expected a mapping with id, title, category and steps")]
    # Record each step's line for runtime messages.
    lines = _step_lines(root)
    for item in data.get("steps") or []:
        if isinstance(item, dict) and isinstance(item.get("id"), str):
            item.setdefault("line", lines.get(item["id"], 0))
    try:
        flow = Flow(**data, source=file)
    except ValidationError as exc:
        found = []
        for problem in exc.errors():
            loc = list(problem["loc"])
            node = _node_at(root, loc)
            where = ".".join(str(p) for p in loc)
            message = problem["msg"]
            if problem["type"] == "union_tag_invalid":
                message = f"unknown step kind {problem['input'].get('kind')!r}; expected one of " \
                          "say, ask, branch, kb, action, escalate, end"
            elif problem["type"] == "union_tag_not_found":
                message = "a step needs `kind:` (say, ask, branch, kb, action, escalate or end)"
            elif problem["type"] == "extra_forbidden":
                message = f"unknown key {loc[-1]!r}"
            found.append(FlowError(file, _line(node), f"{where}: {message}"))
        return None, found
    return flow, check_flow(flow, file, root, known, jinja)


def load_flows(directory: Path, known: Known | None = None,
               jinja: Environment | None = None,
               on_error: Callable[[FlowError], None] | None = None) -> FlowSet:
    """Load every `*.yaml` flow in `directory`. A broken file is reported and skipped."""
    known = known or Known()
    jinja = jinja or Environment(autoescape=False)  # noqa: S701 - only parsed, never rendered
    result = FlowSet()
    files = sorted(directory.glob("*.yaml")) + sorted(directory.glob("*.yml"))
    for path in files:
        file = str(path)
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            result.errors.append(FlowError(file, 1, f"cannot read: {exc}"))
            continue
        flow, errors = parse_flow(text, file, known, jinja)
        if flow is not None and not errors:
            if flow.id != path.stem:
                errors = [FlowError(file, 1, f"id {flow.id!r} must match the file name {path.stem!r}")]
            elif flow.id in result.flows:
                errors = [FlowError(file, 1, f"flow id {flow.id!r} is defined twice")]
        if errors or flow is None:
            result.errors.extend(errors)
            continue
        result.flows[flow.id] = flow
    if on_error is not None:
        for error in result.errors:
            on_error(error)
    return result
