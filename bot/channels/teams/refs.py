"""Conversation references and sent activities, in the bot's database.

Every activity refreshes the reference of its conversation (service URL, tenant, type; for
personal chats the person's ids), so escalation notices, relays and outage notices can be sent
proactively later. The person's own direct address (`person_identities.direct_address`) is written
by the pipeline; this table adds what Teams needs beside the conversation id.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.channels.teams.translate import ConversationRef
from bot.store.db import utcnow
from bot.store.repos import insert_ignore
from bot.store.tables import PersonIdentityRow, PersonRow, TeamsActivityRow, TeamsConversationRow


class RefStore:
    """`updated_at` is stamped with the real clock on purpose: it only orders references (the most
    recently seen conversation or service URL wins) and no expiry or business rule reads it."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self.sessions = sessions

    async def remember(self, ref: ConversationRef, *, installed: bool | None = None,
                       reason: str | None = None) -> None:
        now = utcnow()
        values = {k: v for k, v in asdict(ref).items() if v is not None}
        async with self.sessions() as session, session.begin():
            inserted = await insert_ignore(session, TeamsConversationRow, {
                **values, "installed": True if installed is None else installed, "reason": reason,
                "updated_at": now}, ["conversation_id"])
            if inserted:
                return
            row = await session.get(TeamsConversationRow, ref.conversation_id, with_for_update=True)
            if row is None:
                return
            for key, value in values.items():
                setattr(row, key, value)
            if installed is not None:
                row.installed = installed
                row.reason = reason
            row.updated_at = now

    async def mark_unreachable(self, conversation_id: str, reason: str) -> None:
        async with self.sessions() as session, session.begin():
            row = await session.get(TeamsConversationRow, conversation_id, with_for_update=True)
            if row is not None:
                row.installed = False
                row.reason = reason[:256]
                row.updated_at = utcnow()

    async def get(self, conversation_id: str) -> TeamsConversationRow | None:
        async with self.sessions() as session:
            return await session.get(TeamsConversationRow, conversation_id)

    async def personal_for(self, *, aad_object_id: str | None = None,
                           email: str | None = None) -> TeamsConversationRow | None:
        """The person's personal chat with the bot, by Entra object id or by directory email."""
        async with self.sessions() as session:
            if aad_object_id:
                row = (await session.execute(
                    select(TeamsConversationRow)
                    .where(TeamsConversationRow.aad_object_id == aad_object_id,
                           TeamsConversationRow.conversation_type == "personal")
                    .order_by(TeamsConversationRow.updated_at.desc()).limit(1)
                )).scalar_one_or_none()
                if row is not None:
                    return row
            if email:
                identity = (await session.execute(
                    select(PersonIdentityRow)
                    .join(PersonRow, PersonRow.id == PersonIdentityRow.person_id)
                    .where(PersonRow.email == email.lower(), PersonIdentityRow.platform == "teams",
                           PersonIdentityRow.direct_address.is_not(None))
                    .order_by(PersonIdentityRow.seen_at.desc()).limit(1)
                )).scalar_one_or_none()
                if identity is not None and identity.direct_address:
                    conversation_id = str(identity.direct_address.get("conversation_id", ""))
                    return await session.get(TeamsConversationRow, conversation_id)
        return None

    async def directory_id(self, email: str) -> str | None:
        """The person's directory id (their Entra object id with the Graph directory)."""
        async with self.sessions() as session:
            row = (await session.execute(
                select(PersonRow).where(PersonRow.email == email.lower()).limit(1))).scalar_one_or_none()
            return row.directory_id if row is not None else None

    async def any_service_url(self, tenant_id: str | None) -> str | None:
        """A service URL the connector gave us for this tenant (Teams uses one per region)."""
        async with self.sessions() as session:
            query = select(TeamsConversationRow.service_url).order_by(TeamsConversationRow.updated_at.desc())
            if tenant_id:
                query = query.where(TeamsConversationRow.tenant_id == tenant_id)
            return (await session.execute(query.limit(1))).scalar_one_or_none()

    # ----- sent activities --------------------------------------------------------------

    async def record_sent(self, *, conversation_id: str, activity_id: str, card: dict[str, Any] | None,
                          idempotency_key: str | None = None) -> None:
        now = utcnow()
        async with self.sessions() as session, session.begin():
            if idempotency_key is not None:
                inserted = await insert_ignore(session, TeamsActivityRow, {
                    "idempotency_key": idempotency_key[:512], "conversation_id": conversation_id,
                    "activity_id": activity_id, "card": card, "deleted": False,
                    "created_at": now, "updated_at": now}, ["idempotency_key"])
                if inserted:
                    return
            session.add(TeamsActivityRow(idempotency_key=None, conversation_id=conversation_id,
                                         activity_id=activity_id, card=card, deleted=False,
                                         created_at=now, updated_at=now))

    async def record_update(self, activity_id: str, card: dict[str, Any] | None, *, deleted: bool = False) -> None:
        async with self.sessions() as session, session.begin():
            rows = (await session.execute(
                select(TeamsActivityRow).where(TeamsActivityRow.activity_id == activity_id))).scalars()
            for row in rows:
                if card is not None:
                    row.card = card
                row.deleted = deleted
                row.updated_at = utcnow()

    async def delivered(self, idempotency_key: str) -> str | None:
        async with self.sessions() as session:
            return (await session.execute(
                select(TeamsActivityRow.activity_id).where(TeamsActivityRow.idempotency_key == idempotency_key[:512])
            )).scalar_one_or_none()

    async def sent_activity(self, activity_id: str) -> TeamsActivityRow | None:
        async with self.sessions() as session:
            return (await session.execute(
                select(TeamsActivityRow).where(TeamsActivityRow.activity_id == activity_id)
                .order_by(TeamsActivityRow.updated_at.desc()).limit(1))).scalar_one_or_none()

    async def is_bot_thread(self, conversation_id: str, root_id: str) -> bool:
        async with self.sessions() as session:
            found = (await session.execute(
                select(TeamsActivityRow.id).where(TeamsActivityRow.activity_id == root_id,
                                                  TeamsActivityRow.conversation_id == conversation_id).limit(1)
            )).scalar_one_or_none()
            return found is not None
