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


async def _columns(url: str, table: str) -> set[str]:
    engine = create_async_engine(url)
    async with engine.connect() as conn:
        names = await conn.run_sync(
            lambda sync: {c["name"] for c in inspect(sync).get_columns(table)})
    await engine.dispose()
    return names


def test_upgrade_downgrade_upgrade(db_url: str) -> None:
    expected = set(Base.metadata.tables)
    assert expected <= asyncio.run(_tables(db_url))
    downgrade(db_url, "base")
    left = asyncio.run(_tables(db_url))
    assert not (expected & left), f"tables left after downgrade: {expected & left}"
    upgrade(db_url)
    assert expected <= asyncio.run(_tables(db_url))


def test_every_model_column_is_made_by_the_migrations_and_0003_comes_off(db_url: str) -> None:
    for table in Base.metadata.sorted_tables:
        assert {c.name for c in table.columns} <= asyncio.run(_columns(db_url, table.name))
    downgrade(db_url, "0002")
    assert "failing_since" not in asyncio.run(_columns(db_url, "outbox"))
    upgrade(db_url)
    assert "failing_since" in asyncio.run(_columns(db_url, "outbox"))
