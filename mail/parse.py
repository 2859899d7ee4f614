"""Turn raw RFC 822 bytes into a ParsedEmail, and that into the channel-neutral InboundMessage.

Parsing never raises: whatever cannot be read (a broken charset, a bad date, a malformed MIME
structure) is recorded in ``problems`` and the rest of the message is still returned, so a
malformed message still becomes a case.
"""

from __future__ import annotations

import email
import hashlib
import logging
import mimetypes
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.header import decode_header
from email.message import Message
from email.utils import getaddresses, parsedate_to_datetime
from html.parser import HTMLParser
from typing import Any

import html2text

from desk.envelope import AttachmentInfo, InboundMessage
from mail.loops import auto_reply_reasons, bounce_info
from mail.reply import extract_reply

__all__ = ["ParsedEmail", "html_to_text", "parse_message", "to_inbound"]

log = logging.getLogger(__name__)

DEFAULT_MAX_ATTACHMENT_BYTES = 10_000_000
_MAX_DEPTH = 40  # MIME nesting deeper than this is hostile or broken
_MSGID = re.compile(r"<([^<>\s]+)>")
# Splitting first keeps this linear: a regex search for bare ids backtracks quadratically on a
# long header with no "@" in it (a hostile References header would stall the intake).
_ID_DELIMITERS = re.compile(r"[\s<>,;\"]+")
_SURROGATE = re.compile("[\udc80-\udcff]")
_HTML_SNIFF = re.compile(r"^\s*(?:<!doctype\s+html|<html|<head|<body|<div|<p[\s>]|<table|<span)",
                         re.IGNORECASE)
# Report parts that are machine-readable detail, not attachments a person sent.
_REPORT_PARTS = {
    "message/delivery-status", "message/global-delivery-status", "text/rfc822-headers",
    "message/global-headers", "message/disposition-notification",
    "message/global-disposition-notification",
}
_SIGNATURE_PARTS = {"application/pgp-signature", "application/pkcs7-signature",
                    "application/x-pkcs7-signature"}
_CHARSET_ALIASES = {
    "utf8": "utf-8", "unicode-1-1-utf-8": "utf-8", "ks_c_5601-1987": "cp949",
    "iso-8859-8-i": "iso-8859-8", "gb2312": "gb18030", "gbk": "gb18030", "x-gbk": "gb18030",
    "windows-874": "cp874", "x-sjis": "shift_jis", "ascii": "utf-8", "us-ascii": "utf-8",
    "ansi_x3.4-1968": "utf-8", "iso-8859-1": "cp1252", "latin1": "cp1252", "latin-1": "cp1252",
}
_UNKNOWN_CHARSETS = {"unknown-8bit", "x-unknown", "unknown", "8bit", "default", "x-user-defined",
                     "_autodetect_all", "none", ""}


@dataclass(frozen=True)
class ParsedEmail:
    message_id: str | None
    in_reply_to: str | None
    references: list[str]
    from_: str | None
    from_name: str | None
    to: list[str]
    subject: str
    date: datetime | None
    text: str
    html: str | None
    reply_text: str
    is_auto_reply: bool
    is_bounce: bool
    cc: list[str] = field(default_factory=list)
    auto_reply_reasons: list[str] = field(default_factory=list)
    bounced_message_ids: list[str] = field(default_factory=list)
    bounced_recipient: str | None = None
    delivery_actions: list[str] = field(default_factory=list)
    attachments: list[AttachmentInfo] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        """The `city311 mail parse --json` shape (see DESIGN.md), plus diagnostic fields."""
        return {
            "message_id": self.message_id,
            "in_reply_to": self.in_reply_to,
            "references": list(self.references),
            "from": self.from_,
            "from_name": self.from_name,
            "to": list(self.to),
            "cc": list(self.cc),
            "subject": self.subject,
            "date": self.date.isoformat() if self.date else None,
            "text": self.text,
            "reply_text": self.reply_text,
            "is_auto_reply": self.is_auto_reply,
            "is_bounce": self.is_bounce,
            "auto_reply_reasons": list(self.auto_reply_reasons),
            "bounced_message_ids": list(self.bounced_message_ids),
            "bounced_recipient": self.bounced_recipient,
            "delivery_actions": list(self.delivery_actions),
            "attachments": [
                {
                    "filename": a.filename,
                    "content_type": a.content_type,
                    "size": a.size,
                    "refused": a.data is None,
                    "refused_reason": a.refused_reason,
                }
                for a in self.attachments
            ],
            "problems": list(self.problems),
        }


@dataclass
class _Body:
    plain: list[str] = field(default_factory=list)
    html: list[str] = field(default_factory=list)
    attachments: list[AttachmentInfo] = field(default_factory=list)


def parse_message(
    raw: bytes, *, max_attachment_bytes: int = DEFAULT_MAX_ATTACHMENT_BYTES
) -> ParsedEmail:
    """Parse ``raw`` (RFC 822 bytes); never raises on malformed input."""
    problems: list[str] = []
    try:
        msg = email.message_from_bytes(raw)
    except Exception as exc:  # noqa: BLE001 - the stdlib parser is lenient; this is a last resort
        problems.append(f"message could not be parsed: {type(exc).__name__}")
        msg = Message()
    _note_defects(msg, problems)

    subject = _collapse(_decode_header_value(msg, "Subject", problems))
    from_name, from_addr = _first_address(msg, "From", problems)
    body = _Body()
    try:
        _collect(msg, body, problems, max_attachment_bytes, depth=0)
    except Exception as exc:  # noqa: BLE001 - keep whatever was collected so far
        problems.append(f"MIME structure could not be fully read: {type(exc).__name__}")
    html = "\n\n".join(body.html) if body.html else None
    if body.plain:
        text = "\n\n".join(body.plain)
    elif html is not None:
        text = html_to_text(html, problems)
    else:
        text = ""
    text = _tidy(text)
    try:
        reply_text = extract_reply(text)
    except Exception as exc:  # noqa: BLE001 - fall back to the whole text
        problems.append(f"reply could not be extracted: {type(exc).__name__}")
        reply_text = text.strip()

    reasons: list[str] = []
    bounced_ids: list[str] = []
    bounced_recipient: str | None = None
    actions: list[str] = []
    is_bounce = False
    try:
        reasons = auto_reply_reasons(msg, subject)
        info = bounce_info(msg, subject, text)
        is_bounce = info.is_bounce
        bounced_ids = info.message_ids
        actions = info.actions
        if info.recipients:
            failed = [r for r, a in zip(info.recipients, info.actions, strict=False)
                      if a.startswith("failed")]
            bounced_recipient = (failed or info.recipients)[0]
    except Exception as exc:  # noqa: BLE001 - when unsure, treat as automatic: never answer
        problems.append(f"loop detection failed: {type(exc).__name__}")
        reasons = reasons or ["loop detection failed"]

    references = _message_ids(_raw_header(msg, "References"))
    return ParsedEmail(
        message_id=_first_id(_raw_header(msg, "Message-ID")),
        in_reply_to=_first_id(_raw_header(msg, "In-Reply-To")),
        references=references,
        from_=from_addr,
        from_name=from_name,
        to=_addresses(msg, "To", problems),
        cc=_addresses(msg, "Cc", problems),
        subject=subject,
        date=_date(msg, problems),
        text=text,
        html=html,
        reply_text=reply_text,
        is_auto_reply=bool(reasons),
        is_bounce=is_bounce,
        auto_reply_reasons=reasons,
        bounced_message_ids=bounced_ids,
        bounced_recipient=bounced_recipient,
        delivery_actions=actions,
        attachments=body.attachments,
        problems=list(dict.fromkeys(problems)),
    )


def to_inbound(parsed: ParsedEmail, raw: bytes, received_at: datetime) -> InboundMessage:
    """The channel-neutral envelope for a parsed email."""
    if received_at.tzinfo is None:
        received_at = received_at.replace(tzinfo=UTC)
    refs = [parsed.in_reply_to] if parsed.in_reply_to else []
    thread_refs = list(dict.fromkeys([*refs, *parsed.references]))
    external_id = parsed.message_id or "sha256:" + hashlib.sha256(raw).hexdigest()
    return InboundMessage(
        channel="email",
        external_id=external_id,
        received_at=received_at.astimezone(UTC),
        text=parsed.text,
        reply_text=parsed.reply_text,
        raw=raw,
        subject=parsed.subject or None,
        sender_email=parsed.from_,
        sender_name=parsed.from_name,
        thread_refs=thread_refs,
        reply_references=list(parsed.references) or refs,
        is_auto_reply=parsed.is_auto_reply,
        is_calendar_reply=_calendar_reply(raw),
        is_bounce=parsed.is_bounce,
        bounced_message_ids=list(parsed.bounced_message_ids),
        bounced_recipient=parsed.bounced_recipient,
        attachments=list(parsed.attachments),
        problems=list(parsed.problems),
        meta={
            "to": list(parsed.to),
            "cc": list(parsed.cc),
            "date": parsed.date.isoformat() if parsed.date else None,
            "auto_reply_reasons": list(parsed.auto_reply_reasons),
            "delivery_actions": list(parsed.delivery_actions),
        },
    )


_CALENDAR_PART = re.compile(rb"content-type:[ \t]*text/calendar[^\r\n]*(?:\r?\n[ \t][^\r\n]*)*",
                            re.IGNORECASE)
_REPLY_METHOD = re.compile(rb"method\s*=\s*\"?(reply|counter)\b", re.IGNORECASE)


def _calendar_reply(raw: bytes) -> bool:
    """An attendee's answer to an invitation (iTIP REPLY/COUNTER: "Accepted: …"); calendar
    programs send it on their own, so it is recorded, never treated as a new question."""
    return any(_REPLY_METHOD.search(m.group(0)) for m in _CALENDAR_PART.finditer(raw[:2_000_000]))


# --- headers -------------------------------------------------------------------------------


def _values(msg: Message, name: str) -> list[str]:
    """Every value of header ``name`` as text; raw 8-bit bytes decoded (UTF-8, else cp1252)."""
    wanted = name.lower()
    try:
        return [_unescape(str(value)) for key, value in msg.raw_items() if key.lower() == wanted]
    except Exception:  # noqa: BLE001
        return []


def _raw_header(msg: Message, name: str) -> str:
    values = _values(msg, name)
    return values[0] if values else ""


def _decode_header_value(msg: Message, name: str, problems: list[str]) -> str:
    values = _values(msg, name)
    if not values:
        return ""
    return decode_words(values[0], problems, name)


def decode_words(value: Any, problems: list[str], name: str = "header") -> str:
    """Decode RFC 2047 encoded words (and raw 8-bit bytes) in a header value."""
    try:
        chunks = decode_header(value)
    except Exception:  # noqa: BLE001 - a malformed encoded word: keep the text as it came
        problems.append(f"{name} has malformed encoded words")
        return _unescape(str(value))
    out: list[str] = []
    for chunk, charset in chunks:
        if isinstance(chunk, bytes):
            text, ok = decode_bytes(chunk, charset)
            if not ok:
                problems.append(f"{name} charset {charset or 'unknown'} could not be decoded")
            out.append(text)
        else:
            out.append(_unescape(chunk))
    return "".join(out)


def _unescape(text: str) -> str:
    """Raw 8-bit header bytes arrive as surrogate escapes: decode them properly."""
    if not _SURROGATE.search(text):  # a regex: a character loop is slow on huge headers
        return text
    return decode_bytes(text.encode("utf-8", "surrogateescape"), None)[0]


def _collapse(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def _first_address(msg: Message, name: str, problems: list[str]) -> tuple[str | None, str | None]:
    pairs = _address_pairs(msg, name, problems)
    if not pairs:
        return None, None
    display, address = pairs[0]
    return display or None, address or None


def _addresses(msg: Message, name: str, problems: list[str]) -> list[str]:
    return [address for _, address in _address_pairs(msg, name, problems) if address]


def _address_pairs(msg: Message, name: str, problems: list[str]) -> list[tuple[str, str]]:
    raw = _values(msg, name)
    try:
        pairs = getaddresses(raw)
    except Exception:  # noqa: BLE001
        problems.append(f"{name} header could not be parsed")
        return []
    out: list[tuple[str, str]] = []
    for display, address in pairs:
        address = address.strip()
        if address and "@" not in address and name == "From":
            problems.append("From has no valid address")
        out.append((_collapse(decode_words(display, problems, name)), address))
    if raw and not any(address for _, address in out):
        problems.append(f"{name} header has no readable address")
    return [pair for pair in out if pair[1] or pair[0]]


def _first_id(value: str) -> str | None:
    ids = _message_ids(value)
    return ids[0] if ids else None


def _message_ids(value: str) -> list[str]:
    """Message-IDs in angle brackets, as ``<id@host>``; bare ``id@host`` tokens are bracketed."""
    found = [f"<{m}>" for m in _MSGID.findall(value)]
    if not found:
        found = [f"<{t}>" for t in _ID_DELIMITERS.split(value) if "@" in t[1:-1]]
    return list(dict.fromkeys(found))


def _date(msg: Message, problems: list[str]) -> datetime | None:
    value = _raw_header(msg, "Date").strip()
    if not value:
        return None
    try:
        parsed = parsedate_to_datetime(value)
    except Exception:  # noqa: BLE001
        problems.append("Date header could not be parsed")
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)  # "-0000": the time is UTC, the zone unknown
    return parsed


def _note_defects(msg: Message, problems: list[str]) -> None:
    try:
        for part in msg.walk():
            for defect in getattr(part, "defects", []):
                problems.append(f"MIME defect: {type(defect).__name__}")
    except Exception as exc:  # noqa: BLE001
        problems.append(f"MIME structure could not be walked: {type(exc).__name__}")


# --- body and attachments ------------------------------------------------------------------


def decode_bytes(data: bytes, charset: str | None) -> tuple[str, bool]:
    """Decode ``data`` from ``charset``; on failure fall back to UTF-8, then Windows-1252.

    Returns the text and whether the declared charset worked.
    """
    name = (charset or "").strip().strip("\"'").lower()
    declared_ok = True
    if name and name not in _UNKNOWN_CHARSETS:
        name = _CHARSET_ALIASES.get(name, name)
        try:
            return data.decode(name), True
        except Exception:  # noqa: BLE001 - unknown codec, bytes-to-bytes codec, bad bytes
            declared_ok = False
    try:
        return data.decode("utf-8"), declared_ok
    except UnicodeDecodeError:
        return data.decode("cp1252", errors="replace"), declared_ok and not name


def _collect(part: Message, body: _Body, problems: list[str], limit: int, depth: int) -> None:
    if depth > _MAX_DEPTH:
        problems.append("MIME nesting too deep; the rest was skipped")
        return
    content_type = part.get_content_type()
    if content_type in {"message/rfc822", "message/global"}:
        _attach_message(part, body, problems, limit)
        return
    if part.is_multipart():
        children = [c for c in part.get_payload() if isinstance(c, Message)]
        if content_type == "multipart/alternative":
            _collect_alternative(children, body, problems, limit, depth)
        elif content_type in {"multipart/report", "multipart/signed", "multipart/encrypted"}:
            # The first part is the human-readable notice or the signed content.
            if children:
                _collect(children[0], body, problems, limit, depth + 1)
        else:
            for child in children:
                _collect(child, body, problems, limit, depth + 1)
        return
    if content_type in _REPORT_PARTS or content_type in _SIGNATURE_PARTS:
        return
    if content_type.startswith("multipart/"):
        _attach(part, body, problems, limit, None, content_type)  # a multipart with no parts
        return
    disposition = _disposition(part)
    filename = _filename(part, problems)
    if (
        content_type in {"text/plain", "text/html"}
        and disposition != "attachment"
        and filename is None
    ):
        text = _part_text(part, problems)
        if content_type == "text/html" or _HTML_SNIFF.match(text):
            body.html.append(text)
        else:
            body.plain.append(_unflow(part, text).strip("\r\n"))
        return
    _attach(part, body, problems, limit, filename, content_type)


def _collect_alternative(
    children: list[Message], body: _Body, problems: list[str], limit: int, depth: int
) -> None:
    options = []
    for child in children:
        option = _Body()
        _collect(child, option, problems, limit, depth + 1)
        options.append(option)
    plain = next((o for o in options if o.plain), None)
    html = next((o for o in options if o.html), None)
    if plain is not None:
        body.plain.extend(plain.plain)
    if html is not None:
        body.html.extend(html.html)
    for option in options:
        body.attachments.extend(option.attachments)


def _disposition(part: Message) -> str | None:
    try:
        return part.get_content_disposition()
    except Exception:  # noqa: BLE001
        return None


def _filename(part: Message, problems: list[str]) -> str | None:
    try:
        name = part.get_filename()
    except Exception:  # noqa: BLE001
        problems.append("an attachment filename could not be read")
        return None
    if name is None:
        return None
    name = _collapse(decode_words(name, problems, "filename"))
    # Never trust a path from outside: keep the last component, drop control characters.
    name = re.split(r"[\\/]", name)[-1]
    name = "".join(ch for ch in name if ch.isprintable()).strip(" .")
    return name or None


def _payload_bytes(part: Message, problems: list[str]) -> bytes:
    try:
        data = part.get_payload(decode=True)
    except Exception as exc:  # noqa: BLE001
        problems.append(f"a {part.get_content_type()} part could not be decoded: "
                        f"{type(exc).__name__}")
        return b""
    if isinstance(data, bytes):
        return data
    return b""


def _part_text(part: Message, problems: list[str]) -> str:
    data = _payload_bytes(part, problems)
    try:
        charset = part.get_content_charset()
    except Exception:  # noqa: BLE001
        charset = None
    text, ok = decode_bytes(data, charset)
    if not ok:
        problems.append(f"charset {charset} could not be decoded; read as UTF-8/Windows-1252")
    return text


def _unflow(part: Message, text: str) -> str:
    """Undo RFC 3676 format=flowed soft line breaks, keeping quote depth apart."""
    try:
        flowed = str(part.get_param("format") or "").lower() == "flowed"
        delsp = str(part.get_param("delsp") or "").lower() == "yes"
    except Exception:  # noqa: BLE001
        return text
    if not flowed:
        return text
    out: list[str] = []
    pending: str | None = None
    pending_depth = -1
    for line in text.replace("\r\n", "\n").split("\n"):
        depth = len(line) - len(line.lstrip(">"))
        content = line[depth:]
        if content.startswith(" "):
            content = content[1:]  # space-stuffing
        soft = content.endswith(" ") and content != "-- "
        if delsp and soft:
            content = content[:-1]
        if pending is not None and depth == pending_depth:
            pending += content
        else:
            if pending is not None:
                out.append(_requote(pending_depth, pending))
            pending, pending_depth = content, depth
        if not soft:
            out.append(_requote(pending_depth, pending))
            pending = None
    if pending is not None:
        out.append(_requote(pending_depth, pending))
    return "\n".join(out)


def _requote(depth: int, content: str) -> str:
    return (">" * depth + " " + content) if depth else content


def _attach(
    part: Message, body: _Body, problems: list[str], limit: int, filename: str | None,
    content_type: str,
) -> None:
    data = _payload_bytes(part, problems)
    name = filename or _default_name(content_type, len(body.attachments) + 1)
    body.attachments.append(_attachment(name, content_type, data, limit))


def _attach_message(part: Message, body: _Body, problems: list[str], limit: int) -> None:
    payload = part.get_payload()
    inner = payload[0] if isinstance(payload, list) and payload else None
    data = b""
    subject = ""
    if isinstance(inner, Message):
        subject = _collapse(decode_words(inner.get("Subject", ""), problems, "Subject"))
        try:
            data = inner.as_bytes()
        except Exception:  # noqa: BLE001 - fall back to a lossy rendering
            data = inner.as_string().encode("utf-8", "replace")
    elif isinstance(payload, str):
        data = payload.encode("utf-8", "surrogateescape")
    name = _filename(part, problems) or (
        re.sub(r"[^\w .-]+", "_", subject)[:80].strip() or "message"
    ) + ".eml"
    body.attachments.append(_attachment(name, part.get_content_type(), data, limit))


def _attachment(name: str, content_type: str, data: bytes, limit: int) -> AttachmentInfo:
    if len(data) > limit:
        log.info("refused an attachment of %d bytes (limit %d)", len(data), limit)
        return AttachmentInfo(name, content_type, len(data), None,
                              refused_reason=f"larger than the {limit}-byte limit")
    return AttachmentInfo(name, content_type, len(data), data)


def _default_name(content_type: str, index: int) -> str:
    extension = mimetypes.guess_extension(content_type) or ".bin"
    return f"attachment-{index}{extension}"


def _tidy(text: str) -> str:
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\x00", "")
    return "\n".join(line.rstrip() for line in text.split("\n")).strip("\n")


# --- HTML ------------------------------------------------------------------------------------


def html_to_text(html: str, problems: list[str] | None = None) -> str:
    """Readable text from HTML (html2text; a plain tag-stripper if that fails)."""
    converter = html2text.HTML2Text()
    converter.body_width = 0  # never wrap: long links stay whole
    converter.ignore_images = True
    converter.ignore_emphasis = True
    converter.unicode_snob = True
    converter.ignore_tables = False
    try:
        return str(converter.handle(html))
    except Exception as exc:  # noqa: BLE001
        if problems is not None:
            problems.append(f"HTML could not be converted cleanly: {type(exc).__name__}")
        return _strip_tags(html)


class _TextOnly(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.chunks: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in {"script", "style", "head"}:
            self._skip += 1
        elif tag in {"br", "p", "div", "tr", "li"}:
            self.chunks.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in {"script", "style", "head"} and self._skip:
            self._skip -= 1

    def handle_data(self, data: str) -> None:
        if not self._skip:
            self.chunks.append(data)


def _strip_tags(html: str) -> str:
    parser = _TextOnly()
    try:
        parser.feed(html)
        parser.close()
    except Exception:  # noqa: BLE001
        return re.sub(r"<[^>]*>", " ", html)
    return "".join(parser.chunks)

