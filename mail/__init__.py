"""The email channel: MIME parsing, reply extraction and loop/bounce detection."""

from mail.parse import ParsedEmail, parse_message, to_inbound
from mail.reply import extract_reply

__all__ = ["ParsedEmail", "extract_reply", "parse_message", "to_inbound"]
