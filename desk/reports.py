"""Staff reports: volume by topic, city and channel; time to first response in business hours;
SLA compliance; follow-ups held; what is open and late now; a weekly series for the chart.

Definitions (also in the README's report section):

- A case belongs to the period of the day it was received (office time zone), ``since`` and
  ``until`` both included. Its topic is its primary (first) topic, or ``unclassified``.
- Time to first response is ``calendar.elapsed(clock_started_at, first_response_at)``: business
  hours of the case's current cycle (a reopened case is measured from its reopening).
- Percentiles interpolate linearly between the closest ranks (numpy's default).
- SLA compliance = answered on time / (answered + still unanswered and already late); a
  rejected case, or an unanswered one whose deadline is still ahead, counts in neither.
- Follow-ups held are calls marked held whose start falls in the period.
- "Open now" and "late now" describe the present, whatever the period: cases still waiting for
  their first response, and those of them past their deadline.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Any

from sqlalchemy import func, select

from desk.models import Case, FollowUp
from desk.reminders import UNANSWERED
from desk.sla import BusinessCalendar
from desk.store import Store
from desk.workflow import Status

__all__ = ["Report", "Week", "build_report", "headline", "percentile"]

UNCLASSIFIED = "unclassified"
UNKNOWN_CITY = "unknown city"


@dataclass
class Week:
    week: str  # ISO week, "2026-W48"
    starts: date  # its Monday
    cases: int = 0
    by_topic: dict[str, int] = field(default_factory=dict)
    answered: int = 0
    met: int = 0
    open_late: int = 0

    @property
    def compliance(self) -> float | None:
        judged = self.answered + self.open_late
        return round(self.met / judged, 4) if judged else None

    def as_dict(self) -> dict[str, Any]:
        return {"week": self.week, "starts": self.starts.isoformat(), "cases": self.cases,
                "by_topic": dict(self.by_topic), "answered": self.answered, "met": self.met,
                "open_late": self.open_late, "compliance": self.compliance}


@dataclass
class Report:
    since: date | None
    until: date | None
    generated_at: datetime
    timezone: str
    cases: int
    by_topic: dict[str, int]
    by_city: dict[str, int]
    by_channel: dict[str, int]
    response_hours: list[float]  # business hours to first response, one per answered case
    answered: int
    met: int
    open_late_in_period: int
    followups_held: int
    open_now: int
    late_now: int
    weekly: list[Week]

    @property
    def median_hours(self) -> float | None:
        return _round(percentile(self.response_hours, 0.5))

    @property
    def p90_hours(self) -> float | None:
        return _round(percentile(self.response_hours, 0.9))

    @property
    def missed(self) -> int:
        return self.answered - self.met + self.open_late_in_period

    @property
    def compliance(self) -> float | None:
        judged = self.answered + self.open_late_in_period
        return round(self.met / judged, 4) if judged else None

    def as_dict(self) -> dict[str, Any]:
        return {
            "since": self.since.isoformat() if self.since else None,
            "until": self.until.isoformat() if self.until else None,
            "generated_at": self.generated_at.isoformat(), "timezone": self.timezone,
            "cases": self.cases, "by_topic": dict(self.by_topic), "by_city": dict(self.by_city),
            "by_channel": dict(self.by_channel),
            "first_response_hours": {"answered": len(self.response_hours),
                                     "median": self.median_hours, "p90": self.p90_hours},
            "sla": {"answered": self.answered, "met": self.met, "missed": self.missed,
                    "open_late": self.open_late_in_period, "compliance": self.compliance},
            "followups_held": self.followups_held,
            "open_now": self.open_now, "late_now": self.late_now,
            "weekly": [w.as_dict() for w in self.weekly],
        }


def percentile(values: list[float], q: float) -> float | None:
    """The q-th quantile (0..1), interpolating linearly between closest ranks."""
    if not values:
        return None
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


async def build_report(store: Store, calendar: BusinessCalendar, *, since: date | None,
                       until: date | None, now: datetime) -> Report:
    start = _midnight(calendar, since) if since else None
    end = _midnight(calendar, until + timedelta(days=1)) if until else None
    unanswered = [s.value for s in UNANSWERED]
    async with store.session() as session:
        query = select(Case)
        if start is not None:
            query = query.where(Case.received_at >= start)
        if end is not None:
            query = query.where(Case.received_at < end)
        cases = list((await session.execute(query.order_by(Case.received_at, Case.id)))
                     .scalars().all())
        held = select(func.count(FollowUp.id)).where(FollowUp.status == "held")
        if start is not None:
            held = held.where(FollowUp.starts_at >= start)
        if end is not None:
            held = held.where(FollowUp.starts_at < end)
        followups_held = int((await session.execute(held)).scalar_one())
        open_now = int((await session.execute(select(func.count(Case.id)).where(
            Case.status.in_(unanswered)))).scalar_one())
        late_now = int((await session.execute(select(func.count(Case.id)).where(
            Case.status.in_(unanswered), Case.due_at < now))).scalar_one())

    by_topic: Counter[str] = Counter()
    by_city: Counter[str] = Counter()
    by_channel: Counter[str] = Counter()
    hours: list[float] = []
    answered = met = open_late = 0
    weeks: dict[str, Week] = {}
    for case in cases:
        topic = str(case.topics[0]["topic"]) if case.topics else UNCLASSIFIED
        by_topic[topic] += 1
        by_city[case.city.label if case.city else UNKNOWN_CITY] += 1
        by_channel[case.channel] += 1
        week = _week_of(weeks, calendar.local(case.received_at).date())
        week.cases += 1
        week.by_topic[topic] = week.by_topic.get(topic, 0) + 1
        if case.first_response_at is not None:
            elapsed = calendar.elapsed(case.clock_started_at, case.first_response_at)
            hours.append(elapsed.total_seconds() / 3600)
            on_time = case.first_response_at <= case.due_at
            answered += 1
            met += on_time
            week.answered += 1
            week.met += on_time
        elif Status(case.status) in UNANSWERED and case.due_at < now:
            open_late += 1
            week.open_late += 1
    first = since or (min(w.starts for w in weeks.values()) if weeks else None)
    last = until or (max(w.starts for w in weeks.values()) if weeks else None)
    if first is not None and last is not None:
        day = first
        while day <= last:  # weeks without cases still get a (zero) point on the chart
            _week_of(weeks, day)
            day += timedelta(days=7)
        _week_of(weeks, last)
    return Report(
        since=since, until=until, generated_at=now, timezone=str(calendar.zone),
        cases=len(cases), by_topic=_ranked(by_topic), by_city=_ranked(by_city),
        by_channel=_ranked(by_channel), response_hours=hours, answered=answered, met=met,
        open_late_in_period=open_late, followups_held=followups_held, open_now=open_now,
        late_now=late_now, weekly=sorted(weeks.values(), key=lambda w: w.starts),
    )


async def headline(store: Store, calendar: BusinessCalendar, now: datetime,
                   days: int = 30) -> dict[str, Any]:
    """The figures ``/311 stats`` shows: the last ``days`` days, today included."""
    today = calendar.local(now).date()
    since = today - timedelta(days=days - 1)
    report = await build_report(store, calendar, since=since, until=today, now=now)
    return {
        "days": days, "since": since.isoformat(), "until": today.isoformat(),
        "cases": report.cases, "top_topics": list(report.by_topic.items())[:3],
        "median_hours": report.median_hours, "p90_hours": report.p90_hours,
        "sla_compliance": report.compliance, "answered": report.answered,
        "missed": report.missed, "followups_held": report.followups_held,
        "open_now": report.open_now, "late_now": report.late_now,
        "text": _headline_text(report, days),
    }


def _headline_text(report: Report, days: int) -> str:
    parts = [f"Last {days} days: {report.cases} question{'s' if report.cases != 1 else ''}"]
    if report.median_hours is not None:
        parts.append(f"median first response {report.median_hours:g} business hours "
                     f"(90th percentile {report.p90_hours:g})")
    if report.compliance is not None:
        parts.append(f"{report.compliance:.0%} answered within the promise")
    held = report.followups_held
    parts.append(f"{held} follow-up call{'s' if held != 1 else ''} held")
    parts.append(f"open now: {report.open_now}, late: {report.late_now}")
    return "; ".join(parts) + "."


def _week_of(weeks: dict[str, Week], day: date) -> Week:
    iso = day.isocalendar()
    key = f"{iso.year}-W{iso.week:02d}"
    if key not in weeks:
        weeks[key] = Week(key, day - timedelta(days=day.weekday()))
    return weeks[key]


def _midnight(calendar: BusinessCalendar, day: date) -> datetime:
    return datetime.combine(day, time(0), tzinfo=calendar.zone)


def _ranked(counter: Counter[str]) -> dict[str, int]:
    return dict(sorted(counter.items(), key=lambda item: (-item[1], item[0])))


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 2)
