"""HTTP calls to a ticket system: one place maps transport errors and status codes to the outbox's
RetryLater (try again: 429 with its Retry-After, 5xx, timeouts) and Undeliverable (never: a
request the system refuses as invalid), with the system's own error text and never a credential."""

from __future__ import annotations

import hashlib
import hmac
import logging
from collections.abc import Mapping
from typing import Any

import httpx

from bot.outbox.worker import RetryLater, Undeliverable

log = logging.getLogger("bot.itsm")


class ItsmError(Exception):
    """A call that failed for a reason an admin must fix (authentication, permission, mapping)."""


def error_text(response: httpx.Response) -> str:
    """The system's own words: Jira `errorMessages`/`errors`, ServiceNow `error.message/detail`."""
    try:
        body: Any = response.json()
    except ValueError:
        return response.text[:200].strip()
    if isinstance(body, dict):
        if isinstance(body.get("error"), dict):  # ServiceNow
            err = body["error"]
            return "; ".join(str(err[k]) for k in ("message", "detail") if err.get(k))[:300]
        parts = [str(m) for m in body.get("errorMessages") or []]  # Jira
        parts += [f"{k}: {v}" for k, v in (body.get("errors") or {}).items()]
        if body.get("errorMessage"):  # Jira Service Management
            parts.append(str(body["errorMessage"]))
        if parts:
            return "; ".join(parts)[:300]
    return str(body)[:200]


def retry_after(response: httpx.Response, default: float = 30.0) -> float:
    value = response.headers.get("Retry-After", "")
    try:
        return max(0.0, float(value))
    except ValueError:
        return default


async def call(client: httpx.AsyncClient, system: str, method: str, url: str, *,
               ok: tuple[int, ...] = (200, 201, 204), **kwargs: Any) -> httpx.Response:
    try:
        response = await client.request(method, url, **kwargs)
    except httpx.TimeoutException as exc:
        raise RetryLater(f"{system}: no answer in time ({type(exc).__name__})") from None
    except httpx.TransportError as exc:
        raise RetryLater(f"{system}: cannot connect ({type(exc).__name__})") from None
    if response.status_code in ok:
        return response
    detail = error_text(response)
    where = f"{system} {method} {httpx.URL(url).path}"
    if response.status_code == 429:
        raise RetryLater(f"{where}: rate limited", retry_after=retry_after(response), scope="global")
    if response.status_code >= 500 or response.status_code == 408:
        raise RetryLater(f"{where}: {system} answered {response.status_code} ({detail})")
    if response.status_code in (401, 403):
        # A credential or permission an admin must fix: retried (with backoff) so nothing is
        # dropped while they do, and said loudly.
        log.error("%s: %s refused the integration account (%s): %s; run `helpdesk itsm check`",
                  where, system, response.status_code, detail)
        raise RetryLater(f"{where}: refused ({response.status_code}: {detail})")
    raise Undeliverable(f"{where}: {response.status_code} {detail}")


def sign(secret: str, message: bytes) -> str:
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def signature_matches(secret: str, message: bytes, given: str) -> bool:
    """`sha256=<hex>` (Jira, our webhook) or a bare hex or base64 HMAC-SHA256 (ServiceNow's
    GlideCertificateEncryption.generateMac returns base64)."""
    import base64

    given = given.strip()
    if given.lower().startswith("sha256="):
        given = given[len("sha256="):]
    digest = hmac.new(secret.encode(), message, hashlib.sha256).digest()
    candidates = {digest.hex(), base64.b64encode(digest).decode()}
    return any(hmac.compare_digest(given, c) for c in candidates)


def lower_headers(headers: Mapping[str, str]) -> dict[str, str]:
    return {k.lower(): v for k, v in headers.items()}


def authenticated_json(cfg: Any, headers: Mapping[str, str], body: bytes, header: str, now: float, *,
                       stamp_unit: float = 1.0) -> tuple[dict[str, Any], dict[str, str]]:
    """An inbound webhook's JSON object, after its HMAC signature (in `header`) and its
    `timestamp` (in units of `stamp_unit` seconds) are checked; else WebhookRefused."""
    import json

    from bot.itsm.port import WebhookRefused

    h = lower_headers(headers)
    secret = cfg.webhook_secret.get_secret_value() if cfg.webhook_secret else ""
    if not secret:
        raise WebhookRefused(401, "no itsm.webhook_secret is configured, so no webhook can be trusted")
    if not signature_matches(secret, body, h.get(header.lower(), "")):
        raise WebhookRefused(401, f"bad or missing {header}")
    try:
        data = json.loads(body)
    except ValueError:
        raise WebhookRefused(400, "not JSON") from None
    if not isinstance(data, dict):
        raise WebhookRefused(400, "not a JSON object")
    stamp = data.get("timestamp")
    if not isinstance(stamp, int | float):
        raise WebhookRefused(400, "no timestamp")
    if abs(now - stamp * stamp_unit) > cfg.webhook_max_age_seconds:
        raise WebhookRefused(401, "too old (a replay?)")
    return data, h


def basic_auth_client(cfg: Any, transport: httpx.AsyncBaseTransport | None) -> httpx.AsyncClient:
    """Jira (email + API token) and ServiceNow (user + password) both use HTTP basic auth."""
    token = cfg.token.get_secret_value() if cfg.token else ""
    return httpx.AsyncClient(base_url=cfg.base_url.rstrip("/"), auth=(cfg.user, token), transport=transport,
                             timeout=cfg.timeout_seconds, headers={"Accept": "application/json"})
