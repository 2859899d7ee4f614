"""Library search latency: p50/p95 at 1k, 10k and 100k resources on SQLite and PostgreSQL.

The shipped library is topped up with generated resources made from its own words, so the
index vocabulary and the ranking work on realistic text. Typo queries are included. Prints one
JSON object; the goal is p95 under 20 ms.

    python bench/bench_search.py [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import secrets
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from desk.migrate import upgrade  # noqa: E402
from desk.store import Store  # noqa: E402
from knowledge.library import Filters, ensure_seeded, library_for, shipped_data  # noqa: E402
from knowledge.records import LibraryData  # noqa: E402

GOAL_MS = 20.0
PG_SERVER = os.environ.get("TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
EXACT = ["bond rating", "land bank", "fund balance", "CDBG demolition", "code enforcement",
         "stormwater", "accessory dwelling units", "participatory budgeting", "open data",
         "violence reduction", "lead service line", "housing trust fund"]
TYPOS = ["bond ratng", "lnd bank", "fund balanse", "CDBG demoliton", "code enforcment",
         "stormwatr", "accesory dwelling", "participatry budgeting", "opn data portal",
         "violance reduction"]
FILTERED = [("housing", None), ("budget", "budget_finance"), ("", "housing"), ("grants", None)]


def generate(count: int, seed: int = 311) -> LibraryData:
    """Resources built from the shipped library's words: plausible text, unique ids/URLs."""
    rng = random.Random(seed)
    base = shipped_data().resources
    title_words = [w for r in base for w in r["title"].split()]
    sentences = [s.strip() + "." for r in base for s in r["annotation"].split(".") if s.strip()]
    keywords = [k for r in base for k in r["keywords"]]
    publishers = sorted({r["publisher"] for r in base})
    out = []
    for i in range(count):
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
    import asyncpg

    conn = await asyncpg.connect(PG_SERVER, timeout=5)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


async def measure(url: str, size: int, repeats: int) -> dict[str, Any]:
    store = Store.from_url(url)
    try:
        started = time.perf_counter()
        await ensure_seeded(store)
        library = library_for(store)
        have = (await library.stats())["resources"]
        if size > have:
            extra = generate(size - have)
            for start in range(0, len(extra.resources), 5000):
                await library.insert_new(LibraryData(
                    resources=extra.resources[start:start + 5000]))
        load = time.perf_counter() - started
        started = time.perf_counter()
        await library.search("warm up")  # builds the in-memory vocabulary once
        snapshot_s = time.perf_counter() - started
        runs: dict[str, list[float]] = {"exact": [], "typo": [], "filtered": []}
        for _ in range(repeats):
            for group, queries in (("exact", [(q, None) for q in EXACT]),
                                   ("typo", [(q, None) for q in TYPOS]),
                                   ("filtered", FILTERED)):
                for query, topic in queries:
                    t = time.perf_counter()
                    await library.search(query, Filters(topic=topic), per_page=20)
                    runs[group].append((time.perf_counter() - t) * 1000)
        every = [x for xs in runs.values() for x in xs]

        def pct(values: list[float], q: int) -> float:
            return round(statistics.quantiles(values, n=100)[q - 1], 2)

        p95 = pct(every, 95)
        return {
            "resources": (await library.stats())["resources"], "queries": len(every),
            "p50_ms": pct(every, 50), "p95_ms": p95, "typo_p50_ms": pct(runs["typo"], 50),
            "typo_p95_ms": pct(runs["typo"], 95), "filtered_p95_ms": pct(runs["filtered"], 95),
            "goal_p95_ms": GOAL_MS, "ratio_to_goal": round(p95 / GOAL_MS, 3),
            "meets_goal": p95 < GOAL_MS, "load_seconds": round(load, 1),
            "vocabulary_build_seconds": round(snapshot_s, 2),
        }
    finally:
        await store.close()


def run_sqlite(size: int, repeats: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as folder:
        url = f"sqlite+aiosqlite:///{Path(folder) / 'bench.db'}"
        upgrade(url)
        return asyncio.run(measure(url, size, repeats))


def run_postgres(size: int, repeats: int) -> dict[str, Any]:
    name = f"city311_bench_{secrets.token_hex(4)}"
    try:
        asyncio.run(_pg_admin(f'CREATE DATABASE "{name}"'))
    except Exception as exc:  # no server here: say so in the figures
        return {"skipped": f"PostgreSQL not reachable: {exc}"}
    base = PG_SERVER.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://")
    url = f"{base}/{name}"
    try:
        upgrade(url)
        return asyncio.run(measure(url, size, repeats))
    finally:
        asyncio.run(_pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="1k and 10k on SQLite, 1k on "
                        "PostgreSQL; well under 30 s")
    args = parser.parse_args()
    plan = ([("sqlite", 1_000), ("sqlite", 10_000), ("postgresql", 1_000)] if args.quick else
            [(b, n) for n in (1_000, 10_000, 100_000) for b in ("sqlite", "postgresql")])
    repeats = 2 if args.quick else 5
    results = []
    for backend, size in plan:
        runner = run_sqlite if backend == "sqlite" else run_postgres
        figures = runner(size, repeats)
        results.append({"backend": backend, "target_resources": size, **figures})
        print(json.dumps(results[-1]), file=sys.stderr)
    measured = [r for r in results if "p95_ms" in r]
    print(json.dumps({
        "name": "library search", "goal": f"p95 under {GOAL_MS:g} ms at 100k resources",
        "goal_p95_ms": GOAL_MS, "quick": args.quick, "results": results,
        "all_meet_goal": bool(measured) and all(r["meets_goal"] for r in measured),
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
