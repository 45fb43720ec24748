"""Flows as data: the schema of a flow file (`flows/<id>.yaml`), checked with pydantic at load.

A flow is a list of steps. Each step has an `id` and exactly one kind: `say`, `ask`, `branch`,
`kb`, `action`, `escalate`, `end`. Steps run in order unless `next` (or a kind-specific target)
says otherwise. Text is a Jinja2 template with the answers collected so far in `slots` (also
reachable directly: `{{ device }}`), or a named template (`template: vpn_intro`).
See docs/flows.md for the format with a worked example.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

OUTCOMES = ("resolved", "escalated", "abandoned", "deflected")
Outcome = Literal["resolved", "escalated", "abandoned", "deflected"]
IMPACTS = ("high", "medium", "low")
STEP_KINDS = ("say", "ask", "branch", "kb", "action", "escalate", "end")
# What an ask step can learn from free text (`listen:`), besides its choices' synonyms.
LISTEN_KINDS = ("error_code", "device", "os", "group", "date", "urgency", "impact")
ListenKind = Literal["error_code", "device", "os", "group", "date", "urgency", "impact"]
_IDENT = re.compile(r"^[a-z][a-z0-9_]*$")


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _check_ident(value: str, what: str) -> str:
    if not _IDENT.match(value):
        raise ValueError(f"{what} is lower_snake_case (letters, digits, _)")
    return value


def _check_regex(value: str | None) -> str | None:
    if value is not None:
        re.compile(value)
    return value


def slugify(label: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", label.lower()).strip("_") or "choice"


class Choice(Strict):
    label: str = Field(min_length=1, max_length=75)
    value: str = ""
    next: str | None = None
    # Phrases that, said in free text ("my mailbox is full"), pick this choice without asking.
    synonyms: tuple[str, ...] = ()

    @model_validator(mode="after")
    def _default_value(self) -> Choice:
        if not self.value:
            object.__setattr__(self, "value", slugify(self.label))
        return self


class FieldSpec(Strict):
    name: str
    label: str = Field(min_length=1, max_length=48)
    kind: Literal["text", "multiline", "choice"] = "text"
    required: bool = True
    options: tuple[Choice, ...] = ()
    pattern: str | None = None
    placeholder: str | None = None

    @field_validator("name")
    @classmethod
    def _ident(cls, value: str) -> str:
        return _check_ident(value, "a field name")

    @field_validator("pattern")
    @classmethod
    def _regex(cls, value: str | None) -> str | None:
        return _check_regex(value)

    @model_validator(mode="after")
    def _choice_has_options(self) -> FieldSpec:
        if self.kind == "choice" and not self.options:
            raise ValueError("a choice field needs options")
        return self


class StepBase(Strict):
    id: str
    next: str | None = None
    # Line in the flow file, filled in by the loader for error messages.
    line: int = Field(default=0, exclude=True)

    @field_validator("id")
    @classmethod
    def _ident(cls, value: str) -> str:
        return _check_ident(value, "a step id")


class Texty(StepBase):
    """A step that shows text: inline Jinja (`text`) or a named template (`template`)."""

    text: str | None = None
    template: str | None = None


class SayStep(Texty):
    kind: Literal["say"] = "say"

    @model_validator(mode="after")
    def _has_text(self) -> SayStep:
        if not (self.text or self.template):
            raise ValueError("a say step needs `text` or `template`")
        return self


class AskStep(Texty):
    kind: Literal["ask"] = "ask"
    slot: str = ""
    input: Literal["text", "choice", "form"] = "text"
    pattern: str | None = None
    retry_text: str = "Sorry, that doesn't look right. Please try again."
    choices: tuple[Choice, ...] = ()
    fields: tuple[FieldSpec, ...] = ()
    title: str | None = None  # form title (modal / card heading)
    # What this question can learn from anything the person says (docs/flows.md, "Listening").
    listen: ListenKind | None = None

    @field_validator("pattern")
    @classmethod
    def _regex(cls, value: str | None) -> str | None:
        return _check_regex(value)

    @model_validator(mode="after")
    def _shape(self) -> AskStep:
        if not (self.text or self.template):
            raise ValueError("an ask step needs `text` or `template` (the question)")
        if self.input != "form" and not _IDENT.match(self.slot or ""):
            raise ValueError("an ask step needs `slot`: the lower_snake_case name of the answer")
        if self.input == "choice" and not self.choices:
            raise ValueError("`input: choice` needs `choices`")
        if self.input == "form" and not self.fields:
            raise ValueError("`input: form` needs `fields`")
        if self.input != "choice" and self.choices:
            raise ValueError("`choices` only go with `input: choice`")
        if self.listen and self.input == "form":
            raise ValueError("`listen` goes with `input: text` or `input: choice`, not a form")
        if self.listen in ("device", "os", "urgency", "impact") and self.input != "choice":
            raise ValueError(f"`listen: {self.listen}` needs `input: choice` (its choices are what is heard)")
        return self


class Case(Strict):
    """`when` maps slot names to a value or a list of accepted values; all must hold."""

    when: dict[str, str | list[str]]
    next: str


class BranchStep(StepBase):
    kind: Literal["branch"] = "branch"
    cases: tuple[Case, ...] = Field(min_length=1)
    default: str


class KbStep(Texty):
    kind: Literal["kb"] = "kb"
    query: str = ""  # Jinja over the slots; empty = the person's first message
    articles: tuple[str, ...] = ()  # pinned article ids, shown first
    exclude: tuple[str, ...] = ()  # article ids this step never offers (the step before already did their job)
    limit: int = Field(default=3, ge=1, le=5)
    on_solved: str | None = None  # default: end resolved (deflected)
    on_unsolved: str | None = None  # default: next step
    on_no_match: str | None = None  # default: on_unsolved


class ActionStep(Texty):
    kind: Literal["action"] = "action"
    action: str
    args: dict[str, str] = Field(default_factory=dict)
    confirm: str | None = None  # ask "Yes / No" with this text before running
    confirm_label: str = "Yes, go ahead"
    on_success: str | None = None  # default: next step
    on_failure: str | None = None  # default: escalate with everything collected


class EscalateStep(Texty):
    kind: Literal["escalate"] = "escalate"
    category: str | None = None  # default: the flow's category
    impact: str = "low"  # high | medium | low, or a Jinja expression over slots
    urgency: str = "low"  # high | medium | low, or a Jinja expression over slots
    summary: str = ""  # Jinja; default: the flow title and the first message


class EndStep(Texty):
    kind: Literal["end"] = "end"
    outcome: Outcome = "resolved"


Step = Annotated[
    SayStep | AskStep | BranchStep | KbStep | ActionStep | EscalateStep | EndStep,
    Field(discriminator="kind"),
]


class Triggers(Strict):
    examples: tuple[str, ...] = ()
    keywords: tuple[str, ...] = ()
    # Phrases that argue against this flow (e.g. "password" in "password manager" for mfa).
    negative: tuple[str, ...] = ()


class Flow(Strict):
    id: str
    title: str
    category: str
    description: str = ""
    triggers: Triggers = Field(default_factory=Triggers)
    # Flows that are not IT problems (smalltalk, out_of_scope) end without "was this solved?".
    it: bool = True
    steps: tuple[Step, ...] = Field(min_length=1)
    source: str = Field(default="", exclude=True)

    @field_validator("id")
    @classmethod
    def _ident(cls, value: str) -> str:
        return _check_ident(value, "a flow id")

    def step(self, step_id: str) -> Any:
        for step in self.steps:
            if step.id == step_id:
                return step
        raise KeyError(step_id)

    def index(self, step_id: str) -> int:
        for number, step in enumerate(self.steps):
            if step.id == step_id:
                return number
        raise KeyError(step_id)

    def following(self, step_id: str) -> str | None:
        """The step after `step_id` in file order (the default `next`)."""
        number = self.index(step_id)
        return self.steps[number + 1].id if number + 1 < len(self.steps) else None
