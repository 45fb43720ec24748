"""Real-shaped activities posted to /api/messages; what reached the Bot Connector stand-in."""

from __future__ import annotations

from sqlalchemy import select

from bot.store.tables import EventRow, OutboxRow, TeamsConversationRow
from tests.channels.conftest import TeamsBot
from tests.channels.teams_support import (
    ALICE_CHAT,
    CHANNEL,
    QUEUE,
    SECRET,
    channel_mention,
    invoke_execute,
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


async def test_flow_with_buttons_roundtrip_and_secret_only_in_personal_chat(bot: TeamsBot) -> None:
    response = await bot.post(personal_message(bot.standin.url, "I forgot my password"))
    assert response.status_code == 202
    card = bot.standin.posts(ALICE_CHAT)[-1]
    actions = bot.standin.actions(card)
    assert [a["title"] for a in actions] == ["Yes, reset it", "No"]
    assert actions[0]["type"] == "Action.Submit" and actions[0]["data"] == {"verb": "click", "value": "choice:yes"}
    await bot.post(personal_submit(bot.standin.url, actions[0]["data"]))
    texts = [t for c in bot.standin.posts(ALICE_CHAT) for t in bot.standin.texts(c)]
    assert any(SECRET in t for t in texts)
    assert any("Done." in t for t in texts)
    kinds = [(e.type, e.data.get("flow"), e.data.get("outcome")) for e in await events(bot)]
    assert ("flow_started", "password_reset", None) in kinds
    assert ("flow_ended", "password_reset", "resolved") in kinds
    async with bot.app.sessions() as session:
        stored = " ".join(str(r.data) for r in (await session.execute(select(EventRow))).scalars())
        stored += " ".join(str(r.payload) for r in (await session.execute(select(OutboxRow))).scalars())
    assert SECRET not in stored


async def test_channel_mention_replies_in_thread_and_secret_goes_to_personal_chat(bot: TeamsBot) -> None:
    # Alice has the app in her personal scope (so her chat is known), then asks in a channel.
    await bot.post(payload("teams_16b_conversationUpdate_bot_added_personal.json", bot.standin.url))
    await bot.post(channel_mention(bot.standin.url, "I forgot my password"))
    thread_posts = bot.standin.posts(CHANNEL)
    assert thread_posts and all(c.conversation_id.endswith(";messageid=1759881511856") for c in thread_posts)
    yes = bot.standin.actions(thread_posts[-1])[0]["data"]
    submit = channel_mention(bot.standin.url, "")
    submit.pop("text")
    submit["entities"] = []
    submit["value"] = yes
    await bot.post(submit)
    channel_texts = [t for c in bot.standin.posts(CHANNEL) for t in bot.standin.texts(c)]
    personal_texts = [t for c in bot.standin.posts(ALICE_CHAT) for t in bot.standin.texts(c)]
    assert not any(SECRET in t for t in channel_texts)
    assert any(SECRET in t for t in personal_texts)
    assert any("personal chat" in t for t in channel_texts)


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


async def test_article_escalation_claim_update_in_place_and_relay(bot: TeamsBot) -> None:
    await bot.post(payload("teams_16b_conversationUpdate_bot_added_personal.json", bot.standin.url))
    await bot.post(personal_message(bot.standin.url, "vpn won't connect"))
    results = bot.standin.posts(ALICE_CHAT)[-1]
    labels = {a["title"]: a["data"] for a in bot.standin.actions(results)}
    show = next(data for title, data in labels.items() if "Fix VPN" in title or "Show" in title or "Open" in title)
    await bot.post(personal_submit(bot.standin.url, show))
    article = bot.standin.posts(ALICE_CHAT)[-1]
    assert any("Fix VPN connection errors" in t for t in bot.standin.texts(article))
    unsolved = next(a["data"] for a in bot.standin.actions(article) if a["data"]["value"] == "kb:unsolved")
    await bot.post(personal_submit(bot.standin.url, unsolved))
    # The ticket card reached the queue channel through the outbox, as a live card.
    queue_posts = bot.standin.posts(QUEUE)
    assert len(queue_posts) == 1
    card = queue_posts[0].body["attachments"][0]["content"]
    assert card["refresh"]["action"]["verb"] == "refresh"
    claim = next(a for a in card["actions"] if a["title"] == "Claim")
    assert claim["type"] == "Action.Execute" and claim["fallback"]["type"] == "Action.Submit"
    async with bot.app.sessions() as session:
        row = (await session.execute(select(OutboxRow).where(OutboxRow.idempotency_key == "ticket:HD-1:post")))\
            .scalar_one()
    root = row.message_ref
    assert row.status == "sent" and root
    # Tom claims from the card (Action.Execute): an invoke answered at once, the card updated in place.
    response = await bot.post(invoke_execute(bot.standin.url, claim["data"]["value"],
                                             conversation=f"{QUEUE};messageid={root}", reply_to=root))
    assert response.status_code == 200 and response.json()["statusCode"] == 200
    updates = bot.standin.sent("PUT")
    assert [u.activity_id for u in updates] == [root]
    assert any("claimed by Tom" in t for t in bot.standin.texts(updates[0]))
    # Anyone refreshing the card gets the latest version.
    refreshed = await bot.post(invoke_execute(bot.standin.url, "", verb="refresh",
                                              conversation=f"{QUEUE};messageid={root}", reply_to=root))
    assert refreshed.json()["type"] == "application/vnd.microsoft.card.adaptive"
    assert "claimed by Tom" in str(refreshed.json()["value"])
    # Tom's reply in the card's thread (no @mention) is relayed to Alice's personal chat.
    await bot.post(thread_reply(bot.standin.url, "Please restart the client and try again", root=root))
    last = bot.standin.posts(ALICE_CHAT)[-1]
    assert any("Tom Technician: Please restart the client" in t for t in bot.standin.texts(last))


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
