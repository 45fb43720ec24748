"""The console channel: a terminal conversation with the bot. Like Slack or Teams, it only
translates: typed lines become `Incoming`, replies become text with numbered choices, forms
become one prompt per field."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from bot.core.models import Action, Address, Button, Form, Incoming, Platform, PlatformUser, Reply, reply_from_json
from bot.core.ports import Delivery, Undeliverable

COMMAND_PREFIX = "/helpdesk"


def conversation_key(email: str) -> str:
    return f"console:{email.lower()}"


def person_of(address: Mapping[str, Any]) -> str:
    """The email a console address belongs to (`alice@x` or `email:alice@x`)."""
    return str(address.get("conversation_id", "")).removeprefix("email:").lower()


def lanes_for(email: str) -> list[str]:
    return [f"console:{email.lower()}", f"console:email:{email.lower()}"]


def _incoming(email: str, *, text: str | None = None, action: Action | None = None,
              event_id: str | None = None, thread: str | None = None) -> Incoming:
    email = email.lower()
    command = None
    if text is not None and text.strip().lower().startswith(COMMAND_PREFIX):
        command = text.strip()[len(COMMAND_PREFIX):].strip()
    return Incoming(
        platform=Platform.CONSOLE,
        conversation_key=conversation_key(email),
        sender=PlatformUser(Platform.CONSOLE, email, email=email),
        event_id=event_id or uuid.uuid4().hex,
        reply_to=Address(Platform.CONSOLE, email, thread_id=thread),
        text=text,
        action=action,
        command=command,
    )


def text_incoming(email: str, text: str, *, event_id: str | None = None) -> Incoming:
    return _incoming(email, text=text, event_id=event_id)


def click_incoming(email: str, value: str, *, event_id: str | None = None) -> Incoming:
    return _incoming(email, action=Action(value=value), event_id=event_id)


def form_incoming(email: str, form: Form, values: Mapping[str, str], *, event_id: str | None = None) -> Incoming:
    return _incoming(email, action=Action(value=f"form:{form.form_id}", form_values=tuple(values.items())),
                     event_id=event_id)


def format_reply(reply: Reply) -> str:
    lines = [reply.text]
    if reply.private:
        lines[0] = "(only you can see this) " + lines[0]
    if reply.buttons:
        lines.append("   " + "   ".join(f"[{n}] {b.label}" for n, b in enumerate(reply.buttons, 1)))
    return "\n".join(line for line in lines if line)


def pick_button(buttons: Sequence[Button], typed: str) -> Button | None:
    """A number or a label typed at the prompt, when the last reply offered buttons."""
    said = typed.strip().lower()
    if said.isdigit() and 1 <= int(said) <= len(buttons):
        return buttons[int(said) - 1]
    matches = [b for b in buttons if b.label.lower() == said]
    return matches[0] if len(matches) == 1 else None


class ConsoleSender:
    """Outbox sender for console people: hands each message to a callback (print, or the simulate
    event stream). Console delivery cannot be half-done, so nothing is ever found delivered twice."""

    def __init__(self, deliver: Any) -> None:
        self._deliver = deliver
        self._count = 0

    async def send(self, delivery: Delivery) -> str | None:
        email = person_of(delivery.address)
        if not email:
            raise Undeliverable("no console person in the address")
        payload = delivery.payload
        reply = reply_from_json(payload.get("reply", {}))
        await self._deliver(email, reply, payload.get("kind", "post"), delivery)
        self._count += 1
        return payload.get("update_ref") or f"console-{delivery.id}"

    async def find_delivered(self, delivery: Delivery) -> str | None:
        return None
