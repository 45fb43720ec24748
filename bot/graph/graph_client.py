"""MSAL token provider and an httpx client for Microsoft Graph.

- One long-lived `ConfidentialClientApplication` per tenant/app (MSAL's token cache lives in it),
  built lazily in a worker thread because its constructor fetches the tenant's OpenID
  configuration. Instance discovery is off, so MSAL only ever talks to the configured authority
  host (national clouds, loopback stand-ins).
- MSAL and Graph traffic both go through httpx with `trust_env=True`: `HTTPS_PROXY`/`NO_PROXY` and
  `SSL_CERT_FILE` are honoured.
- Retries on 429, 503 and 504 honour `Retry-After` (else exponential backoff with full jitter)
  within `retry_budget_seconds`; connection failures are retried only when the request cannot
  have reached Graph or is a GET.
- Errors are mapped from Graph's `error.code` (then the HTTP status), never from message text.
- Request and response bodies are never logged: some carry a password or a Temporary Access Pass.
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import random
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

import httpx

from bot.graph.directory import (
    BadRequest,
    DirectoryError,
    NotConfigured,
    NotFound,
    PermissionMissing,
    Throttled,
    TokenFailure,
    Unavailable,
)
from bot.metrics import observe_graph
from bot.settings import GraphSettings

log = logging.getLogger(__name__)

RETRY_STATUSES = frozenset({429, 503, 504})
BATCH_LIMIT = 20

# Graph error codes, grouped by what the bot does about them. Directory (Entra) and workload
# (Exchange, Intune, OneDrive) services use different spellings for the same thing.
NOT_FOUND_CODES = frozenset(
    {"Request_ResourceNotFound", "ResourceNotFound", "itemNotFound", "ErrorItemNotFound", "notFound"}
)
DENIED_CODES = frozenset(
    {"Authorization_RequestDenied", "accessDenied", "Forbidden", "ErrorAccessDenied", "insufficient_claims"}
)
TOKEN_CODES = frozenset(
    {"InvalidAuthenticationToken", "Authentication_ExpiredToken", "Authentication_MissingOrMalformed"}
)
THROTTLE_CODES = frozenset({"TooManyRequests", "activityLimitReached", "ApplicationThrottled"})
UNAVAILABLE_CODES = frozenset({"serviceNotAvailable", "ServiceUnavailable", "gatewayTimeout", "UnknownError"})


class TokenProvider(Protocol):
    async def token(self) -> str: ...

    def close(self) -> None: ...


# ----- MSAL -------------------------------------------------------------------------------------


def graph_scope(base_url: str) -> str:
    """`https://graph.microsoft.com/v1.0` -> `https://graph.microsoft.com/.default` (any cloud)."""
    parts = urlsplit(base_url)
    return f"{parts.scheme}://{parts.netloc}/.default"


def client_credential(settings: GraphSettings) -> str | dict[str, Any]:
    """A client secret, or a certificate (PFX, or PEM holding the key and the certificate)."""
    if settings.client_secret is not None and settings.client_secret.get_secret_value():
        return settings.client_secret.get_secret_value()
    if settings.certificate_path is None:
        raise NotConfigured(
            "graph: set HELPDESK_GRAPH__CLIENT_SECRET or graph.certificate_path", operation="token"
        )
    path = Path(settings.certificate_path)
    passphrase = (
        settings.certificate_passphrase.get_secret_value() if settings.certificate_passphrase else None
    )
    credential: dict[str, Any]
    if path.suffix.lower() in (".pfx", ".p12"):
        credential = {"private_key_pfx_path": str(path)}
    else:
        try:
            pem = path.read_text(encoding="ascii")
        except OSError as exc:
            raise NotConfigured(f"graph: cannot read certificate {path}: {exc}", operation="token") from exc
        begin = pem.find("-----BEGIN CERTIFICATE-----")
        if begin < 0 and not settings.certificate_thumbprint:
            raise NotConfigured(
                f"graph: {path} holds no certificate; add it to the PEM or set certificate_thumbprint",
                operation="token",
            )
        credential = {"private_key": pem}
        if settings.certificate_thumbprint:
            credential["thumbprint"] = settings.certificate_thumbprint
        else:
            end = pem.find("-----END CERTIFICATE-----", begin) + len("-----END CERTIFICATE-----")
            credential["public_certificate"] = pem[begin:end]
    if passphrase:
        credential["passphrase"] = passphrase
    return credential


class MsalHttpClient:
    """MSAL's minimal HTTP interface over `httpx.Client`. MSAL puts a certificate's client assertion
    in the form as bytes, which httpx would encode as the text "b'...'": decode it first."""

    def __init__(self, client: httpx.Client) -> None:
        self.client = client

    def get(self, url: str, params: Any = None, headers: Any = None, **_: Any) -> httpx.Response:
        return self.client.get(url, params=params, headers=headers)

    def post(
        self, url: str, params: Any = None, data: Any = None, headers: Any = None, **_: Any
    ) -> httpx.Response:
        if isinstance(data, dict):
            data = {k: v.decode("ascii") if isinstance(v, bytes) else v for k, v in data.items()}
        return self.client.post(url, params=params, data=data, headers=headers)

    def close(self) -> None:
        self.client.close()


class MsalTokenProvider:
    """App-only tokens for Graph from one long-lived MSAL confidential client."""

    def __init__(
        self,
        settings: GraphSettings,
        *,
        http_client: httpx.Client | None = None,
        scope: str | None = None,
    ) -> None:
        if not settings.tenant_id or not settings.client_id:
            raise NotConfigured("graph: tenant_id and client_id are required", operation="token")
        self._settings = settings
        self._scope = scope or graph_scope(settings.base_url)
        self._http_client = http_client
        self._owns_http_client = http_client is None
        self._app: Any = None
        self._lock = asyncio.Lock()

    @property
    def authority(self) -> str:
        return f"{self._settings.authority_host.rstrip('/')}/{self._settings.tenant_id}"

    def _build(self) -> Any:
        import msal

        if self._http_client is None:
            self._http_client = httpx.Client(timeout=self._settings.timeout_seconds, trust_env=True)
        return msal.ConfidentialClientApplication(
            self._settings.client_id,
            client_credential=client_credential(self._settings),
            authority=self.authority,
            # Only the configured authority is ever contacted: no instance discovery at
            # login.microsoftonline.com, which national clouds and stand-ins must not need.
            instance_discovery=False,
            http_client=MsalHttpClient(self._http_client),
        )

    def _acquire(self) -> str:
        try:
            if self._app is None:
                self._app = self._build()
            result = self._app.acquire_token_for_client(scopes=[self._scope])
        except DirectoryError:
            raise
        except httpx.HTTPError as exc:
            raise TokenFailure(
                f"identity platform unreachable at {self._settings.authority_host}: {type(exc).__name__}",
                operation="token",
            ) from None
        except ValueError as exc:  # MSAL: authority discovery failed, bad certificate...
            raise TokenFailure(
                f"MSAL refused the configuration: {str(exc)[:300]}", operation="token"
            ) from None
        if isinstance(result, dict) and result.get("access_token"):
            return str(result["access_token"])
        error = result.get("error", "unknown") if isinstance(result, dict) else "unknown"
        codes = result.get("error_codes", []) if isinstance(result, dict) else []
        description = str(result.get("error_description", "")) if isinstance(result, dict) else ""
        raise TokenFailure(
            f"token request refused: {error} {codes} "
            f"{description.splitlines()[0][:200] if description else ''}",
            code=str(error),
            operation="token",
        )

    async def token(self) -> str:
        async with self._lock:
            return await asyncio.to_thread(self._acquire)

    def close(self) -> None:
        if self._owns_http_client and self._http_client is not None:
            self._http_client.close()
            self._http_client = None


# ----- Graph ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class GraphResponse:
    status: int
    body: Any
    headers: Mapping[str, str] = field(default_factory=dict)

    @property
    def request_id(self) -> str | None:
        return request_id_of(self.headers, self.body)


@dataclass(frozen=True, slots=True)
class BatchItem:
    id: str
    method: str
    url: str  # relative to the version root: "/users/{id}"
    body: Any = None


def request_id_of(headers: Mapping[str, str], body: Any) -> str | None:
    lowered = {k.lower(): v for k, v in headers.items()}
    rid = lowered.get("request-id") or lowered.get("x-ms-request-id")
    if rid:
        return rid
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        inner = body["error"].get("innerError") or body["error"].get("innererror") or {}
        if isinstance(inner, dict):
            value = inner.get("request-id")
            return str(value) if value else None
    return None


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds from a `Retry-After` header: delta-seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (now if now is not None else time.time()))


def error_from(
    status: int,
    body: Any,
    headers: Mapping[str, str],
    *,
    operation: str,
    required: str = "",
) -> DirectoryError:
    """The `DirectoryError` for a failed Graph response, chosen by `error.code`, then status."""
    code: str | None = None
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        raw = body["error"].get("code")
        code = str(raw) if raw else None
    rid = request_id_of(headers, body)
    detail = f"{operation}: HTTP {status} {code or ''}".strip()
    kw: dict[str, Any] = {"code": code, "status": status, "request_id": rid, "operation": operation}
    if code in TOKEN_CODES or status == 401:
        return TokenFailure(detail, **kw)
    if code in DENIED_CODES or status == 403:
        return PermissionMissing(f"{detail}; needs {required or 'a permission'}", required=required, **kw)
    if code in NOT_FOUND_CODES or status == 404:
        return NotFound(detail, **kw)
    if code in THROTTLE_CODES or status == 429:
        return Throttled(detail, **kw)
    if code in UNAVAILABLE_CODES or status >= 500:
        return Unavailable(detail, **kw)
    return BadRequest(detail, **kw)


Sleep = Callable[[float], Awaitable[None]]


class GraphClient:
    """Authenticated Graph calls with retries, paging and `$batch`. The `httpx.AsyncClient` is
    created on first use, so building one does no I/O."""

    def __init__(
        self,
        settings: GraphSettings,
        tokens: TokenProvider,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        required: Mapping[str, str] | None = None,
        sleep: Sleep = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
        rng: Callable[[], float] = random.random,
        backoff_base: float = 0.5,
        backoff_cap: float = 16.0,
    ) -> None:
        self.base_url = settings.base_url.rstrip("/")
        base = urlsplit(self.base_url)
        self._origin = (base.scheme, base.netloc.lower())
        self._settings = settings
        self._tokens = tokens
        self._transport = transport
        self._required = dict(required or {})
        self._sleep = sleep
        self._clock = clock
        self._rng = rng
        self._backoff_base = backoff_base
        self._backoff_cap = backoff_cap
        self._http: httpx.AsyncClient | None = None

    # ----- plumbing -----

    def _client(self) -> httpx.AsyncClient:
        if self._http is None:
            self._http = httpx.AsyncClient(
                timeout=httpx.Timeout(self._settings.timeout_seconds),
                trust_env=True,
                transport=self._transport,
                follow_redirects=False,
                headers={"User-Agent": "helpdesk-bot", "Accept": "application/json"},
            )
        return self._http

    async def aclose(self) -> None:
        if self._http is not None:
            await self._http.aclose()
            self._http = None
        self._tokens.close()

    def url(self, path_or_url: str) -> str:
        if path_or_url.startswith("/"):
            return self.base_url + path_or_url
        parts = urlsplit(path_or_url)
        # A nextLink is followed with our bearer token: never to another host.
        if (parts.scheme, parts.netloc.lower()) != self._origin:
            raise DirectoryError(f"refusing to send a Graph token to {parts.scheme}://{parts.netloc}")
        return path_or_url

    def _backoff(self, attempt: int) -> float:
        return float(min(self._backoff_cap, self._backoff_base * (2**attempt)) * self._rng())

    def required_for(self, operation: str) -> str:
        return self._required.get(operation, "")

    # ----- calls -----

    async def request(
        self,
        method: str,
        path_or_url: str,
        *,
        operation: str,
        params: Mapping[str, str] | None = None,
        json: Any = None,
        headers: Mapping[str, str] | None = None,
    ) -> GraphResponse:
        """One call, retried within the budget. Raises a `DirectoryError` for 4xx/5xx."""
        url = self.url(path_or_url)
        deadline = self._clock() + self._settings.retry_budget_seconds
        attempt = 0
        while True:
            token = await self._tokens.token()
            send_headers = {
                "Authorization": f"Bearer {token}",
                "client-request-id": str(uuid.uuid4()),
                **(headers or {}),
            }
            try:
                response = await self._client().request(
                    method, url, params=params, json=json, headers=send_headers
                )
            except httpx.TransportError as exc:
                # Safe to repeat only if Graph cannot have acted on it.
                repeatable = method == "GET" or isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout)
                delay = self._backoff(attempt)
                if repeatable and self._clock() + delay < deadline:
                    log.warning(
                        "graph %s %s: %s, retrying in %.1fs", operation, method, type(exc).__name__, delay
                    )
                    attempt += 1
                    await self._sleep(delay)
                    continue
                raise Unavailable(
                    f"{operation}: Graph unreachable ({type(exc).__name__})", operation=operation
                ) from None
            body = _json_or_none(response)
            observe_graph(operation, response.status_code, throttled=response.status_code in RETRY_STATUSES)
            if response.status_code in RETRY_STATUSES:
                advised = parse_retry_after(response.headers.get("Retry-After"))
                delay = self._backoff(attempt) if advised is None else advised
                if self._clock() + delay <= deadline:
                    log.info(
                        "graph %s: HTTP %s, retry %d in %.1fs (request-id %s)",
                        operation,
                        response.status_code,
                        attempt + 1,
                        delay,
                        request_id_of(response.headers, body),
                    )
                    attempt += 1
                    await self._sleep(delay)
                    continue
            result = GraphResponse(response.status_code, body, dict(response.headers))
            log.debug(
                "graph %s %s -> %s (request-id %s)", operation, method, result.status, result.request_id
            )
            if response.status_code >= 400:
                raise self._failure(result, operation)
            return result

    def _failure(self, response: GraphResponse, operation: str) -> DirectoryError:
        error = error_from(
            response.status,
            response.body,
            response.headers,
            operation=operation,
            required=self.required_for(operation),
        )
        if isinstance(error, PermissionMissing):
            log.error(
                "graph %s denied (%s, request-id %s): the app needs %s",
                operation,
                error.code,
                error.request_id,
                error.required or "a permission or role",
            )
        else:
            log.warning(
                "graph %s failed: %s %s (request-id %s)",
                operation,
                error.status,
                error.code,
                error.request_id,
            )
        return error

    def raise_for(self, response: GraphResponse, operation: str) -> GraphResponse:
        """For `$batch` items: raise the mapped error when the inner response failed."""
        if response.status >= 400:
            raise self._failure(response, operation)
        return response

    async def get_all(
        self,
        path: str,
        *,
        operation: str,
        params: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        limit: int = 5000,
    ) -> list[dict[str, Any]]:
        """Every item of a collection, following `@odata.nextLink` as given (never rebuilt)."""
        items: list[dict[str, Any]] = []
        response = await self.request("GET", path, operation=operation, params=params, headers=headers)
        while True:
            body = response.body if isinstance(response.body, dict) else {}
            items.extend(v for v in body.get("value", []) if isinstance(v, dict))
            next_link = body.get("@odata.nextLink")
            if not next_link or len(items) >= limit:
                return items
            # ConsistencyLevel (and any other header) must be sent again on every page.
            response = await self.request("GET", str(next_link), operation=operation, headers=headers)

    async def batch(self, items: Sequence[BatchItem], *, operation: str) -> dict[str, GraphResponse]:
        """Run requests through `$batch` (20 at a time). Inner 429/503/504 are retried within the
        budget; other inner failures are returned for the caller to map with `raise_for`."""
        results: dict[str, GraphResponse] = {}
        deadline = self._clock() + self._settings.retry_budget_seconds
        pending = list(items)
        attempt = 0
        while pending:
            retry: list[BatchItem] = []
            wait = 0.0
            for start in range(0, len(pending), BATCH_LIMIT):
                chunk = pending[start : start + BATCH_LIMIT]
                payload = {"requests": [_batch_request(item) for item in chunk]}
                outer = await self.request("POST", "/$batch", operation=operation, json=payload)
                by_id = {item.id: item for item in chunk}
                answers = outer.body.get("responses", []) if isinstance(outer.body, dict) else []
                for answer in answers:
                    item_id = str(answer.get("id"))
                    status = int(answer.get("status", 500))
                    headers = {str(k): str(v) for k, v in (answer.get("headers") or {}).items()}
                    inner = GraphResponse(status, answer.get("body"), headers)
                    if status in RETRY_STATUSES and item_id in by_id:
                        delay = parse_retry_after(headers.get("Retry-After") or headers.get("retry-after"))
                        wait = max(wait, delay if delay is not None else self._backoff(attempt))
                        retry.append(by_id[item_id])
                    results[item_id] = inner
            if not retry or self._clock() + wait > deadline:
                break
            log.info("graph %s: %d batch item(s) throttled, retry in %.1fs", operation, len(retry), wait)
            attempt += 1
            await self._sleep(wait)
            pending = retry
        return results

    async def fetch_unauthenticated(self, url: str, *, operation: str) -> str:
        """A pre-authenticated download (report redirect target): no bearer token is sent."""
        if urlsplit(url).scheme != "https":
            raise DirectoryError(f"{operation}: refusing a non-HTTPS download URL", operation=operation)
        try:
            response = await self._client().get(url, headers={"Accept": "*/*"})
        except httpx.TransportError as exc:
            raise Unavailable(
                f"{operation}: download failed ({type(exc).__name__})", operation=operation
            ) from None
        if response.status_code >= 400:
            raise Unavailable(f"{operation}: download HTTP {response.status_code}", operation=operation)
        return response.text


def _batch_request(item: BatchItem) -> dict[str, Any]:
    request: dict[str, Any] = {"id": item.id, "method": item.method, "url": item.url}
    if item.body is not None:
        request["body"] = item.body
        request["headers"] = {"Content-Type": "application/json"}
    return request


def _json_or_none(response: httpx.Response) -> Any:
    if not response.content:
        return None
    if "json" not in response.headers.get("Content-Type", "").lower():
        return None
    try:
        return response.json()
    except ValueError:
        return None


__all__ = [
    "BATCH_LIMIT",
    "BatchItem",
    "GraphClient",
    "GraphResponse",
    "MsalTokenProvider",
    "NotFound",
    "TokenProvider",
    "error_from",
    "graph_scope",
    "parse_retry_after",
]
