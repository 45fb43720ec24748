"""Shared pieces of the Teams channel tests: a small flow set for card mechanics (forms), the demo
directory's people as Teams sees them, and builders of real-shaped activities. The bot itself is
the real stack (tests/channels/conftest.py); end-to-end tests are in test_teams_e2e.py."""

from __future__ import annotations

import copy
import itertools
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx
from starlette.applications import Starlette

from bot.core.models import Person, Role

PAYLOADS = Path(__file__).parent / "payloads" / "teams"
TENANT = "aaaaaaaa-0000-4000-8000-000000000001"
BOT = "28:cccccccc-0000-4000-8000-000000000001"
ALICE_AAD = "0d8f8a1e-0000-4000-8000-000000000001"  # the demo directory's id of alice@example.com
PAYLOAD_AAD = "bbbbbbbb-0000-4000-8000-000000000001"  # the captured payloads' object id
ALICE_MRI = "29:1PLACEHOLDERuserMRI0001"
ALICE_CHAT = "a:1PLACEHOLDERpersonalConversationId0001"
TOM_AAD = "0d8f8a1e-0000-4000-8000-000000000010"  # tom.tech@example.com
TOM_MRI = "29:1PLACEHOLDERuserMRI0010"
CHANNEL = "19:PLACEHOLDERchannel0001@thread.tacv2"
QUEUE = "19:PLACEHOLDERqueue0001@thread.tacv2"

FLOWS: dict[str, str] = {
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
        (directory / name).write_text(text.strip() + "\n", encoding="utf-8")


PEOPLE = {
    ALICE_AAD: Person(ALICE_AAD, "alice@example.com", "Alice Employee"),
    TOM_AAD: Person(TOM_AAD, "tom.tech@example.com", "Tom Technician",
                    roles=frozenset({Role.EMPLOYEE, Role.TECHNICIAN})),
}


_counter = itertools.count(1)


def payload(name: str, service_url: str, **changes: Any) -> dict[str, Any]:
    # The captured payloads' person is Alice of the demo directory.
    data: dict[str, Any] = json.loads((PAYLOADS / name).read_text(encoding="utf-8").replace(PAYLOAD_AAD, ALICE_AAD))
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
