"""The urgency component: deadlines, emergencies and fiscal distress -> a score 0..1 and reasons.

Cue words come from :mod:`nlp.lexicon` (a lower-case PhraseMatcher); deadlines ("council votes
Tuesday", "due Friday", "by end of day") are one regular expression. Independent cues combine like
probabilities: ``1 - prod(1 - w)``, so two weak signals outrank one.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

from spacy.language import Language
from spacy.matcher import PhraseMatcher
from spacy.tokens import Doc

from nlp.batch import JoinedDoc, Match
from nlp.doctext import data_of, ext_key, pattern_doc, text_of
from nlp.lexicon import EMERGENCY_CUES, FISCAL_DISTRESS_CUES, TIME_PRESSURE_CUES

__all__ = ["URGENCY_COMPONENT", "UrgencyDetector", "combine"]

URGENCY_COMPONENT = "city311_urgency"

for _name, _default in (("urgency", 0.0), ("urgency_reasons", None)):
    if not Doc.has_extension(_name):
        Doc.set_extension(_name, default=_default)
_SCORE = ext_key("urgency")
_REASONS = ext_key("urgency_reasons")

_WHEN = (r"(?:(?:this|next|on|by)\s)?(?:monday|tuesday|wednesday|thursday|friday|saturday|sunday|"
         r"tomorrow|tonight|today|the\s\d{1,2}(?:st|nd|rd|th)|"
         r"(?:jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)[a-z]*\.?\s\d{1,2}\b|\d{1,2}/\d{1,2}|"
         r"end\sof\s(?:the\s)?(?:day|week|month)|eod|noon)")
_DEADLINE_RE = re.compile(
    rf"\b(?:council|commission|board|committee|legislature|voters?)\s(?:\w+\s)?"
    rf"(?:votes?|voting|meets|meeting|hearing|decides|takes\sit\sup)\s(?:is\s)?(?:on\s)?{_WHEN}"
    rf"|\b(?:due|deadline(?:\sis)?|closes?|expires?|submit(?:ted)?|needs?\sit|need\sthis|"
    rf"needed|have\sit|respond)\s(?:\w+\s)?(?:by\s|on\s|before\s)?{_WHEN}"
    rf"|\b(?:vote|hearing|meeting|public\shearing)\s(?:is\s)?(?:on\s)?{_WHEN}",
    re.IGNORECASE,
)
_DEADLINE_WEIGHT = 0.7
# A deadline ends in one of these: the regular expression runs only in a window before them.
_WHEN_WORDS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday",
               "tomorrow", "tonight", "today", "eod", "noon", "end of day", "end of the day",
               "end of the week", "end of the month", "end of week", "end of month", "january",
               "february", "march", "april", "may", "june", "july", "august", "september",
               "october", "november", "december", "jan", "feb", "mar", "apr", "jun", "jul",
               "aug", "sep", "sept", "oct", "nov", "dec")
_WHEN_ID = "urgency-when"


def combine(weights: Iterable[float]) -> float:
    remaining = 1.0
    for w in weights:
        remaining *= 1.0 - w
    return round(1.0 - remaining, 3)


class UrgencyDetector:
    """Weighs urgency: as a pipeline component it sets ``doc._.urgency`` (0..1) and
    ``doc._.urgency_reasons``; :meth:`measure_joined` returns them for each text of a batch."""

    def __init__(self, nlp: Language, name: str = URGENCY_COMPONENT) -> None:
        self.name = name
        self.matcher = PhraseMatcher(nlp.vocab, attr="LOWER")
        self.cues: dict[int, tuple[str, str, float]] = {}
        for kind, cues in (("emergency", EMERGENCY_CUES),
                           ("fiscal distress", FISCAL_DISTRESS_CUES),
                           ("time pressure", TIME_PRESSURE_CUES)):
            for cue, weight in cues.items():
                key = f"urgency|{cue}"
                self.matcher.add(key, [pattern_doc(nlp, cue)])
                self.cues[nlp.vocab.strings.add(key)] = (kind, cue, weight)
        self.matcher.add(_WHEN_ID, [pattern_doc(nlp, w) for w in _WHEN_WORDS])
        self.when_id = nlp.vocab.strings.add(_WHEN_ID)

    def __call__(self, doc: Doc) -> Doc:
        urgency, reasons = self._measure(doc, text_of(doc), self.matcher(doc), 0)
        data = data_of(doc)
        data[_SCORE], data[_REASONS] = urgency, reasons
        return doc

    def measure_joined(self, joined: JoinedDoc) -> list[tuple[float, list[str]]]:
        """The urgency of each text of ``joined`` and its reasons, strongest first."""
        doc = joined.doc
        return [self._measure(doc, text, matches, offset) for text, matches, offset in zip(
            joined.texts, joined.split(self.matcher(doc)), joined.offsets, strict=True)]

    def _measure(self, doc: Doc, text: str, matches: Sequence[Match], offset: int,
                 ) -> tuple[float, list[str]]:
        """The urgency of ``text``, which starts at character ``offset`` of ``doc``, from the
        matches of its tokens."""
        if not matches and "/" not in text:  # most questions: nothing to weigh
            return 0.0, []
        best: dict[str, tuple[float, str]] = {}
        taken: set[int] = set()
        windows: list[tuple[int, int]] = []
        # Longest cue first, so "water main break" is one cue, not also "main break".
        for match_id, start, end in sorted(matches, key=lambda m: m[1] - m[2]):
            if match_id == self.when_id:
                span = doc[start:end]
                start_char, end_char = span.start_char - offset, span.end_char - offset
                windows.append((max(0, start_char - 70), end_char + 6))
                continue
            if taken.intersection(range(start, end)):
                continue
            taken.update(range(start, end))
            kind, cue, weight = self.cues[match_id]
            if weight > best.get(cue, (0.0, ""))[0]:
                best[cue] = (weight, f"{kind}: {cue}")
        if "/" in text:
            windows.append((0, len(text)))
        for pos, endpos in windows:
            for m in _DEADLINE_RE.finditer(text, pos, endpos):
                phrase = " ".join(m.group().split())
                best[phrase.lower()] = (_DEADLINE_WEIGHT, f"deadline: {phrase}")
        ranked = sorted(best.values(), key=lambda wr: (-wr[0], wr[1]))
        # Several cues of one event ("flood", "flooding") should not stack up to 1.0 at once.
        return min(1.0, combine(w for w, _ in ranked[:3])), [reason for _, reason in ranked]

    def to_disk(self, path: object, *, exclude: Iterable[str] = ()) -> None:
        return None

    def from_disk(self, path: object, *, exclude: Iterable[str] = ()) -> UrgencyDetector:
        return self

    def to_bytes(self, *, exclude: Iterable[str] = ()) -> bytes:
        return b""

    def from_bytes(self, data: bytes, *, exclude: Iterable[str] = ()) -> UrgencyDetector:
        return self


@Language.factory(URGENCY_COMPONENT)
def make_urgency_detector(nlp: Language, name: str) -> UrgencyDetector:
    return UrgencyDetector(nlp, name)
