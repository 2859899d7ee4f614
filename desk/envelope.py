"""The channel-neutral inbound message: what a city sent, knowing nothing of IMAP or Slack."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

__all__ = ["AttachmentInfo", "InboundMessage"]


@dataclass(frozen=True)
class AttachmentInfo:
    filename: str
    content_type: str
    size: int
    data: bytes | None  # None when refused (too large)
    refused_reason: str | None = None


@dataclass
class InboundMessage:
    channel: str  # "email" | "slack"
    external_id: str  # Message-ID (email) or event id / "CHANNEL:ts" (Slack); unique per channel
    received_at: datetime  # aware, UTC
    text: str  # the whole readable text
    reply_text: str  # only what the sender newly wrote
    raw: bytes  # exactly what arrived, kept forever
    subject: str | None = None
    sender_email: str | None = None
    sender_name: str | None = None
    sender_slack_id: str | None = None
    # Email: In-Reply-To then References (oldest first); used to find the case this answers.
    thread_refs: list[str] = field(default_factory=list)
    # Email: what a reply to this message puts before its Message-ID in References: its own
    # References as the header lists them, or else its In-Reply-To (RFC 5322 3.6.4). None when
    # unknown: the reply then orders the thread from ``thread_refs``.
    reply_references: list[str] | None = None
    # Slack: "CHANNEL:thread_ts" of the thread the question lives in.
    thread_key: str | None = None
    is_auto_reply: bool = False
    is_calendar_reply: bool = False  # an invitation's accept/decline, sent by a calendar
    is_bounce: bool = False
    # For a bounce: the Message-IDs of our messages that bounced, and the failing address.
    bounced_message_ids: list[str] = field(default_factory=list)
    bounced_recipient: str | None = None
    attachments: list[AttachmentInfo] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # what could not be read
    meta: dict[str, Any] = field(default_factory=dict)
