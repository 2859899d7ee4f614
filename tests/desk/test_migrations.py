"""Migrations upgrade and downgrade cleanly on both databases."""

from __future__ import annotations

import asyncio

from sqlalchemy import inspect
from sqlalchemy.ext.asyncio import create_async_engine

from desk.migrate import downgrade, upgrade
from desk.models import Base


async def _tables(url: str) -> set[str]:
    engine = create_async_engine(url)
    async with engine.connect() as conn:
        names = await conn.run_sync(lambda sync: set(inspect(sync).get_table_names()))
    await engine.dispose()
    return names - {"alembic_version"}


def test_upgrade_downgrade_upgrade(db_url: str) -> None:
    expected = set(Base.metadata.tables)
    assert expected <= asyncio.run(_tables(db_url))
    downgrade(db_url, "base")
    left = asyncio.run(_tables(db_url))
    assert not (expected & left), f"tables left after downgrade: {expected & left}"
    upgrade(db_url)
    assert expected <= asyncio.run(_tables(db_url))
