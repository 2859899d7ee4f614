"""The pipeline: receive → store → route (thread or open a case, acknowledge) → classify →
draft → ready for review → approve → outbox → deliver. Written against the ports only.

Fast intake, slow processing: :meth:`Desk.receive_many` stores a batch of raw messages and
routes each in a savepoint, so a message that cannot be routed is still kept; drafting comes
after the commit, so a crash before routing or drafting loses nothing; :meth:`Desk.recover`
picks up whatever was left half done.
"""

from __future__ import annotations

import dataclasses
import logging
import re
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.exc import (
    DataError,
    DBAPIError,
    IntegrityError,
    InterfaceError,
    OperationalError,
)
from sqlalchemy.ext.asyncio import AsyncSession

from desk.directory import identify
from desk.envelope import InboundMessage
from desk.errors import AlreadyDoneError, InputError, NotFoundError, WorkflowError
from desk.models import Attachment, Case, City, Contact, Correction, Draft, Message, Outbox
from desk.outbox import enqueue
from desk.ports import TOPICS, Classification, Classifier, Clock, Drafter, DraftRequest, Entity
from desk.redact import mask_address, redact
from desk.sla import BusinessCalendar, format_span
from desk.store import Store, content_hash, insert_ignore
from desk.workflow import Status, record_event, transition

__all__ = ["CASE_REF", "Desk", "Received"]

log = logging.getLogger(__name__)

MAX_ROUTE_ATTEMPTS = 5
CASE_REF = re.compile(r"\bC-(\d{4})-(\d{4,})\b", re.I)
_SURROGATE = re.compile("[\ud800-\udfff]")  # in a str, always half a pair
PROCESS_LEASE = timedelta(minutes=5)
ANSWERED = (Status.SENT, Status.FOLLOW_UP_SCHEDULED, Status.CLOSED, Status.REJECTED)


@dataclass(frozen=True)
class Received:
    message_id: int
    case_id: int | None
    case_ref: str | None
    created: bool  # a new case was opened
    duplicate: bool  # we had this message already


class Desk:
    """The case desk: every use case of the service, on top of the store and the ports."""

    def __init__(
        self, store: Store, clock: Clock, calendar: BusinessCalendar, *,
        classifier: Classifier | None = None, drafter: Drafter | None = None,
        package_url: Callable[[str], str] | None = None,
        review_channel: str | None = None, ack_per_sender_per_hour: int = 5,
        flood_per_sender_per_hour: int = 20,
    ) -> None:
        self.store = store
        self.clock = clock
        self.calendar = calendar
        self.classifier = classifier
        self.drafter = drafter
        self.package_url = package_url or (lambda token: f"/p/{token}")
        # Review cards go to Slack; without it reviewers use the CLI and the rows wait.
        self.review_channel = review_channel
        self.ack_limit = ack_per_sender_per_hour
        self.flood_limit = flood_per_sender_per_hour

    # ---- intake -------------------------------------------------------------------------

    async def receive(self, inbound: InboundMessage) -> Received:
        """Store one message (deduplicated) and route it onto a case."""
        return (await self.receive_many([inbound]))[0]

    async def receive_many(self, inbounds: Sequence[InboundMessage]) -> list[Received]:
        """Store a batch of messages and route each onto a case, in one transaction: a burst
        pays for one commit, not two per message. Routing runs in a savepoint per message, so
        a message that cannot be routed is still stored, counted and left to :meth:`recover`.
        If the commit fails nothing is kept, and the channel, not yet told the messages were
        handled, delivers them again."""
        async with self.store.session() as session:
            return [await self._receive_in(session, inbound) for inbound in inbounds]

    async def _receive_in(self, session: AsyncSession, inbound: InboundMessage) -> Received:
        digest = content_hash(inbound.raw)
        inbound = storable(inbound)
        message = await self._find_message(session, inbound, digest)
        if message is not None:
            if not _left_unrouted(message):
                return Received(message.id, message.case_id, None, False, True)
            # A crash came between storing and routing, and the channel delivered it again:
            # file it now rather than at the next recovery sweep (which may be at it too).
            await session.refresh(message, with_for_update=True)
        else:
            try:
                message = await _insert(session, inbound, digest)
            except IntegrityError:
                # Another worker stored it between our check and our insert.
                found = await self._find_message(session, inbound, digest)
                if found is None:
                    raise
                return Received(found.id, found.case_id, None, False, True)
            except DBAPIError as exc:
                if not _refused_value(exc):
                    raise
                # A value the database will not take: keep the raw message under a plain
                # envelope, so it reaches a person instead of holding up the batch.
                log.error("message %s could not be stored as read (%s); stored raw",
                          digest[:12], type(exc).__name__)
                message = await self._store_plain(session, inbound, digest, exc)
                inbound = dataclasses.replace(inbound, attachments=[])  # the raw keeps them
            for item in inbound.attachments:
                session.add(Attachment(
                    message_id=message.id, filename=item.filename[:255],
                    content_type=item.content_type[:255], size=item.size, data=item.data,
                    refused_reason=item.refused_reason,
                ))
        routed = await self._route_or_count(session, message)
        return routed or Received(message.id, None, None, False, False)

    async def _store_plain(self, session: AsyncSession, inbound: InboundMessage, digest: str,
                           exc: DBAPIError) -> Message:
        """The raw message under an envelope of only what dedupe, threading and loop prevention
        need: its Message-ID, sender, thread and whether a program sent it; if even those are
        refused, its hash alone."""
        problem = f"could not be stored as read: {type(exc).__name__}"
        try:
            return await _insert(session, InboundMessage(
                channel=inbound.channel, external_id=inbound.external_id, raw=inbound.raw,
                received_at=inbound.received_at, text="", reply_text="",
                sender_email=inbound.sender_email, sender_slack_id=inbound.sender_slack_id,
                thread_refs=inbound.thread_refs, reply_references=inbound.reply_references,
                thread_key=inbound.thread_key, is_auto_reply=inbound.is_auto_reply,
                is_bounce=inbound.is_bounce, is_calendar_reply=inbound.is_calendar_reply,
                problems=[problem]), digest)
        except DBAPIError as again:
            if not _refused_value(again):
                raise
        return await _insert(session, InboundMessage(
            channel=inbound.channel, external_id=f"sha256:{digest}", raw=inbound.raw,
            received_at=inbound.received_at, text="", reply_text="", problems=[problem]), digest)

    async def _route_or_count(self, session: AsyncSession, message: Message) -> Received | None:
        """Route in a savepoint; a failure (None) is counted on the message, which stays
        stored for :meth:`recover` to try again."""
        message_id = message.id
        try:
            async with session.begin_nested():
                return await self._route_in(session, message)
        except Exception as exc:
            if isinstance(exc, DBAPIError) and _database_failure(exc):
                raise  # the database itself (a deadlock, a lost connection): the batch again
            failure = exc
        log.error("routing message %s failed", message_id, exc_info=failure)
        # The rollback expired what the savepoint changed: read the row again.
        await session.refresh(message)
        message.route_attempts += 1
        message.route_error = f"{type(failure).__name__}: {redact(str(failure))[:1000]}"
        if message.route_attempts >= MAX_ROUTE_ATTEMPTS:
            await enqueue(session, kind="notice", channel="slack", now=self.clock.now(),
                          key=f"notice:unroutable:{message.id}", payload={
                              "text": f"A message could not be filed as a case after "
                              f"{message.route_attempts} tries (stored as message "
                              f"{message.id}; nothing was lost): {type(failure).__name__}"})
        return None

    async def _find_message(self, session: AsyncSession, inbound: InboundMessage,
                            digest: str) -> Message | None:
        # Either direction: our own sent mail coming back (Cc to the 311 address, a forward,
        # a list) is an echo of what we hold, not a new question.
        result = await session.execute(select(Message).where(
            Message.channel == inbound.channel,
            or_(Message.external_id == inbound.external_id[:998],
                and_(Message.content_hash == digest, Message.direction == "in")),
        ).limit(1))
        return result.scalar_one_or_none()

    async def route(self, message_id: int) -> Received:
        """Attach a stored message to its case, or open one. Safe to run twice."""
        async with self.store.session() as session:
            message = await session.get(Message, message_id, with_for_update=True)
            if message is None:
                raise NotFoundError(f"message {message_id} does not exist")
            return await self._route_in(session, message)

    async def _route_in(self, session: AsyncSession, message: Message) -> Received:
        """Route a message the session holds locked (or has just stored)."""
        if message.processed_at is not None:
            case = await session.get(Case, message.case_id) if message.case_id else None
            return Received(message.id, message.case_id, case.ref if case else None,
                            False, True)
        inbound = _envelope_from_json(message)
        now = self.clock.now()
        case = await self._thread_of(session, inbound)
        created = False
        if inbound.is_bounce:
            case = await self._bounce(session, message, inbound, case, now)
        elif case is not None:
            await self._attach(session, case, message, inbound, now)
        elif _automatic(inbound):
            log.info("auto-reply %s matched no case; stored, not answered", message.id,
                     extra={"stored_message": message.id})
        else:
            case = await self._open_case(session, message, inbound, now)
            created = True
        message.case_id = case.id if case else None
        message.processed_at = now
        return Received(message.id, message.case_id, case.ref if case else None,
                        created, False)

    async def _thread_of(self, session: AsyncSession, inbound: InboundMessage) -> Case | None:
        refs = [r for r in (inbound.thread_refs + inbound.bounced_message_ids) if r]
        if refs:
            result = await session.execute(
                select(Message.case_id).where(
                    Message.channel == inbound.channel, Message.external_id.in_(refs),
                    Message.case_id.is_not(None),
                ).order_by(Message.id.desc()).limit(1)
            )
            case_id = result.scalar_one_or_none()
            if case_id is not None:
                return await session.get(Case, case_id)
        if inbound.thread_key:
            by_thread = await session.execute(select(Case).where(
                Case.channel == inbound.channel, Case.thread_key == inbound.thread_key
            ).limit(1))
            threaded = by_thread.scalar_one_or_none()
            if threaded is not None:
                return threaded
        match = CASE_REF.search(inbound.subject or "")
        if match:
            case = await self.store.find_case(session, match.group(0).upper())
            # References are in every acknowledgement; only the case's own contact or city
            # may join a case by quoting one, or a stranger could reopen and steer it.
            if case is not None and await self._belongs_to(session, case, inbound):
                return case
        return None

    async def _belongs_to(self, session: AsyncSession, case: Case,
                          inbound: InboundMessage) -> bool:
        sender = (inbound.sender_email or "").lower()
        if not sender:
            return False
        if case.contact is not None and case.contact.email == sender:
            return True
        if case.city_id is None or "@" not in sender:
            return False
        city = await self.store.city_by_domain(session, sender.rsplit("@", 1)[1])
        return city is not None and city.id == case.city_id

    async def _open_case(self, session: AsyncSession, message: Message,
                         inbound: InboundMessage, now: datetime) -> Case:
        who = await identify(self.store, session, email=inbound.sender_email,
                             slack_user=inbound.sender_slack_id, text=inbound.text)
        contact = who.contact
        if contact is None and (inbound.sender_email or inbound.sender_slack_id):
            # Two workers may meet the same new sender at once: insert-or-nothing, then read.
            email = inbound.sender_email.lower() if inbound.sender_email else None
            await insert_ignore(session, Contact, {
                "city_id": who.city.id if who.city else None,
                "name": _clip(inbound.sender_name, 200),
                "email": email, "slack_user_id": inbound.sender_slack_id, "created_at": now,
                "bouncing": False,
            })
            contact = (await self.store.contact_by_email(session, email) if email
                       else await self.store.contact_by_slack(
                           session, inbound.sender_slack_id or ""))
        elif contact is not None and contact.city_id is None and who.city is not None:
            contact.city_id = who.city.id
        flooding = await self._flooding(session, contact, now)
        year = inbound.received_at.astimezone(self.calendar.zone).year
        number = await self.store.next_number(session, f"case-{year}")
        question = (inbound.reply_text or inbound.text).strip()
        case = Case(
            ref=f"C-{year}-{number:04d}", channel=inbound.channel,
            thread_key=(inbound.thread_key or inbound.external_id)[:998],
            # A flood is kept, not drafted: staff see it in one notice instead of many cards.
            status=(Status.NEEDS_TRIAGE if flooding else Status.RECEIVED).value,
            triage_reason=f"flood: more than {self.flood_limit} new cases from this sender "
            "in an hour" if flooding else None,
            subject=inbound.subject, question=question or "(no text could be read)",
            city_id=who.city.id if who.city else None,
            contact_id=contact.id if contact else None, received_at=inbound.received_at,
            clock_started_at=inbound.received_at, due_at=self.calendar.due(inbound.received_at),
            package_token=secrets.token_urlsafe(24), review_channel=self.review_channel,
            meta={"matched_by": who.how, "problems": list(inbound.problems),
                  **{k: v for k, v in inbound.meta.items() if isinstance(v, str | int)}},
            created_at=now, updated_at=now, topics=[], scores={}, entities=[],
        )
        session.add(case)
        await session.flush()
        record_event(session, case.id, _actor(inbound), "received", now, to_status=case.status,
                     detail={"channel": inbound.channel, "matched_by": who.how})
        if flooding:
            hour = now.strftime("%Y%m%d%H")
            sender = mask_address(inbound.sender_email) or inbound.sender_slack_id or "unknown"
            await enqueue(session, kind="notice", channel="slack", now=now, case_id=case.id,
                          key=f"notice:flood:{contact.id if contact else sender}:{hour}",
                          payload={"text": f"Mail flood from {sender}: more than "
                                   f"{self.flood_limit} new cases this hour. New messages are "
                                   "kept as cases in triage, without acknowledgements or "
                                   "review cards."})
        elif who.city is not None and not _automatic(inbound):
            await self._acknowledge(session, case, inbound, now)
        return case

    async def _flooding(self, session: AsyncSession, contact: Contact | None,
                        now: datetime) -> bool:
        if contact is None:
            return False
        recent = await session.execute(select(func.count(Case.id)).where(
            Case.contact_id == contact.id, Case.created_at > now - timedelta(hours=1)))
        return int(recent.scalar_one()) >= self.flood_limit

    async def _acknowledge(self, session: AsyncSession, case: Case, inbound: InboundMessage,
                           now: datetime) -> None:
        sender = inbound.sender_email or inbound.sender_slack_id or ""
        if inbound.channel == "email" and case.contact_id is not None:
            # Rate limit per sender: a flood gets at most a few answers an hour.
            recent = await session.execute(
                select(func.count(Outbox.id)).join(Case, Case.id == Outbox.case_id).where(
                    Outbox.kind == "ack", Outbox.created_at > now - timedelta(hours=1),
                    Case.contact_id == case.contact_id))
            if int(recent.scalar_one()) >= self.ack_limit:
                record_event(session, case.id, "system", "ack_suppressed", now,
                             detail={"reason": "rate limit"})
                return
        await enqueue(
            session, kind="ack", channel=inbound.channel, key=f"ack:{case.id}:{case.cycle}",
            case_id=case.id, now=now, payload={
                "to": sender, "subject": inbound.subject, "in_reply_to": inbound.external_id,
                "references": inbound.thread_refs,
                "parent_references": inbound.reply_references,
                "thread_key": case.thread_key,
                "due_at": case.due_at.isoformat(), "due_text": self.calendar.describe(case.due_at),
            },
        )

    async def _attach(self, session: AsyncSession, case: Case, message: Message,
                      inbound: InboundMessage, now: datetime) -> None:
        actor = _actor(inbound)
        if _automatic(inbound):
            kind = "calendar_reply" if inbound.is_calendar_reply else "auto_reply"
            record_event(session, case.id, actor, kind, now, detail={"message": message.id})
            return
        if Status(case.status) in ANSWERED:
            due = self.calendar.due(inbound.received_at)
            await transition(
                session, case, Status.RECEIVED, actor=actor, at=now, kind="reopened",
                values={"cycle": case.cycle + 1, "clock_started_at": inbound.received_at,
                        "due_at": due, "first_response_at": None, "reminded_at": None,
                        "escalated_at": None, "lease_until": None,
                        "question": f"{case.question}\n\n---\n{inbound.reply_text.strip()}"},
                detail={"message": message.id},
            )
        else:
            record_event(session, case.id, actor, "message_added", now,
                         detail={"message": message.id})
            if case.status == Status.RECEIVED.value:
                # Not drafted yet: the draft will take the new message into account.
                case.question = f"{case.question}\n\n---\n{inbound.reply_text.strip()}"
            else:
                await enqueue(session, kind="notice", channel="slack", now=now,
                              key=f"notice:message:{message.id}", case_id=case.id,
                              payload={"text": "New message from the city on this case.",
                                       "quote": inbound.reply_text[:2000]})

    async def _bounce(self, session: AsyncSession, message: Message, inbound: InboundMessage,
                      case: Case | None, now: datetime) -> Case | None:
        if inbound.bounced_recipient:
            contact = await self.store.contact_by_email(session, inbound.bounced_recipient)
            if contact is not None:
                contact.bouncing = True
        record_event(session, case.id if case else None, "mailer-daemon", "bounce", now,
                     detail={"message": message.id, "recipient": mask_address(
                         inbound.bounced_recipient)})
        await enqueue(session, kind="notice", channel="slack", now=now,
                      key=f"notice:bounce:{message.id}", case_id=case.id if case else None,
                      payload={"text": "An email we sent bounced: "
                               f"{mask_address(inbound.bounced_recipient) or 'unknown address'}."})
        return case

    # ---- processing -------------------------------------------------------------------------

    async def pending_cases(self, limit: int = 50) -> list[int]:
        now = self.clock.now()
        async with self.store.session() as session:
            result = await session.execute(
                select(Case.id).where(
                    Case.status == Status.RECEIVED.value,
                    or_(Case.lease_until.is_(None), Case.lease_until < now),
                ).order_by(Case.urgency.desc(), Case.id).limit(limit)
            )
            return list(result.scalars().all())

    async def unrouted_messages(self, limit: int = 200) -> list[int]:
        async with self.store.session() as session:
            result = await session.execute(
                select(Message.id).where(Message.direction == "in",
                                         Message.processed_at.is_(None),
                                         Message.route_attempts < MAX_ROUTE_ATTEMPTS)
                .order_by(Message.id).limit(limit)
            )
            return list(result.scalars().all())

    async def recover(self) -> int:
        """Route stored messages and process received cases that a crash left behind.
        One message or case that fails never holds up the others."""
        done = 0
        for message_id in await self.unrouted_messages():
            try:
                async with self.store.session() as session:
                    message = await session.get(Message, message_id, with_for_update=True)
                    if (message is not None and _left_unrouted(message)
                            and await self._route_or_count(session, message) is not None):
                        done += 1
            except Exception:  # counted where it could be; the next round tries again
                log.exception("routing message %s failed", message_id)
        for case_id in await self.pending_cases():
            try:
                if await self.process(case_id):
                    done += 1
            except Exception:
                # The lease runs out and another round tries again.
                log.exception("drafting case %s failed", case_id)
        return done

    async def process(self, case_id: int) -> bool:
        """Classify and draft a received case; False when another worker holds it."""
        done, failed = await self._process_batch([case_id])
        if case_id in failed:
            raise failed[case_id]
        return case_id in done

    async def process_many(self, case_ids: Sequence[int]) -> list[int]:
        """Classify and draft received cases together: one transaction claims them all and one
        saves every draft. A case that fails is logged and left for its lease to run out,
        when :meth:`recover` tries it again; the others go on. Returns the drafted ids."""
        done, failed = await self._process_batch(case_ids)
        for case_id, exc in failed.items():
            log.error("drafting case %s failed", case_id, exc_info=exc)
        return done

    async def _process_batch(self, case_ids: Sequence[int]
                             ) -> tuple[list[int], dict[int, Exception]]:
        now = self.clock.now()
        work: list[tuple[int, str, DraftRequest]] = []
        async with self.store.session() as session:
            claimed_ids = []
            for case_id in dict.fromkeys(case_ids):
                claimed = await session.execute(
                    update(Case).where(
                        Case.id == case_id, Case.status == Status.RECEIVED.value,
                        or_(Case.lease_until.is_(None), Case.lease_until < now),
                    ).values(lease_until=now + PROCESS_LEASE)
                    .execution_options(synchronize_session=False)
                )
                if getattr(claimed, "rowcount", 0) == 1:
                    claimed_ids.append(case_id)
            for case in await self._cases_by_id(session, claimed_ids):
                work.append((case.id, _classify_text(case), self._draft_request(case, [], [])))
        # Classifying and drafting take no database lock.
        drafted: dict[int, tuple[Classification, dict[str, Any]]] = {}
        failed: dict[int, Exception] = {}
        for case_id, question, request in work:
            try:
                classification = self.classify(question)
                topics = [t.topic for t in classification.topics]
                drafted[case_id] = (classification, await self._draft(dataclasses.replace(
                    request, topics=topics, entities=list(classification.entities))))
            except Exception as exc:  # the others are drafted all the same
                failed[case_id] = exc
        done: list[int] = []
        if not drafted:
            return done, failed
        async with self.store.session() as session:
            for case in await self._cases_by_id(session, list(drafted), lock=True):
                if case.status != Status.RECEIVED.value or case.lease_until is None:
                    continue  # a reviewer took it over meanwhile
                classification, draft_fields = drafted[case.id]
                try:
                    async with session.begin_nested():
                        await self._save_classified(session, case, classification,
                                                    draft_fields, now)
                except (AlreadyDoneError, IntegrityError):
                    continue  # changed under us after all: the other writer's state stands
                done.append(case.id)
        return done, failed

    async def _cases_by_id(self, session: AsyncSession, case_ids: Sequence[int], *,
                           lock: bool = False) -> list[Case]:
        if not case_ids:
            return []
        query = select(Case).where(Case.id.in_(case_ids)).order_by(Case.id)
        if lock:
            query = query.with_for_update(of=Case)
        result = await session.execute(query.execution_options(populate_existing=True))
        return list(result.scalars().all())

    async def _save_classified(self, session: AsyncSession, case: Case,
                               classification: Classification, draft_fields: dict[str, Any],
                               now: datetime) -> None:
        topics = [t.topic for t in classification.topics]
        reasons = []
        if case.city_id is None:
            reasons.append("unknown sender: no city matched")
        if classification.needs_triage:
            reasons.append("low topic confidence")
        target = Status.NEEDS_TRIAGE if reasons else Status.DRAFTED
        await transition(
            session, case, target, actor="system", at=self.clock.now(),
            sources=(Status.RECEIVED,), values={
                "topics": [{"topic": t.topic, "score": round(t.score, 4)}
                           for t in classification.topics],
                "scores": {k: round(v, 4) for k, v in classification.scores.items()},
                "entities": [e.as_dict() for e in classification.entities],
                "urgency": classification.urgency,
                "triage_reason": "; ".join(reasons) or None, "lease_until": None,
                "meta": {**case.meta, "urgency_reasons": classification.urgency_reasons},
            },
            detail={"topics": topics},
        )
        await self._save_draft(session, case, draft_fields, topics, "system", now)
        await self._queue_card(session, case, "review_card", now)

    def classify(self, text: str) -> Classification:
        if self.classifier is None:
            # Without a classifier every case goes to a person first.
            return Classification(topics=[], scores=dict.fromkeys(TOPICS, 0.0),
                                  needs_triage=True)
        return self.classifier.classify(text)

    def _draft_request(self, case: Case, topics: list[str],
                       entities: Sequence[Entity]) -> DraftRequest:
        return DraftRequest(
            case_ref=case.ref, question=case.question, topics=topics, entities=list(entities),
            city=case.city.name if case.city else None,
            state=case.city.state if case.city else None,
            contact_name=case.contact.name if case.contact else None,
            package_url=self.package_url(case.package_token),
        )

    async def _draft(self, request: DraftRequest) -> dict[str, Any]:
        if self.drafter is None:
            text = (f"Thank you for your question ({request.case_ref}). A member of our network "
                    "will reply with resources shortly.")
            return {"text": text, "html": "", "mrkdwn": text, "package": {}}
        package = await self.drafter.draft(request)
        return {"text": package.text, "html": package.html, "mrkdwn": package.mrkdwn,
                "package": package.as_dict()}

    async def _save_draft(self, session: AsyncSession, case: Case, fields: dict[str, Any],
                          topics: list[str], author: str, now: datetime) -> Draft:
        latest = await session.execute(
            select(func.max(Draft.version)).where(Draft.case_id == case.id))
        version = int(latest.scalar_one() or 0) + 1
        draft = Draft(case_id=case.id, version=version, text=fields["text"],
                      html=fields.get("html", ""), mrkdwn=fields.get("mrkdwn", ""),
                      package=fields.get("package", {}), topics=topics, author=author,
                      created_at=now)
        session.add(draft)
        await session.flush()
        return draft

    async def _queue_card(self, session: AsyncSession, case: Case, kind: str,
                          now: datetime, note: str | None = None) -> None:
        if kind == "review_card":
            key = f"card:{case.id}:{case.cycle}"
        else:
            # Every card update is its own row; the channel renders the latest state.
            key = f"card_update:{case.id}:{secrets.token_hex(8)}"
        await enqueue(session, kind=kind, channel="slack", key=key, case_id=case.id, now=now,
                      payload={"note": note} if note else {})

    # ---- review ---------------------------------------------------------------------------

    async def latest_draft(self, session: AsyncSession, case_id: int) -> Draft | None:
        result = await session.execute(select(Draft).where(Draft.case_id == case_id)
                                       .order_by(Draft.version.desc()).limit(1))
        return result.scalar_one_or_none()

    async def approve(self, case_ref: str | int, actor: str) -> Case:
        """Approve the latest draft and queue the reply. Of two concurrent approvals exactly
        one succeeds; the other raises AlreadyDoneError."""
        now = self.clock.now()
        async with self.store.session() as session:
            case = await self._case(session, case_ref)
            draft = await self.latest_draft(session, case.id)
            if draft is None:
                raise WorkflowError(f"{case.ref} has no draft to approve", case_ref=case.ref)
            await transition(session, case, Status.APPROVED, actor=actor, at=now,
                             sources=(Status.DRAFTED, Status.NEEDS_TRIAGE),
                             detail={"draft": draft.version})
            # After a failed delivery the case comes back to the reviewers; approving it again
            # queues a new row. The compare-and-set above lets only one approval get here.
            failed = await session.execute(select(func.count(Outbox.id)).where(
                Outbox.case_id == case.id, Outbox.kind == "reply", Outbox.status == "failed"))
            queued = await enqueue(
                session, kind="reply", channel=case.channel, case_id=case.id, now=now,
                key=f"reply:{case.id}:{case.cycle}:{int(failed.scalar_one())}",
                payload=await self._reply_payload(session, case, draft))
            if not queued:
                raise AlreadyDoneError(f"{case.ref}: the reply is already queued",
                                       case_ref=case.ref)
            await self._queue_card(session, case, "card_update", now,
                                   note=f"Approved by <@{actor}>")
            return case

    async def _reply_payload(self, session: AsyncSession, case: Case,
                             draft: Draft) -> dict[str, Any]:
        inbound = await session.execute(
            select(Message).where(Message.case_id == case.id, Message.direction == "in")
            .order_by(Message.id.desc()))
        # Thread the answer under the city's own latest message, never under an
        # out-of-office notice, a bounce or a calendar's answer that joined the case.
        last_in = next((m for m in inbound.scalars() if _from_a_person(m.envelope)), None)
        envelope = last_in.envelope if last_in else {}
        refs = [r for r in envelope.get("thread_refs", []) if r]
        to = case.contact.email if case.contact and case.contact.email else envelope.get(
            "sender_email")
        return {
            "to": to, "subject": case.subject or envelope.get("subject"),
            "in_reply_to": last_in.external_id if last_in else None,
            "references": refs, "parent_references": _reply_references(envelope),
            "thread_key": case.thread_key,
            "draft_version": draft.version, "text": draft.text, "html": draft.html,
            "mrkdwn": draft.mrkdwn, "package_url": self.package_url(case.package_token),
        }

    async def edit(self, case_ref: str | int, actor: str, text: str) -> Draft:
        text = text.strip()
        if not text:
            raise InputError("the reply cannot be empty")
        if len(text) > 30_000:
            raise InputError("the reply is too long (30,000 characters at most)")
        now = self.clock.now()
        async with self.store.session() as session:
            case = await self._case(session, case_ref)
            if Status(case.status) not in (Status.DRAFTED, Status.NEEDS_TRIAGE):
                raise WorkflowError(f"{case.ref} is {case.status}; it can no longer be edited",
                                    case_ref=case.ref)
            previous = await self.latest_draft(session, case.id)
            package = dict(previous.package) if previous else {}
            draft = await self._save_draft(
                session, case, {"text": text, "html": "", "mrkdwn": text, "package": package},
                [t["topic"] for t in case.topics], actor, now)
            record_event(session, case.id, actor, "edited", now,
                         detail={"draft": draft.version})
            await self._queue_card(session, case, "card_update", now,
                                   note=f"Edited by <@{actor}>")
            return draft

    async def change_topics(self, case_ref: str | int, actor: str,
                            topics: Sequence[str]) -> Draft:
        chosen = [t for t in dict.fromkeys(topics) if t]
        unknown = [t for t in chosen if t not in TOPICS]
        if unknown or not 1 <= len(chosen) <= 3:
            raise InputError("choose 1 to 3 topics from: " + ", ".join(TOPICS))
        now = self.clock.now()
        async with self.store.session() as session:
            case = await self._case(session, case_ref)
            if Status(case.status) not in (Status.DRAFTED, Status.NEEDS_TRIAGE):
                raise WorkflowError(f"{case.ref} is {case.status}; topics are settled",
                                    case_ref=case.ref)
            previous = [t["topic"] for t in case.topics]
            entities = [Entity(**e) for e in case.entities]
            request = self._draft_request(case, chosen, entities)
        fields = await self._draft(request)
        async with self.store.session() as session:
            case = await self._case(session, case_ref)
            session.add(Correction(case_id=case.id, text=_classify_text(case), topics=chosen,
                                   previous=previous, actor=actor, created_at=now))
            draft = await self._save_draft(session, case, fields, chosen, actor, now)
            reason = case.triage_reason or ""
            remaining = "; ".join(r for r in reason.split("; ")
                                  if r and r != "low topic confidence") or None
            target = Status.NEEDS_TRIAGE if remaining else Status.DRAFTED
            await transition(
                session, case, target, actor=actor, at=now, kind="topics_changed",
                values={"topics": [{"topic": t, "score": 1.0} for t in chosen],
                        "triage_reason": remaining},
                detail={"from": previous, "to": chosen},
            )
            await self._queue_card(session, case, "card_update", now,
                                   note=f"Topics changed by <@{actor}>")
            return draft

    async def reject(self, case_ref: str | int, actor: str, reason: str,
                     *, send_decline: bool = False) -> Case:
        reason = reason.strip()
        if not reason:
            raise InputError("a reason is needed to reject a case")
        now = self.clock.now()
        async with self.store.session() as session:
            case = await self._case(session, case_ref)
            await transition(session, case, Status.REJECTED, actor=actor, at=now,
                             sources=(Status.RECEIVED, Status.DRAFTED, Status.NEEDS_TRIAGE),
                             detail={"reason": reason, "decline": send_decline})
            if send_decline:
                payload = await self._reply_payload(session, case, Draft(
                    text=decline_text(case.ref, reason), html="", mrkdwn=decline_text(
                        case.ref, reason), version=0))
                await enqueue(session, kind="decline", channel=case.channel,
                              key=f"decline:{case.id}:{case.cycle}", case_id=case.id,
                              now=now, payload=payload)
            await self._queue_card(session, case, "card_update", now,
                                   note=f"Rejected by <@{actor}>: {reason}")
            return case

    async def assign(self, case_ref: str | int, actor: str, *, coach: str | None = None,
                     assignee: str | None = None) -> Case:
        now = self.clock.now()
        async with self.store.session() as session:
            case = await self._case(session, case_ref)
            values: dict[str, Any] = {"updated_at": now}
            if coach is not None:
                values["coach"] = coach
            if assignee is not None:
                values["assignee"] = assignee
            await session.execute(update(Case).where(Case.id == case.id).values(**values)
                                  .execution_options(synchronize_session=False))
            record_event(session, case.id, actor, "assigned", now,
                         detail={"coach": coach, "assignee": assignee})
            await session.refresh(case)
            who = f"<@{coach}>" if coach else f"<@{assignee}>"
            await self._queue_card(session, case, "card_update", now,
                                   note=f"{who} assigned by <@{actor}>")
            return case

    async def close(self, case_ref: str | int, actor: str, note: str = "") -> Case:
        now = self.clock.now()
        async with self.store.session() as session:
            case = await self._case(session, case_ref)
            await transition(session, case, Status.CLOSED, actor=actor, at=now,
                             detail={"note": note})
            await self._queue_card(session, case, "card_update", now,
                                   note=f"Closed by <@{actor}>")
            return case

    async def _case(self, session: AsyncSession, case_ref: str | int) -> Case:
        case = await self.store.find_case(session, case_ref)
        if case is None:
            raise NotFoundError(f"no case {case_ref}")
        return case

    # ---- after delivery -------------------------------------------------------------------

    async def on_sent(self, session: AsyncSession, row: Outbox, receipt: Any) -> None:
        """Hook for the dispatcher: record what left, and move the case along."""
        now = self.clock.now()
        case = await session.get(Case, row.case_id) if row.case_id else None
        if row.channel == "email" and row.kind in ("ack", "reply", "decline", "invite"):
            # Store our Message-ID so the city's reply to it threads onto the case.
            await _record_outbound(session, row, receipt.external_id, now)
        if case is None:
            return
        if row.kind == "review_card":
            channel, _, ts = receipt.external_id.partition(":")
            await session.execute(update(Case).where(Case.id == case.id).values(
                review_channel=channel, review_ts=ts).execution_options(
                synchronize_session=False))
        elif row.kind == "reply":
            await transition(session, case, Status.SENT, actor="system", at=now,
                             sources=(Status.APPROVED,),
                             values={"first_response_at": case.first_response_at or now},
                             detail={"outbox": row.id, "external_id": receipt.external_id})
            await self._queue_card(session, case, "card_update", now,
                                   note=f"Reply sent by {row.channel}")
        elif row.kind in ("ack", "decline", "invite"):
            record_event(session, case.id, "system", f"{row.kind}_sent", now,
                         detail={"outbox": row.id})

    async def on_failed(self, session: AsyncSession, row: Outbox, error: str) -> None:
        now = self.clock.now()
        case = await session.get(Case, row.case_id) if row.case_id else None
        if case is not None and row.kind == "reply" and case.status == Status.APPROVED.value:
            await transition(session, case, Status.DRAFTED, actor="system", at=now,
                             kind="delivery_failed", sources=(Status.APPROVED,),
                             detail={"outbox": row.id, "error": error[:500]})
        await _tell_reviewers(session, row, f"notice:failed:{row.id}", now,
                              f"Could not deliver the {_what(row.kind)}: {redact(error)[:300]}")

    async def on_delayed(self, session: AsyncSession, row: Outbox, error: str) -> None:
        """Hook for the dispatcher: a message has been failing for a while, and is still being
        retried. Reviewers hear of it once, in the case's thread, so that a city is not left
        waiting without anyone knowing. A Slack message that keeps failing is not announced in
        Slack; the health check counts it with the others."""
        now = self.clock.now()
        failing = format_span(now - (row.failing_since or now), timedelta(days=1), "day")
        told = await _tell_reviewers(
            session, row, f"notice:delayed:{row.id}", now,
            f"The {_what(row.kind)} by {row.channel} has not gone out yet: it has been failing "
            f"for {failing} and is still being retried. Last error: {redact(error)[:300]}")
        if told and row.case_id is not None:
            record_event(session, row.case_id, "system", "delivery_delayed", now,
                         detail={"outbox": row.id, "kind": row.kind,
                                 "error": redact(error)[:500]})


async def _tell_reviewers(session: AsyncSession, row: Outbox, key: str, now: datetime,
                          text: str) -> bool:
    """A notice to reviewers, in the case's thread, about a message that has not gone out by
    mail; once per ``key``, True when it is new. Nothing for a Slack message: Slack is what is
    failing. Looked up before it is queued: a message failing on and on asks at every retry."""
    if row.channel == "slack":
        return False
    known = await session.execute(select(Outbox.id).where(Outbox.idempotency_key == key))
    if known.scalar_one_or_none() is not None:
        return False
    return await enqueue(session, kind="notice", channel="slack", now=now, key=key,
                         case_id=row.case_id, payload={"text": text})


# What an outbox row is, in the words of a notice to reviewers.
_WHAT = {"ack": "acknowledgement", "decline": "decline notice", "invite": "call invitation"}


def _what(kind: str) -> str:
    return _WHAT.get(kind, kind.replace("_", " "))


async def _record_outbound(session: AsyncSession, row: Outbox, external_id: str,
                           now: datetime) -> None:
    exists = await session.execute(select(Message.id).where(
        Message.channel == row.channel, Message.external_id == external_id))
    if exists.scalar_one_or_none() is not None:
        return
    text = str(row.payload.get("text", ""))
    session.add(Message(
        case_id=row.case_id, direction="out", channel=row.channel, external_id=external_id,
        content_hash=content_hash(text.encode()), sender=None,
        subject=row.payload.get("subject"), text=text, reply_text=text, raw=text.encode(),
        envelope={"kind": row.kind}, received_at=now, processed_at=now, problems=[],
    ))


def decline_text(case_ref: str, reason: str) -> str:
    return (f"Thank you for writing to 311 for Cities. We are not able to take on this question "
            f"({case_ref}): {reason}\n\nIf we misunderstood, reply to this message and a member "
            f"of our team will look again.")


def _classify_text(case: Case) -> str:
    subject = (case.subject or "").strip()
    subject = re.sub(r"^((re|fw|fwd|aw|sv|vs)\s*:\s*)+", "", subject, flags=re.I)
    return f"{subject}\n\n{case.question}" if subject else case.question


def _clip(value: str | None, limit: int) -> str | None:
    return value[:limit] if value else value


def _automatic(inbound: InboundMessage) -> bool:
    """Sent by a program, not a person: never answered, never reopens a case."""
    return inbound.is_auto_reply or inbound.is_calendar_reply


def _actor(inbound: InboundMessage) -> str:
    return (inbound.sender_email or inbound.sender_slack_id or "?")[:320]


def envelope_json(inbound: InboundMessage) -> dict[str, Any]:
    data = dataclasses.asdict(inbound)
    data.pop("raw")
    data["attachments"] = [
        {"filename": a.filename, "content_type": a.content_type, "size": a.size,
         "refused_reason": a.refused_reason} for a in inbound.attachments]
    data["received_at"] = inbound.received_at.isoformat()
    return data


def _from_a_person(envelope: dict[str, Any]) -> bool:
    """A stored message a person wrote: no out-of-office notice, bounce or calendar answer."""
    return not (envelope.get("is_auto_reply") or envelope.get("is_bounce")
                or _calendar_reply(envelope))


def _calendar_reply(envelope: dict[str, Any]) -> bool:
    """An envelope stored before ``is_calendar_reply`` had its own field kept it in meta."""
    return bool(envelope.get("is_calendar_reply", envelope.get("meta", {}).get("calendar_reply")))


def _reply_references(envelope: dict[str, Any]) -> list[str] | None:
    """An envelope stored before ``reply_references`` existed kept them in its meta (and one
    stored before that, nowhere)."""
    refs = envelope.get("reply_references")
    if refs is None:
        refs = envelope.get("meta", {}).get("references")
    return None if refs is None else [r for r in refs if isinstance(r, str)]


def _envelope_from_json(message: Message) -> InboundMessage:
    data = dict(message.envelope)
    data["reply_references"] = _reply_references(data)
    data["is_calendar_reply"] = _calendar_reply(data)
    data["received_at"] = datetime.fromisoformat(data["received_at"])
    data["attachments"] = []
    data["raw"] = b""
    fields = {f.name for f in dataclasses.fields(InboundMessage)}
    return InboundMessage(**{k: v for k, v in data.items() if k in fields})


def city_label(city: City | None) -> str:
    return city.label if city else "unknown city"


def _left_unrouted(message: Message) -> bool:
    """An inbound message stored but never filed, and not yet given up on."""
    return (message.direction == "in" and message.processed_at is None
            and message.route_attempts < MAX_ROUTE_ATTEMPTS)


async def _insert(session: AsyncSession, inbound: InboundMessage, digest: str) -> Message:
    """Store the message in a savepoint, so a refusal leaves the batch's transaction usable."""
    message = Message(
        direction="in", channel=inbound.channel, external_id=inbound.external_id[:998],
        content_hash=digest, sender=_clip(inbound.sender_email or inbound.sender_slack_id, 320),
        subject=inbound.subject, text=inbound.text, reply_text=inbound.reply_text,
        raw=inbound.raw, envelope=envelope_json(inbound), received_at=inbound.received_at,
        problems=list(inbound.problems))
    async with session.begin_nested():
        session.add(message)
    return message


def _database_failure(exc: DBAPIError) -> bool:
    """The database failed the work, not this message: a lost connection, a deadlock, a
    serialization failure, lack of resources, an operator's intervention (SQLSTATE classes
    08, 40, 53, 57). The driver reports most of these as a plain DBAPIError."""
    if exc.connection_invalidated or isinstance(exc, OperationalError | InterfaceError):
        return True
    return str(getattr(exc.orig, "sqlstate", None) or "")[:2] in ("08", "40", "53", "57")


def _refused_value(exc: DBAPIError) -> bool:
    """The database refused a value (SQLSTATE class 22, "data exception"), not the work."""
    if exc.connection_invalidated or isinstance(exc, OperationalError):
        return False
    sqlstate = getattr(exc.orig, "sqlstate", None)
    return isinstance(exc, DataError) or str(sqlstate or "").startswith("22")


def storable(inbound: InboundMessage) -> InboundMessage:
    """The message with NUL characters taken out of its text and lone surrogates (half a pair,
    from a JSON escape such as "\\ud800") replaced by U+FFFD: PostgreSQL refuses NULs in text
    and JSON columns, neither database nor the classifier can encode a lone surrogate, and no
    reader misses either (the raw bytes keep them)."""
    def clean(value: Any) -> Any:
        if isinstance(value, str):
            value = value.replace("\x00", "")
            if not value.isascii() and _SURROGATE.search(value):
                value = _SURROGATE.sub("\ufffd", value)
            return value
        if isinstance(value, list | tuple):
            return type(value)(clean(v) for v in value)
        if isinstance(value, dict):
            return {clean(k): clean(v) for k, v in value.items()}
        return value

    changes = {f.name: clean(getattr(inbound, f.name)) for f in dataclasses.fields(inbound)
               if f.name not in ("raw", "attachments", "received_at")}
    attachments = [dataclasses.replace(a, filename=clean(a.filename),
                                       content_type=clean(a.content_type))
                   for a in inbound.attachments]
    return dataclasses.replace(inbound, attachments=attachments, **changes)
