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
from typing import Any

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

__all__ = ["LEAD_LABELS", "PRIOR_COMPONENT", "TopicPrior"]

PRIOR_COMPONENT = "city311_topic_prior"
LEAD_LABELS = tuple(f"lead:{topic}" for topic in TOPICS)  # the classifier's lead heads

if not Doc.has_extension("topic_cues"):
    Doc.set_extension("topic_cues", default=0)  # how many topic cues the text has
_CUES = ext_key("topic_cues")
if not Doc.has_extension("topic_lead"):
    Doc.set_extension("topic_lead", default=None)  # the lead heads' scores, or None
_LEAD = ext_key("topic_lead")


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
        self.topic_of: dict[int, str] = {}
        for topic, cues in TOPIC_CUES.items():
            key = nlp.vocab.strings.add(f"cue|{topic}")
            self.topic_of[key] = topic
            exact = [pattern_doc(nlp, c) for c in cues if _is_acronym(c)]
            stems = [_stemmed(pattern_doc(nlp, c)) for c in cues if not _is_acronym(c)]
            if exact:
                self.exact.add(f"cue|{topic}", exact)
            if stems:
                self.stems.add(f"cue|{topic}", stems)
        self.index_of = {key: TOPICS.index(topic) for key, topic in self.topic_of.items()}

    def _hits(self, doc: Doc) -> list[int]:
        """Cue hits per topic, in the order of ``TOPICS``."""
        return self._count(self._matches(doc))

    def hits_joined(self, joined: JoinedDoc) -> list[list[int]]:
        """Cue hits per topic of each text of ``joined``."""
        return [self._count(matches) for matches in joined.split(self._matches(joined.doc))]

    def _matches(self, doc: Doc) -> list[Match]:
        return self.stems(doc) + self.exact(doc)

    def _count(self, matches: Sequence[Match]) -> list[int]:
        hits = [0] * len(TOPICS)
        index_of = self.index_of
        for match in matches:
            hits[index_of[match[0]]] += 1
        return hits

    def blend(self, hits: Sequence[Sequence[int]], texts: Sequence[str], topics: NDArray[Any],
              leads: NDArray[Any] | None,
              ) -> tuple[NDArray[Any], list[list[float] | None], list[int]]:
        """The final topic scores of a batch: its classifier scores (one row per text, one
        column per topic in the order of ``TOPICS``) blended with its cue hits; each text's lead
        heads' scores (rows of ``leads``, in the same order), and its number of cues.

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
        lead_rows: list[list[float] | None] = (
            numpy.asarray(leads, dtype="f8").tolist() if leads is not None else [None] * len(texts))
        for i in blank:
            lead_rows[i] = None
        return scores, lead_rows, found.sum(axis=1).astype(int).tolist()

    def __call__(self, doc: Doc) -> Doc:
        cats = doc.cats
        learned = numpy.array([[float(cats.get(t, 0.0)) for t in TOPICS]])
        leads = (numpy.array([[float(cats[label]) for label in LEAD_LABELS]])
                 if LEAD_LABELS[0] in cats else None)
        scores, lead_rows, cues = self.blend([self._hits(doc)], [text_of(doc)], learned, leads)
        data = data_of(doc)
        data[_CUES] = cues[0]
        if lead_rows[0] is not None:
            data[_LEAD] = lead_rows[0]
        doc.cats = dict(zip(TOPICS, scores[0].tolist(), strict=True))
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
