"""The platform-neutral model that crosses every boundary.

Plain, frozen data holding ids and text, never live clients. Channel adapters build an
`Incoming` from a platform payload and turn `Reply` objects back into platform messages; nothing
between them sees an SDK type.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any


class Platform(StrEnum):
    CONSOLE = "console"
    SLACK = "slack"
    TEAMS = "teams"


class Role(StrEnum):
    EMPLOYEE = "employee"
    TECHNICIAN = "technician"
    ADMIN = "admin"


@dataclass(frozen=True, slots=True)
class PlatformUser:
    """Who sent a message, as the platform vouches for it (never taken from message text).

    `email` is what the platform's profile says (Slack `users.info`, the console's `--as`);
    `aad_object_id` is the Entra object id Teams puts on every activity.
    """

    platform: Platform
    user_id: str
    email: str | None = None
    aad_object_id: str | None = None
    display_name: str | None = None


@dataclass(frozen=True, slots=True)
class Person:
    """A directory identity resolved from a platform user."""

    directory_id: str
    email: str
    display_name: str
    roles: frozenset[Role] = frozenset({Role.EMPLOYEE})
    department: str | None = None
    enabled: bool = True

    # An account disabled in the directory has no role, whatever `roles` lists: every role check
    # goes through these two properties.
    @property
    def is_technician(self) -> bool:
        return self.enabled and (Role.TECHNICIAN in self.roles or Role.ADMIN in self.roles)

    @property
    def is_admin(self) -> bool:
        return self.enabled and Role.ADMIN in self.roles


@dataclass(frozen=True, slots=True)
class Address:
    """Where a message goes: a conversation on a platform, optionally a thread in it.

    `conversation_id` is the platform's channel / chat id (Slack `D…`/`C…`, Teams conversation id,
    console: the person's email). `user_id` is set for messages only one person may see.
    """

    platform: Platform
    conversation_id: str
    thread_id: str | None = None
    user_id: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "platform": self.platform.value,
            "conversation_id": self.conversation_id,
            "thread_id": self.thread_id,
            "user_id": self.user_id,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Address:
        return cls(
            platform=Platform(data["platform"]),
            conversation_id=str(data["conversation_id"]),
            thread_id=data.get("thread_id"),
            user_id=data.get("user_id"),
        )


def person_address(platform: Platform, email: str) -> Address:
    """A person's direct conversation when we have not seen it yet: `email:<address>` tells the
    channel to open it at delivery time (Slack users.lookupByEmail + conversations.open...)."""
    return Address(platform, f"email:{email.lower()}")


@dataclass(frozen=True, slots=True)
class Button:
    """A choice offered to the person. `value` is what comes back when it is clicked."""

    label: str
    value: str
    style: str | None = None  # "primary" | "danger" | None


@dataclass(frozen=True, slots=True)
class FormField:
    name: str
    label: str
    kind: str = "text"  # text | multiline | choice
    required: bool = True
    options: tuple[Button, ...] = ()
    pattern: str | None = None
    placeholder: str | None = None
    # (field, value): only asked when that field was answered with that value (the console asks field
    # by field and skips it; a Slack modal or Teams card shows it, labelled as such, and the handler
    # ignores it otherwise).
    only_if: tuple[str, str] | None = None


@dataclass(frozen=True, slots=True)
class Form:
    """Several fields answered at once: a modal on Slack, a card on Teams, prompts on the console."""

    form_id: str
    title: str
    fields: tuple[FormField, ...]
    submit_label: str = "Submit"


@dataclass(frozen=True, slots=True)
class Action:
    """A button click or a form submission, as the platform delivered it."""

    value: str
    form_values: tuple[tuple[str, str], ...] = ()
    message_ref: str | None = None  # platform id of the message whose button was clicked

    @property
    def values(self) -> dict[str, str]:
        return dict(self.form_values)


@dataclass(frozen=True, slots=True)
class Incoming:
    """One thing a person did, in platform-neutral form."""

    platform: Platform
    conversation_key: str
    sender: PlatformUser
    event_id: str
    reply_to: Address
    text: str | None = None
    action: Action | None = None
    received_at: datetime | None = None
    is_direct: bool = True
    # A command typed as `/helpdesk ...` (text after the command name), kept apart from chat text.
    command: str | None = None
    # Where to reach the sender directly, when the channel knows it from a trusted source rather
    # than from the payload (Slack: the person's user id, resolved with conversations.open). When
    # unset, `reply_to` of a direct conversation is used.
    direct_to: Address | None = None


@dataclass(frozen=True, slots=True)
class Reply:
    """Something the bot says. Text is already rendered for the target platform.

    `secret` marks content shown once to its owner (a temporary password): it is sent directly,
    privately, and never written to the outbox, the events table or a log. Its parts are in
    `rich["secret"]` (`label`, `value`, `advice`) so a channel can show the value exactly (no
    markdown touching `*`, `_` or backticks); notification previews, summaries and fallback texts
    of a secret reply say only `SECRET_PREVIEW`.
    """

    text: str
    buttons: tuple[Button, ...] = ()
    form: Form | None = None
    private: bool = False
    secret: bool = False
    template: str | None = None
    context: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)
    # Optional platform-specific rendering (Block Kit blocks, Adaptive Card) keyed by platform.
    rich: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)


# What a notification preview (Slack `text`, Teams `summary` / card `fallbackText`) says of a reply
# that holds a secret: never the secret itself.
SECRET_PREVIEW = "A private message from the help desk bot: open the chat to see it."  # noqa: S105 - no secret


@dataclass(frozen=True, slots=True)
class Outbound:
    """A reply addressed somewhere, ready for a channel to deliver."""

    address: Address
    reply: Reply
    # When set, the channel edits the message it sent earlier under this key instead of posting.
    update_ref: str | None = None
    idempotency_key: str | None = None


# ----- a reply as JSON (outbox rows; channels read them back when they deliver) ----------


def reply_to_json(reply: Reply) -> dict[str, Any]:
    return {
        "text": reply.text,
        "buttons": [{"label": b.label, "value": b.value, "style": b.style} for b in reply.buttons],
        "form": _form_json(reply.form),
        "private": reply.private,
        "template": reply.template,
        "rich": dict(reply.rich),
    }


def _form_json(form: Form | None) -> dict[str, Any] | None:
    if form is None:
        return None
    return {
        "form_id": form.form_id,
        "title": form.title,
        "submit_label": form.submit_label,
        "fields": [
            {"name": f.name, "label": f.label, "kind": f.kind, "required": f.required,
             "options": [{"label": o.label, "value": o.value} for o in f.options],
             "pattern": f.pattern, "placeholder": f.placeholder}
            for f in form.fields
        ],
    }


def reply_from_json(data: Mapping[str, Any]) -> Reply:
    form = data.get("form")
    return Reply(
        text=str(data.get("text", "")),
        buttons=tuple(Button(b["label"], b["value"], b.get("style")) for b in data.get("buttons", [])),
        form=Form(
            form_id=form["form_id"], title=form["title"], submit_label=form.get("submit_label", "Submit"),
            fields=tuple(
                FormField(name=f["name"], label=f["label"], kind=f["kind"], required=f["required"],
                          options=tuple(Button(o["label"], o["value"]) for o in f.get("options", [])),
                          pattern=f.get("pattern"), placeholder=f.get("placeholder"))
                for f in form["fields"]
            ),
        ) if form else None,
        private=bool(data.get("private", False)),
        template=data.get("template"),
        rich=dict(data.get("rich") or {}),
    )
