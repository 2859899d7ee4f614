"""`python -m bench [--quick]`: run every bench/bench_*.py, collect their JSON into
bench/results.json (with the machine's core count) and print it."""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench")
    parser.add_argument("--quick", action="store_true", help="small sizes, under a minute")
    parser.add_argument("only", nargs="*", help="run only these benchmarks (e.g. classify)")
    args = parser.parse_args()
    results: dict[str, object] = {
        "cpu_count": os.cpu_count(), "python": platform.python_version(),
        "machine": platform.machine(), "quick": args.quick,
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "benchmarks": {},
    }
    benchmarks: dict[str, object] = {}
    failed = False
    for script in sorted(HERE.glob("bench_*.py")):
        name = script.stem.removeprefix("bench_")
        if args.only and name not in args.only:
            continue
        command = [sys.executable, str(script)] + (["--quick"] if args.quick else [])
        started = time.monotonic()
        proc = subprocess.run(command, capture_output=True, text=True, cwd=HERE.parent,
                              timeout=900)
        elapsed = round(time.monotonic() - started, 1)
        data = _last_json(proc.stdout)
        if proc.returncode != 0 or data is None:
            failed = True
            benchmarks[name] = {"error": (proc.stderr or proc.stdout).strip()[-2000:],
                                "seconds": elapsed}
            continue
        data["seconds"] = elapsed
        benchmarks[name] = data
    results["benchmarks"] = benchmarks
    text = json.dumps(results, indent=2)
    (HERE / "results.json").write_text(text + "\n")
    print(text)
    return 1 if failed else 0


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
