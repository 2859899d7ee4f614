"""Loop safety (RFC 3834): what must never be answered automatically."""

from __future__ import annotations

import pytest

from mail.parse import parse_message

BODY = b"\n\nSome text.\n"
PERSON = b"From: Jane Smith <jsmith@springfield.gov>\nTo: help@311cities.org\n"


def _parse(headers: bytes, subject: bytes = b"Vacant property registry") -> tuple[bool, bool]:
    parsed = parse_message(PERSON + b"Subject: " + subject + b"\n" + headers + BODY)
    return parsed.is_auto_reply, parsed.is_bounce


@pytest.mark.parametrize("header", [
    b"Auto-Submitted: auto-replied",
    b"Auto-Submitted: auto-generated",
    b"Auto-Submitted: auto-notified; owner-email=x@y.org",
    b"X-Autoreply: yes",
    b"X-Autorespond: Vacation",
    b"Precedence: bulk",
    b"Precedence: list",
    b"Precedence: JUNK",
    b"List-Id: Council members <council.springfield.gov>",
    b"Return-Path: <>",
])
def test_automatic_headers(header: bytes) -> None:
    assert _parse(header + b"\n") == (True, False)


@pytest.mark.parametrize("header", [
    b"Auto-Submitted: no",
    b"X-Autoreply: no",
    b"Precedence: first-class",
    b"Return-Path: <jsmith@springfield.gov>",
    b"X-Auto-Response-Suppress: All",  # set by Outlook on mail people write, too
])
def test_person_headers(header: bytes) -> None:
    assert _parse(header + b"\n") == (False, False)


@pytest.mark.parametrize("subject", [
    "Automatic reply: [311-0042] Levy",
    "Out of Office: Levy",
    "Out of office",
    "Auto-reply: Levy",
    "Abwesenheitsnotiz: Levy",
    "Automatische Antwort: Levy",
    "Réponse automatique : Levy",
    "Respuesta automática: Levy",
    "Resposta automática: Levy",
    "Risposta automatica: Levy",
    "Automatisch antwoord: Levy",
    "Odpowiedź automatyczna: Levy",
    "Автоматический ответ: Levy",
    "Automatiskt svar: Levy",
    "Autosvar: Levy",
    "Automatisk svar: Levy",
    "Automaattinen vastaus: Levy",
    "Selwyn Autoreply",
])
def test_out_of_office_subjects(subject: str) -> None:
    from email.header import Header

    encoded = Header(subject, "utf-8").encode().encode()
    assert _parse(b"", encoded) == (True, False)


@pytest.mark.parametrize("subject", [
    "Absent landlords and blight",
    "Out of office hours noise complaints",
    "Re: Question about auto-reply settings for our inbox",
    "Vacation rental ordinance",
])
def test_questions_that_only_look_automatic(subject: str) -> None:
    assert _parse(b"", subject.encode()) == (False, False)


def test_read_receipt_is_automatic_not_bounce() -> None:
    raw = (
        PERSON + b"Subject: Read: Levy\nMIME-Version: 1.0\n"
        b"Content-Type: multipart/report; report-type=disposition-notification; boundary=R\n\n"
        b"--R\nContent-Type: text/plain\n\nYour message was read.\n"
        b"--R\nContent-Type: message/disposition-notification\n\n"
        b"Final-Recipient: rfc822;jsmith@springfield.gov\n"
        b"Original-Message-ID: <reply-1@311cities.org>\n"
        b"Disposition: manual-action/MDN-sent-manually; displayed\n"
        b"--R--\n"
    )
    parsed = parse_message(raw)
    assert (parsed.is_auto_reply, parsed.is_bounce) == (True, False)
    assert parsed.attachments == []


def test_dsn_with_message_rfc822_original() -> None:
    raw = (
        b"From: Mail Delivery Subsystem <mailer-daemon@googlemail.com>\nTo: help@311cities.org\n"
        b"Subject: Delivery Status Notification (Failure)\nMIME-Version: 1.0\n"
        b"Content-Type: multipart/report; report-type=delivery-status; boundary=D\n\n"
        b"--D\nContent-Type: text/plain\n\nAddress not found.\n"
        b"--D\nContent-Type: message/delivery-status\n\nReporting-MTA: dns; googlemail.com\n\n"
        b"Final-Recipient: rfc822; gone@springfield.gov\nAction: failed\nStatus: 5.1.1\n"
        b"\nFinal-Recipient: rfc822; ok@springfield.gov\nAction: delivered\nStatus: 2.0.0\n"
        b"--D\nContent-Type: message/rfc822\n\nFrom: help@311cities.org\n"
        b"Message-ID: <reply-7@311cities.org>\nSubject: Re: Levy\n\nOur answer.\n"
        b"--D--\n"
    )
    parsed = parse_message(raw)
    assert parsed.is_bounce and parsed.is_auto_reply
    assert parsed.bounced_message_ids == ["<reply-7@311cities.org>"]
    assert parsed.bounced_recipient == "gone@springfield.gov"
    assert parsed.delivery_actions == ["failed", "delivered"]
    assert parsed.text == "Address not found."


def test_postmaster_without_bounce_subject_is_a_person() -> None:
    raw = b"From: postmaster@springfield.gov\nSubject: Our mail server\n\nQuestion."
    assert not parse_message(raw).is_bounce
    assert not parse_message(raw).is_auto_reply
