"""Keeping the promise: a reminder one business day before a case is due, and an escalation
when the deadline passes without a first response.

The worker calls :meth:`Reminders.tick` every second or so. Each step is a compare-and-set on
the case (``reminded_at IS NULL``, ``escalated_at IS NULL``, same ``cycle``) plus an outbox row
with an idempotency key, so several workers, or a worker that runs the same tick twice, still
send one reminder and one escalation per case and cycle.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute

from desk.models import Case
from desk.outbox import enqueue
from desk.ports import Clock
from desk.sla import BusinessCalendar
from desk.store import Store
from desk.workflow import Status, record_event

__all__ = ["UNANSWERED", "Reminders"]

log = logging.getLogger(__name__)

# A case in one of these is still waiting for its first response.
UNANSWERED = (Status.RECEIVED, Status.NEEDS_TRIAGE, Status.DRAFTED, Status.APPROVED)

# Cases due further out than this cannot need a reminder yet (one business day before is at
# most a long holiday closure away); the bound keeps the per-second query small.
HORIZON = timedelta(days=21)


class Reminders:
    def __init__(
        self, store: Store, clock: Clock, calendar: BusinessCalendar, *,
        reviewers: list[str], escalation: bool = True,
    ) -> None:
        self.store = store
        self.clock = clock
        self.calendar = calendar
        self.reviewers = list(reviewers)
        # Without an escalation channel the case is still marked late, but nothing is posted.
        self.escalation = escalation

    async def tick(self) -> int:
        """Send what is due now; returns how many reminders and escalations were queued."""
        now = self.clock.now()
        done = 0
        async with self.store.session() as session:
            result = await session.execute(
                select(Case).where(
                    Case.status.in_([s.value for s in UNANSWERED]),
                    Case.due_at <= now + HORIZON,
                    (Case.reminded_at.is_(None)) | (Case.escalated_at.is_(None)),
                ).order_by(Case.due_at, Case.id)
            )
            cases = list(result.scalars().all())
        for case in cases:
            if case.escalated_at is None and now >= case.due_at:
                done += await self._escalate(case, now)
            elif (case.reminded_at is None and now < case.due_at
                  and self.calendar.is_open(now) and now >= self.remind_at(case.due_at)):
                done += await self._remind(case, now)
        return done

    def remind_at(self, due: datetime) -> datetime:
        """One business day before ``due``."""
        return self.calendar.subtract(due, self.calendar.day_length)

    async def _remind(self, case: Case, now: datetime) -> int:
        mention = [case.assignee] if case.assignee else list(self.reviewers)
        left = self.calendar.describe_remaining(now, case.due_at)
        text = (f"Reminder: {case.ref} is due {self.calendar.describe(case.due_at)} "
                f"({left}) and has not been answered yet.")
        async with self.store.session() as session:
            if not await self._claim(session, case, Case.reminded_at, now):
                return 0
            await enqueue(
                session, kind="reminder", channel="slack", key=f"reminder:{case.id}:{case.cycle}",
                case_id=case.id, now=now, payload={
                    "text": text, "mention": mention, "case_ref": case.ref,
                    "due_at": case.due_at.isoformat(), "remaining": left,
                },
            )
            record_event(session, case.id, "system", "reminded", now,
                         detail={"mention": mention, "cycle": case.cycle})
        log.info("reminder queued for %s", case.ref, extra={"case": case.ref})
        return 1

    async def _escalate(self, case: Case, now: datetime) -> int:
        text = (f"{case.ref} is late: its initial response was due "
                f"{self.calendar.describe(case.due_at)} and it is still {case.status}.")
        async with self.store.session() as session:
            if not await self._claim(session, case, Case.escalated_at, now):
                return 0
            record_event(session, case.id, "system", "late", now,
                         detail={"due_at": case.due_at.isoformat(), "cycle": case.cycle,
                                 "status": case.status})
            if self.escalation:
                await enqueue(
                    session, kind="escalation", channel="slack",
                    key=f"escalation:{case.id}:{case.cycle}", case_id=case.id, now=now,
                    payload={"text": text, "case_ref": case.ref,
                             "due_at": case.due_at.isoformat(),
                             "assignee": case.assignee, "status": case.status},
                )
        log.warning("%s is late", case.ref, extra={"case": case.ref})
        return 1

    async def _claim(self, session: AsyncSession, case: Case,
                     column: InstrumentedAttribute[datetime | None], now: datetime) -> bool:
        """Stamp ``column`` unless another worker did, the case was answered, or it reopened."""
        result = await session.execute(
            update(Case).where(
                Case.id == case.id, Case.cycle == case.cycle,
                column.is_(None),
                Case.status.in_([s.value for s in UNANSWERED]),
            ).values({column: now}).execution_options(synchronize_session=False)
        )
        return getattr(result, "rowcount", 0) == 1
