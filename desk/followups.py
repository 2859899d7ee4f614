"""Follow-up coaching calls: scheduling, calendar invitations, reminders and outcomes.

A follow-up keeps one iCalendar UID for its whole life. Every change (reschedule, cancel)
raises SEQUENCE and sends a new invitation through the outbox, so calendar programs update the
event they already have instead of adding a second one (RFC 5546).

Each change is a compare-and-set on the follow-up row (its ``sequence`` and ``status``), so
two coaches acting at once get one change and one :class:`AlreadyDoneError`.
"""

from __future__ import annotations

import logging
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from icalendar import Calendar, Event, vCalAddress, vText
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from desk.errors import AlreadyDoneError, InputError, NotFoundError, WorkflowError
from desk.models import Case, FollowUp
from desk.outbox import enqueue
from desk.ports import Clock
from desk.sla import BusinessCalendar
from desk.store import Store
from desk.workflow import Status, record_event, transition

__all__ = [
    "FollowUps",
    "ParsedFollowUp",
    "UpcomingCall",
    "build_ics",
    "parse_duration",
    "parse_followup_command",
    "parse_when",
]

log = logging.getLogger(__name__)

MIN_MINUTES = 5
MAX_MINUTES = 8 * 60
DEFAULT_MINUTES = 30
COACH_LEAD = timedelta(hours=1)
# Cases that may get a follow-up: the first response has gone out.
SCHEDULABLE = (Status.SENT, Status.FOLLOW_UP_SCHEDULED, Status.CLOSED)
NextStep = Literal["close", "another"]


@dataclass(frozen=True)
class ParsedFollowUp:
    case_ref: str
    starts_at: datetime  # aware UTC
    duration_minutes: int
    coach: str | None  # a Slack user id, None when the command named nobody
    coach_name: str | None = None  # "name" of <@U123|name>, or a plain "@name"


@dataclass(frozen=True)
class UpcomingCall:
    followup: FollowUp
    case_ref: str
    city: str | None
    contact_name: str | None


class FollowUps:
    def __init__(
        self, store: Store, clock: Clock, calendar: BusinessCalendar, *,
        organizer_email: str, organizer_name: str = "311 for Cities",
    ) -> None:
        self.store = store
        self.clock = clock
        self.calendar = calendar
        self.organizer_email = organizer_email
        self.organizer_name = organizer_name
        domain = organizer_email.rpartition("@")[2].strip()
        self.uid_domain = domain or "city311.invalid"

    # ---- scheduling ----------------------------------------------------------------------

    async def schedule(
        self, case_ref: str | int, actor: str, *, coach: str, starts_at: datetime,
        duration_minutes: int = DEFAULT_MINUTES, phone: str | None = None,
        agenda: str | None = None, coach_email: str | None = None,
    ) -> FollowUp:
        """Schedule a call on an answered case and queue the invitation."""
        now = self.clock.now()
        coach = coach.strip()
        if not coach:
            raise InputError("name the coach who will make the call")
        starts_at = self._check_start(starts_at, now)
        _check_duration(duration_minutes)
        phone = _clean(phone, 40, "phone number")
        agenda = _clean(agenda, 2000, "agenda")
        coach_email = _clean(coach_email, 320, "coach email")
        if coach_email is not None and "@" not in coach_email:
            raise InputError(f"not an email address: {coach_email!r}")
        async with self.store.session() as session:
            case = await self._case(session, case_ref)
            pending = await session.execute(select(FollowUp).where(
                FollowUp.case_id == case.id, FollowUp.status == "scheduled").limit(1))
            existing = pending.scalar_one_or_none()
            if existing is not None:
                raise WorkflowError(
                    f"{case.ref} already has a call on {self.calendar.describe(existing.starts_at)}"
                    "; reschedule or cancel that one", case_ref=case.ref)
            if Status(case.status) not in SCHEDULABLE:
                raise WorkflowError(
                    f"{case.ref} is {case.status}; a follow-up can be scheduled once the first "
                    "response has been sent", case_ref=case.ref)
            followup = FollowUp(
                case_id=case.id, uid=f"pending-{secrets.token_hex(16)}", sequence=0,
                coach=coach, coach_email=coach_email, starts_at=starts_at,
                duration_minutes=duration_minutes,
                phone=phone or (case.contact.phone if case.contact else None), agenda=agenda,
                status="scheduled", created_at=now, updated_at=now,
            )
            session.add(followup)
            await session.flush()
            followup.uid = (f"followup-{followup.id}-{secrets.token_hex(6)}"
                            f"@{self.uid_domain}")
            await transition(
                session, case, Status.FOLLOW_UP_SCHEDULED, actor=actor, at=now,
                sources=SCHEDULABLE, values={"coach": coach},
                detail={"followup": followup.id, "starts_at": starts_at.isoformat()},
            )
            await self._invite(session, case, followup, "REQUEST", now)
            await _card_note(session, case, now, f"Follow-up call with <@{coach}> on "
                             f"{self.calendar.describe(starts_at)}, scheduled by <@{actor}>")
            await session.flush()
            log.info("follow-up %s scheduled on %s", followup.id, case.ref,
                     extra={"case": case.ref})
            return followup

    async def reschedule(
        self, followup_id: int, actor: str, *, starts_at: datetime,
        duration_minutes: int | None = None,
    ) -> FollowUp:
        """Move a call: same UID, SEQUENCE + 1, a new invitation, reminders re-armed."""
        now = self.clock.now()
        starts_at = self._check_start(starts_at, now)
        if duration_minutes is not None:
            _check_duration(duration_minutes)
        async with self.store.session() as session:
            followup = await self._followup(session, followup_id)
            values: dict[str, Any] = {
                "starts_at": starts_at, "coach_reminded_at": None, "contact_reminded_at": None,
                "duration_minutes": duration_minutes or followup.duration_minutes,
            }
            followup = await self._bump(session, followup, now, values)
            case = await self._case(session, followup.case_id)
            record_event(session, case.id, actor, "follow_up_rescheduled", now,
                         detail={"followup": followup.id, "starts_at": starts_at.isoformat(),
                                 "sequence": followup.sequence})
            await self._invite(session, case, followup, "REQUEST", now)
            await _card_note(session, case, now, f"Follow-up call moved to "
                             f"{self.calendar.describe(starts_at)} by <@{actor}>")
            return followup

    async def cancel(self, followup_id: int, actor: str, reason: str = "") -> FollowUp:
        """Cancel a call: METHOD:CANCEL with the same UID and a higher SEQUENCE."""
        now = self.clock.now()
        reason = reason.strip()[:500]
        async with self.store.session() as session:
            followup = await self._followup(session, followup_id)
            followup = await self._bump(session, followup, now, {"status": "cancelled",
                                                                   "outcome": reason or None})
            case = await self._case(session, followup.case_id)
            record_event(session, case.id, actor, "follow_up_cancelled", now,
                         detail={"followup": followup.id, "reason": reason})
            await self._invite(session, case, followup, "CANCEL", now, reason=reason)
            await _card_note(session, case, now, f"Follow-up call cancelled by <@{actor}>"
                             + (f": {reason}" if reason else ""))
            return followup

    async def log_outcome(self, followup_id: int, actor: str, *, notes: str,
                          next_step: str) -> FollowUp:
        """Record how the call went. ``close`` closes the case; ``another`` leaves it waiting
        for the next call to be scheduled."""
        if next_step not in ("close", "another"):
            raise InputError("next step must be 'close' or 'another'")
        notes = notes.strip()
        if len(notes) > 10_000:
            raise InputError("the notes are too long (10,000 characters at most)")
        now = self.clock.now()
        async with self.store.session() as session:
            followup = await self._followup(session, followup_id)
            result = await session.execute(
                update(FollowUp).where(FollowUp.id == followup.id,
                                       FollowUp.status == "scheduled")
                .values(status="held", outcome=notes or None, next_step=next_step,
                        updated_at=now)
                .execution_options(synchronize_session=False))
            if getattr(result, "rowcount", 0) != 1:
                raise AlreadyDoneError(f"this call is already {followup.status}")
            await session.refresh(followup)
            case = await self._case(session, followup.case_id)
            record_event(session, case.id, actor, "follow_up_held", now,
                         detail={"followup": followup.id, "next_step": next_step})
            if next_step == "close" and case.status == Status.FOLLOW_UP_SCHEDULED.value:
                await transition(session, case, Status.CLOSED, actor=actor, at=now,
                                 sources=(Status.FOLLOW_UP_SCHEDULED,),
                                 detail={"followup": followup.id})
            note = ("closed the case" if case.status == Status.CLOSED.value
                    else "another call to come")
            await _card_note(session, case, now, f"Follow-up call held; <@{actor}> {note}")
            return followup

    # ---- reading -------------------------------------------------------------------------

    async def get(self, followup_id: int) -> FollowUp:
        async with self.store.session() as session:
            return await self._followup(session, followup_id)

    async def for_case(self, case_ref: str | int) -> list[FollowUp]:
        async with self.store.session() as session:
            case = await self._case(session, case_ref)
            result = await session.execute(select(FollowUp).where(
                FollowUp.case_id == case.id).order_by(FollowUp.starts_at, FollowUp.id))
            return list(result.scalars().all())

    async def upcoming(self, coach: str, limit: int = 20) -> list[FollowUp]:
        """A coach's scheduled calls that have not ended yet, soonest first."""
        return [call.followup for call in await self.upcoming_calls(coach, limit)]

    async def upcoming_calls(self, coach: str, limit: int = 20) -> list[UpcomingCall]:
        """Like :meth:`upcoming`, with the case reference and who is on the other end."""
        now = self.clock.now()
        async with self.store.session() as session:
            result = await session.execute(
                select(FollowUp, Case).join(Case, Case.id == FollowUp.case_id).where(
                    FollowUp.coach == coach, FollowUp.status == "scheduled",
                    FollowUp.starts_at > now - timedelta(minutes=MAX_MINUTES),
                ).order_by(FollowUp.starts_at, FollowUp.id))
            calls = []
            for followup, case in result.all():
                if followup.starts_at + timedelta(minutes=followup.duration_minutes) <= now:
                    continue
                calls.append(UpcomingCall(
                    followup, case.ref, case.city.label if case.city else None,
                    case.contact.name if case.contact else None))
                if len(calls) >= limit:
                    break
            return calls

    # ---- reminders -----------------------------------------------------------------------

    async def tick(self) -> int:
        """Queue the coach's Slack reminder (an hour before) and the contact's email reminder
        (from the opening of the business day before); each once per schedule."""
        now = self.clock.now()
        queued = 0
        async with self.store.session() as session:
            result = await session.execute(
                select(FollowUp).where(
                    FollowUp.status == "scheduled", FollowUp.starts_at > now,
                    FollowUp.starts_at <= now + timedelta(days=21),
                    FollowUp.coach_reminded_at.is_(None)
                    | FollowUp.contact_reminded_at.is_(None),
                ).order_by(FollowUp.starts_at, FollowUp.id))
            due = list(result.scalars().all())
        for followup in due:
            if followup.coach_reminded_at is None and now >= followup.starts_at - COACH_LEAD:
                queued += await self._remind_coach(followup, now)
            if followup.contact_reminded_at is None and now >= self.contact_remind_at(
                    followup.starts_at):
                queued += await self._remind_contact(followup, now)
        return queued

    def contact_remind_at(self, starts_at: datetime) -> datetime:
        """The opening of the business day before the call's day (office time zone)."""
        day = self.calendar.local(starts_at).date()
        return self.calendar.opening(self.calendar.previous_business_day(day))

    async def _remind_coach(self, followup: FollowUp, now: datetime) -> int:
        async with self.store.session() as session:
            if not await self._stamp(session, followup, "coach_reminded_at", now):
                return 0
            case = await self._case(session, followup.case_id)
            who = _who(case)
            lines = [f"Your follow-up call on {case.ref} with {who} starts at "
                     f"{self._time(followup.starts_at)} ({followup.duration_minutes} minutes)."]
            if followup.phone:
                lines.append(f"Phone: {followup.phone}")
            if followup.agenda:
                lines.append(f"Agenda: {followup.agenda}")
            await enqueue(
                session, kind="coach_reminder", channel="slack", case_id=case.id, now=now,
                key=f"coach_reminder:{followup.id}:{followup.sequence}",
                payload={"user": followup.coach, "text": "\n".join(lines),
                         "case_ref": case.ref, "followup_id": followup.id,
                         "starts_at": followup.starts_at.isoformat()},
            )
        return 1

    async def _remind_contact(self, followup: FollowUp, now: datetime) -> int:
        async with self.store.session() as session:
            case = await self._case(session, followup.case_id)
            email = _contact_email(case)
            if not await self._stamp(session, followup, "contact_reminded_at", now):
                return 0
            if email is None:
                # Nobody to write to (a Slack-only contact): stamped so it is not retried.
                return 0
            if followup.updated_at >= self.contact_remind_at(followup.starts_at):
                # The invitation itself went out within the last business day.
                return 0
            when = self.calendar.describe(followup.starts_at)
            lines = [f"Hello{_greeting(case)},", "",
                     f"This is a reminder of your follow-up call with {self.organizer_name} "
                     f"about your question {case.ref}, on {when} "
                     f"({followup.duration_minutes} minutes)."]
            if followup.phone:
                lines.append(f"We will call you at {followup.phone}.")
            if followup.agenda:
                lines += ["", f"Agenda: {followup.agenda}"]
            lines += ["", "If this time no longer works, reply to this message and we will "
                      "find another.", "", self.organizer_name]
            await enqueue(
                session, kind="email_reminder", channel="email", case_id=case.id, now=now,
                key=f"email_reminder:{followup.id}:{followup.sequence}",
                payload={"to": [email], "subject": "Reminder: follow-up call "
                         f"{self.calendar.describe_short(followup.starts_at)} [{case.ref}]",
                         "text": "\n".join(lines), "case_ref": case.ref},
            )
        return 1

    async def _stamp(self, session: AsyncSession, followup: FollowUp, column: str,
                     now: datetime) -> bool:
        result = await session.execute(
            update(FollowUp).where(
                FollowUp.id == followup.id, FollowUp.sequence == followup.sequence,
                FollowUp.status == "scheduled", getattr(FollowUp, column).is_(None),
            ).values({column: now}).execution_options(synchronize_session=False))
        return getattr(result, "rowcount", 0) == 1

    # ---- helpers -------------------------------------------------------------------------

    def _check_start(self, starts_at: datetime, now: datetime) -> datetime:
        if starts_at.tzinfo is None:
            raise InputError("the call's time needs a time zone")
        if starts_at <= now:
            raise InputError(f"{self.calendar.describe(starts_at)} has already passed")
        return starts_at.astimezone(UTC)

    def _time(self, instant: datetime) -> str:
        local = self.calendar.local(instant)
        return f"{local:%I:%M %p}".lstrip("0") + f" {local.tzname()}"

    async def _case(self, session: AsyncSession, case_ref: str | int) -> Case:
        case = await self.store.find_case(session, case_ref)
        if case is None:
            raise NotFoundError(f"no case {case_ref}")
        return case

    async def _followup(self, session: AsyncSession, followup_id: int) -> FollowUp:
        followup = await session.get(FollowUp, followup_id)
        if followup is None:
            raise NotFoundError(f"no follow-up {followup_id}")
        return followup

    async def _bump(self, session: AsyncSession, followup: FollowUp, now: datetime,
                    values: dict[str, Any]) -> FollowUp:
        """Raise SEQUENCE with ``values``, if nobody changed the follow-up meanwhile."""
        if followup.status != "scheduled":
            raise WorkflowError(f"this call is {followup.status}; it can no longer change")
        result = await session.execute(
            update(FollowUp).where(FollowUp.id == followup.id,
                                   FollowUp.sequence == followup.sequence,
                                   FollowUp.status == "scheduled")
            .values(sequence=followup.sequence + 1, updated_at=now, **values)
            .execution_options(synchronize_session=False))
        if getattr(result, "rowcount", 0) != 1:
            raise AlreadyDoneError("this call was changed meanwhile; look again")
        await session.refresh(followup)
        return followup

    async def _invite(self, session: AsyncSession, case: Case, followup: FollowUp,
                      method: Literal["REQUEST", "CANCEL"], now: datetime,
                      reason: str = "") -> None:
        contact = _contact_email(case)
        to = [a for a in (contact, followup.coach_email) if a]
        if not to:
            record_event(session, case.id, "system", "invite_skipped", now,
                         detail={"followup": followup.id, "reason": "no email address"})
            return
        when = self.calendar.describe(followup.starts_at)
        short = self.calendar.describe_short(followup.starts_at)
        ics = build_ics(
            followup, case_ref=case.ref, method=method, now=now,
            organizer=(self.organizer_email, self.organizer_name),
            attendees=[(a, case.contact.name if a == contact and case.contact else None)
                       for a in to],
            description=_description(followup, case.ref),
        )
        if method == "CANCEL":
            subject = f"Cancelled: follow-up call {short} [{case.ref}]"
            text = (f"Hello{_greeting(case)},\n\nThe follow-up call about your question "
                    f"{case.ref}, planned for {when}, is cancelled."
                    + (f"\nReason: {reason}" if reason else "")
                    + f"\n\nReply to this message if you would like another time.\n\n"
                    f"{self.organizer_name}")
        else:
            verb = "is now" if followup.sequence else "is"
            subject = f"Follow-up call {short} [{case.ref}]"
            lines = [f"Hello{_greeting(case)},", "",
                     f"Your follow-up call with {self.organizer_name} about your question "
                     f"{case.ref} {verb} scheduled for {when} "
                     f"({followup.duration_minutes} minutes)."]
            if followup.phone:
                lines.append(f"We will call you at {followup.phone}.")
            if followup.agenda:
                lines += ["", f"Agenda: {followup.agenda}"]
            lines += ["", "The calendar invitation is attached. If this time does not work, "
                      "reply to this message.", "", self.organizer_name]
            text = "\n".join(lines)
        await enqueue(
            session, kind="invite", channel="email", case_id=case.id, now=now,
            key=f"invite:{followup.id}:{followup.sequence}",
            payload={"to": to, "subject": subject, "text": text, "ics": ics, "method": method,
                     "filename": "invite.ics" if method == "REQUEST" else "cancel.ics",
                     "uid": followup.uid, "sequence": followup.sequence,
                     "case_ref": case.ref, "followup_id": followup.id},
        )


def build_ics(
    followup: FollowUp, *, case_ref: str, method: Literal["REQUEST", "CANCEL"], now: datetime,
    organizer: tuple[str, str], attendees: list[tuple[str, str | None]], description: str,
) -> str:
    """The VCALENDAR of one follow-up call (RFC 5545/5546), times in UTC."""
    calendar = Calendar()
    calendar.add("prodid", "-//311 for Cities//Follow-up calls//EN")
    calendar.add("version", "2.0")
    calendar.add("calscale", "GREGORIAN")
    calendar.add("method", method)
    event = Event()
    event.add("uid", followup.uid)
    event.add("sequence", followup.sequence)
    event.add("dtstamp", now.astimezone(UTC))
    start = followup.starts_at.astimezone(UTC)
    event.add("dtstart", start)
    event.add("dtend", start + timedelta(minutes=followup.duration_minutes))
    event.add("summary", f"311 for Cities follow-up call ({case_ref})")
    event.add("description", description)
    if followup.phone:
        event.add("location", f"Phone: {followup.phone}")
    event.add("status", "CANCELLED" if method == "CANCEL" else "CONFIRMED")
    email, name = organizer
    chair = vCalAddress(f"mailto:{email}")
    chair.params["cn"] = vText(name)
    event.add("organizer", chair)
    for address, person in attendees:
        attendee = vCalAddress(f"mailto:{address}")
        if person:
            attendee.params["cn"] = vText(person)
        attendee.params["role"] = vText("REQ-PARTICIPANT")
        attendee.params["partstat"] = vText("NEEDS-ACTION")
        attendee.params["rsvp"] = vText("TRUE")
        event.add("attendee", attendee, encode=False)
    calendar.add_component(event)
    ics: bytes = calendar.to_ical()
    return ics.decode("utf-8")


# ---- parsing what people type -----------------------------------------------------------

_CASE = re.compile(r"\bC-\d{4}-\d{4,}\b", re.I)
_MENTION = re.compile(r"<@([UW][A-Z0-9]+)(?:\|([^>]*))?>")
_PLAIN_MENTION = re.compile(r"(?<![\w<])@([\w.\-]+)")
_DURATION = re.compile(
    r"(?<![\w.])(?:for\s+)?(\d+(?:\.\d+)?)\s*"
    r"(m|min|mins|minute|minutes|h|hr|hrs|hour|hours)(?![\w])", re.I)


def parse_duration(text: str) -> int:
    """Minutes in "30m", "45 min", "1h", "1.5h", "2 hours"."""
    match = _DURATION.fullmatch(text.strip())
    if match is None:
        raise InputError(f"not a duration: {text!r} (try 30m, 45 min, 1h or 1.5h)")
    return _minutes(match)


def _minutes(match: re.Match[str]) -> int:
    amount = float(match.group(1))
    minutes = amount * 60 if match.group(2).lower().startswith("h") else amount
    if minutes != int(minutes):
        raise InputError(f"{match.group(0).strip()} is not a whole number of minutes")
    return int(minutes)


def parse_when(text: str, calendar: BusinessCalendar, now: datetime) -> datetime:
    """A date and time as people type it ("next Tuesday 2pm", "Dec 3 at 10:30"), read in the
    office time zone, preferring the future; aware UTC. Raises InputError on anything else."""
    cleaned = " ".join(text.split())
    if not cleaned:
        raise InputError("say when, e.g. 'next Tuesday 2pm'")
    base = calendar.local(now).replace(tzinfo=None)
    import dateparser  # slow to import; only scheduling needs it

    parsed = dateparser.parse(cleaned, languages=["en"], settings={
        "TIMEZONE": str(calendar.zone), "RETURN_AS_TIMEZONE_AWARE": True,
        "PREFER_DATES_FROM": "future", "RELATIVE_BASE": base,
    })
    if parsed is None:
        raise InputError(f"could not read {cleaned!r} as a date and time "
                         "(try 'next Tuesday 2pm' or 'Dec 3 10:30am')")
    if not re.search(r"\d|noon|midnight", cleaned, re.I):
        # dateparser answers "Tuesday" with the current time of day; a call needs its own.
        raise InputError(f"give a time of day too, e.g. '{cleaned} 2pm'")
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=calendar.zone)
    instant: datetime = parsed.astimezone(UTC)
    if instant <= now:
        raise InputError(f"{calendar.describe(instant)} has already passed")
    return instant


def parse_followup_command(text: str, calendar: BusinessCalendar,
                           now: datetime) -> ParsedFollowUp:
    """``C-2026-0001 next Tuesday 2pm 30m <@U123|dana>``: case, when, how long, which coach
    (any order; the duration defaults to 30 minutes)."""
    usage = "usage: /311 followup C-2026-0001 next Tuesday 2pm 30m @coach"
    rest = text.strip()
    case = _CASE.search(rest)
    if case is None:
        raise InputError(f"which case? {usage}")
    rest = rest[:case.start()] + " " + rest[case.end():]
    coach: str | None = None
    coach_name: str | None = None
    mentions = _MENTION.findall(rest)
    if len(mentions) > 1:
        raise InputError("name one coach per call")
    if mentions:
        coach, coach_name = mentions[0][0], (mentions[0][1] or None)
        rest = _MENTION.sub(" ", rest)
    else:
        plain = _PLAIN_MENTION.findall(rest)
        if len(plain) > 1:
            raise InputError("name one coach per call")
        if plain:
            coach_name = plain[0]
            rest = _PLAIN_MENTION.sub(" ", rest)
    durations = list(_DURATION.finditer(rest))
    # "in 2 hours" is a time, not a length.
    durations = [m for m in durations if not re.search(r"\bin\s*$", rest[:m.start()], re.I)]
    if len(durations) > 1:
        raise InputError("give one duration, e.g. 30m or 1h")
    minutes = DEFAULT_MINUTES
    if durations:
        found = durations[0]
        minutes = _minutes(found)
        rest = rest[:found.start()] + " " + rest[found.end():]
    _check_duration(minutes)
    when_text = re.sub(r"^\s*(on|at)\b", "", rest.strip(), flags=re.I)
    if not when_text.strip():
        raise InputError(f"when? {usage}")
    starts_at = parse_when(when_text, calendar, now)
    return ParsedFollowUp(case.group(0).upper(), starts_at, minutes, coach, coach_name)


# ---- small helpers ---------------------------------------------------------------------

def _check_duration(minutes: int) -> None:
    if not MIN_MINUTES <= minutes <= MAX_MINUTES:
        raise InputError(f"a call lasts {MIN_MINUTES} minutes to {MAX_MINUTES // 60} hours, "
                         f"not {minutes} minutes")


def _clean(value: str | None, limit: int, what: str) -> str | None:
    if value is None:
        return None
    value = value.strip()
    if len(value) > limit:
        raise InputError(f"the {what} is too long ({limit} characters at most)")
    return value or None


def _contact_email(case: Case) -> str | None:
    contact = case.contact
    if contact is None or not contact.email or contact.bouncing:
        return None
    return contact.email


def _greeting(case: Case) -> str:
    name = case.contact.name if case.contact and case.contact.name else ""
    return f" {name}" if name else ""


def _who(case: Case) -> str:
    name = case.contact.name if case.contact and case.contact.name else "the city contact"
    return f"{name} ({case.city.label})" if case.city else name


def _description(followup: FollowUp, case_ref: str) -> str:
    lines = [f"Follow-up coaching call on question {case_ref}."]
    if followup.phone:
        lines.append(f"Phone: {followup.phone}")
    if followup.agenda:
        lines.append(f"Agenda: {followup.agenda}")
    return "\n".join(lines)


async def _card_note(session: AsyncSession, case: Case, now: datetime, note: str) -> None:
    """Refresh the case's review card in Slack, as the pipeline does after each change."""
    await enqueue(session, kind="card_update", channel="slack", case_id=case.id, now=now,
                  key=f"card_update:{case.id}:{secrets.token_hex(8)}", payload={"note": note})
