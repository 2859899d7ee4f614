"""Block Kit: the review card, the modals, and the messages the app posts.

Builders are pure functions of plain data, so they can be rendered again at any moment
(``chat.update`` shows the current state of the case, whatever happened in between).
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from bot import strings as S
from bot.strings import escape, safe_mrkdwn, trim
from desk.models import Case, Draft, Event, FollowUp
from desk.ports import TOPICS
from desk.sla import BusinessCalendar

__all__ = [
    "A",
    "REVIEWABLE",
    "V",
    "CardData",
    "edit_modal",
    "metadata",
    "question_modal",
    "reject_modal",
    "render_card",
    "sections",
    "time_left",
    "topics_modal",
]

Block = dict[str, Any]

QUESTION_LIMIT = 600
DRAFT_LIMIT = 2_500
SECTION_LIMIT = 3_000
INPUT_LIMIT = 3_000  # the largest plain_text_input Slack accepts


class A:
    """action_ids of the card's interactive elements."""

    APPROVE = "case_approve"
    EDIT = "case_edit"
    TOPICS = "case_topics"
    REJECT = "case_reject"
    ASSIGN = "case_assign_coach"
    SHOW = "case_show_question"
    SCHEDULE = "case_schedule_followup"
    OUTCOME = "followup_log_outcome"
    CONFIRM_FOLLOWUP = "followup_confirm"


class V:
    """callback_ids of the modals, and the block/action ids of their inputs."""

    EDIT = "edit_draft"
    TOPICS = "change_topics"
    REJECT = "reject_case"
    QUESTION = "show_question"
    SCHEDULE = "schedule_followup"
    OUTCOME = "log_outcome"
    SEND_TO_311 = "send_to_311"


REVIEWABLE = ("drafted", "needs_triage")


@dataclass
class CardData:
    case: Case
    draft: Draft | None
    history: Sequence[Event]
    now: datetime
    calendar: BusinessCalendar
    followups: Sequence[FollowUp] = field(default_factory=list)
    followups_enabled: bool = False


def metadata(ref: str, channel: str | None = None, ts: str | None = None,
             **extra: Any) -> str:
    """A modal's private_metadata: which case, and which card to answer under."""
    return json.dumps({"ref": ref, "channel": channel, "ts": ts, **extra})


def _text(text: str, kind: str = "mrkdwn") -> dict[str, Any]:
    return {"type": kind, "text": text}


def _plain(text: str, limit: int = 75) -> dict[str, Any]:
    return {"type": "plain_text", "text": trim(text, limit)[0], "emoji": True}


def _button(text: str, action_id: str, value: str, style: str | None = None,
            confirm: dict[str, Any] | None = None) -> Block:
    button: Block = {"type": "button", "text": _plain(text), "action_id": action_id,
                     "value": value}
    if style:
        button["style"] = style
    if confirm:
        button["confirm"] = confirm
    return button


def _duration(amount: timedelta, day: timedelta) -> str:
    minutes = int(amount.total_seconds() // 60)
    if minutes < 60:
        return f"{max(minutes, 0)} min"
    hours = minutes // 60
    day_hours = max(int(day.total_seconds() // 3600), 1)
    days, hours = divmod(hours, day_hours)
    parts = []
    if days:
        parts.append(f"{days} business day{'s' if days != 1 else ''}")
    if hours:
        parts.append(f"{hours} h")
    return " ".join(parts) or f"{minutes} min"


def time_left(calendar: BusinessCalendar, now: datetime, due: datetime) -> str:
    """"1 business day 4 h left", or "late by 3 h" after the deadline."""
    remaining = calendar.remaining(now, due)
    if remaining <= timedelta(0):
        late = now - due
        hours = int(late.total_seconds() // 3600)
        text = f"{hours // 24} d {hours % 24} h" if hours >= 24 else (
            f"{hours} h" if hours else f"{int(late.total_seconds() // 60)} min")
        return S.LATE.format(late=text)
    return S.LEFT.format(left=_duration(remaining, calendar.day_length))


def _contact(case: Case) -> str:
    contact = case.contact
    if contact is None:
        return "unknown"
    parts = [escape(contact.name)] if contact.name else []
    if contact.slack_user_id:
        parts.append(f"<@{contact.slack_user_id}>")
    if contact.email:
        parts.append(escape(contact.email))
    return " · ".join(parts) or "unknown"


def _reply_goes(case: Case) -> str:
    if case.channel == "email":
        to = case.contact.email if case.contact and case.contact.email else "the sender"
        return S.REPLY_BY_EMAIL.format(to=escape(to))
    channel = case.thread_key.partition(":")[0]
    return S.REPLY_BY_SLACK.format(channel=channel)


def _topic_line(topic: str, score: float | None) -> str:
    label = S.TOPIC_LABELS.get(topic, topic)
    return f"{label} ({score:.0%})" if score is not None else label


def _topics(case: Case) -> str:
    lines = [_topic_line(t["topic"], t.get("score")) for t in case.topics]
    # The percentage says how likely a topic applies, the order which one the question is
    # mainly about, so the main one can show the lower percentage.
    heading = "*Topics (main first):* " if len(lines) > 1 else "*Topics:* "
    text = heading + (", ".join(lines) if lines else "_none yet_")
    if case.status == "needs_triage":
        reason = escape(case.triage_reason or "needs a person")
        ranked = sorted((case.scores or {}).items(), key=lambda kv: -float(kv[1]))[:3]
        suggestions = ", ".join(_topic_line(t, float(s)) for t, s in ranked if s)
        text += f"\n:warning: *Needs triage:* {reason}"
        if suggestions:
            text += f"\n*Suggestions:* {suggestions}"
    return text


def _entities(case: Case) -> str | None:
    seen: dict[tuple[str, str], None] = {}
    for entity in case.entities:
        seen.setdefault((str(entity.get("label", "")), str(entity.get("text", ""))), None)
    if not seen:
        return None
    shown = [f"{label.title()}: {escape(text)}" for label, text in list(seen)[:12]]
    return "*Entities:* " + " · ".join(shown)


_ACTOR = re.compile(r"^[UW][A-Z0-9]{2,20}$")
_EVENT_WORDS = {
    "approved": "approved", "edited": "edited the draft", "topics_changed": "changed topics",
    "rejected": "rejected", "assigned": "assigned", "sent": "reply sent", "closed": "closed",
    "follow_up_scheduled": "scheduled a follow-up", "reopened": "reopened",
}


def _history(events: Sequence[Event], calendar: BusinessCalendar) -> str | None:
    lines = []
    for event in events:
        words = _EVENT_WORDS.get(event.kind)
        if words is None:
            continue
        who = f"<@{event.actor}>" if _ACTOR.match(event.actor) else escape(event.actor)
        when = calendar.local(event.at).strftime("%b %d %I:%M %p").replace(" 0", " ")
        lines.append(f"{when}: {words} ({who})" if event.actor != "system" else
                     f"{when}: {words}")
    return " · ".join(lines[-4:]) if lines else None


def render_card(data: CardData) -> tuple[str, list[Block]]:
    """The review card of a case, as it stands now: (fallback text, blocks)."""
    case, calendar = data.case, data.calendar
    city = case.city.label if case.city else "Unknown city"
    status = S.STATUS_LABELS.get(case.status, case.status)
    if case.first_response_at is not None:
        answered = calendar.describe(case.first_response_at)
        due = f"{calendar.describe(case.due_at)} (answered {answered})"
    else:
        due = f"{calendar.describe(case.due_at)} ({time_left(calendar, data.now, case.due_at)})"
    blocks: list[Block] = [
        {"type": "header", "text": _plain(f"{case.ref} · {city}", 150)},
        {"type": "section", "fields": [
            _text(f"*Status:*\n{status}"),
            _text(f"*Due:*\n{due}"),
            _text(f"*City:*\n{escape(city)}"),
            _text(f"*Contact:*\n{_contact(case)}"),
            _text(f"*Channel:*\n{_reply_goes(case)}"),
            *([_text(f"*Coach:*\n<@{case.coach}>")] if case.coach else []),
        ]},
    ]
    question, cut = trim(case.question, QUESTION_LIMIT)
    subject = f"*{escape(case.subject)}*\n" if case.subject else ""
    quote = ">" + escape(question).replace("\n", "\n>")
    question_block: Block = {"type": "section", "block_id": "question",
                             "text": _text(f"{subject}{quote}"[:SECTION_LIMIT])}
    if cut:
        question_block["accessory"] = _button("Show all", A.SHOW, case.ref)
    blocks.append(question_block)
    blocks.append({"type": "section", "text": _text(_topics(case))})
    entities = _entities(case)
    if entities:
        blocks.append({"type": "context", "elements": [_text(entities)]})
    blocks.append({"type": "divider"})
    if data.draft is not None:
        body = data.draft.mrkdwn or data.draft.text
        shown, _ = trim(body, DRAFT_LIMIT)
        author = "" if data.draft.author == "system" else f" (by <@{data.draft.author}>)"
        blocks.append({"type": "section", "block_id": "draft", "text": _text(
            f"*Draft v{data.draft.version}*{author}\n{safe_mrkdwn(shown)}"[:SECTION_LIMIT])})
    else:
        blocks.append({"type": "section", "text": _text(S.NO_DRAFT)})
    blocks.extend(_card_actions(data))
    history = _history(data.history, calendar)
    if history:
        blocks.append({"type": "context", "elements": [_text(history)]})
    fallback = f"{case.ref} ({city}): {status}"
    return fallback, blocks


def _card_actions(data: CardData) -> list[Block]:
    case, ref = data.case, data.case.ref
    elements: list[Block] = []
    if case.status in REVIEWABLE:
        elements += [
            _button("Approve & send", A.APPROVE, ref, "primary", confirm={
                "title": _plain("Send this reply?"),
                "text": _text(f"The draft goes to the city now ({_reply_goes(case)})."),
                "confirm": _plain("Send"), "deny": _plain("Not yet")}),
            _button("Edit", A.EDIT, ref),
            _button("Change topics", A.TOPICS, ref),
            _button("Reject", A.REJECT, ref, "danger"),
        ]
    elif case.status == "received":
        elements.append(_button("Reject", A.REJECT, ref, "danger"))
    if data.followups_enabled and case.status in ("sent", "follow_up_scheduled"):
        scheduled = [f for f in data.followups if f.status == "scheduled"]
        if not scheduled:
            elements.append(_button("Schedule follow-up", A.SCHEDULE, ref))
        for followup in scheduled:
            if followup.starts_at <= data.now:  # the call has begun: time to say how it went
                elements.append(_button("Log outcome", A.OUTCOME, str(followup.id)))
                break
    if case.status not in ("rejected", "closed"):
        select: Block = {"type": "users_select", "action_id": A.ASSIGN,
                         "placeholder": _plain("Assign coach")}
        if case.coach:
            select["initial_user"] = case.coach
        elements.append(select)
    if not elements:
        return []
    return [{"type": "actions", "block_id": f"case:{ref}", "elements": elements[:25]}]


def sections(mrkdwn: str, limit: int = SECTION_LIMIT, most: int = 45) -> list[Block]:
    """Long mrkdwn as section blocks, split between paragraphs."""
    blocks: list[Block] = []
    current = ""
    for paragraph in mrkdwn.split("\n\n"):
        while len(paragraph) > limit:
            blocks.append({"type": "section", "text": _text(paragraph[:limit])})
            paragraph = paragraph[limit:]
        candidate = f"{current}\n\n{paragraph}" if current else paragraph
        if len(candidate) > limit:
            blocks.append({"type": "section", "text": _text(current)})
            current = paragraph
        else:
            current = candidate
    if current.strip():
        blocks.append({"type": "section", "text": _text(current)})
    return blocks[:most]


def _modal(callback_id: str, title: str, blocks: list[Block], private: str,
           submit: str | None = "Save") -> Block:
    view: Block = {"type": "modal", "callback_id": callback_id, "title": _plain(title, 24),
                   "close": _plain("Cancel"), "blocks": blocks, "private_metadata": private}
    if submit:
        view["submit"] = _plain(submit)
    return view


def edit_modal(ref: str, text: str, private: str) -> Block:
    initial = text[:INPUT_LIMIT]
    blocks: list[Block] = []
    if len(text) > INPUT_LIMIT:
        blocks.append({"type": "context", "elements": [
            _text(S.EDIT_LONG_NOTE.format(limit=INPUT_LIMIT))]})
    blocks.append({"type": "input", "block_id": "draft", "label": _plain(f"Reply for {ref}"),
                   "element": {"type": "plain_text_input", "action_id": "text",
                               "multiline": True, "initial_value": initial}})
    return _modal(V.EDIT, "Edit the reply", blocks, private)


def _option(topic: str) -> Block:
    return {"text": _plain(S.TOPIC_LABELS[topic]), "value": topic}


def topics_modal(ref: str, current: Sequence[str], private: str) -> Block:
    """The main topic on its own, as a multi-select does not say which one comes first: the
    classifier learns the order from these corrections too."""
    known = [t for t in current if t in TOPICS]
    main: Block = {"type": "static_select", "action_id": "topic",
                   "placeholder": _plain("What the question is mainly about"),
                   "options": [_option(t) for t in TOPICS]}
    others: Block = {"type": "multi_static_select", "action_id": "topics",
                     "max_selected_items": 2, "placeholder": _plain("Up to two more"),
                     "options": [_option(t) for t in TOPICS]}
    if known:
        main["initial_option"] = _option(known[0])
    if known[1:]:
        others["initial_options"] = [_option(t) for t in known[1:3]]
    blocks: list[Block] = [
        {"type": "section", "text": _text(f"Topics for *{ref}*. The draft is made again "
                                          "from them, and the change teaches the classifier.")},
        {"type": "input", "block_id": "main", "label": _plain("Main topic"), "element": main},
        {"type": "input", "block_id": "others", "label": _plain("Other topics"),
         "optional": True, "element": others},
    ]
    return _modal(V.TOPICS, "Change topics", blocks, private, submit="Redraft")


def reject_modal(ref: str, private: str) -> Block:
    blocks: list[Block] = [
        {"type": "input", "block_id": "reason", "label": _plain(f"Why reject {ref}?"),
         "element": {"type": "plain_text_input", "action_id": "text", "multiline": True,
                     "max_length": 1000}},
        {"type": "input", "block_id": "decline", "optional": True,
         "label": _plain("Tell the city"),
         "element": {"type": "checkboxes", "action_id": "send", "options": [
             {"text": _plain("Send a polite decline"), "value": "yes"}]}},
    ]
    return _modal(V.REJECT, "Reject", blocks, private, submit="Reject")


def question_modal(ref: str, question: str) -> Block:
    blocks = [{"type": "section", "text": _text(escape(chunk))}
              for chunk in _chunks(question, SECTION_LIMIT - 100)][:50]
    return _modal(V.QUESTION, ref, blocks, metadata(ref), submit=None)


def _chunks(text: str, size: int) -> list[str]:
    return [text[i:i + size] for i in range(0, len(text), size)] or [""]
