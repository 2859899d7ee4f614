"""Library search latency: p50/p95 at 1k, 10k and 100k resources on SQLite and PostgreSQL.

The shipped library is topped up with generated resources made from its own words (titles
from its title words, annotations from its sentences, its keywords and publishers), so the
vocabulary, the typo correction and the ranking work on realistic text. One database per
backend grows through the sizes. Each size runs exact, typo, broad (one common word, a third
of the library matches) and filtered queries; wall time and this process's CPU time are kept
per query (CPU time is steadier on a shared machine; on PostgreSQL it leaves out the server's
share). Prints one JSON object; the goal is p95 under 20 ms at 100k. ``--quick`` is a smoke
check at 1k on each backend.

    python bench/bench_search.py [--quick] [--profile]
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import json
import os
import pstats
import random
import secrets
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from desk.migrate import upgrade  # noqa: E402
from desk.store import Store  # noqa: E402
from knowledge.library import Filters, Library, ensure_seeded, library_for, shipped_data  # noqa: E402
from knowledge.models import Resource  # noqa: E402
from knowledge.records import LibraryData  # noqa: E402

GOAL_MS = 20.0
PG_SERVER = os.environ.get("TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
EXACT = ["bond rating", "land bank", "fund balance", "CDBG demolition", "code enforcement",
         "stormwater", "accessory dwelling units", "participatory budgeting", "open data",
         "violence reduction", "lead service line", "housing trust fund"]
TYPOS = ["bond ratng", "lnd bank", "fund balanse", "CDBG demoliton", "code enforcment",
         "stormwatr", "accesory dwelling", "participatry budgeting", "opn data portal",
         "violance reduction"]
BROAD = ["housing", "grants", "data", "city budget"]
FILTERED: list[tuple[str, dict[str, Any]]] = [
    ("budget", {"topic": "budget_finance"}), ("", {"topic": "housing"}),
    ("grants", {"kind": "funding_program"}), ("fund balance", {"publisher": "GFOA"}),
    ("housing", {"year": "2020"}), ("code enforcement", {"topic": "vacant_blighted_property"}),
]


def generate(count: int, start: int = 0, seed: int = 311) -> LibraryData:
    """Resources built from the shipped library's words: plausible text, unique ids/URLs."""
    rng = random.Random(seed + start)
    base = shipped_data().resources
    title_words = [w for r in base for w in r["title"].split()]
    sentences = [s.strip() + "." for r in base for s in r["annotation"].split(".") if s.strip()]
    keywords = [k for r in base for k in r["keywords"]]
    publishers = sorted({r["publisher"] for r in base})
    out = []
    for i in range(start, start + count):
        src = base[i % len(base)]
        out.append({
            "id": f"gen-{i}", "title": " ".join(rng.sample(title_words, rng.randint(4, 9))),
            "url": f"https://example.org/generated/{i}", "publisher": rng.choice(publishers),
            "year": rng.choice([None, *range(2005, 2026)]), "kind": src["kind"],
            "topics": src["topics"],
            "annotation": " ".join(rng.sample(sentences, rng.randint(1, 3))),
            "audience": src["audience"], "reviewed": "2026-11-01",
            "keywords": rng.sample(keywords, rng.randint(2, 6)),
        })
    return LibraryData(resources=out)


async def _pg_admin(sql: str) -> None:
    import asyncpg  # type: ignore[import-untyped]

    conn = await asyncpg.connect(PG_SERVER, timeout=5)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


async def _count(store: Store) -> int:
    async with store.reading() as session:
        return int((await session.execute(select(func.count()).select_from(Resource)))
                   .scalar_one())


async def grow(store: Store, library: Library, size: int) -> int:
    """Top the library up to ``size`` resources; how many it holds. (Counted in SQL: the
    library's own stats would build its snapshot here, outside the timed build.)"""
    have = await _count(store)
    if size > have:
        generated = max(have - len(shipped_data().resources), 0)
        extra = generate(size - have, start=generated)
        for start in range(0, len(extra.resources), 5000):
            await library.insert_new(LibraryData(resources=extra.resources[start:start + 5000]))
    return await _count(store)


def _pct(values: list[float], q: int) -> float:
    return round(statistics.quantiles(values, n=100, method="inclusive")[q - 1], 2)


async def measure(store: Store, size: int, repeats: int,
                  profile: cProfile.Profile | None) -> dict[str, Any]:
    library = library_for(store)
    started = time.perf_counter()
    held = await grow(store, library, size)
    load = time.perf_counter() - started
    started = time.perf_counter()
    snapshot = await library.snapshot()  # the vocabulary and the in-memory index, built once
    snapshot_s = time.perf_counter() - started
    index_mb = None
    if snapshot.index is not None:
        index = snapshot.index
        arrays: list[Any] = [index.nums, index.rank, index.order, index.offsets, index.post_docs,
                  index.post_codes, index.kinds, index.publishers, index.years,
                  *index.topics.values()]
        texts = [*index.title_texts, *index.keyword_texts]
        index_mb = round((sum(a.nbytes for a in arrays) + sum(map(sys.getsizeof, texts))
                          + 8 * len(texts)) / 1e6, 1)
    await library.search("warm up")
    groups: list[tuple[str, list[tuple[str, Filters]]]] = [
        ("exact", [(q, Filters()) for q in EXACT]),
        ("typo", [(q, Filters()) for q in TYPOS]),
        ("broad", [(q, Filters()) for q in BROAD]),
        ("filtered", [(q, Filters.parse(**f)) for q, f in FILTERED]),
    ]
    wall: dict[str, list[float]] = {name: [] for name, _ in groups}
    cpu: dict[str, list[float]] = {name: [] for name, _ in groups}
    for _ in range(repeats):
        for name, queries in groups:
            for query, filters in queries:
                if profile is not None:
                    profile.enable()
                c, t = time.process_time(), time.perf_counter()
                result = await library.search(query, filters, per_page=20)
                wall[name].append((time.perf_counter() - t) * 1000)
                cpu[name].append((time.process_time() - c) * 1000)
                if profile is not None:
                    profile.disable()
                if not result.hits:
                    raise SystemExit(f"{query!r} {filters} found nothing at {held}")
    every = [x for xs in wall.values() for x in xs]
    every_cpu = [x for xs in cpu.values() for x in xs]
    p95 = _pct(every, 95)
    figures: dict[str, Any] = {
        "resources": held, "queries": len(every),
        "p50_ms": _pct(every, 50), "p95_ms": p95,
        "cpu_p50_ms": _pct(every_cpu, 50), "cpu_p95_ms": _pct(every_cpu, 95),
    }
    for name, _ in groups:
        figures[f"{name}_p50_ms"] = _pct(wall[name], 50)
        figures[f"{name}_p95_ms"] = _pct(wall[name], 95)
        figures[f"{name}_cpu_p95_ms"] = _pct(cpu[name], 95)
    figures.update({
        "goal_p95_ms": GOAL_MS, "ratio_to_goal": round(p95 / GOAL_MS, 3),
        "meets_goal": p95 < GOAL_MS, "load_seconds": round(load, 1),
        "snapshot_build_seconds": round(snapshot_s, 2), "index_mb": index_mb,
    })
    return figures


async def run_sizes(url: str, sizes: list[int], repeats: int,
                    profile: cProfile.Profile | None) -> list[dict[str, Any]]:
    store = Store.from_url(url)
    try:
        await ensure_seeded(store)
        return [await measure(store, size, repeats, profile) for size in sizes]
    finally:
        await store.close()


def run_sqlite(sizes: list[int], repeats: int,
               profile: cProfile.Profile | None) -> list[dict[str, Any]]:
    with tempfile.TemporaryDirectory() as folder:
        url = f"sqlite+aiosqlite:///{Path(folder) / 'bench.db'}"
        upgrade(url)
        return asyncio.run(run_sizes(url, sizes, repeats, profile))


def run_postgres(sizes: list[int], repeats: int,
                 profile: cProfile.Profile | None) -> list[dict[str, Any]]:
    name = f"city311_bench_{secrets.token_hex(4)}"
    try:
        asyncio.run(_pg_admin(f'CREATE DATABASE "{name}"'))
    except Exception as exc:  # no server here: say so in the figures
        return [{"skipped": f"PostgreSQL not reachable: {exc}"} for _ in sizes]
    base = PG_SERVER.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://")
    url = f"{base}/{name}"
    try:
        upgrade(url)
        return asyncio.run(run_sizes(url, sizes, repeats, profile))
    finally:
        asyncio.run(_pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true",
                        help="1k on SQLite and on PostgreSQL, a smoke check")
    parser.add_argument("--profile", action="store_true",
                        help="print where the searches spent CPU time (cProfile), on stderr")
    args = parser.parse_args()
    plan: list[tuple[str, list[int]]] = (
        [("sqlite", [1_000]), ("postgresql", [1_000])] if args.quick else
        [("sqlite", [1_000, 10_000, 100_000]), ("postgresql", [1_000, 10_000, 100_000])])
    repeats = 3 if args.quick else 5
    runners: dict[str, Callable[..., list[dict[str, Any]]]] = {
        "sqlite": run_sqlite, "postgresql": run_postgres}
    results = []
    for backend, sizes in plan:
        profile = cProfile.Profile(time.process_time) if args.profile else None
        for size, figures in zip(sizes, runners[backend](sizes, repeats, profile), strict=True):
            results.append({"backend": backend, "target_resources": size, **figures})
            print(json.dumps(results[-1]), file=sys.stderr)
        if profile is not None:
            out = io.StringIO()
            pstats.Stats(profile, stream=out).sort_stats("cumulative").print_stats(25)
            print(f"---- CPU profile of the searches on {backend} ----\n{out.getvalue()}",
                  file=sys.stderr)
    measured = [r for r in results if "p95_ms" in r]
    largest = max((r["resources"] for r in measured), default=0)
    print(json.dumps({
        "name": "library search", "goal": f"p95 under {GOAL_MS:g} ms at 100k resources",
        "goal_p95_ms": GOAL_MS, "quick": args.quick, "cpu_count": os.cpu_count(),
        "results": results,
        "all_meet_goal": bool(measured) and all(r["meets_goal"] for r in measured),
        "largest_meets_goal": bool(measured) and all(
            r["meets_goal"] for r in measured if r["resources"] == largest),
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
