"""Delivering a reply to a Teams address: the one place that decides *where* a message goes.

- `Address(conversation_id="email:<addr>")` (someone we have not necessarily heard from on Teams):
  their personal chat if we know it, else the connector is asked to open one with their Entra
  object id (the directory id). If the app is not installed for them the connector answers 403/404;
  with `teams.proactive_install` the app is then installed for them through Graph
  (bot/channels/teams/install.py) and the chat opened again. Otherwise, or when Graph refuses, the
  message is `Unreachable` with that reason: reported, never retried forever.
- A thread (`thread_id`) is the channel's conversation id with `;messageid=<root>`.
- `Address.user_id` set, or a private reply: the person's personal chat only.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from bot.channels.teams.cards import is_live, message_activity
from bot.channels.teams.connector import ConnectorError, TeamsConnector
from bot.channels.teams.install import AppInstaller, InstallRefused, InstallUnavailable
from bot.channels.teams.refs import RefStore
from bot.channels.teams.translate import ConversationRef, split_thread, thread_conversation_id
from bot.core.models import Address, Reply
from bot.render.renderer import Renderer
from bot.settings import TeamsSettings

log = logging.getLogger("bot.teams.delivery")


class Unreachable(Exception):
    """The person or conversation cannot be reached on Teams (with the reason)."""


@dataclass(frozen=True, slots=True)
class Target:
    service_url: str
    conversation_id: str  # including any `;messageid=` thread suffix
    base_id: str
    personal: bool


class Deliverer:
    def __init__(self, connector: TeamsConnector, refs: RefStore, renderer: Renderer,
                 settings: TeamsSettings, installer: AppInstaller | None = None, directory: Any = None) -> None:
        self.connector = connector
        self.installer = installer
        self.directory = directory  # a bot.graph.directory.Directory: finds people never seen on Teams
        self.refs = refs
        self.renderer = renderer
        self.settings = settings

    # ----- where -------------------------------------------------------------------------

    async def _default_service_url(self, tenant_id: str | None) -> str:
        return await self.refs.any_service_url(tenant_id) or self.settings.service_url

    async def personal_target(self, *, email: str | None = None, aad_object_id: str | None = None,
                              user_id: str | None = None, tenant_id: str | None = None) -> Target:
        """The person's personal chat; opened through the connector when we have not seen it."""
        if email and not aad_object_id:
            # A chat opened earlier for this person (a notice, a private reply) is found by their
            # directory id even before they have written to the bot themselves.
            aad_object_id = await self.refs.directory_id(email)
        row = await self.refs.personal_for(aad_object_id=aad_object_id, email=email)
        if row is not None and row.installed:
            return Target(row.service_url, row.conversation_id, row.conversation_id, True)
        if row is not None and not row.installed:
            raise Unreachable(f"not reachable on Teams: {row.reason or 'the app was removed from the chat'}")
        member = user_id or aad_object_id or (await self._directory_id(email) if email else None)
        who = email or aad_object_id or user_id or "that person"
        if not member:
            raise Unreachable(f"not reachable on Teams: {who} is not in the directory and has never "
                              "written to the bot")
        tenant = tenant_id or self.settings.tenant_id or None
        service_url = await self._default_service_url(tenant)
        bot_id = f"28:{self.settings.app_id}" if self.settings.app_id else None
        try:
            conversation_id = await self.connector.create_personal(service_url, tenant_id=tenant, bot_id=bot_id,
                                                                   member_id=member)
        except ConnectorError as exc:
            if exc.refused:
                raise Unreachable(f"not reachable on Teams: {exc}") from None
            if not (exc.unreachable or (exc.status is not None and 400 <= exc.status < 500 and not exc.transient)):
                raise
            conversation_id = await self._install_and_open(exc, service_url, tenant=tenant, bot_id=bot_id,
                                                           member=member, who=who)
        if not conversation_id:
            raise Unreachable(f"not reachable on Teams: the connector opened no chat with {who}")
        await self.refs.remember(ConversationRef(conversation_id=conversation_id, service_url=service_url,
                                                 tenant_id=tenant, conversation_type="personal", bot_id=bot_id,
                                                 user_id=user_id, aad_object_id=aad_object_id
                                                 or (member if not member.startswith("29:") else None)))
        return Target(service_url, conversation_id, conversation_id, True)

    async def _directory_id(self, email: str) -> str | None:
        """Their Entra object id: from people the bot has seen, else from the directory."""
        known = await self.refs.directory_id(email)
        if known or self.directory is None:
            return known
        try:
            user = await self.directory.find_user_by_email(email)
        except Exception as exc:  # the directory is down: as if unknown, said in the log
            log.warning("Teams: directory lookup for a proactive message failed: %s", type(exc).__name__)
            return None
        return str(user.id) if user is not None and getattr(user, "enabled", True) else None

    async def _install_and_open(self, exc: ConnectorError, service_url: str, *, tenant: str | None,
                                bot_id: str | None, member: str, who: str) -> str:
        """The connector cannot open a chat with someone who has not installed the app: install it
        for them through Graph (when allowed), then open the chat again."""
        not_installed = (f"not reachable on Teams: {who} has not installed the help desk app "
                         f"(connector {exc.status})")
        if self.installer is None or member.startswith("29:"):
            log.warning("Teams: a person is not reachable (app not installed; proactive install %s)",
                        "off" if self.installer is None else "needs their Entra object id")
            raise Unreachable(not_installed) from None
        try:
            outcome = await self.installer.install(member)
        except InstallRefused as refused:
            log.warning("Teams: a person is not reachable: %s", refused)
            raise Unreachable(f"{not_installed}; installing it was refused: {refused}") from None
        except InstallUnavailable as later:
            raise ConnectorError(503, str(later)) from None  # transient: the outbox tries again later
        try:
            conversation_id = await self.connector.create_personal(service_url, tenant_id=tenant, bot_id=bot_id,
                                                                   member_id=member)
        except ConnectorError as again:
            if again.transient and not again.refused:
                raise
            log.warning("Teams: a person is still not reachable after installing the app (connector %s)",
                        again.status)
            raise Unreachable(f"not reachable on Teams: the app was installed for {who} ({outcome}) but the "
                              f"connector still refused the chat (connector {again.status})") from None
        log.info("Teams: app %s for a person, personal chat opened", outcome)
        return conversation_id

    async def target(self, address: Address) -> Target:
        if address.conversation_id.startswith("email:"):
            return await self.personal_target(email=address.conversation_id.removeprefix("email:"))
        if address.user_id:
            return await self.personal_target(user_id=address.user_id)
        base, thread = split_thread(address.conversation_id)
        thread = address.thread_id or thread
        row = await self.refs.get(base)
        if row is not None and not row.installed:
            raise Unreachable(f"not reachable on Teams: {row.reason or 'the app was removed'}")
        service_url = row.service_url if row is not None else await self._default_service_url(
            self.settings.tenant_id or None)
        personal = row.conversation_type == "personal" if row is not None else base.startswith("a:")
        return Target(service_url, thread_conversation_id(base, thread), base, personal)

    # ----- what --------------------------------------------------------------------------

    def activity(self, reply: Reply) -> dict[str, Any]:
        return message_activity(self.renderer, reply)

    async def post(self, target: Target, reply: Reply, *, idempotency_key: str | None = None) -> str:
        activity = self.activity(reply)
        activity_id = str(await self._guard(target, self.connector.post(target.service_url,
                                                                        target.conversation_id, activity)))
        card = activity["attachments"][0]["content"] if is_live(reply) else None
        if activity_id and not reply.secret:
            await self.refs.record_sent(conversation_id=target.base_id, activity_id=activity_id, card=card,
                                        idempotency_key=idempotency_key)
        return activity_id

    async def update(self, target: Target, activity_id: str, reply: Reply) -> str:
        activity = self.activity(reply)
        await self._guard(target, self.connector.update(target.service_url, target.conversation_id, activity_id,
                                                        activity))
        await self.refs.record_update(activity_id, activity["attachments"][0]["content"])
        return activity_id

    async def delete(self, target: Target, activity_id: str) -> None:
        try:
            await self._guard(target, self.connector.delete(target.service_url, target.conversation_id,
                                                            activity_id))
        except ConnectorError as exc:
            if exc.status != 404:  # already gone is what we wanted
                raise
        await self.refs.record_update(activity_id, None, deleted=True)

    async def _guard(self, target: Target, call: Any) -> Any:
        """A 403 in a personal chat means the person removed or blocked the app: remember it so
        later notices report it at once instead of trying again."""
        try:
            return await call
        except ConnectorError as exc:
            if exc.status == 403 and target.personal:
                await self.refs.mark_unreachable(target.base_id, f"the app is not installed or was blocked "
                                                                 f"(connector {exc.status})")
            raise
