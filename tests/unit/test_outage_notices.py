"""Outage notices end to end through the pipeline (console channel) and the outbox worker:
live edits of every copy, recall, reactions, outage-aware triage, spikes, linked tickets, maintenance."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from bot.channels.console.channel import click_incoming, text_incoming
from bot.channels.console.simulate import FakeClock
from bot.core.ports import ChannelUnreachable
from bot.outages.audience import ChannelMembersAudience, Member, StaticAudience
from bot.outages.service import OutageService
from bot.outbox.worker import Delivery, OutboxWorker
from bot.store.migrate import upgrade
from bot.store.repos import UnitOfWork
from bot.store.tables import IncidentRecipientRow, IncidentTicketRow, OutboxRow
from tests.helpers import GREETING_FLOW, settings_with_flows

pytestmark = pytest.mark.clock  # runs again with the system clock a year ahead (.ci/run)

EMAIL_FLOW = """
id: email
title: Email problems
category: email
triggers:
  examples: ["outlook is slow", "my email is not arriving", "mailbox full", "outlook keeps crashing"]
  keywords: [outlook, email, mailbox]
steps:
  - id: which
    kind: ask
    text: Which device are you using?
    slot: device
  - id: done
    kind: end
    text: Thanks.
    outcome: resolved
"""

MONITOR_FLOW = """
id: hardware
title: Hardware
category: hardware
triggers:
  examples: ["my monitor is broken", "keyboard does not work", "broken laptop screen"]
  keywords: [monitor, keyboard, laptop]
steps:
  - id: done
    kind: end
    text: Noted.
    outcome: resolved
"""

OUTAGE_FLOW = """
id: outage_check
title: Known outages
category: outage_check
triggers:
  examples: ["is anything down", "is there an outage", "any known issues"]
  keywords: [down, outage]
steps:
  - id: done
    kind: end
    text: No known outage.
    outcome: resolved
"""

ADMIN = "ada.admin@example.com"
DEMO = ["alice@example.com", "bob@example.com", "tom.tech@example.com", "tina.tech@example.com",
        "theo.tech@example.com"]
PEOPLE = DEMO + [f"user{i}@example.com" for i in range(35)]


@dataclass
class Copies:
    """A console 'platform' that keeps every delivered message by id, as Slack would."""

    messages: dict[str, str] = field(default_factory=dict)  # message ref -> current text
    owner: dict[str, str] = field(default_factory=dict)  # message ref -> conversation
    edits: dict[str, int] = field(default_factory=dict)
    deleted: set[str] = field(default_factory=set)
    posts: list[tuple[str, str]] = field(default_factory=list)  # (conversation, text)
    buttons: dict[str, list[str]] = field(default_factory=dict)
    count: int = 0

    async def send(self, delivery: Delivery) -> str | None:
        payload = delivery.payload
        kind = payload.get("kind", "post")
        conversation = str(delivery.address["conversation_id"])
        text = str(payload["reply"]["text"])
        if kind == "post":
            self.count += 1
            ref = f"m{self.count}"
            self.messages[ref] = text
            self.owner[ref] = conversation
            self.buttons[ref] = [b["value"] for b in payload["reply"].get("buttons", [])]
            self.posts.append((conversation, text))
            return ref
        ref = str(payload["update_ref"])
        assert ref in self.messages, f"edit of unknown message {ref}"
        assert self.owner[ref] == conversation
        if kind == "delete":
            del self.messages[ref]
            self.deleted.add(ref)
        else:
            self.messages[ref] = text
            self.buttons[ref] = [b["value"] for b in payload["reply"].get("buttons", [])]
            self.edits[ref] = self.edits.get(ref, 0) + 1
        return ref

    async def find_delivered(self, delivery: Delivery) -> str | None:
        return None

    def notices(self, word: str = "Outlook") -> dict[str, str]:
        """Current copies of notices (the admin's own report message left out)."""
        return {r: t for r, t in self.messages.items() if self.owner[r] != ADMIN and word in t}

    def sent_to_people(self) -> int:
        return len([c for c, _ in self.posts if c != ADMIN])


@dataclass
class Rig:
    app: Any
    worker: OutboxWorker
    copies: Copies
    clock: FakeClock
    service: OutageService
    n: int = 0

    async def say(self, email: str, text: str) -> Any:
        self.n += 1
        result = await self.app.pipeline.handle(text_incoming(email, text, event_id=f"e{self.n}"))
        return result

    async def click(self, email: str, value: str) -> Any:
        self.n += 1
        return await self.app.pipeline.handle(click_incoming(email, value, event_id=f"e{self.n}"))

    async def drain(self) -> None:
        await self.worker.drain(rounds=1000)

    async def tick(self) -> None:
        await self.app.tick()
        await self.drain()


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    from bot.app import build_app

    url = f"sqlite+aiosqlite:///{tmp_path / 'outages.db'}"
    await upgrade(url)
    settings = settings_with_flows(tmp_path, EMAIL_FLOW, MONITOR_FLOW, OUTAGE_FLOW, GREETING_FLOW,
                                   outages={"dm_platform": "console", "spike_count": 3, "spike_window_minutes": 10})
    clock = FakeClock()
    app = await build_app(settings, clock=clock, database_url=url)
    service: OutageService = app.services["outages"]
    service.audience = StaticAudience([Member(e) for e in PEOPLE],
                                      groups={"finance": PEOPLE[:5]}, channels={"console:general": PEOPLE[10:13]})
    copies = Copies()
    worker = OutboxWorker(app.sessions, {"console": copies}, clock=clock)
    try:
        yield Rig(app, worker, copies, clock, service)
    finally:
        await app.aclose()


def texts(result: Any) -> str:
    return "\n".join(o.reply.text for o in result.replies)


def buttons(result: Any) -> list[str]:
    return [b.value for o in result.replies for b in o.reply.buttons]


POST = ('/helpdesk outage post --service Outlook --aliases "email,mail" --summary "Email is delayed" '
        '--next-update 10:00 --dm everyone --channels console:announcements')


async def test_update_and_resolve_edit_every_copy(rig: Rig) -> None:
    result = await rig.say(ADMIN, POST)
    assert "41 recipients" in texts(result)
    # Half of the copies go out before the update; the rest are still waiting.
    await rig.worker.run_once()
    delivered_before = len(rig.copies.posts)
    assert 0 < delivered_before < 42
    result = await rig.say(ADMIN, '/helpdesk outage update 1 --summary "Email is delayed by 30 minutes" '
                                  '--workaround "Use Outlook on the web"')
    assert "updated" in texts(result)
    await rig.drain()
    notices = rig.copies.notices()
    assert len(notices) == 41  # every recipient has exactly one copy
    assert all("30 minutes" in t and "Outlook on the web" in t for t in notices.values())
    # Copies delivered before the update were edited in place; later ones went out already current.
    assert sum(1 for ref in notices if rig.copies.edits.get(ref)) >= delivered_before - 1
    result = await rig.say(ADMIN, '/helpdesk outage resolve 1 --note "Mail flow is back to normal"')
    assert "resolved" in texts(result)
    await rig.drain()
    notices = rig.copies.notices()
    assert len(notices) == 41
    assert all("Resolved" in t and "back to normal" in t for t in notices.values())
    assert all(rig.copies.buttons[ref] == [] for ref in notices)  # no more "I'm affected"
    assert rig.copies.sent_to_people() == 41  # no copy was posted twice
    # Recipient rows keep each copy's message id.
    await rig.tick()
    async with rig.app.sessions() as session:
        rows = list((await session.execute(select(IncidentRecipientRow))).scalars())
    assert len(rows) == 41 and all(r.status == "sent" and r.message_ref in notices for r in rows)


async def test_recall_cancels_pending_and_deletes_delivered(rig: Rig) -> None:
    await rig.say(ADMIN, POST)
    await rig.worker.run_once()
    sent = rig.copies.sent_to_people()
    assert 0 < sent < 41
    result = await rig.say(ADMIN, "/helpdesk outage recall 1")
    assert "recalled" in texts(result)
    await rig.drain()
    assert rig.copies.notices() == {}  # deleted everywhere
    assert len(rig.copies.deleted) == sent
    assert rig.copies.sent_to_people() == sent  # nothing more went out
    async with rig.app.sessions() as session:
        rows = list((await session.execute(select(OutboxRow).where(OutboxRow.group_key == "outage:1"))).scalars())
    posts = [r for r in rows if r.idempotency_key.startswith("outage:1:post:")]
    assert sorted(r.status for r in posts) == sorted(["sent"] * sent + ["cancelled"] * (41 - sent))
    assert all(r.status == "sent" for r in rows if ":delete:" in r.idempotency_key)


async def test_affected_and_acknowledged_counts_and_resolution_dm(rig: Rig) -> None:
    await rig.say(ADMIN, POST)
    await rig.drain()
    for email in DEMO[:3]:
        result = await rig.click(email, "outage:affected:1")
        assert "counted" in texts(result)
    await rig.click(DEMO[0], "outage:affected:1")  # twice counts once
    for email in DEMO[3:]:
        await rig.click(email, "outage:ack:1")
    result = await rig.say(ADMIN, "/helpdesk outage status 1")
    report = texts(result)
    assert "41 copies: 41 sent, 0 pending, 0 failed" in report
    assert "3 affected, 2 acknowledged" in report
    # The admin's live report message is edited in place as the numbers change.
    rig.clock.advance(timedelta(seconds=30))
    await rig.tick()
    admin_messages = [t for r, t in rig.copies.messages.items() if rig.copies.owner[r] == ADMIN and "copies" in t]
    assert admin_messages and "3 affected, 2 acknowledged" in admin_messages[-1]
    before = len(rig.copies.posts)
    await rig.say(ADMIN, "/helpdesk outage resolve 1")
    await rig.drain()
    told = [c for c, t in rig.copies.posts[before:] if "working again" in t]
    assert sorted(told) == sorted(DEMO[:3])  # at the conversation where they clicked


async def test_only_admins_post(rig: Rig) -> None:
    result = await rig.say("alice@example.com", POST)
    assert "Only help desk admins" in texts(result)
    result = await rig.say("alice@example.com", "/helpdesk outage")
    assert "Only help desk admins" in texts(result)
    result = await rig.say(ADMIN, "/helpdesk outage")
    assert result.replies[0].reply.form is not None
    async with rig.app.sessions() as session:
        assert not list((await session.execute(select(OutboxRow))).scalars())


async def test_related_message_gets_status_instead_of_a_flow(rig: Rig) -> None:
    await rig.say(ADMIN, POST)
    await rig.drain()
    result = await rig.say("alice@example.com", "my outlok is so slow today")
    assert "Known issue: Outlook Email is delayed since 09:00, next update 10:00" in texts(result)
    assert buttons(result) == ["outage:affected:1", "outage:other:1"]
    assert not [e for e in result.events if e["type"] in ("flow_started", "ticket_created")]
    # Unrelated messages go on to the flows as usual.
    result = await rig.say("bob@example.com", "my monitor is broken")
    assert [e for e in result.events if e["type"] == "flow_started"]
    # "Something else" hands the original message to normal triage.
    result = await rig.click("alice@example.com", "outage:other:1")
    assert {"type": "flow_started", "flow": "email"} in result.events
    # Having said it is something else, the person is not held up by the status again.
    await rig.say("alice@example.com", "cancel")
    result = await rig.say("alice@example.com", "outlook keeps crashing")
    assert {"type": "flow_started", "flow": "email"} in result.events


async def test_outage_question_lists_active_incidents(rig: Rig) -> None:
    await rig.say(ADMIN, POST)
    result = await rig.say("bob@example.com", "is there an outage")
    assert "Outlook" in texts(result) and "Something else" in [b.label for o in result.replies for b in o.reply.buttons]
    assert not [e for e in result.events if e["type"] == "flow_started"]


async def test_spike_alerts_technicians_once_per_window(rig: Rig) -> None:
    for email in ("alice@example.com", "bob@example.com", "tom.tech@example.com"):
        await rig.say(email, "my monitor is broken")
    await rig.tick()
    alerts = [(c, t) for c, t in rig.copies.posts if "Declare an outage?" in t]
    assert {c for c, _ in alerts} == {"email:ada.admin@example.com"}  # offers respect roles (issue 15)
    assert all("3 people asked about hardware" in t for _, t in alerts)
    told = [t for c, t in rig.copies.posts if c == "email:tina.tech@example.com" and "hardware" in t]
    assert told and "The admins have been asked" in told[0]
    count = len(alerts)
    await rig.say("tina.tech@example.com", "keyboard does not work")
    await rig.tick()
    assert len([1 for _, t in rig.copies.posts if "Declare an outage?" in t]) == count  # once per window
    # An admin declares from the alert: the form comes pre-filled with a suggested notice.
    result = await rig.click(ADMIN, "outage:declare:hardware")
    form = result.replies[0].reply.form
    assert form is not None and form.form_id == "outage_post:hardware"
    # Past the window, a new spike alerts again.
    rig.clock.advance(timedelta(minutes=11))
    for email in ("alice@example.com", "bob@example.com", "theo.tech@example.com"):
        rig.n += 1
        await rig.app.pipeline.handle(text_incoming(email, "cancel", event_id=f"x{rig.n}"))
        await rig.say(email, "my laptop screen is broken")
    await rig.tick()
    assert len([1 for _, t in rig.copies.posts if "Declare an outage?" in t]) > count


async def test_tickets_during_incident_are_linked_and_requesters_asked(rig: Rig) -> None:
    await rig.say(ADMIN, POST.replace("--service Outlook", "--service Outlook --category email"))
    await rig.drain()
    async with rig.app.sessions() as session, session.begin():
        uow = UnitOfWork(session, now=rig.clock(), actor="bob@example.com")
        uow.emit("ticket_created", id="HD-1001", category="email", priority="P3")
        uow.emit("ticket_created", id="HD-1002", category="printer", priority="P3")
    await rig.tick()
    async with rig.app.sessions() as session:
        links = list((await session.execute(select(IncidentTicketRow))).scalars())
    assert [(t.ticket_id, t.requester) for t in links] == [("HD-1001", "bob@example.com")]
    before = len(rig.copies.posts)
    await rig.say(ADMIN, "/helpdesk outage resolve 1")
    await rig.drain()
    asked = [t for c, t in rig.copies.posts[before:] if c.endswith("bob@example.com")]
    assert asked and "HD-1001" in asked[0] and "Is it fixed for you now?" in asked[0]
    result = await rig.click("bob@example.com", "outage:fixed:1:HD-1001")
    assert "fixed for you" in texts(result)


async def test_maintenance_reminder_start_and_end(rig: Rig) -> None:
    await rig.say(ADMIN, '/helpdesk outage post --maintenance --service VPN --summary "Firewall upgrade" '
                         '--starts +2h --ends +3h --reminder 30 --groups finance')
    await rig.drain()
    assert len([1 for c, t in rig.copies.posts if "Planned maintenance" in t]) == 5
    rig.clock.advance(timedelta(minutes=95))
    await rig.tick()
    assert len([1 for _, t in rig.copies.posts if "Planned maintenance" in t]) == 10  # the reminder
    rig.clock.advance(timedelta(minutes=30))
    await rig.tick()
    started = rig.copies.notices("VPN")
    assert len(started) == 10 and all("in progress" in t for t in started.values()), started
    result = await rig.say("alice@example.com", "vpn keeps dropping")
    assert "Known issue: VPN" in texts(result)
    rig.clock.advance(timedelta(hours=1))
    await rig.tick()
    finished = list(rig.copies.notices("VPN").values())
    assert len(finished) == 10 and all("Maintenance complete" in t for t in finished)


async def test_ticket_whose_summary_names_the_service_is_linked(rig: Rig) -> None:
    """Issue 15: `ticket_created` carried no summary, so the "summary names the service" path never fired."""
    await rig.say(ADMIN, POST)  # no category: only the summary can relate a ticket
    await rig.drain()
    svc = rig.app.services["tickets"]
    async with rig.app.sessions() as session, session.begin():
        uow = UnitOfWork(session, now=rig.clock(), actor="bob@example.com")
        bob = await svc.person("bob@example.com")
        await svc.open(uow, bob, category="human", summary="Outlook keeps saying my email is delayed")
        await svc.open(uow, bob, category="human", summary="my chair squeaks")
    await rig.tick()
    async with rig.app.sessions() as session:
        links = list((await session.execute(select(IncidentTicketRow))).scalars())
    assert [t.ticket_id for t in links] == ["HD-1001"]


async def test_outage_form_has_a_category_and_asks_groups_only_for_groups(rig: Rig) -> None:
    result = await rig.say(ADMIN, "/helpdesk outage")
    form = next(o.reply.form for o in result.replies if o.reply.form is not None)
    fields = {f.name: f for f in form.fields}
    assert "email" in [o.value for o in fields["category"].options]
    assert "out_of_scope" not in [o.value for o in fields["category"].options]
    assert fields["groups"].only_if == ("audience", "groups")
    # The console asks field by field: after "Everyone" it does not ask for groups.
    import io

    from bot.channels.console.chat import ConsoleChat

    answers = {"Service": "Outlook", "What's happening": "Email is delayed", "Audience": "2"}
    chat = ConsoleChat(rig.app, ADMIN, out=io.StringIO())
    asked: list[str] = []

    async def ask(prompt: str) -> str | None:
        asked.append(prompt)
        return next((v for k, v in answers.items() if prompt.strip().startswith(k)), "")

    chat._ask = ask  # type: ignore[method-assign]
    values = await chat._fill_form(form)
    assert values["audience"] == "everyone" and "groups" not in values
    assert not any("Groups" in p for p in asked)


async def test_disabled_account_listed_as_admin_cannot_post(tmp_path: Path) -> None:
    """carol@example.com is disabled in the directory but still listed in roles.admins (issue 20)."""
    from bot.app import build_app

    url = f"sqlite+aiosqlite:///{tmp_path / 'disabled.db'}"
    await upgrade(url)
    settings = settings_with_flows(tmp_path, OUTAGE_FLOW, GREETING_FLOW, outages={"dm_platform": "console"},
                                   roles={"admins": ["ada.admin@example.com", "carol@example.com"],
                                          "technicians": ["carol@example.com"]})
    app = await build_app(settings, clock=FakeClock(), database_url=url)
    try:
        result = await app.pipeline.handle(text_incoming("carol@example.com", POST, event_id="d1"))
        assert "Only help desk admins" in texts(result)
        async with app.sessions() as session:
            assert not list((await session.execute(select(OutboxRow))).scalars())
    finally:
        await app.aclose()


async def test_channel_members_come_from_the_platform_that_can_list_them() -> None:
    """The ChannelMembers port: a platform that lists members answers (as user ids); a conversation
    it cannot list, or a platform with no lister (Teams), gets what the directory knows."""

    class Lister:
        platform = "slack"

        async def members(self, conversation_id: str) -> list[str]:
            if conversation_id == "C0GONE":
                raise ChannelUnreachable("channel_not_found")
            return ["U1", "U2"]

    base = StaticAudience([], channels={"teams:19:abc": ["b@example.com"], "C0GONE": ["a@example.com"]})
    source = ChannelMembersAudience(base, [Lister()])
    assert [(m.user_id, m.platform) for m in await source.channel_members("slack", "C0ALL")] == [
        ("U1", "slack"), ("U2", "slack")]
    assert [m.email for m in await source.channel_members("slack", "C0GONE")] == ["a@example.com"]
    assert [m.email for m in await source.channel_members("teams", "19:abc")] == ["b@example.com"]
