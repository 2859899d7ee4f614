"""Render outbox items as email messages: acknowledgements, replies, declines, invitations
and reminders, with RFC 5322 threading headers and our own stable Message-ID.

Pure functions over an :class:`OutboundItem`; sending lives in :mod:`mail.delivery`.
"""

from __future__ import annotations

import hashlib
import html
import re
from collections.abc import Iterable
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime, formataddr, parseaddr
from typing import Any

from desk.errors import PermanentDeliveryError
from desk.ports import OutboundItem

__all__ = [
    "KINDS",
    "compose",
    "message_id_for",
    "recipients_of",
    "references_for",
    "reply_subject",
    "text_to_html",
]

KINDS = ("ack", "reply", "decline", "invite", "email_reminder")

_REPLY_PREFIX = re.compile(r"^\s*((re|aw|sv|vs|antw|réf|ref|tr|wg|fw|fwd)\s*(\[\d+\])?\s*:\s*)+",
                           re.IGNORECASE)
_URL = re.compile(r"https?://[^\s<>\"']+[^\s<>\"'.,;:!?)\]]")


def message_id_for(idempotency_key: str, domain: str) -> str:
    """Our Message-ID for one outbox row: the same on every retry, so a resend after a crash
    is recognisably the same message (and a reply to either threads)."""
    digest = hashlib.sha256(idempotency_key.encode()).hexdigest()[:32]
    return f"<{digest}.city311@{domain or 'localhost'}>"


def reply_subject(subject: str | None, case_ref: str | None) -> str:
    """``Re: <subject> [C-2026-0001]``: one ``Re:``, the case reference once."""
    base = _REPLY_PREFIX.sub("", (subject or "").strip()).strip()
    base = re.sub(r"\s+", " ", base)
    if case_ref and case_ref.upper() not in base.upper():
        base = f"{base} [{case_ref}]" if base else f"Your question [{case_ref}]"
    return f"Re: {base}" if base else "Re: your question"


def references_for(in_reply_to: str | None, references: Iterable[str] | None,
                   parent_references: Iterable[str] | None = None) -> list[str]:
    """RFC 5322 References: the parent's References, then the parent's Message-ID.

    ``parent_references`` is the parent's header as it was (messages stored since it is
    kept). Older payloads carry only the thread as ``[parent In-Reply-To, *parent References]``
    (deduplicated): there the first id, the parent's own In-Reply-To, belongs just before the
    parent at the end. The order only matters to clients that draw the thread tree.
    """
    if parent_references is not None:
        refs = [r for r in parent_references if r and r != in_reply_to]
    else:
        refs = [r for r in (references or []) if r and r != in_reply_to]
        if len(refs) > 1:
            refs = [*refs[1:], refs[0]]
    if in_reply_to:
        refs.append(in_reply_to)
    return list(dict.fromkeys(refs))


def recipients_of(value: Any) -> list[str]:
    """Addresses from a payload's ``to``: a string (maybe "Name <a@b>", maybe comma separated)
    or a list of them."""
    items = value if isinstance(value, list | tuple) else [value]
    found: list[str] = []
    for item in items:
        if not item:
            continue
        for part in str(item).split(","):
            _, address = parseaddr(part.strip())
            if "@" in address and address not in found:
                found.append(address)
    return found


def text_to_html(text: str) -> str:
    """A safe HTML version of plain text: escaped, paragraphs kept, links clickable."""
    paragraphs = [p for p in re.split(r"\n\s*\n", text.strip()) if p.strip()]
    rendered = []
    for paragraph in paragraphs:
        escaped = html.escape(paragraph)
        linked = _URL.sub(lambda m: f'<a href="{m.group(0)}">{m.group(0)}</a>', escaped)
        rendered.append("<p>" + linked.replace("\n", "<br>\n") + "</p>")
    return ("<!DOCTYPE html>\n<html><body style=\"font-family: sans-serif; line-height: 1.4\">\n"
            + "\n".join(rendered) + "\n</body></html>\n")


def compose(item: OutboundItem, *, address: str, from_name: str,
            now: datetime | None = None) -> EmailMessage:
    """The message to send for ``item``; PermanentDeliveryError when it cannot be rendered."""
    renderer = _RENDERERS.get(item.kind)
    if renderer is None:
        raise PermanentDeliveryError(f"email cannot deliver a {item.kind!r}", channel="email")
    payload = item.payload
    to = recipients_of(payload.get("to"))
    if not to:
        raise PermanentDeliveryError(f"the {item.kind} has no valid recipient", channel="email")
    domain = address.rpartition("@")[2] or "localhost"
    msg = EmailMessage()
    msg["From"] = formataddr((from_name, address)) if from_name else address
    msg["To"] = ", ".join(to)
    msg["Date"] = format_datetime(now or datetime.now(UTC))
    msg["Message-ID"] = message_id_for(item.idempotency_key, domain)
    if item.case_ref:
        msg["X-City311-Case"] = item.case_ref
    renderer(msg, item, payload)
    return msg


def _thread(msg: EmailMessage, payload: dict[str, Any]) -> None:
    parent = payload.get("in_reply_to")
    if parent:
        msg["In-Reply-To"] = parent
    refs = references_for(parent, payload.get("references"), payload.get("parent_references"))
    if refs:
        msg["References"] = " ".join(refs)


def _automatic(msg: EmailMessage, kind: str) -> None:
    # RFC 3834: mark automatic mail so other robots never answer it (and Exchange stays quiet).
    msg["Auto-Submitted"] = kind
    msg["X-Auto-Response-Suppress"] = "All"


def _ack(msg: EmailMessage, item: OutboundItem, payload: dict[str, Any]) -> None:
    ref = item.case_ref or "your case"
    msg["Subject"] = reply_subject(payload.get("subject"), item.case_ref)
    _thread(msg, payload)
    _automatic(msg, "auto-replied")
    due = payload.get("due_text") or payload.get("due_at") or "within three business days"
    text = (
        "Thank you for writing to 311 for Cities.\n\n"
        f"We have received your question as case {ref}. You will have our initial response "
        f"by {due}.\n\n"
        f"To add anything, reply to this message and keep {ref} in the subject.\n\n"
        "This is an automatic acknowledgement.\n"
    )
    msg.set_content(text)
    msg.add_alternative(text_to_html(text), subtype="html")


def _reply(msg: EmailMessage, item: OutboundItem, payload: dict[str, Any]) -> None:
    msg["Subject"] = reply_subject(payload.get("subject"), item.case_ref)
    _thread(msg, payload)
    text = str(payload.get("text") or "").strip()
    if not text:
        raise PermanentDeliveryError(f"the {item.kind} has no text", channel="email")
    body_html = str(payload.get("html") or "")
    url = payload.get("package_url")
    if item.kind == "reply" and url and url not in text:
        text += f"\n\nYour resource package online: {url}"
        if body_html and url not in body_html:
            link = html.escape(str(url), quote=True)
            body_html += f'\n<p>Your resource package online: <a href="{link}">{link}</a></p>'
    msg.set_content(text + "\n")
    msg.add_alternative(body_html or text_to_html(text), subtype="html")


def _invite(msg: EmailMessage, item: OutboundItem, payload: dict[str, Any]) -> None:
    subject = str(payload.get("subject") or "Follow-up call")
    if item.case_ref and item.case_ref.upper() not in subject.upper():
        subject = f"{subject} [{item.case_ref}]"
    msg["Subject"] = subject
    _thread(msg, payload)
    ics = str(payload.get("ics") or "")
    if "BEGIN:VCALENDAR" not in ics:
        raise PermanentDeliveryError("the invitation has no calendar data", channel="email")
    method = str(payload.get("method") or "REQUEST").upper()
    if method not in ("REQUEST", "CANCEL", "PUBLISH"):
        raise PermanentDeliveryError(f"unknown calendar method {method!r}", channel="email")
    msg.set_content(str(payload.get("text") or subject) + "\n")
    # Calendar clients read the text/calendar alternative; the attachment is for the rest.
    msg.add_alternative(ics, subtype="calendar", params={"method": method})
    msg.add_attachment(ics.encode(), maintype="application", subtype="ics",
                       filename="cancel.ics" if method == "CANCEL" else "invite.ics")


def _reminder(msg: EmailMessage, item: OutboundItem, payload: dict[str, Any]) -> None:
    msg["Subject"] = str(payload.get("subject") or "Reminder")
    _thread(msg, payload)
    _automatic(msg, "auto-generated")
    text = str(payload.get("text") or "").strip()
    if not text:
        raise PermanentDeliveryError("the reminder has no text", channel="email")
    msg.set_content(text + "\n")


_RENDERERS = {"ack": _ack, "reply": _reply, "decline": _reply, "invite": _invite,
              "email_reminder": _reminder}
