"""``/311``: ask, status, help, and the follow-up and report subcommands."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from slack_bolt.async_app import AsyncAck, AsyncApp
from slack_bolt.request.async_request import AsyncBoltRequest

from bot import strings as S
from bot.blocks import time_left
from bot.strings import escape
from desk.pipeline import CASE_REF

if TYPE_CHECKING:
    from bot.app import SlackBot

__all__ = ["COMMAND", "Commands"]

log = logging.getLogger(__name__)

COMMAND = "/311"


class Commands:
    def __init__(self, bot: SlackBot) -> None:
        self.bot = bot
        self.desk = bot.desk

    def register(self, app: AsyncApp) -> None:
        app.command(COMMAND)(self.on_command)

    async def on_command(self, ack: AsyncAck, command: dict[str, Any],
                         request: AsyncBoltRequest) -> None:
        text = str(command.get("text") or "").strip()
        verb, _, rest = text.partition(" ")
        verb, rest = verb.lower(), rest.strip()
        user = str(command.get("user_id", ""))
        channel = str(command.get("channel_id", ""))
        response_url = command.get("response_url")
        if verb in ("", "help"):
            await ack(response_type="ephemeral", text=S.HELP)
        elif verb == "ask":
            if not rest:
                await ack(response_type="ephemeral", text=S.ASK_USAGE)
                return
            await ack(response_type="ephemeral", text=S.ASK_RECEIVED)
            self.bot.spawn(self.bot.intake.ask(user=user, channel=channel, question=rest,
                                               raw=request.raw_body,
                                               response_url=response_url), "ask")
        elif verb == "status":
            if CASE_REF.search(rest) is None:
                await ack(response_type="ephemeral", text=S.STATUS_USAGE)
                return
            # The look-up waits for the database, and on a busy event loop for drafting too:
            # answer Slack at once and send the status through the response URL.
            await ack()
            self.bot.spawn(self._tell_status(user, rest, channel, response_url), "status")
        elif verb in ("followup", "follow-up", "followups", "stats"):
            await self.bot.followups.command(ack, verb, rest, command)
        else:
            await ack(response_type="ephemeral",
                      text=S.UNKNOWN_COMMAND.format(command=escape(verb)))

    async def _tell_status(self, user: str, text: str, channel: str,
                           response_url: str | None) -> None:
        await self.bot.tell(user, await self.status(text), channel=channel,
                            response_url=response_url)

    async def status(self, text: str) -> str:
        match = CASE_REF.search(text)
        if match is None:
            return S.STATUS_USAGE
        ref = match.group(0).upper()
        # Only reads: on SQLite a writing session would queue behind every writer.
        async with self.desk.store.reading() as session:
            case = await self.desk.store.find_case(session, ref)
        if case is None:
            return S.NO_SUCH_CASE.format(ref=ref)
        calendar = self.desk.calendar
        if case.first_response_at is not None:
            due = S.STATUS_ANSWERED.format(when=calendar.describe(case.first_response_at))
        elif case.status in ("rejected", "closed"):
            due = ""
        else:
            due = S.STATUS_DUE.format(due=calendar.describe(case.due_at), left=time_left(
                calendar, self.desk.clock.now(), case.due_at))
        city = case.city.label if case.city else "unknown city"
        status = S.STATUS_LABELS.get(case.status, case.status)
        return S.STATUS.format(ref=case.ref, city=escape(city), status=status, due=due).strip()
