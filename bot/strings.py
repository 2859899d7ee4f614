"""Every sentence the Slack app says, in one place, and the helpers that make text safe.

Slack reads ``&``, ``<`` and ``>`` as control characters: ``<!channel>`` pings a whole
channel and ``<http://x|y>`` forges a link. Text that came from a person (a city's question,
a reviewer's reason) is escaped with :func:`escape`; text we composed ourselves but which may
carry someone's words (notes, notices) goes through :func:`defuse`, which keeps our own user
mentions and links but never lets a broadcast through.
"""

from __future__ import annotations

import html
import re

__all__ = [
    "HELP",
    "STATUS_LABELS",
    "TOPIC_LABELS",
    "defuse",
    "escape",
    "plain_from_slack",
    "safe_mrkdwn",
    "trim",
]

TOPIC_LABELS: dict[str, str] = {
    "budget_finance": "Budget & finance",
    "economic_development": "Economic development",
    "housing": "Housing",
    "vacant_blighted_property": "Vacant & blighted property",
    "public_safety": "Public safety",
    "infrastructure": "Infrastructure",
    "planning_zoning": "Planning & zoning",
    "operations_performance": "Operations & performance",
    "governance_legal": "Governance & legal",
    "community_services": "Community services",
}

STATUS_LABELS: dict[str, str] = {
    "received": ":inbox_tray: Received",
    "needs_triage": ":warning: Needs triage",
    "drafted": ":memo: Drafted, waiting for review",
    "approved": ":white_check_mark: Approved, sending",
    "rejected": ":no_entry_sign: Rejected",
    "sent": ":outbox_tray: Reply sent",
    "follow_up_scheduled": ":telephone_receiver: Follow-up scheduled",
    "closed": ":lock: Closed",
}

HELP = (
    "*311 for Cities* answers city officials' questions with resources from the network.\n"
    "• `/311 ask QUESTION`: open a case with your question\n"
    "• `/311 status C-2026-0001`: where a case stands\n"
    "• `/311 followup C-2026-0001 next Tuesday 2pm 30m @coach`: schedule a follow-up call\n"
    "• `/311 followups`: your upcoming follow-up calls\n"
    "• `/311 stats`: the last 30 days in figures\n"
    "You can also mention me, send me a direct message, or use the *Send to 311* shortcut "
    "on any message."
)

# Intake
ACK = ("Thanks, we have your question. Your case is *{ref}*; you will hear from us by "
       "*{due}*.")
ACK_UNMATCHED = ("Thanks, we have your question as case *{ref}*. We could not match your "
                 "Slack profile to a member city, so a member of our team will look at it "
                 "first and get back to you in this thread.")
EMPTY_QUESTION = "Ask me your question in the same message, for example `@311 How do we …?`"
ASK_RECEIVED = "Thanks, opening a case for your question…"
ASK_USAGE = "Write your question after `/311 ask`, for example `/311 ask How do we …?`"
ASKED_BY = "<@{user}> asked 311 for Cities:\n>{question}"
SHORTCUT_SENT = "Sent to 311 for Cities as case *{ref}*."
SHORTCUT_JOINED = "Added to case *{ref}*."
SHORTCUT_BOT = "Only messages written by people can be sent to 311."
SHORTCUT_EMPTY = "That message has no text to send."
UNKNOWN_COMMAND = "I don't know `{command}`.\n\n" + HELP

# Status
STATUS = "*{ref}* ({city}): {status}. {due}"
STATUS_DUE = "Initial response due {due} ({left})."
STATUS_ANSWERED = "First response sent {when}."
STATUS_USAGE = "Which case? For example `/311 status C-2026-0001`."
NO_SUCH_CASE = "There is no case {ref}."

# Review
NOT_REVIEWER = ("Only reviewers can do that. Ask an admin to add you to SLACK_REVIEWERS or "
                "the reviewers' user group.")
ALREADY_DONE = "Someone was quicker: {ref} is already {status}."
CANNOT = "That can't be done now: {problem}"
FAILED = "Something went wrong on our side; the case is unchanged. Please try again."
EDIT_EMPTY = "The reply cannot be empty."
EDIT_TOO_LONG = "Slack modals take at most {limit:,} characters; this is {length:,}."
TOPICS_COUNT = "Choose one to three topics."
TOPIC_MAIN = "Choose the main topic."
REJECT_REASON = "Say why, in a few words."
EDIT_LONG_NOTE = ("The draft is longer than a Slack text box allows; only its first {limit:,} "
                  "characters are shown. Saving replaces the whole draft.")
REPLY_BY_EMAIL = "Email to {to}"
REPLY_BY_SLACK = "Slack, in the thread in <#{channel}>"
PACKAGE_LINK = "<{url}|The full resource package, online>"
LATE = "late by {late}"
LEFT = "{left} left"
NO_DRAFT = "_No draft yet._"
NOTICE_NO_CARD = "*{ref}*: {text}"

# Follow-ups
FOLLOWUP_CONFIRM = ("Schedule a {minutes}-minute follow-up call on *{ref}* with <@{coach}> "
                    "on *{when}*?")
FOLLOWUP_SCHEDULED = "Follow-up on *{ref}* scheduled for {when} with <@{coach}>."
FOLLOWUP_NONE = "You have no follow-up calls coming up."
FOLLOWUP_LIST_HEAD = "*Your upcoming follow-up calls*"
FOLLOWUP_LINE = "• {when}: *{ref}* ({city}), {minutes} min{phone}"
FOLLOWUP_LOGGED = "Outcome logged for *{ref}*."
FOLLOWUP_USAGE = ("Usage: `/311 followup C-2026-0001 next Tuesday 2pm 30m @coach`")
FOLLOWUP_UNAVAILABLE = "Follow-ups are not available on this server yet."
STATS_UNAVAILABLE = "Reports are not available on this server yet."
FOLLOWUP_BAD_TIME = "Give a date, a time and a duration."


def escape(text: str) -> str:
    """Make a person's text inert in a Slack message (the three characters Slack asks for)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


_BROADCAST = re.compile(r"<!([^>]*)>")
_MENTION = re.compile(r"&lt;@([UW][A-Z0-9]{2,20})&gt;")


def defuse(text: str) -> str:
    """Escape ``text`` but keep user mentions (``<@U123>``) working; broadcasts, links and
    channel references become plain text."""
    return _MENTION.sub(r"<@\1>", escape(text))


def safe_mrkdwn(text: str) -> str:
    """Our own mrkdwn (a drafted package) keeps its links and formatting, but a broadcast
    such as ``<!channel>`` that a question smuggled into it is shown, not sent."""
    return _BROADCAST.sub(lambda m: f"&lt;!{m.group(1)}&gt;", text)


_USER_REF = re.compile(r"<@([UW][A-Z0-9]+)(?:\|[^>]*)?>")
_CHANNEL_REF = re.compile(r"<#([CG][A-Z0-9]+)(?:\|([^>]*))?>")
_SPECIAL = re.compile(r"<!(\w+)(?:\^[^>|]*)?(?:\|([^>]*))?>")
_LINK = re.compile(r"<((?:https?|mailto):[^>|]+)(?:\|([^>]*))?>")


def plain_from_slack(text: str, *, bot_user: str | None = None) -> str:
    """A Slack message as the person meant it: mentions and links as plain words, entities
    decoded. The result is stored, and escaped again wherever it is shown."""
    if bot_user:
        text = re.sub(rf"<@{re.escape(bot_user)}(?:\|[^>]*)?>", "", text)
    text = _USER_REF.sub(r"@\1", text)
    text = _CHANNEL_REF.sub(lambda m: f"#{m.group(2) or m.group(1)}", text)
    text = _SPECIAL.sub(lambda m: m.group(2) or f"@{m.group(1)}", text)

    def link(m: re.Match[str]) -> str:
        url, label = m.group(1), m.group(2)
        url = url.removeprefix("mailto:")
        return f"{label} ({url})" if label and label != url and label != m.group(1) else url

    text = _LINK.sub(link, text)
    return html.unescape(text).strip()


def trim(text: str, limit: int) -> tuple[str, bool]:
    """``text`` cut at a word boundary to at most ``limit`` characters; True when cut."""
    if len(text) <= limit:
        return text, False
    cut = text[: limit - 1]
    space = cut.rfind(" ")
    if space > limit * 0.8:
        cut = cut[:space]
    return cut.rstrip() + "…", True
