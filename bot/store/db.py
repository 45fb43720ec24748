"""Engine and session factory for SQLite (embedded default) and PostgreSQL (scale-out)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine


def utcnow() -> datetime:
    return datetime.now(UTC)


def is_sqlite(url: str) -> bool:
    return make_url(url).get_backend_name() == "sqlite"


def create_engine(url: str, *, echo: bool = False, pool_size: int = 10) -> AsyncEngine:
    """An async engine. SQLite gets WAL, a busy timeout and `BEGIN IMMEDIATE` transactions so that
    two writers queue instead of failing with "database is locked" halfway through a message."""
    if is_sqlite(url):
        database = make_url(url).database
        if database and database != ":memory:":
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(url, echo=echo, connect_args={"timeout": 30})

        @event.listens_for(engine.sync_engine, "connect")
        def _sqlite_connect(dbapi_connection: Any, _record: Any) -> None:
            dbapi_connection.isolation_level = None  # we issue BEGIN ourselves
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.close()

        @event.listens_for(engine.sync_engine, "begin")
        def _sqlite_begin(conn: Any) -> None:
            conn.exec_driver_sql("BEGIN IMMEDIATE")

        return engine
    return create_async_engine(url, echo=echo, pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=True)


def session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


# Errors that mean "the database cannot be used right now" (unreachable, refused, missing, bad
# credentials), as opposed to a bug: found anywhere in an exception's chain.
_UNAVAILABLE_NAMES = {
    "OperationalError", "InterfaceError", "InvalidCatalogNameError", "InvalidPasswordError",
    "InvalidAuthorizationSpecificationError", "CannotConnectNowError", "ConnectionDoesNotExistError",
    "TooManyConnectionsError", "ConnectionFailureError",
}


def database_unavailable(exc: BaseException) -> str | None:
    """One line saying why the database cannot be used, or None when `exc` is something else.
    The line never carries a password (it is redacted like a log line)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    found: BaseException | None = None
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError | ConnectionError | TimeoutError) or \
                type(current).__name__ in _UNAVAILABLE_NAMES:
            found = current  # keep walking: the innermost cause says the most
        current = getattr(current, "orig", None) or current.__cause__ or current.__context__
    if found is None:
        return None
    if isinstance(found, OSError) and found.strerror:
        detail = found.strerror
    else:
        detail = str(found).strip().splitlines()[0] if str(found).strip() else type(found).__name__
        detail = detail.split("\n")[0]
        if detail.startswith("("):  # SQLAlchemy's "(module.Error) message" prefix
            detail = detail.split(") ", 1)[-1]
        detail = detail.split(" [SQL:")[0]
    from bot.logs import redact

    return redact(detail)[:300]
