"""MIME parsing: the shared raw messages, and messages built here for each edge."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta, timezone
from email.message import EmailMessage

import pytest

from desk.envelope import InboundMessage
from mail.parse import ParsedEmail, parse_message, to_inbound
from tests.mail.mail_test_support import DATA, shared_emails_or_skip


def _raw(name: str) -> bytes:
    return (shared_emails_or_skip() / "raw" / name).read_bytes()


def _message(body: str = "Hello from Springfield.", **headers: str) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = headers.pop("From", "Jane Smith <jsmith@springfield.gov>")
    msg["To"] = headers.pop("To", "help@311cities.org")
    msg["Subject"] = headers.pop("Subject", "Vacant property registry")
    msg["Message-ID"] = headers.pop("Message_ID", "<q1@springfield.gov>")
    msg["Date"] = headers.pop("Date", "Mon, 15 Nov 2021 19:42:00 -0500")
    for name, value in headers.items():
        msg[name.replace("_", "-")] = value
    msg.set_content(body)
    return msg


# --- the shared raw messages -----------------------------------------------------------------


def test_bounce_mailbox_full() -> None:
    parsed = parse_message(_raw("bounce_mailbox_full.eml"))
    assert parsed.is_bounce and parsed.is_auto_reply
    assert parsed.bounced_message_ids == ["<4E326A95.3010907@example.com>"]
    assert parsed.bounced_recipient == "user@aol.com"
    assert parsed.delivery_actions == ["failed"]
    assert "552" in parsed.text and "MAILBOX FULL" in parsed.text
    assert parsed.attachments == []  # the report parts are not attachments


def test_bounce_delayed_is_a_warning_not_a_bounce() -> None:
    parsed = parse_message(_raw("bounce_delayed_no_mx.eml"))
    assert parsed.is_auto_reply  # never answered
    assert not parsed.is_bounce  # still being retried
    assert parsed.delivery_actions == ["delayed"]
    assert parsed.bounced_message_ids == ["<19E44CA63F984902B7D654F8FF40F89D@bo>"]
    assert "null Return-Path" in parsed.auto_reply_reasons


def test_read_receipt() -> None:
    parsed = parse_message(_raw("mdn_read_receipt.eml"))
    assert parsed.is_auto_reply and not parsed.is_bounce
    assert "read receipt" in parsed.auto_reply_reasons
    assert "has been displayed" in parsed.text


def test_council_autoreply_headers_only() -> None:
    parsed = parse_message(_raw("autoreply_council_x_autoreply.eml"))
    assert parsed.is_auto_reply and not parsed.is_bounce
    assert "X-Autoreply" in parsed.auto_reply_reasons
    assert "Auto-Submitted: auto-generated" in parsed.auto_reply_reasons
    assert parsed.text == "" and parsed.from_ == "buildingadmin_designdocument@selwyn.govt.nz"


def test_quoted_printable_long_links_and_html_mislabelled_as_plain() -> None:
    parsed = parse_message(_raw("quoted_printable_long_links.eml"))
    assert "Please note that this email contains extremely long links:" in parsed.text
    url = ("http://translate.google.com/translate?sl=de&tl=en&u=http%3A%2F%2Fwww.horizont.at"
           "%2Fhome%2Fdetail%2Fgoogle-ist-geldgeber-von-adblock-plus.html&act=url")
    assert url in parsed.text.splitlines()
    assert "<div" not in parsed.text
    assert parsed.html is not None and "<div" in parsed.html


def test_encoded_word_subject_split_over_two_lines() -> None:
    parsed = parse_message(_raw("encoded_word_subject_bilingual.eml"))
    assert parsed.subject == "Simple text. How are you? Как ты поживаешь?"
    assert "А эта линия по-русски." in parsed.text
    assert parsed.date == datetime(2010, 2, 7, 14, 2, 38, tzinfo=timezone(timedelta(hours=-8)))


def test_attachment_listed_not_inlined() -> None:
    parsed = parse_message(_raw("attachment_pdf.eml"))
    assert parsed.text == "Test - body content"
    [pdf] = parsed.attachments
    assert (pdf.filename, pdf.content_type, pdf.size) == ("test.pdf", "application/pdf", 6940)
    assert pdf.data is not None and pdf.data.startswith(b"%PDF")
    assert parsed.as_json()["attachments"] == [
        {"filename": "test.pdf", "content_type": "application/pdf", "size": 6940,
         "refused": False, "refused_reason": None}
    ]


def test_html_only_body_is_converted() -> None:
    parsed = parse_message(_raw("html_only.eml"))
    assert parsed.html is not None
    assert "THis is very long url" in parsed.text
    assert "Very long link" in parsed.text
    assert "longurlmaker.com/view/?id=UAOJNVKBMQUGPYZ" in parsed.text
    assert "<a " not in parsed.text and "<body" not in parsed.text
    assert not parsed.is_auto_reply  # a postmaster@ address alone is a person


def test_windows_1251_base64() -> None:
    parsed = parse_message(_raw("windows1251_base64.eml"))
    assert parsed.subject == "Алфавит"  # the newline inside the encoded word is collapsed
    assert parsed.text == "Вопрос"


def test_multipart_alternative_default_types() -> None:
    parsed = parse_message(_raw("multipart_alternative_default_types.eml"))
    assert parsed.text == "Die Hasen"
    assert parsed.html == "<html><body><b>Die Hasen</b></body></html>\n"


@pytest.mark.parametrize("name", [
    "attachment_pdf.eml", "autoreply_council_x_autoreply.eml", "bounce_delayed_no_mx.eml",
    "bounce_mailbox_full.eml", "encoded_word_subject_bilingual.eml", "html_only.eml",
    "mdn_read_receipt.eml", "multipart_alternative_default_types.eml",
    "quoted_printable_long_links.eml", "windows1251_base64.eml",
])
def test_every_raw_message_converts_to_inbound(name: str) -> None:
    raw = _raw(name)
    parsed = parse_message(raw)
    inbound = to_inbound(parsed, raw, datetime(2024, 3, 5, 12, tzinfo=UTC))
    assert isinstance(inbound, InboundMessage)
    assert inbound.channel == "email" and inbound.raw == raw
    assert inbound.external_id == (parsed.message_id or "sha256:" + hashlib.sha256(raw).hexdigest())
    assert inbound.is_auto_reply == parsed.is_auto_reply
    assert inbound.is_bounce == parsed.is_bounce


def test_all_raw_fixtures_are_covered() -> None:
    names = {p.name for p in (shared_emails_or_skip() / "raw").glob("*.eml")}
    assert len(names) == 10


# --- headers ---------------------------------------------------------------------------------


def test_json_shape() -> None:
    parsed = parse_message(_message().as_bytes())
    out = parsed.as_json()
    for key in ("message_id", "in_reply_to", "references", "from", "to", "subject", "date",
                "text", "reply_text", "is_auto_reply", "is_bounce", "attachments"):
        assert key in out
    assert out["from"] == "jsmith@springfield.gov"
    assert out["to"] == ["help@311cities.org"]
    assert out["date"] == "2021-11-15T19:42:00-05:00"
    assert out["message_id"] == "<q1@springfield.gov>"


def test_encoded_display_name_and_threading_headers() -> None:
    raw = (
        b"From: =?utf-8?q?J=C3=BCrgen_M=C3=BCller?= <jm@stadt.de>\r\n"
        b"To: help@311cities.org, \"Doe, Jane\" <jd@example.org>\r\n"
        b"Subject: =?iso-8859-1?q?F=F6rderung?= =?utf-8?b?w7xiZXI=?= Programme\r\n"
        b"Message-ID: <m2@stadt.de>\r\n"
        b"In-Reply-To: <ack-1@311cities.org> (our acknowledgement)\r\n"
        b"References: <q1@stadt.de>\r\n <ack-1@311cities.org>\r\n"
        b"\r\nDanke.\r\n"
    )
    parsed = parse_message(raw)
    assert parsed.from_name == "Jürgen Müller" and parsed.from_ == "jm@stadt.de"
    assert parsed.to == ["help@311cities.org", "jd@example.org"]
    assert parsed.subject == "Förderungüber Programme"
    assert parsed.in_reply_to == "<ack-1@311cities.org>"
    assert parsed.references == ["<q1@stadt.de>", "<ack-1@311cities.org>"]
    inbound = to_inbound(parsed, raw, datetime(2024, 3, 5, 12, tzinfo=UTC))
    assert inbound.thread_refs == ["<ack-1@311cities.org>", "<q1@stadt.de>"]
    assert inbound.sender_name == "Jürgen Müller"


def test_raw_eight_bit_headers_are_decoded() -> None:
    raw = "From: José <jose@ciudad.es>\nSubject: Presupuesto año 2024\n\nHola".encode()
    parsed = parse_message(raw)
    assert parsed.subject == "Presupuesto año 2024"
    assert parsed.from_name == "José"


def test_missing_message_id_uses_content_hash() -> None:
    raw = b"From: a@b.org\nSubject: hi\n\nbody\n"
    parsed = parse_message(raw)
    assert parsed.message_id is None
    inbound = to_inbound(parsed, raw, datetime(2024, 3, 5, 12))
    assert inbound.external_id == "sha256:" + hashlib.sha256(raw).hexdigest()
    assert inbound.received_at.tzinfo is not None


def test_unknown_zone_date_is_utc_and_bad_date_is_a_problem() -> None:
    assert parse_message(b"Date: Mon, 15 Nov 2021 19:42:00 -0000\n\nx").date == datetime(
        2021, 11, 15, 19, 42, tzinfo=UTC)
    parsed = parse_message(b"Date: the day after tomorrow\n\nx")
    assert parsed.date is None
    assert "Date header could not be parsed" in parsed.problems


def test_malformed_encoded_word_keeps_the_text() -> None:
    parsed = parse_message(b"Subject: =?utf-8?B?###?= budget\n\nx")
    assert "budget" in parsed.subject


# --- bodies and attachments ------------------------------------------------------------------


def test_oversized_attachment_is_refused_but_listed() -> None:
    msg = _message("Please see the attached plan.")
    msg.add_attachment(b"x" * 5000, maintype="application", subtype="pdf", filename="plan.pdf")
    parsed = parse_message(msg.as_bytes(), max_attachment_bytes=1000)
    [plan] = parsed.attachments
    assert plan.data is None and plan.size == 5000 and plan.refused_reason
    assert parsed.as_json()["attachments"][0]["refused"] is True
    assert parsed.text == "Please see the attached plan."
    small = parse_message(msg.as_bytes(), max_attachment_bytes=10_000).attachments[0]
    assert small.data == b"x" * 5000


def test_rfc2231_filename_and_path_is_dropped() -> None:
    msg = _message("see attached")
    msg.add_attachment(b"a,b\n", maintype="text", subtype="csv",
                       filename=("utf-8", "", "../../Übersicht.csv"))
    [csv] = parse_message(msg.as_bytes()).attachments
    assert csv.filename == "Übersicht.csv"
    assert csv.content_type == "text/csv"


def test_text_attachment_is_not_body() -> None:
    msg = _message("The body.")
    msg.add_attachment("notes in a file", filename="notes.txt")
    parsed = parse_message(msg.as_bytes())
    assert parsed.text == "The body."
    assert [a.filename for a in parsed.attachments] == ["notes.txt"]


def test_forwarded_message_attachment() -> None:
    inner = _message("Which cities allow ADUs?", Subject="ADUs", Message_ID="<inner@x.org>")
    outer = _message("Forwarding the question below.")
    outer.add_attachment(inner)
    parsed = parse_message(outer.as_bytes())
    assert parsed.text == "Forwarding the question below."
    [eml] = parsed.attachments
    assert eml.filename == "ADUs.eml" and eml.content_type == "message/rfc822"
    assert eml.data is not None and b"Which cities allow ADUs?" in eml.data
    assert not parsed.is_bounce


def test_broken_charset_falls_back() -> None:
    raw = ("Content-Type: text/plain; charset=x-no-such-charset\n\nGrüße aus Köln").encode()
    parsed = parse_message(raw)
    assert parsed.text == "Grüße aus Köln"
    assert any("x-no-such-charset" in p for p in parsed.problems)
    latin = "Content-Type: text/plain; charset=utf-8\n\nCafé".encode("latin-1")
    parsed = parse_message(latin)
    assert parsed.text == "Café"
    assert parsed.problems


def test_bytes_codec_as_charset_is_refused_safely() -> None:
    parsed = parse_message(b"Content-Type: text/plain; charset=base64\n\naGVsbG8=")
    assert parsed.text == "aGVsbG8="


def test_html_reply_gets_its_quote_removed() -> None:
    msg = _message()
    msg.set_content(
        '<div dir="ltr">We want to apply for HOME funds.</div><br>'
        '<div class="gmail_quote"><div class="gmail_attr">On Mon, Nov 15, 2021 at 7:42 PM '
        '311 for Cities &lt;<a href="mailto:help@311cities.org">help@311cities.org</a>&gt; '
        'wrote:<br></div><blockquote class="gmail_quote">Your case is 311-0042.</blockquote></div>',
        subtype="html",
    )
    parsed = parse_message(msg.as_bytes())
    assert "Your case is 311-0042." in parsed.text
    assert parsed.reply_text == "We want to apply for HOME funds."


def test_format_flowed_is_unwrapped() -> None:
    raw = (b"Content-Type: text/plain; charset=utf-8; format=flowed; delsp=no\n\n"
           b"This line was wrapped \nby the client.\n> quoted soft \n> line\n-- \nsig\n")
    parsed = parse_message(raw)
    assert parsed.text.splitlines()[:2] == ["This line was wrapped by the client.",
                                           "> quoted soft line"]
    assert parsed.reply_text == "This line was wrapped by the client."


def test_multiple_inline_text_parts_are_joined() -> None:
    msg = _message("First part.")
    msg.make_mixed()
    second = EmailMessage()
    second.set_content("Second part.")
    second["Content-Disposition"] = "inline"
    msg.attach(second)
    assert parse_message(msg.as_bytes()).text == "First part.\n\nSecond part."


def test_parsed_email_is_frozen() -> None:
    parsed = parse_message(_message().as_bytes())
    assert isinstance(parsed, ParsedEmail)
    with pytest.raises(AttributeError):
        parsed.subject = "changed"  # type: ignore[misc]


def test_garbage_is_recorded_not_raised() -> None:
    parsed = parse_message(b"\x00\xff\xfe not a message at all \x80\x81")
    assert isinstance(parsed.text, str)
    assert parsed.message_id is None


def test_truncated_multipart_still_yields_text() -> None:
    raw = (b"Content-Type: multipart/mixed; boundary=XX\n\n--XX\nContent-Type: text/plain\n\n"
           b"Half a message")
    parsed = parse_message(raw)
    assert parsed.text == "Half a message"
    assert any("MIME defect" in p for p in parsed.problems)


def test_deep_nesting_is_cut_off() -> None:
    parts = b"".join(
        b"--B%d\nContent-Type: multipart/mixed; boundary=B%d\n\n" % (i, i + 1) for i in range(60)
    )
    raw = b"Content-Type: multipart/mixed; boundary=B0\n\n" + parts + b"--B60\n\ndeep\n"
    parsed = parse_message(raw)
    assert any("too deep" in p for p in parsed.problems)


OWN_MESSAGES = {
    "gmail_reply.eml": ("Thanks. One more thing: does the registry fee cover inspection costs in "
                        "the peer cities you mentioned?"),
    "outlook_html_reply.eml": ("Bonjour,\n\nQuelles villes ont un budget participatif "
                               "supérieur à 1 million d'euros\u00a0?"),
    "thunderbird_flowed.eml": ("Guten Tag,\n\nwir möchten wissen, wie andere Städte ein "
                               "Leerstandskataster aufgebaut haben und welche Gebühren sie "
                               "erheben."),
    "apple_mail_reply.eml": "¿Qué ciudades usan fondos HOME para vivienda asequible?",
}


@pytest.mark.parametrize("name", sorted(OWN_MESSAGES))
def test_own_client_messages(name: str) -> None:
    parsed = parse_message((DATA / "eml" / name).read_bytes())
    assert parsed.reply_text == OWN_MESSAGES[name]
    assert not parsed.is_auto_reply and not parsed.is_bounce
    assert parsed.in_reply_to == "<ack-0042@311cities.org>"
    assert parsed.problems == []


def test_own_outlook_html_headers() -> None:
    parsed = parse_message((DATA / "eml" / "outlook_html_reply.eml").read_bytes())
    assert parsed.from_name == "Renée Dupré"
    assert parsed.subject == "RE : [311-0042] Budget participatif"  # no-break space collapsed
    assert parsed.html is not None and "WordSection1" in parsed.html
    assert "p.MsoNormal" not in parsed.text  # style sheets are not text


def test_own_outlook_autoreply() -> None:
    parsed = parse_message((DATA / "eml" / "outlook_autoreply.eml").read_bytes())
    assert parsed.is_auto_reply and not parsed.is_bounce
    assert "out-of-office subject" in parsed.auto_reply_reasons


def test_own_classic_bounce() -> None:
    parsed = parse_message((DATA / "eml" / "qmail_bounce.eml").read_bytes())
    assert parsed.is_bounce and parsed.is_auto_reply
    assert parsed.bounced_message_ids == ["<reply-0042@311cities.org>"]
    assert parsed.bounced_recipient == "nobody@springfield.gov"
