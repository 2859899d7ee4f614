"""Report figures on a small fixed data set, checked by hand; and `city311 report`."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import os
import subprocess
import sys
from datetime import date, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from typer.testing import CliRunner

from desk.migrate import upgrade
from desk.models import Case, City, FollowUp
from desk.reports import build_report, headline, percentile
from desk.settings import SLASettings
from desk.sla import BusinessCalendar
from desk.store import Store

ET = ZoneInfo("America/New_York")
NY = BusinessCalendar(SLASettings())
REPO = Path(__file__).resolve().parents[2]
NOW = datetime(2026, 12, 16, 12, tzinfo=ET)  # Wednesday noon


def et(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=ET)  # type: ignore[misc]


# ref, channel, city, topic, status, received, first response
DATA: list[tuple[str, str, str | None, str | None, str, datetime, datetime | None]] = [
    # Due Fri Nov 27 10:00 (Mon 7h, Tue 15h, Wed 23h, Thanksgiving, Fri +1h). Answered after
    # Mon 10:00-14:00 = 4 business hours: on time.
    ("C-2026-0001", "email", "FR", "budget_finance", "closed", et(2026, 11, 23, 10),
     et(2026, 11, 23, 14)),
    # Due Mon Nov 30 10:00. Answered Mon 12:00: Tue 7 + Wed 8 + Fri 8 + Mon 3 = 26 h: late.
    ("C-2026-0002", "slack", "FR", "housing", "sent", et(2026, 11, 24, 10),
     et(2026, 11, 30, 12)),
    # Due Thu Dec 3 17:00. Answered Wed 09:00 = Tue 8 h: on time.
    ("C-2026-0003", "email", "KC", "budget_finance", "follow_up_scheduled",
     et(2026, 12, 1, 9), et(2026, 12, 2, 9)),
    # Unknown city. Wed 16:00 -> Thu 11:00 = 1 + 2 = 3 h: on time.
    ("C-2026-0004", "email", None, "infrastructure", "sent", et(2026, 12, 2, 16),
     et(2026, 12, 3, 11)),
    # Due Thu Dec 10 17:00, still drafted on Dec 16: open and late (a miss).
    ("C-2026-0005", "slack", "KC", "housing", "drafted", et(2026, 12, 8, 9), None),
    # Rejected: counted in volume, in neither side of the SLA.
    ("C-2026-0006", "email", "KC", "budget_finance", "rejected", et(2026, 12, 10, 10), None),
    # Due Wed Dec 16 17:00: open, not late yet at noon.
    ("C-2026-0007", "email", "FR", "planning_zoning", "received", et(2026, 12, 14, 9), None),
    # No topic yet (triage). Due Thu Dec 17 10:00: open, not late.
    ("C-2026-0008", "email", "FR", None, "needs_triage", et(2026, 12, 14, 10), None),
]


async def load(store: Store) -> None:
    async with store.session() as session:
        cities = {"FR": City(name="Fall River", state="MA", created_at=NOW, domains=[]),
                  "KC": City(name="Kansas City", state="KS", created_at=NOW, domains=[])}
        session.add_all(cities.values())
        await session.flush()
        ids = {}
        for n, (ref, channel, city, topic, status, received, answered) in enumerate(DATA):
            case = Case(
                ref=ref, channel=channel, thread_key=f"t{n}", status=status, question="?",
                city_id=cities[city].id if city else None,
                topics=[{"topic": topic, "score": 0.9}] if topic else [], scores={},
                entities=[], received_at=received, clock_started_at=received,
                due_at=NY.due(received), first_response_at=answered,
                package_token=f"token{n}", created_at=received, updated_at=received, meta={})
            session.add(case)
            await session.flush()
            ids[ref] = case.id

        def call(ref: str, uid: str, status: str, starts: datetime) -> FollowUp:
            return FollowUp(case_id=ids[ref], uid=uid, sequence=0, coach="U1",
                            starts_at=starts, duration_minutes=30, status=status,
                            created_at=starts, updated_at=starts)

        session.add_all([
            call("C-2026-0001", "a@x", "held", et(2026, 12, 1, 14)),  # held, in W49
            call("C-2026-0003", "b@x", "scheduled", et(2026, 12, 17, 14)),  # not held yet
            call("C-2026-0002", "c@x", "cancelled", et(2026, 12, 2, 14)),  # cancelled
        ])


def test_percentile_interpolates_between_ranks() -> None:
    assert percentile([], 0.5) is None
    assert percentile([7.0], 0.9) == 7.0
    # [3, 4, 8, 26]: rank 0.9 * 3 = 2.7 -> 8 + 0.7 * (26 - 8) = 20.6.
    assert percentile([26.0, 3.0, 8.0, 4.0], 0.9) == pytest.approx(20.6)
    assert percentile([26.0, 3.0, 8.0, 4.0], 0.5) == pytest.approx(6.0)


async def test_report_figures_checked_by_hand(store: Store) -> None:
    await load(store)
    report = await build_report(store, NY, since=None, until=None, now=NOW)
    data = report.as_dict()
    assert data["cases"] == 8
    # budget_finance: 0001, 0003, 0006; housing: 0002, 0005; one each for the rest.
    assert data["by_topic"] == {"budget_finance": 3, "housing": 2, "infrastructure": 1,
                                "planning_zoning": 1, "unclassified": 1}
    # Fall River: 0001, 0002, 0007, 0008; Kansas City: 0003, 0005, 0006; unknown: 0004.
    assert data["by_city"] == {"Fall River, MA": 4, "Kansas City, KS": 3, "unknown city": 1}
    assert data["by_channel"] == {"email": 6, "slack": 2}
    # Hours to first response: 4, 26, 8, 3 -> sorted 3, 4, 8, 26.
    # Median (4 + 8) / 2 = 6; p90 at rank 2.7: 8 + 0.7 * 18 = 20.6.
    assert data["first_response_hours"] == {"answered": 4, "median": 6.0, "p90": 20.6}
    # On time: 0001, 0003, 0004 (3). Missed: 0002 answered late + 0005 open and late (2).
    # Compliance 3 / (4 answered + 1 open late) = 0.6.
    assert data["sla"] == {"answered": 4, "met": 3, "missed": 2, "open_late": 1,
                           "compliance": 0.6}
    assert data["followups_held"] == 1
    # Open now: 0005, 0007, 0008 (received/needs_triage/drafted/approved); late: 0005.
    assert (data["open_now"], data["late_now"]) == (3, 1)
    weeks = {w["week"]: w for w in data["weekly"]}
    assert list(weeks) == ["2026-W48", "2026-W49", "2026-W50", "2026-W51"]
    # W48 (Nov 23-29): 0001 on time, 0002 late -> 1/2.
    assert weeks["2026-W48"]["by_topic"] == {"budget_finance": 1, "housing": 1}
    assert weeks["2026-W48"]["compliance"] == 0.5
    # W49: 0003 and 0004 on time -> 2/2.
    assert weeks["2026-W49"]["compliance"] == 1.0
    # W50: 0005 open and late -> 0/1; 0006 rejected, not judged.
    assert weeks["2026-W50"]["compliance"] == 0.0 and weeks["2026-W50"]["cases"] == 2
    # W51: nothing answered and nothing late yet.
    assert weeks["2026-W51"]["compliance"] is None
    assert weeks["2026-W51"]["starts"] == "2026-12-14"


async def test_report_for_one_week_and_the_headline(store: Store) -> None:
    await load(store)
    week = await build_report(store, NY, since=date(2026, 11, 30), until=date(2026, 12, 6),
                              now=NOW)
    data = week.as_dict()
    # Only 0003 (8 h) and 0004 (3 h): median 5.5, p90 3 + 0.9 * 5 = 7.5, both on time.
    assert data["cases"] == 2
    assert data["first_response_hours"] == {"answered": 2, "median": 5.5, "p90": 7.5}
    assert data["sla"]["compliance"] == 1.0
    assert data["followups_held"] == 1  # 0001's call on Dec 1 falls in this week
    assert (data["open_now"], data["late_now"]) == (3, 1)  # the present, whatever the period
    assert [w["week"] for w in data["weekly"]] == ["2026-W49"]
    # An empty week still has its point on the chart.
    empty = await build_report(store, NY, since=date(2027, 1, 4), until=date(2027, 1, 17),
                               now=NOW)
    assert empty.cases == 0 and empty.compliance is None and empty.median_hours is None
    assert [w.week for w in empty.weekly] == ["2027-W01", "2027-W02"]
    # The last 30 days from Dec 16 start on Nov 17: every case.
    stats = await headline(store, NY, NOW)
    assert stats["cases"] == 8 and stats["since"] == "2026-11-17"
    assert stats["sla_compliance"] == 0.6 and stats["median_hours"] == 6.0
    assert stats["top_topics"][0] == ("budget_finance", 3)
    assert "60% answered within the promise" in stats["text"]
    # The last 7 days (Dec 10-16): 0006, 0007, 0008; nothing answered or late among them.
    recent = await headline(store, NY, NOW, days=7)
    assert recent["cases"] == 3 and recent["sla_compliance"] is None


# ---- the command -------------------------------------------------------------------------

def _populate(url: str) -> None:
    async def go() -> None:
        store = Store.from_url(url)
        try:
            await load(store)
        finally:
            await store.close()

    asyncio.run(go())


@pytest.fixture
def report_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    # The figures are checked on both databases above; the command itself runs on SQLite.
    url = f"sqlite+aiosqlite:///{tmp_path / 'city311.db'}"
    upgrade(url)
    _populate(url)
    monkeypatch.setenv("CITY311_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("DATABASE_URL", url)
    for name in list(os.environ):
        if name.startswith(("SLACK_", "MAIL_", "SLA_")):
            monkeypatch.delenv(name)
    return tmp_path


def invoke(*args: str) -> Any:
    from city311.cli import app

    result = CliRunner().invoke(app, ["report", *args])
    assert result.exit_code == 0, result.output
    return result


def test_report_command_json_csv_table_and_chart(report_env: Path) -> None:
    chart = report_env / "charts" / "weekly.png"
    data = json.loads(invoke("--format", "json", "--since", "2026-11-01",
                             "--until", "2026-12-31", "--chart", str(chart)).stdout)
    # The command runs on the real clock: only figures that do not depend on "now".
    assert data["cases"] == 8 and data["by_channel"] == {"email": 6, "slack": 2}
    assert data["first_response_hours"] == {"answered": 4, "median": 6.0, "p90": 20.6}
    assert (data["sla"]["answered"], data["sla"]["met"]) == (4, 3)
    assert chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert chart.stat().st_size > 10_000
    rows = list(csv.DictReader(io.StringIO(invoke("--format", "csv").stdout)))
    figures = {(r["section"], r["key"], r["subkey"]): r["value"] for r in rows}
    assert figures[("topic", "budget_finance", "")] == "3"
    assert figures[("first_response_hours", "median", "")] == "6.0"
    assert figures[("weekly_volume", "2026-W48", "housing")] == "1"
    assert figures[("weekly_sla", "2026-W51", "compliance")] == ""
    table = invoke().stdout
    assert "Within the 3-business-day promise" in table and "(3 of " in table
    assert "Fall River, MA" in table and "20.6 h" in table


@pytest.mark.parametrize(("args", "message"), [
    (["--until", "2026-13-01"], "--until: not a date"),
    (["--since", "2026-12-02", "--until", "2026-12-01"], "must not be after"),
    (["--chart", "weekly.svg"], "write a .png file"),
])
def test_report_command_bad_input_is_one_line(args: list[str], message: str,
                                              monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    from city311.cli import main

    monkeypatch.setattr(sys, "argv", ["city311", "report", *args])
    with pytest.raises(SystemExit) as exit_:
        main()
    assert exit_.value.code != 0
    err = capsys.readouterr().err
    assert message in err and err.strip().count("\n") == 0


def test_report_command_bad_date_from_a_shell(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("SLA_", "SLACK_", "MAIL_", "DATABASE_"))}
    env["CITY311_DATA_DIR"] = str(tmp_path)
    result = subprocess.run([sys.executable, "-m", "city311", "report", "--since",
                             "last tuesday"], capture_output=True, text=True, env=env,
                            cwd=REPO, timeout=60)
    assert result.returncode != 0
    assert "--since: not a date" in result.stderr
    assert result.stderr.strip().count("\n") == 0 and "Traceback" not in result.stderr
