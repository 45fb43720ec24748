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
from jinja2 import Environment, TemplateSyntaxError, meta, nodes
from pydantic import TypeAdapter, ValidationError

from bot.engine.spec import (
    ActionStep,
    AskStep,
    BranchStep,
    EndStep,
    EscalateStep,
    Flow,
    KbStep,
    Step,
)

# Names every flow text may use besides its slots: the conversation, the person, render globals
# (bot/app.py), and Jinja's own globals.
CONTEXT_NAMES = frozenset({
    "slots", "first_message", "flow", "person", "platform", "more_detail", "last_action",
    "app_name", "hr_contact", "facilities_contact",
    "range", "dict", "lipsum", "cycler", "joiner", "namespace", "true", "false", "none", "True", "False", "None",
})


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


def _slot_names(flow: Flow) -> tuple[set[str], set[str]]:
    """(names a flow's text may use, prefixes of names actions fill: `storage_quota_...`)."""
    names = set(CONTEXT_NAMES)
    prefixes: set[str] = set()
    for step in flow.steps:
        if isinstance(step, AskStep):
            if step.slot:
                names.update({step.slot, f"{step.slot}_label"})
            names.update(f.name for f in step.fields)
        if isinstance(step, ActionStep):
            prefixes.add(f"{step.action}_")
    return names, prefixes


def _guarded(tree: nodes.Template) -> set[str]:
    """Names used with `| default(...)` or tested with `is defined`: allowed to be missing."""
    found: set[str] = set()
    for node in tree.find_all((nodes.Filter, nodes.Test)):
        if node.name in ("default", "d", "defined", "undefined") and isinstance(node.node, nodes.Name):
            found.add(node.node.name)
    return found


def _undefined_names(source: str, jinja: Environment, allowed: set[str], prefixes: set[str]) -> list[str]:
    tree = jinja.parse(source)
    missing = meta.find_undeclared_variables(tree) - allowed - _guarded(tree)
    return sorted(n for n in missing if not any(n.startswith(p) for p in prefixes))


def check_flow(flow: Flow, file: str, root: yaml.Node | None, known: Known, jinja: Environment,
               *, missing_steps: frozenset[str] = frozenset(),
               missing_slots: frozenset[str] = frozenset()) -> list[FlowError]:
    """Every problem of a parsed flow. `missing_steps`: ids of steps that failed the schema (already
    reported), so references to them are not reported twice."""
    errors: list[FlowError] = []
    lines = _step_lines(root)
    allowed, prefixes = _slot_names(flow)
    allowed |= {name for slot in missing_slots for name in (slot, f"{slot}_label")}

    def err(step_id: str | None, message: str) -> None:
        errors.append(FlowError(file, lines.get(step_id or "", _line(root)), message))

    if known.categories is not None and flow.category not in known.categories:
        err(None, f"category {flow.category!r} is not a ticket category; expected one of "
                  f"{', '.join(sorted(known.categories))} (tickets.categories in the settings)")
    ids = [s.id for s in flow.steps]
    seen: set[str] = set()
    for step in flow.steps:
        if step.id in seen:
            err(step.id, f"step id {step.id!r} is used twice")
        seen.add(step.id)
    for step in flow.steps:
        for label, target in _targets(step, flow):
            if target not in seen and target not in missing_steps:
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
                    undefined = _undefined_names(source, jinja, allowed | ({"problems"} if attr == "text" else set()),
                                                 prefixes)
                except TemplateSyntaxError as exc:
                    err(step.id, f"step {step.id!r}: {attr} is not a valid template: {exc.message}")
                    continue
                for name in undefined:
                    err(step.id, f"step {step.id!r}: {attr} uses {{{{ {name} }}}}, but no step of this flow "
                                 f"asks for {name!r} (use a slot the flow collects, or `| default('')`)")
        if isinstance(step, AskStep) and step.input == "form":
            try:
                undefined = _undefined_names(step.retry_text, jinja, allowed | {"problems"}, prefixes)
            except TemplateSyntaxError as exc:
                err(step.id, f"step {step.id!r}: retry_text is not a valid template: {exc.message}")
                undefined = []
            for name in undefined:
                err(step.id, f"step {step.id!r}: retry_text uses {{{{ {name} }}}}, which this flow never sets")
        if isinstance(step, ActionStep) and known.actions is not None and step.action not in known.actions:
            err(step.id, f"step {step.id!r}: unknown action {step.action!r}; expected one of "
                         f"{', '.join(sorted(known.actions))}")
        if isinstance(step, ActionStep):
            for arg, source in step.args.items():
                try:
                    undefined = _undefined_names(source, jinja, allowed, prefixes)
                except TemplateSyntaxError as exc:
                    err(step.id, f"step {step.id!r}: argument {arg!r} is not a valid template: {exc.message}")
                    continue
                for name in undefined:
                    err(step.id, f"step {step.id!r}: argument {arg!r} uses {{{{ {name} }}}}, which this flow "
                                 f"never sets")
        if isinstance(step, KbStep) and known.articles is not None:
            for article in (*step.articles, *step.exclude):
                if article not in known.articles:
                    err(step.id, f"step {step.id!r}: unknown article {article!r} (no such id in the "
                                 f"knowledge base)")
        if isinstance(step, EscalateStep) and step.category and known.categories is not None \
                and step.category not in known.categories:
            err(step.id, f"step {step.id!r}: category {step.category!r} is not a ticket category; expected one "
                         f"of {', '.join(sorted(known.categories))}")

    # Reachability from the first step (unknown targets were reported above and are left out, so
    # every problem is reported in one run, not one layer at a time).
    present = {s.id for s in flow.steps}
    graph = {s.id: [t for _, t in _targets(s, flow) if t in present] for s in flow.steps}
    reachable: set[str] = set()
    stack = [flow.steps[0].id]
    while stack:
        current = stack.pop()
        if current in reachable:
            continue
        reachable.add(current)
        stack.extend(graph[current])
    for step in flow.steps:
        if step.id not in reachable and not missing_steps:
            err(step.id, f"step {step.id!r} is unreachable: no step leads to it")

    # Every reachable step must be able to reach an exit (no loop without a way out).
    can_exit = {s.id for s in flow.steps if _ends(s, flow)
                or any(t not in present for _, t in _targets(s, flow))}  # a bad target is reported above
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
        found = [FlowError(file, _line(_node_at(root, list(p["loc"]))), _plain_words(p, data))
                 for p in exc.errors()]
        # The steps that are fine are still checked (targets, templates, slots, articles...), so
        # every problem shows in one run rather than one layer at a time.
        partial, missing = _valid_part(data, file)
        if partial is not None:
            slots = frozenset(str(i.get("slot")) for i in data.get("steps") or []
                              if isinstance(i, dict) and i.get("slot"))
            found += check_flow(partial, file, root, known, jinja, missing_steps=missing, missing_slots=slots)
        return None, sorted(found, key=lambda e: e.line)
    return flow, check_flow(flow, file, root, known, jinja)


_STEP_ADAPTER: TypeAdapter[Any] = TypeAdapter(Step)


def _valid_part(data: dict[str, Any], file: str) -> tuple[Flow | None, frozenset[str]]:
    """The flow with only its valid steps (and the ids of the others), or None if that fails too."""
    good: list[Any] = []
    missing: set[str] = set()
    for item in data.get("steps") or []:
        try:
            _STEP_ADAPTER.validate_python(item)
            good.append(item)
        except ValidationError:
            if isinstance(item, dict) and isinstance(item.get("id"), str):
                missing.add(item["id"])
    if not good:
        return None, frozenset(missing)
    try:
        return Flow(**{**data, "steps": good}, source=file), frozenset(missing)
    except (ValidationError, TypeError):
        return None, frozenset(missing)


_KINDS = "say, ask, branch, kb, action, escalate or end"


def _plain_words(problem: Any, data: dict[str, Any]) -> str:
    """A pydantic problem said as a flow author would: where (the step's id) and what to change."""
    loc = list(problem["loc"])
    where = "the flow"
    if len(loc) >= 2 and loc[0] == "steps" and isinstance(loc[1], int):
        steps = data.get("steps") or []
        item = steps[loc[1]] if loc[1] < len(steps) else None
        ident = item.get("id") if isinstance(item, dict) else None
        where = f"step {ident!r}" if ident else f"step {loc[1] + 1}"
        loc = [p for p in loc[2:] if p not in ("say", "ask", "branch", "kb", "action", "escalate", "end")]
    field = ".".join(str(p) for p in loc) if loc else ""
    kind = problem["type"]
    given = problem.get("input")
    if kind == "union_tag_invalid":
        return f"{where}: unknown step kind {given.get('kind')!r}; expected one of {_KINDS}"
    if kind == "union_tag_not_found":
        return f"{where}: a step needs `kind:` ({_KINDS})"
    if kind == "extra_forbidden":
        return f"{where}: unknown key {field!r} (check the spelling; docs/flows.md lists the keys)"
    if kind == "missing":
        return f"{where}: `{field}` is missing"
    if kind == "literal_error":
        expected = problem.get("ctx", {}).get("expected", "")
        return f"{where}: `{field}` is {given!r}; expected one of {expected}"
    if kind in ("string_type", "int_type", "bool_type", "list_type", "tuple_type", "dict_type", "int_parsing"):
        wanted = {"string_type": "text", "int_type": "a whole number", "int_parsing": "a whole number",
                  "bool_type": "true or false", "list_type": "a list", "tuple_type": "a list",
                  "dict_type": "a mapping"}[kind]
        return f"{where}: `{field}` should be {wanted}, not {given!r}"
    if kind in ("too_short", "string_too_short"):
        return f"{where}: `{field or 'it'}` is empty; it needs at least one entry" if kind == "too_short" \
            else f"{where}: `{field}` is empty"
    if kind == "string_too_long":
        limit = problem.get("ctx", {}).get("max_length")
        return f"{where}: `{field}` is too long (at most {limit} characters)"
    if kind in ("greater_than_equal", "less_than_equal"):
        return f"{where}: `{field}` is out of range ({problem['msg'].lower()})"
    message = str(problem["msg"]).removeprefix("Value error, ")
    return f"{where}: {field + ': ' if field else ''}{message}"


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
