"""Repositories and the unit of work: one transaction per handled message.

State, audit events and outbox rows are written together: a crash before commit leaves nothing,
after commit everything. Conversation rows are locked (`SELECT ... FOR UPDATE` on PostgreSQL,
`BEGIN IMMEDIATE` on SQLite) and saved with an optimistic version check as well, so two messages
of one conversation never interleave, on any number of replicas.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from bot.core.models import Address, Outbound, Person, PlatformUser

# How a reply is kept in an outbox row: defined with the models (channels read it back); re-exported.
from bot.core.models import reply_from_json as reply_from_json
from bot.core.models import reply_to_json as reply_to_json
from bot.engine.state import ConversationState
from bot.store.tables import (
    ConversationRow,
    EventRow,
    OutboxRow,
    PersonIdentityRow,
    PersonRow,
    ProcessedEventRow,
    SharedStateRow,
)


class ConcurrentUpdate(Exception):
    """The conversation changed under us (should not happen under the row lock)."""


def _upsert_insert(session: AsyncSession, table: Any) -> Any:
    """An INSERT that supports ON CONFLICT, for the session's database (SQLite or PostgreSQL)."""
    dialect = session.bind.dialect.name if session.bind is not None else "sqlite"
    module: Any = postgresql if dialect == "postgresql" else sqlite
    return module.insert(table)


async def insert_ignore(session: AsyncSession, table: Any, values: Mapping[str, Any],
                        conflict: Sequence[str]) -> bool:
    """INSERT ... ON CONFLICT DO NOTHING on either database; True if a row was inserted."""
    statement = _upsert_insert(session, table).values(**values).on_conflict_do_nothing(index_elements=list(conflict))
    result: Any = await session.execute(statement)
    return bool(result.rowcount)


class UnitOfWork:
    """The transaction of one handled message (or one command), with what it recorded."""

    def __init__(self, session: AsyncSession, *, now: datetime,
                 conversation_key: str | None = None, actor: str | None = None) -> None:
        # `now` is required: the caller's injected clock governs everything this transaction
        # records (a default of the real clock let rows and the worker that reads them disagree).
        self.session = session
        self.now = now
        self.conversation_key = conversation_key
        self.actor = actor
        self.events: list[dict[str, Any]] = []
        self.enqueued: list[OutboxRow] = []

    # -- dedup --

    async def first_time(self, event_id: str) -> bool:
        """Record a platform event id; False when it was already handled (a redelivery)."""
        return await insert_ignore(self.session, ProcessedEventRow,
                                   {"event_id": event_id[:512], "at": self.now}, ["event_id"])

    # -- audit trail --

    def emit(self, type: str, *, subject: str | None = None, result: str | None = None,
             actor: str | None = None, **data: Any) -> dict[str, Any]:
        row = EventRow(at=self.now, type=type, conversation_key=self.conversation_key,
                       actor=actor or self.actor, subject=subject, result=result, data=data)
        self.session.add(row)
        event = {"type": type, **data}
        self.events.append(event)
        return event

    # -- outbox --

    def enqueue(self, outbound: Outbound, *, idempotency_key: str, lane: str | None = None,
                group_key: str | None = None, kind: str = "post") -> OutboxRow:
        if outbound.reply.secret:
            raise ValueError("a secret is never written to the outbox")
        row = OutboxRow(
            idempotency_key=idempotency_key[:512],
            platform=outbound.address.platform.value,
            address=outbound.address.to_json(),
            payload={"kind": kind, "reply": reply_to_json(outbound.reply), "update_ref": outbound.update_ref},
            lane=lane or f"{outbound.address.platform.value}:{outbound.address.conversation_id}",
            group_key=group_key,
            status="pending",
            attempts=0,
            next_attempt_at=self.now,
            created_at=self.now,
        )
        self.session.add(row)
        self.enqueued.append(row)
        return row

    def enqueue_call(self, platform: str, target: Mapping[str, Any], payload: Mapping[str, Any], *,
                     idempotency_key: str, lane: str, group_key: str | None = None) -> OutboxRow:
        """An outbound call that is not a chat message (a ticket-system update, bot/itsm), delivered
        by the outbox sender registered for `platform`, exactly like a message."""
        row = OutboxRow(
            idempotency_key=idempotency_key[:512], platform=platform, address=dict(target),
            payload={"kind": "call", **payload}, lane=lane[:256], group_key=group_key, status="pending",
            attempts=0, next_attempt_at=self.now, created_at=self.now,
        )
        self.session.add(row)
        self.enqueued.append(row)
        return row

    # -- conversations --

    async def lock_conversation(self, key: str, platform: str) -> ConversationState:
        await insert_ignore(self.session, ConversationRow, {
            "key": key, "platform": platform, "slots": {}, "data": {}, "version": 0, "updated_at": self.now,
        }, ["key"])
        row = (await self.session.execute(
            select(ConversationRow).where(ConversationRow.key == key).with_for_update()
        )).scalar_one()
        await self.session.refresh(row)
        flow_updated = row.updated_at if row.flow_id else None
        return ConversationState.from_data(row.flow_id, row.step_id, row.slots or {}, row.data or {},
                                           row.version, _aware(flow_updated))

    async def save_conversation(self, key: str, state: ConversationState, expected_version: int,
                                person_email: str | None, expires_at: datetime | None) -> None:
        result: Any = await self.session.execute(
            update(ConversationRow)
            .where(ConversationRow.key == key, ConversationRow.version == expected_version)
            .values(flow_id=state.flow_id, step_id=state.step_id, slots=dict(state.slots), data=state.data(),
                    version=expected_version + 1, updated_at=state.updated_at or self.now,
                    person_email=person_email, expires_at=expires_at)
            .execution_options(synchronize_session=False)
        )
        if result.rowcount != 1:
            raise ConcurrentUpdate(key)

    # -- people --

    async def remember_person(self, person: Person, user: PlatformUser, direct: Address | None) -> None:
        row = (await self.session.execute(
            select(PersonRow).where(PersonRow.directory_id == person.directory_id)
        )).scalar_one_or_none()
        roles = sorted(r.value for r in person.roles)
        if row is None:
            await insert_ignore(self.session, PersonRow, {
                "directory_id": person.directory_id, "email": person.email, "display_name": person.display_name,
                "roles": roles, "created_at": self.now, "updated_at": self.now,
            }, ["directory_id"])
            row = (await self.session.execute(
                select(PersonRow).where(PersonRow.directory_id == person.directory_id)
            )).scalar_one()
        elif (row.email, row.display_name, row.roles) != (person.email, person.display_name, roles):
            row.email, row.display_name, row.roles, row.updated_at = person.email, person.display_name, roles, self.now
        identity = (await self.session.execute(
            select(PersonIdentityRow).where(PersonIdentityRow.platform == user.platform.value,
                                            PersonIdentityRow.platform_user_id == user.user_id)
        )).scalar_one_or_none()
        address = direct.to_json() if direct is not None else None
        if identity is None:
            await insert_ignore(self.session, PersonIdentityRow, {
                "person_id": row.id, "platform": user.platform.value, "platform_user_id": user.user_id,
                "direct_address": address, "seen_at": self.now,
            }, ["platform", "platform_user_id"])
        else:
            identity.person_id = row.id
            identity.seen_at = self.now
            if address is not None:
                identity.direct_address = address

    async def direct_address(self, email: str, platform: str | None = None) -> Address | None:
        """Where to reach a person directly: the most recently seen platform account with a DM."""
        query = (
            select(PersonIdentityRow)
            .join(PersonRow, PersonRow.id == PersonIdentityRow.person_id)
            .where(PersonRow.email == email.lower(), PersonIdentityRow.direct_address.is_not(None))
            .order_by(PersonIdentityRow.seen_at.desc())
        )
        if platform:
            query = query.where(PersonIdentityRow.platform == platform)
        identity = (await self.session.execute(query.limit(1))).scalar_one_or_none()
        if identity is None or identity.direct_address is None:
            return None
        return Address.from_json(identity.direct_address)


def _aware(value: datetime | None) -> datetime | None:
    """SQLite returns naive datetimes; everything here is UTC."""
    from datetime import UTC

    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=UTC)


class SqlSharedState:
    """`SharedState` in the `shared_state` table, inside the caller's transaction: what an action
    writes commits or rolls back with the turn, and every replica reads the same rows.

    `clock` (epoch seconds) judges expiry. It has no default: the app's injected clock (or the
    turn's `UnitOfWork.now`) must govern it, never the real clock behind a fake one."""

    def __init__(self, session: AsyncSession, clock: Callable[[], float]) -> None:
        self.session = session
        self.clock = clock

    async def get(self, key: str) -> dict[str, Any] | None:
        # FOR UPDATE (PostgreSQL): a read-modify-write (a code's attempts, a rate window) by two
        # replicas at once is serialised; SQLite's BEGIN IMMEDIATE already serialises writers.
        row = (await self.session.execute(
            select(SharedStateRow.value, SharedStateRow.expires).where(SharedStateRow.key == key).with_for_update()
        )).first()
        if row is None:
            return None
        if row.expires <= self.clock():
            await self.delete(key)
            return None
        return dict(row.value)

    async def put(self, key: str, value: dict[str, Any], expires: float) -> None:
        statement = _upsert_insert(self.session, SharedStateRow).values(key=key, value=value, expires=expires)
        statement = statement.on_conflict_do_update(
            index_elements=["key"], set_={"value": statement.excluded.value, "expires": statement.excluded.expires}
        )
        await self.session.execute(statement)

    async def delete(self, key: str) -> None:
        await self.session.execute(delete(SharedStateRow).where(SharedStateRow.key == key))

    async def purge_expired(self) -> int:
        result: Any = await self.session.execute(delete(SharedStateRow).where(SharedStateRow.expires <= self.clock()))
        return int(result.rowcount or 0)
