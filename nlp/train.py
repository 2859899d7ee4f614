"""Training and evaluation of the topic classifier.

``train_pipeline`` trains on the train split of the labelled questions plus any extra examples
(reviewer corrections: objects with ``.text`` and ``.topics``); extra examples never enter the dev
split. ``evaluate`` reports per-topic precision/recall/F1, micro and macro averages and top-1
accuracy on the dev split. Training is deterministic: the same data gives the same model
(:mod:`nlp.topic_model` fits to the optimum; there is no seed).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy
from numpy.typing import NDArray

from desk.ports import TOPICS
from nlp.classifier import SpacyClassifier
from nlp.data import LabelledText, Question, split
from nlp.pipeline import (
    LABELS,
    TOPIC_CLASSIFIER,
    PipelineConfig,
    TopicClassifier,
    make_pipeline,
    pipe_of,
    word_norms,
)
from nlp.topic_model import TopicModel

__all__ = [
    "Metrics",
    "TopicMetrics",
    "compute_metrics",
    "evaluate",
    "retrain",
    "train_pipeline",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TopicMetrics:
    precision: float
    recall: float
    f1: float
    support: int


@dataclass(frozen=True)
class Metrics:
    n: int
    top1_accuracy: float  # predicted best topic == labelled best topic
    top1_in_gold: float  # predicted best topic is one of the labelled topics
    micro: TopicMetrics
    macro: TopicMetrics
    per_topic: dict[str, TopicMetrics] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _prf(tp: int, fp: int, fn: int) -> tuple[float, float, float]:
    p = tp / (tp + fp) if tp + fp else 0.0
    r = tp / (tp + fn) if tp + fn else 0.0
    f = 2 * p * r / (p + r) if p + r else 0.0
    return p, r, f


def compute_metrics(gold: Sequence[Sequence[str]], predicted: Sequence[Sequence[str]]) -> Metrics:
    """Metrics of predicted topic lists (best first) against labelled ones."""
    counts = {t: [0, 0, 0] for t in TOPICS}  # tp, fp, fn
    top1 = in_gold = 0
    for g, p in zip(gold, predicted, strict=True):
        gs, ps = set(g), set(p)
        for t in ps & gs:
            counts[t][0] += 1
        for t in ps - gs:
            counts[t][1] += 1
        for t in gs - ps:
            counts[t][2] += 1
        if p and g and p[0] == g[0]:
            top1 += 1
        if p and p[0] in gs:
            in_gold += 1
    per_topic: dict[str, TopicMetrics] = {}
    for t, (tp, fp, fn) in counts.items():
        pr, rc, f1 = _prf(tp, fp, fn)
        per_topic[t] = TopicMetrics(round(pr, 4), round(rc, 4), round(f1, 4), tp + fn)
    tp = sum(c[0] for c in counts.values())
    fp = sum(c[1] for c in counts.values())
    fn = sum(c[2] for c in counts.values())
    mp, mr, mf = _prf(tp, fp, fn)
    present = [m for m in per_topic.values() if m.support]
    k = len(present) or 1
    n = len(gold)
    return Metrics(
        n=n,
        top1_accuracy=round(top1 / n, 4) if n else 0.0,
        top1_in_gold=round(in_gold / n, 4) if n else 0.0,
        micro=TopicMetrics(round(mp, 4), round(mr, 4), round(mf, 4), tp + fn),
        macro=TopicMetrics(
            round(sum(m.precision for m in present) / k, 4),
            round(sum(m.recall for m in present) / k, 4),
            round(sum(m.f1 for m in present) / k, 4),
            tp + fn,
        ),
        per_topic=per_topic,
    )


def _targets(topic_lists: Sequence[Sequence[str]]) -> NDArray[numpy.float64]:
    """A row per text, a column per label (``LABELS``): 1 for each listed topic, and for the lead
    head of the one listed first."""
    targets = numpy.zeros((len(topic_lists), len(LABELS)))
    for row, topics in enumerate(topic_lists):
        for topic in topics[:3]:
            targets[row, TOPICS.index(topic)] = 1.0
        targets[row, len(TOPICS) + TOPICS.index(topics[0])] = 1.0
    return targets


def train_pipeline(
    questions: Iterable[Question],
    extra: Iterable[LabelledText] = (),
    *,
    config: PipelineConfig | None = None,
) -> SpacyClassifier:
    """Train on the train split of ``questions`` plus all of ``extra``."""
    config = config or PipelineConfig()
    train, _dev = split(questions)
    texts: list[tuple[str, Sequence[str]]] = [(q.text, q.topics) for q in train]
    texts += [(e.text, list(e.topics)) for e in extra if e.text.strip() and e.topics]
    nlp = make_pipeline(config)
    norms = [word_norms(nlp.make_doc(text)) for text, _ in texts]
    pipe_of(nlp, TOPIC_CLASSIFIER, TopicClassifier).model = TopicModel.fit(
        norms, _targets([topics for _, topics in texts]), LABELS, config.c)
    log.info("trained on %d examples (%d extra)", len(texts), len(texts) - len(train))
    return SpacyClassifier(nlp, config)


def evaluate(classifier: SpacyClassifier, questions: Iterable[Question]) -> Metrics:
    """Metrics on the dev split of ``questions``."""
    _train, dev = split(questions)
    predicted = classifier.topic_lists([q.text for q in dev])
    return compute_metrics([q.topics for q in dev], predicted)


def retrain(
    questions: Sequence[Question],
    corrections: Sequence[LabelledText],
    current: SpacyClassifier,
) -> tuple[SpacyClassifier, Metrics, Metrics]:
    """Retrain with the corrections; return the new classifier and dev metrics before/after."""
    before = evaluate(current, questions)
    new = train_pipeline(questions, corrections, config=current.config)
    after = evaluate(new, questions)
    return new, before, after
