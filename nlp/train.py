"""Training and evaluation of the topic classifier.

``train_pipeline`` trains on the train split of the labelled questions plus any extra examples
(reviewer corrections: objects with ``.text`` and ``.topics``); extra examples never enter the dev
split. ``evaluate`` reports per-topic precision/recall/F1, micro and macro averages and top-1
accuracy on the dev split. Training is deterministic: same data, same seed, same model.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from spacy.language import Language
from spacy.training import Example
from thinc.api import Adam, fix_random_seed

from desk.ports import TOPICS
from nlp.classifier import SpacyClassifier
from nlp.data import LabelledText, Question, split
from nlp.pipeline import LEAD_LABELS, TEXTCAT, PipelineConfig, make_pipeline

__all__ = [
    "DEFAULT_SEED",
    "Metrics",
    "TopicMetrics",
    "compute_metrics",
    "evaluate",
    "retrain",
    "train_pipeline",
]

log = logging.getLogger(__name__)

DEFAULT_SEED = 311


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


def _cats(topics: Sequence[str], config: PipelineConfig) -> dict[str, float]:
    """Soft targets for the listed topics by rank; the lead heads learn which one is first."""
    cats = dict.fromkeys(TOPICS + LEAD_LABELS, 0.0)
    for rank, topic in enumerate(topics[:3]):
        cats[topic] = config.rank_targets[rank]
    cats[LEAD_LABELS[TOPICS.index(topics[0])]] = 1.0
    return cats


def _accept_soft_targets(examples: Iterable[Example]) -> None:
    for eg in examples:
        if any(not 0.0 <= v <= 1.0 for v in eg.reference.cats.values()):
            raise ValueError("topic targets must lie in [0, 1]")


def train_pipeline(
    questions: Iterable[Question],
    extra: Iterable[LabelledText] = (),
    *,
    config: PipelineConfig | None = None,
    seed: int = DEFAULT_SEED,
) -> SpacyClassifier:
    """Train on the train split of ``questions`` plus all of ``extra``."""
    config = config or PipelineConfig()
    train, _dev = split(questions)
    texts: list[tuple[str, Sequence[str]]] = [(q.text, q.topics) for q in train]
    texts += [(e.text, list(e.topics)) for e in extra if e.text.strip() and e.topics]
    fix_random_seed(seed)
    nlp: Language = make_pipeline(config)
    examples = [Example.from_dict(nlp.make_doc(text), {"cats": _cats(topics, config)})
                for text, topics in texts]
    # Soft targets (the 2nd and 3rd topic below 1.0) teach the ranking, but spaCy's check only
    # allows 0/1. The loss itself is plain BCE and is fine with them; skip the check in training.
    textcat: Any = nlp.get_pipe(TEXTCAT)
    textcat._validate_categories = _accept_soft_targets
    with nlp.select_pipes(enable=[TEXTCAT]):  # the others have nothing to learn
        nlp.initialize(lambda: examples)
        optimizer = Adam(config.learn_rate, L2=config.l2)
        rng = random.Random(seed)
        for epoch in range(config.epochs):
            rng.shuffle(examples)
            losses: dict[str, float] = {}
            size = config.batch_size
            for batch in (examples[i:i + size] for i in range(0, len(examples), size)):
                nlp.update(batch, drop=config.dropout, sgd=optimizer, losses=losses)
            log.debug("epoch %d loss %.4f", epoch, losses.get(TEXTCAT, 0.0))
    log.info("trained on %d examples (%d extra)", len(examples), len(examples) - len(train))
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
    *,
    seed: int = DEFAULT_SEED,
) -> tuple[SpacyClassifier, Metrics, Metrics]:
    """Retrain with the corrections; return the new classifier and dev metrics before/after."""
    before = evaluate(current, questions)
    new = train_pipeline(questions, corrections, config=current.config, seed=seed)
    after = evaluate(new, questions)
    return new, before, after
