"""The Slack app end to end on the REAL stack: the repository's flows and triage, the knowledge base
over kb_articles/, the demo directory with the real self-service runner, the real ticket desk and
outages. Signed requests in the captured payload shapes go to the HTTP app; the assertions are on
what reached the Slack Web API stand-in (and on what was stored)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from sqlalchemy import select

from bot.core.models import SECRET_PREVIEW
from bot.store.tables import EventRow, OutboxRow
from tests.channels import slack_harness
from tests.channels.slack_harness import (
    ADA,
    ALICE,
    ANNOUNCE,
    BOB,
    QUEUE,
    TINA,
    TOM,
    Harness,
    app_home_opened,
    block_actions,
    channel_message,
    message_action,
    message_im,
    slash_command,
    view_submission,
)

harness = slack_harness.harness  # fixtures
standin = slack_harness.standin

ALICE_DM = "D0USER0001"
TOM_DM = "D0TECH0001"
TINA_DM = "D0TECH0002"
ADA_DM = "D0ADMN0001"
BOB_DM = "D0USER0002"


def visible(params: dict[str, Any]) -> str:
    return json.dumps({"text": params.get("text"), "blocks": params.get("blocks")})


def texts(params: dict[str, Any]) -> list[str]:
    """Every string a person can see in a message: its text and each text object in its blocks."""
    found = [str(params.get("text") or "")]

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "text" and isinstance(value, str):
                    found.append(value)
                else:
                    walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(params.get("blocks") or [])
    return found


async def click(h: Harness, label: str, *, user: str = ALICE, channel: str | None = None) -> None:
    """Press the button labelled `label` on the last message the bot posted in `channel`."""
    channel = channel or "D" + user[1:]
    post = h.last_post(channel)
    message = h.standin.messages[channel][-1]
    buttons = h.buttons(post)
    assert label in buttons, f"no {label!r} button in {list(buttons)}: {post.get('text')}"
    await h.interactive(block_actions(buttons[label], user=user, channel=channel, message_ts=message["ts"],
                                      thread_ts=message.get("thread_ts")))
    await h.settle()


async def say(h: Harness, text: str, *, user: str = ALICE) -> dict[str, Any]:
    await h.event(message_im(text, user=user))
    await h.settle()
    return h.last_post("D" + user[1:])


async def events(h: Harness, type_: str | None = None) -> list[EventRow]:
    async with h.app.sessions() as session:
        query = select(EventRow).order_by(EventRow.id)
        if type_ is not None:
            query = query.where(EventRow.type == type_)
        return list((await session.execute(query)).scalars())


async def outbox(h: Harness) -> list[OutboxRow]:
    async with h.app.sessions() as session:
        return list((await session.execute(select(OutboxRow).order_by(OutboxRow.id))).scalars())


async def escalate(h: Harness, problem: str, *, user: str = ALICE) -> dict[str, Any]:
    """Ask for a person (the real `human` flow) and return the ticket card posted to the queue."""
    before = len(h.posts(QUEUE))
    await say(h, "I need to talk to a person", user=user)
    await say(h, problem, user=user)
    await click(h, "I can't work", user=user)
    cards = h.posts(QUEUE)
    assert len(cards) == before + 1, [p.get("text") for p in cards]
    return cards[-1]


# ----- a) password reset ------------------------------------------------------------------------


async def test_password_reset_shows_the_temporary_password_only_in_the_dm(harness: Harness) -> None:
    await say(harness, "I forgot my password")
    await click(harness, "I forgot it")
    confirm = harness.last_post(ALICE_DM)
    assert "Shall I go ahead?" in confirm["text"]
    await click(harness, "Reset my password")
    shown = [p for p in harness.posts() if "temporary password:" in json.dumps(p.get("blocks") or [])]
    assert [p["channel"] for p in shown] == [ALICE_DM]
    literal = [b for b in shown[0]["blocks"] if b["type"] == "rich_text"]
    # Rich text is not mrkdwn: the value shows exactly, with nothing to unescape.
    secret = literal[0]["elements"][0]["elements"][0]["text"]
    assert len(secret) >= 12
    # The notification preview (`text`) does not hold it.
    assert shown[0]["text"] == SECRET_PREVIEW
    # Never in a channel, never stored (outbox, events), never on any other Web API call.
    for call in harness.standin.calls:
        if call.params.get("channel") != ALICE_DM:
            assert secret not in json.dumps(call.params), call.method
    for row in await outbox(harness):
        assert secret not in json.dumps(row.payload)
    for event in await events(harness):
        assert secret not in json.dumps(event.data)
    actions = await events(harness, "action")
    assert actions and actions[-1].data.get("name") == "reset_password" and actions[-1].data.get("ok") is True
    assert "Sign in with the temporary password now" in harness.last_post(ALICE_DM)["text"]


# ----- b) an article that solves the problem -----------------------------------------------------


async def test_an_article_that_solves_the_problem_deflects_the_conversation(harness: Harness) -> None:
    await say(harness, "vpn won't connect")
    # "won't connect" answered "What happens?"; the one laptop is confirmed in one line.
    assert "Your Windows computer ALICE-LT01?" in harness.last_post(ALICE_DM)["text"]
    await click(harness, "Yes")
    results = await say(harness, "error 809")
    buttons = harness.buttons(results)
    assert {"Show me 1", "This solved it", "Still need help"} <= set(buttons), list(buttons)
    assert buttons["Show me 1"] == "kb:show:vpn-wont-connect"
    await click(harness, "Show me 1")
    assert "*VPN will not connect*" in harness.last_post(ALICE_DM)["text"]
    await click(harness, "This solved it")
    assert "glad that sorted it" in harness.last_post(ALICE_DM)["text"]
    solved = await events(harness, "kb_solved")
    assert solved
    ended = await events(harness, "flow_ended")
    assert ended[-1].data == {"flow": "vpn", "outcome": "deflected"} or ended[-1].data.get("outcome") == "deflected"
    assert harness.posts(QUEUE) == []


# ----- c) escalation, claim race, relay both ways, notes, resolve --------------------------------


async def test_escalation_claim_race_relay_note_and_resolve(harness: Harness) -> None:
    standin = harness.standin
    card = await escalate(harness, "Outlook crashes every time I open a calendar invite")
    assert "HD-1001" in card["text"] and "Outlook crashes" in card["text"]
    assert {"Claim", "Assign to...", "Resolve"} <= set(harness.buttons(card))
    assert "opened ticket *HD-1001*" in harness.last_post(ALICE_DM)["text"]
    card_ts = standin.messages[QUEUE][0]["ts"]
    claim = harness.buttons(card)["Claim"]

    # Two technicians press Claim at the same moment: one wins, the other is told who has it.
    await asyncio.gather(
        harness.interactive(block_actions(claim, user=TOM, channel=QUEUE, message_ts=card_ts)),
        harness.interactive(block_actions(claim, user=TINA, channel=QUEUE, message_ts=card_ts)))
    await harness.settle()
    claimed = await events(harness, "ticket_claimed")
    assert len(claimed) == 1
    winner = claimed[0].data["by"]
    loser = TINA if winner == "tom.tech@example.com" else TOM
    winner_name = "Tom Technician" if loser == TINA else "Tina Technician"
    told = [c.params for c in standin.calls_to("chat.postEphemeral") if c.params.get("user") == loser]
    assert told and told[-1]["channel"] == QUEUE and winner_name in visible(told[-1]), told
    updates = [c.params for c in standin.calls_to("chat.update") if c.params["channel"] == QUEUE]
    assert updates and all(u["ts"] == card_ts for u in updates)
    assert winner_name in updates[-1]["text"] and "Claim" not in harness.buttons(updates[-1])
    assert len(harness.posts(QUEUE)) == 1 + sum(1 for p in harness.posts(QUEUE)[1:] if p.get("thread_ts") == card_ts)
    tech = TOM if loser == TINA else TINA

    # The technician writes in the card's thread: it reaches the employee's DM.
    await harness.event(channel_message("Could you restart Outlook in safe mode?", user=tech, channel=QUEUE,
                                        thread_ts=card_ts))
    await harness.settle()
    relayed = harness.last_post(ALICE_DM)
    assert "Could you restart Outlook in safe mode?" in relayed["text"] and winner_name in relayed["text"]
    # The employee answers in the DM: posted into the card's thread.
    await say(harness, "Safe mode works, normal mode still crashes")
    into_thread = harness.last_post(QUEUE)
    assert into_thread["thread_ts"] == card_ts
    assert "Safe mode works, normal mode still crashes" in into_thread["text"]

    # Internal notes, in the thread or by command, are never relayed.
    dm_posts = len(harness.posts(ALICE_DM))
    await harness.event(channel_message("note: probably the Teams add-in, secret-note-1", user=tech, channel=QUEUE,
                                        thread_ts=card_ts))
    await harness.command(slash_command("note HD-1001 checked the add-in list, secret-note-2", user=tech,
                                        channel=QUEUE))
    await harness.settle()
    assert len(harness.posts(ALICE_DM)) == dm_posts
    for call in standin.calls:
        wire = json.dumps(call.params)
        if "secret-note" in wire:
            assert call.params.get("channel") != ALICE_DM, call.method
    notes = await events(harness, "ticket_note")
    assert len(notes) == 2

    # Resolve: the employee is asked whether it is fixed, then for a rating.
    await harness.command(slash_command("resolve HD-1001 disabled the Teams add-in", user=tech, channel=QUEUE))
    await harness.settle()
    asked = harness.last_post(ALICE_DM)
    assert "Did this fix it?" in asked["text"] and "disabled the Teams add-in" in asked["text"]
    await click(harness, "Yes, it's fixed")
    rating = harness.buttons(harness.last_post(ALICE_DM))
    assert set(rating) >= {"1", "5"}
    await click(harness, "5")
    assert (await events(harness, "satisfaction"))[-1].data["rating"] == 5
    final = [c.params for c in standin.calls_to("chat.update") if c.params["channel"] == QUEUE][-1]
    assert final["ts"] == card_ts and ("Resolved" in final["text"] or "Closed" in final["text"]), final["text"]


async def test_an_employee_pressing_claim_is_refused_privately(harness: Harness) -> None:
    card = await escalate(harness, "my monitor flickers")
    card_ts = harness.standin.messages[QUEUE][0]["ts"]
    await harness.interactive(block_actions(harness.buttons(card)["Claim"], user=BOB, channel=QUEUE,
                                            message_ts=card_ts))
    await harness.settle()
    refusal = harness.standin.calls_to("chat.postEphemeral")[-1].params
    assert refusal["channel"] == QUEUE and refusal["user"] == BOB
    assert harness.standin.calls_to("chat.update") == []
    assert await events(harness, "ticket_claimed") == []


async def test_card_resolve_button_opens_a_modal_from_its_private_prompt(harness: Harness) -> None:
    standin = harness.standin
    card = await escalate(harness, "the screen stays black")
    card_ts = standin.messages[QUEUE][0]["ts"]
    await harness.interactive(block_actions(harness.buttons(card)["Resolve"], user=TOM, channel=QUEUE,
                                            message_ts=card_ts))
    await harness.settle()
    prompt = standin.calls_to("chat.postEphemeral")[-1].params
    assert prompt["channel"] == QUEUE and prompt["user"] == TOM and prompt.get("thread_ts") in (None, card_ts)
    # A click on an ephemeral message: Slack sends no `message`, and its ts is no thread anyone can see.
    click_payload = block_actions(harness.buttons(prompt)["Fill in the form"], user=TOM, channel=QUEUE,
                                  message_ts="1700000000.000999")
    click_payload["container"]["is_ephemeral"] = True
    del click_payload["message"]
    await harness.interactive(click_payload)
    await harness.settle()
    view = standin.calls_to("views.open")[-1].params["view"]
    assert view["callback_id"] == "ticket_resolve:HD-1001"
    assert "1700000000.000999" not in view["private_metadata"]
    note = {"note": {"note": {"type": "plain_text_input", "value": "replaced the cable"}}}
    await harness.interactive(view_submission(view["callback_id"], note, view["private_metadata"], user=TOM))
    await harness.settle()
    assert "Did this fix it?" in harness.last_post(ALICE_DM)["text"]
    ack = standin.calls_to("chat.postEphemeral")[-1].params
    assert ack["user"] == TOM and "resolved" in ack["text"] and ack.get("thread_ts") != "1700000000.000999"
    assert "Resolved" in [c.params for c in standin.calls_to("chat.update")][-1]["text"]


# ----- d) mention injection ---------------------------------------------------------------------

ATTACK = "my laptop is broken <!channel> <!here> <@U123> <https://evil|click here> & <!subteam^S1>"
RAW = ("<!channel>", "<!here>", "<@U123>", "<https://evil", "<!subteam")


async def test_mention_injection_arrives_escaped_in_the_queue_card_and_the_relay(harness: Harness) -> None:
    card = await escalate(harness, ATTACK)
    escaped = "&lt;!channel&gt; &lt;!here&gt; &lt;@U123&gt; &lt;https://evil|click here&gt; &amp; &lt;!subteam^S1&gt;"
    assert escaped in card["text"]
    assert any(escaped in t for t in texts(card)[1:]), "the blocks carry it escaped too"
    card_ts = harness.standin.messages[QUEUE][0]["ts"]
    await harness.interactive(block_actions(harness.buttons(card)["Claim"], user=TOM, channel=QUEUE,
                                            message_ts=card_ts))
    await harness.settle()
    await harness.event(channel_message("Which laptop? <!everyone>", user=TOM, channel=QUEUE, thread_ts=card_ts))
    await harness.settle()
    await say(harness, f"this one {ATTACK}")
    relay = harness.last_post(QUEUE)
    assert relay["thread_ts"] == card_ts
    assert escaped in relay["text"] and any(escaped in t for t in texts(relay)[1:])
    assert any("Which laptop? &lt;!everyone&gt;" in (p.get("text") or "") for p in harness.posts(ALICE_DM))
    for call in harness.standin.calls:
        wire = json.dumps(call.params)
        for raw in (*RAW, "<!everyone>"):
            assert raw not in wire, (call.method, raw)
        assert call.params.get("link_names") in (None, False, "false", "0")


# ----- e) slash commands and the message shortcut -----------------------------------------------


async def test_slash_commands_mine_and_queue_with_real_tickets_and_roles(harness: Harness) -> None:
    await escalate(harness, "the docking station is dead")
    await escalate(harness, "teams has no audio", user=BOB)
    await harness.command(slash_command("queue", user=TOM))
    await harness.settle()
    queue = harness.last_post(TOM_DM)
    assert "HD-1001" in queue["text"] and "HD-1002" in queue["text"]
    assert {"Claim HD-1001", "Claim HD-1002"} <= set(harness.buttons(queue))
    await harness.command(slash_command("claim HD-1002", user=TOM))
    await harness.settle()
    await harness.command(slash_command("mine", user=TOM))
    await harness.settle()
    mine = harness.last_post(TOM_DM)
    assert "HD-1002" in mine["text"] and "HD-1001" not in mine["text"]
    await harness.command(slash_command("mine", user=ALICE))
    await harness.settle()
    alices = harness.last_post(ALICE_DM)
    assert "HD-1001" in alices["text"] and "HD-1002" not in alices["text"]
    # The role is checked server-side: an employee cannot claim.
    await harness.command(slash_command("claim HD-1001", user=ALICE))
    await harness.settle()
    refusal = harness.last_post(ALICE_DM)
    assert "HD-1001" in refusal["text"] and "technician" in refusal["text"].lower()
    assert len(await events(harness, "ticket_claimed")) == 1
    refused = await events(harness, "ticket_refused")
    assert refused and refused[-1].data["reason"] == "forbidden"


async def test_message_shortcut_opens_a_real_ticket_from_the_message(harness: Harness) -> None:
    payload = message_action("the printer on 3 is on fire <!here>", user=ALICE)
    response = await harness.interactive(payload)
    assert response.status_code == 200
    await harness.settle()
    card = harness.last_post(QUEUE)
    assert "HD-1001" in card["text"]
    assert "the printer on 3 is on fire &lt;!here&gt;" in card["text"]
    permalink = f"https://example.slack.com/archives/C0CHAN0001/p{payload['message_ts'].replace('.', '')}"
    assert permalink in card["text"]
    assert "HD-1001" in harness.last_post(ALICE_DM)["text"]
    created = await events(harness, "ticket_created")
    assert created and created[-1].data["id"] == "HD-1001"
    pointer = harness.standin.calls_to("chat.postEphemeral")[-1].params
    assert pointer["channel"] == "C0CHAN0001" and pointer["user"] == ALICE


# ----- f) App Home ------------------------------------------------------------------------------


async def test_app_home_shows_open_tickets_and_active_outages(harness: Harness) -> None:
    await escalate(harness, "keyboard keys stuck")
    await harness.command(slash_command('outage post --service Outlook --summary "Mail is delayed"', user=ADA))
    await harness.settle()
    await harness.event(app_home_opened(ALICE))
    await harness.settle()
    published = harness.standin.calls_to("views.publish")[-1].params
    assert published["user_id"] == ALICE
    wire = json.dumps(published["view"])
    assert published["view"]["type"] == "home" and "Hi Alice" in wire
    assert "HD-1001" in wire and "keyboard keys stuck" in wire
    assert "Outlook" in wire and "Mail is delayed" in wire
    # Bob has no tickets: the outage shows, Alice's ticket does not.
    await harness.event(app_home_opened(BOB))
    await harness.settle()
    bobs = json.dumps(harness.standin.calls_to("views.publish")[-1].params["view"])
    assert "HD-1001" not in bobs and "Outlook" in bobs


# ----- g) outage notices ------------------------------------------------------------------------


async def test_outage_notice_posted_updated_resolved_and_recalled(harness: Harness) -> None:
    standin = harness.standin
    standin.users["U0TECH0003"] = {"email": "theo.tech@example.com", "real_name": "Theo Technician"}
    # An employee cannot post one (the ticket handler does not swallow `outage`, the outage handler refuses).
    await harness.command(slash_command('outage post --service VPN --summary "down"', user=ALICE))
    await harness.settle()
    assert "Only help desk admins can post outage notices." in harness.last_post(ALICE_DM)["text"]
    assert standin.calls_to("chat.postMessage") and not harness.posts(ANNOUNCE)
    await harness.command(slash_command(
        'outage post --service Outlook --summary "Mail is delayed by 30 minutes" --channels '
        + ANNOUNCE + " --dm group:it-support", user=ADA))
    await harness.settle()
    notice = harness.last_post(ANNOUNCE)
    assert "Outlook" in notice["text"] and "Mail is delayed by 30 minutes" in notice["text"]
    looked_up = {c.params["email"] for c in standin.calls_to("users.lookupByEmail")}
    assert {"tom.tech@example.com", "tina.tech@example.com", "theo.tech@example.com"} <= looked_up
    dms = {p["channel"] for p in harness.posts() if "Mail is delayed by 30 minutes" in (p.get("text") or "")}
    assert dms == {ANNOUNCE, TOM_DM, TINA_DM, "D0TECH0003", ADA_DM}
    copies = {(channel, m["ts"]) for channel, messages in standin.messages.items() for m in messages
              if "Mail is delayed by 30 minutes" in m["text"]}
    assert len(copies) == 5
    incident = (await events(harness, "outage_posted"))[-1].data.get("incident") or 1

    await harness.command(slash_command(f'outage update {incident} --summary "Mail is delayed by 2 hours"', user=ADA))
    await harness.settle()
    edited = {(c.params["channel"], c.params["ts"]) for c in standin.calls_to("chat.update")
              if "2 hours" in (c.params.get("text") or "")}
    assert copies <= edited, (copies, edited)

    await harness.command(slash_command(f"outage resolve {incident} fixed the mail relay", user=ADA))
    await harness.settle()
    resolved = {(c.params["channel"], c.params["ts"]) for c in standin.calls_to("chat.update")
                if "resolved" in (c.params.get("text") or "").lower()}
    assert copies <= resolved

    await harness.command(slash_command(f"outage recall {incident}", user=ADA))
    await harness.settle()
    deleted = {(c.params["channel"], c.params["ts"]) for c in standin.calls_to("chat.delete")}
    assert copies <= deleted
