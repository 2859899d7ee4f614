"""Reminders one business day before the deadline, escalation at it; on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import func, select, update

from desk.directory import import_cities, shipped_cities
from desk.envelope import InboundMessage
from desk.models import Case, Event, Outbox
from desk.pipeline import Desk
from desk.reminders import Reminders
from desk.settings import SLASettings
from desk.sla import BusinessCalendar
from desk.store import Store
from tests.fakes import EchoDrafter, KeywordClassifier
from tests.support import FakeClock

ET = ZoneInfo("America/New_York")
NY = BusinessCalendar(SLASettings())
REVIEWERS = ["UREV1", "UREV2"]


def et(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=ET)  # type: ignore[misc]


async def open_case(store: Store, clock: FakeClock, received: datetime, n: int = 1) -> int:
    """A drafted case from a known city, received at ``received``."""
    clock.set(received)
    if n == 1:
        await import_cities(store, shipped_cities(), received)
    desk = Desk(store, clock, NY, classifier=KeywordClassifier(), drafter=EchoDrafter(),
                review_channel="CREVIEW")
    body = "How do we improve our bond rating?"
    got = await desk.receive(InboundMessage(
        channel="email", external_id=f"<r{n}@city>", received_at=received, text=body,
        reply_text=body, raw=f"Message-ID: <r{n}@city>\r\n\r\n{body}".encode(),
        subject="Bond rating", sender_email="dana@fallriverma.org", sender_name="Dana"))
    assert got.case_id is not None
    await desk.process(got.case_id)
    return got.case_id


async def rows(store: Store, kind: str) -> list[Outbox]:
    async with store.session() as session:
        result = await session.execute(select(Outbox).where(Outbox.kind == kind)
                                       .order_by(Outbox.id))
        return list(result.scalars().all())


async def get_case(store: Store, case_id: int) -> Case:
    async with store.session() as session:
        case = await session.get(Case, case_id)
        assert case is not None
        return case


async def test_due_monday_reminds_once_on_friday_and_escalates_once_at_the_deadline(
        store: Store, clock: FakeClock) -> None:
    # Received Tue Nov 24 10:00 ET: due Mon Nov 30 10:00 (Thanksgiving skipped); one business
    # day before is Fri Nov 27 10:00.
    case_id = await open_case(store, clock, et(2026, 11, 24, 10))
    assert (await get_case(store, case_id)).due_at == et(2026, 11, 30, 10)
    reminders = Reminders(store, clock, NY, reviewers=REVIEWERS)
    queued: list[datetime] = []
    # The worker ticks every hour, night and day, through the holiday and the weekend.
    while clock.now() <= et(2026, 11, 30, 12):
        queued += [clock.now()] * await reminders.tick()
        clock.advance(hours=1)
    assert queued == [et(2026, 11, 27, 10), et(2026, 11, 30, 10)]
    [reminder] = await rows(store, "reminder")
    assert reminder.channel == "slack" and reminder.case_id == case_id
    assert reminder.idempotency_key == f"reminder:{case_id}:1"
    assert reminder.payload["mention"] == REVIEWERS  # nobody assigned: the reviewers
    assert "C-2026-0001" in reminder.payload["text"]
    assert "Monday, November 30, 2026 at 10:00 AM EST" in reminder.payload["text"]
    assert "1 business day left" in reminder.payload["text"]
    [escalation] = await rows(store, "escalation")
    assert escalation.channel == "slack" and "late" in escalation.payload["text"]
    case = await get_case(store, case_id)
    assert case.reminded_at == et(2026, 11, 27, 10)
    assert case.escalated_at == et(2026, 11, 30, 10)
    async with store.session() as session:
        late = await session.execute(select(func.count(Event.id)).where(
            Event.case_id == case_id, Event.kind == "late"))
        assert late.scalar_one() == 1


async def test_no_reminder_at_night_or_on_a_holiday_then_the_next_opening(
        store: Store, clock: FakeClock) -> None:
    # Received Mon Nov 23 10:00: Mon 7h, Tue 15h, Wed 23h, Thanksgiving off, due Fri 10:00.
    # One business day before is Wed 10:00 -- but the worker was down until Wednesday night.
    case_id = await open_case(store, clock, et(2026, 11, 23, 10))
    async with store.session() as session:
        await session.execute(update(Case).where(Case.id == case_id).values(assignee="UASSIGN"))
    reminders = Reminders(store, clock, NY, reviewers=REVIEWERS)
    clock.set(et(2026, 11, 25, 9, 59))
    assert await reminders.tick() == 0  # not yet
    clock.set(et(2026, 11, 26, 2, 0))
    assert await reminders.tick() == 0  # 2 a.m.
    clock.set(et(2026, 11, 26, 11, 0))
    assert await reminders.tick() == 0  # Thanksgiving
    clock.set(et(2026, 11, 27, 8, 59))
    assert await reminders.tick() == 0  # before opening
    clock.set(et(2026, 11, 27, 9, 0))
    assert await reminders.tick() == 1  # the next office-hours moment
    clock.set(et(2026, 11, 27, 9, 30))
    assert await reminders.tick() == 0  # never twice
    [reminder] = await rows(store, "reminder")
    assert reminder.payload["mention"] == ["UASSIGN"]
    assert "1 hour left" in reminder.payload["text"]


async def test_answered_case_is_neither_reminded_nor_escalated(
        store: Store, clock: FakeClock) -> None:
    case_id = await open_case(store, clock, et(2026, 11, 24, 10))
    async with store.session() as session:
        await session.execute(update(Case).where(Case.id == case_id).values(
            status="sent", first_response_at=et(2026, 11, 25, 12)))
    reminders = Reminders(store, clock, NY, reviewers=REVIEWERS)
    for moment in (et(2026, 11, 27, 10), et(2026, 11, 30, 11), et(2026, 12, 2, 11)):
        clock.set(moment)
        assert await reminders.tick() == 0
    assert await rows(store, "reminder") == [] and await rows(store, "escalation") == []


async def test_two_workers_at_once_escalate_once(db_url: str, clock: FakeClock) -> None:
    first, second = Store.from_url(db_url), Store.from_url(db_url)
    try:
        await open_case(first, clock, et(2026, 11, 24, 10))
        await open_case(first, clock, et(2026, 11, 24, 11), n=2)
        clock.set(et(2026, 11, 30, 11, 30))  # both deadlines have passed
        workers = [Reminders(s, clock, NY, reviewers=REVIEWERS) for s in (first, second)]
        counts = await asyncio.gather(*(w.tick() for w in workers * 2))
        assert sum(counts) == 2
        assert len(await rows(first, "escalation")) == 2
        assert await rows(first, "reminder") == []  # past the deadline: escalate, not remind
    finally:
        await first.close()
        await second.close()


async def test_without_escalation_channel_the_case_is_still_marked_late(
        store: Store, clock: FakeClock) -> None:
    case_id = await open_case(store, clock, et(2026, 11, 24, 10))
    clock.set(et(2026, 11, 30, 10) + timedelta(minutes=1))
    assert await Reminders(store, clock, NY, reviewers=[], escalation=False).tick() == 1
    assert (await get_case(store, case_id)).escalated_at == clock.now()
    assert await rows(store, "escalation") == []


async def test_a_reopened_case_gets_a_new_reminder(store: Store, clock: FakeClock) -> None:
    case_id = await open_case(store, clock, et(2026, 11, 24, 10))
    reminders = Reminders(store, clock, NY, reviewers=REVIEWERS)
    clock.set(et(2026, 11, 27, 10))
    assert await reminders.tick() == 1
    # Answered, then reopened by a new message on Dec 7 (Mon) 10:00: due Thu Dec 10 10:00.
    new_due = NY.due(et(2026, 12, 7, 10))
    async with store.session() as session:
        await session.execute(update(Case).where(Case.id == case_id).values(
            status="received", cycle=2, clock_started_at=et(2026, 12, 7, 10), due_at=new_due,
            reminded_at=None, escalated_at=None))
    clock.set(et(2026, 12, 9, 10))
    assert await reminders.tick() == 1
    keys = [r.idempotency_key for r in await rows(store, "reminder")]
    assert keys == [f"reminder:{case_id}:1", f"reminder:{case_id}:2"]
