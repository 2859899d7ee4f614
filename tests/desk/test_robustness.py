"""Crash windows, echoes, strangers and slow channels: nothing lost, nothing doubled."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.exc import DBAPIError

from desk.models import Case, Message, Outbox
from desk.outbox import Dispatcher
from desk.pipeline import Desk, Received, envelope_json
from desk.ports import DeliveryReceipt, OutboundItem
from desk.store import Store, content_hash
from tests.conftest import truncate_all
from tests.desk.test_pipeline import count, email, seeded
from tests.fakes import RecordingChannel
from tests.support import FakeClock


async def test_our_own_reply_coming_back_is_an_echo(store: Store, clock: FakeClock) -> None:
    desk = await seeded(store, clock)
    got = await desk.receive(email(1))
    await desk.process(got.case_id or 0)
    await desk.approve(got.case_ref or "", "U1")
    mail = RecordingChannel("email")
    await Dispatcher(store, {"email": mail}, clock, on_sent=desk.on_sent).run_once()
    reply = next(i for i in mail.delivered if i.kind == "reply")
    echo = replace(email(2), external_id=f"<out-{reply.id}@311.test>",
                   raw=b"Message-ID: <echo>\r\n\r\nour reply, Cc'd back to us")
    again = await desk.receive(echo)
    assert again.duplicate
    assert await count(store, Case) == 1


async def test_long_sender_and_names_are_stored(store: Store, clock: FakeClock) -> None:
    desk = await seeded(store, clock)
    long_sender = "community.development.block.grant.program.manager.x@fallriverma.org"
    message = replace(email(3, sender=long_sender), sender_name="N" * 500,
                      external_id="<" + "x" * 1500 + "@city>")
    got = await desk.receive(message)
    assert got.created
    assert await desk.process(got.case_id or 0)


async def set_aside_after_recovery(desk: Desk, store: Store, which: Any) -> Message:
    """Run more recovery rounds than a message gets tries; it stays stored and unfiled."""
    for _ in range(6):
        await desk.recover()
    async with store.session() as session:
        row = (await session.execute(select(Message).where(which))).scalar_one()
    assert row.route_attempts == 5 and row.processed_at is None
    return row


async def test_one_unroutable_message_does_not_block_the_rest(store: Store,
                                                             clock: FakeClock) -> None:
    desk = await seeded(store, clock)
    first = await desk.receive(email(4))
    async with store.session() as session:
        # Simulate a crash between storing and routing, with an envelope routing can't read.
        broken = Message(direction="in", channel="email", external_id="<broken@city>",
                         content_hash="0" * 64, raw=b"", envelope={"oops": True},
                         received_at=clock.now(), problems=[])
        session.add(broken)
    stored = await desk.receive(email(5, body="Second question about crime"))
    assert stored.created and first.created
    row = await set_aside_after_recovery(desk, store, Message.external_id == "<broken@city>")
    assert row.route_error
    assert await count(store, Outbox, Outbox.idempotency_key.like("notice:unroutable:%")) == 1
    assert await count(store, Case, Case.status == "drafted") == 2


async def test_a_message_stored_but_never_routed_is_filed_when_it_comes_again(
        store: Store, clock: FakeClock) -> None:
    desk = await seeded(store, clock)
    question = email(7)
    async with store.session() as session:
        # What a worker killed between storing and routing leaves behind.
        session.add(Message(direction="in", channel="email", external_id=question.external_id,
                            content_hash=content_hash(question.raw), raw=question.raw,
                            envelope=envelope_json(question), text=question.text,
                            reply_text=question.reply_text, received_at=clock.now(),
                            problems=[]))
    # The mailbox was never told, so the message arrives again.
    again = await desk.receive(question)
    assert again.case_id is not None and again.created
    assert await count(store, Message) == 1
    assert await count(store, Case) == 1
    assert await desk.unrouted_messages() == []


async def test_a_message_stored_in_the_older_envelope_shape_keeps_its_threading(
        store: Store, clock: FakeClock) -> None:
    """Envelopes stored before ``reply_references`` and ``is_calendar_reply`` had their own
    fields kept them in ``meta``; a message left unrouted then is still answered in order."""
    desk = await seeded(store, clock)
    question = email(8, refs=["<ack-2@311.test>", "<q0@city>", "<ack-1@311.test>"])
    envelope = envelope_json(question)
    del envelope["reply_references"], envelope["is_calendar_reply"]
    envelope["meta"] = {"references": ["<q0@city>", "<ack-1@311.test>"],
                        "calendar_reply": False}
    async with store.session() as session:
        session.add(Message(direction="in", channel="email", external_id=question.external_id,
                            content_hash=content_hash(question.raw), raw=question.raw,
                            envelope=envelope, text=question.text,
                            reply_text=question.reply_text, received_at=clock.now(),
                            problems=[]))
    await desk.recover()
    async with store.session() as session:
        ack = (await session.execute(select(Outbox).where(Outbox.kind == "ack"))).scalar_one()
    assert ack.payload["parent_references"] == ["<q0@city>", "<ack-1@311.test>"]
    assert await count(store, Case) == 1


@contextlib.asynccontextmanager
async def refusing_to_file(store: Store, subject: str) -> AsyncIterator[None]:
    """A database trigger that refuses to mark a message with this subject as filed: the
    failure comes from the database, at the very end of routing, as a real one would."""
    sqlite_db = store.engine.dialect.name == "sqlite"
    async with store.session() as session:
        if sqlite_db:
            await session.execute(text(
                "CREATE TRIGGER refuse_filing BEFORE UPDATE ON messages "
                f"WHEN NEW.subject = '{subject}' AND NEW.processed_at IS NOT NULL "
                "BEGIN SELECT RAISE(ABORT, 'refused by a trigger'); END"))
        else:
            await session.execute(text(
                "CREATE OR REPLACE FUNCTION refuse_filing() RETURNS trigger AS $$ BEGIN "
                f"IF NEW.subject = '{subject}' AND NEW.processed_at IS NOT NULL THEN "
                "RAISE EXCEPTION 'refused by a trigger'; END IF; RETURN NEW; END $$ "
                "LANGUAGE plpgsql"))
            await session.execute(text(
                "CREATE TRIGGER refuse_filing BEFORE UPDATE ON messages FOR EACH ROW "
                "EXECUTE FUNCTION refuse_filing()"))
    try:
        yield
    finally:
        async with store.session() as session:
            await session.execute(text("DROP TRIGGER refuse_filing" if sqlite_db
                                       else "DROP TRIGGER refuse_filing ON messages"))


async def test_a_message_that_cannot_be_filed_keeps_its_batch_and_the_recovery_going(
        store: Store, clock: FakeClock) -> None:
    desk = await seeded(store, clock)
    async with refusing_to_file(store, "Poison"):
        got = await desk.receive_many([email(30), email(31, subject="Poison"), email(32)])
        assert got[0].created and got[2].created
        assert got[1].case_id is None and not got[1].duplicate
        assert await count(store, Message) == 3
        poison = await set_aside_after_recovery(desk, store, Message.subject == "Poison")
        assert "refused by a trigger" in (poison.route_error or "")
        assert await count(store, Outbox,
                           Outbox.idempotency_key == f"notice:unroutable:{poison.id}") == 1
        # The recovery went past it to the cases waiting for their drafts.
        assert await count(store, Case, Case.status == "drafted") == 2


async def test_nul_characters_in_headers_are_stored_without_them(store: Store,
                                                                 clock: FakeClock) -> None:
    desk = await seeded(store, clock)
    odd = replace(email(40, subject="Bond\x00rating"), sender_name="Da\x00na",
                  thread_refs=["<a\x00b@city>"])
    got = await desk.receive_many([email(41), odd, email(42)])
    assert all(r.created for r in got)
    async with store.session() as session:
        stored = (await session.execute(select(Message).where(
            Message.external_id == "<q40@city>"))).scalar_one()
    assert stored.subject == "Bondrating" and b"\x00" not in stored.text.encode()
    assert stored.envelope["thread_refs"] == ["<ab@city>"]


@contextlib.asynccontextmanager
async def pg_refusal(store: Store, when: str, condition: str, errcode: str
                     ) -> AsyncIterator[None]:
    """A PostgreSQL trigger on messages that fails with ``errcode`` when ``condition`` holds:
    the database's own errors, raised where the real ones would be."""
    async with store.session() as session:
        await session.execute(text(
            "CREATE OR REPLACE FUNCTION refuse() RETURNS trigger AS $$ BEGIN "
            f"IF {condition} THEN RAISE EXCEPTION 'refused' USING ERRCODE = '{errcode}'; "
            "END IF; RETURN NEW; END $$ LANGUAGE plpgsql"))
        await session.execute(text(
            f"CREATE TRIGGER refuse {when} ON messages FOR EACH ROW EXECUTE FUNCTION refuse()"))
    try:
        yield
    finally:
        async with store.session() as session:
            await session.execute(text("DROP TRIGGER refuse ON messages"))


@pytest.fixture
async def pg_store(pg_url: str) -> AsyncIterator[Store]:
    await truncate_all(pg_url)
    store = Store.from_url(pg_url)
    yield store
    await store.close()


async def test_a_message_the_database_refuses_as_read_is_kept_raw(
        pg_store: Store, clock: FakeClock) -> None:
    desk = await seeded(pg_store, clock)
    odd = email(50, subject="Refused")
    # SQLSTATE 22P05, a value PostgreSQL cannot take, for the message as read.
    async with pg_refusal(pg_store, "BEFORE INSERT", "NEW.subject = 'Refused'", "22P05"):
        got = await desk.receive_many([email(51), odd, email(52)])
    assert [r.created for r in got] == [True, True, True]
    async with pg_store.session() as session:
        kept = (await session.execute(select(Message).where(
            Message.external_id == "<q50@city>"))).scalar_one()
        case = await session.get(Case, got[1].case_id)
    assert kept.raw == odd.raw and "could not be stored as read" in kept.problems[0]
    assert case is not None and case.question == "(no text could be read)"
    # It keeps its Message-ID: another copy is the same message, and the city's answer to it
    # joins its case.
    copy = replace(odd, raw=b"Received: by another relay\r\n" + odd.raw)
    assert (await desk.receive(copy)).duplicate
    follow = await desk.receive(email(53, refs=["<q50@city>"], body="One more detail."))
    assert follow.case_id == got[1].case_id and not follow.created


async def answered(desk: Desk, store: Store, clock: FakeClock, n: int) -> Received:
    """Question ``n`` filed, drafted, approved and its reply sent."""
    got = await desk.receive(email(n))
    await desk.process(got.case_id or 0)
    await desk.approve(got.case_ref or "", "U1")
    await Dispatcher(store, {"email": RecordingChannel("email")}, clock,
                     on_sent=desk.on_sent).run_once()
    return got


async def test_an_out_of_office_kept_raw_does_not_reopen_an_answered_case(
        pg_store: Store, clock: FakeClock) -> None:
    desk = await seeded(pg_store, clock)
    got = await answered(desk, pg_store, clock, 54)
    away = email(55, subject="Refused", body="I am out of the office until Monday.",
                 refs=["<q54@city>"], auto=True)
    async with pg_refusal(pg_store, "BEFORE INSERT", "NEW.subject = 'Refused'", "22P05"):
        await desk.receive(away)
    async with pg_store.session() as session:
        kept = (await session.execute(select(Message).where(
            Message.external_id == "<q55@city>"))).scalar_one()
        case = await session.get(Case, got.case_id)
    assert "could not be stored as read" in kept.problems[0]
    assert kept.case_id == got.case_id
    assert case is not None and case.status == "sent" and case.cycle == 1
    assert await count(pg_store, Outbox, Outbox.kind == "ack") == 1  # the question's alone


async def test_a_deadlock_while_filing_fails_the_batch_and_counts_against_nothing(
        pg_store: Store, clock: FakeClock) -> None:
    desk = await seeded(pg_store, clock)
    batch = [email(60), email(61, subject="Locked"), email(62)]
    # SQLSTATE 40P01 as the message is marked filed: the database's trouble, not the message's.
    async with pg_refusal(pg_store, "BEFORE UPDATE",
                          "NEW.subject = 'Locked' AND NEW.processed_at IS NOT NULL", "40P01"):
        with pytest.raises(DBAPIError):
            await desk.receive_many(batch)
        assert await count(pg_store, Message) == 0  # the channel delivers it all again
    again = await desk.receive_many(batch)
    assert all(r.created for r in again)
    async with pg_store.session() as session:
        attempts = (await session.execute(select(Message.route_attempts))).scalars().all()
    assert list(attempts) == [0, 0, 0]


async def test_approving_again_after_a_permanent_failure_sends(store: Store,
                                                              clock: FakeClock) -> None:
    desk = await seeded(store, clock)
    got = await desk.receive(email(6))
    await desk.process(got.case_id or 0)
    await desk.approve(got.case_ref or "", "U1")
    await Dispatcher(store, {"email": RecordingChannel("email", permanent=True)}, clock,
                     on_sent=desk.on_sent, on_failed=desk.on_failed).run_once()
    await desk.approve(got.case_ref or "", "U1")
    mail = RecordingChannel("email")
    await Dispatcher(store, {"email": mail}, clock, on_sent=desk.on_sent).run_once(limit=5)
    assert [i.kind for i in mail.delivered].count("reply") == 1
    async with store.session() as session:
        case = await session.get(Case, got.case_id)
        assert case is not None and case.status == "sent"


async def test_a_stranger_quoting_a_case_reference_opens_their_own_case(
        store: Store, clock: FakeClock) -> None:
    desk = await seeded(store, clock)
    got = await desk.receive(email(7))
    same_city = await desk.receive(email(8, sender="clerk@fallriverma.org",
                                         subject=f"Re: {got.case_ref} more detail"))
    assert same_city.case_id == got.case_id
    stranger = await desk.receive(email(9, sender="prankster@gmail.com",
                                        subject=f"Re: {got.case_ref} change the answer"))
    assert stranger.created and stranger.case_id != got.case_id
    async with store.session() as session:
        case = await session.get(Case, got.case_id)
        assert case is not None and "change the answer" not in case.question


async def test_a_second_message_before_drafting_joins_the_question(
        store: Store, clock: FakeClock) -> None:
    desk = await seeded(store, clock)
    got = await desk.receive(email(10))
    await desk.receive(email(11, subject="Re: Bond rating", refs=["<q10@city>"],
                             body="Also: our reserves fell to 4% last year."))
    async with store.session() as session:
        case = await session.get(Case, got.case_id)
        assert case is not None and "reserves fell to 4%" in case.question


class SlowChannel:
    """Takes its time, like SMTP timing out or Slack asking us to wait; part way through the
    first worker's round it lets a second worker run a whole round."""

    name = "email"

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.sent: list[int] = []
        self.meanwhile: Dispatcher | None = None

    async def deliver(self, item: OutboundItem) -> DeliveryReceipt:
        self.clock.advance(minutes=3)  # ten of them take longer, in total, than one lease
        self.sent.append(item.id)
        if len(self.sent) == 5 and self.meanwhile is not None:
            other, self.meanwhile = self.meanwhile, None
            await other.run_once(limit=2)
        return DeliveryReceipt(external_id=f"<slow-{item.id}@311.test>")


@pytest.fixture
async def two_workers(db_url: str) -> AsyncIterator[tuple[Store, Store]]:
    """Two stores on one database, as two worker processes have."""
    first, second = Store.from_url(db_url), Store.from_url(db_url)
    yield first, second
    await first.close()
    await second.close()


async def test_two_dispatchers_with_a_slow_channel_send_each_row_once(
        two_workers: tuple[Store, Store], clock: FakeClock) -> None:
    first, second = two_workers
    desk = await seeded(first, clock)
    for n in range(10):
        await desk.receive(email(400 + n, sender=f"staff{n}@fallriverma.org"))
    channel = SlowChannel(clock)
    channel.meanwhile = Dispatcher(second, {"email": channel}, clock)
    await Dispatcher(first, {"email": channel}, clock).run_once()
    assert sorted(channel.sent) == sorted(set(channel.sent))
    async with first.session() as session:
        sent = await session.execute(select(func.count(Outbox.id)).where(
            Outbox.status == "sent"))
        assert sent.scalar_one() == len(channel.sent) == 10


class HangingChannel:
    """One delivery that outlasts the lease (a stalled SMTP session); while it hangs, a second
    worker runs a round."""

    name = "email"

    def __init__(self, clock: FakeClock, other: Dispatcher) -> None:
        self.clock = clock
        self.other: Dispatcher | None = other
        self.sent: list[int] = []

    async def deliver(self, item: OutboundItem) -> DeliveryReceipt:
        self.clock.advance(minutes=15)  # past the 10-minute lease
        await asyncio.sleep(1.0)  # the first worker's renewals (every 0.05 s) run meanwhile
        if self.other is not None:
            other, self.other = self.other, None
            await other.run_once()
        self.sent.append(item.id)
        return DeliveryReceipt(external_id=f"<hung-{item.id}@311.test>")


async def test_a_delivery_longer_than_the_lease_is_not_sent_twice(
        two_workers: tuple[Store, Store], clock: FakeClock) -> None:
    first, second = two_workers
    desk = await seeded(first, clock)
    await desk.receive(email(500))
    spare = HangingChannel(clock, None)
    channel = HangingChannel(clock, Dispatcher(second, {"email": spare}, clock))
    await Dispatcher(first, {"email": channel}, clock, renew_every=0.05).run_once()
    async with first.session() as session:
        rows = (await session.execute(select(Outbox))).scalars().all()
    assert [r.status for r in rows] == ["sent"] and rows[0].attempts == 1
    assert channel.sent == [rows[0].id] and spare.sent == []


async def test_a_calendar_acceptance_is_recorded_and_does_not_reopen(
        store: Store, clock: FakeClock) -> None:
    from datetime import UTC, datetime

    from mail.parse import parse_message, to_inbound

    desk = await seeded(store, clock)
    got = await answered(desk, store, clock, 20)
    raw = (
        "From: Dana <dana@fallriverma.org>\r\nTo: 311@network.example\r\n"
        f"Subject: Accepted: Follow-up call {got.case_ref}\r\n"
        "Message-ID: <accept-1@fallriverma.org>\r\nMIME-Version: 1.0\r\n"
        'Content-Type: multipart/alternative; boundary="b"\r\n\r\n'
        "--b\r\nContent-Type: text/plain\r\n\r\nDana has accepted.\r\n"
        '--b\r\nContent-Type: text/calendar; charset="utf-8";\r\n method=REPLY\r\n\r\n'
        "BEGIN:VCALENDAR\r\nMETHOD:REPLY\r\nEND:VCALENDAR\r\n--b--\r\n").encode()
    inbound = to_inbound(parse_message(raw), raw, datetime(2026, 11, 25, 15, tzinfo=UTC))
    assert inbound.is_calendar_reply
    again = await desk.receive(inbound)
    assert again.case_id == got.case_id and not again.created
    async with store.session() as session:
        case = await session.get(Case, got.case_id)
        assert case is not None and case.status == "sent" and case.cycle == 1
    assert await count(store, Outbox, Outbox.kind == "ack") == 1


async def test_a_reply_is_threaded_under_the_question_not_a_calendar_answer(
        store: Store, clock: FakeClock) -> None:
    from mail.parse import parse_message, to_inbound

    desk = await seeded(store, clock)
    got = await desk.receive(email(21))
    await desk.process(got.case_id or 0)
    raw = (
        "From: Dana <dana@fallriverma.org>\r\nTo: 311@network.example\r\n"
        f"Subject: Accepted: Intro call {got.case_ref}\r\n"
        "Message-ID: <accept-2@fallriverma.org>\r\nIn-Reply-To: <q21@city>\r\n"
        "MIME-Version: 1.0\r\nContent-Type: text/calendar; method=REPLY\r\n\r\n"
        "BEGIN:VCALENDAR\r\nMETHOD:REPLY\r\nEND:VCALENDAR\r\n").encode()
    accepted = await desk.receive(to_inbound(parse_message(raw), raw, clock.now()))
    assert accepted.case_id == got.case_id
    await desk.approve(got.case_ref or "", "U1")
    async with store.session() as session:
        reply = (await session.execute(select(Outbox).where(Outbox.kind == "reply"))).scalar_one()
    assert reply.payload["in_reply_to"] == "<q21@city>"


async def test_lone_surrogates_are_stored_as_replacement_characters(store: Store,
                                                                    clock: FakeClock) -> None:
    # A JSON escape ("\ud800") in a Slack payload gives half a surrogate pair, which neither
    # database, the classifier nor a reply can take.
    desk = await seeded(store, clock)
    odd = replace(email(43), subject="Bond \ud800 rating", sender_name="Da\udcffna",
                  text="How do we improve our bond rating? \udfff")
    got = await desk.receive_many([email(44), odd])
    assert all(r.created for r in got)
    async with store.session() as session:
        stored = (await session.execute(select(Message).where(
            Message.external_id == "<q43@city>"))).scalar_one()
    assert stored.subject == "Bond \ufffd rating"
    assert stored.text.endswith("rating? \ufffd")
    assert stored.envelope["sender_name"] == "Da\ufffdna"
