"""What an outage notice is to its callers: severities, button values, outbox keys, errors, the draft
an admin writes, its audience and recipients, the delivery report and what a change did."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from bot.core.models import Address
from bot.store.tables import IncidentRow

SEVERITIES = ("minor", "major", "critical")
# Button values (the handler answers them).
V_AFFECTED = "outage:affected:"
V_ACK = "outage:ack:"
V_OTHER = "outage:other:"
V_FIXED = "outage:fixed:"
V_BROKEN = "outage:broken:"
V_DECLARE = "outage:declare:"
V_DISMISS = "outage:dismiss:"

CHUNK = 1000


def group_key(incident_id: int) -> str:
    return f"outage:{incident_id}"


def post_key(incident_id: int, recipient_key: str) -> str:
    return f"outage:{incident_id}:post:{recipient_key}"


class OutageError(Exception):
    """A request the service cannot carry out; `code` is not_found | closed | invalid."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True, slots=True)
class Audience:
    """Where a notice goes. `channels` per platform; direct messages to `everyone`, to members of
    `groups`, or to members of `member_channels` ("platform:channel" or "channel")."""

    channels: Mapping[str, Sequence[str]] = field(default_factory=dict)
    everyone: bool = False
    groups: tuple[str, ...] = ()
    member_channels: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {"channels": {k: list(v) for k, v in self.channels.items()}, "everyone": self.everyone,
                "groups": list(self.groups), "member_channels": list(self.member_channels)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Audience:
        return cls(channels={str(k): tuple(v) for k, v in (data.get("channels") or {}).items()},
                   everyone=bool(data.get("everyone")), groups=tuple(data.get("groups") or ()),
                   member_channels=tuple(data.get("member_channels") or ()))


@dataclass(frozen=True, slots=True)
class NoticeDraft:
    service: str
    summary: str = ""
    severity: str = "major"
    aliases: tuple[str, ...] = ()
    keywords: tuple[str, ...] = ()
    category: str | None = None
    impact: str = ""
    workaround: str = ""
    expected_fix: str = ""
    next_update_at: datetime | None = None
    audience: Audience | None = None  # None: the configured default
    kind: str = "incident"  # incident | maintenance
    starts_at: datetime | None = None
    ends_at: datetime | None = None
    reminder_minutes: int | None = None


# Fields `update` may change.
EDITABLE = frozenset({"service", "summary", "severity", "aliases", "keywords", "category", "impact", "workaround",
                      "expected_fix", "next_update_at", "starts_at", "ends_at"})


@dataclass(frozen=True, slots=True)
class Recipient:
    key: str
    kind: str  # channel | dm
    platform: str
    address: Address
    email: str | None = None


@dataclass(frozen=True, slots=True)
class DeliveryReport:
    incident_id: int
    service: str
    status: str
    total: int
    sent: int
    pending: int
    failed: int
    cancelled: int
    reasons: tuple[tuple[str, int], ...]
    affected: int
    acknowledged: int
    tickets: int
    # Of the failed copies: people the platform could not reach ("not reachable on ...": the app not
    # installed for them and, on Teams, installing it refused or not allowed).
    unreachable: int = 0

    def to_json(self) -> dict[str, Any]:
        return {"incident_id": self.incident_id, "service": self.service, "status": self.status,
                "total": self.total, "sent": self.sent, "pending": self.pending, "failed": self.failed,
                "cancelled": self.cancelled, "reasons": [{"error": e, "count": c} for e, c in self.reasons],
                "affected": self.affected, "acknowledged": self.acknowledged, "tickets": self.tickets,
                "unreachable": self.unreachable}


@dataclass(frozen=True, slots=True)
class ChangeResult:
    incident: IncidentRow
    edits: int = 0
    notified: int = 0
    cancelled: int = 0
    deleted: int = 0


def terms(incident: IncidentRow) -> list[str]:
    """What an incident answers to: its service, aliases and keywords."""
    return [incident.service, *map(str, incident.aliases or []), *map(str, incident.keywords or [])]


def aware(value: datetime | None) -> datetime | None:
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=UTC)
