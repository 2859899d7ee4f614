"""The spaCy pipeline: ``spacy.blank("en")`` + a topic classifier over the ten topic ids
(:mod:`nlp.topic_model`: TF-IDF over stems and pairs of stems, a logistic regression per label) +
the topic prior, the entity and the urgency components.

Beside each topic the classifier has a lead head (``lead:<topic>``), trained to say whether the
topic is the one listed first. Whether a topic applies and which topic comes first are different
questions: "the budget for the new fire station" applies to both topics, but the guide puts
public_safety first. The scores choose the topics; the lead heads help order them
(:func:`nlp.classifier.select_topics`).

The classifier reads the NORM of each word (each token but whitespace), which here is a light
stem (``zoning``/``zoned``/``zone`` -> ``zon``, numbers -> ``#``). spaCy computes a lexeme's NORM
once per word type, so the stemmer costs nothing per token once the vocabulary is warm. Norms are
not saved with the model: every pipeline this module makes or loads is a :class:`City311English`,
whose vocabulary has the stemmer as its NORM getter.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TypeVar, cast

import numpy
import spacy
from numpy.typing import NDArray
from spacy.attrs import IS_SPACE, NORM
from spacy.lang.en import English
from spacy.language import Language
from spacy.tokens import Doc
from spacy.util import registry

import nlp.entities as _entities  # registers the component factory
import nlp.topic_prior as _prior  # registers the component factory
import nlp.urgency as _urgency  # registers the component factory
from desk.ports import TOPICS
from nlp.doctext import TEXT_KEY
from nlp.stems import stem
from nlp.topic_model import TopicModel

__all__ = [
    "LABELS",
    "LEAD_LABELS",
    "TOKENIZER_CACHE",
    "TOPIC_CLASSIFIER",
    "TopicClassifier",
    "PipelineConfig",
    "City311English",
    "load_pipeline",
    "make_pipeline",
    "pipe_of",
    "stem",
    "word_norms",
]

log = logging.getLogger(__name__)

TOPIC_CLASSIFIER = "city311_topics"
LEAD_LABELS = _prior.LEAD_LABELS
LABELS = (*TOPICS, *LEAD_LABELS)  # the classifier's outputs, in this order
LANG = "city311_en"
_MODEL_FILE = "model.npz"
_T = TypeVar("_T")
# Chunks the tokenizer may cache. spaCy's default, 10,000, is fewer than the distinct chunks of
# the shipped questions alone: once a service had read that many, every other chunk went through
# the affix rules each time it came back, and warm classification took half as long again. A
# cached chunk costs a few hundred bytes (here and in spaCy), so the whole cache at most some tens
# of MiB.
TOKENIZER_CACHE = 100_000


@dataclass(frozen=True)
class PipelineConfig:
    """Everything that shapes the trained model; part of the build hash."""

    # The inverse of the L2 penalty's strength (scikit-learn's C).
    c: float = 30.0
    # Blend with the hand-written topic cues (nlp.topic_prior).
    prior_weight: float = 0.3
    prior_saturation: float = 1.0
    # Topic selection: the best always; the 2nd/3rd when score >= both limits.
    second_min: float = 0.25
    second_rel: float = 0.35
    # The chosen topics are ordered by score + lead_weight * lead head.
    lead_weight: float = 1.0
    # A case goes to triage below this top score, or below the second limit when the text has
    # no topic cue at all ("hello, is anyone there?").
    triage_below: float = 0.2
    triage_below_without_cues: float = 0.3

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class _Defaults(English.Defaults):  # type: ignore[misc,valid-type]
    lex_attr_getters = {**English.Defaults.lex_attr_getters, NORM: stem}


class City311English(English):  # type: ignore[no-untyped-call]
    """English whose NORM is our stem, from the moment the vocabulary exists (a saved pipeline
    builds its components, and their pattern lexemes, before any code of ours could run)."""

    lang = LANG
    Defaults = _Defaults

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._chunks_seen: set[str] = set()
        self._chunks_tokenizer: object = None

    def make_doc(self, text: str) -> Doc:
        if len(text) <= self.max_length:  # longer is refused below
            chunks = text.split()
            if self._chunks_tokenizer is not self.tokenizer or not self._chunks_seen.issuperset(
                    chunks):
                self._cache_chunks(chunks)
        doc: Doc = super().make_doc(text)
        doc.user_data[TEXT_KEY] = text  # see nlp.doctext
        return doc

    def _cache_chunks(self, chunks: list[str]) -> None:
        """Put each new whitespace-separated chunk in the tokenizer's cache, by tokenizing it on
        its own. The tokenizer caches a chunk only while the text it is splitting has had no
        special case yet ("We're", "I'm", "don't"...): after the first contraction of a question
        none of its words is cached, and every later question splits them again with the affix
        rules, which was most of the tokenizer's time. A chunk alone gets the same tokens (the
        tokenizer splits chunks independently) and spaCy still decides whether they may be
        cached. Nothing to do inside a memory zone (nothing is cached there), nor once the
        tokenizer's cache is as big as it may grow."""
        tokenizer = self.tokenizer
        if self._chunks_tokenizer is not tokenizer:  # a new tokenizer, an empty cache
            self._chunks_tokenizer = tokenizer
            self._chunks_seen = set()
            if getattr(tokenizer, "max_cache_size", TOKENIZER_CACHE) < TOKENIZER_CACHE:
                setattr(tokenizer, "max_cache_size", TOKENIZER_CACHE)  # noqa: B010 (typed as a callable)
        if getattr(self.vocab, "in_memory_zone", False):
            return
        seen = self._chunks_seen
        limit = getattr(tokenizer, "max_cache_size", 0)
        for chunk in chunks:
            if len(seen) >= limit:
                break
            if chunk not in seen:
                seen.add(chunk)
                tokenizer(chunk)


registry.languages.register(LANG, func=City311English)


def pipe_of(nlp: Language, name: str, kind: type[_T]) -> _T:
    """The pipeline's component ``name``, which must be a ``kind``."""
    component = nlp.get_pipe(name)
    if not isinstance(component, kind):
        raise TypeError(f"the pipeline's {name!r} is a {type(component).__name__}, "
                        f"not a {kind.__name__}")
    return component


def word_norms(doc: Doc) -> NDArray[numpy.uint64]:
    """The NORMs of a doc's words (its tokens but the whitespace ones), what the classifier
    reads."""
    columns = doc.to_array([NORM, IS_SPACE]).reshape(len(doc), 2)
    return cast(NDArray[numpy.uint64], numpy.ascontiguousarray(columns[columns[:, 1] == 0, 0]))


class TopicClassifier:
    """The pipeline component over a :class:`~nlp.topic_model.TopicModel`: writes each label's
    probability to ``doc.cats``. Trained by :func:`nlp.train.train_pipeline`, which sets
    ``model``; saved as one ``.npz`` file."""

    def __init__(self, name: str = TOPIC_CLASSIFIER) -> None:
        self.name = name
        self.model: TopicModel | None = None

    def trained(self) -> TopicModel:
        if self.model is None:
            raise ValueError("the topic classifier is not trained: build the model")
        return self.model

    def __call__(self, doc: Doc) -> Doc:
        model = self.trained()
        row = model.predict([word_norms(doc)])[0].tolist()
        doc.cats.update(zip(model.labels, row, strict=True))
        return doc

    def to_disk(self, path: Path, *, exclude: Iterable[str] = ()) -> None:
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        (path / _MODEL_FILE).write_bytes(self.trained().to_bytes())

    def from_disk(self, path: Path, *, exclude: Iterable[str] = ()) -> TopicClassifier:
        self.model = TopicModel.from_bytes((Path(path) / _MODEL_FILE).read_bytes())
        return self

    def to_bytes(self, *, exclude: Iterable[str] = ()) -> bytes:
        return self.trained().to_bytes()

    def from_bytes(self, data: bytes, *, exclude: Iterable[str] = ()) -> TopicClassifier:
        self.model = TopicModel.from_bytes(data)
        return self


@Language.factory(TOPIC_CLASSIFIER, assigns=["doc.cats"])
def make_topic_classifier(nlp: Language, name: str) -> TopicClassifier:
    return TopicClassifier(name)


def make_pipeline(config: PipelineConfig, *, with_topics: bool = True) -> Language:
    """A fresh pipeline, its topic classifier untrained."""
    nlp = spacy.blank(LANG)
    if with_topics:
        nlp.add_pipe(TOPIC_CLASSIFIER)
        nlp.add_pipe(_prior.PRIOR_COMPONENT, config={"weight": config.prior_weight,
                                                     "saturation": config.prior_saturation})
    nlp.add_pipe(_entities.ENTITY_COMPONENT)
    nlp.add_pipe(_urgency.URGENCY_COMPONENT)
    return nlp


def load_pipeline(path: Path) -> Language:
    """Load a pipeline saved with ``nlp.to_disk``; no network, no downloads."""
    # The tokenizer is spaCy's default English one: rebuilding it beats reading it back.
    return spacy.load(path, exclude=["tokenizer"])
