"""set_out_of_office: turn automatic replies on (always, or between two dates) or off. The
person's text is HTML-escaped, never interpreted."""

from __future__ import annotations

import html
import re
from datetime import UTC, datetime, timedelta

from bot.core.ports import ActionOutcome
from bot.graph.actions.base import Action, Run
from bot.graph.directory import Audience, AutoReplies

AUTO_REPLY_MAX = 4000
_DATE_ONLY = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def parse_when(value: str) -> datetime | None:
    text = value.strip()
    if not text:
        return None
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _when(moment: datetime, *, end: bool = False) -> str:
    """A schedule boundary as people say it: a whole day is "27 Nov" (an end at midnight is the end
    of the day before), anything else "27 Nov 14:30 UTC"."""
    if moment.hour == moment.minute == moment.second == 0:
        return f"the end of {moment - timedelta(days=1):%d %b %Y}" if end else f"{moment:%d %b %Y}"
    return f"{moment:%d %b %Y %H:%M} UTC"


async def run(run: Run) -> ActionOutcome:
    status = run.arg("status").lower()
    if status in ("off", "disable", "disabled"):
        replies = AutoReplies(status="disabled")
    else:
        text = run.arg("message")
        if not text:
            return ActionOutcome(
                ok=False,
                code="needs_input",
                input_slot="message",
                prompt="What should your automatic reply say?",
            )
        if len(text) > AUTO_REPLY_MAX:
            return ActionOutcome(
                ok=False,
                code="needs_input",
                input_slot="message",
                prompt=f"That's a bit long; please keep it under {AUTO_REPLY_MAX} characters.",
            )
        start, end = parse_when(run.arg("start")), parse_when(run.arg("end"))
        if end is not None and _DATE_ONLY.match(run.arg("end").strip()):
            # "Until 2026-12-04" includes the 4th: the replies stop at the end of that day.
            end += timedelta(days=1)
        if (
            (run.arg("start") and start is None)
            or (run.arg("end") and end is None)
            or (start and end and end <= start)
        ):
            return ActionOutcome(
                ok=False,
                code="needs_input",
                input_slot="end",
                prompt="When should the automatic reply stop? (for example 2026-10-05)",
            )
        audiences: dict[str, Audience] = {"none": "none", "contactsOnly": "contactsOnly", "all": "all"}
        audience = audiences.get(run.arg("audience"), "all")
        # The reply is HTML in Outlook: the person's text is escaped, never interpreted.
        body = html.escape(text).replace("\r\n", "\n").replace("\n", "<br>")
        if start and end:
            replies = AutoReplies(
                status="scheduled",
                internal_html=body,
                external_html=body,
                external_audience=audience,
                start=start,
                end=end,
            )
        else:
            replies = AutoReplies(
                status="alwaysEnabled", internal_html=body, external_html=body, external_audience=audience
            )
    run.details.update(status=replies.status)
    if run.dry:
        return await run.would("PATCH /users/{id}/mailboxSettings automaticRepliesSetting")
    await run.begin()
    receipt = await run.directory.set_automatic_replies(run.user.id, replies)
    data = {
        "status": replies.status,
        "start": replies.start.isoformat() if replies.start else None,
        "end": replies.end.isoformat() if replies.end else None,
        "audience": replies.external_audience,
    }
    if replies.status == "disabled":
        message = "Your automatic replies are off."
    elif replies.status == "scheduled" and replies.start and replies.end:
        message = f"Your automatic replies are set from {_when(replies.start)} to {_when(replies.end, end=True)}."
    else:
        message = "Your automatic replies are on until you turn them off."
    return ActionOutcome(ok=True, code="done", request_id=receipt.request_id, message=message, data=data)


ACTION = Action(
    name="set_out_of_office",
    does="set your automatic replies",
    does_for="set their automatic replies",
    run=run,
    changes=True,
    needs=("status", "message", "start", "end", "audience"),
    calls=("PATCH /users/{id}/mailboxSettings automaticRepliesSetting",),
)
