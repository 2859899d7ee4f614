"""The :class:`desk.ports.Classifier` implementation over the trained spaCy pipeline."""

from __future__ import annotations

import gc
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from spacy.language import Language
from spacy.tokens import Doc

from desk.ports import TOPICS, Classification, Entity, TopicScore
from nlp.doctext import data_of, text_of
from nlp.entities import ENTITY_ROWS_KEY
from nlp.pipeline import PipelineConfig
from nlp.topic_prior import CUES_KEY, LEAD_KEY
from nlp.urgency import REASONS_KEY, URGENCY_KEY

__all__ = ["SpacyClassifier", "select_topics"]

_BATCH = 256
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


class SpacyClassifier:
    """Topics, entities and urgency for one text or many (batched through ``nlp.pipe``)."""

    def __init__(self, nlp: Language, config: PipelineConfig, meta: dict[str, Any] | None = None,
                 ) -> None:
        self.nlp = nlp
        self.config = config
        self.meta = meta or {}

    def classify(self, text: str) -> Classification:
        return self._to_classification(self.nlp(text))

    def classify_many(self, texts: Sequence[str]) -> list[Classification]:
        # A batch allocates many small objects that all survive it: the cyclic collector would
        # scan them again and again for nothing (about a fifth of the time, and as much again
        # when the results are built).
        was_enabled = gc.isenabled()
        gc.disable()
        try:
            out: list[Classification] = []
            # Batch by batch through every step, so a batch's docs are still in the CPU cache
            # for the next component and are freed as soon as their results are built.
            for start in range(0, len(texts), _BATCH):
                out.extend(map(self._to_classification, self._run(texts[start:start + _BATCH])))
            return out
        finally:
            if was_enabled:
                gc.enable()

    def _run(self, texts: Sequence[str]) -> list[Doc]:
        """The pipeline over one batch: the classifier batched, the rule components doc by doc.
        The same as ``nlp.pipe`` without its per-doc bookkeeping, which costs as much as a
        component here."""
        nlp = self.nlp
        docs = [nlp.make_doc(text) for text in texts]
        for _name, proc in nlp.pipeline:
            if hasattr(proc, "pipe"):
                docs = list(proc.pipe(docs, batch_size=_BATCH))
            else:
                docs = [proc(doc) for doc in docs]
        return docs

    def pipe(self, texts: Iterable[str], *, disable: Sequence[str] = ()) -> Iterable[Doc]:
        return self.nlp.pipe(texts, batch_size=_BATCH, disable=list(disable))

    def scores(self, texts: Sequence[str]) -> list[dict[str, float]]:
        """Topic scores only (entities and urgency skipped)."""
        return [dict(doc.cats) for doc in self._topic_docs(texts)]

    def topic_lists(self, texts: Sequence[str]) -> list[list[str]]:
        """The topics :func:`select_topics` chooses and orders for each text (entities and
        urgency skipped), for evaluation: what a case gets unless it goes to triage."""
        return [select_topics(doc.cats, self.config, data_of(doc).get(LEAD_KEY))
                for doc in self._topic_docs(texts)]

    def _topic_docs(self, texts: Sequence[str]) -> Iterable[Doc]:
        disable = [n for n in ("city311_entities", "city311_urgency") if n in self.nlp.pipe_names]
        return self.pipe(texts, disable=disable)

    def needs_triage(self, top: float, cues: int) -> bool:
        limit = self.config.triage_below if cues else self.config.triage_below_without_cues
        return top < limit

    def _to_classification(self, doc: Doc) -> Classification:
        cats = doc.cats
        # The topic prior (and spaCy's textcat) write a float for each topic, in this order.
        scores = (dict(cats) if tuple(cats) == TOPICS
                  else {t: float(cats.get(t, 0.0)) for t in TOPICS})
        data = data_of(doc)
        ranked, chosen = _choose(scores, self.config, data.get(LEAD_KEY))
        triage = self.needs_triage(scores[ranked[0]], int(data.get(CUES_KEY) or 0))
        if triage:  # nothing stands out: offer the reviewer the three best guesses
            chosen = ranked[:3]
        rows = data.get(ENTITY_ROWS_KEY)
        if rows:
            text = text_of(doc)
            entities = [Entity(label, text[start:end], start, end, value)
                        for label, start, end, value in rows]
        else:
            entities = []
        return Classification(
            topics=[TopicScore(t, scores[t]) for t in chosen],
            scores=scores,
            entities=entities,
            urgency=float(data.get(URGENCY_KEY) or 0.0),
            urgency_reasons=list(data.get(REASONS_KEY) or []),
            needs_triage=triage,
        )
