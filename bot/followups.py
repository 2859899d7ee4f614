"""Follow-up coaching calls from Slack (filled in once desk.followups exists)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from slack_bolt.async_app import AsyncAck, AsyncApp

from bot import strings as S

if TYPE_CHECKING:
    from bot.app import SlackBot

__all__ = ["FollowUpSurface"]


class FollowUpSurface:
    def __init__(self, bot: SlackBot) -> None:
        self.bot = bot
        self.enabled = False

    def register(self, app: AsyncApp) -> None:
        return None

    async def command(self, ack: AsyncAck, verb: str, rest: str,
                      command: dict[str, Any]) -> None:
        text = S.STATS_UNAVAILABLE if verb == "stats" else S.FOLLOWUP_UNAVAILABLE
        await ack(response_type="ephemeral", text=text)
