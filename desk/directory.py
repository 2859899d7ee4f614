"""Who sent this? Sender to contact and city: known contact, then the city's email domain,
then the city named in the signature (fuzzy, against the directory)."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from importlib import resources
from pathlib import Path

from rapidfuzz import fuzz, process
from sqlalchemy.ext.asyncio import AsyncSession

from desk.errors import InputError
from desk.models import City, Contact
from desk.store import Store

__all__ = ["CityRow", "Match", "identify", "parse_cities_csv", "shipped_cities"]

SIGNATURE_LINES = 12
_CITY_OF = re.compile(r"\b(?:City|Town|Village|Borough) of ([A-Z][\w.' -]{1,40})", re.I)
_CITY_STATE = re.compile(r"\b([A-Z][a-zA-Z.' -]{1,40}),\s*([A-Z]{2})\b")


@dataclass(frozen=True)
class CityRow:
    name: str
    state: str
    domains: tuple[str, ...]


@dataclass
class Match:
    contact: Contact | None
    city: City | None
    how: str  # contact | domain | signature | none


def parse_cities_csv(text: str) -> list[CityRow]:
    reader = csv.DictReader(io.StringIO(text))
    missing = {"name", "state"} - set(reader.fieldnames or [])
    if missing:
        raise InputError(f"cities CSV needs the columns name, state (and domains); "
                         f"missing {', '.join(sorted(missing))}")
    rows: list[CityRow] = []
    for number, row in enumerate(reader, start=2):
        name, state = (row.get("name") or "").strip(), (row.get("state") or "").strip().upper()
        if not name or not re.fullmatch(r"[A-Z]{2}", state):
            raise InputError(f"line {number}: needs a city name and a two-letter state")
        domains = tuple(d.strip().lower() for d in re.split(r"[;\s]+", row.get("domains") or "")
                        if d.strip())
        rows.append(CityRow(name, state, domains))
    return rows


def shipped_cities() -> list[CityRow]:
    text = resources.files("desk").joinpath("data/cities.csv").read_text(encoding="utf-8")
    return parse_cities_csv(text)


def read_cities_file(path: Path) -> list[CityRow]:
    try:
        return parse_cities_csv(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror}") from exc


async def import_cities(store: Store, rows: Sequence[CityRow], now: datetime) -> int:
    async with store.session() as session:
        for row in rows:
            await store.add_city(session, row.name, row.state, row.domains, now)
    return len(rows)


async def identify(
    store: Store, session: AsyncSession, *, email: str | None = None,
    slack_user: str | None = None, text: str = "",
) -> Match:
    contact = None
    if email:
        contact = await store.contact_by_email(session, email)
    if contact is None and slack_user:
        contact = await store.contact_by_slack(session, slack_user)
    if contact is not None and contact.city_id is not None:
        return Match(contact, await session.get(City, contact.city_id), "contact")
    if email and "@" in email:
        city = await store.city_by_domain(session, email.rsplit("@", 1)[1])
        if city is not None:
            return Match(contact, city, "domain")
    city = await _city_in_signature(store, session, text)
    if city is not None:
        return Match(contact, city, "signature")
    return Match(contact, None, "none")


async def _city_in_signature(store: Store, session: AsyncSession, text: str) -> City | None:
    tail = "\n".join(text.strip().splitlines()[-SIGNATURE_LINES:])
    if not tail:
        return None
    cities = list(await store.list_cities(session))
    if not cities:
        return None
    labels = {f"{c.name}, {c.state}": c for c in cities}
    names = {c.name: c for c in cities}
    for m in _CITY_STATE.finditer(tail):
        label = f"{m.group(1).strip()}, {m.group(2)}"
        best = process.extractOne(label, list(labels), scorer=fuzz.ratio, score_cutoff=88)
        if best:
            return labels[best[0]]
    for m in _CITY_OF.finditer(tail):
        candidate = m.group(1).strip().split(",")[0]
        best = process.extractOne(candidate, list(names), scorer=fuzz.ratio, score_cutoff=88)
        if best:
            return names[best[0]]
    return None
