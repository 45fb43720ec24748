"""Shared fixtures: isolated settings, fresh databases (SQLite always; PostgreSQL when reachable).

PostgreSQL tests are marked `postgres`. Locally they skip when the server is not reachable; in CI
(`CI=true`) they fail instead, so a broken database never passes silently.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"
EVALDATA = SHARED / "evaldata"
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}
PG_ADMIN_URL = os.environ.get("HELPDESK_TEST_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres")


def need_shared(path: Path) -> Path:
    """Data from ../shared: skip when a user's clone has none; fail in CI."""
    if not path.exists():
        if IN_CI:
            pytest.fail(f"{path} is missing in CI")
        pytest.skip(f"{path} not available (../shared is not part of a user's clone)")
    return path


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in list(os.environ):
        if key.startswith("HELPDESK_") and key != "HELPDESK_TEST_POSTGRES_URL":
            monkeypatch.delenv(key, raising=False)


@pytest.fixture
def settings(tmp_path: Path) -> Any:
    from bot.settings import load_settings

    return load_settings(app={"data_dir": str(tmp_path / "data")})


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite+aiosqlite:///{tmp_path / 'test.db'}"


async def _pg_admin(sql: str) -> None:
    import asyncpg

    url = PG_ADMIN_URL.replace("postgresql+asyncpg://", "postgresql://")
    conn = await asyncpg.connect(url, timeout=5)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def _pg_reachable() -> str | None:
    try:
        asyncio.run(_pg_admin("SELECT 1"))
    except Exception as exc:  # any failure to connect
        return f"{type(exc).__name__}: {exc}"
    return None


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A scratch PostgreSQL database, dropped afterwards."""
    problem = _pg_reachable()
    if problem is not None:
        if IN_CI:
            pytest.fail(f"PostgreSQL at {PG_ADMIN_URL} is not reachable in CI: {problem}")
        pytest.skip(f"PostgreSQL not reachable: {problem}")
    name = f"helpdesk_test_{uuid.uuid4().hex[:10]}"
    asyncio.run(_pg_admin(f'CREATE DATABASE "{name}"'))
    base = PG_ADMIN_URL.rsplit("/", 1)[0]
    try:
        yield f"{base}/{name}"
    finally:
        asyncio.run(_pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """Both databases: the embedded default and production's."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'test.db'}"
    else:
        yield request.getfixturevalue("pg_url")


@pytest.fixture
async def migrated(db_url: str) -> AsyncIterator[str]:
    from bot.store.migrate import upgrade

    await upgrade(db_url)
    yield db_url
