"""A mail flood from one sender, through a real Dovecot, with other cities' questions
interleaved: the flood is rate-limited and reported once; nothing is dropped, and the other
cities are drafted, carded and acknowledged as on any other day."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from city311.wiring import build_service
from desk.directory import import_cities, shipped_cities
from desk.models import Case, Draft, Event, MailboxState, Message, Outbox
from desk.ports import Classifier
from desk.settings import DatabaseSettings, MailSettings, Settings, SlackSettings, WebSettings
from desk.store import Store
from knowledge.library import ensure_seeded
from tests.hostile.conftest import REVIEWERS
from tests.hostile.support import email_bytes
from tests.servers import DovecotServer, SmtpServer
from tests.servers.slack_api import SlackApi
from tests.support import FakeClock

pytestmark = [pytest.mark.dovecot, pytest.mark.slow]

FLOOD_SENDER = "mayor@fallriverma.org"
FLOOD = 100
OTHERS = ["chief@miamigov.com", "clerk@comptoncity.org", "finance@wycokck.org",
          "manager@lynwood.ca.us", "planner@fallriverma.gov"]
QUESTIONS = [
    "How do other cities improve their bond rating after a downgrade?",
    "What programs help reduce violent crime downtown?",
]
FLOOD_LIMIT = 20  # CITY311_FLOOD_PER_SENDER_PER_HOUR default
ACK_LIMIT = 5  # MAIL_ACK_PER_SENDER_PER_HOUR default


async def _count(store: Store, model: Any, *where: Any) -> int:
    async with store.session() as session:
        result = await session.execute(select(func.count()).select_from(model).where(*where))
        return int(result.scalar_one())


async def _wait(check: Callable[[], Awaitable[bool]], what: str, timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await check():
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def _mail() -> list[tuple[str, bytes]]:
    """The flood, with two questions from each of five other senders woven through it."""
    out: list[tuple[str, bytes]] = []
    others = [(sender, q) for q in QUESTIONS for sender in OTHERS]
    for n in range(FLOOD):
        out.append((FLOOD_SENDER, email_bytes(
            f"flood{n}", FLOOD_SENDER, subject=f"Budget question {n}",
            body=f"Hello,\n\nHow do we fund our pension obligations? This is message {n}.\n")))
        if n % 10 == 5 and others:
            sender, question = others.pop(0)
            out.append((sender, email_bytes(f"other{n}", sender, subject=question,
                                            body=f"Hello,\n\n{question}\n\nThanks\n")))
    assert not others
    return out


async def test_flood_is_limited_and_reported_and_other_cities_flow(
        tmp_path: Path, dovecot: DovecotServer, smtp: SmtpServer, slack_api: SlackApi,
        classifier: Classifier) -> None:
    settings = Settings(
        data_dir=tmp_path, database=DatabaseSettings(url=f"sqlite:///{tmp_path / 'f.db'}"),
        mail=MailSettings(**{**dovecot.mail_settings(), **smtp.mail_settings(),
                             "imap_poll_seconds": 3600.0}),
        slack=SlackSettings(bot_token="xoxb-flood-test", signing_secret="s" * 32,
                            review_channel="CREVIEW", api_url=slack_api.base_url,
                            reviewers=REVIEWERS),
        web=WebSettings(base_url="http://311.test"))
    clock = FakeClock(datetime.now(UTC).replace(microsecond=0))
    service = await build_service(settings, clock=clock, classifier=classifier)
    store = service.store
    stop = asyncio.Event()
    intake = None
    try:
        await import_cities(store, shipped_cities(), clock.now())
        await ensure_seeded(store)
        intake = asyncio.create_task(service.parts["mail_intake"].run(stop))
        async def ready() -> bool:
            return await _count(store, MailboxState) > 0

        await _wait(ready, "the intake to be ready")
        mail = _mail()
        await asyncio.to_thread(dovecot.deliver_many, [raw for _, raw in mail])

        async def all_in() -> bool:
            return await _count(store, Message, Message.direction == "in") == len(mail)

        await _wait(all_in, "every message to be stored")
        for _ in range(40):
            result = await service.dispatcher.run_once()
            await service.parts["slack"].drain()
            if not result.sent and not result.failed:
                break
    finally:
        stop.set()
        if intake is not None:
            await asyncio.wait_for(intake, 30)
        cases = await _cases(store)
        drafted = {d for d in await _draft_cases(store)}
        suppressed = await _count(store, Event, Event.kind == "ack_suppressed")
        cards = await _count(store, Outbox, Outbox.kind == "review_card",
                             Outbox.status == "sent")
        await service.close()

    # Nothing dropped: every message opened its own case.
    assert len(cases) == len(mail)
    flood = [c for c in cases if c.contact is not None and c.contact.email == FLOOD_SENDER]
    others = [c for c in cases if c not in flood]
    assert len(flood) == FLOOD and len(others) == len(OTHERS) * len(QUESTIONS)
    # The first FLOOD_LIMIT flood cases are handled as usual; the rest are held in triage.
    held = [c for c in flood if (c.triage_reason or "").startswith("flood")]
    assert len(held) == FLOOD - FLOOD_LIMIT
    assert all(c.status == "needs_triage" for c in held)
    assert all(c.id not in drafted for c in held)
    # Acknowledgements: at most ACK_LIMIT an hour to the flooding sender.
    to_flooder = [r for r in smtp.received if FLOOD_SENDER in r.rcpt_tos]
    assert len(to_flooder) == ACK_LIMIT
    assert suppressed == FLOOD_LIMIT - ACK_LIMIT
    # Reported once, in the review channel, with the address masked.
    notices = [m for m in slack_api.calls_to("chat.postMessage")
               if "flood" in str(m.get("text", "")).lower()]
    assert len(notices) == 1
    assert "m***@fallriverma.org" in notices[0]["text"]
    assert FLOOD_SENDER not in str(notices[0])
    # The other cities: drafted, carded and acknowledged, each one.
    assert all(c.id in drafted and c.status in ("drafted", "needs_triage") for c in others)
    assert all(not (c.triage_reason or "").startswith("flood") for c in others)
    for sender in OTHERS:
        acks = [r for r in smtp.received if sender in r.rcpt_tos]
        assert len(acks) == len(QUESTIONS), sender
    assert cards == FLOOD_LIMIT + len(others)


async def _cases(store: Store) -> list[Case]:
    async with store.session() as session:
        found = await session.execute(select(Case).order_by(Case.id))
        return list(found.scalars().all())


async def _draft_cases(store: Store) -> list[int]:
    async with store.session() as session:
        found = await session.execute(select(Draft.case_id).distinct())
        return list(found.scalars().all())
