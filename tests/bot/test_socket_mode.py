"""The Slack app over Socket Mode, wired as ``city311 serve`` wires it: the worker opens the
socket with the app-level token against the local Slack stand-in, which pushes envelopes the
way Slack does and records the app's acknowledgements. No signing secret, as a workspace behind
a firewall runs it."""

from __future__ import annotations

import asyncio
import json
import urllib.parse
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from bot import strings as S
from bot.blocks import A
from city311.worker import Worker
from tests.bot.conftest import REVIEW_CHANNEL, SECRET, Slack, action_ids, card_text
from tests.servers.slack_api import APP_TOKEN, SlackApi

WAIT = 15.0  # seconds a condition may take before the test fails


@pytest.fixture
def slack_overrides() -> dict[str, Any]:
    return {"app_token": APP_TOKEN, "signing_secret": ""}


@dataclass
class SocketSlack(Slack):
    """The harness's Slack helpers, each request sent as a Socket Mode envelope instead of an
    HTTP POST; the acknowledgement comes back as the response's JSON."""

    sent: list[tuple[str, dict[str, Any]]] = field(default_factory=list)  # (envelope id, ack)

    async def post(self, body: str, content_type: str, *,
                   headers: dict[str, str] | None = None) -> httpx.Response:
        if content_type == "application/json":
            kind, payload = "events_api", json.loads(body)
        else:
            fields = dict(urllib.parse.parse_qsl(body, keep_blank_values=True))
            if "payload" in fields:
                kind, payload = "interactive", json.loads(fields["payload"])
            else:
                kind, payload = "slash_commands", fields
        envelope_id = await self.api.push(kind, payload)
        ack = await self.api.ack(envelope_id)
        self.sent.append((envelope_id, ack))
        return httpx.Response(200, json=ack.get("payload") or {})


async def until(check: Callable[[], Awaitable[bool]], what: str) -> None:
    async def poll() -> None:
        while not await check():
            await asyncio.sleep(0.05)

    try:
        await asyncio.wait_for(poll(), timeout=WAIT)
    except TimeoutError:
        raise AssertionError(f"never happened: {what}") from None


@pytest.fixture
async def socket(slack: Slack) -> AsyncIterator[SocketSlack]:
    """The worker as ``city311 worker`` runs it: Socket Mode, the outbox, the clocks."""
    stop = asyncio.Event()
    worker = asyncio.create_task(Worker(slack.service).run(stop))
    await slack.api.connected()
    yield SocketSlack(slack.api, slack.service, slack.bot, slack.http, slack.clock)
    stop.set()
    await worker


def opened_with(api: SlackApi) -> list[str | None]:
    return [c.token for c in api.calls if c.method == "apps.connections.open"]


async def ask(socket: SocketSlack, text: str = "How do we improve our bond rating before we issue?"
              ) -> str:
    event = socket.mention(text)
    response = await socket.event(event)
    assert response.status_code == 200
    envelope_id, ack = socket.sent[-1]
    assert ack == {"envelope_id": envelope_id}  # an event's ack carries no payload
    return str(event["ts"])


async def card_posted(socket: SocketSlack, count: int = 1) -> None:
    async def posted() -> bool:
        return len(socket.posts(REVIEW_CHANNEL)) >= count

    await until(posted, f"review card {count}")


async def test_a_mention_over_the_socket_opens_a_case_and_the_card_follows(
        socket: SocketSlack) -> None:
    # The app-level token, not the bot's: once to check it, once to connect.
    assert opened_with(socket.api) == [APP_TOKEN, APP_TOKEN]
    assert len(socket.api.sockets) == 1

    question_ts = await ask(socket)
    await card_posted(socket)

    case = await socket.case()
    assert case.status == "drafted" and case.thread_key == f"CCITY:{question_ts}"
    card = socket.card(case)
    assert case.review_channel == REVIEW_CHANNEL
    assert "C-2026-0001" in card_text(card) and "Fall River, MA" in card_text(card)
    assert A.APPROVE in action_ids(card)

    def acknowledgements() -> list[dict[str, Any]]:
        return [p for p in socket.posts("CCITY") if p.get("thread_ts") == question_ts]

    async def acknowledged() -> bool:
        return bool(acknowledgements())

    # The acknowledgement and the card are separate deliveries: either may land first.
    await until(acknowledged, "the acknowledgement in the thread")
    assert len(acknowledgements()) == 1 and "C-2026-0001" in acknowledgements()[0]["text"]


async def test_two_questions_over_the_socket_open_two_cases(socket: SocketSlack) -> None:
    await ask(socket)
    await ask(socket, "When is the next street sweeping on Main Street?")
    await card_posted(socket, 2)
    assert [c.ref for c in await socket.cases()] == ["C-2026-0001", "C-2026-0002"]


async def test_a_redelivered_event_is_acked_and_opens_no_second_case(
        socket: SocketSlack) -> None:
    await ask(socket)
    await card_posted(socket)
    # A new event id: only the retry number marks this one as already seen.
    body = {"type": "event_callback", "event_id": "EvRETRY001",
            "event": socket.mention("Again?")}
    envelope_id = await socket.api.push("events_api", body, retry_attempt=1,
                                        retry_reason="timeout")
    assert await socket.api.ack(envelope_id) == {"envelope_id": envelope_id}
    await socket.bot.drain()
    assert [c.ref for c in await socket.cases()] == ["C-2026-0001"]


async def test_slash_commands_over_the_socket_get_their_answer_in_the_ack(
        socket: SocketSlack) -> None:
    response = await socket.command("help")
    assert response.json() == {"response_type": "ephemeral", "text": S.HELP}

    response = await socket.command("frobnicate")
    assert response.json()["text"] == S.UNKNOWN_COMMAND.format(command="frobnicate")

    response = await socket.command("ask Can the city refinance its pension bonds?")
    assert response.json() == {"response_type": "ephemeral", "text": S.ASK_RECEIVED}
    await card_posted(socket)
    case = await socket.case()
    assert case.status == "drafted" and case.city is not None
    assert case.city.name == "Fall River"  # CITY_USER's address found the city

    response = await socket.command("status C-2026-0001")
    envelope_id, ack = socket.sent[-1]
    assert ack == {"envelope_id": envelope_id}  # the status follows on the response URL

    async def told() -> bool:
        return any(r["name"] == "command" and "C-2026-0001" in r.get("text", "")
                   for r in socket.api.responses)

    await until(told, "the status on the response URL")


async def test_approve_over_the_socket_sends_the_reply(socket: SocketSlack) -> None:
    question_ts = await ask(socket)
    await card_posted(socket)
    case = await socket.case()

    response = await socket.click(A.APPROVE, case.ref,
                                  card=(REVIEW_CHANNEL, case.review_ts or ""))
    assert response.status_code == 200
    envelope_id, ack = socket.sent[-1]
    assert ack["envelope_id"] == envelope_id

    async def sent() -> bool:
        return (await socket.case()).status == "sent"

    await until(sent, "the case sent")
    replies = [p for p in socket.posts("CCITY") if p.get("thread_ts") == question_ts]
    assert len(replies) == 2  # the acknowledgement, then the approved reply

    async def redrawn() -> bool:
        return "Reply sent" in card_text(socket.card(case))

    await until(redrawn, "the card redrawn")
    assert A.APPROVE not in action_ids(socket.card(case))


@pytest.mark.parametrize("how", ["drop", "disconnect"])
async def test_the_app_reconnects_by_itself(socket: SocketSlack, how: str) -> None:
    await ask(socket)
    await card_posted(socket)
    first = socket.api.sockets[0]

    if how == "drop":
        await socket.api.drop()
    else:
        await socket.api.disconnect()
    second = await socket.api.connected(2)
    assert opened_with(socket.api) == [APP_TOKEN] * 3  # the check, the first, the second

    async def first_closed() -> bool:
        return not first.open

    await until(first_closed, "the old connection closed")
    await ask(socket, "When is the next street sweeping on Main Street?")
    envelope_id, _ = socket.sent[-1]
    assert [m["envelope_id"] for m in second.received] == [envelope_id]
    await card_posted(socket, 2)
    assert [c.ref for c in await socket.cases()] == ["C-2026-0001", "C-2026-0002"]


@pytest.mark.parametrize("slack_overrides", [
    {"app_token": APP_TOKEN, "signing_secret": "", "socket_ping_seconds": 0.25}])
async def test_a_connection_that_dies_silently_is_replaced(socket: SocketSlack) -> None:
    """No close frame, no error: the link just stops answering. The app's pings go
    unanswered, so it opens a new connection, and the next question arrives on it."""
    await ask(socket)
    await card_posted(socket)
    dead = await socket.api.go_silent()

    async def replaced() -> bool:
        return socket.api.sockets[-1] is not dead and socket.api.sockets[-1].open

    await until(replaced, "a new connection")
    assert len(opened_with(socket.api)) >= 3  # the check, the first, a new one
    await ask(socket, "When is the next street sweeping on Main Street?")
    envelope_id, _ = socket.sent[-1]
    assert envelope_id in [m["envelope_id"] for m in socket.api.sockets[-1].received]
    assert envelope_id not in [m.get("envelope_id") for m in dead.received]
    await card_posted(socket, 2)
    assert [c.ref for c in await socket.cases()] == ["C-2026-0001", "C-2026-0002"]


async def test_a_wrong_app_token_is_refused_and_no_socket_opens(
        slack: Slack, caplog: pytest.LogCaptureFixture) -> None:
    slack.api.app_token = "xapp-1-A0311-1-another"
    stop = asyncio.Event()
    worker = asyncio.create_task(Worker(slack.service).run(stop))

    async def refused() -> bool:
        return "Slack refused SLACK_APP_TOKEN (invalid_auth)" in caplog.text

    await until(refused, "the refusal logged")
    assert opened_with(slack.api) == [APP_TOKEN]
    assert slack.api.sockets == [] and slack.bot._socket is None
    # The rest of the worker runs on.
    assert not worker.done()
    stop.set()
    await worker
    assert APP_TOKEN not in caplog.text


async def test_slack_failing_the_token_check_is_no_refusal(slack: Slack) -> None:
    # An error from Slack's side when the token is checked: Socket Mode starts all the same.
    slack.api.fail("apps.connections.open", status=500, times=1)
    stop = asyncio.Event()
    worker = asyncio.create_task(Worker(slack.service).run(stop))
    try:
        await slack.api.connected()
        assert slack.bot._socket is not None
    finally:
        stop.set()
        await worker


async def test_http_events_are_not_served_in_socket_mode(socket: SocketSlack) -> None:
    body = json.dumps({"type": "event_callback", "event_id": "EvHTTP",
                       "event": socket.mention("Is anyone there?")})
    unsigned = await socket.http.post("/slack/events", content=body,
                                      headers={"Content-Type": "application/json"})
    assert unsigned.status_code == 404
    signed = await Slack.post(socket, body, "application/json")  # signed with a secret we lack
    assert signed.status_code == 404
    assert await socket.cases() == []


@pytest.mark.parametrize("slack_overrides", [{"app_token": APP_TOKEN, "signing_secret": SECRET}])
async def test_with_a_signing_secret_too_http_still_needs_a_signature(
        socket: SocketSlack) -> None:
    body = json.dumps({"type": "event_callback", "event_id": "EvHTTP",
                       "event": socket.mention("Is anyone there?")})
    unsigned = await socket.http.post("/slack/events", content=body,
                                      headers={"Content-Type": "application/json"})
    assert unsigned.status_code == 401
    assert await socket.cases() == []
