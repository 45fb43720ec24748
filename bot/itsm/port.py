"""The `TicketSystem` port: what the bot needs from any ticket system, as plain data."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

OPEN, RESOLVED = "open", "resolved"
# Ends every comment the bot writes into a ticket system: finds it again after an interrupted send,
# and tells a webhook's echo of it from a technician's comment.
MARKER = re.compile(r"\[helpdesk [A-Za-z0-9-]+#[a-z0-9]+\]")


def marker(ref: str, note_id: int | str) -> str:
    return f"[helpdesk {ref}#n{note_id}]"


class WebhookRefused(Exception):
    """An inbound webhook that is not authentic, too old, or not understood (answered 401/400)."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


@dataclass(frozen=True, slots=True)
class NewRecord:
    """A ticket as the ticket system gets it when it is escalated."""

    ref: str
    category: str
    priority: str
    summary: str
    description: str
    requester_email: str
    requester_name: str


@dataclass(frozen=True, slots=True)
class RemoteRecord:
    remote_id: str  # Jira issue id / ServiceNow sys_id
    remote_key: str  # ITHELP-12 / INC0010012
    url: str = ""
    status: str = OPEN


@dataclass(frozen=True, slots=True)
class RemoteComment:
    comment_id: str
    text: str
    public: bool
    author: str
    ours: bool = False


@dataclass(frozen=True, slots=True)
class RemoteChange:
    """Something that happened on one remote record: a comment, or its status as now seen."""

    remote_id: str
    kind: str  # comment | status
    comment: RemoteComment | None = None
    status: str | None = None
    note: str = ""
    author: str = ""


@dataclass(frozen=True, slots=True)
class Webhook:
    """An authenticated inbound webhook: its delivery id (for replays) and what it says."""

    delivery_id: str
    changes: tuple[RemoteChange, ...] = ()


@dataclass(frozen=True, slots=True)
class CheckLine:
    ok: bool
    what: str
    detail: str = ""
    extra: Mapping[str, Any] = field(default_factory=dict)


class TicketSystem(Protocol):
    name: str

    async def create(self, record: NewRecord) -> RemoteRecord:
        """Create the remote record (raise RetryLater / Undeliverable from bot.outbox.worker)."""
        ...

    async def find(self, ref: str) -> RemoteRecord | None:
        """The record created earlier for this ticket, if any (after an interrupted create)."""
        ...

    async def comment(self, remote_id: str, text: str, *, public: bool) -> str:
        """Add a comment (public: the requester sees it; else an internal note). Returns its id."""
        ...

    async def find_comment(self, remote_id: str, marker: str) -> str | None:
        """The id of an earlier comment containing `marker` (after an interrupted send)."""
        ...

    async def set_status(self, remote_id: str, status: str, note: str) -> None: ...

    async def get_status(self, remote_id: str) -> str: ...

    async def changed_since(self, since: datetime, now: datetime) -> list[RemoteChange]:
        """Every comment and status of records changed since `since` (the poll; repeats are fine)."""
        ...

    def parse_webhook(self, headers: Mapping[str, str], body: bytes, now: datetime) -> Webhook:
        """Authenticate and read an inbound webhook, or raise WebhookRefused."""
        ...

    async def check(self) -> list[CheckLine]:
        """Connection, permissions and mappings, for `helpdesk itsm check`."""
        ...

    async def aclose(self) -> None: ...
