"""Entity cases, including the tricky ones: state codes that are words, money forms, programs."""

from __future__ import annotations

import pytest
from spacy.language import Language


def ents(nlp: Language, text: str) -> list[tuple[str, str, str | None]]:
    doc = nlp(text)
    return [(e.label_, e.text, doc._.entity_values[(e.start_char, e.end_char)]) for e in doc.ents]


def labels(nlp: Language, text: str, label: str) -> list[str]:
    return [t for lab, t, _ in ents(nlp, text) if lab == label]


@pytest.mark.parametrize(("text", "city", "state"), [
    ("We're in Springfield, OR and need help.", "Springfield, OR", "OR"),
    ("Finance Director, City of Kearney, NE", "Kearney, NE", "NE"),
    ("Dale Hutchins, Public Works, City of Hannibal, Missouri", "Hannibal, MO", "MO"),
    ("Eugene OR is growing fast.", "Eugene, OR", "OR"),
    ("Portland, ME has a new housing plan.", "Portland, ME", "ME"),
    ("Our town (Hazard, KY) wants a land bank.", "Hazard, KY", "KY"),
    ("Bloomington, IN would like examples.", "Bloomington, IN", "IN"),
])
def test_city_with_state(untrained: Language, text: str, city: str, state: str) -> None:
    found = ents(untrained, text)
    assert ("CITY", city.split(",")[0], city) in found
    assert any(lab == "STATE" and value == state for lab, _, value in found)


@pytest.mark.parametrize("text", [
    "Log IN or sign up, then OK the request.",
    "Me and the clerk think we should wait. OR maybe not?",
    "Hi all, is anyone there? OH well, I'll ask again. PA announcements too.",
    "The DE&I committee and the CO detectors in the fire station.",
    "in or out, me too, ok fine, hi there, oh no, la la la",
])
def test_state_codes_that_are_words_are_not_states(untrained: Language, text: str) -> None:
    assert labels(untrained, text, "STATE") == []


def test_state_names_and_safe_codes(untrained: Language) -> None:
    found = ents(untrained, "Texas cities and TX counties; we moved from Ohio to NY.")
    states = [v for lab, _, v in found if lab == "STATE"]
    assert states == ["TX", "TX", "OH", "NY"]


def test_big_city_alone_and_ambiguous_city_needs_context(untrained: Language) -> None:
    found = ents(untrained, "How did Houston and Kansas City handle this? Mobile homes too.")
    assert ("CITY", "Houston", "Houston, TX") in found
    assert ("CITY", "Kansas City", "Kansas City, MO") in found
    assert not any(t == "Mobile" for _, t, _ in found)
    assert ("CITY", "Mobile", "Mobile, AL") in ents(untrained, "The City of Mobile, AL asked.")


@pytest.mark.parametrize(("text", "money", "value"), [
    ("We have $2.5 million for the project.", "$2.5 million", "2500000"),
    ("a $3k grant", "$3k", "3000"),
    ("about 40,000 dollars left", "40,000 dollars", "40000"),
    ("a $1.2M shortfall", "$1.2M", "1200000"),
    ("nearly two million dollars in repairs", "two million dollars", "2000000"),
    ("the $386,000 wire", "$386,000", "386000"),
    ("a $14.75 fee", "$14.75", "14.75"),
])
def test_money(untrained: Language, text: str, money: str, value: str) -> None:
    assert ("MONEY", money, value) in ents(untrained, text)


@pytest.mark.parametrize(("text", "date", "value"), [
    ("The deadline is March 15, 2025.", "March 15, 2025", "2025-03-15"),
    ("Submit by 3/14/2025 please", "3/14/2025", "2025-03-14"),
    ("for the FY25 budget", "FY25", "FY2025"),
    ("we need it by Friday", "by Friday", "friday"),
    ("since 2021 nothing changed", "since 2021", "2021"),
    ("in May 2024 we tried", "May 2024", "2024-05"),
])
def test_dates(untrained: Language, text: str, date: str, value: str) -> None:
    assert ("DATE", date, value) in ents(untrained, text)


def test_may_as_a_verb_is_not_a_date(untrained: Language) -> None:
    assert labels(untrained, "Whether a city may impose a fee in its own right.", "DATE") == []


def test_programs_agencies_orgs(untrained: Language) -> None:
    text = ("Can CDBG or Section 108 pay for it? HUD said to ask FEMA and the EPA. ICMA and GFOA "
            "have guides. We also use LIHTC, Promise Zones, a RAISE grant and SS4A under the "
            "Bipartisan Infrastructure Law, plus ARPA SLFRF money.")
    found = {(lab, v) for lab, _, v in ents(untrained, text)}
    for program in ("CDBG", "Section 108", "LIHTC", "Promise Zones", "RAISE", "SS4A", "BIL",
                    "ARPA", "SLFRF"):
        assert ("PROGRAM", program) in found
    for agency in ("HUD", "FEMA", "EPA"):
        assert ("AGENCY", agency) in found
    assert {("ORG", "ICMA"), ("ORG", "GFOA")} <= found


@pytest.mark.parametrize(("text", "is_program"), [
    ("Can HOME funds pay for rehab?", True),
    ("We blend CDBG, HOME and ESG for this.", True),
    ("Our HOME-ARP allocation is late.", True),
    ("I'm working from home today.", False),
    ("HOME sweet home.", False),
    ("Should the investment policy add ESG screens?", False),
    ("A RAISE in pay for staff? Please raise it.", False),
])
def test_program_words_only_in_context(untrained: Language, text: str, is_program: bool) -> None:
    programs = labels(untrained, text, "PROGRAM")
    assert bool(programs) is is_program, programs
