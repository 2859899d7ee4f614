"""The case lifecycle as one state machine, with an audit event for every transition.

    received ─▶ drafted ─▶ approved ─▶ sent ─▶ follow_up_scheduled ─▶ closed
       │           │                     ▲            │
       ▼           ▼                     │            └─▶ closed (no follow-up wanted)
    needs_triage  rejected        a new message on the thread reopens a sent/closed case

Every change of status is a compare-and-set ``UPDATE … WHERE status IN (…)``: when two people
act at once, exactly one wins and the other gets :class:`AlreadyDoneError`.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.attributes import set_committed_value

from desk.errors import AlreadyDoneError, WorkflowError
from desk.models import Case, Event

__all__ = ["ALLOWED", "Status", "record_event", "transition"]


class Status(StrEnum):
    RECEIVED = "received"
    NEEDS_TRIAGE = "needs_triage"
    DRAFTED = "drafted"
    APPROVED = "approved"
    REJECTED = "rejected"
    SENT = "sent"
    FOLLOW_UP_SCHEDULED = "follow_up_scheduled"
    CLOSED = "closed"


S = Status
ALLOWED: dict[Status, frozenset[Status]] = {
    S.RECEIVED: frozenset({S.DRAFTED, S.NEEDS_TRIAGE, S.REJECTED}),
    S.NEEDS_TRIAGE: frozenset({S.DRAFTED, S.APPROVED, S.REJECTED, S.NEEDS_TRIAGE}),
    S.DRAFTED: frozenset({S.DRAFTED, S.APPROVED, S.REJECTED, S.NEEDS_TRIAGE}),
    # A permanent delivery failure hands the case back to the reviewers.
    S.APPROVED: frozenset({S.SENT, S.DRAFTED}),
    S.SENT: frozenset({S.FOLLOW_UP_SCHEDULED, S.CLOSED, S.RECEIVED}),
    S.FOLLOW_UP_SCHEDULED: frozenset({S.FOLLOW_UP_SCHEDULED, S.CLOSED, S.RECEIVED}),
    S.CLOSED: frozenset({S.RECEIVED, S.FOLLOW_UP_SCHEDULED}),
    S.REJECTED: frozenset({S.RECEIVED}),
}


def sources_of(target: Status) -> frozenset[Status]:
    return frozenset(source for source, targets in ALLOWED.items() if target in targets)


def record_event(
    session: AsyncSession, case_id: int | None, actor: str, kind: str, at: datetime,
    *, from_status: str | None = None, to_status: str | None = None,
    detail: dict[str, Any] | None = None,
) -> Event:
    event = Event(
        case_id=case_id, actor=actor, kind=kind, at=at, from_status=from_status,
        to_status=to_status, detail=detail or {},
    )
    session.add(event)
    return event


async def transition(
    session: AsyncSession, case: Case, target: Status, *, actor: str, at: datetime,
    kind: str | None = None, sources: Iterable[Status] | None = None,
    values: dict[str, Any] | None = None, detail: dict[str, Any] | None = None,
) -> Case:
    """Move ``case`` to ``target`` if it is still in one of ``sources`` (default: every status
    that may lead there). Raises WorkflowError for a move the lifecycle forbids and
    AlreadyDoneError when the case changed under us."""
    allowed_from = sources_of(target) if sources is None else frozenset(sources)
    current = Status(case.status)
    if current not in allowed_from or target not in ALLOWED[current]:
        if target == current or _moved_past(current, target):
            raise AlreadyDoneError(
                f"{case.ref} is already {current.value}", case_ref=case.ref
            )
        raise WorkflowError(
            f"{case.ref} cannot go from {current.value} to {target.value}", case_ref=case.ref
        )
    changes = {"status": target.value, "updated_at": at, **(values or {})}
    result = await session.execute(
        update(Case)
        .where(Case.id == case.id, Case.status.in_([s.value for s in allowed_from]))
        .values(**changes)
        .execution_options(synchronize_session=False)
    )
    if getattr(result, "rowcount", 0) != 1:
        await session.refresh(case)
        raise AlreadyDoneError(
            f"{case.ref} changed meanwhile (now {case.status})", case_ref=case.ref
        )
    record_event(
        session, case.id, actor, kind or target.value, at,
        from_status=current.value, to_status=target.value, detail=detail,
    )
    # The UPDATE wrote exactly these values: set them on the object as loaded, rather than
    # reading the row (and its relationships) back.
    for key, value in changes.items():
        set_committed_value(case, key, value)
    return case


_ORDER = [S.RECEIVED, S.NEEDS_TRIAGE, S.DRAFTED, S.APPROVED, S.SENT, S.FOLLOW_UP_SCHEDULED,
          S.CLOSED]


def _moved_past(current: Status, target: Status) -> bool:
    """True when the case already went beyond ``target`` (someone else acted first)."""
    if current == S.REJECTED:
        return target in (S.APPROVED, S.REJECTED)
    if current in _ORDER and target in _ORDER:
        return _ORDER.index(current) > _ORDER.index(target)
    return False
