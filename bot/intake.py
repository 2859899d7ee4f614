"""Questions arriving from Slack: a mention, a DM, ``/311 ask``, the "Send to 311" shortcut,
and later messages in a case's thread. Each becomes a channel-neutral
:class:`~desk.envelope.InboundMessage` for the desk.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from slack_bolt.async_app import AsyncAck, AsyncApp, AsyncBoltContext
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_sdk.errors import SlackApiError, SlackClientError
from sqlalchemy import select

from bot import strings as S
from bot.blocks import V
from bot.strings import escape, plain_from_slack, trim
from desk.envelope import InboundMessage
from desk.models import Case
from desk.outbox import enqueue
from desk.pipeline import Received

if TYPE_CHECKING:
    from bot.app import SlackBot

__all__ = ["Intake", "Profile"]

log = logging.getLogger(__name__)

# Message subtypes that are still a person writing; every other subtype (edits, joins,
# bot posts, deletions) is not a question.
PERSON_SUBTYPES = frozenset({"file_share", "thread_broadcast"})


@dataclass(frozen=True)
class Profile:
    email: str | None
    name: str | None
    is_bot: bool


def from_bot(event: dict[str, Any]) -> bool:
    return bool(event.get("bot_id") or event.get("bot_profile")
                or event.get("subtype") == "bot_message")


class Intake:
    def __init__(self, bot: SlackBot) -> None:
        self.bot = bot
        self.desk = bot.desk

    def register(self, app: AsyncApp) -> None:
        app.event("app_mention")(self.on_mention)
        app.event("message")(self.on_message)
        app.shortcut(V.SEND_TO_311)(self.on_shortcut)

    # ---- listeners (ack first) ----------------------------------------------------------

    async def on_mention(self, ack: AsyncAck, event: dict[str, Any], request: AsyncBoltRequest,
                         context: AsyncBoltContext) -> None:
        await ack()
        if from_bot(event) or event.get("subtype") not in (None, *PERSON_SUBTYPES):
            return
        if event.get("thread_ts") and event.get("channel") == self.bot.settings.review_channel:
            return  # staff talking about a case under its card, not a city asking
        self.bot.spawn(self.take(event, request.raw_body, "mention", context.bot_user_id),
                       "mention")

    async def on_message(self, ack: AsyncAck, event: dict[str, Any], request: AsyncBoltRequest,
                         context: AsyncBoltContext) -> None:
        await ack()
        if from_bot(event) or event.get("subtype") not in (None, *PERSON_SUBTYPES):
            return
        bot_user = context.bot_user_id
        if event.get("channel_type") == "im":
            self.bot.spawn(self.take(event, request.raw_body, "dm", bot_user), "dm")
            return
        thread_ts = event.get("thread_ts")
        if thread_ts and thread_ts != event.get("ts"):
            if bot_user and f"<@{bot_user}" in str(event.get("text", "")):
                return  # the app_mention event carries it
            self.bot.spawn(self.follow_thread(event, request.raw_body, bot_user), "thread")

    async def on_shortcut(self, ack: AsyncAck, body: dict[str, Any],
                          request: AsyncBoltRequest, context: AsyncBoltContext) -> None:
        await ack()
        self.bot.spawn(self._shortcut(body, request.raw_body, context.bot_user_id), "shortcut")

    # ---- the work -----------------------------------------------------------------------

    async def take(self, event: dict[str, Any], raw: str, source: str,
                   bot_user: str | None) -> Received | None:
        channel, ts = str(event["channel"]), str(event["ts"])
        user = str(event.get("user") or "")
        text = plain_from_slack(str(event.get("text") or ""), bot_user=bot_user)
        if not user:
            return None
        if not text:
            await self.bot.tell(user, S.EMPTY_QUESTION, channel=channel,
                                thread_ts=event.get("thread_ts"))
            return None
        return await self.open(channel=channel, ts=ts, thread_ts=event.get("thread_ts"),
                               user=user, text=text, raw=raw, source=source)

    async def follow_thread(self, event: dict[str, Any], raw: str,
                            bot_user: str | None) -> Received | None:
        """A reply in a case's thread joins the case; other threads are none of our business."""
        key = f"{event['channel']}:{event['thread_ts']}"
        async with self.desk.store.session() as session:
            found = await session.execute(select(Case.id).where(
                Case.channel == "slack", Case.thread_key == key).limit(1))
            if found.scalar_one_or_none() is None:
                return None
        return await self.take(event, raw, "thread", bot_user)

    async def open(self, *, channel: str, ts: str, thread_ts: str | None, user: str, text: str,
                   raw: str, source: str) -> Received | None:
        """Hand one message to the desk; draft a new case at once and wake the worker."""
        profile = await self.profile(user)
        if profile.is_bot:
            return None
        inbound = InboundMessage(
            channel="slack", external_id=f"{channel}:{ts}", received_at=self.desk.clock.now(),
            text=text, reply_text=text, raw=raw.encode("utf-8"), sender_email=profile.email,
            sender_name=profile.name, sender_slack_id=user,
            thread_key=f"{channel}:{thread_ts or ts}", meta={"source": source},
        )
        received = await self.desk.receive(inbound)
        if received.created and received.case_id is not None:
            await self._acknowledge(received.case_id, user)
            self.bot.wake()
            await self.desk.process(received.case_id)
        self.bot.wake()
        log.info("slack %s -> %s%s", source, received.case_ref or received.case_id,
                 " (new)" if received.created else "")
        return received

    async def _acknowledge(self, case_id: int, user: str) -> None:
        """The desk acknowledges senders it matched to a city; a workspace member it could
        not match still hears that the question arrived (same key: never both)."""
        now = self.desk.clock.now()
        async with self.desk.store.session() as session:
            case = await session.get(Case, case_id)
            if case is None:
                return
            await enqueue(session, kind="ack", channel="slack", key=f"ack:{case.id}:{case.cycle}",
                          case_id=case.id, now=now, payload={
                              "to": user, "thread_key": case.thread_key,
                              "due_at": case.due_at.isoformat(),
                              "due_text": self.desk.calendar.describe(case.due_at),
                              "unmatched": case.city_id is None})

    async def profile(self, user: str) -> Profile:
        try:
            response = await self.bot.client.users_info(user=user)
        except (SlackApiError, SlackClientError, OSError) as exc:
            # Without a profile the case is opened all the same, for triage.
            log.warning("users.info failed for %s: %s", user, exc)
            return Profile(None, None, False)
        info = response.get("user") or {}
        profile = info.get("profile") or {}
        email = profile.get("email") or None
        name = info.get("real_name") or profile.get("real_name") or info.get("name") or None
        return Profile(str(email).lower() if email else None, name, bool(info.get("is_bot")))

    async def ask(self, *, user: str, channel: str, question: str, raw: str,
                  response_url: str | None) -> Received | None:
        """``/311 ask``: the question is posted so that it has a thread to be answered in."""
        text = plain_from_slack(question)
        shown = escape(trim(text, 2_500)[0]).replace("\n", "\n>")
        posted = None
        for target in (channel, user):
            try:
                posted = await self.bot.client.chat_postMessage(
                    channel=target, text=S.ASKED_BY.format(user=user, question=shown),
                    unfurl_links=False)
                break
            except SlackApiError as exc:
                log.info("cannot post the question in %s (%s); trying a DM", target,
                         exc.response.get("error"))
        if posted is None:
            await self.bot.tell(user, S.FAILED, response_url=response_url)
            return None
        return await self.open(channel=str(posted["channel"]), ts=str(posted["ts"]),
                               thread_ts=None, user=user, text=text, raw=raw, source="command")

    async def _shortcut(self, body: dict[str, Any], raw: str,
                        bot_user: str | None) -> None:
        invoker = str(body.get("user", {}).get("id", ""))
        message = body.get("message") or {}
        channel = str((body.get("channel") or {}).get("id", ""))
        response_url = body.get("response_url")
        if from_bot(message) or not message.get("user"):
            await self.bot.tell(invoker, S.SHORTCUT_BOT, channel=channel,
                                response_url=response_url)
            return
        text = plain_from_slack(str(message.get("text") or ""), bot_user=bot_user)
        if not text:
            await self.bot.tell(invoker, S.SHORTCUT_EMPTY, channel=channel,
                                response_url=response_url)
            return
        received = await self.open(channel=channel, ts=str(message["ts"]),
                                   thread_ts=message.get("thread_ts"),
                                   user=str(message["user"]), text=text, raw=raw,
                                   source="shortcut")
        if received is not None and received.case_id is not None:
            ref = received.case_ref or await self._ref(received.case_id)
            words = S.SHORTCUT_SENT if received.created else S.SHORTCUT_JOINED
            await self.bot.tell(invoker, words.format(ref=ref), channel=channel,
                                response_url=response_url)

    async def _ref(self, case_id: int) -> str:
        async with self.desk.store.session() as session:
            case = await session.get(Case, case_id)
            return case.ref if case else "?"
