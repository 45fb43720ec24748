"""The Slack channel end to end: signed requests in real payload shapes posted to the HTTP app,
checked against what reached the Slack Web API stand-in."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from sqlalchemy import select

from bot.store.tables import OutboxRow
from tests.channels import slack_harness
from tests.channels.slack_harness import (
    ALICE,
    BOB,
    QUEUE,
    TOM,
    FakeActions,
    Harness,
    app_home_opened,
    app_mention,
    block_actions,
    bot_message,
    channel_join,
    channel_message,
    home_button,
    message_action,
    message_changed,
    message_im,
    own_message,
    slash_command,
    view_submission,
)

harness = slack_harness.harness  # fixtures
standin = slack_harness.standin

ALICE_DM = "D0USER0001"


def visible(params: dict[str, Any]) -> str:
    return json.dumps({"text": params.get("text"), "blocks": params.get("blocks")})


# ----- authenticity ---------------------------------------------------------------------------


async def test_url_verification_challenge_is_answered(harness: Harness) -> None:
    body = {"token": "Jhj5dZrVaK7ZwHHjRyZWjbDl", "challenge": "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P",
            "type": "url_verification"}
    response = await harness.event(body)
    assert response.status_code == 200
    assert response.json() == {"challenge": body["challenge"]}


async def test_bad_signature_stale_timestamp_and_unsigned_get_401(harness: Harness) -> None:
    payload = message_im("I forgot my password")
    assert (await harness.event(payload, secret="not-the-secret")).status_code == 401
    assert (await harness.event(payload, timestamp=int(time.time()) - 6 * 60)).status_code == 401
    raw = json.dumps(payload).encode()
    unsigned = await harness.client.post("/slack/events", content=raw, headers={"Content-Type": "application/json"})
    assert unsigned.status_code == 401
    await harness.settle()
    assert harness.posts() == []
    assert harness.standin.calls_to("users.info") == []


# ----- messages -------------------------------------------------------------------------------


async def test_direct_message_is_answered_in_the_dm_and_identity_comes_from_users_info(harness: Harness) -> None:
    response = await harness.event(message_im("vpn won't connect"))
    assert response.status_code == 200
    await harness.settle()
    post = harness.last_post(ALICE_DM)
    assert "Fix VPN error 809" in visible(post)
    assert "thread_ts" not in post
    await harness.event(message_im("still there?"))
    await harness.settle()
    assert len(harness.standin.calls_to("users.info")) == 1  # cached


async def test_mention_in_a_channel_is_answered_in_its_thread(harness: Harness) -> None:
    payload = app_mention("vpn won't connect")
    await harness.event(payload)
    await harness.settle()
    post = harness.last_post("C0CHAN0001")
    assert post["thread_ts"] == payload["event"]["ts"]
    assert "Fix VPN error 809" in visible(post)


async def test_bots_edits_and_joins_are_ignored(harness: Harness) -> None:
    for payload in (message_changed(), bot_message(classic=True), bot_message(classic=False), own_message(),
                    channel_join()):
        response = await harness.event(payload)
        assert response.status_code == 200
    await harness.settle()
    assert harness.posts() == []
    assert harness.standin.calls_to("users.info") == []


async def test_unknown_slack_user_gets_a_clear_answer(harness: Harness) -> None:
    await harness.event(message_im("hello", user="U0STRANGER"))
    await harness.settle()
    assert "couldn't find your account" in visible(harness.last_post("D0STRANGER"))


# ----- delivery rules -------------------------------------------------------------------------


async def test_ack_does_not_wait_for_the_work(harness: Harness) -> None:
    real = harness.app.pipeline.handle

    async def slow(incoming: Any) -> Any:
        await asyncio.sleep(1.5)
        return await real(incoming)

    harness.app.pipeline.handle = slow
    started = time.perf_counter()
    response = await harness.event(message_im("vpn won't connect"))
    assert response.status_code == 200
    assert time.perf_counter() - started < 0.5
    await harness.settle()
    assert harness.posts(ALICE_DM)


async def test_retried_event_is_processed_once(harness: Harness) -> None:
    payload = message_im("vpn won't connect")
    await harness.event(payload)
    retry = await harness.event(payload, headers={"X-Slack-Retry-Num": "1", "X-Slack-Retry-Reason": "http_timeout"})
    assert retry.status_code == 200
    await harness.settle()
    assert len(harness.posts(ALICE_DM)) == 1


async def test_retry_racing_the_first_delivery_is_dropped_by_the_database(harness: Harness) -> None:
    # Another replica would not share this process's memory of event ids: switch it off.
    harness.mount.channel.first_delivery = lambda event_id: True  # type: ignore[method-assign]
    payload = message_im("vpn won't connect")
    first, retry = await asyncio.gather(
        harness.event(payload),
        harness.event(payload, headers={"X-Slack-Retry-Num": "1", "X-Slack-Retry-Reason": "http_timeout"}))
    assert first.status_code == retry.status_code == 200
    await harness.settle()
    assert len(harness.posts(ALICE_DM)) == 1


async def test_429_on_a_reply_is_retried_after_retry_after_and_delivered_once(harness: Harness) -> None:
    harness.standin.rate_limit("chat.postMessage", retry_after=1)
    started = time.monotonic()
    await harness.event(message_im("vpn won't connect"))
    await harness.settle()
    assert len(harness.posts(ALICE_DM)) == 1
    assert time.monotonic() - started >= 1.0
    limited = [c for c in harness.standin.calls if c.method == "chat.postMessage" and c.status == 429]
    assert len(limited) == 1


# ----- buttons, forms, flows ------------------------------------------------------------------


async def test_article_that_solves_the_problem(harness: Harness) -> None:
    await harness.event(message_im("vpn won't connect"))
    await harness.settle()
    post = harness.last_post(ALICE_DM)
    assert "Restart the VPN client &amp; try again" in visible(post)  # escaped on the wire
    solved = harness.buttons(post)["This solved it"]
    await harness.interactive(block_actions(solved, message_ts=harness.standin.messages[ALICE_DM][-1]["ts"]))
    await harness.settle()
    assert "glad that sorted it" in visible(harness.last_post(ALICE_DM))
    assert harness.posts(QUEUE) == []


async def test_buttons_and_a_modal_form_advance_the_flow_to_an_escalation(harness: Harness) -> None:
    standin = harness.standin
    await harness.event(message_im("vpn won't connect"))
    await harness.settle()
    unsolved = harness.buttons(harness.last_post(ALICE_DM))["Still need help"]
    await harness.interactive(block_actions(unsolved))
    await harness.settle()
    question = harness.last_post(ALICE_DM)
    assert "Which device" in visible(question)
    await harness.interactive(block_actions(harness.buttons(question)["Laptop"]))
    await harness.settle()
    form_message = harness.last_post(ALICE_DM)
    fill = harness.buttons(form_message)["Fill in the form"]
    response = await harness.interactive(block_actions(fill))
    assert response.status_code == 200
    await harness.settle()
    opened = standin.calls_to("views.open")[-1].params
    view = opened["view"]
    assert view["type"] == "modal" and view["callback_id"] == "details"
    assert [b["block_id"] for b in view["blocks"] if b["type"] == "input"] == ["error_code", "since"]
    # A value that breaks the field's pattern is refused inside the modal.
    bad = {"error_code": {"error_code": {"type": "plain_text_input", "value": "abc"}},
           "since": {"since": {"type": "static_select", "selected_option": {"value": "today"}}}}
    refused = await harness.interactive(view_submission("details", bad, view["private_metadata"]))
    assert refused.json()["response_action"] == "errors"
    good = {"error_code": {"error_code": {"type": "plain_text_input", "value": "809"}},
            "since": {"since": {"type": "static_select", "selected_option": {"value": "today"}}}}
    accepted = await harness.interactive(view_submission("details", good, view["private_metadata"]))
    assert accepted.status_code == 200 and accepted.content in (b"", b"null")
    await harness.settle()
    texts = " ".join(visible(p) for p in harness.posts(ALICE_DM))
    assert "Error 809 on your laptop since today" in texts
    assert "opened ticket *HD-1*" in texts
    card = harness.last_post(QUEUE)
    assert card["metadata"] == {"event_type": "helpdesk_outbox", "event_payload": {"key": "HD-1:card"}}
    assert "Claim" in harness.buttons(card)


async def test_password_reset_in_a_dm_shows_the_password_once_and_stores_it_nowhere(harness: Harness) -> None:
    await harness.event(message_im("I forgot my password"))
    await harness.settle()
    confirm = harness.buttons(harness.last_post(ALICE_DM))["Yes, go ahead"]
    await harness.interactive(block_actions(confirm))
    await harness.settle()
    shown = [p for p in harness.posts() if FakeActions.PASSWORD in visible(p)]
    assert [p["channel"] for p in shown] == [ALICE_DM]
    async with harness.app.sessions() as session:
        rows = (await session.execute(select(OutboxRow))).scalars().all()
    assert all(FakeActions.PASSWORD not in json.dumps(r.payload) for r in rows)


async def test_password_reset_asked_in_a_channel_never_shows_the_password_there(harness: Harness) -> None:
    mention = app_mention("reset my password")
    await harness.event(mention)
    await harness.settle()
    thread = mention["event"]["ts"]
    confirm_post = harness.last_post("C0CHAN0001")
    assert confirm_post["thread_ts"] == thread
    await harness.interactive(block_actions(harness.buttons(confirm_post)["Yes, go ahead"], channel="C0CHAN0001",
                                            message_ts=harness.standin.messages["C0CHAN0001"][-1]["ts"],
                                            thread_ts=thread))
    await harness.settle()
    channel_calls = [c for c in harness.standin.calls if c.params.get("channel") == "C0CHAN0001"]
    assert channel_calls and all(FakeActions.PASSWORD not in json.dumps(c.params) for c in channel_calls)
    assert any(FakeActions.PASSWORD in visible(p) for p in harness.posts(ALICE_DM))
    pointers = harness.standin.calls_to("chat.postEphemeral")
    assert any(c.params["channel"] == "C0CHAN0001" and c.params["user"] == ALICE for c in pointers)


async def test_escalation_claim_and_relay_through_the_queue_thread(harness: Harness) -> None:
    standin = harness.standin
    await harness.event(message_im("talk to a person"))
    await harness.settle()
    card = harness.last_post(QUEUE)
    card_ts = standin.messages[QUEUE][-1]["ts"]
    claim = harness.buttons(card)["Claim"]
    # An employee pressing Claim is refused server-side, privately.
    await harness.interactive(block_actions(claim, user=BOB, channel=QUEUE, message_ts=card_ts))
    await harness.settle()
    refusal = standin.calls_to("chat.postEphemeral")[-1].params
    assert refusal["channel"] == QUEUE and refusal["user"] == BOB and "Only technicians" in visible(refusal)
    assert standin.calls_to("chat.update") == []
    # A technician claims: the card is updated in place, the employee told.
    await harness.interactive(block_actions(claim, user=TOM, channel=QUEUE, message_ts=card_ts))
    await harness.settle()
    update = standin.calls_to("chat.update")[-1].params
    assert update["channel"] == QUEUE and update["ts"] == card_ts and "claimed by Tom Technician" in visible(update)
    assert "Tom Technician is now working on HD-1" in visible(harness.last_post(ALICE_DM))
    # The technician writes in the card's thread: relayed to the employee's DM.
    await harness.event(channel_message("Can you restart and try again?", user=TOM, channel=QUEUE, thread_ts=card_ts))
    await harness.settle()
    assert "Tom Technician: Can you restart and try again?" in visible(harness.last_post(ALICE_DM))
    # The employee answers in the DM: relayed into the thread.
    await harness.event(message_im("Restarted, works now <3"))
    await harness.settle()
    relay = harness.last_post(QUEUE)
    assert relay["thread_ts"] == card_ts and "Alice Employee: Restarted, works now &lt;3" in visible(relay)


async def test_mention_injection_is_escaped_everywhere_it_is_shown(harness: Harness) -> None:
    attack = "talk to a person <!channel> <!here> <@U123> <https://evil|click here> & <!subteam^S1>"
    await harness.event(message_im(attack))
    await harness.settle()
    if not harness.posts(QUEUE):  # triage asked "did you mean": pick the person
        offered = harness.buttons(harness.last_post(ALICE_DM))
        await harness.interactive(block_actions(offered["Talk to a person"]))
        await harness.settle()
    card = harness.last_post(QUEUE)
    assert "&lt;!channel&gt; &lt;!here&gt; &lt;@U123&gt; &lt;https://evil|click here&gt; &amp;" in visible(card)
    for call in harness.standin.calls:
        wire = json.dumps(call.params)
        for raw in ("<!channel>", "<!here>", "<@U123>", "<https://evil", "<!subteam"):
            assert raw not in wire, (call.method, raw)


# ----- commands, shortcut, Home ---------------------------------------------------------------


async def test_slash_command_from_a_channel_answers_in_the_dm_with_a_pointer(harness: Harness) -> None:
    response = await harness.command(slash_command(""))
    assert response.status_code == 200 and response.text == ""
    await harness.settle()
    assert "IT help desk bot" in visible(harness.last_post(ALICE_DM))
    pointer = harness.standin.calls_to("chat.postEphemeral")[-1].params
    assert pointer["channel"] == "C0CHAN0001" and pointer["user"] == ALICE
    assert harness.standin.calls_to("conversations.open")


async def test_message_shortcut_opens_a_ticket_from_the_message(harness: Harness) -> None:
    payload = message_action("the printer on 3 is on fire <!here>")
    response = await harness.interactive(payload)
    assert response.status_code == 200
    await harness.settle()
    card = visible(harness.last_post(QUEUE))
    assert "the printer on 3 is on fire &lt;!here&gt;" in card
    assert f"https://example.slack.com/archives/C0CHAN0001/p{payload['message_ts'].replace('.', '')}" in card
    assert "Opened HD-1" in visible(harness.last_post(ALICE_DM))


async def test_app_home_is_published_with_quick_actions_and_provided_sections(harness: Harness) -> None:
    from bot.core.models import Button, Reply

    async def my_tickets(person: Any, platform: Any) -> list[Reply]:
        return [Reply(text=f"*Your open tickets* ({person.email})", buttons=(Button("HD-7", "ticket:show:HD-7"),))]

    harness.app.services["home_sections"] = [my_tickets]
    await harness.event(app_home_opened())
    await harness.settle()
    published = harness.standin.calls_to("views.publish")[-1].params
    assert published["user_id"] == ALICE
    wire = json.dumps(published["view"])
    assert published["view"]["type"] == "home" and "Hi Alice" in wire
    assert "cmd:help" in wire and "start:password_reset" in wire and "flow:human" in wire
    assert "Your open tickets" in wire and "ticket:show:HD-7" in wire


async def test_home_quick_action_runs_a_command_in_the_dm(harness: Harness) -> None:
    await harness.interactive(home_button("cmd:help"))
    await harness.settle()
    assert "IT help desk bot" in visible(harness.last_post(ALICE_DM))


# ----- the outbox sender ----------------------------------------------------------------------


async def test_outbox_post_that_hits_429_is_delivered_once_after_retry_after(harness: Harness) -> None:
    await harness.event(message_im("talk to a person"))
    await harness.mount.channel.drain()
    harness.standin.rate_limit("chat.postMessage", retry_after=1)
    await harness.worker.drain()
    assert harness.posts(QUEUE) == []
    async with harness.app.sessions() as session:
        row = (await session.execute(select(OutboxRow))).scalars().one()
    assert row.status == "pending" and "ratelimited" in (row.last_error or "")
    await asyncio.sleep(1.1)
    await harness.worker.drain()
    assert len(harness.posts(QUEUE)) == 1


async def test_outbox_ok_false_errors_are_permanent_or_temporary(harness: Harness) -> None:
    await harness.event(message_im("talk to a person"))
    await harness.mount.channel.drain()
    harness.standin.fail("chat.postMessage", "internal_error")
    await harness.worker.drain()
    async with harness.app.sessions() as session:
        row = (await session.execute(select(OutboxRow))).scalars().one()
    assert row.status == "pending"
    harness.standin.fail("chat.postMessage", "not_in_channel")
    async with harness.app.sessions() as session, session.begin():
        again = await session.get(OutboxRow, row.id)
        assert again is not None
        again.next_attempt_at = again.created_at
    await harness.worker.drain()
    async with harness.app.sessions() as session:
        final = await session.get(OutboxRow, row.id)
    assert final is not None and final.status == "failed" and "not_in_channel" in (final.last_error or "")


async def test_interrupted_outbox_delivery_is_found_instead_of_posted_twice(harness: Harness) -> None:
    from bot.outbox.worker import Delivery

    await harness.event(message_im("talk to a person"))
    await harness.settle()
    assert len(harness.posts(QUEUE)) == 1
    async with harness.app.sessions() as session:
        row = (await session.execute(select(OutboxRow))).scalars().one()
    delivery = Delivery(row.id, row.idempotency_key, row.platform, row.address, {**row.payload, "_interrupted": True},
                        2, row.lane, row.group_key)
    found = await harness.mount.channel.sender.find_delivered(delivery)
    assert found == row.message_ref
    assert harness.standin.calls_to("conversations.history")[-1].params["include_all_metadata"] in (True, "1", "true")
