"""Ports: what the core needs from the outside world, as protocols.

Implementations live at the edges (bot/graph, bot/kb, bot/tickets, bot/channels...) and are wired
in bot/app.py. The core and the engine depend only on these shapes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Protocol

from bot.core.models import Button, Person, Platform, PlatformUser

# ----- directory --------------------------------------------------------------------------------


class PersonResolver(Protocol):
    """Finds the directory person behind a platform account. Never uses anything the person typed."""

    async def resolve(self, user: PlatformUser) -> Person | None: ...


# ----- knowledge base ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class KbHit:
    article_id: str
    title: str
    summary: str
    score: float
    url: str | None = None


@dataclass(frozen=True, slots=True)
class KbResult:
    """Search results, best first, with a confidence band the flows act on:
    `high` (here is your answer), `medium` (maybe one of these), `none` (no good match)."""

    query: str
    hits: tuple[KbHit, ...]
    confidence: str  # high | medium | none


class KnowledgeBase(Protocol):
    def search(self, query: str, limit: int = 3, category: str | None = None) -> KbResult: ...

    def article_ids(self) -> frozenset[str]: ...

    def render_article(self, article_id: str) -> Mapping[str, Any] | None:
        """Title, summary, body sections for "Show me" (the renderer formats them per platform)."""
        ...


# ----- self-service actions ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ActionRequest:
    name: str
    person: Person
    args: Mapping[str, str]
    conversation_key: str
    dry_run: bool = False


@dataclass(frozen=True, slots=True)
class ActionOutcome:
    """What a self-service action did.

    `code` is machine-readable ("done", "already_member", "protected", "forbidden", "unavailable",
    "rate_limited", "pending_approval", "needs_input"...). `message` is plain text safe to show the
    person. `secret` is shown once, privately, to the person and kept nowhere. `needs_input` asks the
    person for `input_slot` (with `prompt`, optionally `choices`) and the action is run again with it.
    `escalate` asks the flow to open a ticket (possible security issue, missing permission...).
    """

    ok: bool
    code: str
    message: str = ""
    data: Mapping[str, Any] = field(default_factory=dict)
    secret: str | None = None
    escalate: bool = False
    input_slot: str | None = None
    prompt: str | None = None
    choices: Sequence[Button] = ()
    request_id: str | None = None


class SharedState(Protocol):
    """Short-lived state every replica sees (verification codes, grants, pending identity checks,
    self-service rate limits): JSON values by key, each with an expiry in epoch seconds. Backed by
    the turn's transaction, so it commits or rolls back with everything else."""

    async def get(self, key: str) -> dict[str, Any] | None:
        """The value, or None if there is none or it has expired."""
        ...

    async def put(self, key: str, value: dict[str, Any], expires: float) -> None: ...

    async def delete(self, key: str) -> None: ...


class ActionContext(Protocol):
    """What an action may do besides calling the directory: audit and notify, in the turn's
    transaction (so a crash loses nothing and repeats nothing)."""

    def emit(self, type: str, **data: Any) -> None: ...

    async def notify(self, email: str, text: str, buttons: Sequence[Button] = ()) -> None:
        """A direct message to a person, through the outbox."""
        ...


class ActionRunner(Protocol):
    def names(self) -> frozenset[str]: ...

    async def run(self, request: ActionRequest, ctx: ActionContext) -> ActionOutcome: ...


# ----- delivery to a channel (the outbox worker calls a channel's sender) -------------------------


class RetryLater(Exception):
    """A temporary failure (429, 5xx, network). `retry_after` in seconds when the platform said.

    `scope` says what the limit applies to when the platform tells: "lane" (this channel) or
    "global" (the whole workspace / app); None lets the worker infer it."""

    def __init__(self, reason: str, retry_after: float | None = None, scope: str | None = None) -> None:
        super().__init__(reason)
        self.retry_after = retry_after
        self.scope = scope


class Undeliverable(Exception):
    """A permanent failure (channel not found, person not reachable): never retried."""


@dataclass(frozen=True, slots=True)
class Delivery:
    """One row to deliver, as plain data."""

    id: int
    idempotency_key: str
    platform: str
    address: Mapping[str, Any]
    payload: Mapping[str, Any]
    attempts: int
    lane: str
    group_key: str | None


class Sender(Protocol):
    async def send(self, delivery: Delivery) -> str | None:
        """Deliver; return the platform's message id (for later edits), or raise RetryLater/Undeliverable."""
        ...

    async def find_delivered(self, delivery: Delivery) -> str | None:
        """After an interrupted attempt: the message id if it already arrived, else None."""
        ...


# ----- the inbox (what a channel acknowledged, kept until a turn has handled it) --------------------


@dataclass(frozen=True, slots=True)
class InboxItem:
    id: int
    key: str
    platform: str
    payload: Mapping[str, Any]
    attempts: int


class DurableInbox(Protocol):
    """Deliveries a channel commits BEFORE acknowledging them, claimed under a lease by any replica
    and handled once (bot/store/inbox.py implements it; the app hands it to the channel)."""

    async def put(self, key: str, platform: str, payload: Mapping[str, Any], *, claim: bool = True) -> int | None:
        """Store and commit; the row id, or None when the key is already stored (a redelivery)."""
        ...

    async def get(self, row_id: int) -> InboxItem | None: ...

    async def claim(self, limit: int = 20, platforms: tuple[str, ...] | None = None) -> list[InboxItem]: ...

    async def done(self, row_id: int, status: str = "done", error: str | None = None) -> None: ...

    async def retry_later(self, item: InboxItem, error: str) -> bool:
        """Due again after a back-off; False after the last attempt."""
        ...

    async def tell_once(self, row_id: int) -> bool:
        """After the last attempt: True the first time only (the person is told once per message,
        even when the help desk re-queues it and it fails again)."""
        ...

    async def release(self, row_ids: list[int]) -> None: ...

    async def recover_orphans(self) -> int: ...

    async def purge(self, keep: timedelta = ...) -> int: ...


# ----- who is in a channel ------------------------------------------------------------------------


class ChannelUnreachable(Exception):
    """The channel cannot answer about that conversation: not one it knows, not one the bot can see,
    or the platform refused. Nothing is retried."""


class ChannelMembers(Protocol):
    """Who is in a conversation of one chat platform, as that platform's user ids (the bot itself
    left out). A channel that can list members implements it (bot/channels/slack/members.py);
    one that cannot has no implementation, and callers fall back to what the directory knows."""

    platform: str

    async def members(self, conversation_id: str) -> list[str]:
        """Every member, all pages; raises ChannelUnreachable when the conversation is not one the
        bot can list. A failure after the first page raises too (half a channel is not an answer)."""
        ...


class AccountUnavailable(Exception):
    """The platform cannot say whose account this is right now (rate-limited, down): not known
    *yet*, which is not the same as unknown. Try again later."""


class PlatformAccounts(Protocol):
    """Whose account is this platform user id: the platform's own answer (Slack: `users.info`, the
    profile email), never anything the person typed. The web console's Sign in with Slack asks it;
    bot/channels/accounts.py builds the ones the settings enable."""

    platform: str

    async def account(self, user_id: str) -> PlatformUser:
        """The account; raises AccountUnavailable when the platform cannot answer now."""
        ...

    async def aclose(self) -> None: ...


# ----- rendering --------------------------------------------------------------------------------


class TextRenderer(Protocol):
    """Named templates and inline flow text, escaped for the platform (bot/render implements it)."""

    def text(self, platform: Platform, *, template: str | None = None, source: str | None = None,
             context: Mapping[str, Any] | None = None) -> str: ...
