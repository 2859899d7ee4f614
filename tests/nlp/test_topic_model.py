"""The topic model is scikit-learn's TF-IDF + logistic regression over our stems: the same
probabilities, with the features looked up by hash, a batch at once."""

from __future__ import annotations

import numpy
import pytest
from numpy.typing import NDArray
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression

from desk.ports import TOPICS
from nlp.classifier import SpacyClassifier
from nlp.data import load_questions, split
from nlp.pipeline import word_norms
from nlp.topic_model import TopicModel, _KeyTable
from tests.nlp.test_fast_paths import TRICKY


def _norms(classifier: SpacyClassifier, texts: list[str]) -> list[NDArray[numpy.uint64]]:
    return [word_norms(classifier.nlp.make_doc(t)) for t in texts]


def _stems(classifier: SpacyClassifier, text: str) -> str:
    return " ".join(t.norm_ for t in classifier.nlp.make_doc(text) if not t.is_space)


def test_probabilities_are_scikit_learns_tfidf_and_logistic_regression(
        classifier: SpacyClassifier) -> None:
    train, dev = split(load_questions()[::4])
    labels = ["housing", "budget_finance"]
    targets = numpy.array([[t in q.topics for t in labels] for q in train], dtype=float)
    ours = TopicModel.fit(_norms(classifier, [q.text for q in train]), targets, labels, 30.0)

    vectorizer = TfidfVectorizer(tokenizer=str.split, lowercase=False, token_pattern=None,
                                 sublinear_tf=True, ngram_range=(1, 2))
    x = vectorizer.fit_transform([_stems(classifier, q.text) for q in train])
    assert ours.keys.size == len(vectorizer.vocabulary_)
    texts = [q.text for q in dev] + [t for t in TRICKY if t.strip()] + ["zzyzx qwerty"]
    x_dev = vectorizer.transform([_stems(classifier, t) for t in texts])
    predicted = ours.predict(_norms(classifier, texts))
    for j in range(len(labels)):
        theirs = LogisticRegression(C=30.0, max_iter=5000).fit(x, targets[:, j])
        expected = theirs.predict_proba(x_dev)[:, 1]
        assert numpy.abs(predicted[:, j] - expected).max() < 1e-5
    # Words the model never saw: the intercept alone.
    assert predicted[-1].tolist() == pytest.approx((1 / (1 + numpy.exp(-ours.bias))).tolist())


def test_a_batch_gives_each_text_its_own_scores_and_survives_a_round_trip(
        classifier: SpacyClassifier) -> None:
    questions = load_questions()[::6]
    targets = numpy.array([[t in q.topics for t in TOPICS] for q in questions], dtype=float)
    model = TopicModel.fit(_norms(classifier, [q.text for q in questions]), targets, TOPICS, 30.0)
    texts = ["", *TRICKY, "budget budget budget", "", *[q.text for q in questions[:30]], ""]
    arrays = _norms(classifier, texts)
    batch = model.predict(arrays)
    alone = numpy.concatenate([model.predict([a]) for a in arrays])
    assert batch.tolist() == alone.tolist()
    assert batch[0].tolist() == batch[-1].tolist()  # empty texts alike, wherever they stand
    assert len({tuple(row) for row in batch.tolist()}) > 20
    again = TopicModel.from_bytes(model.to_bytes())
    assert again.labels == TOPICS
    assert again.predict(arrays).tolist() == batch.tolist()


def test_a_label_nobody_has_gets_no_weight(classifier: SpacyClassifier) -> None:
    questions = load_questions()[::20]
    targets = numpy.array([[1.0, 0.0] if "housing" in q.topics else [0.0, 0.0]
                           for q in questions])
    model = TopicModel.fit(_norms(classifier, [q.text for q in questions]), targets,
                           ["housing", "never"], 30.0)
    scores = model.predict(_norms(classifier, [q.text for q in questions]))
    assert scores[:, 1].max() < 1e-9
    assert scores[:, 0].max() > 0.5


def test_the_key_table_finds_every_key_and_only_those() -> None:
    rng = numpy.random.default_rng(5)
    keys = numpy.unique(rng.integers(0, 2**63, size=5000, dtype=numpy.uint64))
    # Keys that share their home slot, and runs of neighbouring slots: long probes.
    crowded = numpy.array([7 + (i << 20) for i in range(40)] + list(range(100, 140)),
                          dtype=numpy.uint64)
    keys = numpy.unique(numpy.concatenate((keys, crowded)))
    table = _KeyTable(keys)
    assert table.probes > 30
    assert table.find(keys).tolist() == list(range(keys.size))
    others = numpy.setdiff1d(rng.integers(0, 2**63, size=5000, dtype=numpy.uint64), keys)
    near = numpy.array([7 + (41 << 20), 140, 99], dtype=numpy.uint64)  # at a crowded slot
    assert (table.find(numpy.concatenate((others, near))) == -1).all()
    assert (_KeyTable(numpy.zeros(0, dtype=numpy.uint64)).find(keys) == -1).all()
