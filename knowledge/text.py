"""Words: tokenizing, stop words, a light stemmer, the in-memory vocabulary used for typo
tolerance, and the relevance score shared by both database backends.

The databases find candidates (FTS5 on SQLite, tsvector on PostgreSQL); the final order is
computed here, in Python, so the same library gives the same top results on either backend.
"""

from __future__ import annotations

import math
import re
import unicodedata
from array import array
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt
from rapidfuzz import fuzz, process

__all__ = [
    "STOPWORDS",
    "DocFeatures",
    "IndexRow",
    "SearchIndex",
    "Term",
    "Vocabulary",
    "doc_features",
    "field_weight",
    "normalize",
    "score",
    "stem",
    "tokenize",
    "words",
]

# PostgreSQL's English stop words (the Snowball list): dropping them here keeps both backends
# searching for the same words.
STOPWORDS = frozenset((
    "i", "me", "my", "myself", "we", "our", "ours", "ourselves", "you", "your", "yours",
    "yourself", "yourselves", "he", "him", "his", "himself", "she", "her", "hers", "herself",
    "it", "its", "itself", "they", "them", "their", "theirs", "themselves", "what", "which",
    "who", "whom", "this", "that", "these", "those", "am", "is", "are", "was", "were", "be",
    "been", "being", "have", "has", "had", "having", "do", "does", "did", "doing", "a", "an",
    "the", "and", "but", "if", "or", "because", "as", "until", "while", "of", "at", "by", "for",
    "with", "about", "against", "between", "into", "through", "during", "before", "after",
    "above", "below", "to", "from", "up", "down", "in", "out", "on", "off", "over", "under",
    "again", "further", "then", "once", "here", "there", "when", "where", "why", "how", "all",
    "any", "both", "each", "few", "more", "most", "other", "some", "such", "no", "nor", "not",
    "only", "own", "same", "so", "than", "too", "very", "s", "t", "can", "will", "just", "don",
    "should", "now",
))

_TOKEN = re.compile(r"[0-9a-z]+")
_STEMS: dict[str, str] = {}


def normalize(text: str) -> str:
    """Lower case, accents folded to ASCII letters."""
    text = text.casefold()
    if not text.isascii():
        text = "".join(c for c in unicodedata.normalize("NFKD", text)
                       if not unicodedata.combining(c))
    return text


def tokenize(text: str) -> list[str]:
    return _TOKEN.findall(normalize(text))


def words(text: str) -> list[str]:
    """The searchable words of a text: tokens without stop words and single letters."""
    return [t for t in tokenize(text) if len(t) > 1 and t not in STOPWORDS]


def stem(word: str) -> str:
    """A light, predictable stemmer: plurals only (rating/ratings, city/cities)."""
    cached = _STEMS.get(word)
    if cached is not None:
        return cached
    result = word
    if len(word) > 3 and not word.isdigit():
        if word.endswith("ies") and len(word) > 4:
            result = word[:-3] + "y"
        elif word.endswith(("sses", "xes", "ches", "shes", "zes")):
            result = word[:-2]
        elif word.endswith("s") and not word.endswith(("ss", "us", "is")):
            result = word[:-1]
    if len(_STEMS) < 500_000:
        _STEMS[word] = result
    return result


@dataclass(frozen=True)
class Term:
    """One word of a query: what the engine is asked for and what the score matches."""

    word: str  # as typed (normalised)
    search: str  # the word sent to the engine (the correction when there is one)
    stem: str
    idf: float

    @property
    def corrected(self) -> bool:
        return self.search != self.word


@dataclass
class DocFeatures:
    title: frozenset[str]
    keywords: frozenset[str]
    annotation: Counter[str]
    publisher: frozenset[str]
    title_text: str  # " stem stem … " for phrase matching
    keyword_text: str


def _stems(text: str) -> list[str]:
    # The same words a query can hold: stop words and single letters never match, on either
    # side, so "cost of living" finds the title "Cost of Living" as a phrase.
    return [stem(t) for t in words(text)]


def doc_features(title: str, keywords: Sequence[str], annotation: str,
                 publisher: str) -> DocFeatures:
    title_stems = _stems(title)
    keyword_lists = [_stems(k) for k in keywords]
    return DocFeatures(
        title=frozenset(title_stems),
        keywords=frozenset(s for ks in keyword_lists for s in ks),
        annotation=Counter(_stems(annotation)),
        publisher=frozenset(_stems(publisher)),
        title_text=f" {' '.join(title_stems)} ",
        keyword_text=" | ".join(f" {' '.join(ks)} " for ks in keyword_lists),
    )


TITLE, KEYWORDS, ANNOTATION, PUBLISHER = 3.0, 2.5, 1.0, 1.0
TITLE_PHRASE, KEYWORD_PHRASE = 1.6, 1.4


def field_weight(title: bool, keywords: bool, count: int, publisher: bool) -> float:
    """How strongly one document holds one word: the one place this arithmetic lives, so the
    in-memory index and :func:`score` produce bit-identical numbers."""
    weight = 0.0
    if title:
        weight += TITLE
    if keywords:
        weight += KEYWORDS
    if count:
        weight += ANNOTATION + 0.25 * min(count - 1, 2)
    if publisher:
        weight += PUBLISHER
    return weight


def score(doc: DocFeatures, terms: Sequence[Term]) -> float:
    """Relevance of one document to the query terms; the same on every backend."""
    if not terms:
        return 0.0
    total = 0.0
    matched = 0
    for term in terms:
        s = term.stem
        weight = field_weight(s in doc.title, s in doc.keywords, doc.annotation.get(s, 0),
                              s in doc.publisher)
        if weight:
            matched += 1
            total += term.idf * weight
    if not matched:
        return 0.0
    coverage = matched / len(terms)
    total *= 0.25 + coverage * coverage
    if len(terms) > 1:
        phrase = f" {' '.join(t.stem for t in terms)} "
        if phrase in doc.title_text:
            total *= TITLE_PHRASE
        elif phrase in doc.keyword_text:
            total *= KEYWORD_PHRASE
    return round(total, 9)


@dataclass
class Vocabulary:
    """Every word of the library with its document frequency, kept in memory for idf and for
    correcting typos against the words the library actually uses."""

    documents: int = 0
    df: Counter[str] = field(default_factory=Counter)  # stem -> documents containing it
    surfaces: dict[str, str] = field(default_factory=dict)  # word -> stem
    _near: dict[int, list[str]] = field(default_factory=dict)
    _corrections: dict[str, str | None] = field(default_factory=dict)

    @classmethod
    def build(cls, documents: Iterable[Iterable[str]]) -> Vocabulary:
        vocabulary = cls()
        for texts in documents:
            seen: set[str] = set()
            for text in texts:
                seen.update(words(text))
            vocabulary.documents += 1
            stems = set()
            for word in seen:
                s = vocabulary.surfaces.get(word)
                if s is None:
                    s = vocabulary.surfaces[word] = stem(word)
                stems.add(s)
            vocabulary.df.update(stems)
        return vocabulary

    def __len__(self) -> int:
        return len(self.surfaces)

    def idf(self, stem_: str) -> float:
        n = self.df.get(stem_, 0)
        return math.log(1.0 + (self.documents - n + 0.5) / (n + 0.5))

    def knows(self, word: str) -> bool:
        return stem(word) in self.df

    def _candidates(self, length: int) -> list[str]:
        near = self._near.get(length)
        if near is None:
            near = sorted(w for w in self.surfaces if abs(len(w) - length) <= 2)
            self._near[length] = near
        return near

    def correct(self, word: str) -> str | None:
        """The library word closest to an unknown word, or None when nothing is close."""
        if self.knows(word):
            return word
        if word in self._corrections:
            return self._corrections[word]
        best: str | None = None
        if len(word) >= 4 and not word.isdigit():
            found = process.extract(word, self._candidates(len(word)), scorer=fuzz.ratio,
                                    score_cutoff=80, limit=8)
            if found:
                # Closest first; among equally close words the more common one.
                found.sort(key=lambda m: (-round(m[1], 6), -self.df[stem(m[0])], m[0]))
                best = found[0][0]
        if len(self._corrections) < 10_000:
            self._corrections[word] = best
        return best

    def terms(self, query: str) -> list[Term]:
        """The query's words, each corrected against the library when it is unknown."""
        out: list[Term] = []
        seen: set[str] = set()
        for word in words(query):
            search = self.correct(word) or word
            s = stem(search)
            if s in seen:
                continue
            seen.add(s)
            out.append(Term(word=word, search=search, stem=s, idf=self.idf(s)))
        return out[:32]


# ---- the in-memory index ---------------------------------------------------------------------

class IndexRow(NamedTuple):
    """What the index needs of one resource."""

    num: int
    id: str
    sort_key: str
    title: str
    keywords: Sequence[str]
    annotation: str
    publisher: str
    kind: str
    year: int | None
    topics: Sequence[str]


# A posting's code packs where the word occurs: bit 0 title, bit 1 keywords, bit 2 publisher,
# bits 3-4 the annotation count (capped at 3, as the score caps it).
_WEIGHTS: npt.NDArray[np.float64] = np.array(
    [field_weight(bool(c & 1), bool(c & 2), c >> 3, bool(c & 4)) for c in range(32)],
    dtype=np.float64)
_ROUND = 9  # digits kept in a score; the ranking ties what agrees to this many


class _StemMap(dict[str, str]):
    """token -> stem, or "" for what :func:`words` drops; filled on first sight, so
    ``filter(None, map(stems.__getitem__, tokens))`` does the work of ``words`` in C."""

    def __missing__(self, token: str) -> str:
        value = self[token] = stem(token) if len(token) > 1 and token not in STOPWORDS else ""
        return value


class _Ids(dict[str, int]):
    def __missing__(self, key: str) -> int:
        value = self[key] = len(self)
        return value


Mask = npt.NDArray[np.bool_]


@dataclass(eq=False)
class SearchIndex:
    """Every resource's words in memory, for ranking without a round trip per candidate.

    For each stem, the documents holding it and how (a code, see ``_WEIGHTS``), in flat numpy
    arrays sliced by ``offsets``. A query scores every matching document with exactly the
    arithmetic of :func:`score`, so the order is the same as scoring each one by hand, and
    picks a page without sorting all of them. Filters are boolean masks over documents.
    """

    nums: npt.NDArray[np.int64]  # document -> resource row number (ascending)
    rank: npt.NDArray[np.int64]  # document -> position in browse order (sort key, id)
    order: npt.NDArray[np.int64]  # browse position -> document
    stem_ids: dict[str, int]
    offsets: npt.NDArray[np.int64]
    post_docs: npt.NDArray[np.int32]
    post_codes: npt.NDArray[np.uint8]
    title_texts: list[str]
    keyword_texts: list[str]
    kinds: npt.NDArray[np.int16]
    kind_codes: dict[str, int]
    publishers: npt.NDArray[np.int32]
    publisher_codes: dict[str, int]  # lower-cased name -> code
    years: npt.NDArray[np.int32]  # 0 when unknown
    topics: dict[str, Mask]
    _masks: dict[tuple[Any, ...], Mask | None] = field(default_factory=dict)

    @property
    def size(self) -> int:
        return len(self.nums)

    @classmethod
    def build(cls, rows: Sequence[IndexRow]) -> tuple[SearchIndex, Vocabulary]:
        """The index and the vocabulary of these rows (ordered by ``num``)."""
        stems = _StemMap()
        get = stems.__getitem__
        stem_ids = _Ids()
        ident = stem_ids.__getitem__
        # One entry per occurrence: (stem, document, field bit); bit 8 is an annotation word.
        # Folding them into one code per (stem, document) is left to numpy.
        post_stem, post_doc, post_bits = array("i"), array("i"), array("B")
        title_texts: list[str] = []
        keyword_texts: list[str] = []

        def add(doc: int, found: list[str], bit: int) -> None:
            post_stem.extend(map(ident, found))
            post_doc.extend([doc] * len(found))
            post_bits.frombytes(bytes((bit,)) * len(found))

        for doc, row in enumerate(rows):
            title = list(filter(None, map(get, tokenize(row.title))))
            keyword_lists = [list(filter(None, map(get, tokenize(k)))) for k in row.keywords]
            add(doc, title, 1)
            for keyword_stems in keyword_lists:
                add(doc, keyword_stems, 2)
            add(doc, list(filter(None, map(get, tokenize(row.publisher)))), 4)
            add(doc, list(filter(None, map(get, tokenize(row.annotation)))), 8)
            title_texts.append(f" {' '.join(title)} ")
            keyword_texts.append(" | ".join(f" {' '.join(ks)} " for ks in keyword_lists))
        size = len(rows)
        span = max(size, 1)
        keys = (np.frombuffer(post_stem, dtype=np.intc).astype(np.int64) * span
                + np.frombuffer(post_doc, dtype=np.intc))
        grouped = np.argsort(keys, kind="stable")
        keys = keys[grouped]
        bits = np.frombuffer(post_bits, dtype=np.uint8)[grouped]
        starts = np.flatnonzero(np.diff(keys, prepend=-1))  # first entry of each pair
        codes = np.zeros(len(starts), dtype=np.uint8)
        if len(starts):
            mentions = np.add.reduceat((bits >> 3).astype(np.int32), starts)
            codes = (np.bitwise_or.reduceat(bits & 7, starts)
                     | (np.minimum(mentions, 3) << 3)).astype(np.uint8)
        unique = keys[starts]
        counts = np.bincount(unique // span, minlength=len(stem_ids))
        offsets = np.zeros(len(stem_ids) + 1, dtype=np.int64)
        np.cumsum(counts, out=offsets[1:])

        browse = sorted(range(size), key=lambda i: (rows[i].sort_key, rows[i].id))
        order = np.array(browse, dtype=np.int64)
        rank = np.empty(size, dtype=np.int64)
        rank[order] = np.arange(size, dtype=np.int64)
        kind_codes: dict[str, int] = {}
        publisher_codes: dict[str, int] = {}
        topics: dict[str, Mask] = {}
        kinds = np.empty(size, dtype=np.int16)
        publishers = np.empty(size, dtype=np.int32)
        for doc, row in enumerate(rows):
            kinds[doc] = kind_codes.setdefault(row.kind, len(kind_codes))
            publishers[doc] = publisher_codes.setdefault(row.publisher.lower(),
                                                         len(publisher_codes))
            for topic in row.topics:
                mask = topics.get(topic)
                if mask is None:
                    mask = topics[topic] = np.zeros(size, dtype=np.bool_)
                mask[doc] = True
        index = cls(
            nums=np.array([r.num for r in rows], dtype=np.int64), rank=rank, order=order,
            stem_ids=dict(stem_ids), offsets=offsets,
            post_docs=(unique % span).astype(np.int32), post_codes=codes,
            title_texts=title_texts, keyword_texts=keyword_texts, kinds=kinds,
            kind_codes=kind_codes, publishers=publishers, publisher_codes=publisher_codes,
            years=np.array([r.year or 0 for r in rows], dtype=np.int32), topics=topics,
        )
        df = Counter({s: int(counts[i]) for s, i in stem_ids.items()})
        surfaces = {word: s for word, s in stems.items() if s}
        return index, Vocabulary(documents=size, df=df, surfaces=surfaces)

    # ---- filters -------------------------------------------------------------------------

    def mask(self, topic: str | None = None, kind: str | None = None,
             publisher: str | None = None, year: int | None = None) -> Mask | None:
        """The documents passing these filters; None when nothing is filtered."""
        key = (topic, kind, publisher.lower() if publisher else None, year)
        if key in self._masks:
            return self._masks[key]
        parts: list[Mask] = []
        nothing = np.zeros(self.size, dtype=np.bool_)
        if topic is not None:
            parts.append(self.topics.get(topic, nothing))
        if kind is not None:
            code = self.kind_codes.get(kind)
            parts.append(nothing if code is None else self.kinds == code)
        if key[2] is not None:
            code = self.publisher_codes.get(key[2])
            parts.append(nothing if code is None else self.publishers == code)
        if year is not None:
            parts.append(self.years == year)
        mask: Mask | None = None
        for part in parts:
            mask = part.copy() if mask is None else mask & part
        if len(self._masks) >= 64:
            self._masks.pop(next(iter(self._masks)))
        self._masks[key] = mask
        return mask

    def browse(self, allowed: Mask | None, start: int, stop: int) -> tuple[int, list[int]]:
        """Row numbers of one page in title order, and how many pass the filters."""
        docs = self.order if allowed is None else self.order[allowed[self.order]]
        return len(docs), [int(n) for n in self.nums[docs[start:stop]]]

    # ---- scoring -------------------------------------------------------------------------

    def _accumulate(self, terms: Sequence[Term]) -> tuple[npt.NDArray[np.float64],
                                                          npt.NDArray[np.int8]]:
        """Per document: the sum of idf x weight over the terms it holds (the same additions,
        in the same order, as :func:`score`), and how many terms it holds."""
        total = np.zeros(self.size, dtype=np.float64)
        matched = np.zeros(self.size, dtype=np.int8)  # at most 32 terms
        for term in terms:
            sid = self.stem_ids.get(term.stem)
            if sid is None:
                continue
            lo, hi = int(self.offsets[sid]), int(self.offsets[sid + 1])
            docs = self.post_docs[lo:hi]
            total[docs] += term.idf * _WEIGHTS[self.post_codes[lo:hi]]
            matched[docs] += 1
        return total, matched

    def _phrase(self, doc: int, phrase: str) -> float:
        if phrase in self.title_texts[doc]:
            return TITLE_PHRASE
        if phrase in self.keyword_texts[doc]:
            return KEYWORD_PHRASE
        return 1.0

    def _phrases(self, terms: Sequence[Term], docs: npt.NDArray[np.intp],
                 full: npt.NDArray[np.bool_], scores: npt.NDArray[np.float64],
                 rest: int) -> None:
        """Apply the phrase bonus to the documents that hold it and could reach the page.

        Only documents holding every term can hold them as a phrase. They are tested best
        first, and the test stops once the next one, even with the bonus, falls below the
        page's last score (which only rises as bonuses are given). ``rest`` is how many
        matches lie below the page (negative when the page holds them all)."""
        phrase = f" {' '.join(t.stem for t in terms)} "
        todo = np.flatnonzero(full)
        slack = 10.0 ** -_ROUND
        if rest > 0:
            todo = todo[np.argsort(-scores[todo], kind="stable")]
        titles, keywords = self.title_texts, self.keyword_texts
        for begin in range(0, len(todo), 64):
            if rest > 0:
                kth = np.partition(np.round(scores, _ROUND), rest)[rest]
                if scores[todo[begin]] * TITLE_PHRASE < kth - slack:
                    return
            for i in todo[begin:begin + 64].tolist():
                doc = int(docs[i])
                if phrase in titles[doc]:
                    scores[i] *= TITLE_PHRASE
                elif phrase in keywords[doc]:
                    scores[i] *= KEYWORD_PHRASE

    def search(self, terms: Sequence[Term], allowed: Mask | None, start: int, stop: int, *,
               every_first: bool = True, enough: int = 20
               ) -> tuple[int, list[tuple[int, float]]]:
        """(row number, score) for one page of the best matches, and how many match.

        Documents holding every term are the matches; when fewer than ``enough`` do (or
        ``every_first`` is off), documents holding any term."""
        n = len(terms)
        if not n or stop <= start:
            return 0, []
        total, matched = self._accumulate(terms)
        if allowed is not None:
            matched[~allowed] = 0
        docs = np.flatnonzero(matched == n) if every_first or n == 1 else None
        if docs is None or (n > 1 and len(docs) < enough):
            docs = np.flatnonzero(matched)
        count = len(docs)
        if start >= count:
            return count, []
        coverage = matched[docs] / n
        scores = total[docs] * (0.25 + coverage * coverage)
        if n > 1:
            self._phrases(terms, docs, matched[docs] == n, scores, count - stop)
        keys = np.round(scores, _ROUND)
        if stop < count:
            kth = np.partition(keys, count - stop)[count - stop]
            above = np.flatnonzero(keys > kth)
            ties = np.flatnonzero(keys == kth)
            need = stop - len(above)
            if len(ties) > need:  # equal scores go in browse order
                ties = ties[np.argpartition(self.rank[docs[ties]], need - 1)[:need]]
            pick = np.concatenate([above, ties])
        else:
            pick = np.arange(count)
        pick = pick[np.lexsort((self.rank[docs[pick]], -keys[pick]))][start:stop]
        return count, [(int(self.nums[docs[i]]), round(float(scores[i]), _ROUND))
                       for i in pick.tolist()]

    def scores(self, terms: Sequence[Term], nums: Sequence[int]) -> dict[int, float]:
        """The score of each of these rows, equal to :func:`score` of its features."""
        out = dict.fromkeys(nums, 0.0)
        n = len(terms)
        if not n or not nums:
            return out
        total, matched = self._accumulate(terms)
        wanted = np.array(list(nums), dtype=np.int64)
        docs = np.searchsorted(self.nums, wanted)
        phrase = f" {' '.join(t.stem for t in terms)} "
        for num, doc in zip(wanted.tolist(), docs.tolist(), strict=True):
            if doc >= self.size or int(self.nums[doc]) != num or not matched[doc]:
                continue
            coverage = int(matched[doc]) / n
            value = float(total[doc]) * (0.25 + coverage * coverage)
            if n > 1 and int(matched[doc]) == n:
                value *= self._phrase(doc, phrase)
            out[num] = round(value, _ROUND)
        return out
