"""Many texts as one Doc.

Making a Doc costs more than tokenizing a short question (spaCy builds span groups, a tensor and
several dictionaries for each), and every matcher call and attribute array has a cost of its own.
A batch of texts is therefore tokenized as one Doc, each text followed by a separator token:
``" \\x00 "``. The tokenizer splits on whitespace first and tokenizes each piece alone, so each text
gets the tokens it gets alone (tested); the separator, a token of its own that no pattern holds,
keeps spaCy's special-case matcher (which looks across whitespace: ``'`` then ``'`` reads as
``''``) and our own matchers from reading two texts as one. A text that starts or ends with
whitespace, or is empty, would share a whitespace token with its neighbour: it gets a Doc of its
own.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy
from numpy.typing import NDArray
from spacy.attrs import IDX, IS_SPACE, NORM
from spacy.language import Language
from spacy.tokens import Doc

__all__ = ["SEPARATOR", "JoinedDoc", "Match", "join"]

Match = tuple[int, int, int]  # a matcher's (match id, first token, end token)
SEPARATOR = " \x00 "


@dataclass(frozen=True)
class JoinedDoc:
    doc: Doc
    texts: Sequence[str]  # each followed by SEPARATOR in the doc's text, but the last
    offsets: list[int]  # where each text starts in the doc's text
    starts: list[int]  # each text's first token
    ends: list[int]  # each text's end token (its separator's)
    norms: NDArray[numpy.uint64]  # the NORM of every word (every token but whitespace)
    word_spans: list[tuple[int, int]]  # where each text's words are in ``norms``

    def split(self, matches: Sequence[Match]) -> list[list[Match]]:
        """The matches over the doc, each given to its text; one on a separator is none."""
        out: list[list[Match]] = [[] for _ in self.texts]
        if len(out) == 1:
            out[0].extend(matches)
            return out
        for match, i in zip(matches, self.owners(matches).tolist(), strict=True):
            if i >= 0:
                out[i].append(match)
        return out

    def owners(self, matches: Sequence[Match]) -> NDArray[numpy.intp]:
        """The text each match lies in, by index; -1 for one that runs on past its text's end
        (over a separator)."""
        if not matches:
            return numpy.zeros(0, dtype=numpy.intp)
        spans = numpy.array([match[1:] for match in matches], dtype=numpy.intp)
        texts = numpy.searchsorted(numpy.asarray(self.starts), spans[:, 0], side="right") - 1
        texts[spans[:, 1] > numpy.asarray(self.ends)[texts]] = -1
        return texts

    def word_norms(self) -> list[NDArray[numpy.uint64]]:
        """Each text's words' NORMs (:func:`nlp.pipeline.word_norms`), as views."""
        norms = self.norms
        return [norms[start:end] for start, end in self.word_spans]


def _alone(text: str) -> bool:
    if not isinstance(text, str):
        raise TypeError(f"a text to classify must be a str, not {type(text).__name__}")
    return not text or text[0].isspace() or text[-1].isspace()


def join(nlp: Language, texts: Sequence[str]) -> list[JoinedDoc]:
    """The texts as few Docs as may be, in order."""
    out: list[JoinedDoc] = []
    group: list[str] = []
    size = 0
    limit = nlp.max_length
    for text in texts:
        alone = _alone(text)
        if alone or size + len(text) + len(SEPARATOR) > limit:
            if group:
                out.append(_joined(nlp, group))
                group, size = [], 0
            if alone:
                out.append(_joined(nlp, [text]))
                continue
        group.append(text)
        size += len(text) + len(SEPARATOR)
    if group:
        out.append(_joined(nlp, group))
    return out


def _joined(nlp: Language, texts: list[str]) -> JoinedDoc:
    offsets = []
    at = 0
    for text in texts:
        offsets.append(at)
        at += len(text) + len(SEPARATOR)
    doc = nlp.make_doc(texts[0] if len(texts) == 1 else SEPARATOR.join(texts))
    columns: Any = doc.to_array([IDX, NORM, IS_SPACE]).reshape(len(doc), 3)
    if len(texts) == 1:
        starts, ends = [0], [len(doc)]
    else:
        # A text's first token starts where the text does (no text starts with whitespace); its
        # separator's token is the first to start after it.
        idx = columns[:, 0]
        starts = numpy.searchsorted(idx, offsets).tolist()
        ends = numpy.searchsorted(idx, [o + len(t) for o, t in zip(offsets, texts, strict=True)],
                                  ).tolist()
    words = columns[:, 2] == 0
    norms = numpy.ascontiguousarray(columns[words, 1])
    before = numpy.concatenate(([0], numpy.cumsum(words)))  # the words before each token
    word_spans = list(zip(before[starts].tolist(), before[ends].tolist(), strict=True))
    return JoinedDoc(doc, texts, offsets, starts, ends, norms, word_spans)
