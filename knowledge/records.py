"""Library entries as plain dicts: reading files, checking and normalising entries, and the
curation checks behind ``library validate``."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml
from rapidfuzz import fuzz, process

from desk.errors import InputError
from desk.ports import TOPICS
from knowledge.labels import REFERRAL_KINDS, RESOURCE_KINDS, TOOL_KINDS
from knowledge.text import tokenize

__all__ = [
    "FIELDS",
    "LibraryData",
    "Problem",
    "check",
    "dump",
    "find_problems",
    "load_yaml",
    "normalize_entry",
    "read_file",
    "slugify",
    "sort_key",
]

FIELDS: dict[str, tuple[str, ...]] = {
    "resources": ("id", "title", "url", "publisher", "year", "kind", "topics", "annotation",
                  "audience", "reviewed", "keywords"),
    "referrals": ("id", "name", "kind", "topics", "description", "url", "contact"),
    "tools": ("id", "title", "url", "publisher", "kind", "topics", "annotation", "keywords"),
}
KINDS: dict[str, tuple[str, ...]] = {
    "resources": RESOURCE_KINDS, "referrals": REFERRAL_KINDS, "tools": TOOL_KINDS,
}
SECTIONS = tuple(FIELDS)
_SLUG = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


@dataclass(frozen=True)
class Problem:
    section: str
    ident: str
    message: str
    fatal: bool = True  # near-duplicate titles are worth a look but do not block an import

    def __str__(self) -> str:
        return f"{self.section[:-1]} {self.ident}: {self.message}"


@dataclass
class LibraryData:
    resources: list[dict[str, Any]] = field(default_factory=list)
    referrals: list[dict[str, Any]] = field(default_factory=list)
    tools: list[dict[str, Any]] = field(default_factory=list)

    def section(self, name: str) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = getattr(self, name)
        return items

    def __len__(self) -> int:
        return len(self.resources) + len(self.referrals) + len(self.tools)

    def as_dict(self) -> dict[str, list[dict[str, Any]]]:
        return {name: self.section(name) for name in SECTIONS}


def slugify(text: str) -> str:
    return "-".join(tokenize(text))[:80].strip("-") or "entry"


def sort_key(title: str) -> str:
    return " ".join(tokenize(title))[:200]


def url_problem(url: object) -> str | None:
    if not isinstance(url, str) or not url.strip():
        return "URL missing"
    if url != url.strip() or any(c.isspace() for c in url) or _CONTROL.search(url):
        return f"malformed URL {url!r} (spaces)"
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.scheme not in ("http", "https") or "." not in host or host.endswith("."):
        return f"malformed URL {url!r}"
    if len(url) > 2000:
        return "URL longer than 2,000 characters"
    return None


def _text(value: object) -> str:
    if value is None:
        return ""
    return re.sub(r"\s+", " ", str(value)).strip()


def _list(value: object) -> list[str]:
    if value is None or value == "":
        return []
    if isinstance(value, str):
        parts: Iterable[object] = re.split(r"[;|]", value) if re.search(r"[;|]", value) \
            else value.split(",")
    elif isinstance(value, list | tuple):
        parts = value
    else:
        return [str(value)]
    return [p for p in (_text(v) for v in parts) if p]


def normalize_entry(section: str, raw: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """A clean entry with the shipped field order, and what is wrong with it."""
    problems: list[str] = []
    entry: dict[str, Any] = {}
    name_field = "name" if section == "referrals" else "title"
    for key in FIELDS[section]:
        value = raw.get(key)
        if key in ("topics", "keywords"):
            entry[key] = _list(value)
        elif key == "year":
            if value in (None, ""):
                entry[key] = None
            else:
                try:
                    entry[key] = int(str(value).strip())
                except ValueError:
                    entry[key] = None
                    problems.append(f"year {value!r} is not a number")
                else:
                    if not 1900 <= entry[key] <= 2100:
                        problems.append(f"year {entry[key]} is out of range")
        elif key == "reviewed":
            if isinstance(value, dt.date):
                entry[key] = value.isoformat()
            elif value in (None, ""):
                entry[key] = None
            else:
                try:
                    entry[key] = dt.date.fromisoformat(str(value).strip()).isoformat()
                except ValueError:
                    entry[key] = None
                    problems.append(f"reviewed {value!r} is not a date (YYYY-MM-DD)")
        elif key == "url":
            entry[key] = value.strip() if isinstance(value, str) else value
        else:
            entry[key] = _text(value)
    if section == "referrals" and not entry["contact"]:
        entry["contact"] = "via website"
    if not entry["id"]:
        entry["id"] = slugify(entry.get(name_field) or "")
    elif not _SLUG.fullmatch(entry["id"]) or len(entry["id"]) > 120:
        problems.append("id must be lower-case letters, digits and hyphens")
    if not entry.get(name_field):
        problems.append(f"{name_field} missing")
    bad_url = url_problem(entry["url"])
    if bad_url:
        problems.append(bad_url)
    if section == "referrals" and entry["contact"] != "via website":
        bad_contact = url_problem(entry["contact"])
        if bad_contact and not entry["contact"].startswith("mailto:"):
            problems.append("contact: " + bad_contact)
    if entry["kind"] not in KINDS[section]:
        problems.append(f"kind {entry['kind']!r} is not one of {', '.join(KINDS[section])}"
                        if entry["kind"] else "kind missing")
    topics = list(dict.fromkeys(entry["topics"]))
    entry["topics"] = topics
    if not topics:
        problems.append("topics missing")
    elif len(topics) > 3:
        problems.append("more than 3 topics")
    unknown = [t for t in topics if t not in TOPICS]
    if unknown:
        problems.append(f"unknown topic {unknown[0]!r}")
    prose = "description" if section == "referrals" else "annotation"
    if not entry[prose]:
        problems.append(f"{prose} missing")
    if section != "referrals" and not entry["publisher"]:
        problems.append("publisher missing")
    for key, value in entry.items():
        if isinstance(value, str) and _CONTROL.search(value):
            problems.append(f"{key} contains control characters")
    return entry, problems


def find_problems(data: LibraryData, *, near_duplicate_score: float = 92.0) -> list[Problem]:
    """Everything ``library validate`` reports: malformed entries, duplicate ids and URLs,
    near-duplicate titles."""
    problems: list[Problem] = []
    ids: Counter[str] = Counter()
    for section in SECTIONS:
        urls: dict[str, list[str]] = defaultdict(list)
        for raw in data.section(section):
            entry, issues = normalize_entry(section, raw)
            ident = entry["id"]
            ids[ident] += 1
            problems.extend(Problem(section, ident, issue) for issue in issues)
            if isinstance(entry["url"], str) and entry["url"]:
                urls[_url_key(entry["url"])].append(ident)
        for url, owners in urls.items():
            if len(owners) > 1:
                problems.append(Problem(section, owners[1],
                                        f"duplicate URL {url} (also {owners[0]})"))
    problems.extend(Problem("entries", i, f"id used {n} times") for i, n in ids.items() if n > 1)
    for section in SECTIONS:
        name_field = "name" if section == "referrals" else "title"
        entries = data.section(section)
        titles = [" ".join(tokenize(str(e.get(name_field) or ""))) for e in entries]
        problems.extend(_near_duplicates(section, entries, titles, near_duplicate_score))
    return problems


def _url_key(url: str) -> str:
    """URLs that differ only in scheme, case of the host, or a trailing slash are the same."""
    parts = urlsplit(url.strip())
    host = (parts.hostname or "").lower().removeprefix("www.")
    path = parts.path.rstrip("/")
    return f"{host}{path}{'?' + parts.query if parts.query else ''}"


def _near_duplicates(section: str, entries: Sequence[Mapping[str, Any]], titles: list[str],
                     cutoff: float) -> list[Problem]:
    out: list[Problem] = []
    for i, title in enumerate(titles):
        if not title or i + 1 >= len(titles):
            continue
        rest = titles[i + 1:]
        for _match, found, j in process.extract(title, rest, scorer=fuzz.token_sort_ratio,
                                                score_cutoff=cutoff, limit=None):
            other = entries[i + 1 + j]
            out.append(Problem(section, str(entries[i].get("id") or title),
                               f"title is nearly the same as {other.get('id')!r} "
                               f"({found:.0f}%)", fatal=False))
    return out


def check(data: LibraryData) -> LibraryData:
    """Normalised entries, or InputError naming the first blocking problem."""
    fatal = [p for p in find_problems(data) if p.fatal]
    if fatal:
        more = f" (and {len(fatal) - 1} more problems)" if len(fatal) > 1 else ""
        raise InputError(f"{fatal[0]}{more}")
    return LibraryData(**{s: [normalize_entry(s, e)[0] for e in data.section(s)]
                          for s in SECTIONS})


# libyaml's safe loader when it is there: ten times faster than the pure-Python one.
_SAFE_LOADER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def load_yaml(text: str | bytes) -> Any:
    """yaml.safe_load, with libyaml when available."""
    return yaml.load(text, Loader=_SAFE_LOADER)  # noqa: S506 - a safe loader


# ---- files ------------------------------------------------------------------------------------

def _section_of(item: Mapping[str, Any]) -> str:
    if "name" in item and "description" in item:
        return "referrals"
    if "audience" in item or str(item.get("kind", "")) in RESOURCE_KINDS:
        return "resources"
    return "tools" if str(item.get("kind", "")) in TOOL_KINDS else "resources"


def _from_structure(loaded: object, name: str) -> LibraryData:
    data = LibraryData()
    if isinstance(loaded, Mapping):
        unknown = [k for k in loaded if k not in SECTIONS]
        if unknown:
            raise InputError(f"{name}: unknown section {unknown[0]!r} "
                             f"(expected {', '.join(SECTIONS)})")
        for section in SECTIONS:
            items = loaded.get(section) or []
            if not isinstance(items, list) or not all(isinstance(i, Mapping) for i in items):
                raise InputError(f"{name}: {section} must be a list of entries")
            data.section(section).extend(dict(i) for i in items)
    elif isinstance(loaded, list):
        for item in loaded:
            if not isinstance(item, Mapping):
                raise InputError(f"{name}: every entry must be a mapping of fields")
            data.section(_section_of(item)).append(dict(item))
    else:
        raise InputError(f"{name}: expected a list of entries or a mapping with "
                         f"{', '.join(SECTIONS)}")
    return data


def read_file(path: Path) -> LibraryData:
    """Entries from a CSV, JSON or YAML file (not yet checked)."""
    name = path.name
    try:
        raw = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except UnicodeDecodeError:
        raise InputError(f"{name}: not UTF-8 text") from None
    except OSError as exc:
        raise InputError(f"{path}: {exc.strerror}") from None
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return _read_csv(raw, name)
    if suffix == ".json":
        try:
            loaded = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise InputError(f"{name}: not valid JSON ({exc.msg}, line {exc.lineno})") from None
        return _from_structure(loaded, name)
    if suffix in (".yaml", ".yml"):
        try:
            loaded = load_yaml(raw)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f", line {mark.line + 1}" if mark is not None else ""
            raise InputError(f"{name}: not valid YAML{where}") from None
        return _from_structure(loaded, name)
    raise InputError(f"{name}: unknown format; use .csv, .json, .yaml or .yml")


def _read_csv(raw: str, name: str) -> LibraryData:
    reader = csv.DictReader(io.StringIO(raw))
    if not reader.fieldnames or not {"title", "name"} & set(reader.fieldnames):
        raise InputError(f"{name}: a CSV needs a header row with at least title and url")
    data = LibraryData()
    try:
        for row in reader:
            if None in row:
                raise InputError(f"{name}: line {reader.line_num} has more cells than the header")
            section = (row.pop("type", "") or "resource").strip().lower()
            section = section if section.endswith("s") else section + "s"
            if section not in SECTIONS:
                raise InputError(f"{name}: line {reader.line_num}: unknown type {section!r}")
            data.section(section).append({k: v for k, v in row.items() if k})
    except csv.Error as exc:
        raise InputError(f"{name}: not valid CSV ({exc})") from None
    return data


def dump(data: LibraryData, fmt: str) -> str:
    """The library as YAML, JSON or CSV (one row per entry, with a type column)."""
    if fmt == "yaml":
        return yaml.safe_dump(data.as_dict(), sort_keys=False, allow_unicode=True, width=100)
    if fmt == "json":
        return json.dumps(data.as_dict(), indent=2, ensure_ascii=False) + "\n"
    if fmt == "csv":
        columns = ["type", *dict.fromkeys(f for fields in FIELDS.values() for f in fields)]
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        for section in SECTIONS:
            for entry in data.section(section):
                row = {k: ("; ".join(v) if isinstance(v, list) else v)
                       for k, v in entry.items()}
                writer.writerow({"type": section[:-1], **row})
        return out.getvalue()
    raise InputError(f"unknown format {fmt!r}; use yaml, json or csv")
