"""Questions asked before the first useful answer (an article, a self-service action or its
confirmation, or a ticket), over opening messages: the issue 15 examples, openings that carry a
device, an error code, a group name, a date or an urgency, and the first message of every flow
transcript in tests/conversations/.

Each opening runs on a fresh database against the shipped flows, KB and demo directory (as Alice).
The bench answers like a person who only gives what is asked: the first choice offered (or the
one named in ANSWERS), "Yes" to a one-line confirmation, a short text to a typed question, plain
values to a form. A question is a reply that waits for an answer: choices, a form, a one-line
confirmation ("Your Windows computer ALICE-LT01?") or a typed question; an action's own "Go ahead?"
is the action, so it counts as the useful answer.

Run on purpose, against any checkout (so before/after can be compared on the same openings):
    PYTHONPATH=. python bench/questions_asked.py            # this tree
    PYTHONPATH=/path/to/other/tree python bench/questions_asked.py   # run from that tree's folder
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).resolve().parents[1]

# The examples of issue 15, then openings that carry what a later question asks.
OPENINGS: list[str] = [
    "vpn won't connect",
    "my mailbox is full",
    "I lost my phone with the authenticator",
    "set my out of office",
    "I need access to the marketing share",
    "the printer is jammed and it shows error code E52",
    "my vpn on the mac keeps dropping with error 809, I can't work",
    "outlook keeps crashing on my windows laptop, it's urgent",
    "please add me to the engineering group",
    "got a new phone and need to move my authenticator",
    "printer on floor 2 won't print, nobody can print",
    "emails bounce back undeliverable with error 550",
    "I'm not receiving the sms verification code",
    "vpn is very slow since yesterday",
]
ANSWERS: dict[str, str] = {}  # opening -> the choice label to click when asked (default: the first)
USEFUL = {"kb_suggested", "action", "ticket_created"}
MAX_TURNS = 8


def transcript_openings() -> list[str]:
    found = []
    for path in sorted((HERE / "tests" / "conversations").glob("*.yaml")):
        if path.name.startswith("tickets_"):
            continue
        doc = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        if doc.get("settings"):
            continue
        first = next((t.get("say") for t in doc.get("turns") or [] if isinstance(t, dict) and "as" not in t), None)
        if isinstance(first, str) and first.strip() and first not in found:
            found.append(first)
    return found


def _is_question(reply: Any) -> str | None:
    values = [b.value for b in reply.buttons]
    if any(v.startswith("confirm:") for v in values):
        return None  # an action asking "go ahead?": the action is the answer
    if reply.form is not None:
        return "form"
    if any(v.startswith("guess:") for v in values):
        return "confirm"
    if any(v.startswith("choice:") for v in values):
        return "choice"
    if not values and "?" in reply.text:
        return "text"
    return None


async def one(opening: str, settings: Any) -> tuple[int, str]:
    """(questions asked before the first useful answer, what the useful answer was)."""
    from bot.app import build_app
    from bot.channels.console.channel import click_incoming, form_incoming, text_incoming
    from bot.store.migrate import upgrade

    email = "alice@example.com"
    now = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
    with tempfile.TemporaryDirectory(prefix="bench-questions-") as tmp:
        url = f"sqlite+aiosqlite:///{Path(tmp) / 'bench.db'}"
        await upgrade(url)
        app = await build_app(settings, clock=lambda: now, database_url=url)
        try:
            incoming = text_incoming(email, opening, event_id="b-0")
            asked = 0
            for number in range(1, MAX_TURNS + 1):
                result = await app.pipeline.handle(incoming)
                types = {e["type"] for e in result.events}
                useful = types & USEFUL
                if useful:
                    return asked, sorted(useful)[0]
                replies = [o.reply for o in result.replies]
                last = replies[-1] if replies else None
                kind = _is_question(last) if last is not None else None
                if last is not None and any(b.value.startswith("confirm:") for b in last.buttons):
                    return asked, "action confirm"
                if kind is None:
                    return asked, "none"
                asked += 1
                event_id = f"b-{number}"
                if kind == "form":
                    form = last.form  # type: ignore[union-attr]
                    values = {f.name: ("2026-11-30" if "date" in f.name else f.options[0].value if f.options
                                       else "Away") for f in form.fields}
                    incoming = form_incoming(email, form, values, event_id=event_id)
                elif kind == "confirm":
                    incoming = click_incoming(email, "guess:yes", event_id=event_id)
                elif kind == "choice":
                    wanted = ANSWERS.get(opening)
                    button = next((b for b in last.buttons if b.label == wanted), None) or next(  # type: ignore[union-attr]
                        b for b in last.buttons if b.value.startswith("choice:"))  # type: ignore[union-attr]
                    incoming = click_incoming(email, button.value, event_id=event_id)
                else:
                    incoming = text_incoming(email, "none", event_id=event_id)
            return asked, "gave up"
        finally:
            await app.aclose()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only-issue", action="store_true", help="only the issue's openings, not the transcripts'")
    args = parser.parse_args()
    logging.disable(logging.WARNING)
    from bot.settings import load_settings

    settings = load_settings()
    openings = OPENINGS + ([] if args.only_issue else [o for o in transcript_openings() if o not in OPENINGS])
    rows = []
    for opening in openings:
        asked, answer = await one(opening, settings)
        rows.append((opening, asked, answer))
    width = min(64, max(len(o) for o, _, _ in rows))
    print(f"{'opening':<{width}}  asked  first useful answer")
    for opening, asked, answer in rows:
        print(f"{opening[:width]:<{width}}  {asked:>5}  {answer}")
    issue = rows[: len(OPENINGS)]
    for label, group in (("issue + held-out openings", issue), ("all openings", rows)):
        total = sum(a for _, a, _ in group)
        print(f"{label}: {len(group)} openings, {total} questions, mean {total / len(group):.2f}, "
              f"none asked {sum(1 for _, a, _ in group if a == 0)}")


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
