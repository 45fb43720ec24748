"""Teams mechanics on the real stack: installs, form cards, ignored chatter, bad requests. The
conversations themselves (password reset, articles, escalation, outages) are in test_teams_e2e.py."""

from __future__ import annotations

from sqlalchemy import select

from bot.store.tables import EventRow, TeamsConversationRow
from tests.channels.conftest import TeamsBot
from tests.channels.teams_support import (
    ALICE_CHAT,
    CHANNEL,
    payload,
    personal_message,
    personal_submit,
    thread_reply,
)


async def events(bot: TeamsBot) -> list[EventRow]:
    async with bot.app.sessions() as session:
        return list((await session.execute(select(EventRow).order_by(EventRow.id))).scalars())


async def test_install_in_personal_scope_stores_reference_and_welcomes(bot: TeamsBot) -> None:
    response = await bot.post(payload("teams_16b_conversationUpdate_bot_added_personal.json", bot.standin.url))
    assert response.status_code == 202
    posts = bot.standin.posts(ALICE_CHAT)
    assert len(posts) == 1
    assert any("Hi Alice" in t for t in bot.standin.texts(posts[0]))
    async with bot.app.sessions() as session:
        row = await session.get(TeamsConversationRow, ALICE_CHAT)
    assert row is not None and row.service_url == bot.standin.url and row.aad_object_id
    # A redelivered install does not welcome twice.
    again = payload("teams_16b_conversationUpdate_bot_added_personal.json", bot.standin.url)
    await bot.post(again)
    assert len(bot.standin.posts(ALICE_CHAT)) == 1


async def test_install_in_team_channel_welcomes_channel(bot: TeamsBot) -> None:
    await bot.post(payload("teams_16_conversationUpdate_bot_added_to_team.json", bot.standin.url))
    posts = bot.standin.posts(CHANNEL)
    assert len(posts) == 1 and any("ready in this channel" in t for t in bot.standin.texts(posts[0]))


async def test_form_card_submit(bot: TeamsBot) -> None:
    await bot.post(personal_message(bot.standin.url, "my laptop is broken"))
    card = bot.standin.posts(ALICE_CHAT)[-1]
    body = card.body["attachments"][0]["content"]["body"]
    inputs = {b["id"]: b for b in body if b["type"].startswith("Input.")}
    assert set(inputs) == {"f_device", "f_tag"} and inputs["f_tag"]["regex"] == "^[A-Z]{2}-[0-9]+$"
    submit = bot.standin.actions(card)[0]
    await bot.post(personal_submit(bot.standin.url, {**submit["data"], "f_device": "laptop", "f_tag": "LT-42"}))
    texts = bot.standin.texts(bot.standin.posts(ALICE_CHAT)[-1])
    assert any("laptop" in t and "LT-42" in t for t in texts)


async def test_reaction_and_chatter_are_ignored(bot: TeamsBot) -> None:
    reaction = personal_message(bot.standin.url, "")
    reaction.update({"type": "messageReaction", "reactionsAdded": [{"type": "like"}]})
    assert (await bot.post(reaction)).status_code == 202
    chatter = thread_reply(bot.standin.url, "lunch?", root="999", channel=CHANNEL)
    assert (await bot.post(chatter)).status_code == 202
    assert bot.standin.posts() == []


async def test_bad_requests(bot: TeamsBot) -> None:
    assert (await bot.client.post("/api/messages", content=b"not json")).status_code == 400
    assert (await bot.client.post("/api/messages", json={"type": "message"})).status_code == 400
