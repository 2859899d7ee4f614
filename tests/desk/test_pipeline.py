"""The case pipeline and workflow on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from desk.directory import import_cities, shipped_cities
from desk.envelope import InboundMessage
from desk.errors import AlreadyDoneError, WorkflowError
from desk.models import Case, Event, Message, Outbox
from desk.outbox import Dispatcher, Failing, failing
from desk.pipeline import Desk, Received
from desk.settings import SLASettings
from desk.sla import BusinessCalendar
from desk.store import Store
from desk.workflow import Status, transition
from tests.fakes import EchoDrafter, KeywordClassifier, RecordingChannel
from tests.support import FakeClock


def make_desk(store: Store, clock: FakeClock) -> Desk:
    return Desk(store, clock, BusinessCalendar(SLASettings()), classifier=KeywordClassifier(),
                drafter=EchoDrafter(), review_channel="CREVIEW")


def email(n: int, sender: str = "dana@fallriverma.org", *, refs: list[str] | None = None,
          subject: str = "Bond rating", body: str = "How do we improve our bond rating?",
          auto: bool = False) -> InboundMessage:
    raw = f"Message-ID: <q{n}@city>\r\nSubject: {subject}\r\n\r\n{body}".encode()
    return InboundMessage(
        channel="email", external_id=f"<q{n}@city>", received_at=datetime(
            2026, 11, 24, 15, 0, tzinfo=UTC), text=body, reply_text=body, raw=raw,
        subject=subject, sender_email=sender, sender_name="Dana", thread_refs=refs or [],
        is_auto_reply=auto)


async def seeded(store: Store, clock: FakeClock) -> Desk:
    await import_cities(store, shipped_cities(), clock.now())
    return make_desk(store, clock)


async def count(store: Store, model: type, *where: object) -> int:
    async with store.session() as session:
        result = await session.execute(select(func.count()).select_from(model).where(*where))
        return int(result.scalar_one())


async def test_known_sender_opens_case_with_ack_and_due_date(store: Store,
                                                             clock: FakeClock) -> None:
    desk = await seeded(store, clock)
    got = await desk.receive(email(1))
    assert got.created and got.case_ref == "C-2026-0001"
    async with store.session() as session:
        case = (await session.execute(select(Case))).scalar_one()
        assert case.city is not None and case.city.name == "Fall River"
        # Tuesday 10:00 ET + 24 business hours, skipping Thanksgiving = Monday 10:00 ET.
        assert case.due_at == datetime(2026, 11, 30, 15, 0, tzinfo=UTC)
        ack = (await session.execute(select(Outbox).where(Outbox.kind == "ack"))).scalar_one()
        assert ack.payload["due_text"].startswith("Monday, November 30, 2026")


async def test_duplicate_message_is_stored_once(store: Store, clock: FakeClock) -> None:
    desk = await seeded(store, clock)
    first = await desk.receive(email(1))
    again = await desk.receive(email(1))
    assert again.duplicate and again.message_id == first.message_id
    assert await count(store, Case) == 1
    assert await count(store, Message) == 1


async def test_unknown_sender_goes_to_triage_not_dropped(store: Store, clock: FakeClock) -> None:
    desk = await seeded(store, clock)
    got = await desk.receive(email(2, sender="someone@gmail.com"))
    assert got.created
    assert await count(store, Outbox, Outbox.kind == "ack") == 0  # never ack a stranger
    assert await desk.process(got.case_id or 0)
    async with store.session() as session:
        case = await session.get(Case, got.case_id)
        assert case is not None and case.status == "needs_triage"
        assert "unknown sender" in (case.triage_reason or "")


async def test_process_drafts_and_queues_one_review_card(store: Store, clock: FakeClock) -> None:
    desk = await seeded(store, clock)
    got = await desk.receive(email(3))
    assert await desk.process(got.case_id or 0)
    assert not await desk.process(got.case_id or 0)  # already drafted: nothing to do
    async with store.session() as session:
        case = await session.get(Case, got.case_id)
        assert case is not None and case.status == "drafted"
        assert case.topics[0]["topic"] == "budget_finance"
    assert await count(store, Outbox, Outbox.kind == "review_card") == 1


async def test_two_engines_approving_at_once_queue_one_reply(db_url: str,
                                                             clock: FakeClock) -> None:
    first, second = Store.from_url(db_url), Store.from_url(db_url)
    try:
        desk_a, desk_b = await seeded(first, clock), make_desk(second, clock)
        got = await desk_a.receive(email(4))
        await desk_a.process(got.case_id or 0)
        results = await asyncio.gather(desk_a.approve(got.case_ref or "", "U1"),
                                       desk_b.approve(got.case_ref or "", "U2"),
                                       return_exceptions=True)
        errors = [r for r in results if isinstance(r, Exception)]
        assert len(errors) == 1 and isinstance(errors[0], AlreadyDoneError)
        assert await count(first, Outbox, Outbox.kind == "reply") == 1
        assert await count(first, Event, Event.kind == "approved") == 1
    finally:
        await first.close()
        await second.close()


async def test_illegal_transition_is_refused(store: Store, clock: FakeClock) -> None:
    desk = await seeded(store, clock)
    got = await desk.receive(email(5))
    async with store.session() as session:
        case = await session.get(Case, got.case_id)
        assert case is not None
        with pytest.raises(WorkflowError, match="cannot go from received to sent"):
            await transition(session, case, Status.SENT, actor="U1", at=clock.now())


async def approved(desk: Desk, n: int) -> Received:
    """Question ``n`` filed, drafted and approved: its reply waits in the outbox."""
    got = await desk.receive(email(n))
    await desk.process(got.case_id or 0)
    await desk.approve(got.case_ref or "", "U1")
    return got


def dispatcher_for(store: Store, clock: FakeClock, desk: Desk, mail: RecordingChannel,
                   slack: RecordingChannel) -> Dispatcher:
    return Dispatcher(store, {"email": mail, "slack": slack}, clock, on_sent=desk.on_sent,
                      on_failed=desk.on_failed, on_delayed=desk.on_delayed)


async def test_outbox_retries_then_sends_once_and_marks_case_sent(
        store: Store, clock: FakeClock) -> None:
    desk = await seeded(store, clock)
    got = await approved(desk, 6)
    mail, slack = RecordingChannel("email", transient=2), RecordingChannel("slack")
    dispatcher = dispatcher_for(store, clock, desk, mail, slack)
    for _ in range(6):
        await dispatcher.run_once()
        clock.advance(seconds=30)
    assert [i.kind for i in mail.delivered].count("reply") == 1
    assert [i.kind for i in mail.delivered].count("ack") == 1
    async with store.session() as session:
        case = await session.get(Case, got.case_id)
        assert case is not None and case.status == "sent"
        assert case.first_response_at is not None
        assert case.review_ts is not None  # the card's location was recorded


async def test_reply_in_thread_reopens_sent_case(store: Store, clock: FakeClock) -> None:
    desk = await seeded(store, clock)
    got = await desk.receive(email(7))
    await desk.process(got.case_id or 0)
    await desk.approve(got.case_ref or "", "U1")
    mail = RecordingChannel("email")
    dispatcher = Dispatcher(store, {"email": mail}, clock, on_sent=desk.on_sent)
    await dispatcher.run_once()
    reply = next(i for i in mail.delivered if i.kind == "reply")
    follow = email(8, subject="Re: Bond rating", body="Thanks! One more thing about reserves.",
                   refs=[f"<out-{reply.id}@311.test>"])
    again = await desk.receive(follow)
    assert not again.created and again.case_id == got.case_id
    async with store.session() as session:
        case = await session.get(Case, got.case_id)
        assert case is not None and case.status == "received" and case.cycle == 2


async def test_permanent_failure_hands_case_back_to_reviewers(
        store: Store, clock: FakeClock) -> None:
    desk = await seeded(store, clock)
    got = await desk.receive(email(9))
    await desk.process(got.case_id or 0)
    await desk.approve(got.case_ref or "", "U1")
    dispatcher = Dispatcher(store, {"email": RecordingChannel("email", permanent=True)}, clock,
                            on_sent=desk.on_sent, on_failed=desk.on_failed)
    await dispatcher.run_once()
    async with store.session() as session:
        case = await session.get(Case, got.case_id)
        assert case is not None and case.status == "drafted"
    assert await count(store, Outbox, Outbox.kind == "notice") >= 1


async def test_a_message_that_keeps_failing_is_reported_once_and_still_sent(
        store: Store, clock: FakeClock) -> None:
    desk = await seeded(store, clock)
    got = await approved(desk, 10)
    mail, slack = RecordingChannel("email", transient=10**6), RecordingChannel("slack")
    dispatcher = dispatcher_for(store, clock, desk, mail, slack)

    def delay_notices() -> list[str]:
        return [str(i.payload["text"]) for i in slack.delivered
                if i.kind == "notice" and "has not gone out yet" in str(i.payload["text"])]

    started = clock.now()
    await dispatcher.run_once()  # the acknowledgement and the reply both fail
    async with store.session() as session:
        assert await failing(session) == Failing(2, started)
    clock.advance(minutes=29)
    await dispatcher.run_once()
    assert delay_notices() == []
    clock.advance(minutes=2)
    await dispatcher.run_once()  # 31 minutes of failures: reported, once per message
    await dispatcher.run_once()  # the notices go out
    notices = delay_notices()
    assert len(notices) == 2, slack.delivered
    assert {n.split(" has not")[0] for n in notices} == {"The acknowledgement by email",
                                                         "The reply by email"}
    assert all("failing for 31 minutes" in n and "try later" in n for n in notices)
    for _ in range(3):
        clock.advance(hours=2)
        await dispatcher.run_once()
    assert len(delay_notices()) == 2  # still failing, not announced again
    assert await count(store, Event, Event.kind == "delivery_delayed",
                       Event.case_id == got.case_id) == 2

    mail.transient = 0
    clock.advance(hours=1)
    await dispatcher.run_once()
    assert sorted(i.kind for i in mail.delivered) == ["ack", "reply"]
    async with store.session() as session:
        assert await failing(session) == Failing(0, None)
        rows = (await session.execute(select(Outbox).where(
            Outbox.case_id == got.case_id, Outbox.channel == "email"))).scalars().all()
        assert [r.failing_since for r in rows] == [None, None]
        case = await session.get(Case, got.case_id)
        assert case is not None and case.status == "sent"


async def test_case_numbers_are_distinct_under_concurrency(db_url: str,
                                                          clock: FakeClock) -> None:
    stores = [Store.from_url(db_url) for _ in range(3)]
    try:
        desks = [await seeded(stores[0], clock)] + [make_desk(s, clock) for s in stores[1:]]
        results = await asyncio.gather(*(desks[i % 3].receive(email(100 + i)) for i in range(9)))
        refs = [r.case_ref for r in results]
        assert len(set(refs)) == 9
    finally:
        for s in stores:
            await s.close()


async def test_auto_reply_on_a_case_is_recorded_not_answered(store: Store,
                                                              clock: FakeClock) -> None:
    desk = await seeded(store, clock)
    got = await desk.receive(email(10))
    await desk.receive(email(11, subject="Automatic reply: Bond rating", auto=True,
                             refs=["<q10@city>"]))
    assert await count(store, Outbox, Outbox.kind == "ack") == 1
    assert await count(store, Event, Event.kind == "auto_reply", Event.case_id == got.case_id) == 1


async def test_flood_from_one_sender_is_held_and_reported_others_flow(
        store: Store, clock: FakeClock) -> None:
    await import_cities(store, shipped_cities(), clock.now())
    desk = Desk(store, clock, BusinessCalendar(SLASettings()), classifier=KeywordClassifier(),
                drafter=EchoDrafter(), ack_per_sender_per_hour=3, flood_per_sender_per_hour=5)
    for n in range(12):
        await desk.receive(email(200 + n, body=f"Question number {n} about our budget"))
    other = await desk.receive(email(300, sender="chief@miamigov.com"))
    assert await count(store, Case) == 13  # nothing dropped
    assert await count(store, Case, Case.status == "needs_triage") == 7
    assert await count(store, Outbox, Outbox.kind == "ack") == 3 + 1  # rate limit + Miami
    assert await count(store, Outbox, Outbox.kind == "notice") == 1  # reported once
    assert await count(store, Event, Event.kind == "ack_suppressed") == 2
    assert await desk.process(other.case_id or 0)
    assert len(await desk.pending_cases()) == 5  # the first five still get drafted


async def test_a_failing_delay_report_never_costs_the_retry(store: Store,
                                                          clock: FakeClock) -> None:
    desk = await seeded(store, clock)
    got = await approved(desk, 11)
    reports: list[int] = []

    async def broken_report(session: object, row: Outbox, error: str) -> None:
        reports.append(row.id)
        raise RuntimeError("the notice could not be queued")

    mail = RecordingChannel("email", transient=10**6)
    dispatcher = Dispatcher(store, {"email": mail, "slack": RecordingChannel("slack")}, clock,
                            on_sent=desk.on_sent, on_delayed=broken_report,
                            delayed_after=timedelta(minutes=5))
    for _ in range(3):
        await dispatcher.run_once()
        clock.advance(minutes=10)
    assert reports  # the report ran, and failed
    async with store.session() as session:
        rows = (await session.execute(select(Outbox).where(
            Outbox.case_id == got.case_id, Outbox.channel == "email"))).scalars().all()
    assert {(r.kind, r.status, r.attempts) for r in rows} == {("ack", "pending", 3),
                                                              ("reply", "pending", 3)}
    mail.transient = 0
    await dispatcher.run_once()
    assert sorted(i.kind for i in mail.delivered) == ["ack", "reply"]
