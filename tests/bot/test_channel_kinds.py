"""The outbox kinds other parts of the service queue for Slack: notices, reminders,
escalations, coach reminders, and card updates (which show "late" after the deadline)."""

from __future__ import annotations

from typing import Any

from desk.outbox import enqueue
from tests.bot.conftest import REVIEW_CHANNEL, Slack, card_text


async def queue(slack: Slack, kind: str, payload: dict[str, Any], case_id: int | None) -> None:
    async with slack.service.store.session() as session:
        await enqueue(session, kind=kind, channel="slack", key=f"{kind}:{len(payload)}:test",
                      case_id=case_id, now=slack.clock.now(), payload=payload)


async def opened(slack: Slack) -> int:
    await slack.event(slack.mention("How do we improve our bond rating?"))
    await slack.settle()
    return (await slack.case()).id


async def test_reminder_notice_and_escalation_land_where_people_look(slack: Slack) -> None:
    case_id = await opened(slack)
    case = await slack.case()
    await queue(slack, "reminder", {"text": "C-2026-0001 is due tomorrow.",
                                    "mention": ["UREV1", "UREV2"]}, case_id)
    await queue(slack, "notice", {"text": "New message from the city on this case.",
                                  "quote": "<!channel> urgent & important"}, case_id)
    await queue(slack, "escalation", {"text": "C-2026-0001 is late."}, case_id)
    await queue(slack, "coach_reminder", {"user": "UCOACH1",
                                          "text": "Call with Fall River in an hour."}, case_id)
    await slack.settle()
    thread = [m["text"] for m in slack.api.thread(REVIEW_CHANNEL, case.review_ts or "")]
    assert "<@UREV1> <@UREV2> C-2026-0001 is due tomorrow." in thread
    assert ("New message from the city on this case.\n>&lt;!channel&gt; urgent &amp; important"
            in thread)
    escalated = slack.posts("CESCALATE")
    assert len(escalated) == 1 and escalated[0]["text"] == "*C-2026-0001*: C-2026-0001 is late."
    dm = slack.posts("UCOACH1")
    assert len(dm) == 1 and dm[0]["text"] == "Call with Fall River in an hour."


async def test_a_notice_without_a_card_goes_to_the_review_channel(slack: Slack) -> None:
    await queue(slack, "notice", {"text": "An email we sent bounced: d***@city.test."}, None)
    await slack.settle()
    posts = slack.posts(REVIEW_CHANNEL)
    assert [p["text"] for p in posts] == ["An email we sent bounced: d***@city.test."]
    assert "thread_ts" not in posts[0]


async def test_the_card_turns_late_after_the_deadline(slack: Slack) -> None:
    await opened(slack)
    case = await slack.case()
    assert "3 business days left" in card_text(slack.card(case))
    slack.clock.set(case.due_at.replace(hour=case.due_at.hour + 3))
    await slack.service.desk.assign(case.ref, "UREV1", assignee="UREV2")
    await slack.settle()
    assert "late by 3 h" in card_text(slack.card(case))
