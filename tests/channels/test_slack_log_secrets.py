"""Secrets never reach the log, at any level, through the real platform SDK loggers (issue 20/13):
slack_sdk logs request bodies at DEBUG, slack_bolt logs a whole request at INFO when a signature
does not match, and the redactor must keep diagnostics while masking values."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from bot.logs import configure_logging, redact, register_secret
from tests.channels.slack_harness import (
    Harness,
    block_actions,
    harness,  # noqa: F401 - fixture
    message_im,
    standin,  # noqa: F401 - fixture
)

ALICE_DM = "D0USER0001"


@pytest.fixture
def log_stream() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    configure_logging("text", "DEBUG", stream=stream)
    for name in ("slack_sdk", "slack_bolt"):
        logging.getLogger(name).setLevel(logging.DEBUG)
    try:
        yield stream
    finally:
        logging.getLogger().handlers.clear()
        logging.getLogger().setLevel(logging.WARNING)


async def test_temporary_password_with_ampersand_is_not_logged_at_debug(
    harness: Harness, log_stream: io.StringIO, monkeypatch: pytest.MonkeyPatch,  # noqa: F811
) -> None:
    import bot.graph.passwords as passwords

    monkeypatch.setattr(passwords, "SYMBOLS", "&")  # every symbol is '&' (sent to Slack as &amp;)
    await harness.event(message_im("I forgot my password"))
    await harness.settle()
    situation = harness.last_post(ALICE_DM)
    await harness.interactive(block_actions(harness.buttons(situation)["I forgot it"],
                                            message_ts=harness.standin.messages[ALICE_DM][-1]["ts"]))
    await harness.settle()
    confirm = harness.last_post(ALICE_DM)
    await harness.interactive(block_actions(harness.buttons(confirm)["Reset my password"],
                                            message_ts=harness.standin.messages[ALICE_DM][-1]["ts"]))
    await harness.settle()
    shown = [p for p in harness.posts(ALICE_DM) if "temporary password:" in json.dumps(p.get("blocks") or [])]
    assert len(shown) == 1
    # The notification text is a fixed line; the password is shown exactly in a rich_text block.
    password = next(b for b in shown[0]["blocks"] if b["type"] == "rich_text")["elements"][0]["elements"][0]["text"]
    assert "&" in password
    log = log_stream.getvalue()
    assert "Sending a request" in log  # the SDK really logged its request bodies at DEBUG
    assert "chat.postMessage" in log
    for form in (password, password.replace("&", "&amp;"), password.split("&")[-1]):
        if len(form) >= 4:
            assert form not in log, form


async def test_bad_signature_request_body_is_not_logged_by_slack_bolt(
    harness: Harness, log_stream: io.StringIO,  # noqa: F811
) -> None:
    response = await harness.event(message_im("my password is Winter-2026-Zebra"), secret="not-the-secret")
    assert response.status_code == 401
    log = log_stream.getvalue()
    assert "Winter-2026-Zebra" not in log and "my password is" not in log


def test_redactor_keeps_diagnostics_and_masks_values() -> None:
    line = redact("action reset_password: (token request refused: AADSTS7000215 invalid client secret)")
    assert line == "action reset_password: (token request refused: AADSTS7000215 invalid client secret)"
    assert redact("password: &amp;Zq9 rest") == "password: *** rest"
    assert redact('{"password": "a&b\\"c", "x": 1}') == '{"password": ***, "x": 1}'
    assert redact("a=1&password=x&y&z=2") == "a=1&password=***&z=2"
    register_secret("Qz&9<kT!mW")
    assert "Qz" not in redact("sent `Qz&amp;9&lt;kT!mW` and Qz%269%3CkT%21mW and Qz&9<kT!mW")


def test_sdk_record_at_info_loses_its_body_and_debug_is_redacted() -> None:
    stream = io.StringIO()
    configure_logging("json", "DEBUG", stream=stream)
    try:
        register_secret("Secret-Value-42!")
        logging.getLogger("slack_bolt.App").info("Invalid request signature detected (signature: v0=1, "
                                                 "timestamp: 1, body: text=my+password+is+hunter22)")
        logging.getLogger("slack_sdk.web.async_base_client").debug(
            "Sending a request - json: {'text': 'your password: Secret-Value-42!'}")
    finally:
        logging.getLogger().handlers.clear()
    log = stream.getvalue()
    assert "hunter22" not in log and "Secret-Value-42" not in log
    assert "Invalid request signature detected" in log and "Sending a request" in log
