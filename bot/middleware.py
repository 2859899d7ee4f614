"""Global middleware: steps every request passes before a listener sees it.

Slack retries an event it thinks we missed (``X-Slack-Retry-Num``); we ack within three
seconds, so a retry only means Slack was impatient, and one event must open one case. Each
step is a plain function of the request, small enough to test alone.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

from slack_bolt.request.async_request import AsyncBoltRequest
from slack_bolt.response import BoltResponse

from desk.models import SeenEvent
from desk.store import Store, insert_ignore

__all__ = ["dedupe_events", "is_retry", "skip_retries"]

log = logging.getLogger(__name__)

Next = Callable[[], Awaitable[Any]]


def is_retry(request: AsyncBoltRequest) -> bool:
    """A redelivery: Slack numbers retries from 1 (Socket Mode marks first tries with 0)."""
    values = request.headers.get("x-slack-retry-num") or []
    number = str(values[0]).strip() if values else ""
    return bool(number) and number != "0"


def skip_retries() -> Callable[..., Awaitable[BoltResponse | None]]:
    async def skip_slack_retries(request: AsyncBoltRequest, next: Next) -> BoltResponse | None:  # noqa: A002
        if is_retry(request):
            reason = (request.headers.get("x-slack-retry-reason") or ["?"])[0]
            log.info("ignoring a Slack retry (%s)", reason)
            return BoltResponse(status=200, body="", headers={"X-Slack-No-Retry": "1"})
        return await next()  # type: ignore[no-any-return]

    return skip_slack_retries


def dedupe_events(store: Store, now: Callable[[], datetime]
                  ) -> Callable[..., Awaitable[BoltResponse | None]]:
    """An event id is handled once, also across processes (the seen_events table)."""

    async def dedupe_event_ids(body: dict[str, Any], next: Next) -> BoltResponse | None:  # noqa: A002
        event_id = body.get("event_id") if body.get("type") == "event_callback" else None
        if event_id:
            async with store.session() as session:
                fresh = await insert_ignore(session, SeenEvent,
                                            {"event_id": str(event_id)[:100], "at": now()})
            if not fresh:
                log.info("ignoring event %s: already handled", event_id)
                return BoltResponse(status=200, body="")
        return await next()  # type: ignore[no-any-return]

    return dedupe_event_ids
