"""The review card's buttons and modals: approve, edit, change topics, reject, assign a coach.

Only reviewers may act; anyone else is told so privately and the case does not change. Each
action calls the desk, which records it and queues a ``card_update`` that the channel renders
(the card is redrawn in place and the note goes into its thread).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import TYPE_CHECKING, Any

from slack_bolt.async_app import AsyncAck, AsyncApp
from slack_sdk.errors import SlackApiError, SlackClientError

from bot import strings as S
from bot.blocks import (
    INPUT_LIMIT,
    REVIEWABLE,
    A,
    V,
    edit_modal,
    metadata,
    question_modal,
    reject_modal,
    topics_modal,
)
from bot.strings import escape
from desk.errors import AlreadyDoneError, DeskError, InputError, NotFoundError, WorkflowError
from desk.models import Case

if TYPE_CHECKING:
    from bot.app import SlackBot

__all__ = ["Review", "Where"]

log = logging.getLogger(__name__)


class Where:
    """Who clicked, on which case, and where to answer them privately."""

    def __init__(self, user: str, ref: str, channel: str | None = None,
                 ts: str | None = None) -> None:
        self.user, self.ref, self.channel, self.ts = user, ref, channel, ts

    @classmethod
    def of_action(cls, body: dict[str, Any], ref: str) -> Where:
        container = body.get("container") or {}
        channel = container.get("channel_id") or (body.get("channel") or {}).get("id")
        return cls(str(body["user"]["id"]), ref, channel, container.get("message_ts"))

    @classmethod
    def of_view(cls, body: dict[str, Any]) -> Where:
        meta = json.loads(body["view"].get("private_metadata") or "{}")
        return cls(str(body["user"]["id"]), str(meta.get("ref", "")), meta.get("channel"),
                   meta.get("ts"))

    def private(self, **extra: Any) -> str:
        return metadata(self.ref, self.channel, self.ts, **extra)


def _values(body: dict[str, Any]) -> dict[str, dict[str, Any]]:
    values: dict[str, dict[str, Any]] = body["view"]["state"]["values"]
    return values


def _action_ref(action: dict[str, Any]) -> str:
    value = action.get("value")
    if value:
        return str(value)
    return str(action.get("block_id", "")).removeprefix("case:")


class Review:
    def __init__(self, bot: SlackBot) -> None:
        self.bot = bot
        self.desk = bot.desk

    def register(self, app: AsyncApp) -> None:
        app.action(A.APPROVE)(self.on_approve)
        app.action(A.EDIT)(self.on_edit)
        app.action(A.TOPICS)(self.on_topics)
        app.action(A.REJECT)(self.on_reject)
        app.action(A.ASSIGN)(self.on_assign)
        app.action(A.SHOW)(self.on_show)
        app.view(V.EDIT)(self.on_edit_submit)
        app.view(V.TOPICS)(self.on_topics_submit)
        app.view(V.REJECT)(self.on_reject_submit)

    # ---- buttons ------------------------------------------------------------------------

    async def on_approve(self, ack: AsyncAck, body: dict[str, Any],
                         action: dict[str, Any]) -> None:
        await ack()
        where = Where.of_action(body, _action_ref(action))
        self.bot.spawn(self._act(where, lambda: self.desk.approve(where.ref, where.user)),
                       "approve")

    async def on_assign(self, ack: AsyncAck, body: dict[str, Any],
                        action: dict[str, Any]) -> None:
        await ack()
        where = Where.of_action(body, _action_ref(action))
        coach = action.get("selected_user")
        if coach:
            self.bot.spawn(self._act(where, lambda: self.desk.assign(
                where.ref, where.user, coach=str(coach))), "assign")

    async def on_edit(self, ack: AsyncAck, body: dict[str, Any],
                      action: dict[str, Any]) -> None:
        await self._open_modal(ack, body, action, self._open_edit, "edit")

    async def on_topics(self, ack: AsyncAck, body: dict[str, Any],
                        action: dict[str, Any]) -> None:
        await self._open_modal(ack, body, action, self._open_topics, "topics")

    async def on_reject(self, ack: AsyncAck, body: dict[str, Any],
                        action: dict[str, Any]) -> None:
        await self._open_modal(ack, body, action, self._open_reject, "reject")

    async def on_show(self, ack: AsyncAck, body: dict[str, Any],
                      action: dict[str, Any]) -> None:
        await self._open_modal(ack, body, action, self._open_question, "show")

    async def _open_modal(self, ack: AsyncAck, body: dict[str, Any], action: dict[str, Any],
                          opener: Callable[[Where, str], Coroutine[Any, Any, None]],
                          name: str) -> None:
        """A button that opens a modal: ack at once, open it after the ack."""
        await ack()
        where = Where.of_action(body, _action_ref(action))
        self.bot.spawn(opener(where, str(body["trigger_id"])), name)

    # ---- modal submissions (validated before the ack, so errors show in the modal) -------

    async def on_edit_submit(self, ack: AsyncAck, body: dict[str, Any]) -> None:
        where = Where.of_view(body)
        text = str(_values(body).get("draft", {}).get("text", {}).get("value") or "").strip()
        if not await self.bot.reviewers.allows(where.user):
            await ack(response_action="errors", errors={"draft": S.NOT_REVIEWER})
            return
        if not text:
            await ack(response_action="errors", errors={"draft": S.EDIT_EMPTY})
            return
        if len(text) > INPUT_LIMIT:
            await ack(response_action="errors", errors={
                "draft": S.EDIT_TOO_LONG.format(limit=INPUT_LIMIT, length=len(text))})
            return
        await ack()
        self.bot.spawn(self._act(where, lambda: self.desk.edit(where.ref, where.user, text),
                                 checked=True), "edit")

    async def on_topics_submit(self, ack: AsyncAck, body: dict[str, Any]) -> None:
        where = Where.of_view(body)
        values = _values(body)
        main = (values.get("main", {}).get("topic", {}).get("selected_option") or {}).get("value")
        others = values.get("others", {}).get("topics", {}).get("selected_options") or []
        topics = list(dict.fromkeys(str(t) for t in [main, *(o.get("value") for o in others)]
                                    if t))
        if not await self.bot.reviewers.allows(where.user):
            await ack(response_action="errors", errors={"main": S.NOT_REVIEWER})
            return
        if not main:
            await ack(response_action="errors", errors={"main": S.TOPIC_MAIN})
            return
        if len(topics) > 3:
            await ack(response_action="errors", errors={"others": S.TOPICS_COUNT})
            return
        await ack()
        self.bot.spawn(self._act(where, lambda: self.desk.change_topics(
            where.ref, where.user, topics), checked=True), "topics")

    async def on_reject_submit(self, ack: AsyncAck, body: dict[str, Any]) -> None:
        where = Where.of_view(body)
        values = _values(body)
        reason = str(values.get("reason", {}).get("text", {}).get("value") or "").strip()
        chosen = values.get("decline", {}).get("send", {}).get("selected_options") or []
        if not await self.bot.reviewers.allows(where.user):
            await ack(response_action="errors", errors={"reason": S.NOT_REVIEWER})
            return
        if not reason:
            await ack(response_action="errors", errors={"reason": S.REJECT_REASON})
            return
        await ack()
        decline = bool(chosen)
        self.bot.spawn(self._act(where, lambda: self.desk.reject(
            where.ref, where.user, reason, send_decline=decline), checked=True), "reject")

    # ---- the work -----------------------------------------------------------------------

    async def _act(self, where: Where, work: Callable[[], Awaitable[Any]], *,
                   checked: bool = False) -> None:
        """Run one desk action for ``where.user``, telling them privately when it cannot be."""
        if not checked and not await self.bot.reviewers.allows(where.user):
            log.info("refused %s on %s: not a reviewer", where.user, where.ref)
            await self._tell(where, S.NOT_REVIEWER)
            return
        try:
            await work()
        except AlreadyDoneError:
            status = await self._status(where.ref)
            await self._tell(where, S.ALREADY_DONE.format(ref=where.ref, status=status))
            return
        except (WorkflowError, InputError, NotFoundError) as exc:
            await self._tell(where, S.CANNOT.format(problem=escape(str(exc))))
            return
        except DeskError:
            log.exception("review action on %s failed", where.ref)
            await self._tell(where, S.FAILED)
            return
        self.bot.wake()

    async def _tell(self, where: Where, text: str) -> None:
        await self.bot.tell(where.user, text, channel=where.channel)

    async def _status(self, ref: str) -> str:
        case = await self._case(ref)
        return case.status.replace("_", " ") if case else "gone"

    async def _case(self, ref: str) -> Case | None:
        async with self.desk.store.reading() as session:
            return await self.desk.store.find_case(session, ref)

    async def _may_open(self, where: Where) -> Case | None:
        if not await self.bot.reviewers.allows(where.user):
            await self._tell(where, S.NOT_REVIEWER)
            return None
        case = await self._case(where.ref)
        if case is None:
            await self._tell(where, S.NO_SUCH_CASE.format(ref=escape(where.ref)))
        return case

    async def _open(self, where: Where, trigger_id: str, view: dict[str, Any]) -> None:
        try:
            await self.bot.client.views_open(trigger_id=trigger_id, view=view)
        except (SlackApiError, SlackClientError) as exc:
            log.warning("views.open failed for %s: %s", where.ref, exc)
            await self._tell(where, S.FAILED)

    async def _open_edit(self, where: Where, trigger_id: str) -> None:
        case = await self._may_open(where)
        if case is None:
            return
        if case.status not in REVIEWABLE:
            await self._tell(where, S.CANNOT.format(
                problem=f"{case.ref} is {case.status.replace('_', ' ')}"))
            return
        async with self.desk.store.session() as session:
            draft = await self.desk.latest_draft(session, case.id)
        text = ""
        if draft is not None:
            text = (draft.mrkdwn or draft.text) if case.channel == "slack" else draft.text
        await self._open(where, trigger_id, edit_modal(case.ref, text, where.private()))

    async def _open_topics(self, where: Where, trigger_id: str) -> None:
        case = await self._may_open(where)
        if case is None:
            return
        if case.status not in REVIEWABLE:
            await self._tell(where, S.CANNOT.format(
                problem=f"{case.ref} is {case.status.replace('_', ' ')}"))
            return
        current = [str(t["topic"]) for t in case.topics]
        await self._open(where, trigger_id, topics_modal(case.ref, current, where.private()))

    async def _open_reject(self, where: Where, trigger_id: str) -> None:
        case = await self._may_open(where)
        if case is None:
            return
        if case.status not in (*REVIEWABLE, "received"):
            await self._tell(where, S.CANNOT.format(
                problem=f"{case.ref} is {case.status.replace('_', ' ')}"))
            return
        await self._open(where, trigger_id, reject_modal(case.ref, where.private()))

    async def _open_question(self, where: Where, trigger_id: str) -> None:
        case = await self._case(where.ref)
        if case is not None:
            await self._open(where, trigger_id, question_modal(case.ref, case.question))
