"""The engine's vocabulary: the conversation state it remembers, the stimuli it is fed, the effects
it returns, and the button values it understands."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from bot.core.models import Button, Form
from bot.core.ports import ActionOutcome, KbResult
from bot.engine.listen import Facts

FALLBACK_FLOW = "fallback"
HUMAN_FLOW = "human"

# Button values the engine understands. Flows' own choices are prefixed with "choice:".
V_START = "start:"
V_CHOICE = "choice:"
V_KB_SHOW = "kb:show:"
V_KB_SOLVED = "kb:solved"
V_KB_UNSOLVED = "kb:unsolved"
V_CONFIRM_YES = "confirm:yes"
V_CONFIRM_NO = "confirm:no"
V_RESUME = "resume:continue"
V_RESUME_NEW = "resume:new"
V_SOMETHING_ELSE = "triage:other"
V_CANCEL = "flow:cancel"
V_HUMAN = "flow:human"
V_GUESS_YES = "guess:yes"
V_GUESS_NO = "guess:no"
# A guess the person turned down is kept under this prefix (`guesses`), so it isn't offered again.
DECLINED = "declined:"
# "Continue" on the message that tells a person a technician has decided on their identity check.
V_APPROVAL_CONTINUE = "approval_wait:continue"
# Answers an action asked for (needs_input) are kept under this prefix until the action finishes.
INPUT_PREFIX = "input_"


# ----- state, stimuli, effects ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ConversationState:
    """What the bot remembers of one conversation. JSON-serialisable through `to_row`/`from_row`."""

    flow_id: str | None = None
    step_id: str | None = None
    slots: Mapping[str, Any] = field(default_factory=dict)
    # What the conversation waits for: answer | choice | form | kb_feedback | kb_results | confirm |
    # action_result | action_input | approval | ticket | did_you_mean | resume | None
    # (`approval`: an action waits for a technician to confirm the person's identity)
    awaiting: str | None = None
    first_message: str = ""
    tried_articles: tuple[str, ...] = ()
    tried_actions: tuple[str, ...] = ()
    offered: tuple[str, ...] = ()  # button values offered with the last question
    pending_text: str = ""  # a message kept while asking "pick up where we left off?"
    action_input_slot: str | None = None
    # Answers guessed from what was said, to confirm in one line when their question comes up:
    # slot -> {value, label, confirm}.
    guesses: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    started_at: datetime | None = None
    updated_at: datetime | None = None
    version: int = 0

    @property
    def active(self) -> bool:
        return self.flow_id is not None

    def data(self) -> dict[str, Any]:
        return {
            "awaiting": self.awaiting,
            "first_message": self.first_message,
            "tried_articles": list(self.tried_articles),
            "tried_actions": list(self.tried_actions),
            "offered": list(self.offered),
            "pending_text": self.pending_text,
            "action_input_slot": self.action_input_slot,
            "guesses": {k: dict(v) for k, v in self.guesses.items()},
            "started_at": self.started_at.isoformat() if self.started_at else None,
        }

    @classmethod
    def from_data(cls, flow_id: str | None, step_id: str | None, slots: Mapping[str, Any],
                  data: Mapping[str, Any], version: int, updated_at: datetime | None) -> ConversationState:
        started = data.get("started_at")
        return cls(
            flow_id=flow_id,
            step_id=step_id,
            slots=dict(slots),
            awaiting=data.get("awaiting"),
            first_message=str(data.get("first_message") or ""),
            tried_articles=tuple(data.get("tried_articles") or ()),
            tried_actions=tuple(data.get("tried_actions") or ()),
            offered=tuple(data.get("offered") or ()),
            pending_text=str(data.get("pending_text") or ""),
            action_input_slot=data.get("action_input_slot"),
            guesses={str(k): dict(v) for k, v in (data.get("guesses") or {}).items()},
            started_at=datetime.fromisoformat(started) if started else None,
            updated_at=updated_at,
            version=version,
        )


@dataclass(frozen=True, slots=True)
class UserTurn:
    text: str | None = None
    value: str | None = None  # a clicked button's value
    form: Mapping[str, str] | None = None
    # What the core looked up in the directory for this text (devices, names); see listen.py.
    facts: Facts = field(default_factory=Facts)


@dataclass(frozen=True, slots=True)
class KbAnswer:
    result: KbResult


@dataclass(frozen=True, slots=True)
class ActionAnswer:
    """An action's outcome, with any secret already taken out by the core."""

    outcome: ActionOutcome
    secret_shown: bool = False


@dataclass(frozen=True, slots=True)
class TicketAnswer:
    ticket_id: str
    priority: str
    first_response: str  # human text: "within 4 business hours"
    existing: bool = False
    # Offered with the confirmation (e.g. "Open a separate ticket" when added to an existing one).
    buttons: tuple[Button, ...] = ()


Stimulus = UserTurn | KbAnswer | ActionAnswer | TicketAnswer


@dataclass(frozen=True, slots=True)
class TriageGuess:
    intent: str
    confidence: float
    alternatives: tuple[tuple[str, float], ...] = ()


@dataclass(frozen=True, slots=True)
class Say:
    text: str | None = None  # inline Jinja source (from a flow)
    template: str | None = None  # a named template
    context: Mapping[str, Any] = field(default_factory=dict)
    buttons: tuple[Button, ...] = ()
    form: Form | None = None
    private: bool = False


@dataclass(frozen=True, slots=True)
class SearchKb:
    query: str
    pinned: tuple[str, ...] = ()
    limit: int = 3
    category: str | None = None


@dataclass(frozen=True, slots=True)
class ShowArticle:
    article_id: str


@dataclass(frozen=True, slots=True)
class RunAction:
    name: str
    args: Mapping[str, str]  # Jinja sources from the flow file
    inputs: Mapping[str, str] = field(default_factory=dict)  # raw answers the action asked for


@dataclass(frozen=True, slots=True)
class OpenTicket:
    category: str
    impact: str
    urgency: str
    summary: str
    flow_id: str
    details: Mapping[str, Any]
    tried_articles: tuple[str, ...]
    tried_actions: tuple[str, ...]
    first_message: str


@dataclass(frozen=True, slots=True)
class Retriage:
    """Sort this text afresh (the person moved on from a question or a paused flow)."""

    text: str


@dataclass(frozen=True, slots=True)
class Emit:
    type: str
    data: Mapping[str, Any] = field(default_factory=dict)


Effect = Say | SearchKb | ShowArticle | RunAction | OpenTicket | Emit | Retriage


@dataclass(frozen=True, slots=True)
class Transition:
    state: ConversationState
    effects: tuple[Effect, ...] = ()


class FlowRuntimeError(Exception):
    """The conversation refers to something the flow no longer has (an edited flow file)."""
