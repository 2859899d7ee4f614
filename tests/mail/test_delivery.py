"""Email delivery through the outbox to a real SMTP server (aiosmtpd): rendering, threading,
outages, refusals, and exactly-once sending."""

from __future__ import annotations

import email
import email.policy
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path

import pytest
from sqlalchemy import select

from desk.errors import PermanentDeliveryError, TransientDeliveryError
from desk.models import Case, Message, Outbox
from desk.ports import OutboundItem
from mail.compose import compose, message_id_for, references_for, reply_subject
from mail.delivery import EmailChannel
from mail.parse import parse_message, to_inbound
from tests.mail.conftest import (
    CITY_SENDER,
    approved_case,
    mail_settings,
    make_service,
    question,
    reply_row,
)
from tests.servers import SmtpServer
from tests.support import FakeClock

ICS = ("BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//311//EN\r\nMETHOD:REQUEST\r\n"
       "BEGIN:VEVENT\r\nUID:fu-1@311.test\r\nDTSTART:20261201T150000Z\r\n"
       "DTEND:20261201T153000Z\r\nSUMMARY:Follow-up call\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n")


def _item(kind: str, payload: dict[str, object], *, key: str = "reply:1:1",
          ref: str | None = "C-2026-0001") -> OutboundItem:
    return OutboundItem(id=1, kind=kind, channel="email", case_id=1, case_ref=ref,
                        idempotency_key=key, payload=payload)


def _compose(item: OutboundItem) -> EmailMessage:
    msg = compose(item, address="desk@311.test", from_name="311 for Cities")
    # Round-trip through bytes: what a receiving client would parse.
    parsed = email.message_from_bytes(msg.as_bytes(), policy=email.policy.default)
    assert isinstance(parsed, EmailMessage)
    return parsed


# ---- rendering ------------------------------------------------------------------------------


def test_reply_subject_has_one_re_and_the_reference_once() -> None:
    assert reply_subject("Housing bond", "C-2026-0001") == "Re: Housing bond [C-2026-0001]"
    assert reply_subject("RE: Re: AW: Housing bond", "C-2026-0001") == \
        "Re: Housing bond [C-2026-0001]"
    assert reply_subject("Re: Housing bond [C-2026-0001]", "C-2026-0001") == \
        "Re: Housing bond [C-2026-0001]"
    assert reply_subject("", "C-2026-0001") == "Re: Your question [C-2026-0001]"


def test_references_follow_rfc_5322() -> None:
    # The parent's own References, then the parent.
    assert references_for("<p@x>", ["<b@x>", "<a@x>"], ["<a@x>", "<b@x>"]) == [
        "<a@x>", "<b@x>", "<p@x>"]
    assert references_for("<p@x>", [], []) == ["<p@x>"]
    # Payloads queued before the parent's header was kept: [parent In-Reply-To, *References].
    assert references_for("<p@x>", []) == ["<p@x>"]
    assert references_for("<p@x>", ["<b@x>", "<a@x>"]) == ["<a@x>", "<b@x>", "<p@x>"]
    assert references_for(None, []) == []
    # A parent that names only its own parent (In-Reply-To, no References) keeps it.
    raw = (b"Message-ID: <p@x>\r\nIn-Reply-To: <g@x>\r\nSubject: Re: bond\r\n\r\nMore.\r\n")
    inbound = to_inbound(parse_message(raw), raw, datetime(2026, 11, 24, tzinfo=UTC))
    assert references_for("<p@x>", inbound.thread_refs, inbound.reply_references) == [
        "<g@x>", "<p@x>"]


async def test_a_reply_keeps_the_citys_references_in_order(
    db_url: str, tmp_path: Path, smtp_server: SmtpServer, live_clock: FakeClock,
) -> None:
    # Some mail clients send References without In-Reply-To.
    service = await make_service(db_url, tmp_path, mail_settings(None, smtp_server),
                                 live_clock)
    try:
        raw = question(7, extra="References: <a@springfield.gov> <b@springfield.gov>\n")
        await approved_case(service, live_clock, raw, keep_ack=True)
        await service.dispatcher.run_once(limit=5)
        # The acknowledgement and the reply both answer the city's message.
        answers = [r.message for r in smtp_server.received
                   if r.message["In-Reply-To"] == "<q7@springfield.gov>"]
        assert len(answers) == 2
        assert {a["References"] for a in answers} == {
            "<a@springfield.gov> <b@springfield.gov> <q7@springfield.gov>"}
    finally:
        await service.close()


def test_reply_renders_text_and_escaped_html_with_threading_headers() -> None:
    msg = _compose(_item("reply", {
        "to": "Pat <clerk@springfield.gov>", "subject": "Housing <bond>",
        "in_reply_to": "<q2@springfield.gov>",
        "references": ["<ack@311.test>", "<q1@springfield.gov>"],
        "text": "Dear Pat,\n\nSee <script>alert(1)</script> & https://example.org/guide.",
        "html": "", "package_url": "https://311.test/p/abc",
    }))
    assert msg["Subject"] == "Re: Housing <bond> [C-2026-0001]"
    assert msg["In-Reply-To"] == "<q2@springfield.gov>"
    assert msg["References"] == "<q1@springfield.gov> <ack@311.test> <q2@springfield.gov>"
    assert msg["Message-ID"] == message_id_for("reply:1:1", "311.test")
    assert msg["To"] == "clerk@springfield.gov"
    assert msg["Auto-Submitted"] is None
    plain = msg.get_body(("plain",))
    html = msg.get_body(("html",))
    assert plain is not None and html is not None
    assert "https://311.test/p/abc" in plain.get_content()
    markup = html.get_content()
    assert "<script>" not in markup and "&lt;script&gt;" in markup
    assert '<a href="https://example.org/guide">' in markup


def test_ack_is_marked_automatic() -> None:
    msg = _compose(_item("ack", {
        "to": CITY_SENDER, "subject": "Bond question", "in_reply_to": "<q1@springfield.gov>",
        "references": [], "due_text": "Friday, November 27, 2026 at 10:00 AM EST",
        "due_at": "2026-11-27T15:00:00+00:00"}, key="ack:1:1"))
    assert msg["Auto-Submitted"] == "auto-replied"
    assert msg["X-Auto-Response-Suppress"] == "All"
    assert msg["Subject"] == "Re: Bond question [C-2026-0001]"
    body = msg.get_body(("plain",))
    assert body is not None
    assert "C-2026-0001" in body.get_content()
    assert "Friday, November 27, 2026 at 10:00 AM EST" in body.get_content()


def test_invite_carries_a_calendar_part_and_an_ics_attachment() -> None:
    msg = _compose(_item("invite", {
        "to": [CITY_SENDER, "coach@311.test"], "subject": "Follow-up call", "text": "See you.",
        "ics": ICS, "method": "REQUEST"}, key="invite:1:0"))
    assert msg["To"] == f"{CITY_SENDER}, coach@311.test"
    parts = {part.get_content_type(): part for part in msg.walk()}
    calendar = parts["text/calendar"]
    assert calendar.get_param("method") == "REQUEST"
    assert "BEGIN:VEVENT" in calendar.get_content()
    attachment = parts["application/ics"]
    assert attachment.get_filename() == "invite.ics"
    assert b"UID:fu-1@311.test" in attachment.get_content()


def test_reminder_and_refusals() -> None:
    msg = _compose(_item("email_reminder", {"to": CITY_SENDER, "subject": "Call tomorrow",
                                            "text": "Your call is tomorrow at 10."}))
    assert msg["Auto-Submitted"] == "auto-generated"
    with pytest.raises(PermanentDeliveryError):
        compose(_item("review_card", {"to": CITY_SENDER}), address="desk@311.test",
                from_name="")
    with pytest.raises(PermanentDeliveryError):
        compose(_item("reply", {"to": "not an address", "text": "x"}), address="desk@311.test",
                from_name="")


# ---- sending --------------------------------------------------------------------------------


async def test_message_id_is_the_same_on_every_attempt(smtp_server: SmtpServer) -> None:
    channel = EmailChannel(mail_settings(None, smtp_server))
    item = _item("reply", {"to": CITY_SENDER, "subject": "Bond", "text": "Answer.",
                           "in_reply_to": "<q1@springfield.gov>", "references": []})
    first = await channel.deliver(item)
    # A crash after sending and before the outbox row was marked: the retry sends the same id.
    second = await channel.deliver(item)
    assert first.external_id == second.external_id
    assert [r.message["Message-ID"] for r in smtp_server.received] == [first.external_id] * 2
    assert smtp_server.received[0].mail_from == "desk@311.test"


async def test_smtp_errors_are_sorted_into_transient_and_permanent(
    smtp_server: SmtpServer,
) -> None:
    channel = EmailChannel(mail_settings(None, smtp_server), timeout=5)
    item = _item("reply", {"to": CITY_SENDER, "subject": "Bond", "text": "Answer."})
    smtp_server.refuse("451 4.3.0 Try again later")
    with pytest.raises(TransientDeliveryError) as transient:
        await channel.deliver(item)
    assert transient.value.code == 451
    smtp_server.refuse("550 5.1.1 No such user")
    with pytest.raises(PermanentDeliveryError) as permanent:
        await channel.deliver(item)
    assert permanent.value.code == 550
    smtp_server.stop()
    with pytest.raises(TransientDeliveryError):
        await channel.deliver(item)
    assert smtp_server.received == []


# ---- through the outbox, on both databases --------------------------------------------------


async def test_smtp_down_then_up_sends_exactly_one_reply(
    db_url: str, tmp_path: Path, smtp_server: SmtpServer, live_clock: FakeClock,
) -> None:
    service = await make_service(db_url, tmp_path, mail_settings(None, smtp_server),
                                 live_clock)
    try:
        case = await approved_case(service, live_clock)
        smtp_server.stop()
        result = await service.dispatcher.run_once()
        assert (result.sent, result.retried) == (0, 1)
        row = await reply_row(service)
        assert row.status == "pending" and row.attempts == 1 and row.last_error
        smtp_server.refuse("421 4.3.2 Shutting down")
        smtp_server.start()
        live_clock.advance(minutes=1)
        assert (await service.dispatcher.run_once()).retried == 1
        live_clock.advance(minutes=1)
        assert (await service.dispatcher.run_once()).sent == 1
        live_clock.advance(hours=1)
        assert (await service.dispatcher.run_once()).sent == 0

        [delivered] = smtp_server.received
        msg = delivered.message
        assert delivered.rcpt_tos == [CITY_SENDER]
        assert msg["In-Reply-To"] == "<q1@springfield.gov>"
        assert msg["References"] == "<q1@springfield.gov>"
        assert msg["Subject"] == f"Re: Question 1 about our housing bond [{case.ref}]"
        row = await reply_row(service)
        assert row.status == "sent" and row.attempts == 3
        assert row.external_id == msg["Message-ID"]
        async with service.store.session() as session:
            sent = await session.get(Case, case.id)
            assert sent is not None and sent.status == "sent"
            # Stored under its Message-ID, so the city's answer to it threads onto the case.
            out = (await session.execute(select(Message).where(
                Message.external_id == msg["Message-ID"]))).scalar_one()
            assert out.case_id == case.id and out.direction == "out"
    finally:
        await service.close()


async def test_permanent_refusal_fails_the_row_and_returns_the_case_to_drafted(
    db_url: str, tmp_path: Path, smtp_server: SmtpServer, live_clock: FakeClock,
) -> None:
    service = await make_service(db_url, tmp_path, mail_settings(None, smtp_server),
                                 live_clock)
    try:
        case = await approved_case(service, live_clock)
        smtp_server.refuse("550 5.1.1 Mailbox unavailable")
        assert (await service.dispatcher.run_once()).failed == 1
        row = await reply_row(service)
        assert row.status == "failed" and "550" in (row.last_error or "")
        live_clock.advance(hours=1)
        await service.dispatcher.run_once()
        assert smtp_server.received == []
        async with service.store.session() as session:
            back = await session.get(Case, case.id)
            assert back is not None and back.status == "drafted"
            notices = (await session.execute(select(Outbox).where(Outbox.kind == "notice"))
                       ).scalars().all()
        assert any("550" in n.payload.get("text", "") for n in notices)
    finally:
        await service.close()


def test_due_text_is_not_required_for_an_ack() -> None:
    msg = _compose(_item("ack", {"to": CITY_SENDER, "subject": None,
                                 "in_reply_to": "<q@x>", "references": []}, key="ack:2:1"))
    assert msg["Subject"] == "Re: Your question [C-2026-0001]"
    body = msg.get_body(("plain",))
    assert body is not None and "within three business days" in body.get_content()
