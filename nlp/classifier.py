"""The :class:`desk.ports.Classifier` implementation over the trained spaCy pipeline."""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple, TypeVar

import numpy
from numpy.typing import NDArray
from spacy.language import Language

from desk.ports import TOPICS, Classification, Entity, TopicScore
from nlp.batch import JoinedDoc, join
from nlp.entities import ENTITY_COMPONENT, EntityFinder
from nlp.pipeline import LABELS, TOPIC_CLASSIFIER, PipelineConfig, TopicClassifier, pipe_of
from nlp.topic_prior import PRIOR_COMPONENT, Blended, TopicPrior
from nlp.urgency import URGENCY_COMPONENT, UrgencyDetector

__all__ = ["SpacyClassifier", "select_topics"]

_BATCH = 256
_T = TypeVar("_T")
_BY_ID = tuple(sorted(TOPICS))
_ID_COLUMNS = [TOPICS.index(t) for t in _BY_ID]  # the columns of ``TOPICS`` order, by id


def select_topics(scores: Mapping[str, float], config: PipelineConfig,
                  lead: Sequence[float] | None = None) -> list[str]:
    """1-3 topic ids, best first. The scores choose them: the best always, the next two only
    when they are both reasonably likely on their own and not far behind the best. With the
    lead heads' scores (in the order of ``TOPICS``), the chosen ones are then ordered by
    ``score + lead_weight * lead``."""
    row = numpy.array([[float(scores.get(t, 0.0)) for t in TOPICS]])
    leads = None if lead is None else numpy.array([lead], dtype=numpy.float64)
    return _choose(row, leads, numpy.array([lead is not None]), config).chosen[0]


class _Choice(NamedTuple):
    chosen: list[list[str]]  # each text's topics, in their final order
    ranked: list[list[str]]  # each text's three best topics by score
    best: list[float]  # each text's best score


def _choose(scores: NDArray[numpy.float64], leads: NDArray[numpy.float64] | None,
            has_lead: NDArray[numpy.bool_], config: PipelineConfig) -> _Choice:
    """:func:`select_topics` for a batch: scores and leads a row per text, a column per topic in
    the order of ``TOPICS``; a text whose ``has_lead`` is False is ordered by score alone."""
    by_id = scores[:, _ID_COLUMNS]
    # Best first, ties by topic id: a stable sort, with the columns in id order.
    order = numpy.argsort(-by_id, axis=1, kind="stable")[:, :3]
    top = numpy.take_along_axis(by_id, order, axis=1)
    best = top[:, :1]
    likely = (top[:, 1:] >= config.second_min) & (top[:, 1:] >= config.second_rel * best)
    second = likely[:, 0]
    third = second & likely[:, 1]
    final = order
    reorder = second & has_lead
    if leads is not None and config.lead_weight > 0.0 and reorder.any():
        key = top + config.lead_weight * numpy.take_along_axis(leads[:, _ID_COLUMNS], order,
                                                               axis=1)
        key[~second, 1] = -numpy.inf  # not chosen: last
        key[~third, 2] = -numpy.inf
        # Stable again: a tie keeps the order of the scores.
        moved = numpy.argsort(-key[reorder], axis=1, kind="stable")
        final = order.copy()
        final[reorder] = numpy.take_along_axis(order[reorder], moved, axis=1)
    counts = (1 + second + third).tolist()
    return _Choice([[_BY_ID[i] for i in row[:k]] for row, k in zip(final.tolist(), counts,
                                                                    strict=True)],
                   [[_BY_ID[i] for i in row] for row in order.tolist()],
                   best[:, 0].tolist())


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
        model = pipe_of(nlp, TOPIC_CLASSIFIER, TopicClassifier).trained()
        if model.labels != LABELS:
            raise ValueError(f"the topic classifier's labels are not {LABELS}: rebuild the model")
        self._predict = model.predict
        self._prior = pipe_of(nlp, PRIOR_COMPONENT, TopicPrior)
        self._entities = pipe_of(nlp, ENTITY_COMPONENT, EntityFinder)
        self._urgency = pipe_of(nlp, URGENCY_COMPONENT, UrgencyDetector)

    def classify(self, text: str) -> Classification:
        """One text, as the service classifies each case: inside a spaCy memory zone, so the
        strings and lexemes of words the pipeline had not seen are freed afterwards. A worker
        that runs for months would otherwise keep every word any message ever held (phone
        numbers, names, typos): about 12 KB for a question full of new words. The price is
        that no case warms the vocabulary for the next (about 0.9 ms a question instead of 0.4),
        which :meth:`warm` pays once, at start. A batch (:meth:`classify_many`) keeps its
        words, which is what makes the next batch fast. Zones must not nest: inside a caller's
        zone, the text is classified in it."""
        in_zone = getattr(self.nlp.vocab, "in_memory_zone", False)  # not in the type stubs
        with contextlib.nullcontext() if in_zone else self.nlp.memory_zone():
            return self.classify_many([text])[0]

    def warm(self, texts: Sequence[str]) -> None:
        """Tokenize ``texts`` once, outside any memory zone, so that their words stay in the
        vocabulary and their chunks in the tokenizer's cache. :meth:`classify` keeps nothing
        new, so without this a service would meet even the commonest words as new at every
        case (about 0.9 ms a question instead of 0.4)."""
        self._each_joined(texts, lambda joined: [])

    def classify_many(self, texts: Sequence[str]) -> list[Classification]:
        return self._each_joined(texts, self._classify_joined)

    def scores(self, texts: Sequence[str]) -> list[dict[str, float]]:
        """Topic scores only (entities and urgency skipped)."""
        return self._each_joined(texts, self._topic_scores)

    def topic_lists(self, texts: Sequence[str]) -> list[list[str]]:
        """The topics :func:`select_topics` chooses and orders for each text (entities and
        urgency skipped), for evaluation: what a case gets unless it goes to triage."""
        return self._each_joined(texts, self._topic_lists)

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

    def _topics(self, joined: JoinedDoc) -> Blended:
        """The final topic scores of the texts of ``joined``, their lead heads' scores and
        their numbers of topic cues."""
        learned = self._predict(joined.word_norms())
        n = len(TOPICS)
        return self._prior.blend(self._prior.hits_joined(joined), joined.texts,
                                 learned[:, :n], learned[:, n:])

    def _topic_scores(self, joined: JoinedDoc) -> list[dict[str, float]]:
        return [dict(zip(TOPICS, row, strict=True))
                for row in self._topics(joined).scores.tolist()]

    def _topic_lists(self, joined: JoinedDoc) -> list[list[str]]:
        blended = self._topics(joined)
        return _choose(blended.scores, blended.leads, blended.has_lead, self.config).chosen

    def _classify_joined(self, joined: JoinedDoc) -> list[Classification]:
        blended = self._topics(joined)
        choice = _choose(blended.scores, blended.leads, blended.has_lead, self.config)
        out = []
        for text, row, chosen, ranked, best, n_cues, found, (urgency, reasons) in zip(
                joined.texts, blended.scores.tolist(), choice.chosen, choice.ranked, choice.best,
                blended.cues, self._entities.find_joined(joined),
                self._urgency.measure_joined(joined), strict=True):
            topic_scores = dict(zip(TOPICS, row, strict=True))
            triage = self.needs_triage(best, n_cues)
            if triage:  # nothing stands out: offer the reviewer the three best guesses
                chosen = ranked
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
