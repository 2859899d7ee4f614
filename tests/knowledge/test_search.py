"""Search quality and robustness on both databases, over the shipped library."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from desk.errors import InputError
from desk.store import Store
from knowledge.library import Filters, library_for
from knowledge.models import Resource


def _text(hit: dict[str, object]) -> str:
    keywords = hit["keywords"]
    assert isinstance(keywords, list)
    return " ".join([str(hit["title"]), str(hit["annotation"]), *map(str, keywords)]).lower()


async def test_exact_phrase_finds_its_subject_first(library_store: Store) -> None:
    result = await library_for(library_store).search("land bank")
    assert result.corrected_query is None
    assert result.total >= 3
    assert all("land bank" in _text(h) for h in result.hits[:3])
    assert "land bank" in str(result.hits[0]["title"]).lower()


async def test_typo_is_corrected_against_the_library_vocabulary(library_store: Store) -> None:
    result = await library_for(library_store).search("bond ratng")
    assert result.corrected_query == "bond rating"
    assert result.hits, "a typo should still find bond rating guides"
    top = [str(h["title"]).lower() for h in result.hits[:3]]
    assert all("rating" in t or "bond" in t for t in top), top
    assert "bond rating" in _text(result.hits[0])


@pytest.mark.parametrize("query", ["housng vouchrs", "zonning reform"])
async def test_several_typos_in_one_query(library_store: Store, query: str) -> None:
    result = await library_for(library_store).search(query)
    assert result.corrected_query is not None and result.corrected_query != query
    assert result.hits


async def test_multi_word_query_ranks_resources_with_every_word_first(
        library_store: Store) -> None:
    result = await library_for(library_store).search("CDBG demolition")
    first = _text(result.hits[0])
    assert "cdbg" in first and "demoli" in first
    assert result.total > 3  # the other words alone still match, further down


async def test_topic_filter(library_store: Store) -> None:
    result = await library_for(library_store).search(
        "grants", Filters.parse(topic="housing"), per_page=50)
    assert result.hits
    assert all("housing" in h["topics"] for h in result.hits)  # type: ignore[operator]


async def test_kind_publisher_and_year_filters(library_store: Store) -> None:
    library = library_for(library_store)
    guides = await library.search("", Filters.parse(kind="funding_program"), per_page=100)
    assert guides.hits and all(h["kind"] == "funding_program" for h in guides.hits)
    gfoa = await library.search("", Filters.parse(publisher="gfoa"), per_page=100)
    assert gfoa.hits and all(h["publisher"] == "GFOA" for h in gfoa.hits)
    everything = await library.search("", per_page=100)
    year = next(h["year"] for h in everything.hits if h["year"])
    dated = await library.search("", Filters.parse(year=str(year)), per_page=100)
    assert dated.hits and all(h["year"] == year for h in dated.hits)
    narrowed = await library.search("fund balance", Filters.parse(publisher="GFOA"))
    assert narrowed.hits and all(h["publisher"] == "GFOA" for h in narrowed.hits)


async def test_bad_filters_are_input_errors() -> None:
    for kwargs in ({"topic": "astrology"}, {"kind": "poem"}, {"year": "twenty"},
                   {"year": "99999"}, {"publisher": "x" * 300}):
        with pytest.raises(InputError):
            Filters.parse(**kwargs)


async def test_empty_query_browses_everything_in_pages(library_store: Store) -> None:
    library = library_for(library_store)
    first = await library.search("", per_page=20)
    second = await library.search("", page=2, per_page=20)
    async with library_store.session() as session:
        count = (await session.execute(select(func.count()).select_from(Resource))).scalar_one()
    assert first.total == count and first.pages == -(-count // 20)
    assert not {h["id"] for h in first.hits} & {h["id"] for h in second.hits}
    titles = [str(h["title"]) for h in first.hits]
    assert titles == sorted(titles, key=lambda t: " ".join(
        "".join(c if c.isalnum() else " " for c in t.lower()).split()))


@pytest.mark.parametrize("query", ['"', "*", "NEAR(", "OR", "AND NOT", "title:bond",
                                   "'; DROP TABLE resources; --", '"bond" OR "rating"*',
                                   "bond) OR (1=1", "%", "_", "\\", "-bond", "^rating"])
async def test_query_text_is_data_never_syntax(library_store: Store, query: str) -> None:
    library = library_for(library_store)
    async with library_store.session() as session:
        before = (await session.execute(select(func.count()).select_from(Resource))).scalar_one()
    result = await library.search(query)
    assert result.total < before  # never "everything", never an error
    async with library_store.session() as session:
        after = (await session.execute(select(func.count()).select_from(Resource))).scalar_one()
    assert after == before


async def test_operator_words_are_searched_as_words(library_store: Store) -> None:
    library = library_for(library_store)
    assert (await library.search("OR")).total == 0  # a stop word, not an operator
    assert (await library.search("*")).total == 0
    near = await library.search("NEAR(")
    assert all("near" in _text(h) for h in near.hits)


async def test_huge_and_control_character_queries_get_a_clear_message(
        library_store: Store) -> None:
    library = library_for(library_store)
    with pytest.raises(InputError, match="too long"):
        await library.search("budget " * 150_000)  # about 1 MB
    with pytest.raises(InputError, match="control characters"):
        await library.search("bond\x00rating")
    with pytest.raises(InputError, match="page"):
        await library.search("bond", page=0)
