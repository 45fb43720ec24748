"""A local stand-in for Slack's Socket Mode server ("applink"): a real WebSocket server on loopback.

The Socket Mode protocol (https://api.slack.com/apis/connections/socket-implement; the message shapes
of slackapi/java-slack-sdk `bolt-socket-mode/src/test/java/util/socket_mode/MockSocketMode.java`):

1. the app calls `apps.connections.open` with its app-level token (`xapp-...`) and gets a one-off
   URL, `wss://wss-primary.slack.com/link/?ticket=...&app_id=...` (here the Web API stand-in hands
   out `issue_url()`: `ws://127.0.0.1:PORT/link/?ticket=...&app_id=...`);
2. it opens a WebSocket there; the server greets it with `{"type": "hello", "num_connections": n,
   "debug_info": {...}, "connection_info": {"app_id": ...}}`;
3. the server pushes envelopes, `{"envelope_id", "type": "events_api" | "interactive" |
   "slash_commands", "payload", "accepts_response_payload", "retry_attempt", "retry_reason"}`:
   `events_api` carries the whole Events API body (`type: event_callback`, `event_id`, `event`...),
   `interactive` the interaction payload as JSON (not form-encoded), `slash_commands` the command's
   fields as a JSON object;
4. the app acknowledges each one with `{"envelope_id": ...}` (plus `"payload"` when it answers);
5. to recycle a connection the server sends `{"type": "disconnect", "reason": "refresh_requested",
   "debug_info": {...}}`; the app calls apps.connections.open again and reconnects.

This stand-in does all of that and records everything: the connections (ticket, when opened and
closed, what was sent), every acknowledgement (`acks`, `wait_ack(envelope_id)`), anything else the
client sent (`received`). It runs on the test's event loop (aiohttp's server):

    socket = await SocketModeStandIn().start()
    web_api.socket_url = socket.issue_url        # tests/standins/slack_api.py
    ...
    envelope_id = await socket.push_event(body)  # or push_interactive / push_command / push
    ack = await socket.wait_ack(envelope_id)
    await socket.disconnect("refresh_requested")
    await socket.wait_connections(2)
    await socket.stop()
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSMsgType, web

APP_ID = "A0APP00001"
HOST_NAME = "applink-standin"
# accepts_response_payload per envelope type (the app may answer in its ack: modal errors, command text).
ACCEPTS_RESPONSE = {"events_api": False, "interactive": True, "slash_commands": True}


@dataclass
class Connection:
    """One WebSocket the client opened."""

    number: int  # 1 for the first connection, 2 for the next...
    ticket: str
    ws: web.WebSocketResponse
    opened_at: float = field(default_factory=time.monotonic)
    closed_at: float | None = None
    closed_by: str | None = None  # "client" or "server"
    sent: list[dict[str, Any]] = field(default_factory=list)

    @property
    def open(self) -> bool:
        return self.closed_at is None and not self.ws.closed

    @property
    def closed(self) -> bool:
        """Closed and done with (`closed_at` and `closed_by` are set)."""
        return self.closed_at is not None


@dataclass
class Ack:
    envelope_id: str
    connection: int  # Connection.number it came on
    message: dict[str, Any]
    at: float = field(default_factory=time.monotonic)

    @property
    def payload(self) -> Any:
        return self.message.get("payload")


class SocketModeStandIn:
    def __init__(self, *, host: str = "127.0.0.1", port: int = 0, app_id: str = APP_ID) -> None:
        self.host = host
        self.requested_port = port
        self.port = 0
        self.app_id = app_id
        self.connections: list[Connection] = []
        self.acks: list[Ack] = []
        self.received: list[dict[str, Any]] = []  # client messages that are not acknowledgements
        self.envelopes: dict[str, dict[str, Any]] = {}  # envelope_id -> envelope pushed
        self.tickets: list[str] = []  # issued by issue_url (called from the Web API stand-in's thread)
        self._tickets_lock = threading.Lock()
        self._runner: web.AppRunner | None = None
        self._closers: set[asyncio.Task[Any]] = set()

    # ----- lifecycle -------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/link/"

    def issue_url(self) -> str:
        """A fresh connection URL, as apps.connections.open returns (thread-safe)."""
        ticket = uuid.uuid4().hex
        with self._tickets_lock:
            self.tickets.append(ticket)
        return f"{self.url}?ticket={ticket}&app_id={self.app_id}"

    async def start(self) -> SocketModeStandIn:
        app = web.Application()
        app.router.add_get("/link/", self._link)
        app.router.add_get("/link", self._link)
        self._runner = web.AppRunner(app, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.requested_port)
        await site.start()
        server = getattr(site, "_server", None)
        sockets = getattr(server, "sockets", None) or []
        self.port = int(sockets[0].getsockname()[1]) if sockets else self.requested_port
        return self

    async def stop(self) -> None:
        for task in list(self._closers):
            task.cancel()
        for connection in self.connections:
            if connection.open:
                connection.closed_by = connection.closed_by or "server"
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(connection.ws.close(code=1001, message=b"going away"), 5)
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # ----- the server side of the protocol ---------------------------------------------------

    async def _link(self, request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse(autoping=True)  # answers the client's pings with pongs
        await ws.prepare(request)
        connection = Connection(len(self.connections) + 1, request.query.get("ticket", ""), ws)
        self.connections.append(connection)
        await self._send(connection, {
            "type": "hello", "num_connections": len(self.open_connections()),
            "debug_info": {"host": HOST_NAME, "build_number": 1, "approximate_connection_time": 18060},
            "connection_info": {"app_id": self.app_id},
        })
        try:
            async for message in ws:
                if message.type == WSMsgType.TEXT:
                    self._receive(connection, message.data)
        finally:
            connection.closed_at = time.monotonic()
            connection.closed_by = connection.closed_by or "client"
        return ws

    def _receive(self, connection: Connection, raw: str) -> None:
        try:
            message = json.loads(raw)
        except ValueError:
            self.received.append({"raw": raw, "connection": connection.number})
            return
        if isinstance(message, dict) and message.get("envelope_id"):
            self.acks.append(Ack(str(message["envelope_id"]), connection.number, message))
        else:
            self.received.append({"message": message, "connection": connection.number})

    async def _send(self, connection: Connection, message: Mapping[str, Any]) -> None:
        connection.sent.append(dict(message))
        await connection.ws.send_str(json.dumps(message))

    # ----- test helpers ----------------------------------------------------------------------

    def open_connections(self) -> list[Connection]:
        return [c for c in self.connections if c.open]

    def current(self) -> Connection:
        """The newest open connection (where pushes go by default)."""
        live = self.open_connections()
        if not live:
            raise RuntimeError(f"no open Socket Mode connection ({len(self.connections)} so far)")
        return live[-1]

    async def push(self, type_: str, payload: Mapping[str, Any], *, envelope_id: str | None = None,
                   retry_attempt: int = 0, retry_reason: str = "", accepts_response_payload: bool | None = None,
                   connection: Connection | None = None) -> str:
        """Send an envelope; returns its envelope_id."""
        envelope_id = envelope_id or str(uuid.uuid4())
        envelope: dict[str, Any] = {
            "envelope_id": envelope_id, "type": type_, "payload": dict(payload),
            "accepts_response_payload": ACCEPTS_RESPONSE.get(type_, False)
            if accepts_response_payload is None else accepts_response_payload,
        }
        if type_ == "events_api":  # only Events API envelopes carry the retry fields
            envelope.update({"retry_attempt": retry_attempt, "retry_reason": retry_reason})
        self.envelopes[envelope_id] = envelope
        await self._send(connection or self.current(), envelope)
        return envelope_id

    async def push_event(self, body: Mapping[str, Any], **kw: Any) -> str:
        """An Events API body (`type: event_callback`) as an `events_api` envelope."""
        return await self.push("events_api", body, **kw)

    async def push_interactive(self, payload: Mapping[str, Any], **kw: Any) -> str:
        """An interaction payload (block_actions, view_submission, message_action...)."""
        return await self.push("interactive", payload, **kw)

    async def push_command(self, fields: Mapping[str, str], **kw: Any) -> str:
        """A slash command's fields (those HTTP mode form-encodes) as a `slash_commands` envelope."""
        return await self.push("slash_commands", fields, **kw)

    async def disconnect(self, reason: str = "refresh_requested", *, connection: Connection | None = None,
                         close_after: float | None = None) -> Connection:
        """Ask the client to reconnect. With `close_after`, also close the socket that many seconds
        later if the client has not (Slack closes a refreshed connection after a grace period)."""
        target = connection or self.current()
        await self._send(target, {"type": "disconnect", "reason": reason, "debug_info": {"host": HOST_NAME}})
        if close_after is not None:
            task = asyncio.create_task(self._close_later(target, close_after))
            self._closers.add(task)
            task.add_done_callback(self._closers.discard)
        return target

    async def _close_later(self, connection: Connection, seconds: float) -> None:
        await asyncio.sleep(seconds)
        if connection.open:
            connection.closed_by = "server"
            await connection.ws.close(code=1000, message=b"refresh")

    def acks_for(self, envelope_id: str) -> list[Ack]:
        return [a for a in self.acks if a.envelope_id == envelope_id]

    async def wait_ack(self, envelope_id: str, timeout: float = 15.0) -> Ack:
        """The first acknowledgement of `envelope_id`; AssertionError after `timeout` seconds."""
        await self._until(lambda: bool(self.acks_for(envelope_id)), timeout,
                          lambda: f"no ack for envelope {envelope_id} (acks: {[a.envelope_id for a in self.acks]})")
        return self.acks_for(envelope_id)[0]

    async def wait_connections(self, count: int, timeout: float = 15.0) -> Connection:
        """Wait until `count` connections have been opened in all and one is open; the newest open one."""
        await self._until(lambda: len(self.connections) >= count and bool(self.open_connections()), timeout,
                          lambda: f"{len(self.connections)} connection(s), {len(self.open_connections())} open; "
                                  f"wanted {count}")
        return self.current()

    async def wait_closed(self, connection: Connection, timeout: float = 15.0) -> None:
        await self._until(lambda: connection.closed, timeout, lambda: f"connection {connection.number} still open")

    @staticmethod
    async def _until(check: Callable[[], bool], timeout: float, describe: Callable[[], str]) -> None:
        deadline = time.monotonic() + timeout
        while not check():
            if time.monotonic() > deadline:
                raise AssertionError(describe())
            await asyncio.sleep(0.01)
