"""The Slack app: a slack-bolt ``AsyncApp`` served at ``/slack/events`` (or over Socket Mode),
its listeners, and the :class:`~desk.ports.Channel` that delivers into Slack.

Every listener acks at once and leaves slow work (the database, drafting, Web API calls) to
a task the bot keeps track of, so Slack always has its answer within three seconds and
:meth:`SlackBot.drain` (tests, shutdown) can wait for the work to finish.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Coroutine, Sequence
from datetime import timedelta
from typing import Any

import aiohttp
from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler
from slack_bolt.adapter.socket_mode.async_internals import send_async_response
from slack_bolt.adapter.starlette.async_handler import AsyncSlackRequestHandler
from slack_bolt.async_app import AsyncApp
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.http_retry.builtin_async_handlers import (
    AsyncConnectionErrorRetryHandler,
    AsyncRateLimitErrorRetryHandler,
    AsyncServerErrorRetryHandler,
)
from slack_sdk.socket_mode.async_client import AsyncBaseSocketModeClient
from slack_sdk.socket_mode.request import SocketModeRequest
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.webhook.async_client import AsyncWebhookClient
from sqlalchemy import delete
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from bot.access import Reviewers
from bot.channel import SlackChannel
from bot.commands import Commands
from bot.followups import FollowUpSurface
from bot.intake import Intake
from bot.middleware import dedupe_events, skip_retries
from bot.review import Review
from desk.followups import FollowUps
from desk.models import SeenEvent
from desk.pipeline import Desk
from desk.settings import SlackSettings

__all__ = ["SlackBot"]

log = logging.getLogger(__name__)

DEFAULT_API_URL = "https://slack.com/api/"
PRUNE_EVERY = 3600.0  # seconds between clean-ups of the seen event ids
# apps.connections.open errors that retrying cannot mend.
REFUSED_APP_TOKEN = frozenset({"invalid_auth", "not_allowed_token_type", "token_revoked",
                               "account_inactive", "not_authed"})


class SlackBot:
    """Everything Slack: intake, review cards, commands, and delivery into threads."""

    def __init__(self, settings: SlackSettings, desk: Desk, *,
                 wake: asyncio.Event | None = None, public_url: str = "",
                 followups: FollowUps | None = None) -> None:
        self.settings = settings
        self.desk = desk
        self.wake_event = wake
        self.public_url = public_url.rstrip("/")
        api_url = settings.api_url or DEFAULT_API_URL
        # One connection pool for every Web API call (the SDK opens a session per call
        # otherwise); it needs a running loop, which the service always has.
        self._session: aiohttp.ClientSession | None = None
        with contextlib.suppress(RuntimeError):
            asyncio.get_running_loop()
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30))
        self.client = AsyncWebClient(
            session=self._session,
            token=settings.bot_token or None,
            base_url=api_url if api_url.endswith("/") else api_url + "/",
            retry_handlers=[
                AsyncConnectionErrorRetryHandler(),
                # The SDK does not retry 429 unless told; it honours Retry-After.
                AsyncRateLimitErrorRetryHandler(max_retry_count=1),
                AsyncServerErrorRetryHandler(max_retry_count=1),
            ],
        )
        # The client carries the token; passing both makes bolt warn that one is ignored.
        self.app = AsyncApp(
            client=self.client,
            signing_secret=settings.signing_secret or None,
            request_verification_enabled=bool(settings.signing_secret),
            process_before_response=True,
            logger=logging.getLogger("bot.bolt"),
        )
        self.reviewers = Reviewers(self.client, settings.reviewers, settings.reviewer_group)
        if not self.reviewers.configured:
            log.warning("no SLACK_REVIEWERS or SLACK_REVIEWER_GROUP: nobody can approve in Slack")
        self.followups = FollowUpSurface(self, followups)
        self.channel = SlackChannel(
            self.client, desk, review_channel=settings.review_channel,
            escalation_channel=settings.escalation_channel,
            followups_enabled=self.followups.enabled)
        self._tasks: set[asyncio.Task[None]] = set()
        self._handler = AsyncSlackRequestHandler(self.app)
        self._socket: Any = None
        self._pruned_at: float | None = None
        self.intake = Intake(self)
        self.review = Review(self)
        self.commands = Commands(self)
        self._register()

    # ---- wiring -------------------------------------------------------------------------

    def _register(self) -> None:
        app = self.app
        app.middleware(skip_retries())
        app.middleware(dedupe_events(self.desk.store, self.desk.clock.now))
        self.intake.register(app)
        self.review.register(app)
        self.commands.register(app)
        self.followups.register(app)

    def routes(self) -> list[BaseRoute]:
        """POST /slack/events: events, interactivity, slash commands and shortcuts."""
        if not self.settings.signing_secret:
            return []  # Socket Mode only: never accept unsigned requests over HTTP

        async def slack_events(request: Request) -> Response:
            return await self._handler.handle(request)

        return [Route("/slack/events", slack_events, methods=["POST"])]

    async def run(self, stop: asyncio.Event) -> None:
        """Socket Mode when SLACK_APP_TOKEN is set; otherwise Slack comes to us over HTTP."""
        if not self.settings.app_token or not await self._app_token_accepted():
            return
        self._socket = _SocketModeHandler(self.app, self.settings.app_token,
                                          ping_interval=self.settings.socket_ping_seconds)
        await self._socket.connect_async()
        log.info("Slack Socket Mode connected")
        try:
            await stop.wait()
        finally:
            await self._socket.close_async()
            self._socket = None

    async def _app_token_accepted(self) -> bool:
        """Ask Slack once before Socket Mode starts: a refused app token is for an operator
        to fix, and the SDK would retry it every ten seconds for ever. An unreachable Slack
        is left to the SDK's retries."""
        try:
            await self.client.apps_connections_open(app_token=self.settings.app_token)
        except SlackApiError as exc:
            error = exc.response.get("error")
            if error in REFUSED_APP_TOKEN:
                log.error("Slack refused SLACK_APP_TOKEN (%s); Socket Mode stays off until "
                          "it is fixed and the service restarted", error)
                return False
        except Exception as exc:  # anything but a refusal: the SDK's own retries decide
            log.warning("could not check SLACK_APP_TOKEN with Slack (%s); connecting anyway",
                        type(exc).__name__)
        return True

    async def tick(self) -> int:
        """Worker step: forget handled event ids after a day (Slack retries within hours)."""
        now = time.monotonic()
        if self._pruned_at is not None and now - self._pruned_at < PRUNE_EVERY:
            return 0
        self._pruned_at = now
        cutoff = self.desk.clock.now() - timedelta(days=1)
        async with self.desk.store.session() as session:
            result = await session.execute(delete(SeenEvent).where(SeenEvent.at < cutoff))
        return int(getattr(result, "rowcount", 0) or 0)

    async def aclose(self) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.drain(), timeout=10)
        for task in list(self._tasks):
            task.cancel()
        if self._socket is not None:
            await self._socket.close_async()
            self._socket = None
        if self._session is not None:
            await self._session.close()
            self._session = None

    # ---- shared by the listeners --------------------------------------------------------

    def spawn(self, work: Coroutine[Any, Any, Any], name: str) -> None:
        """Run slow work after the ack; failures are logged, never lost silently."""
        task = asyncio.create_task(self._guard(work, name), name=f"slack:{name}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    @staticmethod
    async def _guard(work: Coroutine[Any, Any, Any], name: str) -> None:
        try:
            await work
        except Exception:
            log.exception("Slack task %s failed", name)

    async def drain(self) -> None:
        """Wait until every task started by a listener (and those they started) is done."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    def wake(self) -> None:
        """Tell the worker there is outbox work, so replies leave at once."""
        if self.wake_event is not None:
            self.wake_event.set()

    async def tell(self, user: str, text: str, *, channel: str | None = None,
                   thread_ts: str | None = None, response_url: str | None = None,
                   replace: bool = False) -> None:
        """An ephemeral message to one person: via the response URL when there is one
        (works in any conversation), else ``chat.postEphemeral``."""
        try:
            if response_url:
                webhook = AsyncWebhookClient(response_url)
                await webhook.send(text=text, response_type="ephemeral",
                                   replace_original=replace)
            elif channel:
                kwargs: dict[str, Any] = {"thread_ts": thread_ts} if thread_ts else {}
                await self.client.chat_postEphemeral(channel=channel, user=user, text=text,
                                                     **kwargs)
            else:
                await self.client.chat_postMessage(channel=user, text=text)
        except (SlackApiError, SlackClientError, OSError) as exc:
            log.warning("could not tell %s: %s", user, exc)


class _SocketModeHandler(AsyncSocketModeHandler):
    """Bolt's Socket Mode handler with two fixes. A first delivery is not taken for a retry:
    Slack puts ``retry_attempt: 0`` on every event and bolt would send it on as
    ``X-Slack-Retry-Num: 0``, which :func:`~bot.middleware.skip_retries` drops. And listeners
    get the payload as the raw body (bolt leaves it empty): the desk keeps it as the message's
    original and tells messages apart by its hash, so every empty one looked like the first."""

    async def handle(self, client: AsyncBaseSocketModeClient, req: SocketModeRequest) -> None:
        start = time.time()
        headers: dict[str, str | Sequence[str]] | None = None
        if req.retry_attempt:
            headers = {"x-slack-retry-num": str(req.retry_attempt),
                       "x-slack-retry-reason": req.retry_reason or ""}
        request = AsyncBoltRequest(mode="socket_mode", body=json.dumps(req.payload),
                                   headers=headers)
        response = await self.app.async_dispatch(request)
        await send_async_response(client, req, response, start)
