"""The :class:`desk.ports.Classifier` implementation over the trained spaCy pipeline."""

from __future__ import annotations

import gc
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

from numpy.typing import NDArray
from spacy.language import Language

from desk.ports import TOPICS, Classification, Entity, TopicScore
from nlp.batch import JoinedDoc, join
from nlp.entities import ENTITY_COMPONENT, EntityFinder
from nlp.pipeline import LABELS, TOPIC_CLASSIFIER, PipelineConfig, TopicClassifier
from nlp.topic_prior import PRIOR_COMPONENT, TopicPrior
from nlp.urgency import URGENCY_COMPONENT, UrgencyDetector

__all__ = ["SpacyClassifier", "select_topics"]

_BATCH = 256
_T = TypeVar("_T")
_INDEX = {topic: i for i, topic in enumerate(TOPICS)}
_BY_ID = tuple(sorted(TOPICS))


def _ranked(scores: dict[str, float]) -> list[str]:
    """Every topic by score, best first, ties by topic id (the sort is stable, also in
    reverse, and its input is in id order); ``scores`` has every topic."""
    return sorted(_BY_ID, key=scores.__getitem__, reverse=True)


def select_topics(scores: Mapping[str, float], config: PipelineConfig,
                  lead: Sequence[float] | None = None) -> list[str]:
    """1-3 topic ids, best first. The scores choose them: the best always, the next two only
    when they are both reasonably likely on their own and not far behind the best. With the
    lead heads' scores (in the order of ``TOPICS``), the chosen ones are then ordered by
    ``score + lead_weight * lead``."""
    return _choose({t: float(scores.get(t, 0.0)) for t in TOPICS}, config, lead)[1]


def _choose(scores: dict[str, float], config: PipelineConfig, lead: Sequence[float] | None,
            ) -> tuple[list[str], list[str]]:
    """Every topic ranked by score, and the chosen ones in their final order."""
    ranked = _ranked(scores)
    return ranked, _lead_first(_select(ranked, scores, config), scores, lead, config)


def _select(ranked: Sequence[str], scores: dict[str, float], config: PipelineConfig,
            ) -> list[str]:
    best = scores[ranked[0]]
    chosen = [ranked[0]]
    for topic in ranked[1:3]:
        s = scores[topic]
        if s >= config.second_min and s >= config.second_rel * best:
            chosen.append(topic)
        else:
            break
    return chosen


def _lead_first(chosen: list[str], scores: dict[str, float], lead: Sequence[float] | None,
                config: PipelineConfig) -> list[str]:
    weight = config.lead_weight
    if lead is None or len(chosen) < 2 or weight <= 0.0:
        return chosen
    # Stable: a tie keeps the order of the scores.
    return sorted(chosen, key=lambda t: scores[t] + weight * lead[_INDEX[t]],
                  reverse=True)


def _component(nlp: Language, name: str, kind: type[_T]) -> _T:
    component = nlp.get_pipe(name)
    if not isinstance(component, kind):
        raise TypeError(f"the pipeline's {name!r} is a {type(component).__name__}, "
                        f"not a {kind.__name__}")
    return component


class SpacyClassifier:
    """Topics, entities and urgency for one text or many.

    A batch is tokenized as one Doc (:mod:`nlp.batch`) and goes through the pipeline's
    components by their batch methods, which return for each text what the component would write
    on its own doc: the same results (tested), without a Doc per text and spaCy's per-doc
    bookkeeping (``doc.cats``, ``doc.ents``, extension values), which cost more than the finding
    itself. ``nlp`` remains the whole pipeline, for anyone who wants the docs.
    """

    def __init__(self, nlp: Language, config: PipelineConfig, meta: dict[str, Any] | None = None,
                 ) -> None:
        self.nlp = nlp
        self.config = config
        self.meta = meta or {}
        model = _component(nlp, TOPIC_CLASSIFIER, TopicClassifier).trained()
        if model.labels != LABELS:
            raise ValueError(f"the topic classifier's labels are not {LABELS}: rebuild the model")
        self._predict = model.predict
        self._prior = _component(nlp, PRIOR_COMPONENT, TopicPrior)
        self._entities = _component(nlp, ENTITY_COMPONENT, EntityFinder)
        self._urgency = _component(nlp, URGENCY_COMPONENT, UrgencyDetector)

    def classify(self, text: str) -> Classification:
        return self.classify_many([text])[0]

    def classify_many(self, texts: Sequence[str]) -> list[Classification]:
        return self._each_joined(texts, self._classify_joined)

    def scores(self, texts: Sequence[str]) -> list[dict[str, float]]:
        """Topic scores only (entities and urgency skipped)."""
        return [scores for scores, _lead in self._each_joined(texts, self._topic_scores)]

    def topic_lists(self, texts: Sequence[str]) -> list[list[str]]:
        """The topics :func:`select_topics` chooses and orders for each text (entities and
        urgency skipped), for evaluation: what a case gets unless it goes to triage."""
        return [_choose(scores, self.config, lead)[1]
                for scores, lead in self._each_joined(texts, self._topic_scores)]

    def _each_joined(self, texts: Sequence[str], step: Callable[[JoinedDoc], list[_T]],
                     ) -> list[_T]:
        """``step`` over the texts, a batch at a time, each batch joined into as few Docs as may
        be (:mod:`nlp.batch`): a batch's Doc is still in the CPU cache for every step and is
        freed as soon as its results are built."""
        # A batch allocates many small objects that all survive it: the cyclic collector would
        # scan them again and again for nothing (about a fifth of the time, and as much again
        # when the results are built).
        was_enabled = gc.isenabled()
        gc.disable()
        try:
            out: list[_T] = []
            for start in range(0, len(texts), _BATCH):
                for joined in join(self.nlp, texts[start:start + _BATCH]):
                    out.extend(step(joined))
            return out
        finally:
            if was_enabled:
                gc.enable()

    def _topics(self, joined: JoinedDoc) -> tuple[NDArray[Any], list[list[float] | None],
                                                  list[int]]:
        """The final topic scores of each text of ``joined`` (a row per text, a column per
        topic in the order of ``TOPICS``), its lead heads' scores (None for a text without
        words) and its number of topic cues."""
        learned = self._predict(joined.word_norms())
        n = len(TOPICS)
        return self._prior.blend(self._prior.hits_joined(joined), joined.texts,
                                 learned[:, :n], learned[:, n:])

    def _topic_scores(self, joined: JoinedDoc,
                      ) -> list[tuple[dict[str, float], list[float] | None]]:
        scores, leads, _cues = self._topics(joined)
        return [(dict(zip(TOPICS, row, strict=True)), lead)
                for row, lead in zip(scores.tolist(), leads, strict=True)]

    def _classify_joined(self, joined: JoinedDoc) -> list[Classification]:
        scores, leads, cues = self._topics(joined)
        out = []
        for text, row, lead, n_cues, found, (urgency, reasons) in zip(
                joined.texts, scores.tolist(), leads, cues, self._entities.find_joined(joined),
                self._urgency.measure_joined(joined), strict=True):
            topic_scores = dict(zip(TOPICS, row, strict=True))
            ranked, chosen = _choose(topic_scores, self.config, lead)
            triage = self.needs_triage(topic_scores[ranked[0]], n_cues)
            if triage:  # nothing stands out: offer the reviewer the three best guesses
                chosen = ranked[:3]
            out.append(Classification(
                topics=[TopicScore(t, topic_scores[t]) for t in chosen],
                scores=topic_scores,
                entities=[Entity(label, text[start:end], start, end, value)
                          for label, start, end, value in found],
                urgency=urgency,
                urgency_reasons=reasons,
                needs_triage=triage,
            ))
        return out

    def needs_triage(self, top: float, cues: int) -> bool:
        limit = self.config.triage_below if cues else self.config.triage_below_without_cues
        return top < limit
