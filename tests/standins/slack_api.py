"""A local stand-in for the Slack Web API: a real HTTP server on loopback that answers like Slack.

`AsyncWebClient` speaks aiohttp, so the tests need a real server rather than a mock transport
(platform-facts A1: bolt-python tests itself the same way). This one:

- answers auth.test, chat.postMessage/update/delete/postEphemeral/getPermalink, users.info,
  users.lookupByEmail, conversations.open/history/replies/members (with message metadata), views.open/
  update/publish/push, reactions.add and apps.connections.open, in the shapes of the captured responses
  (reference/payloads/slack_web_19*.json): method errors are HTTP 200 with `ok: false`;
- checks the bearer token (`invalid_auth` / `not_authed` otherwise): the bot token (`token`) for every
  method except apps.connections.open, which takes the app-level token (`app_token`, `xapp-...`);
  the other one of the two gets `not_allowed_token_type`, as on Slack;
- apps.connections.open answers `{"ok": true, "url": socket_url}` (Socket Mode): `socket_url` is a
  string or a callable returning one, e.g. `SocketModeStandIn.issue_url` of tests/standins/slack_socket.py
  (`ws://127.0.0.1:PORT/link/?ticket=...&app_id=...`); unset, the method answers `access_denied`;
- records every call (method, parameters, headers, HTTP status);
- Sign in with Slack (OpenID Connect), as docs.slack.dev describes it and
  https://slack.com/.well-known/openid-configuration publishes it: `GET /openid/connect/authorize`
  (302 back to `redirect_uri` with `code` and `state`; `authorize(url, user_id)` does the same for
  in-process tests), `openid.connect.token` (client_secret_post or HTTP Basic; `ok: false` with
  `invalid_client_id`, `bad_client_secret`, `invalid_code` (unknown, used or older than ten minutes),
  `bad_redirect_uri`, `invalid_grant_type`; else `ok: true`, `access_token` (xoxp-), `token_type`
  Bearer and an RS256 `id_token` with iss https://slack.com, aud, sub, iat, exp (+300 s), auth_time,
  nonce, `https://slack.com/team_id` / `user_id`, and email / profile claims per scope),
  `openid.connect.userInfo` (bearer xoxp- token), `GET /openid/connect/keys` (JWKS) and
  `GET /.well-known/openid-configuration`; `oidc_claims` overrides claims of the next ID tokens and
  `oidc_clock` dates them (tests pass their injected clock);
- injects failures: `fail(method, error)` (ok:false), `rate_limit(method, retry_after)` (HTTP 429 +
  Retry-After + `{"ok": false, "error": "ratelimited"}`), and enforces a per-channel message rate
  (`channel_rate` messages per second, 429 when exceeded) and, with `global_rate`, a workspace-wide
  chat.postMessage rate (token bucket of `global_burst`; 429 + `Retry-After: 1` when exceeded);
- `conversations.members` pages (`cursor`/`limit`, `response_metadata.next_cursor`) through
  `channels={channel: [user ids]}`; chat.postMessage to a user id posts in that user's DM with the
  bot (`dm_of`), as Slack does.

Run it alone for the bench or a manual check:

    python tests/standins/slack_api.py --port 8999 [--token xoxb-test] [--channel-rate 1] \
        [--global-rate 100] [--members C0BROADCAST=10000] [--app-token xapp-test --socket-url ws://...]

Control endpoints (not Slack's): `GET /_calls`, `GET /_count?method=chat.postMessage`,
`POST /_reset`, `POST /_fail` with JSON `{"method", "error" | "status": 429, "retry_after", "times"}`,
`GET /_delivered` (outbox copies per channel: `{"channels": {channel: [metadata keys]}, "limited": n}`).
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import secrets
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlparse

BOT_USER = "U0BOT00001"
BOT_ID = "B0BOT00001"
TEAM = "T0TEAM0001"
JSON_KEYS = ("blocks", "view", "metadata", "attachments")
APP_TOKEN_METHODS = frozenset({"apps.connections.open"})  # called with the app-level token (xapp-...)
# Authenticated by the app's client id and secret, not by a token.
CLIENT_METHODS = frozenset({"openid.connect.token"})
OIDC_CLIENT_ID = "2141029472.691202649728"
OIDC_CLIENT_SECRET = "e1b9e11dfcd19c1982d5de12921e17e8c"  # the docs' example value; a stand-in's secret
OIDC_CODE_SECONDS = 600

DEFAULT_USERS: dict[str, dict[str, Any]] = {
    "U0USER0001": {"email": "alice@example.com", "real_name": "Alice Employee"},
    "W0USER0001": {"email": "bob@example.com", "real_name": "Bob Builder"},
    "U0USER0002": {"email": "bob@example.com", "real_name": "Bob Builder"},
    "U0TECH0001": {"email": "tom.tech@example.com", "real_name": "Tom Technician"},
    "U0ADMN0001": {"email": "ada.admin@example.com", "real_name": "Ada Admin"},
    "U0STRANGER": {"email": "stranger@elsewhere.example", "real_name": "Some Stranger"},
}


@dataclass
class Call:
    method: str
    params: dict[str, Any]
    headers: dict[str, str]
    status: int = 200
    ok: bool = True
    at: float = field(default_factory=time.monotonic)


@dataclass
class _Injection:
    error: str | None = None
    status: int = 200
    retry_after: float = 1.0
    times: int = 1


class SlackStandIn:
    def __init__(self, *, token: str = "xoxb-test", users: Mapping[str, Mapping[str, Any]] | None = None,  # noqa: S107
                 host: str = "127.0.0.1", port: int = 0, channel_rate: float | None = None,
                 channel_burst: int = 1, global_rate: float | None = None, global_burst: float = 1.0,
                 channels: Mapping[str, list[str]] | None = None, app_token: str = "xapp-test",  # noqa: S107
                 socket_url: str | Callable[[], str] | None = None,
                 latency: Mapping[str, float] | None = None, oidc_client_id: str = OIDC_CLIENT_ID,
                 oidc_client_secret: str = OIDC_CLIENT_SECRET) -> None:
        self.token = token
        # Sign in with Slack: the app's credentials, who the authorize page signs in (a browser test's
        # person), claims to override in the next ID tokens, and the clock dating them.
        self.oidc_client_id = oidc_client_id
        self.oidc_client_secret = oidc_client_secret
        self.oidc_signed_in = "U0TECH0001"
        self.oidc_claims: dict[str, Any] = {}
        self.oidc_clock: Callable[[], float] = time.time
        self.oidc_codes: dict[str, dict[str, Any]] = {}
        self._oidc_access: dict[str, dict[str, Any]] = {}
        self._oidc_key: Any = None
        # Seconds a method takes to answer (a slow Slack: a backlog builds up behind it).
        self.latency: dict[str, float] = dict(latency or {})
        self.app_token = app_token
        self.socket_url = socket_url  # what apps.connections.open hands out (Socket Mode)
        self.users: dict[str, dict[str, Any]] = {k: dict(v) for k, v in (users or DEFAULT_USERS).items()}
        self.channel_rate = channel_rate
        self.channel_burst = channel_burst
        self.global_rate = global_rate
        self.global_burst = max(1.0, global_burst)
        self._global: tuple[float, float] | None = None
        self.limited = 0  # 429s answered by the rate limits (not injected ones)
        self.channels: dict[str, list[str]] = {k: list(v) for k, v in (channels or {}).items()}
        self.calls: list[Call] = []
        self.messages: dict[str, list[dict[str, Any]]] = {}
        self.views: list[dict[str, Any]] = []
        self._injections: dict[str, list[_Injection]] = {}
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()
        self._counter = 0
        self._server = _QuietServer((host, port), self._handler_class())
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    # ----- lifecycle -------------------------------------------------------------------------

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/"

    def start(self) -> SlackStandIn:
        self._thread = threading.Thread(target=self._server.serve_forever, name="slack-standin", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> SlackStandIn:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ----- test helpers ----------------------------------------------------------------------

    def reset(self) -> None:
        with self._lock:
            self.calls.clear()
            self.messages.clear()
            self.views.clear()
            self._injections.clear()
            self._buckets.clear()
            self._global = None
            self.limited = 0

    def fail(self, method: str, error: str, times: int = 1) -> None:
        with self._lock:
            self._injections.setdefault(method, []).append(_Injection(error=error, times=times))

    def rate_limit(self, method: str, retry_after: float = 1, times: int = 1) -> None:
        with self._lock:
            self._injections.setdefault(method, []).append(_Injection(status=429, retry_after=retry_after,
                                                                      times=times))

    def calls_to(self, method: str, *, ok_only: bool = True) -> list[Call]:
        with self._lock:
            return [c for c in self.calls if c.method == method and (c.ok or not ok_only)]

    def wait_for(self, method: str, count: int = 1, timeout: float = 5.0) -> list[Call]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.calls_to(method)
            if len(found) >= count:
                return found
            time.sleep(0.01)
        return self.calls_to(method)

    def posted_texts(self, channel: str | None = None) -> list[str]:
        """Everything the bot made visible (message text and section text), for assertions."""
        texts: list[str] = []
        for call in self.calls_to("chat.postMessage") + self.calls_to("chat.update") + \
                self.calls_to("chat.postEphemeral"):
            if channel is not None and call.params.get("channel") != channel:
                continue
            texts.append(json.dumps({"text": call.params.get("text"), "blocks": call.params.get("blocks")}))
        return texts

    # ----- the API ---------------------------------------------------------------------------

    def _next_ts(self) -> str:
        self._counter += 1
        return f"{int(time.time())}.{self._counter:06d}"

    def _take_injection(self, method: str) -> _Injection | None:
        queue = self._injections.get(method)
        if not queue:
            return None
        injection = queue[0]
        injection.times -= 1
        if injection.times <= 0:
            queue.pop(0)
        return injection

    def _injected(self, method: str, call: Call) -> tuple[int, dict[str, Any], dict[str, str]] | None:
        """The answer of a failure injected for `method` (429 with Retry-After, or an error body)."""
        injection = self._take_injection(method)
        if injection is None:
            return None
        call.ok = False
        if injection.status == 429:
            call.status = 429
            return 429, {"ok": False, "error": "ratelimited"}, {"Retry-After": f"{injection.retry_after:g}"}
        return 200, {"ok": False, "error": injection.error}, {}

    def _rate_ok(self, channel: str) -> bool:
        if not self.channel_rate or not channel:
            return True
        now = time.monotonic()
        tokens, stamp = self._buckets.get(channel, (float(self.channel_burst), now))
        tokens = min(float(self.channel_burst), tokens + (now - stamp) * self.channel_rate)
        if tokens < 1.0:
            self._buckets[channel] = (tokens, now)
            return False
        self._buckets[channel] = (tokens - 1.0, now)
        return True

    def _global_ok(self) -> bool:
        if not self.global_rate:
            return True
        now = time.monotonic()
        tokens, stamp = self._global or (self.global_burst, now)
        tokens = min(self.global_burst, tokens + (now - stamp) * self.global_rate)
        if tokens < 1.0:
            self._global = (tokens, now)
            return False
        self._global = (tokens - 1.0, now)
        return True

    def delivered(self) -> dict[str, list[str]]:
        """Outbox copies (message metadata keys) per channel."""
        with self._lock:
            return {channel: [str(((m.get("metadata") or {}).get("event_payload") or {}).get("key", ""))
                              for m in messages if m.get("metadata")]
                    for channel, messages in self.messages.items()}

    def handle(self, method: str, params: dict[str, Any], headers: dict[str, str]) -> tuple[int, dict[str, Any],
                                                                                              dict[str, str]]:
        delay = self.latency.get(method)
        if delay:
            time.sleep(delay)  # outside the lock: the server is threaded, calls overlap as on Slack
        with self._lock:
            call = Call(method, params, headers)
            self.calls.append(call)
            auth = headers.get("authorization", "")
            if method in CLIENT_METHODS:
                injected = self._injected(method, call)
                if injected is not None:
                    return injected
                body = self._oidc_token(params, auth)
                call.ok = bool(body.get("ok"))
                return 200, body, {}
            if method == "openid.connect.userInfo":
                body = self._oidc_user_info(auth or f"Bearer {params.get('token', '')}")
                call.ok = bool(body.get("ok"))
                return 200, body, {}
            if not auth:
                call.ok = False
                return 200, {"ok": False, "error": "not_authed"}, {}
            expected = self.app_token if method in APP_TOKEN_METHODS else self.token
            if auth != f"Bearer {expected}":
                call.ok = False
                known = auth in (f"Bearer {self.token}", f"Bearer {self.app_token}")  # a real token, wrong kind
                return 200, {"ok": False, "error": "not_allowed_token_type" if known else "invalid_auth"}, {}
            injected = self._injected(method, call)
            if injected is not None:
                return injected
            if method == "chat.postMessage" and str(params.get("channel") or "")[:1] in ("U", "W"):
                params["channel"] = dm_of(str(params["channel"]))  # a user id posts in their DM with the bot
            if method in ("chat.postMessage", "chat.postEphemeral") and not (
                    self._rate_ok(str(params.get("channel"))) and (method != "chat.postMessage" or self._global_ok())):
                call.ok, call.status = False, 429
                self.limited += 1
                return 429, {"ok": False, "error": "ratelimited"}, {"Retry-After": "1"}
            body = self._answer(method, params)
            call.ok = bool(body.get("ok"))
            return 200, body, {}

    def _answer(self, method: str, p: dict[str, Any]) -> dict[str, Any]:
        channel = str(p.get("channel") or "")
        if method == "auth.test":
            return {"ok": True, "url": "https://example.slack.com/", "team": "Example", "user": "helpdesk",
                    "team_id": TEAM, "user_id": BOT_USER, "bot_id": BOT_ID}
        if method == "chat.postMessage":
            if not channel:
                return {"ok": False, "error": "channel_not_found"}
            ts = self._next_ts()
            message = {"type": "message", "user": BOT_USER, "bot_id": BOT_ID, "text": p.get("text", ""),
                       "blocks": p.get("blocks") or [], "ts": ts, "team": TEAM}
            if p.get("thread_ts"):
                message["thread_ts"] = p["thread_ts"]
            if p.get("metadata"):
                message["metadata"] = p["metadata"]
            self.messages.setdefault(channel, []).append(message)
            return {"ok": True, "channel": channel, "ts": ts, "message": message}
        if method == "chat.update":
            for message in self.messages.get(channel, []):
                if message["ts"] == p.get("ts"):
                    message.update({"text": p.get("text", ""), "blocks": p.get("blocks") or []})
            return {"ok": True, "channel": channel, "ts": p.get("ts"), "text": p.get("text", ""),
                    "message": {"text": p.get("text", ""), "user": BOT_USER}}
        if method == "chat.delete":
            kept = [m for m in self.messages.get(channel, []) if m["ts"] != p.get("ts")]
            if len(kept) == len(self.messages.get(channel, [])):
                return {"ok": False, "error": "message_not_found"}
            self.messages[channel] = kept
            return {"ok": True, "channel": channel, "ts": p.get("ts")}
        if method == "chat.postEphemeral":
            return {"ok": True, "message_ts": self._next_ts()}
        if method == "chat.getPermalink":
            stamp = str(p.get("message_ts")).replace(".", "")
            return {"ok": True, "channel": channel, "permalink": f"https://example.slack.com/archives/{channel}/p{stamp}"}
        if method == "users.info":
            user = self.users.get(str(p.get("user")))
            if user is None:
                return {"ok": False, "error": "user_not_found"}
            return {"ok": True, "user": {
                "id": p.get("user"), "team_id": TEAM, "name": user.get("real_name", "").split()[0].lower(),
                "deleted": False, "is_bot": False, "real_name": user.get("real_name"),
                "profile": {"email": user.get("email"), "real_name": user.get("real_name"),
                            "display_name": user.get("real_name"), "team": TEAM}}}
        if method == "users.lookupByEmail":
            for user_id, user in self.users.items():
                if str(user.get("email", "")).lower() == str(p.get("email", "")).lower():
                    return {"ok": True, "user": {"id": user_id, "team_id": TEAM, "profile": {"email": user["email"]}}}
            return {"ok": False, "error": "users_not_found"}
        if method == "conversations.open":
            user_id = str(p.get("users") or "").split(",")[0]
            if not user_id:
                return {"ok": False, "error": "user_not_found"}
            return {"ok": True, "channel": {"id": dm_of(user_id)}}
        if method in ("conversations.history", "conversations.replies"):
            messages = self.messages.get(channel, [])
            if method == "conversations.replies":
                messages = [m for m in messages if m.get("thread_ts") == p.get("ts") or m["ts"] == p.get("ts")]
            else:
                messages = [m for m in messages if not m.get("thread_ts")]
            include = str(p.get("include_all_metadata", "")).lower() in ("1", "true")
            out = [dict(m) if include else {k: v for k, v in m.items() if k != "metadata"}
                   for m in reversed(messages)]
            return {"ok": True, "messages": out[: int(p.get("limit") or 100)], "has_more": False}
        if method in ("views.open", "views.update", "views.publish", "views.push"):
            view = p.get("view") or {}
            if not isinstance(view, dict):
                return {"ok": False, "error": "invalid_arguments"}
            if method == "views.open" and not p.get("trigger_id"):
                return {"ok": False, "error": "invalid_trigger_id"}
            self.views.append({"method": method, **p})
            return {"ok": True, "view": {"id": "V0VIEW0001", "team_id": TEAM, "state": {"values": {}}, **view}}
        if method == "reactions.add":
            return {"ok": True}
        if method == "apps.connections.open":
            url = self.socket_url() if callable(self.socket_url) else self.socket_url
            if not url:  # no Socket Mode server attached
                return {"ok": False, "error": "access_denied"}
            return {"ok": True, "url": url}
        if method == "conversations.members":
            if channel not in self.channels:
                return {"ok": False, "error": "channel_not_found"}
            members = self.channels[channel]
            start = int(str(p.get("cursor") or "0").removeprefix("next:") or 0)
            limit = max(1, min(1000, int(p.get("limit") or 100)))
            page = members[start:start + limit]
            cursor = f"next:{start + limit}" if start + limit < len(members) else ""
            return {"ok": True, "members": page, "response_metadata": {"next_cursor": cursor}}
        return {"ok": False, "error": "unknown_method"}

    # ----- Sign in with Slack (OpenID Connect) ------------------------------------------------

    def openid_configuration(self, base: str = "https://slack.com") -> dict[str, Any]:
        """Slack's published document, with this stand-in's address for the endpoints."""
        return {"issuer": "https://slack.com", "authorization_endpoint": f"{base}/openid/connect/authorize",
                "token_endpoint": f"{base}/api/openid.connect.token",
                "userinfo_endpoint": f"{base}/api/openid.connect.userInfo",
                "jwks_uri": f"{base}/openid/connect/keys", "scopes_supported": ["openid", "profile", "email"],
                "response_types_supported": ["code"], "response_modes_supported": ["query"],
                "grant_types_supported": ["authorization_code"], "subject_types_supported": ["public"],
                "id_token_signing_alg_values_supported": ["RS256"], "claims_supported": ["sub", "auth_time", "iss"],
                "claims_parameter_supported": False, "request_parameter_supported": False,
                "request_uri_parameter_supported": True,
                "token_endpoint_auth_methods_supported": ["client_secret_post", "client_secret_basic"]}

    def _key(self) -> Any:
        if self._oidc_key is None:
            from cryptography.hazmat.primitives.asymmetric import rsa

            self._oidc_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        return self._oidc_key

    def jwks(self) -> dict[str, Any]:
        from jwt.algorithms import RSAAlgorithm

        key = json.loads(RSAAlgorithm.to_jwk(self._key().public_key()))
        return {"keys": [{**key, "kid": "standin-1", "alg": "RS256", "use": "sig"}]}

    def authorize(self, url: str, user_id: str | None = None) -> str:
        """What https://slack.com/openid/connect/authorize does once the person has signed in and
        consented: the redirect back to the app, `redirect_uri?code=...&state=...`. ValueError for a
        request Slack would show an error page for."""
        from urllib.parse import parse_qs, urlencode, urlsplit

        query = {k: v[-1] for k, v in parse_qs(urlsplit(url).query).items()}
        if query.get("client_id") != self.oidc_client_id:
            raise ValueError("invalid_client_id")
        if query.get("response_type") != "code" or "openid" not in query.get("scope", "").replace(",", " ").split():
            raise ValueError("invalid_request")
        redirect = query.get("redirect_uri", "")
        if not redirect:
            raise ValueError("bad_redirect_uri")
        with self._lock:
            self._counter += 1
            code = f"{self._counter}.{int(time.time())}.{secrets.token_hex(32)}"
            self.oidc_codes[code] = {"user": user_id or self.oidc_signed_in, "redirect_uri": redirect,
                                     "nonce": query.get("nonce"), "scope": query.get("scope", ""),
                                     "at": time.monotonic()}
        back = {"code": code}
        if "state" in query:
            back["state"] = query["state"]
        return f"{redirect}{'&' if '?' in redirect else '?'}{urlencode(back)}"

    def _oidc_token(self, p: dict[str, Any], auth: str) -> dict[str, Any]:
        client_id, secret = str(p.get("client_id") or ""), str(p.get("client_secret") or "")
        if auth.startswith("Basic "):
            with contextlib.suppress(ValueError, UnicodeDecodeError):
                client_id, _, secret = base64.b64decode(auth[6:]).decode().partition(":")
        if client_id != self.oidc_client_id:
            return {"ok": False, "error": "invalid_client_id"}
        if secret != self.oidc_client_secret:
            return {"ok": False, "error": "bad_client_secret"}
        if p.get("grant_type", "authorization_code") != "authorization_code":
            return {"ok": False, "error": "invalid_grant_type"}
        grant = self.oidc_codes.pop(str(p.get("code") or ""), None)  # one use only
        if grant is None or time.monotonic() - grant["at"] > OIDC_CODE_SECONDS:
            return {"ok": False, "error": "invalid_code"}
        if p.get("redirect_uri", "") != grant["redirect_uri"]:
            return {"ok": False, "error": "bad_redirect_uri"}
        user_id = grant["user"]
        user = self.users.get(user_id, {})
        now = int(self.oidc_clock())
        scopes = set(grant["scope"].replace(",", " ").split())
        claims: dict[str, Any] = {"iss": "https://slack.com", "sub": user_id, "aud": self.oidc_client_id,
                                  "exp": now + 300, "iat": now, "auth_time": now,
                                  "https://slack.com/user_id": user_id,
                                  "https://slack.com/team_id": user.get("team_id", TEAM)}
        if grant["nonce"] is not None:
            claims["nonce"] = grant["nonce"]
        if "email" in scopes and user.get("email"):
            claims.update({"email": user["email"], "email_verified": True, "date_email_verified": now - 86400})
        if "profile" in scopes:
            name = str(user.get("real_name") or user_id)
            claims.update({"name": name, "given_name": name.split()[0], "family_name": name.split()[-1],
                           "locale": "en-US", "https://slack.com/team_name": "Example",
                           "https://slack.com/team_domain": "example"})
        claims.update(self.oidc_claims)
        access = "xoxp-" + secrets.token_hex(16)
        self._oidc_access[access] = {k: v for k, v in claims.items()
                                     if k not in ("iss", "aud", "exp", "iat", "auth_time", "nonce")}
        import jwt

        id_token = jwt.encode(claims, self._key(), algorithm="RS256", headers={"kid": "standin-1"})
        return {"ok": True, "access_token": access, "token_type": "Bearer", "id_token": id_token}

    def _oidc_user_info(self, auth: str) -> dict[str, Any]:
        if not auth.removeprefix("Bearer ").strip():
            return {"ok": False, "error": "not_authed"}
        info = self._oidc_access.get(auth.removeprefix("Bearer ").strip())
        if info is None:
            return {"ok": False, "error": "invalid_auth"}
        return {"ok": True, **info}

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        standin = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:  # quiet
                return

            def _send(self, status: int, body: Mapping[str, Any], headers: Mapping[str, str] | None = None) -> None:
                raw = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json; charset=utf-8")
                self.send_header("Content-Length", str(len(raw)))
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(raw)

            def _params(self) -> dict[str, Any]:
                url = urlparse(self.path)
                params: dict[str, Any] = dict(parse_qsl(url.query, keep_blank_values=True))
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                kind = self.headers.get("Content-Type", "")
                if raw and "json" in kind:
                    params.update(json.loads(raw))
                elif raw:
                    params.update(dict(parse_qsl(raw.decode(), keep_blank_values=True)))
                for key in JSON_KEYS:
                    if isinstance(params.get(key), str):
                        with contextlib.suppress(ValueError):
                            params[key] = json.loads(params[key])
                return params

            def _control(self, path: str, params: dict[str, Any]) -> bool:
                if path == "/_calls":
                    with standin._lock:
                        calls = [{"method": c.method, "params": c.params, "status": c.status, "ok": c.ok, "at": c.at}
                                 for c in standin.calls]
                    self._send(200, {"calls": calls})
                elif path == "/_count":
                    method = str(params.get("method") or "chat.postMessage")
                    self._send(200, {"method": method, "count": len(standin.calls_to(method))})
                elif path == "/_delivered":
                    self._send(200, {"channels": standin.delivered(), "limited": standin.limited})
                elif path == "/_reset":
                    standin.reset()
                    self._send(200, {"ok": True})
                elif path == "/_fail":
                    if int(params.get("status") or 200) == 429:
                        standin.rate_limit(str(params["method"]), float(params.get("retry_after", 1)),
                                           int(params.get("times", 1)))
                    else:
                        standin.fail(str(params["method"]), str(params.get("error", "internal_error")),
                                     int(params.get("times", 1)))
                    self._send(200, {"ok": True})
                else:
                    return False
                return True

            def _redirect(self, location: str) -> None:
                self.send_response(302)
                self.send_header("Location", location)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def _oidc(self, path: str) -> bool:
                base = f"http://{self.headers.get('Host') or f'127.0.0.1:{standin.port}'}"
                if path == "/openid/connect/authorize":
                    try:
                        self._redirect(standin.authorize(self.path))
                    except ValueError as exc:
                        self._send(400, {"ok": False, "error": str(exc)})
                elif path == "/openid/connect/keys":
                    self._send(200, standin.jwks())
                elif path == "/.well-known/openid-configuration":
                    self._send(200, standin.openid_configuration(base))
                else:
                    return False
                return True

            def _dispatch(self) -> None:
                path = urlparse(self.path).path
                if self.command == "GET" and self._oidc(path):
                    return
                params = self._params()
                if path.startswith("/_") and self._control(path, params):
                    return
                method = path.rsplit("/", 1)[-1]
                headers = {k.lower(): v for k, v in self.headers.items()}
                status, body, extra = standin.handle(method, params, headers)
                self._send(status, body, extra)

            def do_POST(self) -> None:
                self._dispatch()

            def do_GET(self) -> None:
                self._dispatch()

        return Handler


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client killed mid-request (the broadcast bench SIGKILLs serve) resets its sockets: not news."""
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


def dm_of(user_id: str) -> str:
    """The DM channel between a user and the bot (stable, so tests can predict it)."""
    return "D" + user_id[1:]


def synthetic_members(count: int) -> list[str]:
    """`count` user ids for a big channel (U + 10 digits: they sort and never clash with the defaults)."""
    return [f"U{i:010d}" for i in range(1, count + 1)]


def main() -> None:
    parser = argparse.ArgumentParser(description="Slack Web API stand-in on loopback")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8999)
    parser.add_argument("--token", default="xoxb-test")
    parser.add_argument("--app-token", default="xapp-test", help="app-level token for apps.connections.open")
    parser.add_argument("--socket-url", default=None, help="what apps.connections.open answers (ws://...)")
    parser.add_argument("--channel-rate", type=float, default=None, help="messages per second per channel")
    parser.add_argument("--global-rate", type=float, default=None, help="chat.postMessage calls per second overall")
    parser.add_argument("--users", default=None, help="JSON file: {user_id: {email, real_name}}")
    parser.add_argument("--members", action="append", default=[],
                        help="CHANNEL=N: a channel whose members are N generated users (repeatable)")
    args = parser.parse_args()
    users = json.loads(Path(args.users).read_text(encoding="utf-8")) if args.users else None
    channels = {}
    for spec in args.members:
        name, _, count = spec.partition("=")
        channels[name] = synthetic_members(int(count))
    standin = SlackStandIn(token=args.token, users=users, host=args.host, port=args.port,
                           channel_rate=args.channel_rate, global_rate=args.global_rate,
                           global_burst=max(1.0, (args.global_rate or 1.0) / 10), channels=channels,
                           app_token=args.app_token, socket_url=args.socket_url)
    print(f"slack stand-in on {standin.url}", flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        standin._server.serve_forever()


if __name__ == "__main__":
    main()
