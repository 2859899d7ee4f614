"""The pipeline's shortcuts give what the plain way gives: tokens through the chunk cache, regular
expressions rewritten to scan faster, and the batched path against one text at a time."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import spacy
from hypothesis import example, given, settings
from hypothesis import strategies as st
from spacy.language import Language

from nlp import entities
from nlp.build import load_model
from nlp.classifier import SpacyClassifier, select_topics
from nlp.data import load_questions, read_jsonl
from nlp.pipeline import LANG, TOKENIZER_CACHE
from tests.nlp.test_classifier import SANITY

# Texts where the shortcuts matter: contractions (the tokenizer's special cases) before words
# with affixes, money in every form, places with states, "City of", dates and deadlines.
TRICKY = [
    "We're in Springfield, OR (pop. 60k) and can't pay the $2.5M bond; council votes Tuesday.",
    "I'm the clerk of the Town of Hazard, KY. Our FY25 budget is US$3,400,000 -- help!",
    "Don't know if HOME funds or CDBG-DR apply: 5 million dollars, due 3/15/2025.",
    "Y'all, the City of Mobile, AL and Eugene OR asked about a $500k HOME-ARP grant.",
    "Hi! it's urgent, boil-water notice since Monday... $ 40 k? us$5 mm? $$3, 2 USD.",
    "The Village of St. Louis Park, Minnesota wants a land bank (end of the month).",
    "a half million dollars, several thousand dollars, twenty thousand dollars",
    "residents' ''Hello :-D>.< =(Budget",
    "City\tof Aberdeen City of x",
    "",
    "   ",
]


def _tokens(doc: spacy.tokens.Doc) -> list[tuple[str, str, int]]:
    return [(t.text, t.whitespace_, t.idx) for t in doc]


def test_the_tokenizer_caches_more_chunks_than_spacys_default() -> None:
    """spaCy caches 10,000 chunks; a service reads more distinct ones than that, and one left
    out of the cache goes through the affix rules every time it comes back."""
    nlp = spacy.blank(LANG)
    assert nlp.tokenizer.max_cache_size < TOKENIZER_CACHE  # spaCy's own default
    nlp.make_doc("We're here: " + " ".join(f"w{i}x" for i in range(12_000)))
    assert nlp.tokenizer.max_cache_size == TOKENIZER_CACHE
    assert len(nlp._chunks_seen) == 12_002  # every chunk, each tokenized alone once
    nlp.tokenizer = spacy.blank("en").tokenizer  # a tokenizer set later gets the limit too
    nlp.make_doc("hello")
    assert nlp.tokenizer.max_cache_size == TOKENIZER_CACHE


def test_make_doc_splits_like_a_fresh_tokenizer(classifier: SpacyClassifier) -> None:
    nlp = classifier.nlp
    reference = spacy.blank("en").tokenizer
    texts = TRICKY + [q.text for q in read_jsonl(SANITY)]
    for _ in range(2):  # the second time round, every chunk comes from the cache
        for text in texts:
            assert _tokens(nlp.make_doc(text)) == _tokens(reference(text))


def test_classify_many_is_classify_and_the_plain_pipeline(classifier: SpacyClassifier) -> None:
    """The batch reads what each component finds without writing it on the doc: the same
    topics, scores, entities and urgency as the whole pipeline run doc by doc."""
    texts = TRICKY + [q.text for q in read_jsonl(SANITY)]
    many = classifier.classify_many(texts)
    assert many == [classifier.classify(t) for t in texts]
    for text, result in zip(texts, many, strict=True):
        doc = classifier.nlp(text)
        assert doc.cats == result.scores
        if not result.needs_triage:
            assert [t.topic for t in result.topics] == select_topics(
                doc.cats, classifier.config, doc._.topic_lead)
        assert [(e.label_, e.start_char, e.end_char) for e in doc.ents] == [
            (e.label, e.start, e.end) for e in result.entities]
        assert doc._.entity_values == {(e.start, e.end): e.value for e in result.entities}
        assert doc._.urgency == result.urgency
        assert doc._.urgency_reasons == result.urgency_reasons
        assert all(t.ent_iob_ in ("B", "I", "O") for t in doc)


def test_classifying_one_text_keeps_none_of_its_new_words(classifier: SpacyClassifier) -> None:
    """The service classifies case by case for months: a text's new words (a phone number, a
    name) must not stay in the vocabulary. The results are the batch's (above)."""
    vocab = classifier.nlp.vocab
    classifier.classify("warm: Can we use CDBG funds in Gary, IN? $2.5 million by Tuesday.")
    strings, lexemes = len(vocab.strings), len(list(vocab))
    for i in range(30):
        result = classifier.classify(
            f"Can we use CDBG funds for the Qzx{i}vel Street sidewalk in Gary, IN? "
            f"It is ${i + 2}.5 million; call Jo Wyxl{i} at 555-01{i:02d} by Tuesday.")
        assert ("PROGRAM", "CDBG") in [(e.label, e.text) for e in result.entities]
        assert f"Qzx{i}vel" not in vocab.strings
    assert len(vocab.strings) == strings and len(list(vocab)) == lexemes


def test_one_text_in_a_zone_is_the_batch_on_words_never_seen(model_dir: Path) -> None:
    """Two fresh classifiers, so that every word is new to both: one text at a time (each in a
    memory zone) gives what the batch gives."""
    texts = TRICKY + [q.text for q in read_jsonl(SANITY)]
    alone = load_model(model_dir)
    assert [alone.classify(t) for t in texts] == load_model(model_dir).classify_many(texts)
    # ... and kept none of them: as many strings as a classifier that has read nothing.
    assert len(alone.nlp.vocab.strings) == len(load_model(model_dir).nlp.vocab.strings)


def test_warming_keeps_words_that_one_text_at_a_time_would_not(model_dir: Path) -> None:
    texts = [q.text for q in load_questions()][:300]
    classifier = load_model(model_dir)

    def lexemes() -> int:
        return len(list(classifier.nlp.vocab))

    before = lexemes()
    for text in texts[:50]:
        classifier.classify(text)
    assert lexemes() == before  # a zone keeps nothing
    classifier.warm(texts)
    warmed = lexemes()
    assert warmed > before + 1000
    for text in texts[:50]:  # now their words are known: nothing to make, nothing to free
        assert classifier.classify(text) == classifier.classify_many([text])[0]
    assert lexemes() == warmed


def test_classify_inside_a_callers_memory_zone_leaves_the_zone_open(
        classifier: SpacyClassifier) -> None:
    nlp = classifier.nlp
    with nlp.memory_zone():
        doc = nlp.make_doc("Our Zqxwv budget gap")
        result = classifier.classify("Can we use CDBG funds for the Wqzxv sidewalk?")
        assert nlp.vocab.in_memory_zone
        assert [t.text for t in doc] == ["Our", "Zqxwv", "budget", "gap"]  # still readable
    assert ("PROGRAM", "CDBG") in [(e.label, e.text) for e in result.entities]
    assert "Zqxwv" not in nlp.vocab.strings and "Wqzxv" not in nlp.vocab.strings


@pytest.mark.parametrize(("text", "found"), [
    ("US$5 and us$ 3k", [("US$5", "5"), ("us$ 3k", "3000")]),
    ("$$5, then $7.5 million", [("$5", "5"), ("$7.5 million", "7500000")]),
    ("ten thousand dollars or $4", [("ten thousand dollars", "10000"), ("$4", "4")]),
    ("$40 USD", [("$40", "40")]),
])
def test_money_forms(untrained: Language, text: str, found: list[tuple[str, str]]) -> None:
    doc = untrained(text)
    assert [(e.text, doc._.entity_values[(e.start_char, e.end_char)])
            for e in doc.ents if e.label_ == "MONEY"] == found


# The patterns as first written: the faster ones must find exactly the same.
_PLAIN_NUMBER_DATE_HINT = re.compile(r"(?:19|20)\d\d|\d/\d")
_PLAIN_CITY_OF = re.compile(
    rf"\b(?:City|Town|Village|Borough|Township|city|town|village)[ \t]of[ \t]"
    rf"(?P<place>(?:{entities._CAP_WORD}[ \t]){{0,2}}{entities._CAP_WORD})")

def _texts(*pieces: str) -> st.SearchStrategy[str]:
    return st.lists(st.sampled_from(pieces), max_size=14).map("".join)


def _spans(matches: Iterator[re.Match[str]]) -> list[tuple[tuple[int, int], dict[str, Any]]]:
    return [(m.span(), m.groupdict()) for m in matches]


@settings(max_examples=800, deadline=None)
@given(text=_texts("$", "US", "us", "uſ", "U", "s", "5", "2.5", "1,000", " ", "  ", ",", ".",
                   "k", "M", "mm", "million", "thousand", "a", "few", "half", "dollars",
                   "DOLLARS", "USD", "usd", "x"))
@example(text="US$5 us$ 3k $$5 uſ$2")
def test_money_matches_the_plain_scan(text: str) -> None:
    assert _spans(entities._money_matches(text)) == _spans(entities._MONEY_RE.finditer(text))


@settings(max_examples=500, deadline=None)
@given(text=_texts("19", "20", "1", "2", "0", "9", "/", " ", "x", "٣"))
@example(text="1999 20/3 2024")
def test_date_hint_matches_the_plain_pattern(text: str) -> None:
    assert _spans(entities._NUMBER_DATE_HINT_RE.finditer(text)) == _spans(
        _PLAIN_NUMBER_DATE_HINT.finditer(text))


_PLACE_PIECES = ("City", "Town", "Township", "Village", "Borough", "town", "city", "of", "Mc",
                 "Springfield", "St.", "Louis", "Kearney", "OR", "Oregon", "NE", "West",
                 "Virginia", "x", "_", "-", "'", "’", " ", " ", "\t", ", ")


@settings(max_examples=800, deadline=None)
@given(text=_texts(*_PLACE_PIECES))
@example(text="the Town of St. Louis Park, West Virginia; xCity of Kearney NE")
def test_place_patterns_match_the_plain_ones(untrained: Language, text: str) -> None:
    finder = untrained.get_pipe(entities.ENTITY_COMPONENT)
    assert isinstance(finder, entities.EntityFinder)
    assert _spans(finder.city_of_re.finditer(text)) == _spans(_PLAIN_CITY_OF.finditer(text))
    plain_place_state = re.compile(finder.place_state_re.pattern.replace(
        r"(?P<place>[A-Z](?<!\w[A-Z])[\w'’.\-]*(?:[ \t]" + entities._CAP_WORD + "){0,3})",
        r"\b(?P<place>(?:" + entities._CAP_WORD + r"[ \t]){0,3}" + entities._CAP_WORD + ")"))
    assert plain_place_state.pattern != finder.place_state_re.pattern
    for start in range(len(text) + 1):  # the component searches windows
        assert _spans(finder.place_state_re.finditer(text, start)) == _spans(
            plain_place_state.finditer(text, start))


