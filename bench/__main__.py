"""`python -m bench [--quick]`: run every bench/bench_*.py, collect their JSON (with the
machine's core count) and print it.

A full run goes one script at a time and writes bench/results.json, the figures the README
shows. A quick run is a smoke check: small sizes, a few scripts at once (``--jobs``, so their
timings disturb each other), written to bench/results-quick.json so it never replaces the
full figures. A run of only some benchmarks (``python -m bench classify``) writes
bench/results-partial.json, so that bench/results.json always holds every benchmark of one run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

HERE = Path(__file__).resolve().parent
# Longest first (arrival mostly waits on Dovecot), so the overlap ends with the short ones;
# any other script follows.
QUICK_ORDER = ["arrival", "ingest", "ack", "memory", "search", "classify"]
QUICK_JOBS = 3


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench")
    parser.add_argument("--quick", action="store_true", help="small sizes, under a minute")
    parser.add_argument("--jobs", type=int, default=None,
                        help=f"with --quick: scripts run at once (default {QUICK_JOBS}); a full "
                        "run is always one at a time")
    parser.add_argument("only", nargs="*", help="run only these benchmarks (e.g. classify)")
    args = parser.parse_args()
    if args.jobs is not None and not args.quick:
        parser.error("--jobs needs --quick: full figures are measured one script at a time")
    jobs = max(1, args.jobs or QUICK_JOBS) if args.quick else 1
    names = [s.stem.removeprefix("bench_") for s in sorted(HERE.glob("bench_*.py"))]
    names = [n for n in names if not args.only or n in args.only]
    if jobs > 1:
        names.sort(key=lambda n: QUICK_ORDER.index(n) if n in QUICK_ORDER else len(QUICK_ORDER))
    results: dict[str, object] = {
        "cpu_count": os.cpu_count(), "python": platform.python_version(),
        "machine": platform.machine(), "quick": args.quick, "concurrent_jobs": jobs,
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "benchmarks": {},
    }
    if jobs > 1:
        results["note"] = (f"quick run: up to {jobs} benchmarks ran at once on "
                           f"{os.cpu_count()} cores, so their timings disturb each other; "
                           "smoke-check figures, not the full ones")
    started = time.monotonic()
    with ThreadPoolExecutor(jobs) as pool:
        done = dict(zip(names, pool.map(lambda n: run(n, args.quick), names), strict=True))
    benchmarks = {name: done[name] for name in sorted(done)}
    results["benchmarks"] = benchmarks
    results["seconds"] = round(time.monotonic() - started, 1)
    text = json.dumps(results, indent=2)
    name = "results-quick.json" if args.quick else "results-partial.json" if args.only \
        else "results.json"
    (HERE / name).write_text(text + "\n")
    print(text)
    return 1 if any("error" in b for b in benchmarks.values()) else 0


def run(name: str, quick: bool) -> dict[str, object]:
    """One script's JSON with its wall time, or its error."""
    command = [sys.executable, str(HERE / f"bench_{name}.py")] + (["--quick"] if quick else [])
    started = time.monotonic()
    proc = subprocess.run(command, capture_output=True, text=True, cwd=HERE.parent, timeout=900)
    elapsed = round(time.monotonic() - started, 1)
    data = _last_json(proc.stdout)
    print(f"bench {name}: {'failed' if proc.returncode or data is None else 'done'} in "
          f"{elapsed} s", file=sys.stderr, flush=True)
    if proc.returncode != 0 or data is None:
        return {"error": (proc.stderr or proc.stdout).strip()[-2000:], "seconds": elapsed}
    data["seconds"] = elapsed
    return data


def _last_json(output: str) -> dict[str, object] | None:
    """The last line of a script's output that is a JSON object."""
    for line in reversed(output.strip().splitlines()):
        if line.startswith("{"):
            try:
                value = json.loads(line)
            except ValueError:
                continue
            if isinstance(value, dict):
                return value
    return None


if __name__ == "__main__":
    sys.exit(main())
