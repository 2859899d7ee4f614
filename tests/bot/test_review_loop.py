"""The whole Slack loop over real HTTP: a mention opens a case, the thread gets the
acknowledgement, the review channel gets a card, a reviewer approves it, the reply lands in the
original thread exactly once and the card is redrawn in place."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from sqlalchemy import func, select

from bot import strings as S
from bot.blocks import A
from desk.models import Draft, Outbox
from tests.bot.conftest import (
    CITY_USER,
    OUTSIDER,
    REVIEW_CHANNEL,
    STRANGER,
    Slack,
    action_ids,
    card_text,
)


async def ask(slack: Slack, text: str = "How do we improve our bond rating before we issue?",
              **kwargs: Any) -> str:
    event = slack.mention(text, **kwargs)
    response = await slack.event(event)
    assert response.status_code == 200
    await slack.settle()
    return str(event["ts"])


async def test_mention_to_reply_in_the_same_thread(slack: Slack) -> None:
    question_ts = await ask(slack)
    case = await slack.case()
    assert case.status == "drafted" and case.city is not None
    assert case.thread_key == f"CCITY:{question_ts}"

    # The acknowledgement: in the question's thread, with the reference and the due date.
    thread_posts = [p for p in slack.posts("CCITY") if p.get("thread_ts") == question_ts]
    assert len(thread_posts) == 1
    assert "C-2026-0001" in thread_posts[0]["text"]
    assert "Monday, November 30, 2026" in thread_posts[0]["text"]

    # The card: in the review channel, with everything a reviewer needs.
    card = slack.card(case)
    text = card_text(card)
    assert case.review_channel == REVIEW_CHANNEL
    for expected in ("C-2026-0001", "Fall River, MA", "Dana Cruz", "bond rating",
                     "Budget & finance (90%)", "business days", "Draft v1"):
        assert expected in text, expected
    assert {A.APPROVE, A.EDIT, A.TOPICS, A.REJECT, A.ASSIGN} <= set(action_ids(card))

    response = await slack.click(A.APPROVE, case.ref, card=(REVIEW_CHANNEL, case.review_ts or ""))
    assert response.status_code == 200
    await slack.settle()

    case = await slack.case()
    assert case.status == "sent" and case.first_response_at is not None
    async with slack.service.store.session() as session:
        draft = (await session.execute(select(Draft).where(Draft.case_id == case.id))).scalar_one()
    replies = [p for p in slack.posts("CCITY") if p.get("thread_ts") == question_ts]
    assert len(replies) == 2  # the acknowledgement, then the reply
    reply = replies[1]
    assert card_text(reply).count(draft.mrkdwn.split("\n")[0]) >= 1
    assert "http://311.test/p/" in card_text(reply)  # the package page, as a link

    updated = slack.card(case)
    assert "Reply sent" in card_text(updated)
    assert A.APPROVE not in action_ids(updated)
    history = [m["text"] for m in slack.api.thread(REVIEW_CHANNEL, case.review_ts or "")]
    assert "Approved by <@UREV1>" in history
    assert "Reply sent by slack" in history


@pytest.mark.parametrize("database", ["sqlite", "postgresql"], indirect=True)
async def test_two_reviewers_approving_at_once_send_one_reply(slack: Slack) -> None:
    question_ts = await ask(slack)
    case = await slack.case()
    responses = await asyncio.gather(
        slack.click(A.APPROVE, case.ref, user="UREV1"),
        slack.click(A.APPROVE, case.ref, user="UREV2"))
    assert [r.status_code for r in responses] == [200, 200]
    await slack.settle()
    replies = [p for p in slack.posts("CCITY") if p.get("thread_ts") == question_ts]
    assert len(replies) == 2  # ack + exactly one reply
    told = slack.ephemerals("UREV1") + slack.ephemerals("UREV2")
    assert len(told) == 1 and "already" in told[0]
    async with slack.service.store.session() as session:
        count = await session.execute(select(func.count()).select_from(Outbox).where(
            Outbox.kind == "reply"))
        assert count.scalar_one() == 1


async def test_non_reviewer_is_refused_and_nothing_changes(slack: Slack) -> None:
    await ask(slack)
    before = len(slack.api.calls_to("chat.update"))
    await slack.click(A.APPROVE, "C-2026-0001", user=OUTSIDER)
    await slack.click(A.EDIT, "C-2026-0001", user=OUTSIDER)
    await slack.settle()
    assert (await slack.case()).status == "drafted"
    refusals = slack.ephemerals(OUTSIDER)
    assert len(refusals) == 2 and all("Only reviewers" in r for r in refusals)
    assert slack.api.calls_to("views.open") == []
    assert len(slack.api.calls_to("chat.update")) == before


async def test_edit_in_a_modal_then_approve_sends_the_edited_text(slack: Slack) -> None:
    question_ts = await ask(slack)
    case = await slack.case()
    await slack.click(A.EDIT, case.ref, card=(REVIEW_CHANNEL, case.review_ts or ""))
    await slack.settle()
    view = slack.last_view()
    assert view["callback_id"] == "edit_draft"
    async with slack.service.store.session() as session:
        draft = await slack.service.desk.latest_draft(session, case.id)
    assert draft is not None
    assert view["blocks"][-1]["element"]["initial_value"] == draft.mrkdwn

    empty = await slack.submit(view, {"draft": {"text": {"type": "plain_text_input",
                                                         "value": "   "}}})
    assert empty.json() == {"response_action": "errors",
                            "errors": {"draft": "The reply cannot be empty."}}
    too_long = await slack.submit(view, {"draft": {"text": {"type": "plain_text_input",
                                                            "value": "x" * 3001}}})
    assert too_long.json()["response_action"] == "errors"

    edited = "Dear Dana, *three* guides on bond ratings: <https://example.org/bonds|Bonds 101>"
    ok = await slack.submit(view, {"draft": {"text": {"type": "plain_text_input",
                                                      "value": edited}}})
    assert ok.status_code == 200 and ok.text == ""
    await slack.settle()
    history = [m["text"] for m in slack.api.thread(REVIEW_CHANNEL, case.review_ts or "")]
    assert "Edited by <@UREV1>" in history
    assert "Draft v2" in card_text(slack.card(case))

    await slack.click(A.APPROVE, case.ref)
    await slack.settle()
    reply = [p for p in slack.posts("CCITY") if p.get("thread_ts") == question_ts][-1]
    assert reply["text"] == edited


async def test_change_topics_redrafts_and_records_the_correction(slack: Slack) -> None:
    await ask(slack)
    case = await slack.case()
    await slack.click(A.TOPICS, case.ref)
    await slack.settle()
    view = slack.last_view()
    assert view["callback_id"] == "change_topics"
    main, others = (b["element"] for b in view["blocks"][-2:])
    assert len(main["options"]) == len(others["options"]) == 10
    assert main["initial_option"]["value"] == "budget_finance"
    assert "initial_options" not in others and others["max_selected_items"] == 2

    def option(topic: str) -> dict[str, Any]:
        return {"text": {"type": "plain_text", "text": topic}, "value": topic}

    def state(main: str | None, *others: str) -> dict[str, Any]:
        return {"main": {"topic": {"type": "static_select",
                                   "selected_option": option(main) if main else None}},
                "others": {"topics": {"type": "multi_static_select",
                                      "selected_options": [option(t) for t in others]}}}

    no_main = await slack.submit(view, state(None, "housing"))
    assert no_main.json() == {"response_action": "errors", "errors": {"main": S.TOPIC_MAIN}}
    four = await slack.submit(view, state("housing", "infrastructure", "public_safety",
                                          "budget_finance"))
    assert four.json()["errors"] == {"others": S.TOPICS_COUNT}
    # The main topic picked again among the others counts once, and comes first.
    ok = await slack.submit(view, state("infrastructure", "housing", "infrastructure"))
    assert ok.status_code == 200
    await slack.settle()
    case = await slack.case()
    assert [t["topic"] for t in case.topics] == ["infrastructure", "housing"]
    corrections = await slack.service.store.list_corrections()
    assert len(corrections) == 1 and corrections[0].previous == ["budget_finance"]
    assert corrections[0].topics == ["infrastructure", "housing"]
    assert corrections[0].actor == "UREV1"
    text = card_text(slack.card(case))
    assert "Housing" in text and "Draft v2" in text


async def test_reject_with_a_polite_decline(slack: Slack) -> None:
    question_ts = await ask(slack)
    case = await slack.case()
    await slack.click(A.REJECT, case.ref)
    await slack.settle()
    view = slack.last_view()
    assert view["callback_id"] == "reject_case"
    no_reason = await slack.submit(view, {"reason": {"text": {"value": ""}},
                                          "decline": {"send": {"selected_options": []}}})
    assert no_reason.json()["errors"] == {"reason": "Say why, in a few words."}
    reason = "Outside our remit <!channel> & state law"
    ok = await slack.submit(view, {
        "reason": {"text": {"value": reason}},
        "decline": {"send": {"selected_options": [{"value": "yes"}]}}})
    assert ok.status_code == 200
    await slack.settle()
    assert (await slack.case()).status == "rejected"
    decline = [p for p in slack.posts("CCITY") if p.get("thread_ts") == question_ts][-1]
    assert "not able to take on this question" in decline["text"]
    assert "&lt;!channel&gt; &amp; state law" in decline["text"]
    assert "<!channel>" not in card_text(decline)
    history = [m["text"] for m in slack.api.thread(REVIEW_CHANNEL, case.review_ts or "")]
    assert any(h.startswith("Rejected by <@UREV1>: Outside our remit &lt;!channel&gt;")
               for h in history)


async def test_assign_coach_with_the_user_picker(slack: Slack) -> None:
    await ask(slack)
    case = await slack.case()
    await slack.click(A.ASSIGN, case.ref, extra={"type": "users_select", "value": None,
                                                 "selected_user": "UCOACH1"})
    await slack.settle()
    case = await slack.case()
    assert case.coach == "UCOACH1"
    assert "<@UCOACH1>" in card_text(slack.card(case))
    select_block = [b for b in slack.card(case)["blocks"] if b["type"] == "actions"][0]
    picker = [e for e in select_block["elements"] if e["type"] == "users_select"][0]
    assert picker["initial_user"] == "UCOACH1"


async def test_unknown_slack_user_gets_a_case_for_triage_and_an_answer(slack: Slack) -> None:
    question_ts = await ask(slack, "Where do we start with vacant lots?", user=STRANGER)
    case = await slack.case()
    assert case.status == "needs_triage" and case.city is None
    thread = [p for p in slack.posts("CCITY") if p.get("thread_ts") == question_ts]
    assert len(thread) == 1 and "C-2026-0001" in thread[0]["text"]
    assert "could not match" in thread[0]["text"]
    text = card_text(slack.card(case))
    assert "Needs triage" in text and "unknown sender" in text


async def test_later_messages_in_the_thread_join_the_case(slack: Slack) -> None:
    question_ts = await ask(slack)
    follow = slack.message("Also: we are rated A2 today.", thread_ts=question_ts)
    assert (await slack.event(follow)).status_code == 200
    unrelated = slack.message("Lunch anyone?", thread_ts="1111.2222")
    assert (await slack.event(unrelated)).status_code == 200
    await slack.settle()
    assert len(await slack.cases()) == 1
    case = await slack.case()
    notices = slack.api.thread(REVIEW_CHANNEL, case.review_ts or "")
    assert any("we are rated A2 today." in m["text"] for m in notices)


async def test_direct_message_opens_a_case(slack: Slack) -> None:
    event = slack.message("How should we budget for snow removal?", channel="DCITY",
                          channel_type="im")
    assert (await slack.event(event)).status_code == 200
    await slack.settle()
    case = await slack.case()
    assert case.thread_key == f"DCITY:{event['ts']}"
    assert case.contact is not None and case.contact.slack_user_id == CITY_USER

