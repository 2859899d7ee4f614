"""Mail intake against a real Dovecot: LMTP in, IMAP IDLE, cases in the database, the
acknowledgement and the reply out through a real SMTP server."""

from __future__ import annotations

import asyncio
import email.utils
import re
from pathlib import Path

import pytest
from sqlalchemy import select

from desk.models import Case, Contact, Draft, MailboxState, Message, Outbox
from desk.store import Store
from mail.compose import message_id_for
from tests.mail.conftest import (
    CITY_SENDER,
    cases,
    count,
    mail_settings,
    make_service,
    messages,
    question,
    wait_until,
)
from tests.servers import DovecotServer, SmtpServer
from tests.support import FakeClock, shared_fixtures

pytestmark = pytest.mark.dovecot


def _crlf(raw: bytes) -> bytes:
    return raw.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def _with_headers(raw: bytes, headers: str) -> bytes:
    return _crlf(headers.encode()) + _crlf(raw)


async def test_question_becomes_case_through_idle_and_the_thread_stays_on_it(
    db_url: str, tmp_path: Path, dovecot: DovecotServer, smtp_server: SmtpServer,
    live_clock: FakeClock, running,
) -> None:
    service = await make_service(db_url, tmp_path, mail_settings(dovecot, smtp_server),
                                 live_clock)
    store = service.store
    await running(service)
    # The intake is idling on an empty mailbox before the mail arrives.
    await wait_until(lambda: count(store, MailboxState), what="intake ready")

    raw = question(1)
    await asyncio.to_thread(dovecot.deliver, raw)
    # The poll interval is an hour: only IDLE can bring it in this soon.
    await wait_until(lambda: count(store, Draft), what="the case and its draft")

    [case] = await cases(store)
    assert case.channel == "email" and case.thread_key == "<q1@springfield.gov>"
    assert case.city is not None and case.city.name == "Springfield"
    assert "housing bond" in case.question
    assert case.status in ("drafted", "needs_triage")  # processed: a draft is there
    [stored] = await messages(store)
    assert stored.raw.endswith(raw)  # exactly what arrived, after the MTA's trace headers
    assert stored.case_id == case.id and stored.external_id == "<q1@springfield.gov>"
    await wait_until(lambda: _seen(dovecot, 1), what="the message flagged \\Seen")

    # The acknowledgement goes out threaded under the question.
    assert (await service.dispatcher.run_once()).sent == 1
    [ack] = smtp_server.received
    msg = ack.message
    assert ack.rcpt_tos == [CITY_SENDER]
    assert msg["In-Reply-To"] == "<q1@springfield.gov>"
    assert msg["References"] == "<q1@springfield.gov>"
    assert msg["Subject"] == f"Re: Question 1 about our housing bond [{case.ref}]"
    assert msg["Auto-Submitted"] == "auto-replied"
    assert msg["X-Auto-Response-Suppress"] == "All"
    assert email.utils.parseaddr(msg["From"]) == ("311 for Cities", "desk@311.test")
    body = msg.get_body(("plain",))
    assert body is not None
    assert case.ref in body.get_content()
    assert service.calendar.describe(case.due_at) in body.get_content()
    ack_id = msg["Message-ID"]
    assert re.fullmatch(r"<[0-9a-f]{32}\.city311@311\.test>", ack_id)
    async with store.session() as session:
        out = (await session.execute(select(Message).where(Message.direction == "out"))
               ).scalar_one()
    assert out.external_id == ack_id and out.case_id == case.id

    # The city answers the acknowledgement: the same case, no second one, no second ack.
    follow_up = question(2, subject=f"Re: Question 1 about our housing bond [{case.ref}]",
                         body="One more detail: the bond is $25 million.\n",
                         extra=f"In-Reply-To: {ack_id}\nReferences: <q1@springfield.gov> "
                               f"{ack_id}\n")
    await asyncio.to_thread(dovecot.deliver, follow_up)
    await wait_until(lambda: _count_in(store, 2), what="the follow-up stored")
    assert await count(store, Case) == 1
    follow = (await messages(store))[-1]
    assert follow.case_id == case.id and "$25 million" in follow.reply_text

    # Approved, the reply goes out threaded under the city's latest message.
    await service.desk.approve(case.ref, "U0REVIEWER")
    result = await service.dispatcher.run_once()
    assert result.sent == 1
    reply = smtp_server.received[-1].message
    assert reply["In-Reply-To"] == "<q2@springfield.gov>"
    assert reply["References"].split() == ["<q1@springfield.gov>", ack_id,
                                           "<q2@springfield.gov>"]
    assert reply["Subject"] == f"Re: Question 1 about our housing bond [{case.ref}]"
    assert reply["Auto-Submitted"] is None
    assert reply.get_body(("html",)) is not None and reply.get_body(("plain",)) is not None
    async with store.session() as session:
        sent = await session.get(Case, case.id)
        assert sent is not None and sent.status == "sent"
        row = (await session.execute(select(Outbox).where(Outbox.kind == "reply"))
               ).scalar_one()
    assert row.external_id == reply["Message-ID"]
    assert row.external_id == message_id_for(row.idempotency_key, "311.test")

    # A reply to our reply threads onto the case and reopens it.
    again = question(3, subject=f"Re: Question 1 about our housing bond [{case.ref}]",
                     body="Thank you! What about the timeline?\n",
                     extra=f"In-Reply-To: {reply['Message-ID']}\n")
    await asyncio.to_thread(dovecot.deliver, again)
    await wait_until(lambda: _status(store, case.id, "received", "drafted", "needs_triage"),
                     what="the case reopened")
    assert await count(store, Case) == 1
    async with store.session() as session:
        reopened = await session.get(Case, case.id)
        assert reopened is not None and reopened.cycle == 2


async def _status(store: Store, case_id: int, *wanted: str) -> bool:
    async with store.session() as session:
        case = await session.get(Case, case_id, populate_existing=True)
        return case is not None and case.status in wanted and case.cycle > 1


async def _seen(dovecot: DovecotServer, uid: int) -> bool:
    flags = await asyncio.to_thread(dovecot.flags)
    return "\\Seen" in flags.get(uid, set())


async def test_auto_reply_and_bounce_are_filed_but_never_answered(
    db_url: str, tmp_path: Path, dovecot: DovecotServer, smtp_server: SmtpServer,
    live_clock: FakeClock, running,
) -> None:
    raw_dir = shared_fixtures() / "emails" / "raw"
    service = await make_service(db_url, tmp_path, mail_settings(dovecot, smtp_server),
                                 live_clock)
    store = service.store
    await running(service)
    await asyncio.to_thread(dovecot.deliver, question(1))
    await wait_until(lambda: count(store, Case), what="the case")
    await service.dispatcher.run_once()
    [ack] = smtp_server.received
    ack_id = ack.message["Message-ID"]
    [case] = await cases(store)

    # An out-of-office answer to our acknowledgement.
    auto = _with_headers((raw_dir / "autoreply_council_x_autoreply.eml").read_bytes(),
                         f"In-Reply-To: {ack_id}\nReferences: {ack_id}\n")
    # A bounce of our acknowledgement, reporting the city's address as failing.
    bounce = (raw_dir / "bounce_mailbox_full.eml").read_bytes()
    bounce = bounce.replace(b"<4E326A95.3010907@example.com>", ack_id.encode())
    bounce = bounce.replace(b"user@aol.com", CITY_SENDER.encode())
    await asyncio.to_thread(dovecot.deliver_many, [auto, bounce])
    await wait_until(lambda: _count_in(store, 3), what="both stored")

    stored = await messages(store)
    by_kind = {m.external_id: m for m in stored if m.direction == "in"}
    assert by_kind["<b5d66930e76243eb8bddd885ad3fafdd@SDCEX2013.sdc.selwyn.local>"].case_id == \
        case.id
    assert by_kind["<20110729080856.AAB7C3800008A@mtain-db01.r1000.mx.aol.com>"].case_id == \
        case.id
    assert await count(store, Case) == 1
    # Nothing new for the city: no second ack, no reply; staff hear about the bounce.
    assert await count(store, Outbox, Outbox.channel == "email") == 1
    await service.dispatcher.run_once()
    assert len(smtp_server.received) == 1
    async with store.session() as session:
        contact = (await session.execute(select(Contact).where(
            Contact.email == CITY_SENDER))).scalar_one()
        assert contact.bouncing
        notices = (await session.execute(select(Outbox).where(Outbox.kind == "notice"))
                   ).scalars().all()
    assert any("bounced" in n.payload.get("text", "") for n in notices)


async def _count_in(store: Store, wanted: int) -> bool:
    # Stored and routed (routing commits separately, just after the raw message).
    return await count(store, Message, Message.direction == "in",
                       Message.processed_at.is_not(None)) >= wanted
