"""The topic model: TF-IDF over stems and pairs of stems, and a logistic regression per label.

A text's features are its words' NORMs (our stems, :mod:`nlp.stems`; whitespace tokens are not
words) and each pair of neighbouring NORMs, as scikit-learn's
``TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True)`` weighs them: ``(1 + ln count) * idf``,
with the smoothed idf ``ln((1 + n) / (1 + df)) + 1``, the row scaled to unit length; features
never seen in training are dropped. Each label is a logistic
regression with an L2 penalty (scikit-learn's ``LogisticRegression``, lbfgs), fitted to the
optimum: the same data always gives the same model, with no seed to fix.

Prediction is numpy and scipy's sparse matrices over a whole batch; scikit-learn is needed only to
fit.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy
from numpy.typing import NDArray
from scipy.sparse import csr_matrix

__all__ = ["TopicModel"]

U64 = NDArray[numpy.uint64]
F64 = NDArray[numpy.float64]
# A pair's key: the first NORM times an odd constant, plus the second (mod 2**64). NORMs are
# 64-bit string hashes, so a pair's key meeting a word's is as unlikely as two words meeting.
_PAIR = numpy.uint64(0x9E3779B97F4A7C15)


class _KeyTable:
    """The column of each key (its index in the model's sorted keys), found by hashing: a binary
    search of tens of thousands of keys misses the CPU cache at every step, and looking the keys
    up took longer than all the rest of the model. Open addressing with linear probing, a quarter
    full; the keys are hashes already, so their low bits are the home slot."""

    def __init__(self, keys: U64) -> None:
        size = 1 << max(4, (4 * keys.size - 1).bit_length())
        self.mask = numpy.uint64(size - 1)
        self.keys = numpy.zeros(size, dtype=numpy.uint64)
        self.columns = numpy.full(size, -1, dtype=numpy.intp)
        pending = numpy.arange(keys.size, dtype=numpy.intp)
        wanted = (keys & self.mask).astype(numpy.intp)
        self.probes = 0  # the most slots any key is from its home, plus one
        while pending.size:
            self.probes += 1
            free = numpy.flatnonzero(self.columns[wanted] < 0)
            # Of the keys wanting the same free slot, the first takes it.
            _, first = numpy.unique(wanted[free], return_index=True)
            won = free[first]
            self.columns[wanted[won]] = pending[won]
            self.keys[wanted[won]] = keys[pending[won]]
            lost = numpy.ones(pending.size, dtype=bool)
            lost[won] = False
            pending, wanted = pending[lost], (wanted[lost] + 1) & (size - 1)

    def find(self, grams: U64) -> NDArray[numpy.intp]:
        """Each gram's column, or -1."""
        found = numpy.full(grams.shape, -1, dtype=numpy.intp)
        slots = (grams & self.mask).astype(numpy.intp)
        pending = numpy.arange(grams.size, dtype=numpy.intp)
        for _ in range(self.probes):
            columns = self.columns[slots]
            hit = (self.keys[slots] == grams[pending]) & (columns >= 0)
            found[pending[hit]] = columns[hit]
            go_on = ~hit & (columns >= 0)  # an empty slot ends the search
            pending, slots = pending[go_on], (slots[go_on] + 1) & int(self.mask)
            if not pending.size:
                break
        return found


def _grams(arrays: Sequence[U64]) -> tuple[U64, NDArray[numpy.intp]]:
    """Every word and every pair of neighbouring words of the texts, and the text each is of."""
    lengths = numpy.fromiter(map(len, arrays), dtype=numpy.intp, count=len(arrays))
    words = numpy.concatenate(arrays) if arrays else numpy.zeros(0, dtype=numpy.uint64)
    of = numpy.repeat(numpy.arange(len(arrays), dtype=numpy.intp), lengths)
    within = of[1:] == of[:-1]
    pairs = words[:-1] * _PAIR + words[1:]  # wrapping is the point
    return numpy.concatenate((words, pairs[within])), numpy.concatenate((of, of[1:][within]))


def _tf(arrays: Sequence[U64], table: _KeyTable, idf: NDArray[numpy.float32]) -> csr_matrix:
    """A row per text, a column per key: ``(1 + ln count) * idf`` of each key the text has."""
    grams, of = _grams(arrays)
    columns = table.find(grams)
    known = columns >= 0
    # Counted by one sort of the whole batch, by text and then by column. The stable sort is the
    # quicker here: the grams come in runs already sorted by text.
    shift = max(idf.size, 1).bit_length()
    codes = (of[known].astype(numpy.int64) << shift) | columns[known]
    codes.sort(kind="stable")
    first = numpy.ones(codes.size, dtype=bool)
    first[1:] = codes[1:] != codes[:-1]
    starts = numpy.flatnonzero(first)
    counts = numpy.diff(numpy.append(starts, codes.size)).astype(numpy.float32)
    distinct = codes[starts]
    texts, keys = distinct >> shift, distinct & ((1 << shift) - 1)
    indptr = numpy.searchsorted(texts, numpy.arange(len(arrays) + 1))
    values = (1.0 + numpy.log(counts)) * idf[keys]
    return csr_matrix((values, keys, indptr), shape=(len(arrays), idf.size))


def _lengths(x: csr_matrix) -> NDArray[numpy.float32]:
    """Each row's length, 1 for an empty row (the L2 norm of ``TfidfVectorizer``)."""
    sizes = numpy.diff(x.indptr)
    rows = numpy.repeat(numpy.arange(x.shape[0]), sizes)
    lengths = numpy.sqrt(numpy.bincount(rows, weights=x.data * x.data, minlength=x.shape[0]))
    lengths[lengths == 0.0] = 1.0
    out: NDArray[numpy.float32] = lengths.astype(numpy.float32)
    return out


@dataclass(frozen=True, eq=False)  # arrays: compared by identity, as numpy cannot say ==
class TopicModel:
    labels: tuple[str, ...]
    keys: U64  # every feature seen in training, sorted
    idf: NDArray[numpy.float32]  # per key
    weights: NDArray[numpy.float32]  # (keys, labels)
    bias: F64  # (labels,)
    # Built with the model (about 10 ms), so that no question pays for it.
    _table: _KeyTable = field(init=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_table", _KeyTable(self.keys))

    def predict(self, arrays: Sequence[U64]) -> F64:
        """Each label's probability for texts given by their words' NORM arrays (a row per
        text)."""
        x = _tf(arrays, self._table, self.idf)
        # Scaling a row to unit length scales its dot products alike: done after them, on one
        # number per label instead of on every feature.
        logits = numpy.asarray(x @ self.weights, dtype=numpy.float64)
        logits /= _lengths(x)[:, None]
        logits += self.bias
        out: F64 = 1.0 / (1.0 + numpy.exp(-logits))
        return out

    @classmethod
    def fit(cls, arrays: Sequence[U64], targets: NDArray[Any], labels: Sequence[str],
            c: float) -> TopicModel:
        """Fit to texts given by their words' NORM arrays and their 0/1 ``targets`` (a row per
        text, a column per label); ``c`` is the inverse of the L2 penalty's strength."""
        from sklearn.linear_model import LogisticRegression

        keys = numpy.unique(_grams(arrays)[0])
        table = _KeyTable(keys)  # the model builds its own: the idf has to come first
        n = len(arrays)
        counts = _tf(arrays, table, numpy.ones(keys.size, dtype=numpy.float32))
        doc_freq = numpy.bincount(counts.indices, minlength=keys.size)
        idf = (numpy.log((1.0 + n) / (1.0 + doc_freq)) + 1.0).astype(numpy.float32)
        x = _tf(arrays, table, idf).astype(numpy.float64)
        x.data /= numpy.repeat(_lengths(x), numpy.diff(x.indptr))
        weights = numpy.zeros((keys.size, len(labels)), dtype=numpy.float32)
        bias = numpy.zeros(len(labels))
        for j in range(len(labels)):
            y = numpy.asarray(targets[:, j], dtype=int)
            if y.min() == y.max():  # a label never (or always) seen: nothing to weigh
                bias[j] = 30.0 if y[0] else -30.0
                continue
            fitted = LogisticRegression(C=c, max_iter=5000).fit(x, y)
            weights[:, j] = fitted.coef_[0]
            bias[j] = fitted.intercept_[0]
        return cls(tuple(labels), keys, idf, weights, bias)

    def to_bytes(self) -> bytes:
        buffer = io.BytesIO()
        numpy.savez(buffer, labels=numpy.array(self.labels), keys=self.keys, idf=self.idf,
                    weights=self.weights, bias=self.bias)
        return buffer.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> TopicModel:
        with numpy.load(io.BytesIO(data), allow_pickle=False) as saved:
            return cls(tuple(str(label) for label in saved["labels"]), saved["keys"],
                       saved["idf"], saved["weights"], saved["bias"])
