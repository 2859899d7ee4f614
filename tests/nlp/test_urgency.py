"""Urgency: deadlines, emergencies, fiscal distress, and calm questions."""

from __future__ import annotations

import pytest
from spacy.language import Language


def urgency(nlp: Language, text: str) -> tuple[float, list[str]]:
    doc = nlp(text)
    return doc._.urgency, doc._.urgency_reasons


@pytest.mark.parametrize(("text", "kind"), [
    ("The council votes Tuesday on the rate increase; we need numbers.", "deadline"),
    ("The application is due Friday.", "deadline"),
    ("A water main break flooded Main Street last night.", "emergency"),
    ("We were hit by a ransomware cyber attack and the billing system is down.", "emergency"),
    ("There was a shooting at the park on Saturday.", "emergency"),
    ("We can't make payroll next month.", "fiscal distress"),
    ("Moody's downgraded us and we may default on a bond payment.", "fiscal distress"),
])
def test_urgent(untrained: Language, text: str, kind: str) -> None:
    score, reasons = urgency(untrained, text)
    assert score >= 0.5
    assert any(r.startswith(kind) for r in reasons), reasons


@pytest.mark.parametrize("text", [
    "Looking for examples of a fund balance policy.",
    "How do other cities structure a vacant building registration fee?",
    "Best practices for a storefront improvement grant program downtown?",
])
def test_calm(untrained: Language, text: str) -> None:
    assert urgency(untrained, text) == (0.0, [])


def test_more_signals_rank_higher(untrained: Language) -> None:
    one, _ = urgency(untrained, "Our deficit is growing.")
    two, _ = urgency(untrained, "Our deficit is growing and we can't make payroll; council votes "
                                "Monday.")
    assert 0 < one < two <= 1.0


def test_a_cue_inside_a_longer_one_counts_once(untrained: Language) -> None:
    _, reasons = urgency(untrained, "A water main break on Elm Street.")
    assert reasons == ["emergency: water main break"]
