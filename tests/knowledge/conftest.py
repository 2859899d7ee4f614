"""A seeded library on each backend, loaded once per module (seeding takes about a second)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from desk.migrate import upgrade
from desk.store import Store
from knowledge.library import ensure_seeded
from tests.conftest import truncate_all


async def _seed(url: str) -> None:
    store = Store.from_url(url)
    try:
        await ensure_seeded(store)
    finally:
        await store.close()


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def library_url(request: pytest.FixtureRequest,
                tmp_path_factory: pytest.TempPathFactory) -> str:
    """A migrated database holding the shipped library; tests must not change it."""
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('library') / 'city311.db'}"
        upgrade(url)
    else:
        url = request.getfixturevalue("pg_url")
        asyncio.run(truncate_all(url))
    asyncio.run(_seed(url))
    return url


@pytest.fixture
async def library_store(library_url: str) -> AsyncIterator[Store]:
    store = Store.from_url(library_url)
    yield store
    await store.close()


@pytest.fixture
async def seeded_store(store: Store) -> Store:
    """A fresh database per test (the root ``store`` fixture) with the library loaded; for
    tests that change the library."""
    await ensure_seeded(store)
    return store
