"""Who may act on a review card: configured reviewer ids, or members of a user group."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable

from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.web.async_client import AsyncWebClient

__all__ = ["Reviewers"]

log = logging.getLogger(__name__)


class Reviewers:
    """Answers "is this user a reviewer?", reading the user group at most once a minute."""

    def __init__(self, client: AsyncWebClient, users: Iterable[str], group: str = "", *,
                 ttl: float = 60.0, monotonic: Callable[[], float] = time.monotonic) -> None:
        self.client = client
        self.users = frozenset(users)
        self.group = group
        self.ttl = ttl
        self._monotonic = monotonic
        self._members: frozenset[str] = frozenset()
        self._read_at: float | None = None

    @property
    def configured(self) -> bool:
        return bool(self.users or self.group)

    async def allows(self, user: str) -> bool:
        if user in self.users:
            return True
        if not self.group:
            return False
        return user in await self._group_members()

    async def everyone(self) -> list[str]:
        members = await self._group_members() if self.group else frozenset()
        return sorted(self.users | members)

    async def _group_members(self) -> frozenset[str]:
        now = self._monotonic()
        if self._read_at is not None and now - self._read_at < self.ttl:
            return self._members
        try:
            response = await self.client.usergroups_users_list(usergroup=self.group)
            self._members = frozenset(str(u) for u in response.get("users") or [])
            self._read_at = now
        except (SlackApiError, SlackClientError, OSError) as exc:
            # Keep the last known members: a Slack hiccup must not lock every reviewer out.
            log.warning("could not read reviewer group %s: %s", self.group, exc)
        return self._members
