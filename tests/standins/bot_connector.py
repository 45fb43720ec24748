"""A local stand-in for the Bot Connector service (loopback only).

Records what the bot sends: `POST /v3/conversations/{id}/activities[/{replyToId}]` (returns a new
activity id), `PUT .../activities/{id}` (update), `DELETE .../activities/{id}`, and
`POST /v3/conversations` (opens a personal chat when the member has "installed" the app, else 403
like Teams). Failures can be injected: `fail(status, times=1, retry_after=..., method=..., path=...)`.

It also publishes OpenID metadata and signing keys in Microsoft's shapes, so tests sign tokens with
their own keys and point `teams.openid_metadata_url` / `teams.entra_openid_metadata_url` here:
`GET /v1/.well-known/openidconfiguration` -> `jwks_uri` `/v1/.well-known/keys` (Bot Connector keys,
each with `endorsements`), and `GET /botframework.com/v2.0/.well-known/openid-configuration` ->
`/common/discovery/v2.0/keys` (Entra keys, no endorsements). `publish(public_key, kid, ...)` adds a
key; `openid_requests` records every fetch.

Run standalone to watch a bot talk (point the activities' serviceUrl at it):

    python -m tests.standins.bot_connector --port 39782
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web


@dataclass
class Call:
    method: str
    path: str
    conversation_id: str
    activity_id: str | None
    body: Any
    status: int
    authorization: str | None
    created_id: str | None = None  # the id the stand-in gave a new activity (POST)


@dataclass
class Failure:
    status: int
    times: int
    retry_after: str | None = None
    method: str | None = None
    path_contains: str | None = None
    body: dict[str, Any] = field(default_factory=dict)
    activity_type: str | None = None


class BotConnectorStandIn:
    def __init__(self) -> None:
        self.calls: list[Call] = []
        self.failures: list[Failure] = []
        # Members for whom the app is "installed": POST /v3/conversations succeeds for them.
        self.installed: set[str] = set()
        self.activities: dict[str, dict[str, Any]] = {}  # activity id -> latest body
        self.deleted: set[str] = set()
        self._ids = itertools.count(1)
        self._runner: web.AppRunner | None = None
        self.port = 0
        self.jwks: dict[str, list[dict[str, Any]]] = {"connector": [], "entra": []}
        self.openid_requests: list[str] = []

    # ----- control ----------------------------------------------------------------------

    def fail(self, status: int, times: int = 1, *, retry_after: str | None = None, method: str | None = None,
             path_contains: str | None = None, code: str | None = None, activity_type: str | None = None) -> None:
        body = {"error": {"code": code or {403: "BotNotInConversationRoster", 404: "ConversationNotFound",
                                           429: "Throttled", 412: "PreconditionFailed"}.get(status, "ServiceError"),
                          "message": f"injected {status}"}}
        self.failures.append(Failure(status, times, retry_after, method, path_contains, body, activity_type))

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    @property
    def openid_metadata_url(self) -> str:
        return f"{self.url}v1/.well-known/openidconfiguration"

    @property
    def entra_metadata_url(self) -> str:
        return f"{self.url}botframework.com/v2.0/.well-known/openid-configuration"

    def publish(self, public_key: Any, kid: str, *, endorsements: list[str] | None = None,
                document: str = "connector") -> None:
        """Publish an RSA public key (a `cryptography` key) under `kid`; Bot Connector keys carry
        `endorsements` (the channel ids they may sign for), as Microsoft's do."""
        from jwt.algorithms import RSAAlgorithm

        jwk: dict[str, Any] = {**RSAAlgorithm.to_jwk(public_key, as_dict=True), "kid": kid, "use": "sig"}
        if endorsements is not None:
            jwk["endorsements"] = list(endorsements)
        self.jwks[document] = [k for k in self.jwks[document] if k["kid"] != kid] + [jwk]

    async def _openid(self, request: web.Request) -> web.Response:
        self.openid_requests.append(request.path)
        if request.path == "/v1/.well-known/openidconfiguration":
            return web.json_response({
                "issuer": "https://api.botframework.com",
                "authorization_endpoint": "https://invalid.botframework.com",
                "jwks_uri": f"{self.url}v1/.well-known/keys",
                "id_token_signing_alg_values_supported": ["RS256"],
                "token_endpoint_auth_methods_supported": ["private_key_jwt"]})
        if request.path == "/botframework.com/v2.0/.well-known/openid-configuration":
            return web.json_response({
                "token_endpoint": "https://login.microsoftonline.com/botframework.com/oauth2/v2.0/token",
                "jwks_uri": f"{self.url}common/discovery/v2.0/keys",
                "issuer": "https://login.microsoftonline.com/{tenantid}/v2.0",
                "id_token_signing_alg_values_supported": ["RS256"],
                "response_types_supported": ["code", "id_token", "code id_token", "id_token token"]})
        document = "connector" if request.path == "/v1/.well-known/keys" else "entra"
        return web.json_response({"keys": self.jwks[document]})

    def sent(self, method: str | None = None) -> list[Call]:
        """Successful calls (optionally of one method), in order."""
        return [c for c in self.calls if c.status < 300 and (method is None or c.method == method)]

    def posts(self, conversation_contains: str | None = None) -> list[Call]:
        return [c for c in self.sent("POST")
                if "/activities" in c.path and isinstance(c.body, dict) and c.body.get("type") == "message"
                and (conversation_contains is None or conversation_contains in c.conversation_id)]

    def texts(self, call: Call) -> list[str]:
        """Every TextBlock and TextRun text of a recorded message's card (and its plain text)."""
        found: list[str] = []
        body = call.body if isinstance(call.body, dict) else {}
        if body.get("text"):
            found.append(str(body["text"]))

        def walk(node: Any) -> None:
            if isinstance(node, dict):
                if node.get("type") in ("TextBlock", "TextRun") and "text" in node:
                    found.append(str(node["text"]))
                for value in node.values():
                    walk(value)
            elif isinstance(node, list):
                for item in node:
                    walk(item)

        for attachment in body.get("attachments") or []:
            walk(attachment.get("content"))
        return found

    @staticmethod
    def actions(call: Call) -> list[dict[str, Any]]:
        body = call.body if isinstance(call.body, dict) else {}
        found: list[dict[str, Any]] = []
        for attachment in body.get("attachments") or []:
            content = attachment.get("content") or {}
            found.extend(content.get("actions") or [])
        return found

    # ----- server -----------------------------------------------------------------------

    def _failure(self, method: str, path: str, body: Any) -> Failure | None:
        for failure in self.failures:
            if failure.times <= 0:
                continue
            if failure.method and failure.method != method:
                continue
            if failure.path_contains and failure.path_contains not in path:
                continue
            if failure.activity_type and not (isinstance(body, dict) and body.get("type") == failure.activity_type):
                continue
            failure.times -= 1
            return failure
        return None

    async def _handle(self, request: web.Request) -> web.Response:
        method, path = request.method, request.path
        conversation_id = request.match_info.get("conversation_id", "")
        activity_id = request.match_info.get("activity_id")
        try:
            body = await request.json() if request.can_read_body else None
        except json.JSONDecodeError:
            body = None
        failure = self._failure(method, path, body)
        auth = request.headers.get("Authorization")
        if failure is not None:
            self.calls.append(Call(method, path, conversation_id, activity_id, body, failure.status, auth))
            headers = {"Retry-After": failure.retry_after} if failure.retry_after is not None else {}
            return web.json_response(failure.body, status=failure.status, headers=headers)
        if method == "POST" and path.rstrip("/") == "/v3/conversations":
            members = [m.get("id") for m in (body or {}).get("members") or []]
            if not any(m in self.installed for m in members):
                self.calls.append(Call(method, path, "", None, body, 403, auth))
                return web.json_response({"error": {"code": "Forbidden",
                                                    "message": "Bot is not installed in user's personal scope"}},
                                         status=403)
            new_id = f"a:standin-personal-{next(self._ids)}"
            self.calls.append(Call(method, path, new_id, None, body, 201, auth))
            return web.json_response({"id": new_id}, status=201)
        if activity_id is not None and activity_id in self.deleted and method in {"PUT", "DELETE"}:
            self.calls.append(Call(method, path, conversation_id, activity_id, body, 404, auth))
            return web.json_response({"error": {"code": "ActivityNotFound"}}, status=404)
        if method == "POST":
            new_id = f"{1700000000000 + next(self._ids)}"
            self.activities[new_id] = body or {}
            self.calls.append(Call(method, path, conversation_id, activity_id, body, 200, auth, new_id))
            return web.json_response({"id": new_id})
        if method == "PUT" and activity_id:
            self.activities[activity_id] = body or {}
            self.calls.append(Call(method, path, conversation_id, activity_id, body, 200, auth))
            return web.json_response({"id": activity_id})
        if method == "DELETE" and activity_id:
            self.deleted.add(activity_id)
            self.calls.append(Call(method, path, conversation_id, activity_id, body, 200, auth))
            return web.Response(status=200)
        return web.json_response({"error": "not found"}, status=404)

    def app(self) -> web.Application:
        app = web.Application()
        for path in ("/v1/.well-known/openidconfiguration", "/v1/.well-known/keys",
                     "/botframework.com/v2.0/.well-known/openid-configuration", "/common/discovery/v2.0/keys"):
            app.router.add_get(path, self._openid)
        app.router.add_post("/v3/conversations", self._handle)
        app.router.add_post("/v3/conversations/{conversation_id}/activities", self._handle)
        app.router.add_post("/v3/conversations/{conversation_id}/activities/{activity_id}", self._handle)
        app.router.add_put("/v3/conversations/{conversation_id}/activities/{activity_id}", self._handle)
        app.router.add_delete("/v3/conversations/{conversation_id}/activities/{activity_id}", self._handle)
        return app

    async def start(self, port: int = 0) -> BotConnectorStandIn:
        self._runner = web.AppRunner(self.app())
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", port)
        await site.start()
        server = getattr(site, "_server", None)
        sockets = getattr(server, "sockets", None) or []
        self.port = sockets[0].getsockname()[1] if sockets else port
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


async def _main(port: int) -> None:
    standin = await BotConnectorStandIn().start(port)
    print(f"Bot Connector stand-in on {standin.url} (Ctrl-C to stop)", flush=True)
    seen = 0
    try:
        while True:
            await asyncio.sleep(0.5)
            for call in standin.calls[seen:]:
                print(json.dumps({"method": call.method, "path": call.path, "status": call.status,
                                  "texts": standin.texts(call)}, ensure_ascii=False), flush=True)
            seen = len(standin.calls)
    finally:
        await standin.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=39782)
    args = parser.parse_args()
    asyncio.run(_main(args.port))
