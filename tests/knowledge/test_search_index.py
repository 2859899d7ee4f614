"""The in-memory index ranks exactly as the shared score does, and the database's own
full-text ranking (used above the in-memory limit) finds the same top results."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from desk.store import Store
from knowledge.library import Filters, Library, library_for, shipped_data
from knowledge.records import sort_key
from knowledge.text import IndexRow, SearchIndex, Term, Vocabulary, doc_features, score

QUERIES = ["bond rating", "bond ratng", "land bank", "fund balance", "CDBG demolition",
           "housing", "grants", "code enforcement", "accessory dwelling units", "open data",
           "lead service line", "housing trust fund", "cost of living", "federal grants city"]


@pytest.fixture(scope="module")
def shipped() -> tuple[list[IndexRow], SearchIndex, Vocabulary]:
    entries = shipped_data().resources
    rows = [IndexRow(num, e["id"], sort_key(e["title"]), e["title"], e["keywords"],
                     e["annotation"], e["publisher"], e["kind"], e["year"], e["topics"])
            for num, e in enumerate(entries, start=1)]
    index, vocabulary = SearchIndex.build(rows)
    return rows, index, vocabulary


def _by_hand(rows: list[IndexRow], terms: list[Term]) -> dict[int, float]:
    return {r.num: score(doc_features(r.title, r.keywords, r.annotation, r.publisher), terms)
            for r in rows}


def _holds(rows: list[IndexRow], terms: list[Term]) -> dict[int, int]:
    """How many of the terms each row holds (in any field)."""
    out = {}
    for r in rows:
        f = doc_features(r.title, r.keywords, r.annotation, r.publisher)
        out[r.num] = sum(1 for t in terms if t.stem in f.title | f.keywords | f.publisher
                         or f.annotation.get(t.stem))
    return out


def test_vocabulary_from_the_index_equals_the_one_built_from_text(
        shipped: tuple[list[IndexRow], SearchIndex, Vocabulary]) -> None:
    rows, _, vocabulary = shipped
    built = Vocabulary.build([(r.title, *r.keywords, r.annotation, r.publisher) for r in rows])
    assert vocabulary.documents == built.documents == len(rows)
    assert vocabulary.df == built.df
    assert vocabulary.surfaces == built.surfaces


@pytest.mark.parametrize("query", QUERIES)
def test_index_scores_and_order_equal_scoring_each_resource_by_hand(
        shipped: tuple[list[IndexRow], SearchIndex, Vocabulary], query: str) -> None:
    rows, index, vocabulary = shipped
    terms = vocabulary.terms(query)
    assert terms
    by_hand = _by_hand(rows, terms)
    assert index.scores(terms, [r.num for r in rows]) == by_hand

    holds = _holds(rows, terms)
    every = [r for r in rows if holds[r.num] == len(terms)]
    matches = every if len(every) >= 20 or len(terms) == 1 else [
        r for r in rows if holds[r.num]]
    expected = sorted(matches, key=lambda r: (-by_hand[r.num], r.sort_key, r.id))
    count, page = index.search(terms, None, 0, 10)
    assert count == len(matches)
    assert page == [(r.num, by_hand[r.num]) for r in expected[:10]]
    # A later page continues the same order.
    _, later = index.search(terms, None, 3, 8)
    assert later == [(r.num, by_hand[r.num]) for r in expected[3:8]]


def test_equal_scores_go_in_title_order(
        shipped: tuple[list[IndexRow], SearchIndex, Vocabulary]) -> None:
    rows, index, vocabulary = shipped
    terms = vocabulary.terms("housing")
    count, page = index.search(terms, None, 0, count_all := len(rows))
    assert count < count_all
    keys = {r.num: (r.sort_key, r.id) for r in rows}
    for (num_a, score_a), (num_b, score_b) in zip(page, page[1:], strict=False):
        assert score_a > score_b or (score_a == score_b and keys[num_a] < keys[num_b])


def test_filters_and_browse(shipped: tuple[list[IndexRow], SearchIndex, Vocabulary]) -> None:
    rows, index, _ = shipped
    year = next(r.year for r in rows if r.year)
    publisher = rows[0].publisher
    cases: list[tuple[dict[str, Any], Callable[[IndexRow], bool]]] = [
        ({"topic": "housing"}, lambda r: "housing" in r.topics),
        ({"kind": "funding_program"}, lambda r: r.kind == "funding_program"),
        ({"publisher": publisher.upper()}, lambda r: r.publisher.lower() == publisher.lower()),
        ({"year": year}, lambda r: r.year == year),
        ({"topic": "housing", "kind": "guide"},
         lambda r: "housing" in r.topics and r.kind == "guide"),
        ({"publisher": "Nobody At All"}, lambda r: False),
    ]
    for filters, keep in cases:
        wanted = sorted((r for r in rows if keep(r)), key=lambda r: (r.sort_key, r.id))
        total, nums = index.browse(index.mask(**filters), 0, 15)
        assert total == len(wanted), filters
        assert nums == [r.num for r in wanted[:15]], filters
    total, nums = index.browse(None, 5, 10)
    everything = sorted(rows, key=lambda r: (r.sort_key, r.id))
    assert total == len(rows) and nums == [r.num for r in everything[5:10]]


def test_a_filtered_search_holds_only_passing_resources(
        shipped: tuple[list[IndexRow], SearchIndex, Vocabulary]) -> None:
    rows, index, vocabulary = shipped
    housing = {r.num for r in rows if "housing" in r.topics}
    count, page = index.search(vocabulary.terms("grants"), index.mask(topic="housing"), 0, 50)
    assert page and count <= len(housing)
    assert {num for num, _ in page} <= housing


async def test_database_ranking_finds_the_same_top_results(library_store: Store) -> None:
    in_memory = library_for(library_store)
    by_database = Library(library_store, index_limit=0)
    for query, topic in [("bond rating", None), ("bond ratng", None), ("land bank", None),
                         ("fund balance", None), ("code enforcement", None),
                         ("participatory budgeting", None), ("grants", "housing"),
                         ("violence", "public_safety"), ("", "infrastructure"), ("", None)]:
        filters = Filters.parse(topic=topic)
        left = await in_memory.search(query, filters, per_page=5)
        right = await by_database.search(query, filters, per_page=5)
        assert (await by_database.snapshot()).index is None
        assert [h["id"] for h in left.hits] == [h["id"] for h in right.hits], query
        assert [h.get("score") for h in left.hits] == [h.get("score") for h in right.hits]
