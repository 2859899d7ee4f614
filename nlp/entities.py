"""The entity component: US places and states, money, dates, federal programs, agencies, orgs.

Everything is a :class:`~spacy.matcher.PhraseMatcher` lookup or a regular expression over the
whole text, mapped back to token spans: no per-token Python loop, so it keeps up with the topic
classifier. Each entity carries a normalised value in ``doc._.entity_values`` (keyed by character
offsets): ``"2500000"`` for ``$2.5 million``, ``"Springfield, OR"`` for a place,
``"2025-03-14"`` for a date, the canonical acronym for a program.

State postal codes that are also English words (IN, OR, ME, OK, HI, OH...) count only right after
a place name ("Springfield, OR", "Eugene OR"); lower-case words never count as codes.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Iterator, Sequence
from decimal import Decimal, InvalidOperation
from operator import attrgetter
from typing import Any, NamedTuple, cast

import numpy
from spacy.attrs import ENT_IOB, ENT_TYPE
from spacy.language import Language
from spacy.matcher import PhraseMatcher
from spacy.tokens import Doc
from spacy.util import filter_spans
from thinc.types import Ints2d

from nlp.batch import JoinedDoc, Match
from nlp.doctext import data_of, ext_key, pattern_doc, text_of
from nlp.gazetteer import Gazetteer, load_gazetteer
from nlp.lexicon import AGENCIES, ORGS, PROGRAMS

__all__ = ["ENTITY_COMPONENT", "EntityFinder", "Row", "parse_money"]

ENTITY_COMPONENT = "city311_entities"

if not Doc.has_extension("entity_values"):
    Doc.set_extension("entity_values", default=None)
_VALUES = ext_key("entity_values")

# Codes that are safe to read as a state wherever they stand in upper case.
_SAFE_CODES = frozenset({
    "AZ", "CA", "CT", "DC", "FL", "KS", "KY", "MN", "NC", "ND", "NH", "NJ", "NM", "NV", "NY",
    "RI", "SC", "SD", "TN", "TX", "VT", "WI", "WV", "WY", "IA", "AK",
})

_CAP_WORD = r"[A-Z][\w'’.\-]*"
_NUM = r"\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?"
_SCALE_WORDS = {
    "thousand": 10**3, "k": 10**3, "million": 10**6, "mil": 10**6, "mm": 10**6, "m": 10**6,
    "billion": 10**9, "bn": 10**9, "b": 10**9,
}
_MONEY_RE = re.compile(
    rf"(?:US)?\$\s?(?P<n1>{_NUM})(?:\s?(?P<s1>thousand|million|billion|mil|bn|mm|[kKmMbB])\b)?"
    rf"|\b(?P<n2>{_NUM})\s?(?P<s2>thousand|million|billion|[kKmM])?\s(?:dollars|USD)\b"
    r"|\b(?P<w3>(?:a|one|two|three|four|five|six|seven|eight|nine|ten|twenty|fifty|"
    r"a few|several|half a|a half)(?:\s(?:hundred))?)\s(?P<s3>thousand|million|billion)\s"
    r"dollars\b",
    re.IGNORECASE,
)
_WORD_NUMBERS: dict[str, Decimal | int] = {
    "a": 1, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7,
    "eight": 8, "nine": 9, "ten": 10, "twenty": 20, "fifty": 50, "half a": Decimal("0.5"),
    "a half": Decimal("0.5"),
}

_MONTHS = {
    "jan": 1, "feb": 2, "mar": 3, "apr": 4, "may": 5, "jun": 6, "jul": 7, "aug": 8, "sep": 9,
    "oct": 10, "nov": 11, "dec": 12,
}
_MONTH = (r"(?P<mon>Jan(?:uary)?|Feb(?:ruary)?|Mar(?:ch)?|Apr(?:il)?|May|June?|July?|Aug(?:ust)?|"
          r"Sep(?:t(?:ember)?)?|Oct(?:ober)?|Nov(?:ember)?|Dec(?:ember)?)\.?")
_WEEKDAYS = r"Monday|Tuesday|Wednesday|Thursday|Friday|Saturday|Sunday"
_DATE_RE = re.compile(
    rf"\b{_MONTH}\s(?P<day>\d{{1,2}})(?:st|nd|rd|th)?\b(?:,?\s(?P<year>(?:19|20)\d\d)\b)?"
    rf"|\b(?P<mon2>January|February|March|April|June|July|August|September|October|November|"
    rf"December|Jan\.?|Feb\.?|Aug\.?|Sept?\.?|Oct\.?|Nov\.?|Dec\.?)(?:\s(?P<year2>(?:19|20)\d\d))?"
    r"\b"
    r"|\bMay\s(?P<year3>(?:19|20)\d\d)\b"
    r"|\b(?P<iso>(?:19|20)\d\d-\d\d-\d\d)\b"
    r"|\b(?P<m4>\d{1,2})/(?P<d4>\d{1,2})(?:/(?P<y4>(?:19|20)?\d\d))?\b"
    r"|\b(?P<fy>FY\s?'?(?:19|20)?\d\d|fiscal year (?:19|20)\d\d)\b"
    rf"|\b(?P<rel>(?:(?:this|next|by|on|until|before)\s)?(?:{_WEEKDAYS})"
    r"|tomorrow|tonight|end of (?:the )?(?:day|week|month|quarter|year|fiscal year))\b"
    r"|\b(?:in|since|by|until|through|before|after|during)\s(?P<year5>(?:19|20)\d\d)\b",
)
_FY_DIGITS = re.compile(r"\d+")
# What sets off a look for a date: month and day names (matched as tokens), years, d/d, FY.
_MONTH_WORDS = ("January", "February", "March", "April", "May", "June", "July", "August",
                "September", "October", "November", "December", "Jan", "Feb", "Mar", "Apr",
                "Jun", "Jul", "Aug", "Sep", "Sept", "Oct", "Nov", "Dec")
_WHEN_WORDS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday",
               "Tomorrow", "Tonight", "End")
# ``(?:19|20)\d\d|\d/\d``, written to start with a digit class: the same matches, but the regex
# engine skips to the next digit instead of trying the pattern at every character.
_NUMBER_DATE_HINT_RE = re.compile(r"\d(?:(?<=1)9\d\d|(?<=2)0\d\d|/\d)")
_FY_HINT_RE = re.compile(r"FY|fiscal year")

# "City of", "Town of"... before a place name.
_CITY_OF_WORDS = ("City", "Town", "Village", "Borough", "Township", "city", "town", "village")
_CITY_OF_FIRST = "".join(sorted({w[0] for w in _CITY_OF_WORDS}))
_CITY_OF_REST = "|".join(f"(?<={w[0]}){w[1:]}" for w in _CITY_OF_WORDS)

# Program names that are also English words: only in a context that says "program".
_PROGRAM_WORD_RE = re.compile(r"\b(?:HOME-ARP|HOME|RAISE|BUILD|ESG)\b")
_PROGRAM_AFTER_RE = re.compile(
    r"-ARP|[ \t]+(?:Investment|funds?|funding|program|dollars|allocation|grants?|money|awards?|"
    r"rules|regulations|match|projects?|units?|consortium|PJs?|entitlement|application|NOFO|"
    r"subrecipients?|\$)\b"
    r"|[ \t]*(?:,|and|or|/|&)[ \t]*(?:CDBG|ESG|LIHTC|HOPWA|HTF|HOME)\b"
)
_PROGRAM_BEFORE_RE = re.compile(r"(?:CDBG|ESG|LIHTC|HOPWA|HTF|HOME),?[ \t]*(?:,|and|or|/|&)[ \t]*$")
_ESG_NOT_PROGRAM_RE = re.compile(
    r"[ \t-]+(?:screen|invest|criteria|factor|scor|rating|portfolio|disclos|metric|fund\b)",
    re.IGNORECASE,
)


def _money_matches(text: str) -> Iterator[re.Match[str]]:
    """``_MONEY_RE.finditer(text)``, without trying the (slow, case-blind) pattern at every
    character. Unless the text says "dollars" or "USD" (in any case), only the first branch can
    match, and it starts at a "$" or two characters before one ("US$"): trying those places in
    order, each from the end of the previous match, finds the same matches as the scan."""
    folded = text.casefold()  # casefold, not lower: the pattern's "s" also matches "ſ"
    if "dollars" in folded or "usd" in folded:
        yield from _MONEY_RE.finditer(text)
        return
    pos = 0
    at = text.find("$")
    while at >= 0:
        for start in (at - 2, at):
            if start >= pos:
                m = _MONEY_RE.match(text, start)
                if m is not None:
                    yield m
                    pos = m.end()
                    break
        at = text.find("$", at + 1)


def parse_money(number: str, scale: str | None) -> str | None:
    """``("2.5", "million")`` -> ``"2500000"``; None when the number does not parse."""
    try:
        value = Decimal(number.replace(",", ""))
    except InvalidOperation:
        return None
    if scale:
        value *= _SCALE_WORDS[scale.lower()]
    value = value.quantize(Decimal("0.01"))
    text = format(value.normalize(), "f")
    return text


def _money_value(m: re.Match[str]) -> str | None:
    if m.group("n1"):
        return parse_money(m.group("n1"), m.group("s1"))
    if m.group("n2"):
        return parse_money(m.group("n2"), m.group("s2"))
    words = m.group("w3").lower().split()
    base = _WORD_NUMBERS.get(" ".join(words[:2]), _WORD_NUMBERS.get(words[0], 1))
    if words[-1] == "hundred" and len(words) > 1:
        base = Decimal(_WORD_NUMBERS.get(words[0], 1)) * 100
    if words[0] in ("several", "a") and words[-1] == "few":
        return None
    return parse_money(str(base), m.group("s3"))


def _date_value(m: re.Match[str]) -> str | None:
    if m.group("mon"):
        month = _MONTHS[m.group("mon")[:3].lower()]
        day = int(m.group("day"))
        if not 1 <= day <= 31:
            return None
        year = m.group("year")
        return f"{year}-{month:02d}-{day:02d}" if year else f"--{month:02d}-{day:02d}"
    if m.group("mon2"):
        month = _MONTHS[m.group("mon2")[:3].lower()]
        year = m.group("year2")
        return f"{year}-{month:02d}" if year else f"--{month:02d}"
    if m.group("year3"):
        return f"{m.group('year3')}-05"
    if m.group("iso"):
        return str(m.group("iso"))
    if m.group("m4"):
        month, day = int(m.group("m4")), int(m.group("d4"))
        if not (1 <= month <= 12 and 1 <= day <= 31):
            return None
        year = m.group("y4")
        if year is None:
            return f"--{month:02d}-{day:02d}"
        if len(year) == 2:
            year = "20" + year
        return f"{year}-{month:02d}-{day:02d}"
    if m.group("fy"):
        digits: str = _FY_DIGITS.findall(m.group("fy"))[-1]
        return "FY" + (digits if len(digits) == 4 else "20" + digits[-2:])
    if m.group("rel"):
        words = m.group("rel").lower().split()
        if words[0] in ("this", "by", "on", "until", "before"):
            words = words[1:]
        return " ".join(words)
    if m.group("year5"):
        return m.group("year5")
    return None


class _Entry(NamedTuple):
    """One entity as found. ``start`` and ``end`` are token indices, so that spaCy's
    ``filter_spans``, which reads only those, can choose between overlapping entries."""

    start: int
    end: int
    label: str
    start_char: int
    end_char: int
    value: str | None


# One entity as reported: label, first character, end character, value.
Row = tuple[str, int, int, "str | None"]


def _non_overlapping(entries: list[_Entry]) -> list[_Entry]:
    """``spacy.util.filter_spans`` (longest first, then earliest), without its sort when the
    entries do not overlap, which is nearly always; in text order."""
    if len(entries) < 2:
        return entries
    ordered = sorted(entries, key=attrgetter("start"))
    end = -1
    for entry in ordered:
        if entry.start < end:
            return cast(list[_Entry], filter_spans(cast(list[Any], entries)))
        end = entry.end
    return ordered


_LABELS = ("CITY", "STATE", "MONEY", "DATE", "PROGRAM", "AGENCY", "ORG")
_ENT_ATTRS = [ENT_IOB, ENT_TYPE]
_IOB_INSIDE, _IOB_OUTSIDE, _IOB_BEGIN = 1, 2, 3


_outside_rows: dict[int, numpy.ndarray[Any, numpy.dtype[numpy.uint64]]] = {}


def _set_ents(doc: Doc, spans: Iterable[tuple[int, int, int]]) -> None:
    """``doc.set_ents(spans, default="outside")`` for token spans (start, end, label id) that do
    not overlap: the same ENT_IOB and ENT_TYPE of every token, written with ``Doc.from_array``
    in a third of the time (``set_ents`` checks every token in Python). The all-outside rows of
    each length are kept (``from_array`` only reads them)."""
    n = len(doc)
    if n == 0:
        return
    rows = _outside_rows.get(n)
    if rows is None:
        rows = numpy.zeros((n, 2), dtype=numpy.uint64)
        rows[:, 0] = _IOB_OUTSIDE
        rows.flags.writeable = False
        if n <= 1024:
            _outside_rows[n] = rows
    spans = list(spans)
    if spans:
        rows = rows.copy()
        iob, label = rows[:, 0], rows[:, 1]
        for start, end, label_id in spans:
            iob[start] = _IOB_BEGIN
            iob[start + 1:end] = _IOB_INSIDE
            label[start:end] = label_id
    doc.from_array(_ENT_ATTRS, cast(Ints2d, rows))


class EntityFinder:
    """Finds entities: as a pipeline component it writes ``doc.ents`` and
    ``doc._.entity_values``; :meth:`find_joined` returns them for each text of a batch."""

    def __init__(self, nlp: Language, name: str = ENTITY_COMPONENT) -> None:
        self.name = name
        self.gaz: Gazetteer = load_gazetteer()
        # Kept: a common name has dozens of states to weigh.
        self._placed = functools.lru_cache(maxsize=10_000)(self._place_with_state)
        self.matcher = PhraseMatcher(nlp.vocab, attr="ORTH")
        self.keys: dict[int, tuple[str, str | None]] = {}
        self.label_ids = {label: nlp.vocab.strings.add(label) for label in _LABELS}
        strings = nlp.vocab.strings
        for value, forms in PROGRAMS.items():
            self._add(nlp, strings, "PROGRAM", value, forms)
        for value, forms in AGENCIES.items():
            self._add(nlp, strings, "AGENCY", value, forms)
        for value, forms in ORGS.items():
            self._add(nlp, strings, "ORG", value, forms)
        for code, state in self.gaz.states.items():
            self._add(nlp, strings, "STATE", code, (state, state.lower()))
        for place in self.gaz.standalone_places():
            self._add(nlp, strings, "CITY", place, (place,))
        # Triggers: a state code or a date word makes the (slow) regular expressions worth
        # running, and only in a window around it.
        for code in self.gaz.states:
            self._add(nlp, strings, "CODE", code, (code,))
        for month in _MONTH_WORDS:
            self._add(nlp, strings, "WHEN", month, (month, month + "."))
        for word in _WHEN_WORDS:
            self._add(nlp, strings, "WHEN", word, (word, word.lower()))
        states = "|".join(sorted(self.gaz.states, key=len, reverse=True))
        names = "|".join(sorted((re.escape(s) for s in self.gaz.state_codes),
                                key=len, reverse=True))
        # "Pine Bluff, Arkansas", "Springfield, OR", "Eugene OR", "City of Kearney, NE".
        # ``\b(?:CAP_WORD[ \t]){0,3}CAP_WORD``, written to start with a character class (the
        # ``\b`` becomes a look-behind): the same matches, but the regex engine skips to the next
        # capital instead of trying the pattern at every character.
        self.place_state_re = re.compile(
            rf"(?P<place>[A-Z](?<!\w[A-Z])[\w'’.\-]*(?:[ \t]{_CAP_WORD}){{0,3}})(?P<comma>,?)"
            rf"[ \t]+(?P<state>(?:{names}|{states})(?![\w'’-]))"
        )
        # ``\b(?:City|Town|...)[ \t]of[ \t]``, written to start with a character class in the
        # same way; each word's first letter is checked by a look-behind, in the same order.
        self.city_of_re = re.compile(
            rf"[{_CITY_OF_FIRST}](?<!\w[{_CITY_OF_FIRST}])(?:{_CITY_OF_REST})[ \t]of[ \t]"
            rf"(?P<place>(?:{_CAP_WORD}[ \t]){{0,2}}{_CAP_WORD})"
        )

    def _add(self, nlp: Language, strings: object, label: str, value: str,
             forms: Iterable[str]) -> None:
        key = f"{label}|{value}"
        self.matcher.add(key, [pattern_doc(nlp, form) for form in dict.fromkeys(forms)])
        self.keys[nlp.vocab.strings.add(key)] = (label, value)

    def _place_prefix(self, words: list[str], state: str | None) -> tuple[int, str] | None:
        """The longest run of trailing words that names a known place (in ``state`` if given):
        returns (words dropped from the front, place name)."""
        for drop in range(len(words)):
            name = " ".join(words[drop:])
            by_state = self.gaz.places.get(name)
            if by_state and (state is None or state in by_state):
                return drop, name
        return None

    def __call__(self, doc: Doc) -> Doc:
        text = text_of(doc)
        entries = self._find(doc, text, self.matcher(doc), 0)
        label_ids = self.label_ids
        _set_ents(doc, ((e.start, e.end, label_ids[e.label]) for e in entries))
        data_of(doc)[_VALUES] = {(e.start_char, e.end_char): e.value for e in entries}
        return doc

    def find_joined(self, joined: JoinedDoc) -> list[list[Row]]:
        """The entities of each text of ``joined``, in text order, none overlapping, without
        writing them on the doc."""
        doc = joined.doc
        return [self._rows(self._find(doc, text, matches, offset)) for text, matches, offset in zip(
            joined.texts, joined.split(self.matcher(doc)), joined.offsets, strict=True)]

    def _find(self, doc: Doc, text: str, matches: Sequence[Match], offset: int) -> list[_Entry]:
        """The entities of ``text``, which starts at character ``offset`` of ``doc``, from the
        matches of its tokens: token indices are the doc's, character offsets the text's."""
        # In the order found: the order decides between entities of the same extent.
        found: list[_Entry] = []

        def add(start: int, end: int, label: str, value: str | None) -> None:
            span = doc.char_span(start + offset, end + offset, alignment_mode="expand")
            if span is not None:
                found.append(_Entry(span.start, span.end, label, span.start_char - offset,
                                    span.end_char - offset, value))

        when: list[int] = []
        states: list[tuple[int, int]] = []
        keys = self.keys
        for match_id, start, end in matches:
            kind, value = keys[match_id]
            first = doc[start]
            if kind == "WHEN":
                when.append(first.idx - offset)
                continue
            last = first if end - start == 1 else doc[end - 1]
            start_char, end_char = first.idx - offset, last.idx + len(last) - offset
            if kind == "CODE":
                states.append((start_char, end_char))
                if value in _SAFE_CODES:
                    found.append(_Entry(start, end, "STATE", start_char, end_char, value))
                continue
            if kind == "STATE":
                states.append((start_char, end_char))
            found.append(_Entry(start, end, kind, start_char, end_char, value))
        for s_start, s_end in states:
            for m in self.place_state_re.finditer(text, max(0, s_start - 60), s_end):
                if m.end() != s_end:
                    continue
                state_text = m.group("state")
                code = self.gaz.state_codes.get(state_text, state_text)
                words = m.group("place").split(" ")
                hit = self._place_prefix(words, code)
                if hit is not None:
                    drop, name = hit
                    start = m.start("place") + sum(len(w) + 1 for w in words[:drop])
                    add(start, m.end("place"), "CITY", f"{name}, {code}")
                    add(m.start("state"), m.end("state"), "STATE", code)
                elif state_text in self.gaz.state_codes or (m.group("comma")
                                                            and code in _SAFE_CODES):
                    add(m.start("state"), m.end("state"), "STATE", code)
        # The hints, spelled out: a generator over a tuple costs more than the tests themselves.
        if ("ity of " in text or "own of " in text or "illage of " in text
                or "orough of " in text or "ownship of " in text):
            for m in self.city_of_re.finditer(text):
                words = m.group("place").split(" ")
                for keep in range(len(words), 0, -1):
                    name = " ".join(words[:keep])
                    if name in self.gaz.places:
                        end = m.start("place") + len(name)
                        add(m.start("place"), end, "CITY", name)
                        break
        if "HOME" in text or "RAISE" in text or "BUILD" in text or "ESG" in text:
            for m in _PROGRAM_WORD_RE.finditer(text):
                after = text[m.end():m.end() + 30]
                word = m.group()
                if word == "ESG" and _ESG_NOT_PROGRAM_RE.match(after):
                    continue
                if (word == "HOME-ARP" or _PROGRAM_AFTER_RE.match(after)
                        or _PROGRAM_BEFORE_RE.search(text[max(0, m.start() - 12):m.start()])):
                    add(m.start(), m.end(), "PROGRAM", word)
        if "$" in text or "ollar" in text or "USD" in text:
            for m in _money_matches(text):
                add(m.start(), m.end(), "MONEY", _money_value(m))
        if "FY" in text or "iscal year" in text:
            when.extend(m.start() for m in _FY_HINT_RE.finditer(text))
        if "19" in text or "20" in text or "/" in text:  # what the hint needs, found faster
            when.extend(m.start() for m in _NUMBER_DATE_HINT_RE.finditer(text))
        if when:
            seen: set[tuple[int, int]] = set()
            for at in when:
                for m in _DATE_RE.finditer(text, max(0, at - 9), at + 24):
                    if (m.start(), m.end()) in seen or not m.start() <= at < m.end():
                        continue
                    seen.add((m.start(), m.end()))
                    date = _date_value(m)
                    if date is not None:
                        add(m.start(), m.end(), "DATE", date)
        if not found:  # most questions
            return found
        return self._resolved(found, _non_overlapping(found))

    def _resolved(self, found: list[_Entry], kept_entries: list[_Entry]) -> list[_Entry]:
        """The kept entries, with their values settled: an entry's value is the first found of
        its extent and label, and a place without a state gets the one the text names, else its
        likeliest."""
        kept = {(e.start_char, e.end_char, e.label) for e in kept_entries}
        codes = {e.value for e in found if e.label == "STATE" and e.value
                 and (e.start_char, e.end_char, "STATE") in kept}
        values: dict[tuple[int, int], str | None] = {}
        for _, _, label, start, end, value in found:
            key = (start, end)
            if (start, end, label) not in kept or key in values:
                continue
            if label == "CITY" and value is not None and "," not in value:
                value = self._placed(value, frozenset(codes))
            values[key] = value
        return [entry._replace(value=values.get((entry.start_char, entry.end_char)))
                for entry in kept_entries]

    def _place_with_state(self, place: str, codes: frozenset[str]) -> str:
        """``"Place, ST"``: the state the text names (``codes``) unless its namesake there is a
        hamlet, else the state of the biggest place of that name."""
        by_state = self.gaz.places.get(place, {})
        top = max(by_state.values(), default=0)
        in_doc = sorted(c for c in codes if by_state.get(c, 0) * 20 >= top)
        best = in_doc[0] if in_doc else self.gaz.best_state(place)
        return f"{place}, {best}" if best else place

    @staticmethod
    def _rows(entries: list[_Entry]) -> list[Row]:
        return [(e.label, e.start_char, e.end_char, e.value) for e in entries]

    # The component is rebuilt from the shipped word lists: nothing to save or load.
    def to_disk(self, path: object, *, exclude: Iterable[str] = ()) -> None:
        return None

    def from_disk(self, path: object, *, exclude: Iterable[str] = ()) -> EntityFinder:
        return self

    def to_bytes(self, *, exclude: Iterable[str] = ()) -> bytes:
        return b""

    def from_bytes(self, data: bytes, *, exclude: Iterable[str] = ()) -> EntityFinder:
        return self


@Language.factory(ENTITY_COMPONENT)
def make_entity_finder(nlp: Language, name: str) -> EntityFinder:
    return EntityFinder(nlp, name)
