"""SQLAlchemy tables. Alembic migrations in `bot/store/migrations` create exactly these.

Conventions: timestamps are timezone-aware UTC; JSON columns hold plain data; the `events` table
is append-only (the audit trail): rows are inserted, never updated or deleted.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, validates

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# SQLite only auto-increments INTEGER PRIMARY KEY; PostgreSQL gets a BIGINT identity.
BigId = BigInteger().with_variant(Integer(), "sqlite")


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {dict[str, Any]: JSON, list[Any]: JSON}


class PersonRow(Base):
    __tablename__ = "people"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    directory_id: Mapped[str] = mapped_column(String(128), unique=True)
    email: Mapped[str] = mapped_column(String(320), index=True)
    display_name: Mapped[str] = mapped_column(String(256))
    roles: Mapped[list[Any]] = mapped_column(JSON, default=list)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class PersonIdentityRow(Base):
    """A platform account of a person (Slack user id, Teams AAD object id, console email)."""

    __tablename__ = "person_identities"
    __table_args__ = (UniqueConstraint("platform", "platform_user_id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    person_id: Mapped[int] = mapped_column(ForeignKey("people.id", ondelete="CASCADE"), index=True)
    platform: Mapped[str] = mapped_column(String(16))
    platform_user_id: Mapped[str] = mapped_column(String(256))
    # Where to reach this person directly on the platform (DM channel id, Teams conversation ref).
    direct_address: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    seen_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class ConversationRow(Base):
    __tablename__ = "conversations"

    key: Mapped[str] = mapped_column(String(512), primary_key=True)
    platform: Mapped[str] = mapped_column(String(16))
    person_email: Mapped[str | None] = mapped_column(String(320), nullable=True, index=True)
    flow_id: Mapped[str | None] = mapped_column(String(128), nullable=True)
    step_id: Mapped[str | None] = mapped_column(String(128), nullable=True)
    slots: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # Engine bookkeeping that is not an answer: what the conversation waits for, offered buttons.
    data: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    version: Mapped[int] = mapped_column(Integer, default=0)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


# What `helpdesk report` reads of an event's `data`, kept in real columns so its queries read one index
# and never the JSON (bot/tickets/report.py). Values longer than this are cut (they are flow ids,
# outcomes, ticket refs and technician addresses, all far shorter; an index entry must stay bounded).
REPORT_TEXT_LIMIT = 200


def _text(value: Any) -> str:
    return str(value)[:REPORT_TEXT_LIMIT]


# The event types report_fields derives something for.
REPORT_FIELD_TYPES = ("flow_started", "flow_ended", "action", "satisfaction", "ticket_confirmed", "ticket_resolved",
                      "ticket_claimed", "ticket_reopened", "ticket_assigned", "ticket_relayed")


def report_fields(type_: str | None, data: Mapping[str, Any] | None) -> tuple[str | None, str | None, int | None]:
    """(report_key, report_label, report_value) of an event, with the Python semantics the figures were
    defined with (docs/metrics.md): `str(data.get(k))` (missing or null is "None"), truthiness of
    `data.get(k)`, `isinstance(rating, int)` (a boolean is 1 or 0). Other event types: all None.

    report_key: the flow (flow_started, flow_ended) or the ticket id (`id`: satisfaction, ticket_*);
    report_label: the outcome (flow_ended) or the technician credited (claimed/resolved: `by` or "",
    assigned: `to`, relayed to the requester: `by` or "", relayed the other way: None);
    report_value: 1/0 for a successful action (`ok`) or a fixed ticket (`fixed`), the rating (int or None)."""
    data = data if isinstance(data, Mapping) else {}
    if type_ in ("flow_started", "flow_ended"):
        return _text(data.get("flow")), _text(data.get("outcome")) if type_ == "flow_ended" else None, None
    if type_ == "action":
        return None, None, 1 if data.get("ok") else 0
    if type_ == "satisfaction":
        rating = data.get("rating")
        return _text(data.get("id")), None, int(rating) if isinstance(rating, int) else None
    if type_ == "ticket_confirmed":
        return _text(data.get("id")), None, 1 if data.get("fixed") else 0
    if type_ in ("ticket_resolved", "ticket_claimed", "ticket_reopened", "ticket_assigned", "ticket_relayed"):
        by = _text(data.get("by") or "")
        label = {"ticket_resolved": by, "ticket_claimed": by, "ticket_assigned": _text(data.get("to")),
                 "ticket_relayed": by if data.get("direction") == "to_requester" else None}.get(type_)
        return _text(data.get("id")), label, None
    return None, None, None


def _derived(position: int) -> Any:
    """Column default for inserts that bypass the ORM (bulk `insert(EventRow)`): derived from the row's
    own `type` and `data`."""
    def default(context: Any) -> Any:
        params = context.get_current_parameters()
        return report_fields(params.get("type"), params.get("data"))[position]
    return default


class EventRow(Base):
    """The audit trail: who did what, when, with what result. Append-only; never a secret.

    `report_key`, `report_label` and `report_value` are derived from `type` and `data` (report_fields)
    whenever either is set on a row (recording, retention's scrub, forget) or inserted in bulk, never
    written otherwise; `ix_events_report` holds everything `helpdesk report` reads of an event."""

    __tablename__ = "events"
    __table_args__ = (Index("ix_events_report", "type", "at", "conversation_key", "actor", "report_key",
                            "report_label", "report_value", "id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    type: Mapped[str] = mapped_column(String(64))
    conversation_key: Mapped[str | None] = mapped_column(String(512), nullable=True, index=True)
    actor: Mapped[str | None] = mapped_column(String(320), nullable=True)
    subject: Mapped[str | None] = mapped_column(String(320), nullable=True, index=True)
    result: Mapped[str | None] = mapped_column(String(64), nullable=True)
    data: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    report_key: Mapped[str | None] = mapped_column(String(REPORT_TEXT_LIMIT), nullable=True, default=_derived(0))
    report_label: Mapped[str | None] = mapped_column(String(REPORT_TEXT_LIMIT), nullable=True, default=_derived(1))
    report_value: Mapped[int | None] = mapped_column(Integer, nullable=True, default=_derived(2))

    @validates("type", "data")
    def _derive_report_fields(self, name: str, value: Any) -> Any:
        type_ = value if name == "type" else self.type
        data = value if name == "data" else self.data
        self.report_key, self.report_label, self.report_value = report_fields(type_, data)
        return value


class ProcessedEventRow(Base):
    """Platform event ids already handled, so a redelivery changes nothing."""

    __tablename__ = "processed_events"

    event_id: Mapped[str] = mapped_column(String(512), primary_key=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)


class OutboxRow(Base):
    """A message that must arrive, written in the same transaction as the change that causes it."""

    __tablename__ = "outbox"
    __table_args__ = (Index("ix_outbox_due", "status", "next_attempt_at"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    idempotency_key: Mapped[str] = mapped_column(String(512), unique=True)
    platform: Mapped[str] = mapped_column(String(16))
    address: Mapped[dict[str, Any]] = mapped_column(JSON)
    # What to send: {"kind": "post"|"update"|"delete", "reply": {...}, "update_ref": ...}
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    # Pacing lane (usually the target channel): deliveries in one lane respect its rate.
    lane: Mapped[str] = mapped_column(String(256), default="")
    # Groups rows of one broadcast / ticket so they can be cancelled or counted together.
    group_key: Mapped[str | None] = mapped_column(String(256), nullable=True, index=True)
    status: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    locked_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    locked_by: Mapped[str | None] = mapped_column(String(128), nullable=True)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    # The platform's id of the delivered message (Slack ts, Teams activity id), for edits.
    message_ref: Mapped[str | None] = mapped_column(String(256), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    sent_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class TeamsConversationRow(Base):
    """A Teams conversation the bot has seen (personal chat, channel, group chat): what a proactive
    message needs besides the conversation id. Written by bot/channels/teams on every activity."""

    __tablename__ = "teams_conversations"

    conversation_id: Mapped[str] = mapped_column(String(512), primary_key=True)
    service_url: Mapped[str] = mapped_column(String(512))
    tenant_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    conversation_type: Mapped[str | None] = mapped_column(String(32), nullable=True)
    bot_id: Mapped[str | None] = mapped_column(String(256), nullable=True)
    # Personal chats: the person's Teams id and Entra object id.
    user_id: Mapped[str | None] = mapped_column(String(256), nullable=True)
    aad_object_id: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)
    team_id: Mapped[str | None] = mapped_column(String(256), nullable=True)
    name: Mapped[str | None] = mapped_column(String(256), nullable=True)
    # False once the app was removed (or the connector said the bot is not in the conversation).
    installed: Mapped[bool] = mapped_column(default=True)
    reason: Mapped[str | None] = mapped_column(String(256), nullable=True)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class TeamsActivityRow(Base):
    """Activities the bot sent on Teams: the connector has no idempotency keys, so the outbox asks
    this table whether a message already arrived; the last card is kept for `refresh` invokes."""

    __tablename__ = "teams_activities"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    idempotency_key: Mapped[str | None] = mapped_column(String(512), nullable=True, unique=True)
    conversation_id: Mapped[str] = mapped_column(String(512), index=True)
    activity_id: Mapped[str] = mapped_column(String(256), index=True)
    card: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    deleted: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


# ===== tickets (bot/tickets; migration 0002_tickets) =======================================




class TicketCounterRow(Base):
    """Ticket number allocation: one row per counter, bumped with an atomic UPDATE ... RETURNING so
    ids are unique and gap-free under concurrency on SQLite and PostgreSQL alike."""

    __tablename__ = "ticket_counters"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[int] = mapped_column(Integer)


class TicketRow(Base):
    """A request escalated to technicians. Status: new, claimed, waiting_on_requester, resolved,
    closed, reopened. Claims are conditional UPDATEs on (status, assignee), never read-then-write."""

    __tablename__ = "tickets"
    __table_args__ = (Index("ix_tickets_requester_status", "requester_email", "status"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    ref: Mapped[str] = mapped_column(String(32), unique=True)
    requester_email: Mapped[str] = mapped_column(String(320))
    requester_name: Mapped[str] = mapped_column(String(256))
    opened_by: Mapped[str] = mapped_column(String(320))
    channel: Mapped[str] = mapped_column(String(16))  # platform the request came from
    conversation_key: Mapped[str | None] = mapped_column(String(512), nullable=True)
    flow_id: Mapped[str | None] = mapped_column(String(128), nullable=True)
    category: Mapped[str] = mapped_column(String(64), index=True)
    impact: Mapped[str] = mapped_column(String(16))
    urgency: Mapped[str] = mapped_column(String(16))
    priority: Mapped[str] = mapped_column(String(8))
    status: Mapped[str] = mapped_column(String(32), index=True)
    assignee_email: Mapped[str | None] = mapped_column(String(320), nullable=True, index=True)
    summary: Mapped[str] = mapped_column(Text)
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    tried_articles: Mapped[list[Any]] = mapped_column(JSON, default=list)
    tried_actions: Mapped[list[Any]] = mapped_column(JSON, default=list)
    transcript: Mapped[list[Any]] = mapped_column(JSON, default=list)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    claimed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    # Last technician work on the ticket (claim, reply, note, assign): unworked claims are released.
    worked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    first_response_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    resolved_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    closed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    # The SLA clock: paused while waiting on the requester or resolved; paused minutes accumulate.
    paused_since: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    paused_minutes: Mapped[int] = mapped_column(Integer, default=0)
    first_response_minutes: Mapped[int | None] = mapped_column(Integer, nullable=True)
    resolution_minutes: Mapped[int | None] = mapped_column(Integer, nullable=True)
    fr_reminded_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    fr_breached_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    res_reminded_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    res_breached_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    # When a technician last wrote to the requester (the relay window).
    tech_message_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    fixed: Mapped[bool | None] = mapped_column(nullable=True)
    rating: Mapped[int | None] = mapped_column(Integer, nullable=True)
    reopen_count: Mapped[int] = mapped_column(Integer, default=0)
    # Idempotency keys of the queue posts (one per platform / console technician), for updates.
    queue_posts: Mapped[list[Any]] = mapped_column(JSON, default=list)
    version: Mapped[int] = mapped_column(Integer, default=0)


class TicketNoteRow(Base):
    """The ticket's log: internal notes, relayed messages both ways, requester updates."""

    __tablename__ = "ticket_notes"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id", ondelete="CASCADE"), index=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    author: Mapped[str] = mapped_column(String(320))
    # note (internal) | to_requester | from_requester | update (more details from a flow) | system
    kind: Mapped[str] = mapped_column(String(32))
    text: Mapped[str] = mapped_column(Text)
    data: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
# ===== outages (bot/outages) ====================================================================
# Incidents and maintenance notices, who they went to, who reacted, and the tickets linked to them.
# Delivery itself is the outbox's job: every copy is an outbox row, and a recipient row points at
# it by idempotency key, so the copy's platform message id is the outbox row's `message_ref`.


class IncidentRow(Base):
    __tablename__ = "incidents"
    __table_args__ = (Index("ix_incidents_status", "status"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(16), default="incident")  # incident | maintenance
    # scheduled (maintenance not started) | active | resolved | recalled
    status: Mapped[str] = mapped_column(String(16), default="active")
    service: Mapped[str] = mapped_column(String(200))
    aliases: Mapped[list[Any]] = mapped_column(JSON, default=list)
    keywords: Mapped[list[Any]] = mapped_column(JSON, default=list)
    # Triage label the service belongs to (email, vpn...): links tickets and spikes to it.
    category: Mapped[str | None] = mapped_column(String(64), nullable=True)
    severity: Mapped[str] = mapped_column(String(16), default="major")
    summary: Mapped[str] = mapped_column(Text, default="")
    impact: Mapped[str] = mapped_column(Text, default="")
    workaround: Mapped[str] = mapped_column(Text, default="")
    expected_fix: Mapped[str] = mapped_column(String(200), default="")
    next_update_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    # {"channels": {"slack": ["C1"]}, "dm": "everyone" | "groups" | "channel" | None,
    #  "groups": [...], "member_channel": {"platform":..., "channel":...}}
    audience: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    starts_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    ends_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    reminder_minutes: Mapped[int | None] = mapped_column(Integer, nullable=True)
    reminder_sent_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    # Bumped by every change of the notice's content; update rows carry it in their key.
    version: Mapped[int] = mapped_column(Integer, default=1)
    resolution: Mapped[str] = mapped_column(Text, default="")
    created_by: Mapped[str] = mapped_column(String(320))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    resolved_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    # The admin's live delivery report message (an outbox key) and what it last showed.
    report_key: Mapped[str | None] = mapped_column(String(512), nullable=True)
    report_shown: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    report_version: Mapped[int] = mapped_column(Integer, default=0)


class IncidentRecipientRow(Base):
    """One copy of a notice: an announcement channel or one person's direct message."""

    __tablename__ = "incident_recipients"
    __table_args__ = (UniqueConstraint("incident_id", "recipient_key"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    incident_id: Mapped[int] = mapped_column(ForeignKey("incidents.id", ondelete="CASCADE"), index=True)
    # "channel:<platform>:<conversation id>" or "dm:<platform>:<email>"
    recipient_key: Mapped[str] = mapped_column(String(400))
    kind: Mapped[str] = mapped_column(String(16))  # channel | dm
    platform: Mapped[str] = mapped_column(String(16))
    email: Mapped[str | None] = mapped_column(String(320), nullable=True)
    address: Mapped[dict[str, Any]] = mapped_column(JSON)
    # Idempotency key of the outbox row that posts this copy; its message_ref is the copy's id.
    post_key: Mapped[str] = mapped_column(String(512))
    # The latest edit enqueued for this copy (superseded edits still pending are cancelled).
    last_update_key: Mapped[str | None] = mapped_column(String(512), nullable=True)
    # Copied from the outbox row by the periodic sync: pending | sent | failed | cancelled | recalled
    status: Mapped[str] = mapped_column(String(16), default="pending")
    message_ref: Mapped[str | None] = mapped_column(String(256), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class IncidentPersonRow(Base):
    """A person's reaction to a notice: affected (and wants the resolution DM), acknowledged."""

    __tablename__ = "incident_people"
    __table_args__ = (UniqueConstraint("incident_id", "email"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    incident_id: Mapped[int] = mapped_column(ForeignKey("incidents.id", ondelete="CASCADE"), index=True)
    email: Mapped[str] = mapped_column(String(320))
    platform: Mapped[str] = mapped_column(String(16))
    address: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    affected_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    acknowledged_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    subscribed: Mapped[bool] = mapped_column(default=False)
    notified_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class IncidentTicketRow(Base):
    """A ticket opened about the incident's service while it was active."""

    __tablename__ = "incident_tickets"
    __table_args__ = (UniqueConstraint("incident_id", "ticket_id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    incident_id: Mapped[int] = mapped_column(ForeignKey("incidents.id", ondelete="CASCADE"), index=True)
    ticket_id: Mapped[str] = mapped_column(String(64))
    requester: Mapped[str | None] = mapped_column(String(320), nullable=True)
    linked_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    notified_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    feedback: Mapped[str | None] = mapped_column(String(16), nullable=True)  # fixed | not_fixed


class SharedStateRow(Base):
    """Short-lived state shared by every replica (`SharedState`): verification codes (as salted
    scrypt hashes, never the code), grants, pending identity checks, self-service rate limits."""

    __tablename__ = "shared_state"

    key: Mapped[str] = mapped_column(String(300), primary_key=True)
    value: Mapped[dict[str, Any]] = mapped_column(JSON)
    expires: Mapped[float] = mapped_column(Float, index=True)


class ItsmLinkRow(Base):
    """A ticket that also lives in the help desk's ticket system (bot/itsm): its record there."""

    __tablename__ = "itsm_links"

    ticket_ref: Mapped[str] = mapped_column(String(32), primary_key=True)
    system: Mapped[str] = mapped_column(String(16))
    # Jira: the issue id; ServiceNow: the incident sys_id.
    remote_id: Mapped[str] = mapped_column(String(64), index=True)
    # Jira: the issue key (ITHELP-12); ServiceNow: the incident number (INC0010012).
    remote_key: Mapped[str] = mapped_column(String(64))
    url: Mapped[str] = mapped_column(String(512), default="")
    # The remote record's status as last seen ("open" | "resolved"), so a poll sees changes.
    remote_status: Mapped[str] = mapped_column(String(16), default="open")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class ItsmSeenRow(Base):
    """Remote things already handled (a comment id, a webhook delivery id, a status change), and
    comments the bot wrote itself, so a webhook's echo, a replay or a poll never acts twice."""

    __tablename__ = "itsm_seen"

    system: Mapped[str] = mapped_column(String(16), primary_key=True)
    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)


class ItsmCursorRow(Base):
    """Up to when changed remote records have been polled, per system."""

    __tablename__ = "itsm_cursors"

    system: Mapped[str] = mapped_column(String(16), primary_key=True)
    polled_to: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class InboxRow(Base):
    """Something a platform delivered and we acknowledged: committed BEFORE the ack, handled once.

    Any replica claims a due row under a lease (`FOR UPDATE SKIP LOCKED` on PostgreSQL; a guarded
    UPDATE on SQLite); a crashed replica's rows are claimed again when their lease runs out. The
    `key` is the platform's event key (`slack:<event id>`), so a redelivery is not stored twice."""

    __tablename__ = "inbox"
    __table_args__ = (Index("ix_inbox_due", "status", "locked_until"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    key: Mapped[str] = mapped_column(String(512), unique=True)
    platform: Mapped[str] = mapped_column(String(16))
    # What the channel needs to run the turn again from scratch (parsed, no secrets).
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(16), default="pending")  # pending | done | failed
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    locked_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    locked_by: Mapped[str | None] = mapped_column(String(128), nullable=True)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    done_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    # When the person was told it failed for good: once per message, even if it is re-queued
    # (`helpdesk inbox retry`) and fails again.
    told_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
