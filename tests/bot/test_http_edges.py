"""What Slack's HTTP contract demands: signatures, retries, duplicate events, escaping,
rate limits and outages, and the smaller entry points (commands, shortcut, DMs)."""

from __future__ import annotations

import copy
import json
import time
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import func, select

from bot.blocks import A
from bot.channel import SlackChannel
from desk.envelope import InboundMessage
from desk.errors import PermanentDeliveryError, TransientDeliveryError
from desk.models import Message, Outbox, SeenEvent
from desk.ports import OutboundItem
from tests.bot.conftest import CITY_USER, REVIEW_CHANNEL, Slack, card_text, payload, sign


async def count(slack: Slack, model: type, *where: Any) -> int:
    async with slack.service.store.session() as session:
        result = await session.execute(select(func.count()).select_from(model).where(*where))
        return int(result.scalar_one())


def mention_body(slack: Slack, text: str = "How do we fund road repairs?") -> str:
    body = copy.deepcopy(payload("events_api_app_mention.json"))
    body["event"] = slack.mention(text)
    return json.dumps(body)


@pytest.mark.parametrize("headers", [
    pytest.param({"X-Slack-Signature": "v0=" + "0" * 64}, id="bad-signature"),
    pytest.param({"X-Slack-Signature": "", "X-Slack-Request-Timestamp": ""}, id="no-headers"),
])
async def test_unsigned_requests_are_refused_and_nothing_is_stored(
        slack: Slack, headers: dict[str, str]) -> None:
    body = mention_body(slack)
    signed = {"Content-Type": "application/json", **sign(body), **headers}
    signed = {k: v for k, v in signed.items() if v}
    response = await slack.http.post("/slack/events", content=body, headers=signed)
    assert response.status_code == 401
    await slack.settle()
    assert await count(slack, Message) == 0
    assert await count(slack, SeenEvent) == 0
    assert slack.api.calls_to("chat.postMessage") == []


async def test_a_signature_older_than_five_minutes_is_refused(slack: Slack) -> None:
    body = mention_body(slack)
    old = int(time.time()) - 6 * 60
    headers = {"Content-Type": "application/json", **sign(body, timestamp=old)}
    response = await slack.http.post("/slack/events", content=body, headers=headers)
    assert response.status_code == 401
    await slack.settle()
    assert await count(slack, Message) == 0


async def test_url_verification_answers_the_challenge(slack: Slack) -> None:
    body = payload("events_api_url_verification.json")
    response = await slack.post(json.dumps(body), "application/json")
    assert response.status_code == 200
    assert response.json() == {"challenge": body["challenge"]}


async def test_a_retried_event_opens_one_case(slack: Slack) -> None:
    event = slack.mention("How do we fund road repairs?")
    first = await slack.event(event, event_id="EvSAME")
    retry = await slack.event(event, event_id="EvSAME", headers={
        "X-Slack-Retry-Num": "1", "X-Slack-Retry-Reason": "http_timeout"})
    again = await slack.event(event, event_id="EvSAME")  # same id, no retry header
    assert [r.status_code for r in (first, retry, again)] == [200, 200, 200]
    await slack.settle()
    assert len(await slack.cases()) == 1
    assert await count(slack, Message) == 1
    assert len([p for p in slack.posts("CCITY") if p.get("thread_ts") == event["ts"]]) == 1


async def test_a_question_cannot_ping_the_channel_or_forge_a_link(slack: Slack) -> None:
    # As Slack encodes it: a real @channel, a typed "<!here>", a link, and an ampersand.
    text = ("<!channel> what does &lt;!here&gt; mean for <https://evil.example|our bonds> "
            "&amp; taxes?")
    await slack.event(slack.mention(text))
    await slack.settle()
    case = await slack.case()
    assert case.question == ("@channel what does <!here> mean for our bonds "
                             "(https://evil.example) & taxes?")
    shown = card_text(slack.card(case))
    assert "<!" not in shown and "<https://evil" not in shown
    assert "&lt;!here&gt;" in shown and "&amp; taxes" in shown


async def test_an_email_question_is_escaped_on_the_card_and_says_where_the_reply_goes(
        slack: Slack) -> None:
    body = "Hello <!channel> & <@U999>, how do we set up a land bank? <http://x.test|click>"
    inbound = InboundMessage(
        channel="email", external_id="<q1@fallriverma.org>",
        received_at=datetime(2026, 11, 24, 15, 0, tzinfo=UTC), text=body, reply_text=body,
        raw=body.encode(), subject="Land <bank>", sender_email="dana@fallriverma.org")
    received = await slack.service.on_inbound(inbound)
    assert received.created
    await slack.settle()
    case = await slack.case()
    shown = card_text(slack.card(case))
    assert "&lt;!channel&gt; &amp; &lt;@U999&gt;" in shown
    assert "&lt;http://x.test|click&gt;" in shown and "Land &lt;bank&gt;" in shown
    assert "<!channel>" not in shown and "<@U999>" not in shown
    assert "Email to dana@fallriverma.org" in shown


async def test_a_429_then_success_posts_one_reply(slack: Slack) -> None:
    event = slack.mention("How do we fund road repairs?")
    await slack.event(event)
    await slack.settle()
    slack.api.fail("chat.postMessage", status=429, retry_after=0)
    await slack.click(A.APPROVE, "C-2026-0001")
    await slack.settle()
    replies = [p for p in slack.posts("CCITY") if p.get("thread_ts") == event["ts"]]
    assert len(replies) == 2  # ack + one reply
    assert any(c.status == 429 for c in slack.api.calls)
    assert (await slack.case()).status == "sent"


async def test_a_long_outage_is_retried_later_and_still_posts_once(slack: Slack) -> None:
    event = slack.mention("How do we fund road repairs?")
    await slack.event(event)
    await slack.settle()
    # More failures than the client retries by itself: the outbox takes over.
    slack.api.fail("chat.postMessage", status=500, times=2)
    await slack.click(A.APPROVE, "C-2026-0001")
    await slack.settle()
    async with slack.service.store.session() as session:
        row = (await session.execute(select(Outbox).where(Outbox.kind == "reply"))).scalar_one()
    assert row.status == "pending" and row.attempts == 1 and "500" in (row.last_error or "")
    slack.clock.advance(minutes=5)
    await slack.settle()
    replies = [p for p in slack.posts("CCITY") if p.get("thread_ts") == event["ts"]]
    assert len(replies) == 2
    assert slack.api.calls_to("conversations.replies")  # looked before posting again
    assert (await slack.case()).status == "sent"


async def test_redelivery_after_a_crash_finds_the_posted_reply(slack: Slack) -> None:
    """The dispatcher dies after Slack took the reply but before the row was marked sent:
    the next attempt finds the message by its metadata instead of posting it again."""
    event = slack.mention("How do we fund road repairs?")
    await slack.event(event)
    await slack.settle()
    await slack.click(A.APPROVE, "C-2026-0001")
    await slack.bot.drain()
    async with slack.service.store.session() as session:
        row = (await session.execute(select(Outbox).where(Outbox.kind == "reply"))).scalar_one()
    item = OutboundItem(id=row.id, kind=row.kind, channel=row.channel, case_id=row.case_id,
                        case_ref="C-2026-0001", idempotency_key=row.idempotency_key,
                        payload=row.payload, attempts=1)
    first = await slack.bot.channel.deliver(item)
    again = await slack.bot.channel.deliver(OutboundItem(**{**item.__dict__, "attempts": 2}))
    assert again.external_id == first.external_id
    replies = [p for p in slack.posts("CCITY") if p.get("thread_ts") == event["ts"]]
    assert len(replies) == 2  # ack + one reply


async def test_permanent_errors_are_not_retried(slack: Slack) -> None:
    channel: SlackChannel = slack.bot.channel
    item = OutboundItem(id=1, kind="ack", channel="slack", case_id=None, case_ref="C-2026-0009",
                        idempotency_key="ack:test", payload={"thread_key": "CGONE1:1.2",
                                                            "due_text": "Monday"})
    with pytest.raises(PermanentDeliveryError, match="channel_not_found"):
        await channel.deliver(item)
    with pytest.raises(PermanentDeliveryError, match="cannot deliver"):
        await channel.deliver(OutboundItem(**{**item.__dict__, "kind": "carrier_pigeon"}))
    slack.api.fail("chat.postMessage", error="invalid_auth")
    with pytest.raises(PermanentDeliveryError, match="invalid_auth"):
        await channel.deliver(OutboundItem(**{**item.__dict__, "payload": {
            "thread_key": "CCITY:1.2", "due_text": "Monday"}}))
    slack.api.fail("chat.postMessage", status=429, retry_after=1, times=2)
    with pytest.raises(TransientDeliveryError) as caught:
        await channel.deliver(OutboundItem(**{**item.__dict__, "payload": {
            "thread_key": "CCITY:1.2", "due_text": "Monday"}}))
    assert caught.value.retry_after == 1


async def test_bot_messages_are_ignored(slack: Slack) -> None:
    other_bot = {**slack.message("I am a bot", channel="DCITY", channel_type="im"),
                 "bot_id": "BOTHER", "subtype": "bot_message"}
    ourselves = {**slack.message("Thanks, we have your question", channel="DCITY",
                                 channel_type="im"), "user": "UBOT311", "bot_id": "BBOT311"}
    edited = {**slack.message("edited", channel="DCITY", channel_type="im"),
              "subtype": "message_changed"}
    under_a_card = slack.mention("can someone take this one?", user="UREV1",
                                 channel=REVIEW_CHANNEL, thread_ts="1700000000.000009")
    for event in (other_bot, ourselves, edited, under_a_card):
        assert (await slack.event(event)).status_code == 200
    await slack.settle()
    assert await slack.cases() == []


async def test_help_and_status_commands(slack: Slack) -> None:
    help_ = await slack.command("help")
    assert "/311 ask" in help_.json()["text"]
    usage = await slack.command("status")
    assert "/311 status C-2026-0001" in usage.json()["text"]
    # The status itself comes through the response URL, after an immediate empty ack.
    missing = await slack.command("status C-2026-0042")
    assert missing.status_code == 200 and not missing.content
    await slack.settle()
    assert await told(slack) == "There is no case C-2026-0042."
    await slack.event(slack.mention("How do we budget for road repairs?"))
    await slack.settle()
    await slack.command("status c-2026-0001")
    await slack.settle()
    text = await told(slack)
    assert text.startswith("*C-2026-0001* (Fall River, MA)")
    assert "Drafted" in text and "Monday, November 30, 2026" in text
    assert "3 business days left" in text
    unknown = await slack.command("dance")
    assert "I don't know `dance`" in unknown.json()["text"]


async def told(slack: Slack) -> str:
    """The latest ephemeral message sent through the slash command's response URL."""
    sent = [r for r in slack.api.responses if r["name"] == "command"]
    assert sent and sent[-1]["response_type"] == "ephemeral"
    return str(sent[-1]["text"])


async def test_ask_command_opens_a_case_with_a_thread(slack: Slack) -> None:
    response = await slack.command("ask How do we <b>fund</b> road repairs?")
    assert response.status_code == 200 and "opening a case" in response.json()["text"]
    await slack.settle()
    case = await slack.case()
    asked = slack.posts("CCITY")[0]
    assert case.thread_key.startswith("CCITY:")
    assert "&lt;b&gt;fund&lt;/b&gt;" in asked["text"] and f"<@{CITY_USER}>" in asked["text"]
    thread_ts = case.thread_key.split(":")[1]
    ack = [p for p in slack.posts("CCITY") if p.get("thread_ts") == thread_ts]
    assert len(ack) == 1 and "C-2026-0001" in ack[0]["text"]


async def test_send_to_311_shortcut(slack: Slack) -> None:
    body = copy.deepcopy(payload("block_actions.json"))
    for key in ("actions", "container", "trigger_id"):
        body.pop(key)
    body.update({
        "type": "message_action", "callback_id": "send_to_311", "trigger_id": "1.2.3",
        "user": {"id": "UREV1"}, "channel": {"id": "CPUBLIC", "name": "cities"},
        "response_url": slack.api.response_url("shortcut"),
        "message": {"type": "message", "user": CITY_USER, "ts": "1764000100.000200",
                    "text": "Does anyone have a good vacant property registry ordinance?"},
    })
    assert (await slack.interaction(body)).status_code == 200
    await slack.settle()
    case = await slack.case()
    assert case.thread_key == "CPUBLIC:1764000100.000200"
    assert case.contact is not None and case.contact.slack_user_id == CITY_USER
    told = [r for r in slack.api.responses if r["name"] == "shortcut"]
    assert told and "C-2026-0001" in told[0]["text"]


async def test_show_all_opens_the_whole_question(slack: Slack) -> None:
    long_question = "How do we fund road repairs? " + "We have many potholes. " * 60
    await slack.event(slack.mention(long_question.strip()))
    await slack.settle()
    case = await slack.case()
    card = slack.card(case)
    question = [b for b in card["blocks"] if b.get("block_id") == "question"][0]
    assert question["accessory"]["action_id"] == A.SHOW
    assert len(question["text"]["text"]) < 700
    await slack.click(A.SHOW, case.ref, user="UOUTSIDE")  # reading is open to everyone
    await slack.settle()
    view = slack.last_view()
    assert "".join(b["text"]["text"] for b in view["blocks"]) == case.question


@pytest.mark.parametrize("slack_overrides", [{"reviewers": [], "reviewer_group": "SREV"}])
async def test_members_of_the_reviewer_group_may_approve(slack: Slack) -> None:
    slack.api.usergroups["SREV"] = ["UOUTSIDE"]
    await slack.event(slack.mention("How do we budget for road repairs?"))
    await slack.settle()
    await slack.click(A.APPROVE, "C-2026-0001", user="UREV1")  # no longer a reviewer
    await slack.settle()
    assert (await slack.case()).status == "drafted"
    await slack.click(A.APPROVE, "C-2026-0001", user="UOUTSIDE")
    await slack.settle()
    assert (await slack.case()).status == "sent"
    assert len(slack.api.calls_to("usergroups.users.list")) == 1  # cached
