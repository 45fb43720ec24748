"""Slack mechanics on the real stack: signatures, the ack, retries and dedup, ignored subtypes,
identity, threads, modals, 429 and `ok: false` handling, the outbox sender. Signed requests in real
payload shapes go to the HTTP app; the assertions are on what reached the Web API stand-in. The
help desk journeys themselves (password reset, articles, tickets, outages, Home) are in
test_slack_e2e.py."""

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
    QUEUE,
    TOM,
    Harness,
    app_mention,
    block_actions,
    bot_message,
    channel_join,
    home_button,
    message_changed,
    message_im,
    own_message,
    slash_command,
    view_submission,
)

harness = slack_harness.harness  # fixtures
standin = slack_harness.standin

ALICE_DM = "D0USER0001"
TOM_DM = "D0TECH0001"


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
    assert "Your Windows computer ALICE-LT01?" in visible(post)  # the one laptop, confirmed in one line
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
    assert "Your Windows computer ALICE-LT01?" in visible(post)  # the one laptop, confirmed in one line


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


async def test_buttons_and_a_modal_form_with_a_pattern_advance_the_flow(harness: Harness) -> None:
    standin = harness.standin
    await harness.event(message_im("I need help with my outlook email"))
    await harness.settle()
    question = harness.last_post(ALICE_DM)
    assert "What do you need with email?" in visible(question)
    await harness.interactive(block_actions(harness.buttons(question)["Out-of-office reply"]))
    await harness.settle()
    form_message = harness.last_post(ALICE_DM)
    fill = harness.buttons(form_message)["Fill in the form"]
    response = await harness.interactive(block_actions(fill))
    assert response.status_code == 200
    await harness.settle()
    view = standin.calls_to("views.open")[-1].params["view"]
    assert view["type"] == "modal" and view["callback_id"] == "ooo_form"
    assert [b["block_id"] for b in view["blocks"] if b["type"] == "input"] == [
        "message", "start_date", "end_date", "external"]

    def values(start: str) -> dict[str, Any]:
        return {"message": {"message": {"type": "plain_text_input", "value": "Away & back soon <!here>"}},
                "start_date": {"start_date": {"type": "plain_text_input", "value": start}},
                "end_date": {"end_date": {"type": "plain_text_input", "value": "2026-12-31"}},
                "external": {"external": {"type": "static_select", "selected_option": {"value": "no"}}}}

    # A value that breaks the field's pattern is refused inside the modal.
    refused = await harness.interactive(view_submission("ooo_form", values("next week"), view["private_metadata"]))
    assert refused.json()["response_action"] == "errors" and "start_date" in refused.json()["errors"]
    accepted = await harness.interactive(view_submission("ooo_form", values("2026-12-24"), view["private_metadata"]))
    assert accepted.status_code == 200 and accepted.content in (b"", b"null")
    await harness.settle()
    after = [p for p in harness.posts(ALICE_DM) if p is not form_message][-1]
    assert after is not form_message and "Fill in the form" not in harness.buttons(after)
    assert "<!here>" not in json.dumps([c.params for c in standin.calls])


async def test_password_reset_asked_in_a_channel_never_shows_the_password_there(harness: Harness) -> None:
    mention = app_mention("reset my password")
    await harness.event(mention)
    await harness.settle()
    thread = mention["event"]["ts"]
    situation = harness.last_post("C0CHAN0001")
    assert situation["thread_ts"] == thread
    await harness.interactive(block_actions(harness.buttons(situation)["I forgot it"], channel="C0CHAN0001",
                                            message_ts=harness.standin.messages["C0CHAN0001"][-1]["ts"],
                                            thread_ts=thread))
    await harness.settle()
    confirm_post = harness.last_post("C0CHAN0001")
    assert confirm_post["thread_ts"] == thread
    await harness.interactive(block_actions(harness.buttons(confirm_post)["Reset my password"], channel="C0CHAN0001",
                                            message_ts=harness.standin.messages["C0CHAN0001"][-1]["ts"],
                                            thread_ts=thread))
    await harness.settle()
    shown = [p for p in harness.posts(ALICE_DM) if "temporary password:" in json.dumps(p.get("blocks") or [])]
    assert len(shown) == 1
    password = next(b for b in shown[0]["blocks"] if b["type"] == "rich_text")["elements"][0]["elements"][0]["text"]
    assert len(password) >= 12 and password not in shown[0]["text"]
    channel_calls = [c for c in harness.standin.calls if c.params.get("channel") == "C0CHAN0001"]
    assert channel_calls and all(password not in json.dumps(c.params) for c in channel_calls)
    pointers = harness.standin.calls_to("chat.postEphemeral")
    assert any(c.params["channel"] == "C0CHAN0001" and c.params["user"] == ALICE for c in pointers)


# ----- commands, shortcut, Home ---------------------------------------------------------------


async def test_slash_command_from_a_channel_answers_in_the_dm_with_a_pointer(harness: Harness) -> None:
    response = await harness.command(slash_command(""))
    assert response.status_code == 200 and response.text == ""
    await harness.settle()
    assert "/helpdesk" in visible(harness.last_post(ALICE_DM))
    pointer = harness.standin.calls_to("chat.postEphemeral")[-1].params
    assert pointer["channel"] == "C0CHAN0001" and pointer["user"] == ALICE
    assert harness.standin.calls_to("conversations.open")


async def test_home_quick_action_runs_a_command_in_the_dm(harness: Harness) -> None:
    await harness.interactive(home_button("cmd:help"))
    await harness.settle()
    said = " ".join(visible(p) for p in harness.posts(ALICE_DM))
    assert "IT help desk bot" in said and "/helpdesk status" in said
    await harness.interactive(home_button("cmd:my tickets"))
    await harness.settle()
    assert "You have no tickets." in visible(harness.last_post(ALICE_DM))


# ----- the outbox sender ----------------------------------------------------------------------


# The ticket's queue card; the technician's own answer is an outbox row too (`reply:...`).
QUEUE_CARD = select(OutboxRow).where(~OutboxRow.idempotency_key.startswith("reply:"))


async def open_ticket(h: Harness) -> None:
    """A technician opens a ticket for themselves: exactly one outbox row besides the reply (the queue card)."""
    await h.command(slash_command('open --for tom.tech@example.com --category printer --summary "jammed"',
                                  user=TOM, channel=TOM_DM))
    await h.mount.channel.drain()
    # Deliver the answer to Tom first, so what follows is about the queue card alone.
    from bot.outbox.worker import OutboxWorker

    await OutboxWorker(h.app.sessions, h.mount.senders(), lanes=[f"slack:{TOM_DM}"]).drain()


async def test_outbox_post_that_hits_429_is_delivered_once_after_retry_after(harness: Harness) -> None:
    await open_ticket(harness)
    harness.standin.rate_limit("chat.postMessage", retry_after=1)
    await harness.worker.drain()
    assert harness.posts(QUEUE) == []
    async with harness.app.sessions() as session:
        row = (await session.execute(QUEUE_CARD)).scalars().one()
    assert row.status == "pending" and "ratelimited" in (row.last_error or "")
    await asyncio.sleep(1.1)
    await harness.worker.drain()
    assert len(harness.posts(QUEUE)) == 1


async def test_outbox_ok_false_errors_are_permanent_or_temporary(harness: Harness) -> None:
    await open_ticket(harness)
    harness.standin.fail("chat.postMessage", "internal_error")
    await harness.worker.drain()
    async with harness.app.sessions() as session:
        row = (await session.execute(QUEUE_CARD)).scalars().one()
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

    await open_ticket(harness)
    await harness.settle()
    assert len(harness.posts(QUEUE)) == 1
    async with harness.app.sessions() as session:
        row = (await session.execute(QUEUE_CARD)).scalars().one()
    delivery = Delivery(row.id, row.idempotency_key, row.platform, row.address, {**row.payload, "_interrupted": True},
                        2, row.lane, row.group_key)
    found = await harness.mount.channel.sender.find_delivered(delivery)
    assert found == row.message_ref
    assert harness.standin.calls_to("conversations.history")[-1].params["include_all_metadata"] in (True, "1", "true")


# ----- identity: a forged interaction cannot redirect a secret (issue 20) -------------------------


async def test_forged_block_action_in_another_persons_dm_never_posts_there(harness: Harness) -> None:
    from sqlalchemy import select

    from bot.store.tables import PersonIdentityRow

    bob, bob_dm = "U0USER0002", "D0USER0002"
    await harness.event(message_im("I forgot my password"))
    await harness.settle()
    situation = harness.last_post(ALICE_DM)
    await harness.interactive(block_actions(harness.buttons(situation)["I forgot it"],
                                            message_ts=harness.standin.messages[ALICE_DM][-1]["ts"]))
    await harness.settle()
    confirm = harness.last_post(ALICE_DM)
    before = len(harness.posts(ALICE_DM))
    # Valid signature, Bob's user id, a message in Alice's DM.
    forged = block_actions(harness.buttons(confirm)["Reset my password"], user=bob, channel=ALICE_DM,
                           message_ts=harness.standin.messages[ALICE_DM][-1]["ts"])
    assert (await harness.interactive(forged)).status_code == 200
    await harness.settle()
    assert harness.posts(ALICE_DM)[before:] == []
    assert not any(c.params.get("channel") == ALICE_DM for c in harness.standin.calls_to("chat.postEphemeral"))
    async with harness.app.sessions() as session:
        rows = (await session.execute(select(PersonIdentityRow).where(
            PersonIdentityRow.platform == "slack", PersonIdentityRow.platform_user_id == bob))).scalars().all()
    assert rows and all((r.direct_address or {}).get("conversation_id") != ALICE_DM for r in rows)
    assert all(ALICE_DM not in json.dumps(p) for p in harness.posts(bob_dm))


async def test_secret_goes_only_to_the_owners_own_dm(harness: Harness) -> None:
    """Even when the reply's address names another DM, the secret goes to conversations.open's DM."""
    from bot.core.models import Address, Outbound, Platform, Reply

    sender = harness.mount.channel.replies
    secret = Reply(text="Your temporary password: Zq9&x", secret=True, private=True,
                   rich={"secret": {"label": "Your temporary password", "value": "Zq9&x", "advice": ""}})
    await sender.send([Outbound(Address(Platform.SLACK, ALICE_DM), secret)], sender_user="U0USER0002")
    assert harness.posts(ALICE_DM) == []
    [post] = harness.posts("D0USER0002")
    assert "Zq9&x" in json.dumps(post) and "Zq9" not in post["text"]  # shown in the block, not the preview


async def test_users_info_429_says_one_moment_and_answers_after_retry_after(harness: Harness) -> None:
    harness.mount.channel.identity.budget = 0.2  # shorter than Retry-After: the in-place retry gives up
    harness.standin.rate_limit("users.info", retry_after=1, times=1)
    await harness.event(message_im("hello"))
    await harness.settle()
    texts = [p.get("text") or "" for p in harness.posts(ALICE_DM)]
    assert not any("couldn't find your account" in t for t in texts), texts
    assert any("try again in a moment" in t for t in texts), texts
    assert len(harness.standin.calls_to("users.info")) == 1  # after the 429, answered once Retry-After passed
    assert len(texts) >= 2  # the real answer followed
