"""A scratch PostgreSQL database per test, created and dropped through the admin URL in
HELPDESK_TEST_POSTGRES_URL. When the server is unreachable: skip locally, fail in CI (CI=true)."""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

ADMIN_URL = os.environ.get("HELPDESK_TEST_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres")


def _unreachable(reason: str) -> None:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"PostgreSQL is required in CI: {reason}")
    pytest.skip(f"PostgreSQL not reachable ({reason}); set HELPDESK_TEST_POSTGRES_URL")


@contextlib.asynccontextmanager
async def scratch_database(prefix: str = "helpdesk_tickets") -> AsyncIterator[str]:
    """Yields the URL of a fresh, empty database; drops it afterwards."""
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    admin = create_async_engine(ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        async with admin.connect() as conn:
            await conn.execute(text(f'CREATE DATABASE "{name}"'))
    except (OSError, Exception) as exc:  # refused connection, auth, missing driver
        await admin.dispose()
        _unreachable(f"{type(exc).__name__}: {exc}")
    url = make_url(ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    try:
        yield url
    finally:
        async with admin.connect() as conn:
            await conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        await admin.dispose()
