"""Words: tokenizing, stop words, a light stemmer, the in-memory vocabulary used for typo
tolerance, and the relevance score shared by both database backends.

The databases find candidates (FTS5 on SQLite, tsvector on PostgreSQL); the final order is
computed here, in Python, so the same library gives the same top results on either backend.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from rapidfuzz import fuzz, process

__all__ = [
    "STOPWORDS",
    "DocFeatures",
    "Term",
    "Vocabulary",
    "doc_features",
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
    return [stem(t) for t in tokenize(text)]


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


def score(doc: DocFeatures, terms: Sequence[Term]) -> float:
    """Relevance of one document to the query terms; the same on every backend."""
    if not terms:
        return 0.0
    total = 0.0
    matched = 0
    for term in terms:
        s = term.stem
        weight = 0.0
        if s in doc.title:
            weight += TITLE
        if s in doc.keywords:
            weight += KEYWORDS
        count = doc.annotation.get(s, 0)
        if count:
            weight += ANNOTATION + 0.25 * min(count - 1, 2)
        if s in doc.publisher:
            weight += PUBLISHER
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
            total *= 1.6
        elif phrase in doc.keyword_text:
            total *= 1.4
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
