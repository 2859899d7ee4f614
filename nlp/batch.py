"""Many texts as one Doc.

Making a Doc costs more than tokenizing a short question (spaCy builds span groups, a tensor and
several dictionaries for each), and every matcher call and attribute array has a cost of its own.
A batch of texts is therefore tokenized as one Doc, joined by single spaces: the tokenizer splits
on whitespace first and tokenizes each piece alone, and a single space becomes the trailing
whitespace of the token before it, so each text gets exactly the tokens it gets alone (tested).
A text that starts or ends with whitespace, or is empty, would share a whitespace token with its
neighbour: it gets a Doc of its own.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy
from numpy.typing import NDArray
from spacy.attrs import IDX, NORM
from spacy.language import Language
from spacy.tokens import Doc

__all__ = ["JoinedDoc", "Match", "join"]

Match = tuple[int, int, int]  # a matcher's (match id, first token, end token)


@dataclass(frozen=True)
class JoinedDoc:
    doc: Doc
    text: str  # the texts, joined
    texts: Sequence[str]
    offsets: list[int]  # where each text starts in the doc's text
    bounds: list[int]  # each text's first token, then the doc's length
    norms: NDArray[numpy.uint64]  # every token's NORM

    def split(self, matches: Sequence[Match]) -> list[list[Match]]:
        """The matches over the doc, each given to its text; a match across two texts is none."""
        out: list[list[Match]] = [[] for _ in self.texts]
        bounds = self.bounds
        if len(out) == 1:
            out[0].extend(matches)
            return out
        for match in matches:
            i = bisect_right(bounds, match[1]) - 1
            if match[2] <= bounds[i + 1]:
                out[i].append(match)
        return out

    def texts_containing(self, needle: str) -> list[int]:
        """The texts in which ``needle`` occurs, by index (and now and then the one before it,
        when ``needle`` starts at the end of that text and goes on into the next)."""
        out: list[int] = []
        text, offsets = self.text, self.offsets
        at = text.find(needle)
        while at >= 0:
            i = bisect_right(offsets, at) - 1
            out.append(i)
            if i + 1 == len(offsets):
                break
            at = text.find(needle, offsets[i + 1])  # one occurrence in a text is enough
        return out

    def norm_arrays(self) -> list[NDArray[numpy.uint64]]:
        """Each text's NORMs (a fresh array each)."""
        norms = self.norms.copy()
        bounds = self.bounds
        return [norms[bounds[i]:bounds[i + 1]] for i in range(len(self.texts))]


def _alone(text: str) -> bool:
    return not text or text[0].isspace() or text[-1].isspace()


def join(nlp: Language, texts: Sequence[str]) -> list[JoinedDoc]:
    """The texts as few Docs as may be, in order."""
    out: list[JoinedDoc] = []
    group: list[str] = []
    size = 0
    limit = nlp.max_length
    for text in texts:
        if _alone(text) or size + len(text) + 1 > limit:
            if group:
                out.append(_joined(nlp, group))
                group, size = [], 0
            if _alone(text):
                out.append(_joined(nlp, [text]))
                continue
        group.append(text)
        size += len(text) + 1
    if group:
        out.append(_joined(nlp, group))
    return out


def _joined(nlp: Language, texts: list[str]) -> JoinedDoc:
    offsets = []
    at = 0
    for text in texts:
        offsets.append(at)
        at += len(text) + 1
    text = texts[0] if len(texts) == 1 else " ".join(texts)
    doc = nlp.make_doc(text)
    columns: Any = doc.to_array([IDX, NORM]).reshape(len(doc), 2)
    # Each text's first token starts where the text starts (no text starts with whitespace).
    starts = numpy.searchsorted(columns[:, 0], offsets[1:]).tolist() if len(texts) > 1 else []
    norms = numpy.ascontiguousarray(columns[:, 1])
    return JoinedDoc(doc, text, texts, offsets, [0, *starts, len(doc)], norms)
