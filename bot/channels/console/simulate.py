"""`helpdesk simulate`: run a YAML transcript through the whole pipeline on a fresh database.

A transcript:

    name: VPN escalation
    as: alice@example.com            # who speaks unless a turn says otherwise
    turns:
      - say: "vpn won't connect"
      - click: "Still need help"     # a button label, or its 1-based position in the last reply
      - form: {device: Laptop}       # answer the last form shown to this person
      - wait: 90m                    # move the clock (s, m, h, d)
      - as: tom.tech@example.com     # a turn by someone else (a technician)
        say: "/helpdesk claim HD-1001"
    expect:                          # optional, checked by the test runner
      - {type: flow_started, flow: vpn}

The output is the event stream: the same events the audit trail stores, plus `delivered` for
outbox messages that reached someone (a technician's queue post, a relayed reply).
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml

from bot.channels.console.channel import (
    ConsoleSender,
    click_incoming,
    form_incoming,
    pick_button,
    text_incoming,
)
from bot.core.models import Button, Form, Reply
from bot.core.ports import Delivery
from bot.settings import Settings
from bot.store.migrate import upgrade


class TranscriptError(Exception):
    """A transcript that cannot be run as written (unknown button, bad turn)."""


class FakeClock:
    def __init__(self, start: datetime | None = None) -> None:
        self.now = start or datetime(2026, 11, 23, 9, 0, tzinfo=UTC)  # a Monday morning

    def __call__(self) -> datetime:
        return self.now

    def advance(self, delta: timedelta) -> None:
        self.now += delta


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd])\s*$")


def parse_duration(text: str) -> timedelta:
    match = _DURATION.match(str(text))
    if not match:
        raise TranscriptError(f"wait: expected a duration like 90s, 15m, 2h or 3d, got {text!r}")
    amount, unit = float(match.group(1)), match.group(2)
    return timedelta(seconds=amount * {"s": 1, "m": 60, "h": 3600, "d": 86400}[unit])


@dataclass
class _Person:
    buttons: tuple[Button, ...] = ()
    form: Form | None = None


@dataclass
class Simulation:
    settings: Settings
    default_as: str
    events: list[dict[str, Any]] = field(default_factory=list)
    people: dict[str, _Person] = field(default_factory=dict)

    def _remember(self, email: str, reply: Reply) -> None:
        state = self.people.setdefault(email, _Person())
        if reply.buttons:
            state.buttons = reply.buttons
        if reply.form is not None:
            state.form = reply.form


async def run_transcript(doc: Mapping[str, Any], settings: Settings, *, as_email: str | None = None,
                         database_url: str | None = None) -> list[dict[str, Any]]:
    """Run a transcript; returns the event stream (each event a dict with `type`)."""
    from bot.app import build_app

    turns = doc.get("turns")
    if not isinstance(turns, list):
        raise TranscriptError("a transcript needs `turns:`, a list of say/click/form/wait")
    default_as = (as_email or doc.get("as") or "alice@example.com").lower()
    sim = Simulation(settings, default_as)
    clock = FakeClock()
    if "start" in doc:
        clock.now = datetime.fromisoformat(str(doc["start"])).astimezone(UTC)
    with tempfile.TemporaryDirectory(prefix="helpdesk-sim-") as tmp:
        url = database_url or f"sqlite+aiosqlite:///{Path(tmp) / 'simulate.db'}"
        await upgrade(url)
        app = await build_app(settings, clock=clock, database_url=url)

        async def deliver(email: str, reply: Reply, kind: str, delivery: Delivery) -> None:
            sim._remember(email, reply)
            sim.events.append({"type": "delivered", "to": email, "kind": kind, "text": reply.text,
                               "buttons": [b.label for b in reply.buttons]})

        from bot.outbox.worker import OutboxWorker

        # One delivery at a time: the event stream of a transcript is deterministic.
        worker = OutboxWorker(app.sessions, {"console": ConsoleSender(deliver)}, clock=clock, max_attempts=3,
                              concurrency=1)
        app.services["simulation_clock"] = clock
        # Periodic jobs' events (SLA reminders, claim release...) join the stream where they happen.
        for service in list(app.services.values()):
            if hasattr(service, "event_sink"):
                service.event_sink = sim.events
        try:
            await _drain(app, worker)
            for number, turn in enumerate(turns, 1):
                if not isinstance(turn, Mapping):
                    raise TranscriptError(f"turn {number}: expected a mapping like {{say: ...}}")
                await _run_turn(app, worker, sim, clock, turn, number)
        finally:
            await app.aclose()
    return sim.events


async def _drain(app: Any, worker: Any) -> None:
    await worker.drain()
    await app.tick()
    await worker.drain()


async def _run_turn(app: Any, worker: Any, sim: Simulation, clock: FakeClock, turn: Mapping[str, Any],
                    number: int) -> None:
    email = str(turn.get("as") or sim.default_as).lower()
    person = sim.people.setdefault(email, _Person())
    event_id = str(turn.get("event_id") or f"sim-{number}")
    if "wait" in turn:
        clock.advance(parse_duration(str(turn["wait"])))
        await _drain(app, worker)
        if len(turn) == 1 or set(turn) <= {"wait", "as"}:
            return
    if "say" in turn:
        incoming = text_incoming(email, str(turn["say"]), event_id=event_id)
    elif "click" in turn:
        wanted = str(turn["click"])
        button = pick_button(person.buttons, wanted)
        if button is None:
            labels = ", ".join(b.label for b in person.buttons) or "none"
            raise TranscriptError(f"turn {number}: no button {wanted!r} for {email}; offered: {labels}")
        incoming = click_incoming(email, button.value, event_id=event_id)
    elif "form" in turn:
        if person.form is None:
            raise TranscriptError(f"turn {number}: no form was shown to {email}")
        values = {str(k): str(v) for k, v in dict(turn["form"] or {}).items()}
        incoming = form_incoming(email, person.form, values, event_id=event_id)
        person.form = None
    else:
        raise TranscriptError(f"turn {number}: expected say, click, form or wait; got {sorted(turn)}")
    sim.events.append({"type": "turn", "as": email, **{k: turn[k] for k in ("say", "click", "form") if k in turn}})
    result = await app.pipeline.handle(incoming)
    if result.duplicate:
        sim.events.append({"type": "duplicate", "event_id": event_id})
    for event in result.events:
        sim.events.append(dict(event))
    person.buttons = ()
    for outbound in result.replies:
        sim._remember(email, outbound.reply)
    await _drain(app, worker)


def load_transcript(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise TranscriptError(f"{path}: not UTF-8 text (byte {exc.start + 1}); save the transcript as UTF-8") from None
    except OSError as exc:
        raise TranscriptError(f"{path}: cannot read: {exc.strerror or exc}") from None
    except yaml.YAMLError as exc:
        raise TranscriptError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise TranscriptError(f"{path}: expected a mapping with `turns:`")
    _check_shape(path, data)
    return data


def transcript_settings(doc: Mapping[str, Any]) -> dict[str, Any]:
    """The transcript's `settings:` block (section -> {key: value}), checked; overrides the config."""
    block = doc.get("settings") or {}
    if not isinstance(block, Mapping) or not all(isinstance(v, Mapping) for v in block.values()):
        raise TranscriptError("`settings:` must map sections to {key: value}, e.g. {tickets: {auto_close_days: 3}}")
    return {str(k): dict(v) for k, v in block.items()}


def _check_shape(path: Path, data: Mapping[str, Any]) -> None:
    """The fields the runner reads, with the types it expects: one clear line, not a traceback."""
    def _email(value: Any, where: str) -> None:
        if value is not None and not isinstance(value, str):
            raise TranscriptError(f"{path}: {where}`as:` must be one email address, not a {type(value).__name__}")

    _email(data.get("as"), "")
    turns = data.get("turns")
    if turns is None:
        return
    if not isinstance(turns, list):
        raise TranscriptError(f"{path}: `turns:` must be a list of turns")
    for number, turn in enumerate(turns, 1):
        if not isinstance(turn, dict):
            raise TranscriptError(f"{path}: turn {number} must be a mapping (say:, click:, form:, as:)")
        _email(turn.get("as"), f"turn {number}: ")
        for key in ("say", "click"):
            if key in turn and isinstance(turn[key], bool):  # YAML's yes/no/on/off, unquoted
                raise TranscriptError(f"{path}: turn {number}: `{key}:` is YAML's {str(turn[key]).lower()}, not "
                                      f"text; quote it (say: 'yes') to send the word")
            if key in turn and not isinstance(turn[key], str | int | float):
                raise TranscriptError(f"{path}: turn {number}: `{key}:` must be text")


def check_expectations(events: list[dict[str, Any]], expected: list[Mapping[str, Any]]) -> list[str]:
    """Each expected event must appear, in order. A string value starting with `~` matches as a
    case-insensitive substring; `!type` in place of `type` means no such event may follow."""
    problems: list[str] = []
    position = 0
    for want in expected:
        if "!type" in want:
            spec = {("type" if k == "!type" else k): v for k, v in want.items()}
            if any(_matches(e, spec) for e in events[position:]):
                problems.append(f"unexpected event {dict(spec)}")
            continue
        for index in range(position, len(events)):
            if _matches(events[index], want):
                position = index + 1
                break
        else:
            problems.append(f"missing (in order) event {dict(want)}")
    return problems


def _matches(event: Mapping[str, Any], want: Mapping[str, Any]) -> bool:
    for key, value in want.items():
        have = event.get(key)
        if isinstance(value, str) and value.startswith("~"):
            haystack = " ".join(map(str, have)) if isinstance(have, list) else str(have or "")
            if value[1:].lower() not in haystack.lower():
                return False
        elif have != value:
            return False
    return True
