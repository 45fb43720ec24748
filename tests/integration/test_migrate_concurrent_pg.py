"""Replicas starting together on an empty PostgreSQL each run the migrations: one migrates, the
others wait on the advisory lock and find the head (no duplicate-table errors)."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import text

from bot.store.db import create_engine
from bot.store.migrate import upgrade


@pytest.mark.postgres
async def test_concurrent_upgrades_on_postgres(pg_url: str) -> None:
    await asyncio.gather(*(upgrade(pg_url) for _ in range(3)))
    engine = create_engine(pg_url)
    try:
        async with engine.connect() as connection:
            versions = (await connection.execute(text("SELECT version_num FROM alembic_version"))).all()
    finally:
        await engine.dispose()
    assert len(versions) == 1
