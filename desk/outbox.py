"""Everything that leaves the system goes through an outbox row first.

A row is claimed (``FOR UPDATE SKIP LOCKED`` on PostgreSQL, and a compare-and-set lease on
every backend), handed to its channel, then marked sent. A crash or an outage delays a message;
the unique idempotency key means nothing is enqueued twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, func, literal, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from desk.errors import PermanentDeliveryError, TransientDeliveryError
from desk.models import Case, Outbox, UTCDateTime
from desk.ports import Channel, Clock, DeliveryReceipt, OutboundItem
from desk.redact import redact
from desk.store import Store, insert_ignore

__all__ = ["DELAYED_AFTER", "Dispatcher", "Failing", "backoff", "enqueue", "failing"]

log = logging.getLogger(__name__)

# Longer than a delivery normally takes (SMTP timeouts, Slack's Retry-After waits); a longer
# one has its lease renewed while it runs, so no other worker sends the row meanwhile.
LEASE = timedelta(minutes=10)
MAX_BACKOFF = timedelta(minutes=30)
RENEWAL_WAIT = 5.0  # seconds a finished delivery waits for a lease renewal in flight
# A message still failing this long after its first failed attempt is reported (the
# ``on_delayed`` hook) while the retries go on: long enough for a restart or a brief outage to
# pass unnoticed, short enough that a broken password or certificate is not found out days later.
DELAYED_AFTER = timedelta(minutes=30)


def backoff(attempts: int) -> timedelta:
    return min(timedelta(seconds=2 ** min(attempts, 12)), MAX_BACKOFF)


async def enqueue(
    session: AsyncSession, *, kind: str, channel: str, key: str, now: datetime,
    case_id: int | None = None, payload: dict[str, Any] | None = None,
    not_before: datetime | None = None,
) -> bool:
    """Add a row unless one with the same idempotency key exists; True when added."""
    return await insert_ignore(session, Outbox, {
        "case_id": case_id, "kind": kind, "channel": channel, "idempotency_key": key,
        "payload": payload or {}, "status": "pending", "attempts": 0,
        "next_attempt_at": not_before or now, "created_at": now,
    })


@dataclass(frozen=True)
class Failing:
    """Messages still to go whose last attempt failed."""

    count: int
    since: datetime | None  # the oldest first failure among them

    def delayed(self, now: datetime, after: timedelta) -> bool:
        return self.since is not None and now - self.since >= after


async def failing(session: AsyncSession) -> Failing:
    count, since = (await session.execute(
        select(func.count(), func.min(Outbox.failing_since)).where(
            Outbox.status.in_(("pending", "sending")), Outbox.failing_since.is_not(None))
    )).one()
    return Failing(int(count), since)


SentHook = Callable[[AsyncSession, Outbox, DeliveryReceipt], Awaitable[None]]
FailedHook = Callable[[AsyncSession, Outbox, str], Awaitable[None]]


@dataclass
class DispatchResult:
    sent: int = 0
    retried: int = 0
    failed: int = 0


class Dispatcher:
    def __init__(
        self, store: Store, channels: Mapping[str, Channel], clock: Clock,
        on_sent: SentHook | None = None, on_failed: FailedHook | None = None,
        on_delayed: FailedHook | None = None, lease: timedelta = LEASE,
        renew_every: float | None = None, delayed_after: timedelta = DELAYED_AFTER,
    ) -> None:
        self.store = store
        self.channels = channels
        self.clock = clock
        self.lease = lease
        self.renew_every = renew_every or lease.total_seconds() / 3
        self.on_sent = on_sent
        self.on_failed = on_failed
        self.on_delayed = on_delayed
        self.delayed_after = delayed_after
        # Outcomes of deliveries that could not be written yet (the database was away).
        # They are written before anything new is claimed: sending again would double them.
        self._unrecorded: list[Callable[[], Awaitable[None]]] = []

    async def claim(self, limit: int = 20) -> list[OutboundItem]:
        now = self.clock.now()
        due = or_(
            and_(Outbox.status == "pending", Outbox.next_attempt_at <= now),
            and_(Outbox.status == "sending", Outbox.lease_until < now),
        )
        claimed: list[OutboundItem] = []
        async with self.store.session() as session:
            query = (
                select(Outbox).where(due, Outbox.channel.in_(list(self.channels)))
                .order_by(Outbox.next_attempt_at, Outbox.id).limit(limit)
                .with_for_update(skip_locked=True)
            )
            rows = (await session.execute(query)).scalars().all()
            for row in rows:
                result = await session.execute(
                    update(Outbox).where(Outbox.id == row.id, due)
                    .values(status="sending", lease_until=now + self.lease,
                            attempts=Outbox.attempts + 1)
                    .execution_options(synchronize_session=False)
                )
                if getattr(result, "rowcount", 0) != 1:
                    continue
                ref = None
                if row.case_id is not None:
                    case = await session.get(Case, row.case_id)
                    ref = case.ref if case else None
                claimed.append(OutboundItem(
                    id=row.id, kind=row.kind, channel=row.channel, case_id=row.case_id,
                    case_ref=ref, idempotency_key=row.idempotency_key, payload=dict(row.payload),
                    attempts=row.attempts + 1,
                ))
        return claimed

    async def run_once(self, limit: int = 20) -> DispatchResult:
        """Deliver up to ``limit`` due rows, claiming each just before it is sent, so a slow
        channel never lets a lease run out on rows still waiting in this worker."""
        result = DispatchResult()
        if not await self._record_pending():
            return result
        for _ in range(limit):
            claimed = await self.claim(1)
            if not claimed:
                break
            await self._deliver(claimed[0], result)
        return result

    async def _deliver(self, item: OutboundItem, result: DispatchResult) -> None:
        channel = self.channels[item.channel]
        delivered = asyncio.Event()
        holding = asyncio.create_task(self._hold(item, delivered))
        try:
            receipt = await channel.deliver(item)
        except TransientDeliveryError as exc:
            delay = (timedelta(seconds=exc.retry_after) if exc.retry_after
                     else backoff(item.attempts))
            log.warning("outbox %s (%s) will retry in %s: %s", item.id, item.kind, delay,
                        redact(str(exc)))
            reason, failed_at = str(exc), self.clock.now()
            await self._keep(lambda: self._retry(item, reason, failed_at, failed_at + delay),
                             item, "deferred")
            result.retried += 1
            return
        except PermanentDeliveryError as exc:
            log.error("outbox %s (%s) failed for good: %s", item.id, item.kind,
                      redact(str(exc)))
            await self._outcome(item, "failed", str(exc), None, self.on_failed)
            result.failed += 1
            return
        except Exception as exc:  # a bug in a channel must not stop the other rows
            log.error("outbox %s (%s) raised %s; retrying later", item.id, item.kind,
                      type(exc).__name__)
            error, failed_at = repr(exc), self.clock.now()
            await self._keep(lambda: self._retry(item, error, failed_at,
                                                 failed_at + backoff(item.attempts)),
                             item, "deferred")
            result.retried += 1
            return
        finally:
            # Let a renewal in flight finish (cancelling it mid-query breaks its connection),
            # but never wait on a database that does not answer.
            delivered.set()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(holding), RENEWAL_WAIT)
            holding.cancel()
        await self._outcome(item, "sent", None, receipt, self.on_sent)
        result.sent += 1

    async def _hold(self, item: OutboundItem, delivered: asyncio.Event) -> None:
        """Renew this attempt's lease until its delivery is over."""
        while True:
            try:
                await asyncio.wait_for(delivered.wait(), self.renew_every)
                return
            except TimeoutError:
                pass
            try:
                async with self.store.session() as session:
                    await session.execute(
                        update(Outbox).where(Outbox.id == item.id, Outbox.status == "sending",
                                             Outbox.attempts == item.attempts)
                        .values(lease_until=self.clock.now() + self.lease)
                        .execution_options(synchronize_session=False))
            except Exception:  # the database is away; a later renewal may still be in time
                log.warning("outbox %s: could not renew the lease", item.id)

    async def _outcome(self, item: OutboundItem, status: str, error: str | None,
                       receipt: DeliveryReceipt | None, hook: Any) -> None:
        await self._keep(lambda: self._finish(item, status, error, receipt, hook), item, status)

    async def _keep(self, write: Callable[[], Awaitable[None]], item: OutboundItem,
                    what: str) -> None:
        """Write an attempt's outcome; when the database is away, keep the write and do it
        before anything new is claimed, rather than leave the row leased for minutes."""
        try:
            await write()
        except Exception:
            log.error("outbox %s (%s) was %s but could not be recorded yet; keeping it",
                      item.id, item.kind, what)
            self._unrecorded.append(write)
            raise

    async def _record_pending(self) -> bool:
        """Do the writes kept from earlier rounds; False while that still fails."""
        while self._unrecorded:
            try:
                await self._unrecorded[0]()
            except Exception:
                log.warning("outbox: %d delivery outcomes still to record",
                            len(self._unrecorded))
                return False
            self._unrecorded.pop(0)
        return True

    async def _finish(self, item: OutboundItem, status: str, error: str | None,
                      receipt: DeliveryReceipt | None, hook: Any) -> None:
        """Mark the row; run the hook in a savepoint so its failure never undoes the mark
        (undoing it would send the message again)."""
        async with self.store.session() as session:
            row = await self._mark(session, item, status, error,
                                   receipt.external_id if receipt else None)
            if hook is None or row is None:
                return
            try:
                async with session.begin_nested():
                    await hook(session, row, receipt if receipt is not None else error or "")
            except Exception:
                log.exception("outbox %s (%s): after-%s step failed", item.id, item.kind,
                              status)

    async def _retry(self, item: OutboundItem, error: str, failed_at: datetime,
                     next_at: datetime) -> None:
        """Put a row whose attempt failed at ``failed_at`` back for a retry at ``next_at``
        (the times are the attempt's: this write may come late, once a database outage is
        over); when it has been failing for ``delayed_after``, run ``on_delayed`` (in a
        savepoint: its failure must not lose the release)."""
        async with self.store.session() as session:
            result = await session.execute(
                update(Outbox).where(Outbox.id == item.id, Outbox.status == "sending",
                                     Outbox.attempts == item.attempts)
                .values(status="pending", last_error=error[:2000], next_attempt_at=next_at,
                        lease_until=None, failing_since=func.coalesce(
                            Outbox.failing_since, literal(failed_at, UTCDateTime())))
                .execution_options(synchronize_session=False)
            )
            if self.on_delayed is None or getattr(result, "rowcount", 0) != 1:
                return
            row = await session.get(Outbox, item.id, populate_existing=True)
            if row is None or row.failing_since is None \
                    or failed_at - row.failing_since < self.delayed_after:
                return
            try:
                async with session.begin_nested():
                    await self.on_delayed(session, row, error)
            except Exception:
                log.exception("outbox %s (%s): reporting the delay failed", item.id, item.kind)

    async def _mark(self, session: AsyncSession, item: OutboundItem, status: str,
                    error: str | None, external_id: str | None = None) -> Outbox | None:
        now = self.clock.now()
        values: dict[str, Any] = {"status": status, "last_error": error, "lease_until": None}
        if status == "sent":
            values.update(sent_at=now, external_id=external_id, failing_since=None)
        # Only the worker that holds this attempt's lease may record its outcome.
        result = await session.execute(
            update(Outbox).where(Outbox.id == item.id, Outbox.status == "sending",
                                 Outbox.attempts == item.attempts).values(**values)
            .execution_options(synchronize_session=False)
        )
        if getattr(result, "rowcount", 0) != 1:
            log.warning("outbox %s: lease lost before recording %s", item.id, status)
            return None
        return await session.get(Outbox, item.id, populate_existing=True)
