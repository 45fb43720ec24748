"""A local stand-in for the Microsoft identity platform and Microsoft Graph v1.0.

One request handler serves both, so it works as an `httpx.MockTransport` (for MSAL's sync client
and the bot's async client) and behind a loopback HTTPS server (`serve_https`), where the bot is
configured exactly as in production: `HELPDESK_GRAPH__AUTHORITY_HOST`, `__BASE_URL`, `SSL_CERT_FILE`.

It follows Microsoft's documented shapes:
- `GET /{tenant}/v2.0/.well-known/openid-configuration`, `POST /{tenant}/oauth2/v2.0/token`
  (client credentials with a secret or a JWT client assertion; AADSTS errors as the real endpoint);
  user sign-in (OpenID Connect authorization code + PKCE): `authorize(url, email)` plays the browser
  at `/oauth2/v2.0/authorize` and returns the redirect with `code` and `state`; the token endpoint
  redeems the code once, checking redirect_uri, client secret and the S256 code_verifier, and answers
  with an ID token (preferred_username, tid, aud, iss, nonce);
- users (by id or UPN; `$filter` on mail / userPrincipalName; `$select`), `passwordProfile` PATCH
  (204; complexity and privileged-target rules), `revokeSignInSessions` (200 `{"value": true}`),
  `transitiveMemberOf` (groups and directory roles, paged), `licenseDetails`, authentication
  methods (email, phone, Authenticator; DELETE 204), Temporary Access Pass (201 with the pass),
  groups (`$filter`, owners, `members/$ref` 204 / 400 already a member / 404), Intune managed
  devices and `syncDevice` / `rebootNow` (204), `mailboxSettings` GET/PATCH (200), OneDrive quota,
  the mailbox usage report (302 to a pre-authenticated CSV download), `sendMail` (202), `$batch`
  (max 20, unique ids, responses in another order, inner errors), `@odata.nextLink` paging,
  Teams app installation for a user (`teamwork/installedApps`: 201, 409 Conflict when installed);
- errors as `{"error": {"code", "message", "innerError": {"date", "request-id", "client-request-id"}}}`,
  with `request-id` headers on every response, and injectable faults: 429 with `Retry-After`, 503
  without it, 403 `Authorization_RequestDenied`, and so on.

Every request is recorded (`requests`) so tests can check what was sent and that no secret leaked.
"""

from __future__ import annotations

import base64
import contextlib
import json
import re
import secrets
import ssl
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import httpx
import jwt
import yaml

PROJECT_ROOT = Path(__file__).resolve().parents[2]
DEMO_FILE = PROJECT_ROOT / "config" / "demo_directory.yaml"
MB = 1024 * 1024
JSON_TYPE = (
    "application/json;odata.metadata=minimal;odata.streaming=true;IEEE754Compatible=false;charset=utf-8"
)
GRAPH_VERSION = "/v1.0"
# Fixed ids Microsoft documents for phone methods.
PHONE_IDS = {
    "mobile": "3179e48a-750b-4051-897c-87b9720928f7",
    "alternateMobile": "b6332ec1-7057-4abe-9331-3d72feddfe41",
    "office": "e37fc753-ff3b-4958-9484-eaa9425c82bc",
}
SKU_PART_NUMBERS = {"Microsoft 365 E3": "SPE_E3", "Microsoft 365 E5": "SPE_E5"}


@dataclass(frozen=True, slots=True)
class RecordedRequest:
    method: str
    url: str
    path: str  # Graph path without the version prefix, or the identity platform path
    headers: dict[str, str]
    body: str

    def json(self) -> Any:
        return json.loads(self.body) if self.body else None


@dataclass(slots=True)
class Fault:
    method: str
    path: re.Pattern[str]
    status: int
    code: str
    message: str
    retry_after: str | None = None
    times: int = 1


@dataclass(slots=True)
class SentMail:
    sender: str
    to: str
    subject: str
    text: str


@dataclass(slots=True)
class StandInState:
    users: dict[str, dict[str, Any]] = field(default_factory=dict)
    groups: dict[str, dict[str, Any]] = field(default_factory=dict)
    members: dict[str, set[str]] = field(default_factory=dict)  # group id -> user ids
    owners: dict[str, list[str]] = field(default_factory=dict)
    roles: dict[str, list[str]] = field(default_factory=dict)  # user id -> directory role names
    licenses: dict[str, list[str]] = field(default_factory=dict)
    alternate: dict[str, str] = field(default_factory=dict)
    phones: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    authenticators: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    devices: dict[str, dict[str, Any]] = field(default_factory=dict)
    device_owner: dict[str, str] = field(default_factory=dict)
    mailbox_settings: dict[str, dict[str, Any]] = field(default_factory=dict)
    mailbox: dict[str, tuple[int, int]] = field(default_factory=dict)
    drive: dict[str, tuple[int, int]] = field(default_factory=dict)
    # Teams apps installed in a user's personal scope: user id -> {installation id: catalog app id}.
    teams_apps: dict[str, dict[str, str]] = field(default_factory=dict)


def _iso(value: datetime | None = None) -> str:
    return (value or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%SZ")


def _odata_literal(expression: str, prop: str) -> str | None:
    match = re.search(rf"\b{prop} eq '((?:[^']|'')*)'", expression)
    return match.group(1).replace("''", "'") if match else None


class GraphStandIn:
    def __init__(
        self,
        seed: dict[str, Any] | None = None,
        *,
        tenant_id: str = "11111111-2222-4333-8444-555555555555",
        client_id: str = "66666666-7777-4888-8999-000000000000",
        client_secret: str = "standin-client-secret",  # noqa: S107 - a stand-in, not a secret
        page_size: int = 100,
        app_can_manage_admins: bool = False,
    ) -> None:
        self.tenant_id = tenant_id
        self.client_id = client_id
        self.client_secret = client_secret
        self.page_size = page_size
        # With only the Helpdesk Administrator role, an app cannot reset an admin's password.
        self.app_can_manage_admins = app_can_manage_admins
        self.state = StandInState()
        self.requests: list[RecordedRequest] = []
        self.faults: list[Fault] = []
        self.tokens: set[str] = set()
        self.token_requests = 0
        # Authorization codes issued by `authorize` (sign-in), redeemed once at the token endpoint.
        self.codes: dict[str, dict[str, Any]] = {}
        self.id_token_clock: Any = None  # seconds since the epoch for ID tokens (default: time.time)
        self.sent_mail: list[SentMail] = []
        self.downloads_with_auth = 0
        self._reports: dict[str, str] = {}
        # Microsoft 365's default since 2021 ("Display concealed user, group, and site names in all
        # reports" off, adminReportSettings.displayConcealedNames false): names become hashes.
        self.conceal_report_names = False
        # Teams app catalog ids known to `installedApps` (None: any id), and a hook told of each
        # install (so a Bot Connector stand-in can open chats for that person afterwards).
        self.teams_catalog: set[str] | None = None
        self.on_app_installed: Callable[[str, str], None] | None = None
        self._lock = threading.Lock()
        self.seed(seed if seed is not None else yaml.safe_load(DEMO_FILE.read_text(encoding="utf-8")))

    # ----- seeding from the demo directory, in Graph's shapes -----

    def seed(self, data: dict[str, Any]) -> None:
        s = self.state
        by_name: dict[str, str] = {}
        for g in data.get("groups") or []:
            gid = str(g["id"])
            s.groups[gid] = {
                "id": gid,
                "displayName": g.get("display_name") or g["name"],
                "mailNickname": g["name"],
                "securityEnabled": True,
                "mailEnabled": False,
                "isAssignableToRole": bool(g.get("protected", False)),
                "description": g.get("description"),
            }
            s.members[gid] = set()
            by_name[str(g["name"]).casefold()] = gid
        email_to_id: dict[str, str] = {}
        for u in data.get("users") or []:
            uid = str(u["id"])
            email = str(u["email"])
            email_to_id[email.casefold()] = uid
            s.users[uid] = {
                "id": uid,
                "displayName": u.get("display_name") or email,
                "mail": email,
                "userPrincipalName": u.get("upn") or email,
                "accountEnabled": bool(u.get("enabled", True)),
                "department": u.get("department"),
                "jobTitle": u.get("job_title"),
                "lastPasswordChangeDateTime": u.get("last_password_change") or "2026-01-05T09:00:00Z",
                "onPremisesSyncEnabled": True if u.get("on_premises_sync") else None,
                "otherMails": [],
            }
            for name in u.get("groups") or ():
                if name.casefold() in by_name:
                    s.members[by_name[name.casefold()]].add(uid)
            roles = list(u.get("directory_roles") or ())
            if u.get("protected") and not roles:
                roles = ["Privileged Role Administrator"]
            s.roles[uid] = roles
            s.licenses[uid] = [SKU_PART_NUMBERS.get(x, str(x)) for x in u.get("licenses") or ()]
            if u.get("alternate_email"):
                s.alternate[uid] = str(u["alternate_email"])
            s.phones[uid] = []
            s.authenticators[uid] = []
            for m in u.get("auth_methods") or ():
                if m["kind"] == "phone":
                    s.phones[uid].append(
                        {
                            "id": m["id"],
                            "phoneNumber": "+1 5550100XXX",
                            "phoneType": "mobile",
                            "smsSignInState": "notEnabled",
                        }
                    )
                else:
                    s.authenticators[uid].append(
                        {
                            "id": m["id"],
                            "displayName": str(m.get("label", "")).removeprefix("Authenticator on "),
                            "deviceTag": "SoftwareTokenActivated",
                            "phoneAppVersion": "6.2401.0119",
                            "createdDateTime": "2026-01-05T09:00:00Z",
                        }
                    )
            for d in u.get("devices") or ():
                s.devices[str(d["id"])] = {
                    "id": str(d["id"]),
                    "deviceName": d.get("name") or d["id"],
                    "operatingSystem": d.get("os") or "",
                    "osVersion": d.get("os_version") or "",
                    "complianceState": d.get("compliance") or "unknown",
                    "lastSyncDateTime": d.get("last_sync") or "0001-01-01T00:00:00Z",
                    "managedDeviceOwnerType": "company",
                    "userPrincipalName": u.get("upn") or email,
                }
                s.device_owner[str(d["id"])] = uid
            s.mailbox_settings[uid] = {
                "automaticRepliesSetting": {
                    "status": "disabled",
                    "externalAudience": "none",
                    "internalReplyMessage": "",
                    "externalReplyMessage": "",
                    "scheduledStartDateTime": {"dateTime": "2026-01-01T00:00:00.0000000", "timeZone": "UTC"},
                    "scheduledEndDateTime": {"dateTime": "2026-01-02T00:00:00.0000000", "timeZone": "UTC"},
                },
                "timeZone": "UTC",
                "language": {"locale": "en-US", "displayName": "English (United States)"},
            }
            if isinstance(u.get("mailbox"), dict):
                s.mailbox[uid] = (int(u["mailbox"]["used_mb"]) * MB, int(u["mailbox"]["quota_mb"]) * MB)
            if isinstance(u.get("onedrive"), dict):
                s.drive[uid] = (int(u["onedrive"]["used_mb"]) * MB, int(u["onedrive"]["quota_mb"]) * MB)
        for g in data.get("groups") or []:
            s.owners[str(g["id"])] = [
                email_to_id[o.casefold()] for o in g.get("owners") or () if o.casefold() in email_to_id
            ]

    # ----- test controls -----

    def fail(
        self,
        method: str,
        path_pattern: str,
        status: int,
        code: str,
        *,
        message: str = "",
        retry_after: str | None = None,
        times: int = 1,
    ) -> None:
        """The next `times` requests matching method and path (regex, version prefix removed)
        get this error. Applies to `$batch` items as well."""
        self.faults.append(
            Fault(
                method.upper(),
                re.compile(path_pattern),
                status,
                code,
                message or f"{code} (stand-in)",
                retry_after,
                times,
            )
        )

    def graph_requests(self) -> list[RecordedRequest]:
        return [r for r in self.requests if r.url and urlsplit(r.url).path.startswith(GRAPH_VERSION)]

    def calls(self, method: str, pattern: str) -> list[RecordedRequest]:
        rx = re.compile(pattern)
        return [r for r in self.requests if r.method == method and rx.search(r.path)]

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handler)

    # ----- responses -----

    @staticmethod
    def _rid(request: httpx.Request) -> tuple[str, str]:
        return str(uuid.uuid4()), request.headers.get("client-request-id", str(uuid.uuid4()))

    def _json(
        self, request: httpx.Request, status: int, body: Any, headers: dict[str, str] | None = None
    ) -> httpx.Response:
        rid, crid = self._rid(request)
        send = {"request-id": rid, "client-request-id": crid, "Date": _iso()}
        if body is not None:
            send["Content-Type"] = JSON_TYPE
        send.update(headers or {})
        content = json.dumps(body).encode() if body is not None else b""
        return httpx.Response(status, headers=send, content=content, request=request)

    def _error(
        self,
        request: httpx.Request,
        status: int,
        code: str,
        message: str,
        headers: dict[str, str] | None = None,
    ) -> httpx.Response:
        rid, crid = self._rid(request)
        body = {
            "error": {
                "code": code,
                "message": message,
                "innerError": {"date": _iso(), "request-id": rid, "client-request-id": crid},
            }
        }
        send = {"request-id": rid, "client-request-id": crid, "Content-Type": JSON_TYPE}
        send.update(headers or {})
        return httpx.Response(status, headers=send, content=json.dumps(body).encode(), request=request)

    def _not_found(self, request: httpx.Request, what: str) -> httpx.Response:
        return self._error(
            request,
            404,
            "Request_ResourceNotFound",
            f"Resource '{what}' does not exist or one of its queried reference-property objects are not "
            f"present.",
        )

    # ----- entry point -----

    def handler(self, request: httpx.Request) -> httpx.Response:
        with self._lock:
            body = request.read().decode("utf-8", "replace")
            path = unquote(request.url.path)
            graph_path = path[len(GRAPH_VERSION) :] if path.startswith(GRAPH_VERSION + "/") else path
            self.requests.append(
                RecordedRequest(request.method, str(request.url), graph_path, dict(request.headers), body)
            )
            if path.startswith(GRAPH_VERSION + "/"):
                return self._graph(
                    request, request.method, graph_path, request.url.params, body, top_level=True
                )
            if path.startswith("/reports-download/"):
                return self._download(request, path)
            return self._identity(request, path, body)

    # ----- identity platform -----

    def _identity(self, request: httpx.Request, path: str, body: str) -> httpx.Response:
        origin = f"{request.url.scheme}://{request.url.netloc.decode()}"
        parts = path.strip("/").split("/")
        tenant = parts[0] if parts else ""
        if tenant != self.tenant_id:
            return httpx.Response(
                400,
                json={
                    "error": "invalid_tenant",
                    "error_description": f"AADSTS90002: Tenant '{tenant}' not found.",
                    "error_codes": [90002],
                },
                request=request,
            )
        if path.endswith("/v2.0/.well-known/openid-configuration") and request.method == "GET":
            base = f"{origin}/{tenant}"
            return httpx.Response(
                200,
                json={
                    "token_endpoint": f"{base}/oauth2/v2.0/token",
                    "token_endpoint_auth_methods_supported": [
                        "client_secret_post",
                        "private_key_jwt",
                        "client_secret_basic",
                    ],
                    "jwks_uri": f"{origin}/{tenant}/discovery/v2.0/keys",
                    "response_modes_supported": ["query", "fragment", "form_post"],
                    "subject_types_supported": ["pairwise"],
                    "id_token_signing_alg_values_supported": ["RS256"],
                    "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
                    "scopes_supported": ["openid", "profile", "email", "offline_access"],
                    "issuer": f"{base}/v2.0",
                    "request_uri_parameter_supported": False,
                    "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
                    "device_authorization_endpoint": f"{base}/oauth2/v2.0/devicecode",
                    "http_logout_supported": True,
                    "frontchannel_logout_supported": True,
                    "end_session_endpoint": f"{base}/oauth2/v2.0/logout",
                    "claims_supported": ["sub", "iss", "aud", "exp", "iat", "tid"],
                    "tenant_region_scope": "EU",
                },
                request=request,
            )
        if path.endswith("/oauth2/v2.0/token") and request.method == "POST":
            return self._token(request, origin, body)
        return httpx.Response(404, json={"error": "not_found"}, request=request)

    def _token_error(
        self, request: httpx.Request, status: int, error: str, code: int, text: str
    ) -> httpx.Response:
        return httpx.Response(
            status,
            json={
                "error": error,
                "error_description": f"AADSTS{code}: {text} Trace ID: {uuid.uuid4()} Timestamp: {_iso()}",
                "error_codes": [code],
                "timestamp": _iso(),
                "trace_id": str(uuid.uuid4()),
                "correlation_id": str(uuid.uuid4()),
            },
            request=request,
        )

    def authorize(self, url: str, email: str) -> str:
        """The browser at the authorization endpoint: `email` signs in; returns the redirect URL
        (redirect_uri?code=...&state=...). Checks what Entra ID checks of the request."""
        parts = urlsplit(url)
        params = {k: v[0] for k, v in parse_qs(parts.query).items()}
        if not parts.path.endswith(f"/{self.tenant_id}/oauth2/v2.0/authorize"):
            raise AssertionError(f"not this tenant's authorization endpoint: {url}")
        if params.get("client_id") != self.client_id:
            raise AssertionError("AADSTS700016: unknown client_id")
        if params.get("response_type") != "code" or "openid" not in params.get("scope", "").split():
            raise AssertionError("expected response_type=code with the openid scope")
        if params.get("code_challenge_method") != "S256" or not params.get("code_challenge"):
            raise AssertionError("PKCE (S256) is required")
        user = next((u for u in self.state.users.values()
                     if str(u.get("userPrincipalName", "")).lower() == email.lower()
                     or str(u.get("mail") or "").lower() == email.lower()), None)
        if user is None:
            raise AssertionError(f"AADSTS50034: the user account {email} does not exist in the directory")
        code = "0.A" + secrets.token_urlsafe(48)
        self.codes[code] = {"redirect_uri": params.get("redirect_uri", ""), "challenge": params["code_challenge"],
                            "nonce": params.get("nonce"), "user": user}
        return f"{params['redirect_uri']}?code={code}&state={params.get('state', '')}&session_state=x"

    def _redeem_code(self, request: httpx.Request, origin: str, form: dict[str, str]) -> httpx.Response:
        import hashlib

        grant = self.codes.pop(form.get("code", ""), None)
        if grant is None:
            return self._token_error(request, 400, "invalid_grant", 54005,
                                     "OAuth2 Authorization code was already redeemed, please retry with a new "
                                     "valid code or use an existing refresh token.")
        if form.get("client_id") != self.client_id or form.get("client_secret") != self.client_secret:
            return self._token_error(request, 401, "invalid_client", 7000215, "Invalid client secret provided.")
        if form.get("redirect_uri") != grant["redirect_uri"]:
            return self._token_error(request, 400, "invalid_grant", 50011,
                                     "The redirect URI specified in the request does not match.")
        verifier = form.get("code_verifier", "")
        challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
        if challenge != grant["challenge"]:
            return self._token_error(request, 400, "invalid_grant", 501481,
                                     "The Code_Verifier does not match the code_challenge supplied in the "
                                     "authorization request.")
        user = grant["user"]
        now = int(self.id_token_clock() if self.id_token_clock else time.time())
        claims = {"aud": self.client_id, "iss": f"{origin}/{self.tenant_id}/v2.0", "iat": now, "nbf": now,
                  "exp": now + 3600, "name": user.get("displayName", ""), "oid": user["id"],
                  "preferred_username": user.get("userPrincipalName", ""), "sub": "s-" + user["id"],
                  "tid": self.tenant_id, "ver": "2.0", "nonce": grant["nonce"]}
        header = base64.urlsafe_b64encode(b'{"typ":"JWT","alg":"RS256","kid":"standin"}').rstrip(b"=").decode()
        payload = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
        id_token = f"{header}.{payload}.c2lnbmF0dXJl"
        access_token = "eyJ0eXAi." + secrets.token_urlsafe(24)
        return httpx.Response(200, json={"token_type": "Bearer", "scope": "openid profile email", "expires_in": 3599,
                                         "ext_expires_in": 3599, "access_token": access_token,
                                         "id_token": id_token}, request=request)

    def _token(self, request: httpx.Request, origin: str, body: str) -> httpx.Response:
        self.token_requests += 1
        for fault in self._take_fault("POST", "/oauth2/v2.0/token"):
            headers = {"Retry-After": fault.retry_after} if fault.retry_after else {}
            return httpx.Response(
                fault.status,
                json={"error": fault.code, "error_description": fault.message},
                headers=headers,
                request=request,
            )
        form = {k: v[0] for k, v in parse_qs(body).items()}
        if form.get("grant_type") == "authorization_code":
            return self._redeem_code(request, origin, form)
        if form.get("grant_type") != "client_credentials":
            return self._token_error(
                request, 400, "unsupported_grant_type", 70003, "The app requested an unsupported grant type."
            )
        if form.get("client_id") != self.client_id:
            return self._token_error(
                request,
                400,
                "unauthorized_client",
                700016,
                f"Application with identifier '{form.get('client_id')}' was not found in the directory.",
            )
        scope = form.get("scope", "")
        if not any(s.endswith("/.default") for s in scope.split()):
            return self._token_error(
                request,
                400,
                "invalid_scope",
                1002012,
                "The provided value for scope is not valid. Client credential flows must have a scope "
                "value with /.default suffixed to the resource identifier (application ID URI).",
            )
        if "client_assertion" in form:
            if form.get("client_assertion_type") != "urn:ietf:params:oauth:client-assertion-type:jwt-bearer":
                return self._token_error(request, 400, "invalid_request", 50027, "Invalid JWT token.")
            try:
                claims = jwt.decode(form["client_assertion"], options={"verify_signature": False})
            except jwt.PyJWTError:
                return self._token_error(request, 401, "invalid_client", 50027, "Invalid JWT token.")
            if claims.get("iss") != self.client_id or claims.get("sub") != self.client_id:
                return self._token_error(
                    request, 401, "invalid_client", 50027, "Invalid JWT token: wrong issuer."
                )
            if claims.get("aud") != f"{origin}/{self.tenant_id}/oauth2/v2.0/token":
                return self._token_error(
                    request,
                    401,
                    "invalid_client",
                    700212,
                    "No matching federated identity record found for presented assertion audience.",
                )
        elif form.get("client_secret") != self.client_secret:
            return self._token_error(
                request,
                401,
                "invalid_client",
                7000215,
                "Invalid client secret provided. Ensure the secret being sent in the request is the "
                "client secret value, not the client secret ID, for a secret added to app.",
            )
        token = "eyJ0eXAiOiJKV1QiLCJhbGciOiJub25lIn0." + secrets.token_urlsafe(32)
        self.tokens.add(token)
        return httpx.Response(
            200,
            json={"token_type": "Bearer", "expires_in": 3599, "ext_expires_in": 3599, "access_token": token},
            request=request,
        )

    # ----- Graph -----

    def _take_fault(self, method: str, path: str) -> list[Fault]:
        for fault in self.faults:
            if fault.times > 0 and fault.method == method and fault.path.search(path):
                fault.times -= 1
                return [fault]
        return []

    def _graph(
        self,
        request: httpx.Request,
        method: str,
        path: str,
        params: httpx.QueryParams,
        body: str,
        *,
        top_level: bool,
    ) -> httpx.Response:
        auth = request.headers.get("Authorization", "")
        if not auth.startswith("Bearer ") or auth[7:] not in self.tokens:
            return self._error(
                request,
                401,
                "InvalidAuthenticationToken",
                "Access token validation failure. Invalid audience." if auth else "Access token is empty.",
            )
        for fault in self._take_fault(method, path):
            headers = {"Retry-After": fault.retry_after} if fault.retry_after else {}
            return self._error(request, fault.status, fault.code, fault.message, headers)
        try:
            payload = json.loads(body) if body else None
        except ValueError:
            return self._error(request, 400, "BadRequest", "Unable to read JSON request payload.")
        if method == "POST" and path == "/$batch":
            if not top_level:
                return self._error(request, 400, "BadRequest", "Nested batch requests are not supported.")
            return self._batch(request, payload)
        return self._route(request, method, path, params, payload)

    def _route(
        self, request: httpx.Request, method: str, path: str, params: httpx.QueryParams, payload: Any
    ) -> httpx.Response:
        s = self.state
        segs = [unquote(p) for p in path.strip("/").split("/")]
        n = len(segs)
        if segs[0] == "users":
            if n == 1 and method == "GET":
                return self._list_users(request, params)
            uid = self._user_id(segs[1]) if n >= 2 else None
            if n >= 2 and uid is None and segs[2:3] != ["sendMail"]:
                return self._not_found(request, segs[1])
            if n == 2 and method == "GET":
                return self._json(request, 200, self._select(s.users[uid], params))  # type: ignore[index]
            if n == 2 and method == "PATCH":
                return self._patch_user(request, uid, payload)  # type: ignore[arg-type]
            assert uid is not None or segs[2] == "sendMail"
            tail = segs[2:]
            if tail == ["revokeSignInSessions"] and method == "POST":
                return self._json(
                    request,
                    200,
                    {
                        "@odata.context": "https://graph.microsoft.com/v1.0/$metadata#Edm.Boolean",
                        "value": True,
                    },
                )
            if tail in (["transitiveMemberOf"], ["memberOf"]) and method == "GET":
                return self._page(request, self._member_of(uid), params, path)  # type: ignore[arg-type]
            if tail == ["licenseDetails"] and method == "GET":
                items = [
                    {
                        "id": secrets.token_hex(8),
                        "skuId": str(uuid.uuid5(uuid.NAMESPACE_DNS, sku)),
                        "skuPartNumber": sku,
                        "servicePlans": [],
                    }
                    for sku in s.licenses.get(uid, [])
                ]  # type: ignore[arg-type]
                return self._json(request, 200, {"value": [self._select(i, params) for i in items]})
            if tail[:1] == ["authentication"]:
                return self._authentication(request, method, uid, tail[1:], payload)  # type: ignore[arg-type]
            if tail == ["managedDevices"] and method == "GET":
                devices = [d for did, d in s.devices.items() if s.device_owner.get(did) == uid]
                return self._page(request, devices, params, path)
            if tail == ["mailboxSettings"]:
                return self._mailbox_settings(request, method, uid, payload)  # type: ignore[arg-type]
            if tail == ["drive"] and method == "GET":
                if uid not in s.drive:
                    return self._error(request, 404, "ResourceNotFound", "User's mysite not found.")
                used, total = s.drive[uid]  # type: ignore[index]
                ratio = used / total if total else 0
                state = (
                    "exceeded"
                    if ratio >= 1
                    else "critical"
                    if ratio >= 0.98
                    else "nearing"
                    if ratio >= 0.9
                    else "normal"
                )
                drive = {
                    "id": "b!" + secrets.token_urlsafe(12),
                    "driveType": "business",
                    "quota": {
                        "deleted": 0,
                        "remaining": max(0, total - used),
                        "state": state,
                        "total": total,
                        "used": used,
                    },
                }
                return self._json(request, 200, self._select(drive, params))
            if tail == ["sendMail"] and method == "POST":
                return self._send_mail(request, segs[1], payload)
            if tail[:2] == ["teamwork", "installedApps"]:
                return self._installed_apps(request, method, uid, tail[2:], payload)  # type: ignore[arg-type]
        if segs[0] == "groups":
            if n == 1 and method == "GET" and "$search" in params:
                return self._search_groups(request, params, path)
            if n == 1 and method == "GET":
                expression = params.get("$filter", "")
                nick, display = (
                    _odata_literal(expression, "mailNickname"),
                    _odata_literal(expression, "displayName"),
                )
                if expression and nick is None and display is None:
                    return self._error(request, 400, "Request_UnsupportedQuery", "Unsupported query.")
                found = (
                    [
                        g
                        for g in s.groups.values()
                        if (nick and g["mailNickname"].casefold() == nick.casefold())
                        or (display and g["displayName"].casefold() == display.casefold())
                    ]
                    if expression
                    else list(s.groups.values())
                )
                return self._page(request, [self._select(g, params) for g in found], params, path)
            gid = segs[1] if n >= 2 else ""
            if gid not in s.groups:
                return self._not_found(request, gid)
            if n == 2 and method == "GET":
                return self._json(request, 200, self._select(s.groups[gid], params))
            if segs[2:] == ["owners"] and method == "GET":
                owners = [
                    {"@odata.type": "#microsoft.graph.user", **self._select(s.users[o], params)}
                    for o in s.owners.get(gid, [])
                ]
                return self._page(request, owners, params, path)
            if segs[2:] == ["members", "$ref"] and method == "POST":
                return self._add_member(request, gid, payload)
        if segs[:2] == ["deviceManagement", "managedDevices"] and n == 4 and method == "POST":
            if segs[2] not in s.devices:
                return self._error(
                    request, 404, "ResourceNotFound", "Resource not found for the segment 'managedDevices'."
                )
            if segs[3] not in ("syncDevice", "rebootNow", "remoteLock"):
                return self._error(request, 400, "BadRequest", "Resource not found for the segment.")
            return self._json(request, 204, None)
        if segs[0] == "reports" and n == 2 and method == "GET":
            if segs[1] != "getMailboxUsageDetail(period='D7')":
                return self._error(request, 400, "BadRequest", "Invalid period.")
            token = secrets.token_urlsafe(16)
            self._reports[token] = self._mailbox_csv()
            origin = f"{request.url.scheme}://{request.url.netloc.decode()}"
            rid, crid = self._rid(request)
            return httpx.Response(
                302,
                headers={
                    "Location": f"{origin}/reports-download/{token}",
                    "Content-Type": "text/plain",
                    "request-id": rid,
                    "client-request-id": crid,
                },
                request=request,
            )
        return self._error(request, 400, "BadRequest", f"Resource not found for the segment '{segs[0]}'.")

    def _installed_apps(
        self, request: httpx.Request, method: str, uid: str, rest: list[str], payload: Any
    ) -> httpx.Response:
        """`/users/{id}/teamwork/installedApps`: POST installs an app from the catalog in the user's
        personal scope (201, no body; 409 Conflict when it is already installed; 404 for an app
        not in the catalog when `teams_catalog` is set), GET lists installations."""
        installed = self.state.teams_apps.setdefault(uid, {})
        if not rest and method == "POST":
            bind = payload.get("teamsApp@odata.bind") if isinstance(payload, dict) else None
            match = re.fullmatch(r"https://[^/]+/v1\.0/appCatalogs/teamsApps/([^/]+)", str(bind or ""))
            if match is None:
                return self._error(request, 400, "BadRequest", "Invalid bind property name teamsApp in request.")
            app_id = match.group(1)
            if self.teams_catalog is not None and app_id not in self.teams_catalog:
                return self._error(request, 404, "NotFound", f"App with id '{app_id}' was not found in the catalog.")
            if app_id in installed.values():
                return self._error(request, 409, "Conflict", "App is already installed for this user.")
            installation = base64.b64encode(f"{uid}##{app_id}".encode()).decode()
            installed[installation] = app_id
            if self.on_app_installed is not None:
                self.on_app_installed(uid, app_id)
            rid, crid = self._rid(request)
            return httpx.Response(201, headers={"request-id": rid, "client-request-id": crid}, request=request)
        if not rest and method == "GET":
            items = [{"id": iid, "teamsApp": {"id": app_id, "distributionMethod": "organization"}}
                     for iid, app_id in installed.items()]
            return self._json(request, 200, {"value": items})
        return self._error(request, 400, "BadRequest", "Resource not found for the segment 'installedApps'.")

    def _user_id(self, key: str) -> str | None:
        if key in self.state.users:
            return key
        for uid, user in self.state.users.items():
            if user["userPrincipalName"].casefold() == key.casefold():
                return uid
        return None

    @staticmethod
    def _select(item: dict[str, Any], params: httpx.QueryParams) -> dict[str, Any]:
        select = params.get("$select")
        if not select:
            return dict(item)
        wanted = {s.strip() for s in select.split(",")}
        return {k: v for k, v in item.items() if k in wanted or k.startswith("@odata")}

    def _list_users(self, request: httpx.Request, params: httpx.QueryParams) -> httpx.Response:
        expression = params.get("$filter", "")
        mail, upn = _odata_literal(expression, "mail"), _odata_literal(expression, "userPrincipalName")
        if expression and mail is None and upn is None:
            return self._error(
                request,
                400,
                "Request_UnsupportedQuery",
                "Unsupported or invalid query filter clause specified for property.",
            )
        found = [
            u
            for u in self.state.users.values()
            if not expression
            or (mail and (u.get("mail") or "").casefold() == mail.casefold())
            or (upn and u["userPrincipalName"].casefold() == upn.casefold())
        ]
        return self._page(request, [self._select(u, params) for u in found], params, "/users")

    def _page(
        self, request: httpx.Request, items: list[dict[str, Any]], params: httpx.QueryParams, path: str
    ) -> httpx.Response:
        token = params.get("$skiptoken")
        start = int(base64.urlsafe_b64decode(token.encode()).decode()) if token else 0
        chunk = items[start : start + self.page_size]
        body: dict[str, Any] = {
            "@odata.context": f"https://graph.microsoft.com/v1.0/$metadata#{path.strip('/').split('/')[-1]}",
            "value": chunk,
        }
        if start + self.page_size < len(items):
            origin = f"{request.url.scheme}://{request.url.netloc.decode()}"
            keep = {k: v for k, v in params.items() if k != "$skiptoken"}
            keep["$skiptoken"] = base64.urlsafe_b64encode(str(start + self.page_size).encode()).decode()
            query = str(httpx.QueryParams(keep))
            body["@odata.nextLink"] = f"{origin}{GRAPH_VERSION}{path}?{query}"
        return self._json(request, 200, body)

    def _member_of(self, uid: str) -> list[dict[str, Any]]:
        s = self.state
        items: list[dict[str, Any]] = [
            {
                "@odata.type": "#microsoft.graph.group",
                **{k: g[k] for k in ("id", "displayName", "mailNickname")},
            }
            for gid, g in s.groups.items()
            if uid in s.members.get(gid, set())
        ]
        for role in s.roles.get(uid, []):
            items.append(
                {
                    "@odata.type": "#microsoft.graph.directoryRole",
                    "id": str(uuid.uuid5(uuid.NAMESPACE_OID, role)),
                    "displayName": role,
                    "roleTemplateId": str(uuid.uuid5(uuid.NAMESPACE_URL, role)),
                }
            )
        return items

    def _search_groups(self, request: httpx.Request, params: httpx.QueryParams, path: str) -> httpx.Response:
        """`$search="displayName:word" OR "mailNickname:word"`: tokenised prefix match, as Graph does;
        without `ConsistencyLevel: eventual` Graph refuses the query (400 Request_UnsupportedQuery)."""
        if request.headers.get("ConsistencyLevel", "").lower() != "eventual":
            return self._error(request, 400, "Request_UnsupportedQuery",
                               "Request with $search query parameter only works with ConsistencyLevel header "
                               "set to 'eventual'.")
        clauses = re.findall(r'"(displayName|mailNickname|description):([^"]*)"', params["$search"])
        if not clauses:
            return self._error(request, 400, "Request_UnsupportedQuery", "Unsupported query.")
        found = []
        for g in self.state.groups.values():
            for prop, term in clauses:
                tokens = re.split(r"[^\w]+", str(g.get(prop) or "").casefold())
                if term and any(t.startswith(term.casefold()) for t in tokens if t):
                    found.append(g)
                    break
        return self._page(request, [self._select(g, params) for g in found], params, path)

    def _patch_user(self, request: httpx.Request, uid: str, payload: Any) -> httpx.Response:
        if not isinstance(payload, dict) or not payload:
            return self._error(request, 400, "Request_BadRequest", "Invalid request body.")
        user = self.state.users[uid]
        if "passwordProfile" in payload:
            profile = payload["passwordProfile"]
            if not isinstance(profile, dict) or not isinstance(profile.get("password"), str):
                return self._error(
                    request,
                    400,
                    "Request_BadRequest",
                    "Invalid value specified for property 'passwordProfile'.",
                )
            unknown = set(profile) - {
                "password",
                "forceChangePasswordNextSignIn",
                "forceChangePasswordNextSignInWithMfa",
            }
            if unknown:
                return self._error(
                    request,
                    400,
                    "Request_BadRequest",
                    f"Property '{sorted(unknown)[0]}' does not exist on type 'passwordProfile'.",
                )
            if self.state.roles.get(uid) and not self.app_can_manage_admins:
                return self._error(
                    request,
                    403,
                    "Authorization_RequestDenied",
                    "Insufficient privileges to complete the operation.",
                )
            password = profile["password"]
            classes = sum(
                bool(re.search(p, password)) for p in (r"[a-z]", r"[A-Z]", r"[0-9]", r"[^a-zA-Z0-9]")
            )
            if not (8 <= len(password) <= 256 and classes >= 3):
                return self._error(
                    request,
                    400,
                    "Request_BadRequest",
                    "The specified password does not comply with password complexity requirements. "
                    "Please provide a different password.",
                )
            user["lastPasswordChangeDateTime"] = _iso()
        for key, value in payload.items():
            if key != "passwordProfile":
                user[key] = value
        return self._json(request, 204, None)

    def _authentication(
        self, request: httpx.Request, method: str, uid: str, tail: list[str], payload: Any
    ) -> httpx.Response:
        s = self.state
        kind = tail[0] if tail else ""
        if kind == "emailMethods" and method == "GET":
            value = (
                [{"id": "3ddfcfc8-9383-446f-83cc-3ab9be4be18f", "emailAddress": s.alternate[uid]}]
                if uid in s.alternate
                else []
            )
            return self._json(request, 200, {"value": value})
        if kind in ("phoneMethods", "microsoftAuthenticatorMethods"):
            store = s.phones if kind == "phoneMethods" else s.authenticators
            if len(tail) == 1 and method == "GET":
                return self._json(request, 200, {"value": store.get(uid, [])})
            if len(tail) == 2 and method == "DELETE":
                kept = [m for m in store.get(uid, []) if m["id"] != tail[1]]
                if len(kept) == len(store.get(uid, [])):
                    return self._error(
                        request, 404, "itemNotFound", "The requested authentication method was not found."
                    )
                store[uid] = kept
                return self._json(request, 204, None)
        if kind == "temporaryAccessPassMethods" and len(tail) == 1 and method == "POST":
            payload = payload or {}
            allowed = {"startDateTime", "lifetimeInMinutes", "isUsableOnce"}
            if set(payload) - allowed:
                return self._error(request, 400, "badRequest", "Invalid property in the request.")
            lifetime = int(payload.get("lifetimeInMinutes", 60))
            if not 10 <= lifetime <= 43200:
                return self._error(
                    request, 400, "badRequest", "lifetimeInMinutes must be between 10 and 43200."
                )
            if not s.users[uid]["accountEnabled"]:
                return self._error(request, 400, "badRequest", "The user is disabled.")
            body = {
                "@odata.context": f"https://graph.microsoft.com/v1.0/$metadata#users('{uid}')/authentication/temporaryAccessPassMethods/$entity",
                "id": str(uuid.uuid4()),
                "temporaryAccessPass": "TAP" + secrets.token_urlsafe(9),
                "createdDateTime": _iso(),
                "startDateTime": payload.get("startDateTime") or _iso(),
                "lifetimeInMinutes": lifetime,
                "isUsableOnce": bool(payload.get("isUsableOnce", False)),
                "isUsable": True,
                "methodUsabilityReason": "EnabledByPolicy",
            }
            return self._json(request, 201, body)
        return self._error(request, 400, "BadRequest", "Unsupported authentication request.")

    def _add_member(self, request: httpx.Request, gid: str, payload: Any) -> httpx.Response:
        ref = payload.get("@odata.id") if isinstance(payload, dict) else None
        match = re.match(r"^https://[^/]+/v1\.0/directoryObjects/([^/?#]+)$", str(ref or ""))
        if match is None:
            return self._error(
                request, 400, "Request_BadRequest", "Invalid object identifier '" + str(ref) + "'."
            )
        uid = match.group(1)
        if uid not in self.state.users:
            return self._not_found(request, uid)
        if uid in self.state.members[gid]:
            return self._error(
                request,
                400,
                "Request_BadRequest",
                "One or more added object references already exist for the following modified "
                "properties: 'members'.",
            )
        self.state.members[gid].add(uid)
        return self._json(request, 204, None)

    def _mailbox_settings(
        self, request: httpx.Request, method: str, uid: str, payload: Any
    ) -> httpx.Response:
        current = self.state.mailbox_settings[uid]
        context = f"https://graph.microsoft.com/v1.0/$metadata#users('{uid}')/mailboxSettings"
        if method == "GET":
            return self._json(request, 200, {"@odata.context": context, **current})
        if method != "PATCH" or not isinstance(payload, dict):
            return self._error(request, 400, "BadRequest", "Invalid request.")
        setting = payload.get("automaticRepliesSetting")
        if setting is not None:
            if setting.get("status") not in ("disabled", "alwaysEnabled", "scheduled"):
                return self._error(request, 400, "ErrorInvalidArgument", "Invalid automatic replies status.")
            if setting.get("externalAudience", "all") not in ("none", "contactsOnly", "all"):
                return self._error(request, 400, "ErrorInvalidArgument", "Invalid external audience.")
            for key in ("scheduledStartDateTime", "scheduledEndDateTime"):
                if key in setting and not (
                    isinstance(setting[key], dict) and {"dateTime", "timeZone"} <= set(setting[key])
                ):
                    return self._error(request, 400, "ErrorInvalidArgument", f"Invalid {key}.")
            current["automaticRepliesSetting"] = {**current["automaticRepliesSetting"], **setting}
        return self._json(
            request,
            200,
            {"@odata.context": context, "automaticRepliesSetting": current["automaticRepliesSetting"]},
        )

    def _send_mail(self, request: httpx.Request, sender: str, payload: Any) -> httpx.Response:
        if self._user_id(sender) is None:
            return self._error(request, 404, "ErrorInvalidUser", f"The requested user '{sender}' is invalid.")
        message = (payload or {}).get("message") or {}
        recipients = message.get("toRecipients") or []
        if not recipients or "body" not in message:
            return self._error(request, 400, "ErrorInvalidRecipients", "At least one recipient is not valid.")
        for r in recipients:
            self.sent_mail.append(
                SentMail(
                    sender,
                    r["emailAddress"]["address"],
                    message.get("subject", ""),
                    message["body"].get("content", ""),
                )
            )
        return self._json(request, 202, None)

    def _mailbox_csv(self) -> str:
        header = (
            "Report Refresh Date,User Principal Name,Display Name,Is Deleted,Deleted Date,Created Date,"
            "Last Activity Date,Item Count,Storage Used (Byte),Issue Warning Quota (Byte),"
            "Prohibit Send Quota (Byte),Prohibit Send/Receive Quota (Byte),Deleted Item Count,"
            "Deleted Item Size (Byte),Deleted Item Quota (Byte),Has Archive,Report Period"
        )
        rows = [header]
        for uid, (used, total) in self.state.mailbox.items():
            u = self.state.users[uid]
            upn, display = u["userPrincipalName"], u["displayName"]
            if self.conceal_report_names:
                import hashlib

                upn = display = hashlib.md5(upn.encode(), usedforsecurity=False).hexdigest().upper()
            rows.append(
                ",".join(
                    [
                        "2026-09-20",
                        upn,
                        display,
                        "False",
                        "",
                        "2024-01-01",
                        "2026-09-19",
                        "1200",
                        str(used),
                        str(int(total * 0.9)),
                        str(int(total * 0.98)),
                        str(total),
                        "10",
                        "1024",
                        str(30 * 1024 * MB),
                        "False",
                        "7",
                    ]
                )
            )
        return "\ufeff" + "\n".join(rows) + "\n"

    def _download(self, request: httpx.Request, path: str) -> httpx.Response:
        if "Authorization" in request.headers:
            self.downloads_with_auth += 1  # the real download URL is pre-authenticated
        text = self._reports.pop(path.rsplit("/", 1)[-1], None)
        if text is None:
            return httpx.Response(404, text="expired", request=request)
        return httpx.Response(
            200,
            headers={"Content-Type": "application/octet-stream"},
            content=text.encode("utf-8"),
            request=request,
        )

    def _batch(self, request: httpx.Request, payload: Any) -> httpx.Response:
        items = (payload or {}).get("requests")
        if not isinstance(items, list) or not items:
            return self._error(request, 400, "BadRequest", "Invalid batch payload format.")
        if len(items) > 20:
            return self._error(request, 400, "BadRequest", "Number of batch steps cannot exceed 20.")
        ids = [str(i.get("id")) for i in items]
        if len(set(ids)) != len(ids):
            return self._error(request, 400, "BadRequest", "Batch request contains duplicate ids.")
        responses = []
        for item in items:
            if item.get("body") is not None and "content-type" not in {
                k.lower() for k in (item.get("headers") or {})
            }:
                responses.append(
                    {
                        "id": item["id"],
                        "status": 400,
                        "headers": {},
                        "body": {
                            "error": {"code": "BadRequest", "message": "Content-Type header is required."}
                        },
                    }
                )
                continue
            url = str(item.get("url", ""))
            full = httpx.URL(
                f"https://graph.microsoft.com{GRAPH_VERSION}{url if url.startswith('/') else '/' + url}"
            )
            inner_request = httpx.Request(
                item.get("method", "GET"),
                full,
                headers={"Authorization": request.headers.get("Authorization", "")},
            )
            inner_path = unquote(full.path)[len(GRAPH_VERSION) :]
            response = self._graph(
                inner_request,
                inner_request.method,
                inner_path,
                full.params,
                json.dumps(item["body"]) if item.get("body") is not None else "",
                top_level=False,
            )
            headers = {
                k: v
                for k, v in response.headers.items()
                if k.lower() in ("content-type", "retry-after", "location")
            }
            body = json.loads(response.content) if response.content else None
            responses.append(
                {"id": item["id"], "status": response.status_code, "headers": headers, "body": body}
            )
        responses.reverse()  # Graph does not keep the order
        return self._json(request, 200, {"responses": responses})


# ----- loopback HTTPS -------------------------------------------------------------------------


@contextlib.contextmanager
def serve_https(standin: GraphStandIn, tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """Serve the stand-in on https://127.0.0.1:<port> with a throwaway CA. Yields the origin and
    the CA bundle path to put in SSL_CERT_FILE."""
    import trustme

    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    ca_file = tmp_path / "standin-ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            content = self.rfile.read(length) if length else b""
            host = f"127.0.0.1:{self.server.server_address[1]}"
            request = httpx.Request(
                self.command,
                f"https://{host}{self.path}",
                headers=[(k, v) for k, v in self.headers.items()],
                content=content,
            )
            response = standin.handler(request)
            payload = response.content
            self.send_response(response.status_code)
            for key, value in response.headers.items():
                if key.lower() not in ("content-length", "transfer-encoding", "connection"):
                    self.send_header(key, value)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        do_GET = do_POST = do_PATCH = do_DELETE = _serve

        def log_message(self, format: str, *args: Any) -> None:
            return None

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    cert.configure_cert(context)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"https://127.0.0.1:{server.server_address[1]}", ca_file
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
