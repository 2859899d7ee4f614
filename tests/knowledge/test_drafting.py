"""Drafted packages: the right resources for the question, rendered safely for each channel."""

from __future__ import annotations

import re

import pytest

from desk.ports import DraftRequest, Entity, Package
from desk.store import Store
from knowledge.drafting import LibraryDrafter, why_line
from knowledge.labels import KIND_LABELS, kind_noun
from knowledge.library import library_for
from knowledge.render import FOLLOW_UP_OFFER
from knowledge.text import Term, stem

CDBG_QUESTION = (
    "Our council wants to demolish about 40 blighted, vacant houses on the east side. Can we "
    "use our CDBG allocation for the demolition, and what national objective would it meet?"
)


def _request(**changes: object) -> DraftRequest:
    base: dict[str, object] = {
        "case_ref": "311-0042", "question": CDBG_QUESTION,
        "topics": ["vacant_blighted_property", "housing"],
        "entities": [Entity("PROGRAM", "CDBG", CDBG_QUESTION.index("CDBG"),
                            CDBG_QUESTION.index("CDBG") + 4, "CDBG")],
        "city": "Dayton", "state": "OH", "contact_name": "Jane Doe",
        "package_url": "https://311.example.org/p/tok_abcdefghijklmnop",
    }
    base.update(changes)
    return DraftRequest(**base)  # type: ignore[arg-type]


def _words(item: dict[str, object]) -> str:
    keywords = item.get("keywords") or []
    assert isinstance(keywords, list)
    return " ".join([str(item.get("title", "")), str(item.get("annotation", "")),
                     *map(str, keywords)]).lower()


async def _library_urls(store: Store) -> set[str]:
    data = await library_for(store).export()
    urls = {e["url"] for e in data.resources + data.referrals + data.tools}
    return urls | {e["contact"] for e in data.referrals if e["contact"] != "via website"}


async def test_cdbg_demolition_question_gets_cdbg_and_blight_resources(
        library_store: Store) -> None:
    package = await LibraryDrafter(library_store).draft(_request())
    assert 3 <= len(package.resources) <= 7
    texts = [_words(r) for r in package.resources]
    assert any("cdbg" in t for t in texts)
    assert any("blight" in t or "demoli" in t for t in texts)
    assert any("cdbg" in t and ("demoli" in t or "blight" in t) for t in texts[:2])
    assert 1 <= len(package.referrals) <= 3
    assert len(package.tools) <= 3
    for resource in package.resources:
        assert resource["why"] and "\n" not in resource["why"]
    assert any("CDBG" in r["why"] for r in package.resources)


async def test_package_opens_with_what_we_understood_and_ends_with_the_offer(
        library_store: Store) -> None:
    package = await LibraryDrafter(library_store).draft(_request())
    for body in (package.text, package.html, package.mrkdwn):
        assert "vacant and blighted property" in body
        assert "Dayton, OH" in body
        assert "311-0042" in body
        assert "https://311.example.org/p/tok_abcdefghijklmnop" in body
    assert package.text.index("understood") < package.text.index("RESOURCES")
    assert package.text.rstrip().endswith("https://311.example.org/p/tok_abcdefghijklmnop")
    assert package.text.index(FOLLOW_UP_OFFER) > package.text.index("RESOURCES")
    assert "coaching call" in package.mrkdwn and "coaching call" in package.html


async def test_no_resource_repeats_and_every_link_is_from_the_library(
        library_store: Store) -> None:
    known = await _library_urls(library_store)
    for question, topics in [
        (CDBG_QUESTION, ["vacant_blighted_property", "housing"]),
        ("How do we improve our bond rating before a bond issue?", ["budget_finance"]),
        ("We want to legalize ADUs and reform parking minimums.", ["planning_zoning",
                                                                  "housing"]),
        ("Help with everything", []),
    ]:
        package = await LibraryDrafter(library_store).draft(
            _request(question=question, topics=topics, entities=[]))
        ids = [r["id"] for r in package.resources]
        urls = [r["url"] for r in package.resources]
        assert len(ids) == len(set(ids)) and len(urls) == len(set(urls))
        linked = set(urls) | {r["url"] for r in package.referrals + package.tools}
        assert linked <= known
        html_links = set(re.findall(r'href="([^"]+)"', package.html))
        slack_links = set(re.findall(r"<([^|>]+)\|", package.mrkdwn))
        allowed = known | {"https://311.example.org/p/tok_abcdefghijklmnop"}
        assert {link.replace("&amp;", "&") for link in html_links | slack_links} <= allowed
        text_links = set(re.findall(r"https?://\S+", package.text))
        assert text_links <= allowed


async def test_topics_steer_the_resources(library_store: Store) -> None:
    package = await LibraryDrafter(library_store).draft(_request(
        question="How do we improve our bond rating before we issue bonds next year?",
        topics=["budget_finance"], entities=[]))
    assert all("budget_finance" in r["topics"] for r in package.resources[:3])
    assert any("rating" in _words(r) for r in package.resources[:3])
    kinds = {r["kind"] for r in package.resources}
    assert len(package.resources) >= 3 and kinds


async def test_user_text_is_escaped_in_html_and_slack(library_store: Store) -> None:
    package: Package = await LibraryDrafter(library_store).draft(_request(
        question="<script>alert(1)</script> <!channel> Tom & Jerry's CDBG demolition plan",
        contact_name="<b>Eve</b>", city="<img src=x>", state="OH"))
    assert "<script>" not in package.html and "&lt;script&gt;" in package.html
    assert "<img" not in package.html and "<b>Eve" not in package.html
    assert "<!channel>" not in package.mrkdwn and "&lt;!channel&gt;" in package.mrkdwn
    assert "Tom &amp; Jerry" in package.mrkdwn and "&lt;img src=x&gt;" in package.mrkdwn
    assert "<script>" in package.text  # plain text stays as written


async def test_program_named_in_full_matches_acronym_resources(library_store: Store) -> None:
    question = "What can the Low-Income Housing Tax Credit do for a senior housing project?"
    start = question.index("Low-Income")
    package = await LibraryDrafter(library_store).draft(_request(
        question=question, topics=["housing"],
        entities=[Entity("PROGRAM", "Low-Income Housing Tax Credit", start, start + 29,
                         "LIHTC")]))
    assert any("lihtc" in _words(r) for r in package.resources[:3])


def _entry(kind: str, annotation: str) -> dict[str, object]:
    return {"kind": kind, "publisher": "HUD Exchange", "title": "Guidance",
            "annotation": annotation, "keywords": [], "topics": ["housing"], "audience": ""}


def _terms(*words: str) -> list[Term]:
    return [Term(w, w, stem(w), 3.0) for w in words]


NOUNS = [
    ("guide", "a guide"), ("toolkit", "a toolkit"), ("case_study", "a case study"),
    ("data", "a data resource"), ("template", "a template"), ("training", "a training"),
    ("funding_program", "a funding program"), ("expert_organization", "an expert organization"),
    ("peer_program", "a peer program"), ("federal_agency", "a federal agency"),
    ("university", "a university"), ("calculator", "a calculator"),
    ("checklist", "a checklist"), ("dataset", "a dataset"), ("dashboard", "a dashboard"),
]


@pytest.mark.parametrize(("kind", "noun"), NOUNS)
def test_every_kind_reads_as_a_countable_noun(kind: str, noun: str) -> None:
    assert kind_noun(kind) == noun
    assert {k for k, _ in NOUNS} == set(KIND_LABELS)  # no kind left out


def test_why_line_names_the_kind_and_publisher() -> None:
    entry = _entry("data", "Rental vacancy figures by county.")
    line = why_line(entry, [], _terms("vacancy"), ["housing"], "What is our vacancy rate?")
    assert line.startswith("A data resource from HUD Exchange that speaks directly to vacancy")
    line = why_line(_entry("case_study", "x"), [], [], ["housing"], "Anything on housing?")
    assert line == "A case study from HUD Exchange that is a core reference on housing."


def test_why_line_gives_no_word_that_explains_nothing_as_the_reason() -> None:
    entry = _entry("guide", "Many cities may first adopt a rental registry; examples follow.")
    question = "May we adopt a rental registry first, and are there many examples?"
    terms = _terms("may", "first", "many", "examples", "rental", "registry", "adopt")
    line = why_line(entry, [], terms, ["housing"], question)
    assert "speaks directly to adopt and rental registry, as your question does" in line
    # A phrase inside a more telling one is not given again.
    entry = _entry("guide", "Minimum wage rules for city contractors; the state minimum.")
    question = "May a city set a minimum wage for contractors above the state minimum?"
    line = why_line(entry, [], _terms("minimum", "wage", "contractors"), ["housing"], question)
    assert "speaks directly to minimum wage and contractors, as your" in line
    # Ordinals and "well" begin terms: kept at a phrase's start, trimmed at its end.
    entry = _entry("guide", "Peer support for first responders; crisis teams respond first.")
    question = "How do first responders get peer support first?"
    line = why_line(entry, [], _terms("first", "responders", "peer", "support"), ["housing"],
                    question)
    assert "speaks directly to first responders and peer support, as your" in line
    # A term with "of" in it stays whole.
    entry = _entry("guide", "Conflict of interest rules for planning commissioners.")
    question = "Is it a conflict of interest for a commissioner?"
    line = why_line(entry, [], _terms("conflict", "interest"), ["housing"], question)
    assert "speaks directly to conflict of interest, as your" in line
    # Part of a longer name is no reason ("Street" of "Elm Street"), but a name the resource
    # shares whole is, and so are a headline's capitalised words.
    entry = _entry("guide", "Street repair funding; Main Street programs for sidewalks.")
    terms = _terms("street", "main", "sidewalks")
    line = why_line(entry, [], terms, ["housing"], "Can we fix the Elm Street sidewalks?")
    assert "speaks directly to sidewalks, as your" in line
    line = why_line(entry, [], terms, ["housing"], "Does Main Street fund our sidewalks?")
    assert "speaks directly to Main Street and sidewalks, as your" in line
    line = why_line(entry, [], terms, ["housing"], "Street Repairs On Elm Street Sidewalks")
    assert "speaks directly to Street Sidewalks, as your" in line
    # Alone, such words give no reason at all: the resource is explained by its topic.
    line = why_line(entry, [], _terms("may", "many", "examples"), ["housing"], question)
    assert line == "A guide from HUD Exchange that is a core reference on housing."
