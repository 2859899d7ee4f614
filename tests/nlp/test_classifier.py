"""The trained pipeline: loads offline from its artefact, is deterministic, and classifies."""

from __future__ import annotations

import dataclasses
import json
import shutil
import socket
from pathlib import Path

import numpy
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from desk.errors import InputError
from desk.ports import TOPICS, Classifier
from nlp import load_classifier
from nlp.build import FORMAT, build_model, data_hash, load_model, read_meta
from nlp.classifier import SpacyClassifier, _choose, select_topics
from nlp.data import load_questions, read_jsonl, split
from nlp.pipeline import PipelineConfig
from nlp.train import compute_metrics, evaluate

SANITY = Path(__file__).resolve().parent / "data" / "sanity.jsonl"


def test_loads_from_the_artefact_without_network(
    model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise OSError("network access during load")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    classifier = load_classifier(model_dir)
    assert isinstance(classifier, Classifier)
    result = classifier.classify("Our water main keeps breaking; how do we plan replacement?")
    assert result.topics[0].topic == "infrastructure"


def test_a_model_from_an_older_version_is_refused_with_what_to_do(
        model_dir: Path, tmp_path: Path) -> None:
    old = tmp_path / "old-model"
    shutil.copytree(model_dir, old)
    meta = read_meta(old) or {}
    meta.pop("format")  # as the versions before lead heads wrote it
    (old / "city311-model.json").write_text(json.dumps(meta), encoding="utf-8")
    with pytest.raises(InputError, match=r"python -m nlp.build --model-dir .*old-model"):
        load_classifier(old)
    assert load_model(model_dir).meta["format"] == FORMAT


def test_meta_records_what_the_model_was_built_from(model_dir: Path) -> None:
    meta = read_meta(model_dir)
    assert meta is not None
    questions = load_questions()
    assert meta["hash"] == data_hash(questions, PipelineConfig())
    assert meta["n_dev"] >= 0.2 * (meta["n_train"] + meta["n_dev"])


def test_same_data_give_the_same_model(tmp_path: Path) -> None:
    questions = load_questions()[::8]  # a slice keeps the builds quick
    config = PipelineConfig()
    first = build_model(tmp_path / "a", questions, config=config)
    second = build_model(tmp_path / "b", questions, config=config)
    texts = [q.text for q in questions[:40]] + ["hello, is anyone there?"]
    assert first.scores(texts) == second.scores(texts)
    reloaded = load_model(tmp_path / "b")
    assert reloaded.scores(texts) == first.scores(texts)
    # Other data, or another penalty, is another model and another hash.
    other = build_model(tmp_path / "c", questions[1:], config=config)
    assert other.scores(texts) != first.scores(texts)
    weaker = build_model(tmp_path / "d", questions, config=PipelineConfig(c=1.0))
    assert weaker.scores(texts) != first.scores(texts)
    assert data_hash(questions, config) != data_hash(questions[1:], config)
    assert data_hash(questions, config) != data_hash(questions, PipelineConfig(c=1.0))


def test_shape_of_a_classification(classifier: SpacyClassifier) -> None:
    text = ("Hi, I'm the finance director in Springfield, OR. Our council votes Tuesday on a "
            "$2.5 million bond for stormwater repairs after the flood. Can we use CDBG?")
    result = classifier.classify(text)
    assert 1 <= len(result.topics) <= 3
    assert len({t.topic for t in result.topics}) == len(result.topics)
    # The likeliest topics are chosen (the lead heads only order them), each with its score.
    likeliest = sorted(TOPICS, key=lambda t: -result.scores[t])[:len(result.topics)]
    assert {t.topic for t in result.topics} == set(likeliest)
    assert all(t.score == result.scores[t.topic] for t in result.topics)
    assert set(result.scores) == set(TOPICS)
    assert all(0.0 <= s <= 1.0 for s in result.scores.values())
    assert {t.topic for t in result.topics} & {"infrastructure", "budget_finance"}
    labels = {(e.label, e.value) for e in result.entities}
    assert {("CITY", "Springfield, OR"), ("MONEY", "2500000"), ("PROGRAM", "CDBG")} <= labels
    assert result.urgency >= 0.7
    assert not result.needs_triage


@pytest.mark.parametrize("text", ["hello, is anyone there?", "test", "Thanks so much!"])
def test_no_clear_topic_goes_to_triage(classifier: SpacyClassifier, text: str) -> None:
    result = classifier.classify(text)
    assert result.needs_triage
    assert len(result.topics) == 3  # the card shows the three best guesses
    assert result.topics[0].score >= result.topics[1].score >= result.topics[2].score


@pytest.mark.parametrize("blank", ["", "   ", "\n\t"])
def test_a_text_without_words_scores_nothing_alone_or_in_a_batch(
        classifier: SpacyClassifier, blank: str) -> None:
    alone = classifier.classify(blank)
    in_batch = classifier.classify_many(["How do we fix our bond rating?", blank])[1]
    for result in (alone, in_batch):
        assert result.scores == dict.fromkeys(TOPICS, 0.0)
        assert result.needs_triage
    assert alone.topics == in_batch.topics


def test_classify_many_matches_classify(classifier: SpacyClassifier) -> None:
    texts = [q.text for q in read_jsonl(SANITY)]
    many = classifier.classify_many(texts)
    one_by_one = [classifier.classify(t) for t in texts]
    assert [m.scores for m in many] == [o.scores for o in one_by_one]
    assert [m.topics for m in many] == [o.topics for o in one_by_one]


def test_lead_heads_order_the_chosen_topics_and_never_choose_one() -> None:
    config = dataclasses.replace(PipelineConfig(), lead_weight=1.0)
    scores = dict.fromkeys(TOPICS, 0.05) | {"budget_finance": 0.7, "public_safety": 0.6,
                                            "housing": 0.1}

    def lead(**heads: float) -> list[float]:
        return [heads.get(t, 0.0) for t in TOPICS]

    assert select_topics(scores, config) == ["budget_finance", "public_safety"]
    # 0.6 + 0.9 passes 0.7 + 0.1; housing's lead cannot bring it in.
    assert select_topics(scores, config, lead(public_safety=0.9, budget_finance=0.1,
                                              housing=1.0)) == ["public_safety",
                                                                "budget_finance"]
    assert select_topics(scores, config, lead(public_safety=0.05)) == ["budget_finance",
                                                                       "public_safety"]
    assert select_topics(scores, dataclasses.replace(config, lead_weight=0.0),
                         lead(public_safety=1.0)) == ["budget_finance", "public_safety"]


def _rule(scores: dict[str, float], config: PipelineConfig, lead: list[float] | None,
          ) -> tuple[list[str], list[str]]:
    """The choice, stated plainly: the three best by score (ties by id); the best, then the next
    while each is both >= second_min and >= second_rel * best; with a lead, the chosen ordered by
    score + lead_weight * lead (ties keep the score order)."""
    ranked = sorted(sorted(TOPICS), key=lambda t: -scores[t])
    chosen = [ranked[0]]
    for topic in ranked[1:3]:
        if not (scores[topic] >= config.second_min
                and scores[topic] >= config.second_rel * scores[ranked[0]]):
            break
        chosen.append(topic)
    if lead is not None and len(chosen) > 1 and config.lead_weight > 0:
        weight = config.lead_weight
        chosen = sorted(chosen, key=lambda t: -(scores[t] + weight * lead[TOPICS.index(t)]))
    return chosen, ranked[:3]


_VALUE = st.sampled_from([0.0, 0.1, 0.25, 0.3, 0.35, 0.5, 0.9, 1.0]) | st.floats(0, 1)


@settings(max_examples=300, deadline=None)
@given(rows=st.lists(st.tuples(st.lists(_VALUE, min_size=10, max_size=10),
                               st.lists(_VALUE, min_size=10, max_size=10), st.booleans()),
                     min_size=1, max_size=12),
       weight=st.sampled_from([0.0, 0.5, 1.0]))
def test_a_batch_chooses_each_text_s_topics_by_the_rule(
        rows: list[tuple[list[float], list[float], bool]], weight: float) -> None:
    config = dataclasses.replace(PipelineConfig(), lead_weight=weight)
    scores = numpy.array([r[0] for r in rows])
    leads = numpy.array([r[1] for r in rows])
    choice = _choose(scores, leads, numpy.array([r[2] for r in rows]), config)
    for i, (row, lead, has_lead) in enumerate(rows):
        chosen, ranked = _rule(dict(zip(TOPICS, row, strict=True)), config,
                               lead if has_lead else None)
        assert choice.chosen[i] == chosen
        assert choice.ranked[i] == ranked
        assert choice.best[i] == max(row)


def test_lead_heads_put_the_labelled_first_topic_first_more_often(
        classifier: SpacyClassifier) -> None:
    """On the dev split, ordering by score and lead beats ordering by score alone."""
    _train, dev = split(load_questions())
    gold = [q.topics for q in dev]
    by_score = [select_topics(s, classifier.config) for s in classifier.scores(
        [q.text for q in dev])]
    with_lead = classifier.topic_lists([q.text for q in dev])
    assert [set(t) for t in with_lead] == [set(t) for t in by_score]
    assert (compute_metrics(gold, with_lead).top1_accuracy
            > compute_metrics(gold, by_score).top1_accuracy)


def test_dev_metrics_and_hand_written_questions(classifier: SpacyClassifier) -> None:
    metrics = evaluate(classifier, load_questions())
    assert metrics.n >= 200
    # Well above what guessing (10 topics) or always-the-biggest-topic would get.
    assert metrics.top1_accuracy > 0.5
    assert metrics.micro.f1 > 0.55
    sanity = read_jsonl(SANITY)
    predicted = [[t.topic for t in r.topics] for r in classifier.classify_many(
        [q.text for q in sanity])]
    result = compute_metrics([q.topics for q in sanity], predicted)
    assert result.top1_in_gold > 0.75
    json.dumps(metrics.as_dict())
