"""The same library gives the same top results on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from pathlib import Path

from desk.migrate import upgrade
from desk.store import Store
from knowledge.library import Filters, ensure_seeded, library_for
from tests.conftest import truncate_all

QUERIES = [
    ("bond rating", None), ("bond ratng", None), ("fund balance", None), ("land bank", None),
    ("CDBG demolition", None), ("code enforcement", None), ("accessory dwelling units", None),
    ("open data", None), ("participatory budgeting", None), ("lead service line", None),
    ("violence", "public_safety"), ("grants", "housing"), ("", "infrastructure"), ("", None),
]


async def _top(url: str) -> list[list[str]]:
    store = Store.from_url(url)
    try:
        await ensure_seeded(store)
        library = library_for(store)
        out = []
        for query, topic in QUERIES:
            result = await library.search(query, Filters.parse(topic=topic), per_page=5)
            out.append([str(h["id"]) for h in result.hits])
        return out
    finally:
        await store.close()


def test_same_top_results_on_both_backends(tmp_path: Path, pg_url: str) -> None:
    sqlite_url = f"sqlite+aiosqlite:///{tmp_path / 'parity.db'}"
    upgrade(sqlite_url)
    asyncio.run(truncate_all(pg_url))
    on_sqlite = asyncio.run(_top(sqlite_url))
    on_postgres = asyncio.run(_top(pg_url))
    for (query, topic), left, right in zip(QUERIES, on_sqlite, on_postgres, strict=True):
        assert left, f"{query!r} found nothing"
        assert left == right, f"{query!r} (topic {topic}): {left} != {right}"
