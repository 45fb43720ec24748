"""An outbox worker process that delivers to a loopback HTTP recorder (the crash test's stand-in
for a chat platform). With CRASH_AFTER_SEND=1 it stops dead after the platform accepted a message
and before the row is marked sent, so the test can SIGKILL it exactly there.

    python loopback_worker.py DATABASE_URL RECORDER_URL LEASE_SECONDS
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from pathlib import Path

import httpx

from bot.outbox.worker import Delivery, OutboxWorker, RetryLater
from bot.store.db import create_engine, session_factory


class LoopbackSender:
    def __init__(self, base: str) -> None:
        self.client = httpx.AsyncClient(base_url=base, timeout=5)

    async def send(self, delivery: Delivery) -> str | None:
        try:
            response = await self.client.post("/send", json={"key": delivery.idempotency_key,
                                                              "text": delivery.payload["reply"]["text"]})
        except httpx.HTTPError as exc:
            raise RetryLater(str(exc)) from exc
        ref = str(response.json()["ref"])
        if os.environ.get("CRASH_AFTER_SEND") == "1":
            Path(os.environ["SENT_MARKER"]).write_text(ref)
            time.sleep(3600)  # the test kills us here: sent, not yet marked
        return ref

    async def find_delivered(self, delivery: Delivery) -> str | None:
        response = await self.client.get("/find", params={"key": delivery.idempotency_key})
        ref = response.json()["ref"]
        return str(ref) if ref else None


async def main(url: str, recorder: str, lease: float) -> None:
    engine = create_engine(url)
    worker = OutboxWorker(session_factory(engine), {"console": LoopbackSender(recorder)}, lease_seconds=lease)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if await worker.run_once() == 0 and os.environ.get("EXIT_WHEN_IDLE") == "1":
            break
        await asyncio.sleep(0.1)
    await engine.dispose()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], float(sys.argv[3])))
