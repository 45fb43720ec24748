"""Structured logging: one line per handled message; JSON with HELPDESK_LOG__FORMAT=json.

Message text is never logged at INFO, and secrets never, at any level: log records carry ids, keys,
durations and outcomes. As a guard the handler's filter masks secret VALUES (secrets registered at
run time with `register_secret`, token shapes, secret fields) and keeps diagnostics, and platform
SDKs' records at INFO and above lose any request or response body they carry.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import threading
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, quote_plus

_STANDARD = set(vars(logging.LogRecord("x", 0, "", 0, "", None, None)).keys()) | {"message", "asctime"}
MASK = "***"

# Token shapes: Slack tokens, bearer headers, JWTs.
_TOKENS = re.compile(
    r"xox[abprse]-[0-9A-Za-z-]{6,}|xapp-[0-9A-Za-z-]{6,}|Bearer\s+[A-Za-z0-9._~+/=-]{8,}|"
    r"\beyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*"
)
# Secret FIELDS: a key that names a secret, then its value. The key stands alone (so the action
# name "reset_password: (token request refused…)" keeps its diagnostic), and the value is masked
# whole: quoted to its closing quote, unquoted to the next space, comma or form-field `&k=`, so a
# password holding `&` (sent to Slack as `&amp;`) is masked to its end.
_FIELD_KEYS = (
    r"password|passwd|pwd|new_?password|client_?secret|secret|signing_?secret|app_?password|"
    r"temporaryAccessPass|access_?token|refresh_?token|id_?token|bot_?token|app_?token|passphrase"
)
_FIELDS = re.compile(
    r"(?i)(?<![A-Za-z0-9_.-])(?P<key>" + _FIELD_KEYS + r")(?P<sep>[\"']?\s*[:=]\s*)"
    r"(?:(?P<q>[\"'])(?:\\.|(?!(?P=q)).)*(?P=q)|(?P<bare>(?:[^\s\"',&()]|&(?![A-Za-z_][A-Za-z0-9_]*=))+))"
)

# Secrets known at run time (temporary passwords, configured tokens): masked wherever they appear,
# in every form they take on the way out (HTML entities for Slack, JSON and URL escapes).
_KNOWN_LIMIT = 5000
_known: dict[str, None] = {}
_known_lock = threading.Lock()
_known_pattern: re.Pattern[str] | None = None


def _forms(value: str) -> set[str]:
    html = value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    forms = {value, html, json.dumps(value)[1:-1], json.dumps(html)[1:-1], quote(value, safe=""),
             quote_plus(value), repr(value)[1:-1]}
    return {form for form in forms if form}


def register_secret(value: str | None) -> None:
    """Never log `value` (nor its escaped forms) from now on. Short values are ignored: masking
    every "abc" in the log would hide more than it protects."""
    global _known_pattern
    if not value or len(value) < 6:
        return
    with _known_lock:
        if value in _known:
            return
        _known[value] = None
        while len(_known) > _KNOWN_LIMIT:
            _known.pop(next(iter(_known)))
        forms = sorted({form for known in _known for form in _forms(known)}, key=len, reverse=True)
        _known_pattern = re.compile("|".join(re.escape(form) for form in forms))


def forget_secrets() -> None:
    """For tests: drop every registered secret."""
    global _known_pattern
    with _known_lock:
        _known.clear()
        _known_pattern = None


def redact(text: str) -> str:
    """Mask secret VALUES (registered secrets, token shapes, secret fields); keep the rest."""
    pattern = _known_pattern
    if pattern is not None:
        text = pattern.sub(MASK, text)
    text = _TOKENS.sub(lambda m: m.group(0)[:4] + MASK, text)

    def _field(match: re.Match[str]) -> str:
        return match.group("key") + match.group("sep") + MASK

    return _FIELDS.sub(_field, text)


# Platform SDKs and HTTP clients. Their request/response bodies carry message text and secrets:
# at INFO and above a body is never logged (slack_bolt logs a whole request at INFO when a
# signature does not match); at DEBUG bodies pass through the redactor like everything else.
SDK_LOGGERS = ("slack_bolt", "slack_sdk", "slack", "botbuilder", "botframework", "msal", "msrest",
               "azure", "aiohttp", "httpx", "httpcore", "urllib3", "uvicorn.access")
_BODY = re.compile(r"(?is)(\b(?:body|json|data|params|payload|text)\b\s*[:=]\s*).*")


def _is_sdk(name: str) -> bool:
    return any(name == root or name.startswith(root + ".") for root in SDK_LOGGERS)


class RedactingFilter(logging.Filter):
    """On the handler: every record leaves with its message rendered and redacted, and an SDK's
    record at INFO or above leaves without any body it carried."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a bad format string must not lose the record
            message = str(record.msg)
        if record.levelno >= logging.INFO and _is_sdk(record.name):
            message = _BODY.sub(lambda m: m.group(1) + "(not logged)", message)
        record.msg = redact(message)
        record.args = None
        return True


def _extras(record: logging.LogRecord) -> dict[str, Any]:
    return {k: v for k, v in vars(record).items() if k not in _STANDARD and not k.startswith("_")}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "msg": redact(record.getMessage()),
        }
        entry.update({k: v if isinstance(v, int | float | bool) or v is None else redact(str(v))
                      for k, v in _extras(record).items()})
        if record.exc_info:
            entry["exc"] = redact(self.formatException(record.exc_info))
        return json.dumps(entry, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        base = f"{self.formatTime(record, '%H:%M:%S')} {record.levelname:<7} {record.name}: {record.getMessage()}"
        extras = _extras(record)
        if extras:
            base += " " + " ".join(f"{k}={v}" for k, v in extras.items())
        if record.exc_info:
            base += "\n" + self.formatException(record.exc_info)
        return redact(base)


def configure_logging(fmt: str = "text", level: str = "INFO", stream: Any = None) -> None:
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    handler.addFilter(RedactingFilter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    for noisy in ("httpx", "httpcore", "aiosqlite", "sqlalchemy.engine", "alembic", "msal", "urllib3", "bm25s"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLevelName(level)))
