"""The topic prior: blends the trained classifier's scores with hand-written topic cues.

The training questions are a few hundred per topic; real questions use words they never did
("tornado", "splash pad"). Each topic's cue list (:data:`nlp.lexicon.TOPIC_CUES`) is matched on
stems, acronyms exactly as written; a topic with ``n`` cue hits gets ``n / (n + saturation)`` and
the final score is ``(1 - weight) * classifier + weight * cues``, still 0..1. It runs after the
topic classifier and rewrites ``doc.cats`` with the ten topics alone; the classifier's lead heads
(see :mod:`nlp.pipeline`) go to ``doc._.topic_lead``, in the order of ``TOPICS``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, NamedTuple

import numpy
from numpy.typing import NDArray
from spacy.language import Language
from spacy.matcher import PhraseMatcher
from spacy.tokens import Doc

from desk.ports import TOPICS
from nlp.batch import JoinedDoc, Match
from nlp.doctext import data_of, ext_key, pattern_doc, text_of
from nlp.lexicon import TOPIC_CUES
from nlp.stems import stem

__all__ = ["LEAD_LABELS", "PRIOR_COMPONENT", "Blended", "TopicPrior"]

PRIOR_COMPONENT = "city311_topic_prior"
LEAD_LABELS = tuple(f"lead:{topic}" for topic in TOPICS)  # the classifier's lead heads

if not Doc.has_extension("topic_cues"):
    Doc.set_extension("topic_cues", default=0)  # how many topic cues the text has
_CUES = ext_key("topic_cues")
if not Doc.has_extension("topic_lead"):
    Doc.set_extension("topic_lead", default=None)  # the lead heads' scores, or None
_LEAD = ext_key("topic_lead")


class Blended(NamedTuple):
    """A batch's final topic scores (a row per text, a column per topic in the order of
    ``TOPICS``), its lead heads' scores (the same shape, or None), whether each text has a lead
    (a text without words has none), and each text's number of topic cues."""

    scores: NDArray[numpy.float64]
    leads: NDArray[numpy.float64] | None
    has_lead: NDArray[numpy.bool_]
    cues: list[int]


def _is_acronym(cue: str) -> bool:
    """Acronyms and numbers ("HOME", "311") match exactly: their stems would be other words."""
    return cue.upper() == cue


def _stemmed(doc: Doc) -> Doc:
    """Set the stems on the pattern itself, whatever the vocabulary's NORM getter is."""
    for token in doc:
        token.norm_ = stem(token.text)
    return doc


class TopicPrior:
    def __init__(self, nlp: Language, name: str, weight: float, saturation: float) -> None:
        self.name = name
        self.weight = weight
        self.saturation = saturation
        self.stems = PhraseMatcher(nlp.vocab, attr="NORM")
        self.exact = PhraseMatcher(nlp.vocab, attr="ORTH")
        topic_of: dict[int, int] = {}
        for topic, cues in TOPIC_CUES.items():
            topic_of[nlp.vocab.strings.add(f"cue|{topic}")] = TOPICS.index(topic)
            exact = [pattern_doc(nlp, c) for c in cues if _is_acronym(c)]
            stems = [_stemmed(pattern_doc(nlp, c)) for c in cues if not _is_acronym(c)]
            if exact:
                self.exact.add(f"cue|{topic}", exact)
            if stems:
                self.stems.add(f"cue|{topic}", stems)
        # The matcher's keys, sorted, and the index in ``TOPICS`` of each.
        self._keys = numpy.array(sorted(topic_of), dtype=numpy.uint64)
        self._topics = numpy.array([topic_of[key] for key in sorted(topic_of)], dtype=numpy.intp)

    def _hits(self, doc: Doc) -> NDArray[numpy.int64]:
        """Cue hits per topic, in the order of ``TOPICS``: one row."""
        matches = self._matches(doc)
        return self._count(matches, numpy.zeros(len(matches), dtype=numpy.intp), 1)

    def hits_joined(self, joined: JoinedDoc) -> NDArray[numpy.int64]:
        """Cue hits per topic of each text of ``joined``: a row per text."""
        matches = self._matches(joined.doc)
        return self._count(matches, joined.owners(matches), len(joined.texts))

    def _matches(self, doc: Doc) -> list[Match]:
        return self.stems(doc) + self.exact(doc)

    def _count(self, matches: Sequence[Match], owners: NDArray[numpy.intp], n_texts: int,
               ) -> NDArray[numpy.int64]:
        """The hits of ``n_texts`` texts, counted at once; ``owners`` gives each match's text
        (-1: none, :meth:`JoinedDoc.owners`)."""
        hits = numpy.zeros((n_texts, len(TOPICS)), dtype=numpy.int64)
        kept = owners >= 0
        if kept.any():
            keys = numpy.array([match[0] for match in matches], dtype=numpy.uint64)[kept]
            topic = self._topics[numpy.searchsorted(self._keys, keys)]  # keys: 64-bit hashes
            numpy.add.at(hits, (owners[kept], topic), 1)
        return hits

    def blend(self, hits: NDArray[numpy.int64], texts: Sequence[str], topics: NDArray[Any],
              leads: NDArray[Any] | None) -> Blended:
        """The final topic scores of a batch: its classifier scores (one row per text, one
        column per topic in the order of ``TOPICS``) blended with its cue hits, beside the lead
        heads' scores (rows of ``leads``, in the same order).

        A text without words has no topic and no lead: the classifier would give it its
        intercepts, the scores of a text with no word it knows."""
        found = numpy.array(hits, dtype="f8").reshape(len(texts), len(TOPICS))
        learned = numpy.asarray(topics, dtype="f8")
        blank = [i for i, text in enumerate(texts) if not text.strip()]
        if blank:
            learned = learned.copy()
            learned[blank] = 0.0
        w = self.weight
        # The operations of ``keep * learned + w * n / (n + sat)`` one by one, as Python would
        # do them on floats: the batch gives the same scores as one doc at a time.
        scores = (1.0 - w) * learned + w * found / (found + self.saturation)
        has_lead = numpy.full(len(texts), leads is not None)
        has_lead[blank] = False
        return Blended(scores, None if leads is None else numpy.asarray(leads, dtype="f8"),
                       has_lead, found.sum(axis=1).astype(int).tolist())

    def __call__(self, doc: Doc) -> Doc:
        cats = doc.cats
        learned = numpy.array([[float(cats.get(t, 0.0)) for t in TOPICS]])
        leads = (numpy.array([[float(cats[label]) for label in LEAD_LABELS]])
                 if LEAD_LABELS[0] in cats else None)
        blended = self.blend(self._hits(doc), [text_of(doc)], learned, leads)
        data = data_of(doc)
        data[_CUES] = blended.cues[0]
        if blended.leads is not None and blended.has_lead[0]:
            data[_LEAD] = blended.leads[0].tolist()
        doc.cats = dict(zip(TOPICS, blended.scores[0].tolist(), strict=True))
        return doc

    # Rebuilt from the shipped cue lists: nothing to save or load.
    def to_disk(self, path: object, *, exclude: Iterable[str] = ()) -> None:
        return None

    def from_disk(self, path: object, *, exclude: Iterable[str] = ()) -> TopicPrior:
        return self

    def to_bytes(self, *, exclude: Iterable[str] = ()) -> bytes:
        return b""

    def from_bytes(self, data: bytes, *, exclude: Iterable[str] = ()) -> TopicPrior:
        return self


@Language.factory(PRIOR_COMPONENT, default_config={"weight": 0.5, "saturation": 0.5})
def make_topic_prior(nlp: Language, name: str, weight: float, saturation: float) -> TopicPrior:
    return TopicPrior(nlp, name, weight, saturation)
