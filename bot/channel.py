"""Slack as a delivery channel: renders outbox rows into messages, exactly once.

The outbox marks a row sent only after :meth:`SlackChannel.deliver` returns, so a crash in
between would deliver it again. Every threaded message therefore carries the row's
idempotency key as message metadata, and a second attempt first looks for it in the thread
(one ``conversations.replies`` call, only on retries).

Slack errors become the desk's: rate limits, 5xx and connection trouble are
:class:`TransientDeliveryError` (with ``retry_after``); anything else, such as
``channel_not_found`` or ``invalid_auth``, is :class:`PermanentDeliveryError`.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import aiohttp
from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.web.async_client import AsyncWebClient
from sqlalchemy import select

from bot import strings as S
from bot.blocks import CardData, render_card, sections
from bot.strings import defuse, escape, safe_mrkdwn, trim
from desk.errors import DeliveryError, PermanentDeliveryError, TransientDeliveryError
from desk.models import Case, Event, FollowUp, Outbox
from desk.pipeline import Desk
from desk.ports import DeliveryReceipt, OutboundItem

__all__ = ["METADATA_TYPE", "SlackChannel", "load_card", "translate"]

log = logging.getLogger(__name__)

METADATA_TYPE = "city311_delivery"
TRANSIENT_ERRORS = frozenset({"ratelimited", "rate_limited", "internal_error", "fatal_error",
                              "service_unavailable", "request_timeout", "team_added_to_org"})
# A card update waits this many attempts for its card to be posted, then gives up quietly
# (the card, once posted, shows the current state anyway).
CARD_WAIT_ATTEMPTS = 6


def translate(exc: Exception) -> DeliveryError:
    """A slack_sdk or network error as the desk's delivery error."""
    if isinstance(exc, SlackApiError):
        status = getattr(exc.response, "status_code", 200)
        error = str(exc.response.get("error", "")) if exc.response is not None else ""
        retry_after: float | None = None
        headers = getattr(exc.response, "headers", None) or {}
        for name, value in headers.items():
            if name.lower() == "retry-after":
                raw = value[0] if isinstance(value, list) else value
                with contextlib.suppress(TypeError, ValueError):
                    retry_after = float(raw)
        if status == 429 or status >= 500 or error in TRANSIENT_ERRORS:
            return TransientDeliveryError(f"Slack {status} {error}", channel="slack",
                                          code=status, retry_after=retry_after)
        return PermanentDeliveryError(f"Slack refused: {error or status}", channel="slack",
                                      code=status)
    return TransientDeliveryError(f"Slack unreachable: {exc!r}", channel="slack")


@contextlib.contextmanager
def _translated() -> Iterator[None]:
    try:
        yield
    except SlackApiError as exc:
        raise translate(exc) from exc
    except (SlackClientError, aiohttp.ClientError, TimeoutError, OSError) as exc:
        raise translate(exc) from exc


async def load_card(desk: Desk, case_id: int, *, followups_enabled: bool = False
                    ) -> CardData | None:
    """Everything the card shows, read in one short session."""
    async with desk.store.reading() as session:
        case = await session.get(Case, case_id, populate_existing=True)
        if case is None:
            return None
        draft = await desk.latest_draft(session, case_id)
        events = (await session.execute(
            select(Event).where(Event.case_id == case_id).order_by(Event.id.desc()).limit(30)
        )).scalars().all()
        followups = (await session.execute(
            select(FollowUp).where(FollowUp.case_id == case_id).order_by(FollowUp.starts_at)
        )).scalars().all()
    return CardData(case=case, draft=draft, history=list(reversed(events)), now=desk.clock.now(),
                    calendar=desk.calendar, followups=list(followups),
                    followups_enabled=followups_enabled)


Renderer = Callable[[OutboundItem], Awaitable[str]]


class SlackChannel:
    """The desk's :class:`~desk.ports.Channel` for Slack."""

    name = "slack"

    def __init__(self, client: AsyncWebClient, desk: Desk, *, review_channel: str,
                 escalation_channel: str = "", followups_enabled: bool = False) -> None:
        self.client = client
        self.desk = desk
        self.review_channel = review_channel
        self.escalation_channel = escalation_channel
        self.followups_enabled = followups_enabled
        self._renderers: dict[str, Renderer] = {
            "ack": self._ack, "reply": self._reply, "decline": self._decline,
            "review_card": self._review_card, "card_update": self._card_update,
            "notice": self._notice, "reminder": self._reminder,
            "escalation": self._escalation, "coach_reminder": self._coach_reminder,
        }

    async def deliver(self, item: OutboundItem) -> DeliveryReceipt:
        renderer = self._renderers.get(item.kind)
        if renderer is None:
            raise PermanentDeliveryError(f"Slack cannot deliver a {item.kind!r}",
                                         channel="slack")
        with _translated():
            external_id = await renderer(item)
        log.info("delivered %s %s", item.kind, external_id, extra={"case": item.case_ref})
        return DeliveryReceipt(external_id=external_id)

    # ---- helpers ------------------------------------------------------------------------

    async def _post_once(self, item: OutboundItem, channel: str, thread_ts: str | None,
                         text: str, blocks: list[dict[str, Any]] | None = None,
                         key: str | None = None) -> str:
        key = key or item.idempotency_key
        if item.attempts > 1:
            found = await self._already_posted(channel, thread_ts, key)
            if found is not None:
                log.info("%s was already posted as %s", item.kind, found)
                return found
        kwargs: dict[str, Any] = {}
        if thread_ts:
            kwargs["thread_ts"] = thread_ts
        if blocks:
            kwargs["blocks"] = blocks
        response = await self.client.chat_postMessage(
            channel=channel, text=text, unfurl_links=False, unfurl_media=False,
            metadata={"event_type": METADATA_TYPE, "event_payload": {"key": key}}, **kwargs)
        return f"{response['channel']}:{response['ts']}"

    async def _already_posted(self, channel: str, thread_ts: str | None,
                              key: str) -> str | None:
        try:
            if thread_ts:
                response = await self.client.conversations_replies(
                    channel=channel, ts=thread_ts, include_all_metadata=True, limit=200)
            else:
                response = await self.client.conversations_history(
                    channel=channel, include_all_metadata=True, limit=50)
        except SlackApiError as exc:
            if getattr(exc.response, "status_code", 200) == 200:
                # No history scope in this channel: posting again is the lesser evil.
                return None
            raise
        for message in response.get("messages") or []:
            payload = (message.get("metadata") or {}).get("event_payload") or {}
            if payload.get("key") == key:
                return f"{channel}:{message['ts']}"
        return None

    async def _case(self, item: OutboundItem) -> Case | None:
        if item.case_id is None:
            return None
        async with self.desk.store.reading() as session:
            return await session.get(Case, item.case_id, populate_existing=True)

    async def _card_place(self, item: OutboundItem) -> tuple[str, str | None]:
        """Where a case's history goes: the card's thread, else the review channel."""
        case = await self._case(item)
        if case is not None and case.review_channel and case.review_ts:
            return case.review_channel, case.review_ts
        return (case.review_channel if case and case.review_channel
                else self.review_channel), None

    @staticmethod
    def _thread(item: OutboundItem) -> tuple[str, str]:
        key = str(item.payload.get("thread_key") or "")
        channel, _, ts = key.partition(":")
        if not channel or not ts:
            raise PermanentDeliveryError(f"{item.kind} has no Slack thread ({key!r})",
                                         channel="slack")
        return channel, ts

    def _with_ref(self, item: OutboundItem, text: str, in_thread: bool) -> str:
        if in_thread or not item.case_ref:
            return text
        return S.NOTICE_NO_CARD.format(ref=item.case_ref, text=text)

    # ---- kinds --------------------------------------------------------------------------

    async def _ack(self, item: OutboundItem) -> str:
        channel, ts = self._thread(item)
        ref = item.case_ref or "?"
        if item.payload.get("unmatched"):
            text = S.ACK_UNMATCHED.format(ref=ref)
        else:
            text = S.ACK.format(ref=ref, due=escape(str(item.payload.get("due_text", ""))))
        return await self._post_once(item, channel, ts, text)

    async def _reply(self, item: OutboundItem) -> str:
        channel, ts = self._thread(item)
        body = str(item.payload.get("mrkdwn") or item.payload.get("text") or "").strip()
        if not body:
            raise PermanentDeliveryError("the reply is empty", channel="slack")
        body = safe_mrkdwn(body)
        blocks = sections(body)
        url = item.payload.get("package_url")
        if url:
            blocks.append({"type": "context", "elements": [
                {"type": "mrkdwn", "text": S.PACKAGE_LINK.format(url=url)}]})
        return await self._post_once(item, channel, ts, trim(body, 3000)[0], blocks)

    async def _decline(self, item: OutboundItem) -> str:
        channel, ts = self._thread(item)
        # A decline quotes the reviewer's reason: it is shown as written, never interpreted.
        body = escape(str(item.payload.get("text") or item.payload.get("mrkdwn") or ""))
        return await self._post_once(item, channel, ts, body, sections(body))

    async def _review_card(self, item: OutboundItem) -> str:
        data = await load_card(self.desk, item.case_id or 0,
                               followups_enabled=self.followups_enabled)
        if data is None:
            raise PermanentDeliveryError(f"no case {item.case_id} for a card", channel="slack")
        text, blocks = render_card(data)
        channel = data.case.review_channel or self.review_channel
        if not channel:
            raise PermanentDeliveryError("SLACK_REVIEW_CHANNEL is not set", channel="slack")
        return await self._post_once(item, channel, None, text, blocks)

    async def _card_update(self, item: OutboundItem) -> str:
        data = await load_card(self.desk, item.case_id or 0,
                               followups_enabled=self.followups_enabled)
        if data is None:
            raise PermanentDeliveryError(f"no case {item.case_id} for a card", channel="slack")
        case = data.case
        if not (case.review_channel and case.review_ts):
            if item.attempts < CARD_WAIT_ATTEMPTS and await self._card_pending(case.id):
                raise TransientDeliveryError("the card is not posted yet", channel="slack",
                                             retry_after=5)
            return "skipped:no card"
        text, blocks = render_card(data)
        await self.client.chat_update(channel=case.review_channel, ts=case.review_ts,
                                      text=text, blocks=blocks)
        note = item.payload.get("note")
        if note:
            await self._post_once(item, case.review_channel, case.review_ts,
                                  defuse(str(note)), key=f"{item.idempotency_key}:note")
        return f"{case.review_channel}:{case.review_ts}"

    async def _card_pending(self, case_id: int) -> bool:
        async with self.desk.store.session() as session:
            found = await session.execute(select(Outbox.id).where(
                Outbox.case_id == case_id, Outbox.kind == "review_card",
                Outbox.status.in_(("pending", "sending"))).limit(1))
            return found.scalar_one_or_none() is not None

    async def _notice(self, item: OutboundItem) -> str:
        channel, thread = await self._card_place(item)
        text = defuse(str(item.payload.get("text", "")))
        quote = str(item.payload.get("quote") or "").strip()
        if quote:
            text += "\n>" + escape(trim(quote, 2_000)[0]).replace("\n", "\n>")
        return await self._post_once(item, channel, thread,
                                     self._with_ref(item, text, thread is not None))

    async def _reminder(self, item: OutboundItem) -> str:
        channel, thread = await self._card_place(item)
        mentions = " ".join(f"<@{u}>" for u in item.payload.get("mention") or [] if u)
        text = defuse(str(item.payload.get("text", "")))
        text = f"{mentions} {text}".strip()
        return await self._post_once(item, channel, thread,
                                     self._with_ref(item, text, thread is not None))

    async def _escalation(self, item: OutboundItem) -> str:
        channel = self.escalation_channel or self.review_channel
        text = self._with_ref(item, defuse(str(item.payload.get("text", ""))), False)
        return await self._post_once(item, channel, None, text)

    async def _coach_reminder(self, item: OutboundItem) -> str:
        user = str(item.payload.get("user") or "")
        if not user:
            raise PermanentDeliveryError("a coach reminder needs a user", channel="slack")
        text = defuse(str(item.payload.get("text", "")))
        response = await self.client.chat_postMessage(channel=user, text=text,
                                                      unfurl_links=False)
        return f"{response['channel']}:{response['ts']}"
