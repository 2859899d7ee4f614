"""Memory: peak RSS of ``city311 serve`` with the classifier and the library loaded.

``python -m city311 serve`` starts as a subprocess on a fresh SQLite data dir (the shipped
cities and library are seeded, the trained classifier is loaded), answers /healthz, and then
serves library searches (typo queries and topic filters included), the /library page, detail
pages and the JSON API. VmHWM (peak resident set) and VmRSS are read from /proc/PID/status
after start-up and after the load, beside the peak of a bare ``python -c "import spacy"``
and of a bare interpreter, measured in the same run for scale. ``--quick`` is a smoke check:
fewer library requests, a shorter pause after start-up, and the two bare processes measured
while the service starts (peaks do not mind the company; the start-up time does).

    python bench/bench_memory.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402

from bench.bench_ack import in_serve_folder, start_serve, stop_serve, wait_healthy  # noqa: E402
from bench.bench_ingest import load_average  # noqa: E402
from tests.servers.dovecot import free_port  # noqa: E402

__all__ = ["main", "memory_of"]

QUERIES = ["bond rating", "land bank", "fund balanse", "code enforcment", "stormwater",
           "accessory dwelling units", "participatory budgeting", "violence reduction",
           "lead service line", "housing trust fund", "CDBG demolition", "opn data"]
TOPICS = ["housing", "budget_finance", "public_safety", "infrastructure", "planning_zoning"]
_FIELD = re.compile(r"^(Vm\w+):\s+(\d+) kB", re.M)


def memory_of(pid: int) -> dict[str, float]:
    """VmHWM and VmRSS of a live process, in MiB."""
    text = Path(f"/proc/{pid}/status").read_text()
    fields = {name: int(kb) for name, kb in _FIELD.findall(text)}
    return {"peak_rss_mib": round(fields["VmHWM"] / 1024, 1),
            "rss_mib": round(fields["VmRSS"] / 1024, 1)}


def bare_peak(code: str) -> float:
    """VmHWM in MiB of ``python -c CODE``, read by the process itself at its end."""
    probe = (f"{code}\nimport re\nprint(re.search(r'VmHWM:\\s+(\\d+)', "
             "open('/proc/self/status').read()).group(1))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,  # noqa: S603
                         check=True, cwd=ROOT, timeout=120).stdout
    return round(int(out.strip().splitlines()[-1]) / 1024, 1)


async def exercise(base: str, rounds: int) -> dict[str, int]:
    """Searches, filtered searches, pages and the API: what the public does to the library."""
    counts = {"requests": 0, "errors": 0}
    async with httpx.AsyncClient(base_url=base, timeout=30) as http:
        for r in range(rounds):
            paths = [f"/library?q={q}" for q in QUERIES]
            paths += [f"/library?topic={t}" for t in TOPICS]
            paths += [f"/api/resources?q={q}&per_page=20" for q in QUERIES[r % 4::4]]
            paths += ["/library", f"/library?q={QUERIES[r % len(QUERIES)]}&page=2"]
            for path in paths:
                response = await http.get(path)
                counts["requests"] += 1
                if response.status_code != 200:
                    counts["errors"] += 1
            if r == 0:  # and a few detail pages, found through the API
                found = (await http.get("/api/resources?q=housing&per_page=5")).json()
                for item in (found.get("results") or found.get("resources") or [])[:5]:
                    ident = item.get("id")
                    if ident:
                        response = await http.get(f"/library/{ident}")
                        counts["requests"] += 1
                        counts["errors"] += response.status_code != 200
    return counts


async def measure(rounds: int, folder: Path, settle: float = 1.0) -> dict[str, Any]:
    port = free_port()
    proc = start_serve(folder, port, {})
    try:
        startup = await wait_healthy(f"http://127.0.0.1:{port}", proc)
        time.sleep(settle)  # the worker's first round (seeding, vocabulary) settles
        after_start = memory_of(proc.pid)
        started = time.perf_counter()
        counts = await exercise(f"http://127.0.0.1:{port}", rounds)
        load_seconds = time.perf_counter() - started
        after_load = memory_of(proc.pid)
    finally:
        stop_serve(proc)
    if counts["errors"]:
        raise RuntimeError(f"{counts['errors']} of {counts['requests']} requests failed")
    return {"startup_seconds": round(startup, 1), "after_startup": after_start,
            "after_library_load": after_load, "library_requests": counts["requests"],
            "library_requests_seconds": round(load_seconds, 2)}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="fewer library requests")
    args = parser.parse_args(argv)
    load_before = load_average()
    with ThreadPoolExecutor(2 if args.quick else 1) as pool:
        bare = [pool.submit(bare_peak, code) for code in ("import spacy", "pass")]
        if not args.quick:
            wait(bare)  # before the service starts, so its start-up time is its own
        figures = in_serve_folder(lambda folder: measure(2 if args.quick else 10, folder,
                                                         0.3 if args.quick else 1.0))
        spacy_peak, python_peak = (b.result() for b in bare)
    peak = figures["after_library_load"]["peak_rss_mib"]
    print(json.dumps({
        "name": "memory", "quick": args.quick,
        "goal": "peak RSS of city311 serve with the library and classifier loaded, beside a "
        "bare `import spacy` process for scale",
        "serve": figures, "peak_rss_mib": peak,
        "bare_import_spacy_peak_rss_mib": spacy_peak, "bare_python_peak_rss_mib": python_peak,
        "ratio_to_import_spacy": round(peak / spacy_peak, 2),
        "cpu_count": os.cpu_count(), "load_average_before": load_before,
        "load_average_after": load_average(),
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
