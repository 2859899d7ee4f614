"""Builds the service from settings: store, clock, calendar, classifier, drafter, channels."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from desk.envelope import InboundMessage
from desk.errors import ConfigError
from desk.followups import FollowUps
from desk.migrate import upgrade_async
from desk.outbox import Dispatcher
from desk.pipeline import Desk, Received
from desk.ports import Channel, Classifier, Clock, SystemClock
from desk.reminders import Reminders
from desk.settings import Settings
from desk.sla import BusinessCalendar
from desk.store import Store

__all__ = ["Service", "build_service", "build_store"]

log = logging.getLogger(__name__)


@dataclass
class Service:
    settings: Settings
    store: Store
    clock: Clock
    calendar: BusinessCalendar
    desk: Desk
    channels: dict[str, Channel]
    dispatcher: Dispatcher
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    parts: dict[str, Any] = field(default_factory=dict)  # slack bot, intake, drafter, …

    async def on_inbound(self, inbound: InboundMessage) -> Received:
        """A channel's intake of one message: see :meth:`on_inbound_batch`."""
        return (await self.on_inbound_batch([inbound]))[0]

    async def on_inbound_batch(self, inbounds: Sequence[InboundMessage]) -> list[Received]:
        """A channel's intake: store and route at once, draft right away for a fast card.
        A case whose drafting fails stays received, and the worker's recovery retries it."""
        received = await self.desk.receive_many(inbounds)
        new = [r.case_id for r in received if r.created and r.case_id is not None]
        if new:
            await self.desk.process_many(new)
        self.wake.set()
        return received

    def package_url(self, token: str) -> str:
        return f"{self.settings.web.public_url}/p/{token}"

    async def close(self) -> None:
        for part in self.parts.values():
            closer = getattr(part, "aclose", None)
            if closer is not None:
                await closer()
        await self.store.close()


def build_store(settings: Settings) -> Store:
    if not settings.database.url:
        try:
            settings.data_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError("CITY311_DATA_DIR", f"cannot create {settings.data_dir}: "
                              f"{exc.strerror}") from exc
    url = settings.database_url
    if url.startswith("sqlite") and ":memory:" not in url:
        folder = Path(url.split(":///", 1)[-1]).parent
        if not folder.is_dir():
            raise ConfigError("DATABASE_URL", f"the folder {folder} does not exist")
    return Store.from_url(url, echo=settings.database.echo)


def build_classifier(settings: Settings, *, warm: bool = False) -> Classifier:
    # The channel and NLP packages are imported when first needed: a quick command such as
    # `city311 cities list` should not pay for spaCy and Slack's SDK.
    from nlp import load_classifier

    return load_classifier(warm=warm)


async def build_service(
    settings: Settings, *, clock: Clock | None = None, classifier: Classifier | None = None,
    migrate: bool = True, with_classifier: bool = True, long_running: bool = False,
) -> Service:
    """Everything the web app and the worker need, wired once. A ``long_running`` service
    (the web app, the worker) warms its classifier's vocabulary first (about 0.4 s); a command
    that classifies one question does not."""
    store = build_store(settings)
    if migrate:
        await upgrade_async(settings.database_url)
    clock = clock or SystemClock()
    calendar = BusinessCalendar(settings.sla)
    if classifier is None and with_classifier:
        classifier = await asyncio.to_thread(build_classifier, settings, warm=long_running)
    from knowledge.drafting import LibraryDrafter

    drafter = LibraryDrafter(store)
    parts: dict[str, Any] = {"drafter": drafter}
    desk = Desk(
        store, clock, calendar, classifier=classifier, drafter=drafter,
        package_url=lambda token: f"{settings.web.public_url}/p/{token}",
        review_channel=settings.slack.review_channel or None,
        ack_per_sender_per_hour=settings.mail.ack_per_sender_per_hour,
        flood_per_sender_per_hour=settings.flood_per_sender_per_hour,
    )
    channels: dict[str, Channel] = {}
    dispatcher = Dispatcher(
        store, channels, clock, on_sent=desk.on_sent, on_failed=desk.on_failed,
        on_delayed=desk.on_delayed,
        delayed_after=timedelta(minutes=settings.delivery_delayed_minutes))
    service = Service(settings, store, clock, calendar, desk, channels, dispatcher, parts=parts)
    parts["reminders"] = Reminders(
        store, clock, calendar, reviewers=settings.slack.reviewers,
        escalation=bool(settings.slack.escalation_channel or settings.slack.review_channel))
    followups = FollowUps(store, clock, calendar, organizer_email=settings.mail.address or "",
                          organizer_name=settings.mail.from_name)
    parts["followups"] = followups
    if settings.mail.delivery_enabled:
        from mail.delivery import EmailChannel

        channels["email"] = EmailChannel(settings.mail, tls_context=settings.mail.ssl_context())
    if settings.mail.intake_enabled:
        from mail.intake import ImapIntake

        parts["mail_intake"] = ImapIntake(settings.mail, store, service.on_inbound_batch,
                                          ssl_context=settings.mail.ssl_context())
    if settings.slack.enabled:
        from bot.app import SlackBot

        bot = SlackBot(settings.slack, desk, wake=service.wake,
                       public_url=settings.web.public_url, followups=followups)
        parts["slack"] = bot
        channels["slack"] = bot.channel
    return service
