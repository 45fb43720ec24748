"""`helpdesk chat`: talk to the bot in a terminal as a person of the directory."""

from __future__ import annotations

import asyncio
import sys
from typing import Any

from bot.channels.console.channel import (
    ConsoleSender,
    click_incoming,
    form_incoming,
    format_reply,
    lanes_for,
    pick_button,
    text_incoming,
)
from bot.core.models import Button, Form, Reply
from bot.core.ports import Delivery
from bot.outbox.worker import OutboxWorker

BANNER = """{name}: you are chatting as {email}. Type your question; pick a choice by its number.
Type /helpdesk help for commands, "quit" to leave."""


class ConsoleChat:
    def __init__(self, app: Any, email: str, *, out: Any = None) -> None:
        self.app = app
        self.email = email.lower()
        self.out = out or sys.stdout
        self.buttons: tuple[Button, ...] = ()
        self.pending_form: Form | None = None

    def show(self, reply: Reply, prefix: str = "bot") -> None:
        print(f"{prefix}> {format_reply(reply)}", file=self.out, flush=True)
        if reply.buttons:
            self.buttons = reply.buttons
        if reply.form is not None:
            self.pending_form = reply.form

    async def _delivered(self, email: str, reply: Reply, kind: str, delivery: Delivery) -> None:
        if kind == "delete":
            # A recalled notice has no text of its own: say what happened, never an empty "bot>".
            print("bot> (an earlier notice was withdrawn)", file=self.out, flush=True)
            return
        if not reply.text.strip() and not reply.buttons and reply.form is None:
            return
        label = "bot (update)" if kind == "update" else "bot"
        self.show(reply, prefix=label)

    async def _ask(self, prompt: str) -> str | None:
        try:
            return await asyncio.to_thread(input, prompt)
        except EOFError:
            return None

    async def _fill_form(self, form: Form) -> dict[str, str]:
        print(f"bot> {form.title}", file=self.out, flush=True)
        values: dict[str, str] = {}
        for spec in form.fields:
            if spec.only_if is not None and values.get(spec.only_if[0]) != spec.only_if[1]:
                continue  # "Groups" after "Everyone" is not asked
            options = ""
            if spec.options:
                options = " (" + ", ".join(f"{n}={o.label}" for n, o in enumerate(spec.options, 1)) + ")"
            answer = await self._ask(f"  {spec.label}{options}{'' if spec.required else ' [optional]'}: ") or ""
            if spec.options and answer.strip().isdigit() and 1 <= int(answer) <= len(spec.options):
                answer = spec.options[int(answer) - 1].value
            values[spec.name] = answer.strip()
        return values

    async def run(self) -> None:
        worker = OutboxWorker(self.app.sessions, {"console": ConsoleSender(self._delivered)},
                              lanes=lanes_for(self.email), poll_seconds=1.0, clock=self.app.clock)
        self.app.pipeline.on_commit = worker.wake
        task = asyncio.create_task(worker.run_forever())
        ticks = asyncio.create_task(self.app.run_ticks(15.0))
        print(BANNER.format(name=self.app.settings.app.name, email=self.email), file=self.out, flush=True)
        try:
            while True:
                if self.pending_form is not None:
                    form, self.pending_form = self.pending_form, None
                    values = await self._fill_form(form)
                    await self._send(form_incoming(self.email, form, values))
                    continue
                line = await self._ask("you> ")
                if line is None or line.strip().lower() in {"quit", "exit", ":q"}:
                    break
                if not line.strip():
                    continue
                button = pick_button(self.buttons, line) if self.buttons else None
                if button is not None:
                    await self._send(click_incoming(self.email, button.value))
                else:
                    await self._send(text_incoming(self.email, line))
        finally:
            worker.stop()
            ticks.cancel()
            await asyncio.gather(task, ticks, return_exceptions=True)

    async def _send(self, incoming: Any) -> None:
        self.buttons = ()
        result = await self.app.pipeline.handle(incoming)
        for outbound in result.replies:
            self.show(outbound.reply)
