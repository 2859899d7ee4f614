"""The small pieces on their own: text safety, error translation, the reviewer list, and the
bot's lifecycle without Slack at the other end."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from slack_bolt.request.async_request import AsyncBoltRequest
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.web.async_slack_response import AsyncSlackResponse

from bot.access import Reviewers
from bot.app import SlackBot
from bot.channel import translate
from bot.middleware import is_retry
from bot.strings import defuse, escape, plain_from_slack, safe_mrkdwn, trim
from desk.errors import PermanentDeliveryError, TransientDeliveryError
from desk.models import SeenEvent
from desk.pipeline import Desk
from desk.settings import SlackSettings, SLASettings
from desk.sla import BusinessCalendar
from desk.store import Store, insert_ignore
from tests.servers.slack_api import SlackApi
from tests.support import FakeClock


def test_escape_and_defuse() -> None:
    assert escape("a <!channel> & <http://x|y>") == "a &lt;!channel&gt; &amp; &lt;http://x|y&gt;"
    assert defuse("Approved by <@UREV1>: <!here> & <@U99|x>") == (
        "Approved by <@UREV1>: &lt;!here&gt; &amp; &lt;@U99|x&gt;")
    assert safe_mrkdwn("*Guide*: <https://x.org|X> <!channel>") == (
        "*Guide*: <https://x.org|X> &lt;!channel&gt;")


def test_plain_from_slack() -> None:
    text = ("<@UBOT> Hi <@U123|dana>, see <#C1|budget> and <https://a.test|the plan> "
            "or <mailto:x@y.test|x@y.test>; &lt;b&gt; &amp; <!here>")
    assert plain_from_slack(text, bot_user="UBOT") == (
        "Hi @U123, see #budget and the plan (https://a.test) or x@y.test; <b> & @here")


def test_trim_cuts_at_a_word() -> None:
    assert trim("short", 10) == ("short", False)
    cut, was_cut = trim("one two three four five six", 15)
    assert was_cut and cut == "one two three…" and len(cut) <= 15


def _error(status: int, error: str, headers: dict[str, str] | None = None) -> SlackApiError:
    response = AsyncSlackResponse(client=AsyncWebClient(), http_verb="POST", api_url="x",
                                  req_args={}, data={"ok": False, "error": error},
                                  headers=headers or {}, status_code=status)
    return SlackApiError("failed", response)


def test_slack_errors_become_desk_errors() -> None:
    limited = translate(_error(429, "ratelimited", {"Retry-After": "30"}))
    assert isinstance(limited, TransientDeliveryError) and limited.retry_after == 30
    assert isinstance(translate(_error(503, "service_unavailable")), TransientDeliveryError)
    assert isinstance(translate(_error(200, "internal_error")), TransientDeliveryError)
    for error in ("channel_not_found", "invalid_auth", "not_in_channel"):
        assert isinstance(translate(_error(200, error)), PermanentDeliveryError)
    assert isinstance(translate(ConnectionRefusedError()), TransientDeliveryError)


async def test_reviewer_group_is_read_once_a_minute() -> None:
    api = await SlackApi().start()
    try:
        api.usergroups["SREV"] = ["U1"]
        ticks = [0.0]
        client = AsyncWebClient(token="xoxb-t", base_url=api.base_url)
        reviewers = Reviewers(client, ["U0"], "SREV", monotonic=lambda: ticks[0])
        assert await reviewers.allows("U0") and await reviewers.allows("U1")
        assert not await reviewers.allows("U2")
        api.usergroups["SREV"] = ["U2"]
        assert not await reviewers.allows("U2")  # cached
        ticks[0] = 61.0
        assert await reviewers.allows("U2") and not await reviewers.allows("U1")
        assert len(api.calls_to("usergroups.users.list")) == 2
        api.fail("usergroups.users.list", status=500, times=5)
        ticks[0] = 200.0
        assert await reviewers.allows("U2")  # an outage keeps the last known members
        assert await reviewers.everyone() == ["U0", "U2"]
    finally:
        await api.stop()


async def test_without_an_app_token_run_returns_and_without_a_secret_no_routes(
        store: Store) -> None:
    clock = FakeClock()
    desk = Desk(store, clock, BusinessCalendar(SLASettings()), review_channel="CREVIEW")
    socket_only = SlackBot(SlackSettings(bot_token="xoxb-t", app_token="", signing_secret="",
                                         review_channel="CREVIEW"), desk)
    assert socket_only.routes() == []
    await asyncio.wait_for(socket_only.run(asyncio.Event()), timeout=5)
    await socket_only.aclose()
    http = SlackBot(SlackSettings(bot_token="xoxb-t", signing_secret="s",
                                  review_channel="CREVIEW"), desk)
    assert [getattr(r, "path", None) for r in http.routes()] == ["/slack/events"]
    assert http.channel.name == "slack"

    async with store.session() as session:
        await insert_ignore(session, SeenEvent, {"event_id": "Ev-old",
                                                 "at": clock.now() - timedelta(days=2)})
        await insert_ignore(session, SeenEvent, {"event_id": "Ev-new", "at": clock.now()})
    assert await http.tick() == 1
    assert await http.tick() == 0  # not again within the hour
    await http.aclose()


def test_only_a_numbered_redelivery_is_a_retry() -> None:
    def request(headers: dict[str, str]) -> AsyncBoltRequest:
        return AsyncBoltRequest(body="{}", headers=headers, mode="socket_mode")

    assert is_retry(request({"x-slack-retry-num": "1", "x-slack-retry-reason": "timeout"}))
    assert not is_retry(request({"x-slack-retry-num": "0", "x-slack-retry-reason": ""}))
    assert not is_retry(request({}))
