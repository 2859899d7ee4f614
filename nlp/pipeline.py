"""The spaCy pipeline: ``spacy.blank("en")`` + a bag-of-words ``textcat_multilabel`` over the ten
topic ids + the entity and urgency components.

Beside each topic the classifier has a lead head (``lead:<topic>``), trained to say whether the
topic is the one listed first. Whether a topic applies and which topic comes first are different
questions: "the budget for the new fire station" applies to both topics, but the guide puts
public_safety first. The scores choose the topics; the lead heads help order them
(:func:`nlp.classifier.select_topics`).

The classifier reads the token NORM, which here is a light stem (``zoning``/``zoned``/``zone`` ->
``zon``, numbers -> ``#``). spaCy computes a lexeme's NORM once per word type, so the stemmer
costs nothing per token once the vocabulary is warm. Norms are not saved with the model: every
pipeline this module makes or loads is a :class:`City311English`, whose vocabulary has the
stemmer as its NORM getter.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import Any, cast

import numpy
import spacy
from numpy.typing import NDArray
from spacy.attrs import NORM
from spacy.lang.en import English
from spacy.language import Language
from spacy.ml.models.textcat import NEG_VALUE, resize_and_set_ref
from spacy.pipeline.textcat_multilabel import MultiLabel_TextCategorizer
from spacy.tokens import Doc
from spacy.util import registry
from thinc.api import Logistic, Model, SparseLinear_v2, chain, with_cpu
from thinc.layers.resizable import resizable, resize_linear_weighted

import nlp.entities as _entities  # registers the component factory
import nlp.topic_prior as _prior  # registers the component factory
import nlp.urgency as _urgency  # registers the component factory
from desk.ports import TOPICS
from nlp.doctext import TEXT_KEY
from nlp.stems import stem

__all__ = [
    "BOW_ARCHITECTURE",
    "LEAD_LABELS",
    "TEXTCAT",
    "TopicCategorizer",
    "PipelineConfig",
    "City311English",
    "load_pipeline",
    "NormPredictor",
    "bow_predictor",
    "make_pipeline",
    "stem",
    "unigram_features",
]

log = logging.getLogger(__name__)

TEXTCAT = "textcat_multilabel"
TOPIC_CATEGORIZER = "city311_topic_categorizer"  # the factory of the TEXTCAT component
LEAD_LABELS = _prior.LEAD_LABELS
LANG = "city311_en"
BOW_ARCHITECTURE = "city311.TextCatBOW.v2"


@dataclass(frozen=True)
class PipelineConfig:
    """Everything that shapes the trained model; part of the build hash."""

    length: int = 2**15
    epochs: int = 6
    dropout: float = 0.2
    batch_size: int = 32
    learn_rate: float = 0.006
    l2: float = 0.0
    # Soft targets keep the best topic above the others: 1st, 2nd, 3rd listed topic.
    rank_targets: tuple[float, float, float] = (1.0, 0.6, 0.4)
    # Blend with the hand-written topic cues (nlp.topic_prior).
    prior_weight: float = 0.4
    prior_saturation: float = 0.5
    # Topic selection: the best always; the 2nd/3rd when score >= both limits.
    second_min: float = 0.3
    second_rel: float = 0.35
    # The chosen topics are ordered by score + lead_weight * lead head.
    lead_weight: float = 1.0
    # A case goes to triage below this top score, or below the second limit when the text has
    # no topic cue at all ("hello, is anyone there?").
    triage_below: float = 0.25
    triage_below_without_cues: float = 0.4

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


def _unigram_forward(model: Model[Any, Any], docs: list[Doc], is_train: bool,
                     ) -> tuple[tuple[Any, Any, Any], Any]:
    """spaCy's ``extract_ngrams(1, NORM)``: each doc's distinct NORMs (sorted) and their counts."""
    norms = [cast(NDArray[numpy.uint64], doc.to_array(NORM)) for doc in docs]
    return unigram_features(norms), _no_grad


Features = tuple[NDArray[numpy.uint64], NDArray[numpy.float32], NDArray[numpy.int32]]


def unigram_features(arrays: list[NDArray[numpy.uint64]]) -> Features:
    """The classifier's input for texts with these NORM arrays (each sorted in place): the
    distinct keys of each text, their counts, and how many each text has. Each array is sorted
    on its own (a text is short: that is cheaper than one sort of the batch by text and key),
    then the whole batch is counted at once instead of a ``numpy.unique`` per text."""
    if not arrays:
        return (numpy.zeros((0,), dtype=numpy.uint64), numpy.zeros((0,), dtype=numpy.float32),
                numpy.zeros((0,), dtype=numpy.int32))
    for array in arrays:
        array.sort()
    ends = numpy.cumsum(numpy.fromiter(map(len, arrays), dtype="int64", count=len(arrays)))
    keys = numpy.concatenate(arrays)
    first = numpy.ones(keys.shape[0], dtype=bool)  # the first of its key in its doc
    first[1:] = keys[1:] != keys[:-1]
    first[ends[ends < keys.shape[0]]] = True  # where the next doc starts
    starts = numpy.flatnonzero(first)
    counts = numpy.diff(numpy.append(starts, keys.shape[0]))
    distinct = numpy.concatenate(([0], numpy.cumsum(first)))  # distinct keys before each index
    lengths = (distinct[ends] - distinct[numpy.append(0, ends[:-1])]).astype(numpy.int32)
    return keys[starts], counts.astype(numpy.float32), lengths


NormPredictor = Callable[[list[NDArray[numpy.uint64]]], NDArray[numpy.float32]]


def bow_predictor(model: Model[Any, Any]) -> NormPredictor:
    """What the classifier (:func:`build_bow_classifier`) predicts for texts given by their NORM
    arrays (sorted in place): the model after its feature extraction."""
    linear = model.get_ref("output_layer")
    logistic = next((node for node in model.walk() if node.name == "logistic"), None)
    if logistic is None:
        raise ValueError(f"the topic classifier {model.name!r} has no logistic output layer")

    def predict(arrays: list[NDArray[numpy.uint64]]) -> NDArray[numpy.float32]:
        return cast(NDArray[numpy.float32],
                    numpy.asarray(logistic.predict(linear.predict(unigram_features(arrays)))))

    return predict


def _no_grad(dY: Any) -> list[Any]:
    return []


def extract_unigrams() -> Model[Any, Any]:
    return Model("city311_unigrams", _unigram_forward)


def build_bow_classifier(
    exclusive_classes: bool = False,
    length: int = 2**17,
    nO: int | None = None,
) -> Model[Any, Any]:
    """spaCy's TextCatBOW.v3 over unigrams of NORM (our stems) instead of ORTH n-grams."""
    length = 2 ** (length - 1).bit_length()
    sparse_linear = SparseLinear_v2(nO=nO, length=length)
    resizable_layer: Model[Any, Any] = resizable(
        sparse_linear,
        resize_layer=partial(resize_linear_weighted, fill_defaults={"b": NEG_VALUE, "W": 0}),
    )
    model: Model[Any, Any] = chain(extract_unigrams(), resizable_layer)
    model = with_cpu(model, model.ops)
    output = Logistic()
    model = chain(model, with_cpu(output, output.ops))
    if nO is not None:
        model.set_dim("nO", nO)
    model.set_ref("output_layer", sparse_linear)
    model.attrs["multi_label"] = not exclusive_classes
    model.attrs["resize_output"] = partial(resize_and_set_ref, resizable_layer=resizable_layer)
    return model


registry.architectures.register(BOW_ARCHITECTURE, func=build_bow_classifier)


class TopicCategorizer(MultiLabel_TextCategorizer):
    """spaCy's multi-label textcat, writing a doc's scores in one step: its own loop sets them
    label by label, which took as long as the classifier itself with twenty labels."""

    def set_annotations(self, docs: Iterable[Doc], scores: Any) -> None:
        labels = self.labels
        rows = numpy.asarray(scores).tolist()  # the classifier runs on the CPU (with_cpu)
        for doc, row in zip(docs, rows, strict=True):
            doc.cats.update(zip(labels, row, strict=True))


@Language.factory(
    TOPIC_CATEGORIZER, assigns=["doc.cats"],
    default_config={"threshold": 0.5,
                    "model": {"@architectures": BOW_ARCHITECTURE, "exclusive_classes": False},
                    "scorer": {"@scorers": "spacy.textcat_multilabel_scorer.v2"}})
def make_topic_categorizer(nlp: Language, name: str, model: Model[Any, Any], threshold: float,
                           scorer: Any) -> TopicCategorizer:
    return TopicCategorizer(nlp.vocab, model, name, threshold=threshold, scorer=scorer)


def make_pipeline(config: PipelineConfig, *, with_textcat: bool = True) -> Language:
    """A fresh, untrained pipeline."""
    nlp = spacy.blank(LANG)
    if with_textcat:
        textcat = nlp.add_pipe(TOPIC_CATEGORIZER, name=TEXTCAT, config={
            "threshold": 0.5,
            "model": {
                "@architectures": BOW_ARCHITECTURE,
                "exclusive_classes": False,
                "length": config.length,
            },
        })
        for label in TOPICS + LEAD_LABELS:
            cast(Any, textcat).add_label(label)
        nlp.add_pipe(_prior.PRIOR_COMPONENT, config={"weight": config.prior_weight,
                                                     "saturation": config.prior_saturation})
    nlp.add_pipe(_entities.ENTITY_COMPONENT)
    nlp.add_pipe(_urgency.URGENCY_COMPONENT)
    return nlp


def load_pipeline(path: Path) -> Language:
    """Load a pipeline saved with ``nlp.to_disk``; no network, no downloads."""
    # The tokenizer is spaCy's default English one: rebuilding it beats reading it back.
    return spacy.load(path, exclude=["tokenizer"])
