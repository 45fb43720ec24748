"""Runs a `helpdesk simulate` transcript (tests/conversations/*.yaml) through the Teams adapter on the
real stack: every `say` is a personal-chat message, every `click` the Action.Submit / Action.Execute
of the newest card that person can see with that button (their personal chat, or the queue channel
for technicians), every `form` the submit of the newest form card. `wait` moves the shared fake
clock and runs the periodic jobs, as the console runner does. Returns the audit trail's events."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from bot.channels.console.simulate import FakeClock, TranscriptError, parse_duration
from bot.settings import Settings
from tests.channels.teams_real import QUEUE, Member, RealTeamsBot, make_real_bot
from tests.standins.bot_connector import BotConnectorStandIn, Call

SKIPPED = frozenset({"turn", "delivered", "reply", "teams_installed", "duplicate"})
COMPARED = ("flow", "outcome", "name", "ok", "category", "intent", "id", "reason", "direction", "fixed", "rating")


def signature(events: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    """What must be the same on every channel: event types, flows, outcomes, tickets..."""
    return [(e["type"], *(e.get(k) for k in COMPARED)) for e in events if e["type"] not in SKIPPED]


class TeamsTranscript:
    def __init__(self, bot: RealTeamsBot, clock: FakeClock) -> None:
        self.bot = bot
        self.clock = clock
        self.members: dict[str, Member] = {}

    async def member(self, email: str) -> Member:
        if email not in self.members:
            user = await self.bot.app.directory.find_user_by_email(email)
            if user is None:
                raise TranscriptError(f"{email} is not in the demo directory")
            n = len(self.members) + 1
            self.members[email] = Member(email, user.display_name, user.id, f"29:1transcript{n:04d}",
                                         f"a:1transcriptChat{n:04d}")
            self.bot.standin.installed.add(self.members[email].mri)
            await self.bot.post(self.bot.installed(self.members[email]))
        return self.members[email]

    async def settle(self) -> None:
        await self.bot.settle()
        await self.bot.app.tick()
        await self.bot.settle()

    def _visible(self, who: Member, call: Call) -> bool:
        if call.method not in ("POST", "PUT") or call.status >= 300 or not isinstance(call.body, dict):
            return False
        if call.body.get("type") != "message":
            return False
        return call.conversation_id == who.chat or call.conversation_id.startswith(QUEUE)

    def _cards(self, who: Member) -> list[Call]:
        """Newest first; a card edited in place counts once, in its latest version."""
        seen: set[str] = set()
        found: list[Call] = []
        for call in reversed(self.bot.standin.calls):
            if not self._visible(who, call):
                continue
            ident = call.activity_id if call.method == "PUT" else call.created_id
            if ident in seen:
                continue
            seen.add(str(ident))
            found.append(call)
        return found

    @staticmethod
    def _card_id(call: Call) -> str:
        return str(call.activity_id if call.method == "PUT" else call.created_id)

    async def _act(self, who: Member, call: Call, action: Mapping[str, Any], extra: Mapping[str, str] = {}) -> None:
        data = {**dict(action.get("data") or {}), **extra}
        conversation = call.conversation_id
        card = self._card_id(call)
        if conversation == who.chat:
            activity = self.bot.submit(who, data, reply_to=card)
        elif action.get("type") == "Action.Execute":
            thread = conversation if ";messageid=" in conversation else f"{conversation};messageid={card}"
            activity = self.bot.execute(who, data, conversation=thread, reply_to=card)
        else:
            base = conversation.split(";messageid=")[0]
            root = conversation.split(";messageid=")[1] if ";messageid=" in conversation else card
            activity = self.bot.in_channel(who, "", channel=base, root=root)
            activity.pop("text")
            activity["value"] = data
            activity["replyToId"] = card
        await self.bot.post(activity)

    async def click(self, who: Member, wanted: str, number: int) -> None:
        for call in self._cards(who):
            actions = self.bot.standin.actions(call)
            chosen = next((a for a in actions if a.get("title") == wanted), None)
            numbered = wanted.isdigit() and 0 < int(wanted) <= len(actions)
            if chosen is None and numbered and call.conversation_id == who.chat:
                chosen = actions[int(wanted) - 1]
            if chosen is not None:
                await self._act(who, call, chosen)
                return
        raise TranscriptError(f"turn {number}: no card with a {wanted!r} button for {who.email}")

    async def form(self, who: Member, values: Mapping[str, Any], number: int) -> None:
        for call in self._cards(who):
            content = call.body["attachments"][0]["content"]
            if any(str(b.get("type", "")).startswith("Input.") for b in content.get("body", [])):
                action = self.bot.standin.actions(call)[0]
                await self._act(who, call, action, {f"f_{k}": str(v) for k, v in values.items()})
                return
        raise TranscriptError(f"turn {number}: no form card for {who.email}")

    async def run(self, doc: Mapping[str, Any]) -> list[dict[str, Any]]:
        default_as = str(doc.get("as") or "alice@example.com").lower()
        await self.settle()
        for number, turn in enumerate(doc["turns"], 1):
            who = await self.member(str(turn.get("as") or default_as).lower())
            if "wait" in turn:
                self.clock.advance(parse_duration(str(turn["wait"])))
                await self.settle()
                if set(turn) <= {"wait", "as"}:
                    continue
            if "say" in turn:
                await self.bot.post(self.bot.personal(who, str(turn["say"])))
            elif "click" in turn:
                await self.click(who, str(turn["click"]), number)
            elif "form" in turn:
                await self.form(who, dict(turn["form"] or {}), number)
            await self.settle()
        return await self.bot.events()


async def teams_transcript_events(doc: Mapping[str, Any], settings: Settings,
                                  standin: BotConnectorStandIn) -> list[dict[str, Any]]:
    clock = FakeClock()
    if "start" in doc:
        clock.now = datetime.fromisoformat(str(doc["start"])).astimezone(UTC)
    bot = await make_real_bot(settings, standin, clock=clock)
    try:
        return await TeamsTranscript(bot, clock).run(doc)
    finally:
        await bot.client.aclose()
        await bot.app.aclose()
