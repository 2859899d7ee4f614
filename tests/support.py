"""Test support shared by every suite: a settable clock and the rule for missing servers."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_FIXTURES = REPO.parent / "shared" / "fixtures"
IN_CI = bool(os.environ.get("CI"))


def unavailable(reason: str) -> None:
    """Skip on a laptop without the server; fail in CI, where every server must be there."""
    if IN_CI:
        pytest.fail(f"required in CI: {reason}")
    pytest.skip(reason)


def shared_fixtures() -> Path:
    if not SHARED_FIXTURES.is_dir():
        unavailable(f"shared fixtures not found at {SHARED_FIXTURES}")
    return SHARED_FIXTURES


class FakeClock:
    """A clock the test moves by hand; SLA tests never sleep."""

    def __init__(self, now: datetime | None = None) -> None:
        self._now = now or datetime(2026, 11, 24, 15, 0, tzinfo=UTC)  # a Tuesday, 10:00 ET

    def now(self) -> datetime:
        return self._now

    def set(self, now: datetime) -> None:
        self._now = now

    def advance(self, **delta: float) -> datetime:
        self._now += timedelta(**delta)
        return self._now
