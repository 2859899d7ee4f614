"""The labelled questions the project ships, and the fixed train/dev split.

Each line of ``nlp/data/questions_*.jsonl`` is ``{"id", "text", "topics": [best first], "voice"}``.
An example is in the dev split when a stable hash of its id says so (25% of ids), so adding
examples never moves an old one between the splits.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from desk.errors import InputError
from desk.ports import TOPICS

__all__ = [
    "DATA_DIR",
    "DEV_PERCENT",
    "LabelledText",
    "Question",
    "data_files",
    "is_dev",
    "load_questions",
    "read_jsonl",
    "split",
]

log = logging.getLogger(__name__)

DATA_DIR = Path(__file__).resolve().parent / "data"
DEV_PERCENT = 25
_TOPIC_SET = frozenset(TOPICS)


class LabelledText(Protocol):
    """Anything with a text and its topics, best first (a reviewer's correction, say)."""

    @property
    def text(self) -> str: ...

    @property
    def topics(self) -> Sequence[str]: ...


@dataclass(frozen=True)
class Question:
    id: str
    text: str
    topics: tuple[str, ...]
    voice: str = ""


def is_dev(example_id: str) -> bool:
    digest = hashlib.sha256(example_id.encode("utf-8")).digest()
    return int.from_bytes(digest[:4], "big") % 100 < DEV_PERCENT


def split(questions: Iterable[Question]) -> tuple[list[Question], list[Question]]:
    train: list[Question] = []
    dev: list[Question] = []
    for q in questions:
        (dev if is_dev(q.id) else train).append(q)
    return train, dev


def parse_question(obj: object, where: str) -> Question:
    if not isinstance(obj, dict):
        raise InputError(f"{where}: expected a JSON object")
    text = obj.get("text")
    topics = obj.get("topics")
    qid = obj.get("id")
    if not isinstance(text, str) or not text.strip():
        raise InputError(f"{where}: 'text' must be a non-empty string")
    if not isinstance(topics, list) or not 1 <= len(topics) <= 3:
        raise InputError(f"{where}: 'topics' must be a list of 1-3 topic ids")
    bad = [t for t in topics if t not in _TOPIC_SET]
    if bad or len(set(topics)) != len(topics):
        raise InputError(f"{where}: unknown or repeated topic ids {bad or topics}")
    if qid is None:
        qid = hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]
    return Question(id=str(qid), text=text, topics=tuple(topics), voice=str(obj.get("voice", "")))


def read_jsonl(path: Path, *, strict: bool = True) -> list[Question]:
    """Read one JSON-lines file. With ``strict=False`` bad lines are logged and skipped (a file
    being appended to may end in half a line)."""
    out: list[Question] = []
    with path.open(encoding="utf-8") as fh:
        for number, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            where = f"{path.name} line {number}"
            try:
                out.append(parse_question(json.loads(line), where))
            except (json.JSONDecodeError, InputError) as exc:
                if strict:
                    raise InputError(f"{where}: {exc}") from exc
                log.warning("skipping %s: %s", where, exc)
    return out


def data_files(directory: Path = DATA_DIR) -> list[Path]:
    return sorted(directory.glob("questions_*.jsonl"))


def load_questions(directory: Path = DATA_DIR) -> list[Question]:
    """All shipped questions, deduplicated by id (first wins), in a stable order."""
    seen: dict[str, Question] = {}
    for path in data_files(directory):
        for q in read_jsonl(path, strict=False):
            if q.id in seen:
                log.warning("duplicate example id %s in %s", q.id, path.name)
                continue
            seen[q.id] = q
    return list(seen.values())
