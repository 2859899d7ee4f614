"""Structure and provenance checks for the curated seed library in knowledge/data."""

from __future__ import annotations

import datetime as dt
import re
from collections import Counter
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from desk import ports

__all__: list[str] = []

DATA = Path(__file__).resolve().parents[2] / "knowledge" / "data"

TOPICS = frozenset(ports.TOPICS)
RESOURCE_KINDS = frozenset(
    {"guide", "toolkit", "case_study", "data", "template", "training", "funding_program"}
)
REFERRAL_KINDS = frozenset({"expert_organization", "peer_program", "federal_agency", "university"})
TOOL_KINDS = frozenset({"calculator", "template", "checklist", "dataset", "dashboard"})

RESOURCE_FIELDS = (
    "id",
    "title",
    "url",
    "publisher",
    "year",
    "kind",
    "topics",
    "annotation",
    "audience",
    "reviewed",
    "keywords",
)
REFERRAL_FIELDS = ("id", "name", "kind", "topics", "description", "url", "contact")
TOOL_FIELDS = ("id", "title", "url", "publisher", "kind", "topics", "annotation", "keywords")

SLUG = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*")


@cache
def _load(name: str) -> list[dict[str, Any]]:
    items = yaml.safe_load((DATA / name).read_text(encoding="utf-8"))
    assert isinstance(items, list), f"{name} must hold a YAML list"
    assert all(isinstance(item, dict) for item in items), f"{name} must hold mappings"
    return items


def resources() -> list[dict[str, Any]]:
    return _load("resources.yaml")


def referrals() -> list[dict[str, Any]]:
    return _load("referrals.yaml")


def tools() -> list[dict[str, Any]]:
    return _load("tools.yaml")


def _text(item: dict[str, Any]) -> str:
    """Everything a search over one entry would see, lower-cased."""
    parts = [str(item.get(k, "")) for k in ("title", "name", "annotation", "description")]
    parts.extend(item.get("keywords", []))
    return " ".join(parts).lower()


def _check_common(item: dict[str, Any], fields: tuple[str, ...], kinds: frozenset[str]) -> None:
    assert tuple(item) == fields, f"{item.get('id')}: fields {tuple(item)}"
    assert isinstance(item["id"], str) and SLUG.fullmatch(item["id"]), item["id"]
    assert item["kind"] in kinds, f"{item['id']}: kind {item['kind']}"
    topics = item["topics"]
    assert isinstance(topics, list) and 1 <= len(topics) <= 3, f"{item['id']}: {topics}"
    assert len(set(topics)) == len(topics), f"{item['id']}: repeated topic"
    assert set(topics) <= TOPICS, f"{item['id']}: unknown topic in {topics}"
    _check_url(item["id"], item["url"])


def _check_url(ident: str, url: object) -> None:
    assert isinstance(url, str) and url == url.strip(), f"{ident}: url {url!r}"
    parts = urlsplit(url)
    assert parts.scheme == "https", f"{ident}: not https: {url}"
    assert parts.netloc and "." in parts.netloc and " " not in url, f"{ident}: bad url {url}"
    assert not parts.netloc.endswith("."), f"{ident}: host ends with a dot: {url}"


def _check_prose(ident: str, text: object) -> None:
    assert isinstance(text, str) and len(text) >= 40, f"{ident}: prose too short"
    sentences = [s for s in re.split(r"(?<=[.!?])\s+", text.strip()) if s]
    assert 1 <= len(sentences) <= 3, f"{ident}: {len(sentences)} sentences"


def _check_keywords(ident: str, keywords: object) -> None:
    assert isinstance(keywords, list) and keywords, f"{ident}: keywords missing"
    assert all(isinstance(k, str) and k.strip() for k in keywords), f"{ident}: bad keyword"


@pytest.mark.parametrize("name", ["resources.yaml", "referrals.yaml", "tools.yaml"])
def test_files_load_with_safe_load(name: str) -> None:
    assert _load(name)


def test_resource_entries_are_well_formed() -> None:
    for item in resources():
        _check_common(item, RESOURCE_FIELDS, RESOURCE_KINDS)
        for key in ("title", "publisher", "audience"):
            assert isinstance(item[key], str) and item[key].strip(), f"{item['id']}: {key}"
        year = item["year"]
        assert year is None or (isinstance(year, int) and 1950 <= year <= 2026), item["id"]
        assert dt.date.fromisoformat(item["reviewed"]) == dt.date(2026, 11, 1), item["id"]
        _check_prose(item["id"], item["annotation"])
        _check_keywords(item["id"], item["keywords"])


def test_referral_entries_are_well_formed() -> None:
    for item in referrals():
        _check_common(item, REFERRAL_FIELDS, REFERRAL_KINDS)
        assert isinstance(item["name"], str) and item["name"].strip(), item["id"]
        _check_prose(item["id"], item["description"])
        contact = item["contact"]
        if contact != "via website":
            _check_url(item["id"], contact)


def test_tool_entries_are_well_formed() -> None:
    for item in tools():
        _check_common(item, TOOL_FIELDS, TOOL_KINDS)
        for key in ("title", "publisher"):
            assert isinstance(item[key], str) and item[key].strip(), f"{item['id']}: {key}"
        _check_prose(item["id"], item["annotation"])
        _check_keywords(item["id"], item["keywords"])


def test_ids_are_unique_across_the_library() -> None:
    ids = Counter(item["id"] for item in resources() + referrals() + tools())
    assert not [i for i, n in ids.items() if n > 1]


@pytest.mark.parametrize("name", ["resources.yaml", "referrals.yaml", "tools.yaml"])
def test_urls_are_unique_within_each_file(name: str) -> None:
    urls = Counter(item["url"] for item in _load(name))
    assert not [u for u, n in urls.items() if n > 1]


def test_library_meets_its_size_targets() -> None:
    assert len(resources()) >= 220
    assert len(referrals()) >= 32
    assert len(tools()) >= 20


def test_every_topic_has_at_least_fourteen_resources() -> None:
    per_topic = Counter(t for item in resources() for t in item["topics"])
    assert {t: per_topic[t] for t in TOPICS if per_topic[t] < 14} == {}


def test_every_topic_has_a_referral_and_a_tool() -> None:
    assert {t for item in referrals() for t in item["topics"]} == TOPICS
    assert {t for item in tools() for t in item["topics"]} == TOPICS


def test_every_url_is_recorded_in_sources() -> None:
    sources = (DATA / "SOURCES.md").read_text(encoding="utf-8")
    recorded = set(re.findall(r"<(https://[^>\s]+)>", sources))
    urls = {item["url"] for item in resources() + referrals() + tools()}
    urls |= {item["contact"] for item in referrals() if item["contact"] != "via website"}
    assert sorted(urls - recorded) == []


# Each subject a city commonly asks about must be findable by its usual words.
SUBJECTS = {
    "bond rating": ["bond rating"],
    "fund balance": ["fund balance"],
    "pensions": ["pension"],
    "violence reduction": ["violence", "violent crime"],
    "zoning reform": ["zoning"],
    "accessory dwelling units": ["adu", "accessory dwelling"],
    "jobs from infrastructure money": ["infrastructure jobs"],
    "CDBG": ["cdbg"],
    "CDBG for demolition": ["demolition"],
    "HOME": ["home investment partnerships", "home program"],
    "LIHTC": ["lihtc"],
    "ESG and homelessness": ["emergency solutions grants", "homelessness"],
    "land banks": ["land bank"],
    "vacant property registries": ["vacant property registration", "vacant building registr"],
    "code enforcement": ["code enforcement"],
    "311": ["311"],
    "performance management": ["performance management"],
    "open data": ["open data"],
    "procurement": ["procurement"],
    "public records": ["public records"],
    "open meetings": ["open meetings", "open public meetings"],
    "participatory budgeting": ["participatory budgeting"],
    "broadband": ["broadband"],
    "lead pipes": ["lead service line"],
    "stormwater": ["stormwater"],
    "SS4A and traffic safety": ["ss4a", "vision zero"],
    "emergency management": ["emergency management", "emergency operations plan"],
    "parks": ["park"],
    "public health": ["public health"],
    "youth employment": ["summer youth employment", "youth employment"],
}


@pytest.mark.parametrize("subject", sorted(SUBJECTS))
def test_library_covers_common_subjects(subject: str) -> None:
    texts = [_text(item) for item in resources()]
    hits = [t for t in texts if any(term in t for term in SUBJECTS[subject])]
    assert len(hits) >= 2, f"{subject}: {len(hits)} resources"


NETWORK = {
    "National League of Cities": "nlc.org",
    "Bloomberg Philanthropies": "bloomberg.org",
    "Bloomberg Cities Network": "bloombergcities.jhu.edu",
    "What Works Cities": "whatworkscities.bloomberg.org",
    "ICMA": "icma.org",
    "GFOA": "gfoa.org",
    "Center for Community Progress": "communityprogress.org",
    "Urban Institute": "urban.org",
}


@pytest.mark.parametrize("org", sorted(NETWORK))
def test_network_organisations_are_referrals(org: str) -> None:
    hosts = {urlsplit(item["url"]).netloc.removeprefix("www.") for item in referrals()}
    assert NETWORK[org] in hosts, org
