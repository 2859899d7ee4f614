"""Drafting a resource package for a classified question (desk.ports.Drafter).

Resources are ranked by how well their topics match the question's, how relevant their text is
to the question (the library's full-text search and shared score), whether they name the
programs and agencies the question names, and variety of kinds; 3-7 are picked, with 1-3
referrals and the tools that fit. Every link comes from the library.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select

from desk.ports import DraftRequest, Entity, Package
from desk.store import Store
from knowledge.labels import kind_noun, topic_label
from knowledge.library import Filters, Library, Snapshot, library_for
from knowledge.models import ResourceTopic
from knowledge.render import render_package
from knowledge.text import Term, normalize, stem, tokenize

__all__ = ["LibraryDrafter", "Selection"]

QUESTION_NOISE = frozenset({
    "council", "councilmember", "mayor", "manager", "city", "town", "village", "county",
    "staff", "department", "director", "office", "clerk", "question", "help", "thank",
    "thanks", "please", "vote", "votes", "meeting", "week", "month", "today", "tomorrow",
    "monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday", "new",
    "need", "want", "know", "looking", "ask", "asked", "anyone", "hi", "hello", "regards",
})

# Words that never help say why a resource fits: trimmed from the ends of a shared phrase
# ("rental registry first" -> "rental registry"); at its start only when they cannot begin a
# term ("first responders", "last mile", "well water").
FILLER = frozenset({
    "may", "might", "must", "could", "would", "shall", "get", "got", "go", "going", "gone",
    "done", "also", "well", "really", "currently", "recently", "first", "second", "next", "last",
    "many", "much", "several", "every", "whether",
})
_STARTS_TERMS = frozenset({"first", "second", "next", "last", "well"})
# Words that, standing alone, say nothing about why a resource fits ("speaks directly to
# many"), though they may in a phrase ("public health", "executive session"): a shared phrase
# made only of these, of FILLER or of QUESTION_NOISE is not given as a reason.
EXPLAINS_NOTHING = FILLER | {
    "make", "made", "take", "give", "look", "find", "see", "start", "keep", "let", "like",
    "work", "works", "working", "use", "used", "using", "lot", "small", "large", "big", "main",
    "current", "good", "best", "better", "different", "similar", "possible", "general", "open",
    "public", "year", "years", "day", "days", "time", "times", "example", "examples", "lesson",
    "lessons", "way", "ways", "thing", "things", "form", "site", "rule", "rules", "hire",
    "award", "session", "option", "options", "issue", "issues", "close", "one", "ones",
    "whose", "area", "areas", "member", "members", "stop", "interest", "access", "social",
} | QUESTION_NOISE

log = logging.getLogger(__name__)

MIN_RESOURCES, MAX_RESOURCES = 3, 7
MAX_REFERRALS, MAX_TOOLS = 3, 3
TOPIC_WEIGHTS = (1.0, 0.6, 0.4)  # the question's first, second and third topic
ENTITY_LABELS = ("PROGRAM", "AGENCY", "ORG")


@dataclass
class Selection:
    resources: list[dict[str, Any]] = field(default_factory=list)
    referrals: list[dict[str, Any]] = field(default_factory=list)
    tools: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class EntityMatcher:
    """A program or agency the question names, matched in library text. Acronyms match case
    sensitively (HOME the program, not home); spelled-out names ignore case."""

    name: str
    patterns: tuple[re.Pattern[str], ...]

    @classmethod
    def of(cls, entity: Entity) -> EntityMatcher | None:
        if entity.label not in ENTITY_LABELS:
            return None
        forms = {f.strip() for f in (entity.value, entity.text) if f and f.strip()}
        patterns = []
        for form in sorted(forms):
            flags = 0 if form.isupper() or len(form) <= 5 else re.IGNORECASE
            patterns.append(re.compile(r"(?<![\w-])" + re.escape(form) + r"(?![\w-])", flags))
        if not patterns:
            return None
        return cls(name=(entity.value or entity.text).strip(), patterns=tuple(patterns))

    def found_in(self, *texts: str) -> bool:
        return any(p.search(t) for p in self.patterns for t in texts if t)


def _topic_score(item_topics: Sequence[str], request_topics: Sequence[str]) -> float:
    total = 0.0
    for i, topic in enumerate(request_topics[:3]):
        if topic in item_topics:
            total += TOPIC_WEIGHTS[i] * (1.0 if item_topics[0] == topic else 0.7)
    return total


def _item_text(item: dict[str, Any]) -> list[str]:
    return [str(item.get(k) or "") for k in ("title", "name", "annotation", "description")] + [
        str(k) for k in item.get("keywords", [])]


class LibraryDrafter:
    """Implements desk.ports.Drafter over the library stored in ``store``."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.library: Library = library_for(store)
        # Stems of each referral's and tool's text, for one library version at a time: they
        # are the same for every draft until the library changes.
        self._item_stems: tuple[str | None, dict[str, dict[Any, frozenset[str]]]] = (None, {})

    async def draft(self, request: DraftRequest) -> Package:
        selection = await self.select(request)
        return render_package(request, selection)

    # ---- choosing -------------------------------------------------------------------------

    def _terms(self, snap: Snapshot, request: DraftRequest,
               matchers: Sequence[EntityMatcher]) -> list[Term]:
        terms = snap.vocabulary.terms(request.question[:20_000])
        seen = {t.stem for t in terms}
        for matcher in matchers:
            for extra in snap.vocabulary.terms(matcher.name):
                if extra.stem not in seen:
                    seen.add(extra.stem)
                    terms.append(extra)
        # The rarest words say most about a question; very common ones add only noise, and so
        # do the words of a city's letterhead and calendar ("council", "Tuesday").
        common = snap.vocabulary.documents * 0.25
        useful = [t for t in terms if snap.vocabulary.df.get(t.stem, 0) <= common
                  and t.stem not in QUESTION_NOISE and stem(t.search) not in QUESTION_NOISE]
        useful.sort(key=lambda t: -t.idf)
        return useful[:14]

    async def select(self, request: DraftRequest) -> Selection:
        library = self.library
        matchers = [m for m in (EntityMatcher.of(e) for e in request.entities) if m]
        topics = [t for t in request.topics if t][:3]
        async with self.store.reading() as session:
            snap = await library.snapshot(session)
            terms = self._terms(snap, request, matchers)
            _, _, found = await library.best(session, snap, terms, Filters(), 0, 200,
                                             every_first=False, limit=200)
            nums = [num for num, _ in found]
            if topics:
                members = await session.execute(
                    select(ResourceTopic.resource_num).where(ResourceTopic.topic.in_(topics))
                    .order_by(ResourceTopic.position, ResourceTopic.resource_num).limit(300))
                nums.extend(members.scalars().all())
            nums = list(dict.fromkeys(nums))
            entries = await library.rows(session, nums)
        relevance = library.relevance(snap, terms, entries)
        selection = Selection()
        selection.resources = self._pick_resources(
            list(entries.values()), {e["id"]: relevance[num] for num, e in entries.items()},
            terms, topics, matchers, request)
        stems = self._stems_of_items(snap)
        selection.referrals = self._pick_simple(snap.referrals, stems["referrals"], terms,
                                                topics, matchers, MAX_REFERRALS, minimum=1)
        selection.tools = self._pick_simple(snap.tools, stems["tools"], terms, topics, matchers,
                                            MAX_TOOLS, minimum=0)
        log.info("drafted %s: %d resources, %d referrals, %d tools", request.case_ref,
                 len(selection.resources), len(selection.referrals), len(selection.tools))
        return selection

    def _pick_resources(self, entries: list[dict[str, Any]], relevance: dict[str, float],
                        terms: Sequence[Term], topics: Sequence[str],
                        matchers: Sequence[EntityMatcher],
                        request: DraftRequest) -> list[dict[str, Any]]:
        best_relevance = max(relevance.values(), default=0.0) or 1.0
        scored: list[tuple[float, dict[str, Any], list[str]]] = []
        for entry in entries:
            named = [m.name for m in matchers
                     if m.found_in(entry["title"], entry["annotation"], *entry["keywords"])]
            total = (2.0 * _topic_score(entry["topics"], topics)
                     + 2.5 * relevance[entry["id"]] / best_relevance
                     + 1.5 * min(len(named), 2))
            if total > 0:
                scored.append((total, entry, named))
        scored.sort(key=lambda s: (-s[0], s[1]["id"]))
        if not scored:
            return []
        best = scored[0][0]
        picked: list[tuple[dict[str, Any], list[str]]] = []
        kinds: dict[str, int] = {}
        covered: set[str] = set()
        seen_urls: set[str] = set()
        pool = scored[:80]
        while pool and len(picked) < MAX_RESOURCES:
            def adjusted(item: tuple[float, dict[str, Any], list[str]]) -> float:
                total, entry, _ = item
                value = total - 0.6 * kinds.get(entry["kind"], 0)
                if topics and any(t in entry["topics"] for t in topics if t not in covered):
                    value += 0.5
                return value

            pool.sort(key=lambda item: (-adjusted(item), item[1]["id"]))
            total, entry, named = pool.pop(0)
            value = adjusted((total, entry, named))
            if len(picked) >= MIN_RESOURCES and value < (0.6 if len(picked) >= 5 else 0.45) * best:
                break
            if entry["url"] in seen_urls:
                continue
            if len(picked) >= MIN_RESOURCES and not named and relevance[entry["id"]] <= 0:
                # Enough to start with: past the minimum, only what the question itself calls
                # for, not whatever else shares its topic.
                continue
            seen_urls.add(entry["url"])
            picked.append((entry, named))
            kinds[entry["kind"]] = kinds.get(entry["kind"], 0) + 1
            covered.update(entry["topics"])
        return [self._resource_out(entry, named, terms, topics, request)
                for entry, named in picked]

    def _resource_out(self, entry: dict[str, Any], named: Sequence[str], terms: Sequence[Term],
                      topics: Sequence[str], request: DraftRequest) -> dict[str, Any]:
        return {
            "id": entry["id"], "title": entry["title"], "url": entry["url"],
            "publisher": entry["publisher"], "year": entry["year"], "kind": entry["kind"],
            "topics": entry["topics"], "annotation": entry["annotation"],
            "audience": entry["audience"],
            "why": why_line(entry, named, terms, topics, request.question),
        }

    def _stems_of_items(self, snap: Snapshot) -> dict[str, dict[Any, frozenset[str]]]:
        version, stems = self._item_stems
        if version != snap.version:
            stems = {kind: {item["id"]: frozenset(
                stem(w) for text in _item_text(item) for w in tokenize(text)) for item in items}
                for kind, items in (("referrals", snap.referrals), ("tools", snap.tools))}
            self._item_stems = (snap.version, stems)
        return stems

    def _pick_simple(self, items: Sequence[dict[str, Any]], stems: dict[Any, frozenset[str]],
                     terms: Sequence[Term], topics: Sequence[str],
                     matchers: Sequence[EntityMatcher], limit: int, *,
                     minimum: int) -> list[dict[str, Any]]:
        stems_of_terms = {t.stem: t.idf for t in terms}
        best_idf = max(stems_of_terms.values(), default=1.0) or 1.0
        scored: list[tuple[float, dict[str, Any]]] = []
        for item in items:
            words = stems[item["id"]]
            text_score = sum(idf for s, idf in stems_of_terms.items() if s in words) / best_idf
            named = sum(1 for m in matchers if m.found_in(*_item_text(item)))
            topic = _topic_score(item["topics"], topics)
            total = 2.0 * topic + 0.5 * min(text_score, 4.0) + 1.5 * min(named, 2)
            if topic > 0 or named:
                scored.append((total, item))
        scored.sort(key=lambda s: (-s[0], s[1]["id"]))
        if not scored:
            return []
        best = scored[0][0]
        chosen = [item for total, item in scored[:limit] if total >= 0.55 * best]
        return [dict(item) for item in chosen[:max(minimum, len(chosen))]]


def _in_question(question: str, word: str) -> str:
    """The word as the question spells it (CDBG stays CDBG)."""
    found = re.search(r"\b" + re.escape(word) + r"\w*", question, re.IGNORECASE)
    return found.group(0) if found else word


def _join(parts: Sequence[str]) -> str:
    if len(parts) <= 1:
        return "".join(parts)
    return ", ".join(parts[:-1]) + " and " + parts[-1]


def why_line(entry: dict[str, Any], named: Sequence[str], terms: Sequence[Term],
             topics: Sequence[str], question: str) -> str:
    """One line on why this resource helps with this question, in the question's own words."""
    text_stems = {stem(w) for w in tokenize(" ".join(
        [entry["title"], entry["annotation"], *entry["keywords"]]))}
    named_stems = {stem(w) for n in named for w in tokenize(n)}
    # Words most of the library uses ("properties", "city") explain nothing.
    telling = {t.stem: t.idf for t in terms if t.idf >= 2.0 and t.stem not in named_stems}
    telling.update({stem(t.search): t.idf for t in terms
                    if t.idf >= 2.0 and stem(t.search) not in named_stems})
    phrases = _shared_phrases(question, text_stems, telling)
    if named and phrases:
        reason = f"covers {_join(list(named)[:2])} and speaks to {_join(phrases)}"
    elif named:
        reason = f"covers {_join(list(named)[:2])}, which your question names"
    elif phrases:
        reason = f"speaks directly to {_join(phrases)}, as your question does"
    else:
        matching = [t for t in topics if t in entry["topics"]]
        area = topic_label(matching[0] if matching else entry["topics"][0]).lower()
        reason = f"is a core reference on {area}"
    line = f"{kind_noun(entry['kind']).capitalize()} from {entry['publisher']} that {reason}."
    if entry.get("audience"):
        line += f" Written for {entry['audience']}."
    return line


def _in_name(text: str, word: re.Match[str]) -> bool:
    """A capitalised word that does not open a sentence: part of a name ("Elm Street")."""
    token = word.group(0)
    if not token[0].isupper() or token.isupper():  # acronyms are names of their own
        return False
    before = text[:word.start()].rstrip()
    return bool(before) and before[-1] not in ".?!:"


def _shared_phrases(question: str, text_stems: set[str], telling: dict[str, float],
                    limit: int = 3) -> list[str]:
    """Runs of the question's own words that the resource also uses ("bond rating"), the
    most telling first, then put back in the order the question has them. A run goes on over
    "of" ("conflict of interest"); filler is trimmed from its ends, and a run of words that
    explain nothing alone is dropped."""
    found = list(re.finditer(r"[A-Za-z][\w'-]*", question))
    words = [m.group(0) for m in found]
    lowered = [normalize(w) for w in words]
    keys = [stem(w) for w in lowered]
    in_names = [_in_name(question, m) for m in found]
    # In a headline ("How Do We Fund Street Repairs") capitals say nothing of names.
    headline = sum(in_names) * 2 > len(words)

    def shared(i: int) -> bool:
        return keys[i] in telling and keys[i] in text_stems

    runs: list[list[int]] = []  # each run: the indices of its words
    current: list[int] = []
    for index in range(len(words) + 1):
        if index < len(words) and shared(index):
            current.append(index)
            continue
        if current and index + 1 < len(words) and lowered[index] == "of" and shared(index + 1):
            current.append(index)
            continue
        while current and lowered[current[-1]] in FILLER:
            current.pop()
        while current and lowered[current[0]] in FILLER - _STARTS_TERMS:
            current.pop(0)
        if not headline:  # the part of a longer name says nothing ("Street" of "Elm Street")
            while current and in_names[current[0]] and current[0] > 0 \
                    and in_names[current[0] - 1]:
                current.pop(0)
            while current and in_names[current[-1]] and index < len(words) and in_names[index]:
                current.pop()
        if current and not all(lowered[i] in EXPLAINS_NOTHING for i in current):
            runs.append(current)
        current = []

    def weight(run: list[int]) -> float:
        return sum(telling[keys[i]] for i in run if shared(i))

    # A run whose words a more telling one already has adds nothing ("minimum wage and
    # minimum", "minimum wages and minimum wage").
    taken: list[set[str]] = []
    best: list[list[int]] = []
    for run in sorted(runs, key=lambda r: (-weight(r), r[0])):
        run_keys = {keys[i] for i in run}
        if not any(run_keys <= other for other in taken):
            taken.append(run_keys)
            best.append(run)
    return [" ".join(words[i] for i in run) for run in sorted(best[:limit])]
