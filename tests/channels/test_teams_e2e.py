"""The Teams app end to end on the real stack (tests/channels/teams_real.py): real-shaped activities
posted to /api/messages (anonymous), and what reached the Bot Connector stand-in."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from bot.core.models import SECRET_PREVIEW
from bot.store.tables import EventRow, OutboxRow, TicketNoteRow
from tests.channels.teams_real import (
    ADA,
    ALICE,
    ANNOUNCE,
    QUEUE,
    TINA,
    TOM,
    Member,
    RealTeamsBot,
    make_real_bot,
    real_settings,
)
from tests.standins.bot_connector import BotConnectorStandIn, Call


@pytest.fixture
async def real(tmp_path: Path, standin: BotConnectorStandIn) -> AsyncIterator[RealTeamsBot]:
    bot = await make_real_bot(real_settings(tmp_path), standin)
    try:
        yield bot
    finally:
        await bot.client.aclose()
        await bot.app.aclose()


def texts(bot: RealTeamsBot, calls: list[Call]) -> list[str]:
    return [t for c in calls for t in bot.standin.texts(c)]


def button(bot: RealTeamsBot, call: Call, title: str) -> dict[str, Any]:
    found = {a["title"]: a for a in bot.standin.actions(call)}
    assert title in found, f"no button {title!r}; card has {list(found)}"
    return dict(found[title])


def last_card_with(bot: RealTeamsBot, conversation: str, title: str) -> Call:
    for call in reversed(bot.standin.posts(conversation)):
        if any(a["title"] == title for a in bot.standin.actions(call)):
            return call
    raise AssertionError(f"no card with {title!r} in {conversation}: "
                         f"{[texts(bot, [c]) for c in bot.standin.posts(conversation)]}")


async def click(bot: RealTeamsBot, who: Member, title: str) -> None:
    card = last_card_with(bot, who.chat, title)
    await bot.post(bot.submit(who, button(bot, card, title)["data"], reply_to=card_id(bot, card)))


def card_id(bot: RealTeamsBot, call: Call) -> str:
    return next(i for i, body in bot.standin.activities.items() if body is call.body)


def of(events: list[dict[str, Any]], kind: str, **match: Any) -> list[dict[str, Any]]:
    return [e for e in events if e["type"] == kind and all(e.get(k) == v for k, v in match.items())]


async def stored_text(bot: RealTeamsBot) -> str:
    """Everything the bot wrote down: events, outbox rows, sent cards, ticket notes."""
    async with bot.app.sessions() as session:
        parts = [str(r.data) for r in (await session.execute(select(EventRow))).scalars()]
        parts += [str(r.payload) for r in (await session.execute(select(OutboxRow))).scalars()]
        parts += [str(r.text) for r in (await session.execute(select(TicketNoteRow))).scalars()]
    return " ".join(parts)


# ----- a) password reset ------------------------------------------------------------------------


async def test_password_reset_in_personal_chat_secret_only_there(real: RealTeamsBot) -> None:
    assert (await real.post(real.installed(ALICE))).status_code == 202
    assert (await real.post(real.personal(ALICE, "I forgot my password"))).status_code == 202
    choice = last_card_with(real, ALICE.chat, "I forgot it")
    assert button(real, choice, "I forgot it")["type"] == "Action.Submit"
    await click(real, ALICE, "I forgot it")
    await click(real, ALICE, "Reset my password")
    events = await real.events()
    assert of(events, "action", name="reset_password", ok=True)
    assert of(events, "flow_ended", flow="password_reset", outcome="resolved")
    secret_posts = [c for c in real.standin.posts() if any("temporary password:" in t for t in real.standin.texts(c))]
    assert len(secret_posts) == 1 and secret_posts[0].conversation_id == ALICE.chat
    card = secret_posts[0].body["attachments"][0]["content"]
    runs = [i for b in card["body"] if b["type"] == "RichTextBlock" for i in b["inlines"]]
    password = runs[0]["text"]  # a TextRun: no markdown, so `*`, `_` and backticks show exactly
    assert len(password) >= 12
    # Not in what a notification preview shows (the activity summary, the card's fallbackText).
    assert password not in secret_posts[0].body["summary"] and password not in card["fallbackText"]
    assert secret_posts[0].body["summary"] == SECRET_PREVIEW == card["fallbackText"]
    # Nowhere else: no other conversation, no event, no outbox row, no stored card.
    assert all(password not in t for c in real.standin.posts() if c is not secret_posts[0]
               for t in real.standin.texts(c))
    assert password not in await stored_text(real)
    async with real.app.sessions() as session:
        from bot.store.tables import TeamsActivityRow

        cards = " ".join(str(r.card) for r in (await session.execute(select(TeamsActivityRow))).scalars())
    assert password not in cards


async def test_password_reset_asked_in_a_channel_goes_to_personal_chat(real: RealTeamsBot) -> None:
    channel, root = "19:PLACEHOLDERgeneral0001@thread.tacv2", "1759881511856"
    await real.post(real.installed(ALICE))
    await real.post(real.in_channel(ALICE, "I forgot my password", channel=channel, root=root, mention=True))
    thread = real.standin.posts(channel)
    assert thread and all(c.conversation_id == f"{channel};messageid={root}" for c in thread)
    for title in ("I forgot it", "Reset my password"):
        data = button(real, last_card_with(real, channel, title), title)["data"]
        submit = real.in_channel(ALICE, "", channel=channel, root=root)
        submit.pop("text")
        submit["value"] = data
        await real.post(submit)
    channel_texts = texts(real, real.standin.posts(channel))
    personal_texts = texts(real, real.standin.posts(ALICE.chat))
    assert any("temporary password:" in t for t in personal_texts)
    assert not any("temporary password:" in t for t in channel_texts)
    assert any("personal chat" in t for t in channel_texts)


# ----- b) an article solves it -----------------------------------------------------------------


async def test_kb_article_solves_it(real: RealTeamsBot) -> None:
    # The meetings flow narrows the problem down (two choices), then offers the articles.
    await real.post(real.personal(ALICE, "nobody can hear me in teams meetings"))
    await click(real, ALICE, "Audio or microphone")
    await click(real, ALICE, "Teams")
    results = last_card_with(real, ALICE.chat, "Show me 1")
    assert {"Show me 1", "This solved it", "Still need help"} <= {a["title"] for a in real.standin.actions(results)}
    await click(real, ALICE, "Show me 1")
    article = real.standin.posts(ALICE.chat)[-1]
    events = await real.events()
    shown = of(events, "kb_suggested")[0]["articles"][0]
    assert any(a["title"] == "This solved it" for a in real.standin.actions(article))
    await click(real, ALICE, "This solved it")
    events = await real.events()
    assert of(events, "flow_ended", flow="meetings", outcome="deflected"), events
    assert not of(events, "ticket_created")
    assert shown
    assert any("glad" in t.lower() for t in real.standin.texts(real.standin.posts(ALICE.chat)[-1]))


# ----- c) escalation, claim, relay --------------------------------------------------------------


async def test_escalation_claim_relay_note_resolve_rating(real: RealTeamsBot) -> None:
    real.standin.installed.update({TOM.mri, TINA.mri})
    await real.post(real.installed(ALICE))
    await real.post(real.personal(ALICE, "I want to talk to a person"))
    await real.post(real.personal(ALICE, "my laptop makes a grinding noise"))
    await click(real, ALICE, "Today would be good")
    events = await real.events()
    ticket = of(events, "ticket_created")[0]["id"]
    # The ticket card reached the Teams queue channel (teams.queue_channel), as a live card.
    queue = real.standin.posts(QUEUE)
    assert len(queue) == 1 and queue[0].conversation_id == QUEUE
    card = queue[0]
    root = card_id(real, card)
    content = card.body["attachments"][0]["content"]
    assert content["refresh"]["action"]["verb"] == "refresh"
    # userIds: [] would switch automatic refresh off; omitted, a queue channel of up to 60 refreshes.
    assert "userIds" not in content["refresh"]
    claim = button(real, card, "Claim")
    assert claim["type"] == "Action.Execute" and claim["fallback"]["type"] == "Action.Submit"
    thread = f"{QUEUE};messageid={root}"

    # Tom claims (Action.Execute invoke): answered at once, the card updated in place.
    response = await real.post(real.execute(TOM, claim["data"], conversation=thread, reply_to=root))
    assert response.status_code == 200 and response.json()["statusCode"] == 200
    puts = real.standin.sent("PUT")
    assert [p.activity_id for p in puts] == [root] and puts[0].conversation_id == QUEUE
    assert any("with Tom Technician" in t for t in real.standin.texts(puts[-1]))
    assert not any(a["title"] == "Claim" for a in real.standin.actions(puts[-1]))
    assert any(f"Tom Technician is now working on your ticket **{ticket}**" in t
               for t in texts(real, real.standin.posts(ALICE.chat)))
    # A refresh (any client opening the card) gets the latest version.
    refreshed = await real.post(real.execute(TOM, {"verb": "refresh"}, conversation=thread, reply_to=root))
    assert refreshed.json()["type"] == "application/vnd.microsoft.card.adaptive"
    assert "with Tom Technician" in str(refreshed.json()["value"])

    # Tina's claim (a stale card) is refused and she is told who has it, privately.
    await real.post(real.execute(TINA, claim["data"], conversation=thread, reply_to=root))
    assert of(await real.events(), "ticket_refused", id=ticket, reason="held")
    tina_chat = [c for c in real.standin.posts() if c.conversation_id.startswith("a:standin-personal")
                 and any("already held by Tom Technician" in t for t in real.standin.texts(c))]
    assert len(tina_chat) == 1
    assert len(real.standin.sent("PUT")) == 1  # no change to the card

    # Tom replies in the card's thread (no @mention): relayed to Alice's personal chat.
    await real.post(real.in_channel(TOM, "Is it the fan? Does it happen on battery too?", channel=QUEUE, root=root))
    alice_last = real.standin.posts(ALICE.chat)[-1]
    assert any("Tom Technician" in t and "Does it happen on battery too?" in t
               for t in real.standin.texts(alice_last))
    assert any(a["title"] == f"Reply to {ticket}" for a in real.standin.actions(alice_last))
    assert any("Waiting on requester" in t for t in real.standin.texts(real.standin.sent("PUT")[-1]))

    # Alice answers in her personal chat: back to the card's thread.
    await real.post(real.personal(ALICE, "yes, also on battery"))
    back = [c for c in real.standin.posts(thread) if any("yes, also on battery" in t for t in real.standin.texts(c))]
    assert len(back) == 1 and back[0].conversation_id == thread
    relayed = of(await real.events(), "ticket_relayed", id=ticket)
    assert [e["direction"] for e in relayed] == ["to_requester", "to_technicians"]

    # An internal note in the thread is never relayed to Alice.
    before = len(real.standin.posts(ALICE.chat))
    await real.post(real.in_channel(TOM, "note: probably the fan bearing, part ordered", channel=QUEUE, root=root))
    assert of(await real.events(), "ticket_note", id=ticket)
    assert len(real.standin.posts(ALICE.chat)) == before
    assert not any("fan bearing" in t for t in texts(real, real.standin.posts(ALICE.chat)))

    # Resolve from the card: the form opens in Tom's personal chat; Alice is asked "Did this fix it?".
    resolve = button(real, real.standin.sent("PUT")[-1], "Resolve")
    await real.post(real.execute(TOM, resolve["data"], conversation=thread, reply_to=root))
    tom_chat = next(c.conversation_id for c in reversed(real.standin.posts())
                    if c.conversation_id.startswith("a:standin-personal")
                    and any(a["title"] == "Resolve" for a in real.standin.actions(c)))
    form = next(c for c in reversed(real.standin.posts(tom_chat)) if real.standin.actions(c))
    data = {**button(real, form, "Resolve")["data"], "f_note": "Replaced the fan"}
    submit = real.submit(TOM, data)
    submit["conversation"]["id"] = tom_chat
    await real.post(submit)
    assert of(await real.events(), "ticket_resolved", id=ticket)
    ask = last_card_with(real, ALICE.chat, "Yes, it's fixed")
    assert any("Replaced the fan" in t for t in real.standin.texts(ask))
    await click(real, ALICE, "Yes, it's fixed")
    await click(real, ALICE, "4")
    events = await real.events()
    assert of(events, "ticket_confirmed", fixed=True)
    assert of(events, "satisfaction", id=ticket, rating=4)
    assert any("Resolved" in t for t in real.standin.texts(real.standin.sent("PUT")[-1]))
    # Every card edit was an in-place PUT of the one queue post.
    assert {p.activity_id for p in real.standin.sent("PUT")} == {root}
    assert len(real.standin.posts(QUEUE + ";")) == len(real.standin.posts(thread))


# ----- d) outage notices ------------------------------------------------------------------------


async def outage(bot: RealTeamsBot, command: str) -> None:
    await bot.post(bot.personal(ADA, f"/helpdesk outage {command}"))


async def test_outage_notice_posted_updated_resolved_and_recalled(real: RealTeamsBot) -> None:
    await real.post(real.installed(ALICE))
    await real.post(real.installed(ADA))
    await outage(real, f'post --service Outlook --summary "Email is delayed" --severity major '
                       f'--channels teams:{ANNOUNCE} --dm group:finance')
    events = await real.events()
    assert of(events, "outage_posted"), events
    notices = [c for c in real.standin.posts() if any("Email is delayed" in t for t in real.standin.texts(c))]
    where = {c.conversation_id for c in notices}
    assert ANNOUNCE in where and ALICE.chat in where
    ids = {c.conversation_id: card_id(real, c) for c in notices}
    await outage(real, 'update 1 --summary "Delays down to 5 minutes"')
    puts = real.standin.sent("PUT")
    assert {(p.conversation_id, p.activity_id) for p in puts} >= {(ANNOUNCE, ids[ANNOUNCE]),
                                                                 (ALICE.chat, ids[ALICE.chat])}
    assert all(any("Delays down to 5 minutes" in t for t in real.standin.texts(p)) for p in puts)
    await outage(real, 'resolve 1 --note "Mail flow is back to normal"')
    resolved = real.standin.sent("PUT")[len(puts):]
    assert {p.activity_id for p in resolved} >= {ids[ANNOUNCE], ids[ALICE.chat]}
    assert all(not any(a["title"] == "I'm affected" for a in real.standin.actions(p)) for p in resolved)
    assert of(await real.events(), "outage_resolved")

    # A mistaken notice is recalled: deleted everywhere it went.
    await outage(real, f'post --service VPN --summary "VPN down" --channels teams:{ANNOUNCE} --dm group:finance')
    second = {c.conversation_id: card_id(real, c) for c in real.standin.posts()
              if any("VPN down" in t for t in real.standin.texts(c))}
    assert ANNOUNCE in second and ALICE.chat in second
    await outage(real, "recall 2")
    deleted = {(d.conversation_id, d.activity_id) for d in real.standin.sent("DELETE")}
    assert deleted == {(ANNOUNCE, second[ANNOUNCE]), (ALICE.chat, second[ALICE.chat])}
