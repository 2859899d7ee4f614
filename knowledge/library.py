"""The library in the database: loading the shipped seed, search, import and export.

Search ranks with :func:`knowledge.text.score`, the same Python arithmetic for both backends,
so the same library gives the same top results wherever it is stored. Up to ``INDEX_LIMIT``
resources, every resource's words are held in memory (:class:`knowledge.text.SearchIndex`):
a query costs one round trip, for the page of rows it shows, whatever the library's size; a
database ranking every match of a common word cannot do that at 100,000 resources. Larger
libraries fall back to the database's full-text index (FTS5 and bm25 on SQLite; a weighted
tsvector, GIN index and ts_rank_cd on PostgreSQL) for the best candidates, then score those.
Typos are corrected against the library's own vocabulary. The snapshot holding vocabulary and
index is rebuilt when the library changes (a version row bumped by every write says when).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import re
import secrets
import time
import weakref
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NamedTuple

from sqlalchemy import (
    ColumnElement,
    Select,
    bindparam,
    column,
    delete,
    func,
    literal_column,
    select,
    table,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from desk.errors import InputError
from desk.ports import TOPICS
from desk.store import Store
from desk.store import insert_ignore as _insert_ignore
from knowledge.labels import RESOURCE_KINDS
from knowledge.models import LibraryMeta, Referral, Resource, ResourceTopic, Tool
from knowledge.records import FIELDS, LibraryData, check, load_yaml, normalize_entry, sort_key
from knowledge.text import IndexRow, SearchIndex, Term, Vocabulary, doc_features, score

__all__ = [
    "MAX_QUERY_CHARS",
    "Filters",
    "Library",
    "SearchResult",
    "clean_query",
    "ensure_seeded",
    "library_for",
    "shipped_data",
]

log = logging.getLogger(__name__)

MAX_QUERY_CHARS = 500
CANDIDATES = 400  # rows the database's index hands to the shared ranking (large libraries)
INDEX_LIMIT = 250_000  # resources ranked in memory (the index takes about 450 bytes each)
VERSION_KEY = "version"
VERSION_CHECK_SECONDS = 1.0
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")


def clean_query(query: str | None) -> str:
    """The query with whitespace collapsed; InputError for what cannot be a search."""
    query = query or ""
    if len(query) > MAX_QUERY_CHARS:
        raise InputError(f"the search is too long ({len(query):,} characters; "
                         f"at most {MAX_QUERY_CHARS})")
    if _CONTROL.search(query):
        raise InputError("the search contains control characters; type words to search for")
    return " ".join(query.split())


@dataclass(frozen=True)
class Filters:
    topic: str | None = None
    kind: str | None = None
    publisher: str | None = None
    year: int | None = None

    @classmethod
    def parse(cls, topic: str | None = None, kind: str | None = None,
              publisher: str | None = None, year: str | int | None = None) -> Filters:
        """Filters from untrusted input; InputError names the bad one."""
        topic = (topic or "").strip() or None
        kind = (kind or "").strip() or None
        publisher = " ".join((publisher or "").split()) or None
        if topic is not None and topic not in TOPICS:
            raise InputError(f"unknown topic {topic[:60]!r}; use one of {', '.join(TOPICS)}")
        if kind is not None and kind not in RESOURCE_KINDS:
            raise InputError(f"unknown kind {kind[:60]!r}; use one of "
                             f"{', '.join(RESOURCE_KINDS)}")
        if publisher is not None and (len(publisher) > 200 or _CONTROL.search(publisher)):
            raise InputError("the publisher filter is not a publisher name")
        number: int | None = None
        if year not in (None, ""):
            try:
                number = int(str(year).strip())
            except ValueError:
                raise InputError(f"year must be a number, not {str(year)[:20]!r}") from None
            if not 1000 <= number <= 9999:
                raise InputError("year must have four digits")
        return cls(topic, kind, publisher, number)

    def as_dict(self) -> dict[str, Any]:
        return {"topic": self.topic, "kind": self.kind, "publisher": self.publisher,
                "year": self.year}


@dataclass
class SearchResult:
    query: str
    terms: list[Term]
    filters: Filters
    page: int
    per_page: int
    total: int
    capped: bool  # total counts only the best CANDIDATES matches
    hits: list[dict[str, Any]]

    @property
    def pages(self) -> int:
        return max(1, math.ceil(self.total / self.per_page))

    @property
    def corrected_query(self) -> str | None:
        """The query as searched, when typos were corrected."""
        if not any(t.corrected for t in self.terms):
            return None
        return " ".join(t.search for t in self.terms)

    def as_dict(self) -> dict[str, Any]:
        return {
            "query": self.query, "corrected_query": self.corrected_query,
            "filters": self.filters.as_dict(), "page": self.page, "per_page": self.per_page,
            "pages": self.pages, "total": self.total, "total_is_capped": self.capped,
            "results": self.hits,
        }


@dataclass
class Snapshot:
    """What is kept in memory for one version of the library."""

    version: str
    vocabulary: Vocabulary
    referrals: list[dict[str, Any]]
    tools: list[dict[str, Any]]
    topic_counts: dict[str, int]
    kind_counts: dict[str, int]
    resources: int
    index: SearchIndex | None = None  # None above the library's index limit


def resource_dict(row: Resource) -> dict[str, Any]:
    return {key: getattr(row, key) for key in FIELDS["resources"]}


def _referral_dict(row: Referral) -> dict[str, Any]:
    return {key: getattr(row, key) for key in FIELDS["referrals"]}


def _tool_dict(row: Tool) -> dict[str, Any]:
    return {key: getattr(row, key) for key in FIELDS["tools"]}


def _resource_values(entry: dict[str, Any], now: datetime) -> dict[str, Any]:
    values = {key: entry[key] for key in FIELDS["resources"]}
    values["keyword_text"] = " ; ".join(entry["keywords"])
    values["sort_key"] = sort_key(entry["title"])
    values["updated_at"] = now
    return values


class Candidate(NamedTuple):
    num: int
    id: str
    sort_key: str
    title: str
    keywords: list[str]
    annotation: str
    publisher: str


class Library:
    """The library stored in one database. Get it with :func:`library_for`;
    ``index_limit`` is the largest library ranked in memory (0: always ask the database)."""

    def __init__(self, store: Store, *, index_limit: int = INDEX_LIMIT) -> None:
        self.store = store
        self.index_limit = index_limit
        self._lock = asyncio.Lock()
        self._seen_version: str | None = None
        self._checked_at = 0.0
        # Snapshots are shared by every Library on the same database (same URL); the random
        # version tells a reloaded database from the one the snapshot was built from.
        url = store.engine.url.render_as_string(hide_password=True)
        self._key = f"{url} {index_limit}"

    # ---- the in-memory snapshot ---------------------------------------------------------------

    async def _version(self, session: AsyncSession) -> str:
        # Core statements on the session's connection: the ORM's bookkeeping costs more than
        # the query on a hot path.
        conn = await session.connection()
        value = (await conn.execute(_VERSION)).scalar()
        return value or ""

    @property
    def _snapshot(self) -> Snapshot | None:
        return _SNAPSHOTS.get(self._key)

    async def snapshot(self, session: AsyncSession | None = None) -> Snapshot:
        if session is None:
            async with self.store.reading() as own:
                return await self.snapshot(own)
        current = self._snapshot
        # Another process's change is noticed within a second; this process's at once.
        if (current is not None and current.version == self._seen_version
                and time.monotonic() - self._checked_at < VERSION_CHECK_SECONDS):
            return current
        version = await self._version(session)
        self._seen_version, self._checked_at = version, time.monotonic()
        if current is not None and current.version == version:
            return current
        async with self._lock:
            current = self._snapshot
            if current is not None and current.version == version:
                return current
            built = await self._build(session, version)
            _SNAPSHOTS[self._key] = built
            while len(_SNAPSHOTS) > 4:
                _SNAPSHOTS.pop(next(iter(_SNAPSHOTS)))
            return built

    async def _build(self, session: AsyncSession, version: str) -> Snapshot:
        result = await session.execute(select(
            Resource.num, Resource.id, Resource.sort_key, Resource.title, Resource.keywords,
            Resource.annotation, Resource.publisher, Resource.kind, Resource.year,
            Resource.topics).order_by(Resource.num))
        rows = [IndexRow(*row) for row in result.all()]
        kinds: Counter[str] = Counter(row.kind for row in rows)
        index: SearchIndex | None = None
        if len(rows) <= self.index_limit:
            index, vocabulary = (await asyncio.to_thread(SearchIndex.build, rows)
                                 if len(rows) > 5000 else SearchIndex.build(rows))
        else:
            texts = [(r.title, *r.keywords, r.annotation, r.publisher) for r in rows]
            vocabulary = await asyncio.to_thread(Vocabulary.build, texts)
        topic_rows = await session.execute(
            select(ResourceTopic.topic, func.count()).group_by(ResourceTopic.topic))
        referrals = (await session.execute(select(Referral).order_by(Referral.id))).scalars()
        tools = (await session.execute(select(Tool).order_by(Tool.id))).scalars()
        log.info("library snapshot %s: %d resources, %d words, ranked %s", version, len(rows),
                 len(vocabulary), "in memory" if index is not None else "by the database")
        return Snapshot(
            version=version, vocabulary=vocabulary,
            referrals=[_referral_dict(r) for r in referrals],
            tools=[_tool_dict(t) for t in tools],
            topic_counts={t: int(n) for t, n in topic_rows.all()},
            kind_counts=dict(kinds), resources=len(rows), index=index,
        )

    async def _changed(self, session: AsyncSession) -> None:
        """A new random version: every process rebuilds its snapshot on its next search."""
        row = await session.get(LibraryMeta, VERSION_KEY)
        if row is None:
            await _insert_ignore(session, LibraryMeta, {"key": VERSION_KEY, "value": ""})
            row = await session.get(LibraryMeta, VERSION_KEY)
            assert row is not None
        row.value = secrets.token_hex(8)
        await session.flush()
        self._seen_version = None  # check again on the next search

    # ---- reading ------------------------------------------------------------------------------

    async def get(self, ident: str) -> dict[str, Any] | None:
        async with self.store.reading() as session:
            row = (await session.execute(
                select(Resource).where(Resource.id == ident))).scalar_one_or_none()
            return resource_dict(row) if row is not None else None

    async def referrals(self) -> list[dict[str, Any]]:
        return list((await self.snapshot()).referrals)

    async def tools(self) -> list[dict[str, Any]]:
        return list((await self.snapshot()).tools)

    async def stats(self) -> dict[str, Any]:
        snap = await self.snapshot()
        ref_topics: Counter[str] = Counter(t for r in snap.referrals for t in r["topics"])
        tool_topics: Counter[str] = Counter(t for r in snap.tools for t in r["topics"])
        return {
            "resources": snap.resources, "referrals": len(snap.referrals),
            "tools": len(snap.tools),
            "topics": {t: snap.topic_counts.get(t, 0) for t in TOPICS},
            "kinds": {k: snap.kind_counts.get(k, 0) for k in RESOURCE_KINDS},
            "referral_topics": {t: ref_topics.get(t, 0) for t in TOPICS},
            "tool_topics": {t: tool_topics.get(t, 0) for t in TOPICS},
            "words": len(snap.vocabulary),
        }

    async def export(self) -> LibraryData:
        async with self.store.reading() as session:
            resources = (await session.execute(
                select(Resource).order_by(Resource.num))).scalars().all()
            referrals = (await session.execute(select(Referral).order_by(Referral.id))).scalars()
            tools = (await session.execute(select(Tool).order_by(Tool.id))).scalars()
            return LibraryData(resources=[resource_dict(r) for r in resources],
                               referrals=[_referral_dict(r) for r in referrals],
                               tools=[_tool_dict(t) for t in tools])

    # ---- search -------------------------------------------------------------------------------

    def _where(self, filters: Filters) -> list[ColumnElement[bool]]:
        clauses: list[ColumnElement[bool]] = []
        if filters.topic:
            clauses.append(Resource.num.in_(select(ResourceTopic.resource_num)
                                            .where(ResourceTopic.topic == filters.topic)))
        if filters.kind:
            clauses.append(Resource.kind == filters.kind)
        if filters.publisher:
            clauses.append(func.lower(Resource.publisher) == filters.publisher.lower())
        if filters.year is not None:
            clauses.append(Resource.year == filters.year)
        return clauses

    def _ordered(self, statement: Select[Any]) -> Select[Any]:
        # The same browse order on both backends: ASCII sort keys compared byte by byte.
        if self.store.dialect == "postgresql":
            return statement.order_by(Resource.sort_key.collate("C"), Resource.id.collate("C"))
        return statement.order_by(Resource.sort_key, Resource.id)

    async def _engine_match(self, session: AsyncSession, words: Sequence[str],
                            filters: Filters, *, every: bool, limit: int) -> list[Candidate]:
        """Candidates from the database's full-text index. The words are bound parameters
        (quoted as FTS5 strings on SQLite), never query syntax."""
        if not words:
            return []
        columns: list[Any] = [Resource.num, Resource.id, Resource.sort_key, Resource.title,
                              Resource.keywords, Resource.annotation, Resource.publisher]
        statement: Select[Any]
        if self.store.dialect == "sqlite":
            fts: ColumnElement[Any] = literal_column("resources_fts")
            joiner = " AND " if every else " OR "
            match = joiner.join('"' + w.replace('"', '""') + '"' for w in words)
            fts_table = _fts_table()
            statement = (
                select(*columns).join(fts_table, fts_table.c.rowid == Resource.num)
                .where(fts.match(match))
                .order_by(func.bm25(fts, 10.0, 5.0, 2.0, 1.0), Resource.num)
            )
        else:
            vector: ColumnElement[Any] = literal_column("resources.search_vector")
            english: ColumnElement[Any] = literal_column("'english'::regconfig")
            queries = [func.plainto_tsquery(english, w) for w in words]
            tsquery: ColumnElement[Any] = queries[0]
            for other in queries[1:]:
                tsquery = tsquery.op("&&" if every else "||")(other)
            statement = (select(*columns).where(vector.op("@@")(tsquery))
                         .order_by(func.ts_rank_cd(vector, tsquery).desc(), Resource.num))
        statement = statement.where(*self._where(filters)).limit(limit)
        result = await session.execute(statement)
        return [Candidate(*row) for row in result.all()]

    async def candidates(self, session: AsyncSession, terms: Sequence[Term], filters: Filters,
                         *, limit: int = CANDIDATES, every_first: bool = True,
                         enough: int = 20) -> tuple[list[Candidate], bool]:
        """Rows the database's full-text index matches: all the terms first, any of them when
        that finds too few. The flag says whether the limit cut the list."""
        words = list(dict.fromkeys(t.search for t in terms))
        rows: list[Candidate] = []
        if every_first or len(words) == 1:
            rows = await self._engine_match(session, words, filters, every=True, limit=limit)
        if len(words) > 1 and len(rows) < enough:
            seen = {r.num for r in rows}
            more = await self._engine_match(session, words, filters, every=False, limit=limit)
            rows.extend(r for r in more if r.num not in seen)
        return rows, len(rows) >= limit

    def rank(self, rows: Iterable[Candidate],
             terms: Sequence[Term]) -> list[tuple[float, Candidate]]:
        scored = [(score(doc_features(row.title, row.keywords, row.annotation, row.publisher),
                         terms), row) for row in rows]
        scored.sort(key=lambda pair: (-pair[0], pair[1].sort_key, pair[1].id))
        return scored

    async def best(self, session: AsyncSession, snap: Snapshot, terms: Sequence[Term],
                   filters: Filters, start: int, stop: int, *, every_first: bool = True,
                   limit: int = CANDIDATES) -> tuple[int, bool, list[tuple[int, float]]]:
        """(row number, score) at positions start..stop of the ranking, how many match, and
        whether that count is cut at ``limit`` (only when the database ranks)."""
        if snap.index is not None:
            allowed = snap.index.mask(filters.topic, filters.kind, filters.publisher,
                                      filters.year)
            count, shown = snap.index.search(terms, allowed, start, stop,
                                             every_first=every_first)
            return count, False, shown
        found, capped = await self.candidates(session, terms, filters, limit=limit,
                                              every_first=every_first)
        ranked = self.rank(found, terms)
        return len(ranked), capped, [(c.num, s) for s, c in ranked[start:stop]]

    def relevance(self, snap: Snapshot, terms: Sequence[Term],
                  entries: dict[int, dict[str, Any]]) -> dict[int, float]:
        """The shared score of each entry (keyed by row number)."""
        if snap.index is not None:
            return snap.index.scores(terms, list(entries))
        return {num: score(doc_features(e["title"], e["keywords"], e["annotation"],
                                        e["publisher"]), terms) for num, e in entries.items()}

    async def rows(self, session: AsyncSession, nums: Sequence[int]) -> dict[int, dict[str, Any]]:
        """Full entries for these row numbers (in their order; rows deleted since the snapshot
        are missing)."""
        if not nums:
            return {}
        conn = await session.connection()
        result = await conn.execute(_ROWS, {"nums": list(nums)})
        found = {row[0]: dict(zip(FIELDS["resources"], row[1:], strict=True))
                 for row in result.all()}
        return {n: found[n] for n in nums if n in found}

    async def search(self, query: str | None = "", filters: Filters | None = None, *,
                     page: int = 1, per_page: int = 20) -> SearchResult:
        """One page of resources for a query; an empty query browses (title order)."""
        query = clean_query(query)
        filters = filters or Filters()
        if page < 1 or page > 10_000:
            raise InputError("page must be between 1 and 10000")
        per_page = max(1, min(per_page, 100))
        start = (page - 1) * per_page
        async with self.store.reading() as session:
            snap = await self.snapshot(session)
            if not query:
                return await self._browse(session, snap, filters, page, per_page)
            terms = snap.vocabulary.terms(query)
            if not terms:
                return SearchResult(query, [], filters, page, per_page, 0, False, [])
            count, capped, shown = await self.best(session, snap, terms, filters, start,
                                                   start + per_page)
            found = await self.rows(session, [num for num, _ in shown])
        hits = [{**found[num], "score": s} for num, s in shown if num in found]
        return SearchResult(query, terms, filters, page, per_page, count, capped, hits)

    async def _browse(self, session: AsyncSession, snap: Snapshot, filters: Filters, page: int,
                      per_page: int) -> SearchResult:
        start = (page - 1) * per_page
        if snap.index is not None:
            allowed = snap.index.mask(filters.topic, filters.kind, filters.publisher,
                                      filters.year)
            total, nums = snap.index.browse(allowed, start, start + per_page)
            found = await self.rows(session, nums)
            return SearchResult("", [], filters, page, per_page, total, False,
                                list(found.values()))
        where = self._where(filters)
        total = (await session.execute(
            select(func.count()).select_from(Resource).where(*where))).scalar_one()
        statement = self._ordered(select(Resource).where(*where))
        rows = (await session.execute(
            statement.offset(start).limit(per_page))).scalars().all()
        hits = [resource_dict(r) for r in rows]
        return SearchResult("", [], filters, page, per_page, int(total), False, hits)

    # ---- writing ------------------------------------------------------------------------------

    async def upsert(self, data: LibraryData, *, now: datetime | None = None) -> dict[str, int]:
        """Insert new entries and update existing ones, matched by id or else by URL."""
        data = check(data)
        now = now or datetime.now(UTC)
        counts = {"inserted": 0, "updated": 0}
        async with self.store.session() as session:
            for entry in data.resources:
                counts["updated" if await self._upsert_resource(session, entry, now)
                       else "inserted"] += 1
            for model, section in ((Referral, data.referrals), (Tool, data.tools)):
                for entry in section:
                    counts["updated" if await self._upsert_simple(session, model, entry, now)
                           else "inserted"] += 1
            await self._changed(session)
        return counts

    async def _upsert_resource(self, session: AsyncSession, entry: dict[str, Any],
                               now: datetime) -> bool:
        by_id = (await session.execute(
            select(Resource).where(Resource.id == entry["id"]))).scalar_one_or_none()
        by_url = (await session.execute(
            select(Resource).where(Resource.url == entry["url"]))).scalar_one_or_none()
        if by_id is not None and by_url is not None and by_id.num != by_url.num:
            raise InputError(f"resource {entry['id']}: its URL is already used by "
                             f"{by_url.id}")
        row = by_id or by_url
        values = _resource_values(entry, now)
        if row is None:
            row = Resource(**values, created_at=now)
            session.add(row)
            await session.flush()
        else:
            values.pop("id")  # a match by URL keeps its public id
            for key, value in values.items():
                setattr(row, key, value)
            await session.flush()
            await session.execute(delete(ResourceTopic)
                                  .where(ResourceTopic.resource_num == row.num))
        session.add_all(ResourceTopic(resource_num=row.num, topic=t, position=i)
                        for i, t in enumerate(entry["topics"]))
        await session.flush()
        return by_id is not None or by_url is not None

    async def _upsert_simple(self, session: AsyncSession, model: Any,
                             entry: dict[str, Any], now: datetime) -> bool:
        by_id = await session.get(model, entry["id"])
        by_url = (await session.execute(
            select(model).where(model.url == entry["url"]))).scalar_one_or_none()
        if by_id is not None and by_url is not None and by_id.id != by_url.id:
            raise InputError(f"{model.__tablename__[:-1]} {entry['id']}: its URL is already "
                             f"used by {by_url.id}")
        row = by_id or by_url
        if row is None:
            session.add(model(**entry, updated_at=now))
            await session.flush()
            return False
        for key, value in entry.items():
            if key != "id":
                setattr(row, key, value)
        row.updated_at = now
        await session.flush()
        return True

    async def insert_new(self, data: LibraryData, *, now: datetime | None = None) -> int:
        """Add the entries whose id and URL are both new (a bulk path; concurrent callers
        insert each entry once)."""
        now = now or datetime.now(UTC)
        added = 0
        async with self.store.session() as session:
            insert = postgresql.insert if self.store.dialect == "postgresql" else sqlite.insert
            for chunk in _chunks(data.resources, 2000):
                values = [{**_resource_values(e, now), "created_at": now} for e in chunk]
                result = await session.execute(
                    insert(Resource).on_conflict_do_nothing().returning(Resource.num,
                                                                        Resource.id),
                    values)
                nums = dict((ident, num) for num, ident in result.all())
                topics = [{"resource_num": nums[e["id"]], "topic": t, "position": i}
                          for e in chunk if e["id"] in nums
                          for i, t in enumerate(e["topics"])]
                if topics:
                    await session.execute(insert(ResourceTopic).on_conflict_do_nothing(),
                                          topics)
                added += len(nums)
            for model, entries in ((Referral, data.referrals), (Tool, data.tools)):
                for chunk in _chunks(entries, 2000):
                    result = await session.execute(
                        insert(model).on_conflict_do_nothing().returning(model.id),
                        [{**e, "updated_at": now} for e in chunk])
                    added += len(result.all())
            if added:
                await self._changed(session)
        return added

    async def delete_resources(self, idents: Sequence[str]) -> int:
        async with self.store.session() as session:
            result = await session.execute(delete(Resource).where(Resource.id.in_(idents)))
            await self._changed(session)
            return int(getattr(result, "rowcount", 0) or 0)


# Built once: constructing a statement costs about as much as running it.
_ROWS = select(Resource.num, *(getattr(Resource, key) for key in FIELDS["resources"])).where(
    Resource.num.in_(bindparam("nums", expanding=True)))
_VERSION = select(LibraryMeta.value).where(LibraryMeta.key == VERSION_KEY)


def _fts_table() -> Any:
    return table("resources_fts", column("rowid"))


def _chunks(items: Sequence[dict[str, Any]], size: int) -> Iterable[Sequence[dict[str, Any]]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


_SNAPSHOTS: dict[str, Snapshot] = {}
_LIBRARIES: weakref.WeakKeyDictionary[Store, Library] = weakref.WeakKeyDictionary()


def library_for(store: Store) -> Library:
    """One Library (and one in-memory vocabulary) per store."""
    library = _LIBRARIES.get(store)
    if library is None:
        library = _LIBRARIES[store] = Library(store)
    return library


# ---- the shipped seed ------------------------------------------------------------------------

_SEED_FILES = ("resources.yaml", "referrals.yaml", "tools.yaml")
_seed_cache: tuple[str, LibraryData] | None = None


def _seed_bytes() -> dict[str, bytes]:
    folder = Path(__file__).resolve().parent / "data"
    return {name: (folder / name).read_bytes() for name in _SEED_FILES}


def _seed_fingerprint(raw: dict[str, bytes]) -> str:
    digest = hashlib.sha256()
    for name in _SEED_FILES:
        digest.update(name.encode() + b"\0" + raw[name] + b"\0")
    return digest.hexdigest()


def shipped_data() -> LibraryData:
    """The curated library shipped with the package, normalised; broken entries are left out
    with a warning rather than stopping the service."""
    raw = _seed_bytes()
    data = LibraryData()
    for name, section in zip(_SEED_FILES, ("resources", "referrals", "tools"), strict=True):
        items = load_yaml(raw[name]) or []
        for item in items:
            entry, problems = normalize_entry(section, item)
            if problems:
                log.warning("seed %s %s left out: %s", section, entry.get("id"), problems[0])
                continue
            data.section(section).append(entry)
    return data


async def ensure_seeded(store: Store) -> None:
    """Load the shipped library when it is not loaded yet (or was shipped anew): adds the
    shipped entries the database lacks and never overwrites a curator's edits."""
    global _seed_cache
    raw = _seed_bytes()
    fingerprint = _seed_fingerprint(raw)
    async with store.reading() as session:
        loaded = await session.get(LibraryMeta, "seed")
        if loaded is not None and loaded.value == fingerprint:
            return
    if _seed_cache is None or _seed_cache[0] != fingerprint:
        _seed_cache = (fingerprint, shipped_data())
    library = library_for(store)
    added = await library.insert_new(_seed_cache[1])
    async with store.session() as session:
        row = await session.get(LibraryMeta, "seed")
        if row is None:
            insert = postgresql.insert if store.dialect == "postgresql" else sqlite.insert
            await session.execute(insert(LibraryMeta).values(key="seed", value=fingerprint)
                                  .on_conflict_do_nothing())
        else:
            row.value = fingerprint
    log.info("library seeded: %d entries added", added)

