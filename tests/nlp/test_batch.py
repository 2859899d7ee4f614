"""A batch tokenized as one Doc gives each text what it gets alone: its tokens, the classifier's
scores, and no match across two texts."""

from __future__ import annotations

import numpy
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from nlp.batch import join
from nlp.classifier import SpacyClassifier
from nlp.data import read_jsonl
from nlp.pipeline import TOPIC_CLASSIFIER, TopicClassifier, word_norms
from tests.nlp.test_classifier import SANITY
from tests.nlp.test_fast_paths import TRICKY

# Special cases of the tokenizer (some of them read across whitespace), affixes, whitespace of
# every kind, and the separator itself.
_PIECES = ("We're", "can't", "U.S.", "a.m.", "Mr.", "e.g.", ":)", ":-D", "=(", ">.<", "''", "'",
           "(", ")", '"', "$2.5M", "(pop.", "60k)", "Springfield,", "OR", "water", "main", "break",
           "HOME", "funds", "Tuesday.", "--", "’s", " ", "  ", "\n", "\t", "\n\n", "\u00a0",
           "\u2009", "\x00", "x", "…", "🙂", "City", "of", "Aberdeen")


def _texts() -> st.SearchStrategy[list[str]]:
    text = st.lists(st.tuples(st.sampled_from(_PIECES), st.sampled_from(("", " "))),
                    max_size=10).map(lambda pieces: "".join(p + sep for p, sep in pieces))
    return st.lists(text, min_size=1, max_size=8)


@settings(max_examples=500, deadline=None)
@given(texts=_texts())
@example(texts=["I'm here", " lead", "trail ", "", "water", "main break", "   "])
@example(texts=["residents'", "''Hello", ")", ":-D>.<", "Hi (", "=(Budget"])
def test_each_text_gets_the_tokens_it_gets_alone(classifier: SpacyClassifier,
                                                 texts: list[str]) -> None:
    nlp = classifier.nlp
    seen: list[str] = []
    for joined in join(nlp, texts):
        doc = joined.doc
        for i, text in enumerate(joined.texts):
            alone = nlp.make_doc(text)
            tokens = doc[joined.starts[i]:joined.ends[i]]
            offset = joined.offsets[i]
            assert [(t.text, t.idx - offset) for t in tokens] == [(t.text, t.idx) for t in alone]
            assert joined.word_norms()[i].tolist() == [t.norm for t in alone if not t.is_space]
            seen.append(text)
    assert seen == texts


def test_a_batch_is_one_doc_and_a_text_with_outer_whitespace_is_alone(
        classifier: SpacyClassifier) -> None:
    texts = ["one", "two", " three", "four", "five\n", "", "six", "seven"]
    assert [list(j.texts) for j in join(classifier.nlp, texts)] == [
        ["one", "two"], [" three"], ["four"], ["five\n"], [""], ["six", "seven"]]


def test_the_classifier_scores_a_batch_as_each_doc(classifier: SpacyClassifier) -> None:
    texts = [q.text for q in read_jsonl(SANITY)] + [t for t in TRICKY if t.strip()]
    component = classifier.nlp.get_pipe(TOPIC_CLASSIFIER)
    assert isinstance(component, TopicClassifier)
    model = component.trained()
    batched = numpy.concatenate([model.predict(j.word_norms())
                                 for j in join(classifier.nlp, texts)])
    alone = [model.predict([word_norms(classifier.nlp.make_doc(t))])[0] for t in texts]
    assert batched.tolist() == numpy.asarray(alone).tolist()


def test_a_special_case_across_a_join_changes_neither_text(classifier: SpacyClassifier) -> None:
    # spaCy's special-case matcher reads "'" then "'" as "''" across whitespace, and would keep
    # that over the second text's own "''".
    texts = ["residents'", "''Hello", ")", ":-D>.<", "Hi (", "=(Budget"]
    for text, result in zip(texts, classifier.classify_many(texts), strict=True):
        assert result.scores == classifier.nlp(text).cats


def test_a_place_pattern_across_a_join_is_none(classifier: SpacyClassifier) -> None:
    # Joined, "City" + " " + "of x" reads "City of x", and the place pattern also takes a tab.
    texts = ["City\tof Aberdeen City", "of x"]
    assert classifier.classify_many(texts)[0].entities == []
    assert [(e.label_, e.text) for e in classifier.nlp(texts[0]).ents] == []


def test_a_text_must_be_a_string(classifier: SpacyClassifier) -> None:
    with pytest.raises(TypeError, match="must be a str, not bytes"):
        classifier.classify_many(["fine", b"bytes"])  # type: ignore[list-item]


def test_no_cue_or_entity_spans_two_texts(classifier: SpacyClassifier) -> None:
    # Together they would read "water main break" and "Community Development Block Grant".
    texts = ["Our budget needs work on the water", "main break reserve.", "Community Development",
             "Block Grant rules?"]
    batch = classifier.classify_many(texts)
    assert batch == [classifier.classify(t) for t in texts]
    assert batch[0].urgency_reasons == []
    assert batch[1].urgency_reasons == ["emergency: main break"]
    assert batch[2].entities == batch[3].entities == []
    assert classifier.classify(" ".join(texts[2:])).entities[0].value == "CDBG"
