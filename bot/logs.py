"""Structured logging: one line per handled message; JSON with HELPDESK_LOG__FORMAT=json.

Message text is never logged at INFO, and secrets never: log records carry ids, keys, durations
and outcomes. A filter masks anything that looks like a token or a bearer header as a last guard.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from datetime import UTC, datetime
from typing import Any

_STANDARD = set(vars(logging.LogRecord("x", 0, "", 0, "", None, None)).keys()) | {"message", "asctime"}
_SECRETS = re.compile(
    r"(xox[abprse]-[0-9A-Za-z-]{6,}|xapp-[0-9A-Za-z-]{6,}|Bearer\s+[A-Za-z0-9._~+/=-]{8,}|"
    r"(?i:client_secret|password|passwd|secret|temporaryAccessPass)(\"?\s*[:=]\s*\"?)[^\s\",&]+)"
)


def redact(text: str) -> str:
    def _mask(match: re.Match[str]) -> str:
        if match.group(2) is not None:
            return match.group(0).split(match.group(2))[0] + match.group(2) + "***"
        return match.group(0)[:4] + "***"

    return _SECRETS.sub(_mask, text)


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
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    for noisy in ("httpx", "httpcore", "aiosqlite", "sqlalchemy.engine", "alembic", "msal", "urllib3", "bm25s"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLevelName(level)))
