"""Fixtures for the email channel: a real Dovecot, a real SMTP server, and a wired service."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from city311.wiring import Service, build_service
from desk.models import Case, Message, Outbox
from desk.settings import DatabaseSettings, MailSettings, Settings
from desk.store import Store
from mail.parse import parse_message, to_inbound
from tests.servers import DovecotServer, SmtpServer
from tests.support import FakeClock

CITY_DOMAIN = "springfield.gov"
CITY_SENDER = "clerk@springfield.gov"




def mail_settings(dovecot: DovecotServer | None, smtp: SmtpServer | None = None,
                  **overrides: Any) -> MailSettings:
    values: dict[str, Any] = {"address": "desk@311.test", "from_name": "311 for Cities",
                              # Huge: a test that sees new mail did so through IDLE.
                              "imap_poll_seconds": 3600.0}
    if dovecot is not None:
        values.update(dovecot.mail_settings())
    if smtp is not None:
        values.update(smtp.mail_settings())
    values.update(overrides)
    return MailSettings(**values)


def service_settings(db_url: str, tmp_path: Path, mail: MailSettings) -> Settings:
    return Settings(data_dir=tmp_path, database=DatabaseSettings(url=db_url), mail=mail)


async def make_service(db_url: str, tmp_path: Path, mail: MailSettings,
                       clock: FakeClock | None = None) -> Service:
    service = await build_service(service_settings(db_url, tmp_path, mail), clock=clock,
                                  migrate=False, with_classifier=False)
    async with service.store.session() as session:
        await service.store.add_city(session, "Springfield", "IL", [CITY_DOMAIN],
                                     datetime.now(UTC))
    return service


@pytest.fixture
def live_clock() -> FakeClock:
    """A hand-moved clock that starts at the real time (IMAP intake stamps real times)."""
    return FakeClock(datetime.now(UTC).replace(microsecond=0))


@pytest.fixture
async def running() -> AsyncIterator[Callable[[Service], Awaitable[asyncio.Task[None]]]]:
    """Start a service's mail intake as a background task; stopped at teardown."""
    started: list[tuple[asyncio.Event, asyncio.Task[None], Service]] = []

    async def start(service: Service) -> asyncio.Task[None]:
        stop = asyncio.Event()
        task = asyncio.create_task(service.parts["mail_intake"].run(stop))
        started.append((stop, task, service))
        return task

    yield start
    for stop, task, service in started:
        stop.set()
        try:
            await asyncio.wait_for(task, 15)
        finally:
            await service.close()


async def wait_until(predicate: Callable[[], Awaitable[bool]], timeout: float = 15.0,
                     what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await predicate():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


async def count(store: Store, model: Any, *where: Any) -> int:
    async with store.session() as session:
        result = await session.execute(select(func.count()).select_from(model).where(*where))
        return int(result.scalar_one())


async def cases(store: Store) -> list[Case]:
    async with store.session() as session:
        return list((await session.execute(select(Case).order_by(Case.id))).scalars().all())


async def messages(store: Store) -> list[Message]:
    async with store.session() as session:
        return list((await session.execute(select(Message).order_by(Message.id)))
                    .scalars().all())


def question(n: int | str, *, sender: str = CITY_SENDER, subject: str | None = None,
             body: str | None = None, extra: str = "") -> bytes:
    """A city's question, as raw RFC 822 bytes with CRLF line ends."""
    subject = subject or f"Question {n} about our housing bond"
    body = body or (f"Hello,\n\nHow do other cities structure a housing bond? (#{n})\n\n"
                    "Thanks,\nPat Clerk\nCity of Springfield, IL\n")
    head = (f"From: Pat Clerk <{sender}>\nTo: desk@311.test\nSubject: {subject}\n"
            f"Date: Tue, 24 Nov 2026 10:00:00 -0500\nMessage-ID: <q{n}@{sender.split('@')[1]}>\n"
            f"MIME-Version: 1.0\nContent-Type: text/plain; charset=utf-8\n{extra}")
    return (head + "\n" + body).replace("\r\n", "\n").replace("\n", "\r\n").encode()


async def approved_case(service: Service, clock: FakeClock, raw: bytes | None = None, *,
                        keep_ack: bool = False) -> Case:
    """A city's question (``question(1)`` unless given), filed, drafted and approved: its
    reply waits in the outbox, alone unless ``keep_ack``."""
    raw = raw or question(1)
    received = await service.desk.receive(to_inbound(parse_message(raw), raw, clock.now()))
    assert received.case_id is not None
    await service.desk.process(received.case_id)
    if not keep_ack:
        async with service.store.session() as session:
            # The acknowledgement is someone else's concern here.
            await session.execute(Outbox.__table__.delete().where(Outbox.kind == "ack"))
    return await service.desk.approve(received.case_ref or "", "U0REVIEWER")


async def reply_row(service: Service) -> Outbox:
    async with service.store.session() as session:
        return (await session.execute(select(Outbox).where(Outbox.kind == "reply"))
                ).scalar_one()
