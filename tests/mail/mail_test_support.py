"""Shared helpers for the mail tests: where the fixtures live and how reply pairs are compared."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import pytest

__all__ = [
    "DATA",
    "SHARED_EMAILS",
    "ReplyPair",
    "comparable",
    "load_reply_pairs",
    "matches",
    "shared_emails_or_skip",
]

DATA = Path(__file__).resolve().parent / "data"
SHARED_EMAILS = Path(__file__).resolve().parents[2] / ".." / "shared" / "fixtures" / "emails"


def shared_emails_or_skip() -> Path:
    if SHARED_EMAILS.is_dir():
        return SHARED_EMAILS
    if os.environ.get("CI"):
        pytest.fail(f"shared email fixtures missing at {SHARED_EMAILS}")
    pytest.skip("shared email fixtures are not available")


@dataclass(frozen=True)
class ReplyPair:
    name: str
    raw: bytes
    expected: str
    comparison: str
    input_kind: str


def load_reply_pairs(root: Path) -> list[ReplyPair]:
    records = json.loads((root / "manifest.json").read_text(encoding="utf-8"))
    return [
        ReplyPair(
            name=record["name"],
            raw=(root / record["input"]).read_bytes(),
            expected=(root / record["expected"]).read_text(encoding="utf-8"),
            comparison=record["comparison"],
            input_kind=record["input_kind"],
        )
        for record in records
    ]


def comparable(text: str) -> str:
    """The recommended comparator: LF endings, no trailing spaces, no blank lines at either end."""
    lines = [line.rstrip() for line in text.replace("\r\n", "\n").split("\n")]
    while lines and not lines[0]:
        lines.pop(0)
    while lines and not lines[-1]:
        lines.pop()
    return "\n".join(lines)


def matches(actual: str, pair: ReplyPair) -> bool:
    left, right = comparable(actual), comparable(pair.expected)
    if pair.comparison in {"exact_after_strip", "trimmed_first_fragment", "trimmed_visible_text"}:
        left, right = left.strip(), right.strip()
    return left == right
