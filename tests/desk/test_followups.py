"""Follow-up calls: invitations (ICS), reschedule and cancel, reminders, outcomes; on SQLite and
PostgreSQL, and the invitation through a real SMTP server."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from icalendar import Calendar
from sqlalchemy import select, update

from desk.errors import InputError, WorkflowError
from desk.followups import FollowUps, parse_duration, parse_followup_command, parse_when
from desk.models import Case, Outbox
from desk.outbox import Dispatcher
from desk.settings import MailSettings, SLASettings
from desk.sla import BusinessCalendar
from desk.store import Store
from tests.desk.test_reminders import open_case
from tests.servers.smtp import SmtpServer
from tests.support import FakeClock

ET = ZoneInfo("America/New_York")
NY = BusinessCalendar(SLASettings())
ORGANIZER = "desk@311.test"


def et(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=ET)  # type: ignore[misc]


async def answered_case(store: Store, clock: FakeClock) -> int:
    """C-2026-0001 from dana@fallriverma.org, answered on Tue Nov 24 2026."""
    case_id = await open_case(store, clock, et(2026, 11, 24, 9))
    async with store.session() as session:
        await session.execute(update(Case).where(Case.id == case_id).values(
            status="sent", first_response_at=et(2026, 11, 24, 11)))
    clock.set(et(2026, 11, 24, 12))
    return case_id


def followups(store: Store, clock: FakeClock) -> FollowUps:
    return FollowUps(store, clock, NY, organizer_email=ORGANIZER)


async def outbox(store: Store, kind: str) -> list[Outbox]:
    async with store.session() as session:
        result = await session.execute(select(Outbox).where(Outbox.kind == kind)
                                       .order_by(Outbox.id))
        return list(result.scalars().all())


def event_of(ics: str) -> tuple[Calendar, Any]:
    calendar = Calendar.from_ical(ics)
    [event] = calendar.walk("VEVENT")
    return calendar, event


async def test_schedule_sends_an_invitation_that_parses_back(store: Store,
                                                             clock: FakeClock) -> None:
    case_id = await answered_case(store, clock)
    fu = await followups(store, clock).schedule(
        "C-2026-0001", "UCOACH", coach="UCOACH", starts_at=et(2026, 12, 1, 14),
        phone="+1 508 555 0100", agenda="Bond rating next steps",
        coach_email="coach@311.test")
    assert re.fullmatch(rf"followup-{fu.id}-[0-9a-f]{{12}}@311\.test", fu.uid)
    assert fu.sequence == 0 and fu.status == "scheduled"
    async with store.session() as session:
        case = await session.get(Case, case_id)
        assert case is not None and case.status == "follow_up_scheduled"
        assert case.coach == "UCOACH"
    [invite] = await outbox(store, "invite")
    assert invite.channel == "email"
    assert invite.idempotency_key == f"invite:{fu.id}:0"
    assert invite.payload["to"] == ["dana@fallriverma.org", "coach@311.test"]
    assert invite.payload["method"] == "REQUEST"
    assert invite.payload["subject"] == "Follow-up call Tue Dec 1, 2:00 PM EST [C-2026-0001]"
    assert "Tuesday, December 1, 2026 at 2:00 PM EST" in invite.payload["text"]
    calendar, event = event_of(invite.payload["ics"])
    assert calendar["METHOD"] == "REQUEST"
    assert str(event["UID"]) == fu.uid
    assert int(event["SEQUENCE"]) == 0
    assert event.decoded("DTSTART") == datetime(2026, 12, 1, 19, 0, tzinfo=UTC)
    assert event.decoded("DTEND") == datetime(2026, 12, 1, 19, 30, tzinfo=UTC)
    assert "DTSTART:20261201T190000Z" in invite.payload["ics"]  # UTC on the wire
    assert str(event["ORGANIZER"]) == f"mailto:{ORGANIZER}"
    attendees = sorted(str(a) for a in event["ATTENDEE"])
    assert attendees == ["mailto:coach@311.test", "mailto:dana@fallriverma.org"]
    assert "C-2026-0001" in str(event["SUMMARY"])
    assert "+1 508 555 0100" in str(event["DESCRIPTION"])
    assert "Bond rating next steps" in str(event["DESCRIPTION"])
    assert str(event["LOCATION"]) == "Phone: +1 508 555 0100"
    assert str(event["STATUS"]) == "CONFIRMED"


async def test_reschedule_keeps_uid_and_raises_sequence_then_cancel(
        store: Store, clock: FakeClock) -> None:
    await answered_case(store, clock)
    desk = followups(store, clock)
    fu = await desk.schedule("C-2026-0001", "UCOACH", coach="UCOACH",
                             starts_at=et(2026, 12, 1, 14), phone="555-0100")
    moved = await desk.reschedule(fu.id, "UCOACH", starts_at=et(2026, 12, 3, 10),
                                  duration_minutes=45)
    assert moved.uid == fu.uid and moved.sequence == 1
    cancelled = await desk.cancel(fu.id, "UCOACH", reason="the city asked to wait")
    assert cancelled.status == "cancelled" and cancelled.sequence == 2
    first, second, third = await outbox(store, "invite")
    assert [r.idempotency_key for r in (first, second, third)] == [
        f"invite:{fu.id}:0", f"invite:{fu.id}:1", f"invite:{fu.id}:2"]
    _, event = event_of(second.payload["ics"])
    assert str(event["UID"]) == fu.uid and int(event["SEQUENCE"]) == 1
    assert event.decoded("DTSTART") == datetime(2026, 12, 3, 15, 0, tzinfo=UTC)
    assert event.decoded("DTEND") == datetime(2026, 12, 3, 15, 45, tzinfo=UTC)
    calendar, event = event_of(third.payload["ics"])
    assert calendar["METHOD"] == "CANCEL" and third.payload["method"] == "CANCEL"
    assert str(event["UID"]) == fu.uid and int(event["SEQUENCE"]) == 2
    assert str(event["STATUS"]) == "CANCELLED"
    assert "the city asked to wait" in third.payload["text"]
    with pytest.raises(WorkflowError, match="cancelled"):
        await desk.reschedule(fu.id, "UCOACH", starts_at=et(2026, 12, 4, 10))


async def test_schedule_refuses_unanswered_cases_past_times_and_doubles(
        store: Store, clock: FakeClock) -> None:
    await open_case(store, clock, et(2026, 11, 24, 9))  # drafted, not answered
    clock.set(et(2026, 11, 24, 12))
    desk = followups(store, clock)
    with pytest.raises(WorkflowError, match="first response"):
        await desk.schedule("C-2026-0001", "U1", coach="U1", starts_at=et(2026, 12, 1, 14))
    async with store.session() as session:
        await session.execute(update(Case).values(status="sent"))
    with pytest.raises(InputError, match="already passed"):
        await desk.schedule("C-2026-0001", "U1", coach="U1", starts_at=et(2026, 11, 23, 14))
    with pytest.raises(InputError, match="5 minutes to 8 hours"):
        await desk.schedule("C-2026-0001", "U1", coach="U1", starts_at=et(2026, 12, 1, 14),
                            duration_minutes=600)
    await desk.schedule("C-2026-0001", "U1", coach="U1", starts_at=et(2026, 12, 1, 14))
    with pytest.raises(WorkflowError, match="already has a call"):
        await desk.schedule("C-2026-0001", "U1", coach="U1", starts_at=et(2026, 12, 2, 14))


async def test_outcome_close_closes_the_case_and_another_keeps_it_open(
        store: Store, clock: FakeClock) -> None:
    case_id = await answered_case(store, clock)
    desk = followups(store, clock)
    first = await desk.schedule("C-2026-0001", "U1", coach="U1", starts_at=et(2026, 12, 1, 14))
    clock.set(et(2026, 12, 1, 14, 40))
    held = await desk.log_outcome(first.id, "U1", notes="Walked through the rating criteria.",
                                  next_step="another")
    assert held.status == "held" and held.next_step == "another"
    async with store.session() as session:
        case = await session.get(Case, case_id)
        assert case is not None and case.status == "follow_up_scheduled"
    second = await desk.schedule("C-2026-0001", "U1", coach="U1",
                                 starts_at=et(2026, 12, 8, 14))
    clock.set(et(2026, 12, 8, 14, 30))
    await desk.log_outcome(second.id, "U1", notes="Done.", next_step="close")
    async with store.session() as session:
        case = await session.get(Case, case_id)
        assert case is not None and case.status == "closed"
    with pytest.raises(WorkflowError):
        await desk.log_outcome(second.id, "U1", notes="again", next_step="close")
    with pytest.raises(InputError):
        await desk.log_outcome(first.id, "U1", notes="", next_step="maybe")


async def test_upcoming_lists_a_coachs_calls_soonest_first(store: Store,
                                                           clock: FakeClock) -> None:
    await answered_case(store, clock)
    await open_case(store, clock, et(2026, 11, 24, 9, 30), n=2)
    async with store.session() as session:
        await session.execute(update(Case).values(status="sent"))
    clock.set(et(2026, 11, 24, 12))
    desk = followups(store, clock)
    later = await desk.schedule("C-2026-0001", "U1", coach="UDANA",
                                starts_at=et(2026, 12, 3, 10))
    sooner = await desk.schedule("C-2026-0002", "U1", coach="UDANA",
                                 starts_at=et(2026, 12, 1, 10))
    assert [f.id for f in await desk.upcoming("UDANA")] == [sooner.id, later.id]
    assert await desk.upcoming("UNOBODY") == []
    calls = await desk.upcoming_calls("UDANA")
    assert [c.case_ref for c in calls] == ["C-2026-0002", "C-2026-0001"]
    assert calls[0].city == "Fall River, MA"
    clock.set(et(2026, 12, 1, 10, 31))  # the first call has ended
    assert [f.id for f in await desk.upcoming("UDANA", limit=5)] == [later.id]


async def test_reminders_for_coach_and_contact_each_once(store: Store,
                                                         clock: FakeClock) -> None:
    await answered_case(store, clock)
    desk = followups(store, clock)
    # A call on Friday Nov 27 at 14:00: the business day before is Wednesday (Thanksgiving
    # falls between), so the contact hears from us Wednesday at 9:00; the coach at 13:00 Friday.
    fu = await desk.schedule("C-2026-0001", "U1", coach="UCOACH",
                             starts_at=et(2026, 11, 27, 14), phone="555-0100")
    steps = [(et(2026, 11, 25, 8, 59), 0), (et(2026, 11, 25, 9), 1),
             (et(2026, 11, 25, 9, 5), 0), (et(2026, 11, 27, 12, 59), 0),
             (et(2026, 11, 27, 13), 1), (et(2026, 11, 27, 13, 30), 0),
             (et(2026, 11, 27, 15), 0)]
    for moment, expected in steps:
        clock.set(moment)
        assert await desk.tick() == expected, moment
    [email] = await outbox(store, "email_reminder")
    assert email.channel == "email" and email.payload["to"] == ["dana@fallriverma.org"]
    assert "Friday, November 27, 2026 at 2:00 PM EST" in email.payload["text"]
    assert "C-2026-0001" in email.payload["subject"]
    [slack] = await outbox(store, "coach_reminder")
    assert slack.channel == "slack" and slack.payload["user"] == "UCOACH"
    assert "2:00 PM EST" in slack.payload["text"] and "555-0100" in slack.payload["text"]
    stored = await desk.get(fu.id)
    assert stored.contact_reminded_at == et(2026, 11, 25, 9)
    assert stored.coach_reminded_at == et(2026, 11, 27, 13)


async def test_reschedule_rearms_the_reminders(store: Store, clock: FakeClock) -> None:
    await answered_case(store, clock)
    desk = followups(store, clock)
    fu = await desk.schedule("C-2026-0001", "U1", coach="UCOACH",
                             starts_at=et(2026, 11, 25, 14))
    clock.set(et(2026, 11, 25, 13, 10))
    # Only the coach's: the invitation went out within the business day before the call.
    assert await desk.tick() == 1
    await desk.reschedule(fu.id, "U1", starts_at=et(2026, 12, 1, 10))
    clock.set(et(2026, 11, 30, 9, 0))  # Monday, the business day before
    assert await desk.tick() == 1
    clock.set(et(2026, 12, 1, 9, 0))
    assert await desk.tick() == 1
    keys = sorted([r.idempotency_key for r in await outbox(store, "email_reminder")]
                  + [r.idempotency_key for r in await outbox(store, "coach_reminder")])
    assert keys == sorted([f"coach_reminder:{fu.id}:0", f"email_reminder:{fu.id}:1",
                           f"coach_reminder:{fu.id}:1"])


# ---- parsing ----------------------------------------------------------------------------

NOW = et(2026, 11, 24, 10)  # Tuesday


@pytest.mark.parametrize(("text", "local", "minutes", "coach", "name"), [
    ("C-2026-0001 next Tuesday 2pm 30m <@U123|dana>", (2026, 12, 1, 14), 30, "U123", "dana"),
    ("c-2026-0001 tomorrow at 10am 45 min <@U77>", (2026, 11, 25, 10), 45, "U77", None),
    ("<@W1> C-2026-0012 Dec 3 2:30pm 1h", (2026, 12, 3, 14, 30), 60, "W1", None),
    ("C-2026-0001 friday 9am for 1.5h", (2026, 11, 27, 9), 90, None, None),
    ("C-2026-0001 on Dec 2 at 11:15am @dana.k", (2026, 12, 2, 11, 15), 30, None, "dana.k"),
    ("C-2026-0001 in 2 hours", (2026, 11, 24, 12), 30, None, None),
])
def test_parse_followup_command(text: str, local: tuple[int, ...], minutes: int,
                                coach: str | None, name: str | None) -> None:
    parsed = parse_followup_command(text, NY, NOW)
    assert parsed.case_ref.startswith("C-2026-00")
    assert parsed.starts_at == datetime(*local, tzinfo=ET).astimezone(UTC)  # type: ignore[misc]
    assert parsed.starts_at.tzinfo == UTC
    assert parsed.duration_minutes == minutes
    assert parsed.coach == coach and parsed.coach_name == name


@pytest.mark.parametrize(("text", "message"), [
    ("next Tuesday 2pm 30m <@U1>", "which case"),
    ("C-2026-0001 banana split", "could not read"),
    ("C-2026-0001 Tuesday", "time of day"),
    ("C-2026-0001 30m <@U1>", "when"),
    ("C-2026-0001 Nov 2 2026 2pm", "already passed"),
    ("C-2026-0001 next Tuesday 2pm 2m", "5 minutes to 8 hours"),
    ("C-2026-0001 next Tuesday 2pm 30m 1h", "one duration"),
    ("C-2026-0001 next Tuesday 2pm <@U1> <@U2>", "one coach"),
])
def test_parse_followup_command_errors_are_clear(text: str, message: str) -> None:
    with pytest.raises(InputError, match=message):
        parse_followup_command(text, NY, NOW)


def test_parse_when_uses_the_office_time_zone() -> None:
    pacific = BusinessCalendar(SLASettings(timezone="America/Los_Angeles"))
    # 10:00 ET on Tuesday is 07:00 PT; "tomorrow 9am" is Wednesday 09:00 PST = 17:00 UTC.
    assert parse_when("tomorrow 9am", pacific, NOW) == datetime(2026, 11, 25, 17, tzinfo=UTC)
    assert parse_when("tomorrow 9am", NY, NOW) == datetime(2026, 11, 25, 14, tzinfo=UTC)
    assert parse_duration("1.5h") == 90 and parse_duration("45 min") == 45
    with pytest.raises(InputError):
        parse_duration("1.01h")


# ---- through a real SMTP server ---------------------------------------------------------


async def test_invitation_reaches_smtp_with_the_ics_attached(
        store: Store, clock: FakeClock, smtp_server: SmtpServer) -> None:
    from mail.delivery import EmailChannel

    await answered_case(store, clock)
    desk = followups(store, clock)
    fu = await desk.schedule("C-2026-0001", "UCOACH", coach="UCOACH",
                             starts_at=et(2026, 12, 1, 14), coach_email="coach@311.test",
                             phone="555-0100")
    await desk.cancel(fu.id, "UCOACH")
    channel = EmailChannel(MailSettings(**smtp_server.mail_settings(address=ORGANIZER)))
    dispatcher = Dispatcher(store, {"email": channel}, clock)
    result = await dispatcher.run_once()
    assert result.sent == 3  # the acknowledgement, the invitation and the cancellation
    by_subject = {r.message["Subject"]: r for r in smtp_server.received}
    invite = next(r for s, r in by_subject.items() if s.startswith("Follow-up call"))
    cancel = next(r for s, r in by_subject.items() if s.startswith("Cancelled"))
    assert sorted(invite.rcpt_tos) == ["coach@311.test", "dana@fallriverma.org"]
    for received, method in ((invite, "REQUEST"), (cancel, "CANCEL")):
        message = received.message
        attachments = list(message.iter_attachments())
        ics_files = [a for a in attachments if (a.get_filename() or "").endswith(".ics")]
        assert len(ics_files) == 1
        calendar, event = event_of(ics_files[0].get_content().decode()
                                   if isinstance(ics_files[0].get_content(), bytes)
                                   else ics_files[0].get_content())
        assert calendar["METHOD"] == method and str(event["UID"]) == fu.uid
        inline = [p for p in message.walk() if p.get_content_type() == "text/calendar"]
        assert inline and inline[0].get_param("method") == method
