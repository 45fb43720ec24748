"""Shared pieces of the Teams channel tests: a bot wired to the Bot Connector stand-in, fakes for
the directory, actions, knowledge base and ticket desk (other issues build the real ones; these
keep the Teams tests independent of them), and builders of real-shaped activities."""

from __future__ import annotations

import copy
import itertools
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import select
from starlette.applications import Starlette

from bot.core.models import Address, Button, Outbound, Person, Platform, PlatformUser, Reply, Role
from bot.core.pipeline import Turn
from bot.core.ports import ActionContext, ActionOutcome, ActionRequest, KbHit, KbResult
from bot.engine.engine import OpenTicket, TicketAnswer
from bot.store.tables import OutboxRow

PAYLOADS = Path(__file__).parent / "payloads" / "teams"
TENANT = "aaaaaaaa-0000-4000-8000-000000000001"
BOT = "28:cccccccc-0000-4000-8000-000000000001"
ALICE_AAD = "bbbbbbbb-0000-4000-8000-000000000001"
ALICE_MRI = "29:1PLACEHOLDERuserMRI0001"
ALICE_CHAT = "a:1PLACEHOLDERpersonalConversationId0001"
TOM_AAD = "bbbbbbbb-0000-4000-8000-000000000010"
TOM_MRI = "29:1PLACEHOLDERuserMRI0010"
CHANNEL = "19:PLACEHOLDERchannel0001@thread.tacv2"
QUEUE = "19:PLACEHOLDERqueue0001@thread.tacv2"
SECRET = "Tmp-Pa55-XYZZY-42"

FLOWS: dict[str, str] = {
    "password_reset.yaml": """
id: password_reset
title: Password reset
category: password_reset
triggers:
  examples: ["forgot my password", "reset my password", "password expired"]
  keywords: [password]
steps:
  - id: confirm
    ask: null
    kind: ask
    text: "Shall I reset the password of {{ person.email if person is defined else 'your account' }}?"
    input: choice
    slot: go
    choices:
      - {label: "Yes, reset it", value: "yes"}
      - {label: "No", value: "no", next: stop}
  - id: reset
    kind: action
    action: reset_password
    on_success: done
  - id: done
    kind: end
    text: "Done. Sign in with the temporary password and choose a new one."
    outcome: resolved
  - id: stop
    kind: end
    text: "OK, nothing changed."
    outcome: abandoned
""",
    "vpn.yaml": """
id: vpn
title: VPN
category: vpn
triggers:
  examples: ["vpn won't connect", "vpn is not working", "cannot connect to vpn"]
  keywords: [vpn]
steps:
  - id: search
    kind: kb
    on_unsolved: escalate
  - id: escalate
    kind: escalate
    summary: "VPN: {{ first_message }}"
""",
    "hardware.yaml": """
id: hardware
title: Hardware
category: hardware
triggers:
  examples: ["my laptop is broken", "broken monitor"]
  keywords: [laptop, monitor, broken]
steps:
  - id: details
    kind: ask
    text: "Tell me about the device."
    input: form
    title: Device details
    fields:
      - name: device
        label: Device
        kind: choice
        options: [{label: Laptop, value: laptop}, {label: Monitor, value: monitor}]
      - {name: tag, label: Asset tag, pattern: "^[A-Z]{2}-[0-9]+$"}
  - id: thanks
    kind: end
    text: "Thanks, noted your {{ device }} ({{ tag }})."
    outcome: resolved
""",
}


def write_flows(directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for name, text in FLOWS.items():
        lines = [line for line in text.strip().splitlines() if "ask: null" not in line]
        (directory / name).write_text("\n".join(lines) + "\n", encoding="utf-8")


PEOPLE = {
    ALICE_AAD: Person("0d8f8a1e-0000-4000-8000-000000000001", "alice@example.com", "Alice Employee"),
    TOM_AAD: Person("0d8f8a1e-0000-4000-8000-000000000010", "tom.tech@example.com", "Tom Technician",
                    roles=frozenset({Role.EMPLOYEE, Role.TECHNICIAN})),
}


class FakeResolver:
    """Resolves by the activity's Entra object id (what the Graph directory does); by email for the
    console. Never by anything typed."""

    async def resolve(self, user: PlatformUser) -> Person | None:
        if user.aad_object_id:
            return PEOPLE.get(user.aad_object_id)
        for person in PEOPLE.values():
            if user.email and person.email == user.email.lower():
                return person
        return None


class FakeActions:
    def names(self) -> frozenset[str]:
        return frozenset({"reset_password"})

    async def run(self, request: ActionRequest, ctx: ActionContext) -> ActionOutcome:
        ctx.emit("action", name=request.name, ok=True, code="done")
        return ActionOutcome(ok=True, code="done", message="Password reset.", secret=SECRET,
                             data={"secret_label": "Your temporary password"})


class FakeKb:
    def search(self, query: str, limit: int = 3, category: str | None = None) -> KbResult:
        hits = (KbHit("kb-vpn", "Fix VPN connection errors", "Restart the VPN client", 0.9),)
        return KbResult(query=query, hits=hits, confidence="high")

    def article_ids(self) -> frozenset[str]:
        return frozenset({"kb-vpn"})

    def render_article(self, article_id: str) -> Mapping[str, Any] | None:
        if article_id != "kb-vpn":
            return None
        return {"title": "Fix VPN connection errors", "summary": "Restart the VPN client",
                "sections": [{"heading": "Steps", "body": "1. Quit the client. 2. Start it again."}]}


@dataclass
class FakeDesk:
    """Emulates the tickets issue's queue behaviour through the outbox: a card in the queue channel,
    Claim/Resolve updating it in place, and technician replies in the card's thread relayed."""

    queue: str = QUEUE
    tickets: dict[str, dict[str, Any]] = field(default_factory=dict)
    _ids: Any = field(default_factory=lambda: itertools.count(1))

    def card(self, ticket_id: str) -> Reply:
        ticket = self.tickets[ticket_id]
        status = ticket["status"]
        buttons: tuple[Button, ...] = ()
        if status == "new":
            buttons = (Button("Claim", f"ticket:claim:{ticket_id}", "primary"),
                       Button("Resolve", f"ticket:resolve:{ticket_id}"))
        elif status == "claimed":
            buttons = (Button("Resolve", f"ticket:resolve:{ticket_id}", "primary"),)
        holder = f" · claimed by {ticket['holder']}" if ticket.get("holder") else ""
        return Reply(text=f"**Ticket {ticket_id}** ({status}{holder})\n\n{ticket['summary']}", buttons=buttons,
                     template="ticket_card")

    async def open_for_flow(self, turn: Turn, request: OpenTicket, summary: str) -> TicketAnswer:
        ticket_id = f"HD-{next(self._ids)}"
        self.tickets[ticket_id] = {"status": "new", "summary": summary, "requester": turn.person.email}
        turn.emit("ticket_created", id=ticket_id, category=request.category, priority="medium")
        turn.send(Outbound(Address(Platform.TEAMS, self.queue), self.card(ticket_id)),
                  idempotency_key=f"ticket:{ticket_id}:post", group_key=f"ticket:{ticket_id}")
        return TicketAnswer(ticket_id, "medium", "within 4 business hours")

    async def handle(self, turn: Turn) -> bool:
        action = turn.incoming.action
        if action is not None and action.value.startswith("ticket:"):
            _, verb, ticket_id = action.value.split(":", 2)
            ticket = self.tickets[ticket_id]
            ticket["status"] = {"claim": "claimed", "resolve": "resolved"}[verb]
            ticket["holder"] = turn.person.display_name
            turn.emit(f"ticket_{verb}ed" if verb == "claim" else "ticket_resolved", id=ticket_id)
            turn.send(Outbound(Address(Platform.TEAMS, self.queue), self.card(ticket_id),
                               update_ref=f"ticket:{ticket_id}:post"),
                      idempotency_key=f"ticket:{ticket_id}:{verb}:{turn.incoming.event_id}", kind="update")
            employee = await turn.uow.direct_address(ticket["requester"])
            if employee is not None:
                turn.send(Outbound(employee, Reply(text=f"{turn.person.display_name} has {verb}ed {ticket_id}.")),
                          idempotency_key=f"ticket:{ticket_id}:{verb}:notify")
            return True
        thread = turn.incoming.reply_to.thread_id
        if turn.incoming.text and thread and not turn.incoming.is_direct:
            key = (await turn.uow.session.execute(
                select(OutboxRow.idempotency_key).where(OutboxRow.message_ref == thread).limit(1))).scalar()
            if not key or not key.startswith("ticket:"):
                return False
            ticket_id = key.split(":")[1]
            employee = await turn.uow.direct_address(self.tickets[ticket_id]["requester"])
            assert employee is not None
            turn.emit("ticket_relayed", id=ticket_id)
            turn.send(Outbound(employee, Reply(text=f"{turn.person.display_name}: {turn.incoming.text}")),
                      idempotency_key=f"relay:{turn.incoming.event_id}")
            return True
        return False


_counter = itertools.count(1)


def payload(name: str, service_url: str, **changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((PAYLOADS / name).read_text(encoding="utf-8"))
    data = copy.deepcopy(data)
    data["serviceUrl"] = service_url
    data["id"] = f"act-{next(_counter)}"
    data.update(changes)
    return data


def personal_message(service_url: str, text: str, *, aad: str = ALICE_AAD, mri: str = ALICE_MRI,
                     conversation: str = ALICE_CHAT) -> dict[str, Any]:
    data = payload("teams_14_message_personal.json", service_url, text=text)
    data["from"] = {"id": mri, "name": "Alice Employee", "aadObjectId": aad}
    data["conversation"] = {"conversationType": "personal", "id": conversation, "tenantId": TENANT}
    data.pop("attachments", None)
    return data


def personal_submit(service_url: str, data_value: Mapping[str, Any], **kwargs: Any) -> dict[str, Any]:
    """A plain Action.Submit: a message with no text and `value` = the action's data + inputs."""
    data = personal_message(service_url, "", **kwargs)
    data.pop("text", None)
    data["value"] = dict(data_value)
    data["replyToId"] = "1700000000001"
    return data


def channel_mention(service_url: str, text: str, *, root: str = "1759881511856", aad: str = ALICE_AAD,
                    mri: str = ALICE_MRI, channel: str = CHANNEL) -> dict[str, Any]:
    data = payload("teams_15_message_channel_mention.json", service_url,
                   text=f"<at>ridotest</at> {text}")
    data["from"] = {"id": mri, "name": "Alice Employee" if aad == ALICE_AAD else "Tom Technician",
                    "aadObjectId": aad}
    data["conversation"]["id"] = f"{channel};messageid={root}"
    data["channelData"]["channel"]["id"] = channel
    data.pop("attachments", None)
    return data


def thread_reply(service_url: str, text: str, *, root: str, channel: str = QUEUE, aad: str = TOM_AAD,
                 mri: str = TOM_MRI) -> dict[str, Any]:
    """A technician's reply in a card's thread, without @mention (RSC ChannelMessage.Read.Group)."""
    data = channel_mention(service_url, "x", root=root, aad=aad, mri=mri, channel=channel)
    data["text"] = text
    data["entities"] = [e for e in data["entities"] if e.get("type") != "mention"]
    return data


def invoke_execute(service_url: str, value: str, *, conversation: str, reply_to: str, aad: str = TOM_AAD,
                   mri: str = TOM_MRI, verb: str = "click", personal: bool = False) -> dict[str, Any]:
    data = payload("teams_17_invoke_adaptiveCard_action.json", service_url)
    data["from"] = {"id": mri, "name": "Tom Technician", "aadObjectId": aad}
    data["conversation"] = {"id": conversation, "conversationType": "personal" if personal else "channel",
                            "tenantId": TENANT}
    data["value"] = {"action": {"type": "Action.Execute", "verb": verb,
                                "data": {"verb": verb, "value": value}}, "trigger": "manual"}
    data["replyToId"] = reply_to
    return data


def asgi_client(routes: list[Any]) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=Starlette(routes=routes)), base_url="http://bot")
