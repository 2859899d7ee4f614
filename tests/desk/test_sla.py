"""The business-time clock: 24 office hours across weekends, holidays and closures."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from desk.settings import SLASettings
from desk.sla import BusinessCalendar, format_span

ET = ZoneInfo("America/New_York")
NY = BusinessCalendar(SLASettings())
REPO = Path(__file__).resolve().parents[2]


def et(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=ET)  # type: ignore[misc]


@pytest.mark.parametrize(("received", "due", "why"), [
    # Fri 14-17 (3h), Mon (11h), Tue (19h), Wed 9:00 + 5h; DST begins on the Sunday between.
    (et(2026, 3, 6, 14), et(2026, 3, 11, 14), "weekend and DST"),
    # Wed 10-17 (7h), Thanksgiving Thu off, Fri (15h), Mon (23h), Tue 9:00 + 1h.
    (et(2026, 11, 25, 10), et(2026, 12, 1, 10), "Thanksgiving"),
    # Wed 15-17 (2h), Thu Dec 24 (10h), Christmas Fri off, Mon (18h), Tue 9:00 + 6h.
    (et(2026, 12, 23, 15), et(2026, 12, 29, 15), "Christmas on a Friday"),
    # Christmas 2027 is a Saturday, observed Friday Dec 24: Thu 9-17 (8h), Fri off,
    # Mon (16h), Tue (24h) ends at closing time.
    (et(2027, 12, 23, 9), et(2027, 12, 28, 17), "Christmas observed on Friday"),
    # New Year 2028 is a Saturday, observed Friday Dec 31, 2027: Wed 12-17 (5h), Thu (13h),
    # Fri off, Mon Jan 3 (21h), Tue Jan 4 9:00 + 3h.
    (et(2027, 12, 29, 12), et(2028, 1, 4, 12), "New Year observed on the Friday before"),
    # July 4, 2026 is a Saturday, observed Friday July 3: Thu 13-17 (4h), Fri off,
    # Mon (12h), Tue (20h), Wed 9:00 + 4h.
    (et(2026, 7, 2, 13), et(2026, 7, 8, 13), "Independence Day observed on Friday"),
    # July 4, 2027 is a Sunday, observed Monday July 5: Fri 16-17 (1h), Mon off,
    # Tue (9h), Wed (17h), Thu 9:00 + 7h.
    (et(2027, 7, 2, 16), et(2027, 7, 8, 16), "Independence Day observed on Monday"),
    # 20:00 on Tuesday starts Wednesday 9:00: Wed (8h), Thanksgiving off, Fri (16h), Mon (24h).
    (et(2026, 11, 24, 20), et(2026, 11, 30, 17), "after hours"),
    # 07:00 is before opening: the same as 9:00. Mon, Tue, Wed -> Wed 17:00.
    (et(2026, 11, 16, 7), et(2026, 11, 18, 17), "before opening"),
    # Saturday starts Monday 9:00 -> Wednesday 17:00.
    (et(2026, 11, 14, 11), et(2026, 11, 18, 17), "weekend receipt"),
    # Exactly at closing counts as after hours: starts Tuesday 9:00 -> Thursday 17:00.
    (et(2026, 11, 16, 17), et(2026, 11, 19, 17), "at closing time"),
])
def test_due_dates_in_new_york(received: datetime, due: datetime, why: str) -> None:
    got = NY.due(received)
    assert got == due, why
    assert got.tzinfo == UTC  # stored in UTC


def test_observed_holidays_are_closed_and_named() -> None:
    assert NY.holiday_name(date(2026, 7, 3)) == "Independence Day (observed)"
    assert NY.holiday_name(date(2027, 12, 24)) == "Christmas Day (observed)"
    assert NY.holiday_name(date(2027, 12, 31)) == "New Year's Day (observed)"
    assert NY.holiday_name(date(2026, 12, 24)) is None
    assert not NY.is_business_day(date(2027, 7, 5))
    assert NY.is_business_day(date(2027, 7, 6))


def test_custom_time_zone_and_hours() -> None:
    pacific = BusinessCalendar(SLASettings(timezone="America/Los_Angeles", open_at=time(8),
                                           close_at=time(16)))
    received = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)  # Monday 07:00 PST, before opening
    due = pacific.due(received)
    # Mon 8-16, Tue, Wed: due Wednesday 16:00 PST = Thursday 00:00 UTC.
    assert due == datetime(2026, 3, 5, 0, 0, tzinfo=UTC)
    assert pacific.describe(due) == "Wednesday, March 4, 2026 at 4:00 PM PST"
    # The same instant in New York is 10:00, an hour into the day: due Thursday 10:00 ET.
    assert NY.due(received) == et(2026, 3, 5, 10)


def test_closure_dates_and_state_holidays() -> None:
    closed = BusinessCalendar(SLASettings(closures=[date(2026, 12, 24), date(2026, 12, 31)]))
    # Wed 15-17 (2h), Dec 24 closed, Christmas off, Mon (10h), Tue (18h), Wed 9:00 + 6h.
    assert closed.due(et(2026, 12, 23, 15)) == et(2026, 12, 30, 15)
    assert closed.holiday_name(date(2026, 12, 24)) == "office closed"
    # Closures also come from the environment as a comma-separated string.
    parsed = SLASettings.model_validate({"closures": "2026-12-24, 2026-12-31"})
    assert parsed.closures == [date(2026, 12, 24), date(2026, 12, 31)]
    # Patriots' Day (third Monday of April) only with the Massachusetts calendar.
    boston = BusinessCalendar(SLASettings(holiday_subdiv="MA"))
    assert boston.due(et(2026, 4, 17, 9)) == et(2026, 4, 22, 17)
    assert NY.due(et(2026, 4, 17, 9)) == et(2026, 4, 21, 17)


def test_is_open_only_in_office_hours_on_business_days() -> None:
    assert NY.is_open(et(2026, 11, 24, 10))
    assert not NY.is_open(et(2026, 11, 24, 2))  # 2 a.m.
    assert not NY.is_open(et(2026, 11, 24, 17))  # closing time
    assert not NY.is_open(et(2026, 11, 26, 11))  # Thanksgiving
    assert not NY.is_open(et(2026, 11, 28, 11))  # Saturday
    assert NY.next_open(et(2026, 11, 25, 18)) == et(2026, 11, 27, 9)


def test_elapsed_remaining_and_time_left_text() -> None:
    due = et(2026, 11, 30, 10)
    now = et(2026, 11, 24, 14)
    # Tue 14-17 (3h) + Wed (8h) + Fri (8h) + Mon 9-10 (1h) = 20h = 2 days of 8h + 4h.
    assert NY.elapsed(now, due) == timedelta(hours=20)
    assert NY.describe_remaining(now, due) == "2 business days 4 hours left"
    # Friday 16:00 -> Monday 10:00: 1h + 1h.
    assert NY.describe_remaining(et(2026, 11, 27, 16), due) == "2 hours left"
    assert NY.describe_remaining(et(2026, 11, 30, 9, 20), due) == "40 minutes left"
    assert NY.describe_remaining(et(2026, 11, 24, 9), et(2026, 11, 25, 12)) == (
        "1 business day 3 hours left")
    assert NY.describe_remaining(due, due) == "due now"
    assert NY.describe_remaining(due + timedelta(hours=2), due) == "late by 2 hours"
    assert NY.describe_remaining(due + timedelta(days=1, hours=3, minutes=10), due) == (
        "late by 1 day 3 hours")
    assert NY.remaining(due + timedelta(hours=2), due) == -timedelta(hours=2)
    assert format_span(timedelta(seconds=20), timedelta(hours=8), "business day") == (
        "less than a minute")


def test_subtract_goes_back_over_holidays() -> None:
    # One business day before Monday Nov 30 10:00 is Friday 10:00 (Thanksgiving skipped
    # on the way back would matter for two days: Wednesday 10:00).
    assert NY.subtract(et(2026, 11, 30, 10), timedelta(hours=8)) == et(2026, 11, 27, 10)
    assert NY.subtract(et(2026, 11, 30, 10), timedelta(hours=16)) == et(2026, 11, 25, 10)
    # From closing time a whole day back is that day's opening.
    assert NY.subtract(et(2026, 12, 1, 17), timedelta(hours=8)) == et(2026, 12, 1, 9)
    assert NY.previous_business_day(date(2027, 1, 3)) == date(2026, 12, 31)


@settings(max_examples=150, deadline=None)
@given(start=st.datetimes(min_value=datetime(2026, 1, 1), max_value=datetime(2028, 12, 31)),
       minutes=st.integers(min_value=1, max_value=60 * 40))
def test_add_elapsed_and_subtract_agree(start: datetime, minutes: int) -> None:
    begin = NY.next_open(start.replace(second=0, microsecond=0, tzinfo=UTC))
    amount = timedelta(minutes=minutes)
    end = NY.add(begin, amount)
    assert NY.elapsed(begin, end) == amount
    assert NY.subtract(end, amount) == begin
    assert NY.is_open(end - timedelta(minutes=1))


def test_sla_due_command_with_a_custom_zone_and_closure(monkeypatch: pytest.MonkeyPatch,
                                                        tmp_path: Path) -> None:
    from city311.cli import app

    monkeypatch.setenv("CITY311_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("SLA_TIMEZONE", "America/Chicago")
    monkeypatch.setenv("SLA_CLOSURES", "2026-12-24")
    result = CliRunner().invoke(app, ["sla", "due", "--received", "2026-12-23T15:00:00-06:00",
                                      "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.output)
    # Wed 15-17 CST (2h), Dec 24 closed, Christmas off, Mon (10h), Tue (18h), Wed 9:00 + 6h.
    assert out["due"] == "2026-12-30T15:00:00-06:00"
    assert out["due_utc"] == "2026-12-30T21:00:00+00:00"
    assert out["business_hours"] == 24
    assert out["timezone"] == "America/Chicago"


def test_sla_due_command_rejects_a_bad_date_in_one_line(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLA_", "SLACK_", "MAIL_"))}
    env["CITY311_DATA_DIR"] = str(tmp_path)
    result = subprocess.run([sys.executable, "-m", "city311", "sla", "due", "--received",
                             "next week sometime"], capture_output=True, text=True, env=env,
                            cwd=REPO, timeout=60)
    assert result.returncode != 0
    assert result.stderr.strip().count("\n") == 0
    assert "not an ISO 8601" in result.stderr
    assert "Traceback" not in result.stderr
