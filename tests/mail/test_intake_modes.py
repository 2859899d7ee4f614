"""Intake settings against real Dovecot servers: polling without IDLE, a done folder,
TLS and STARTTLS, a server restart, and one reader per mailbox on PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from desk.models import Case, MailboxState
from desk.settings import MailSettings
from mail.intake import ImapIntake
from tests.mail.conftest import count, mail_settings, make_service, question, wait_until
from tests.servers import DovecotServer

pytestmark = pytest.mark.dovecot


@pytest.fixture
def dovecot_no_idle() -> Iterator[DovecotServer]:
    server = DovecotServer.start(idle=False)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def dovecot_tls() -> Iterator[DovecotServer]:
    server = DovecotServer.start(tls=True)
    yield server
    server.stop()


async def test_polls_without_idle_and_moves_handled_mail_to_the_done_folder(
    db_url: str, tmp_path: Path, dovecot_no_idle: DovecotServer, running,
) -> None:
    server = dovecot_no_idle
    settings = mail_settings(server, imap_poll_seconds=0.2, imap_done_folder="Handled")
    service = await make_service(db_url, tmp_path, settings)
    await running(service)
    await wait_until(lambda: count(service.store, MailboxState), what="intake ready")
    await asyncio.to_thread(server.deliver_many, [question(1), question(2)])
    await wait_until(lambda: _cases(service.store, 2), what="two cases by polling")
    await wait_until(lambda: _moved(server, 2), what="both moved")
    assert server.count("INBOX") == 0
    assert all("\\Seen" in flags for flags in server.flags("Handled").values())


async def _cases(store, wanted: int) -> bool:  # type: ignore[no-untyped-def]
    return await count(store, Case) >= wanted


async def _moved(server: DovecotServer, wanted: int) -> bool:
    return await asyncio.to_thread(server.count, "Handled") == wanted


SQLITE_ONLY = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)


@SQLITE_ONLY
@pytest.mark.parametrize("security", ["tls", "starttls"])
async def test_tls_and_starttls(security: str, store, dovecot_tls: DovecotServer) -> None:  # type: ignore[no-untyped-def]
    server = dovecot_tls
    port = server.imaps_port if security == "tls" else server.imap_port
    settings = MailSettings(**server.mail_settings(imap_security=security, imap_port=port))
    got: list[str] = []

    async def on_messages(inbounds) -> None:  # type: ignore[no-untyped-def]
        got.extend(inbound.external_id for inbound in inbounds)

    intake = ImapIntake(settings, store, on_messages, ssl_context=server.ssl_context())
    stop = asyncio.Event()
    task = asyncio.create_task(intake.run(stop))
    try:
        await asyncio.to_thread(server.deliver, question(7))
        await wait_until(lambda: _has(got, 1), what="the message over TLS")
        assert got == ["<q7@springfield.gov>"]
    finally:
        stop.set()
        await asyncio.wait_for(task, 15)


@SQLITE_ONLY
async def test_untrusted_certificate_is_refused(store, dovecot_tls: DovecotServer) -> None:  # type: ignore[no-untyped-def]
    server = dovecot_tls
    settings = MailSettings(**server.mail_settings(imap_security="tls",
                                                   imap_port=server.imaps_port))
    got: list[str] = []

    async def on_messages(inbounds) -> None:  # type: ignore[no-untyped-def]
        got.extend(inbound.external_id for inbound in inbounds)

    intake = ImapIntake(settings, store, on_messages)  # system CAs: the test cert is unknown
    stop = asyncio.Event()
    task = asyncio.create_task(intake.run(stop))
    await asyncio.to_thread(server.deliver, question(8))
    await asyncio.sleep(1.5)
    stop.set()
    await asyncio.wait_for(task, 15)
    assert got == []
    assert await count(store, MailboxState) == 0


async def _has(got: list[str], wanted: int) -> bool:
    return len(got) >= wanted


@SQLITE_ONLY
async def test_reconnects_after_the_server_restarts(
    store, dovecot: DovecotServer,  # type: ignore[no-untyped-def]
) -> None:
    settings = MailSettings(**dovecot.mail_settings(imap_poll_seconds=3600.0))
    got: list[str] = []

    async def on_messages(inbounds) -> None:  # type: ignore[no-untyped-def]
        got.extend(inbound.external_id for inbound in inbounds)

    intake = ImapIntake(settings, store, on_messages, timeout=5)
    stop = asyncio.Event()
    task = asyncio.create_task(intake.run(stop))
    try:
        await asyncio.to_thread(dovecot.deliver, question(1))
        await wait_until(lambda: _has(got, 1), what="the first message")
        await asyncio.to_thread(dovecot.restart)
        await asyncio.to_thread(dovecot.deliver, question(2))
        await wait_until(lambda: _has(got, 2), timeout=20, what="the message after restart")
        assert got == ["<q1@springfield.gov>", "<q2@springfield.gov>"]
    finally:
        stop.set()
        await asyncio.wait_for(task, 15)


@pytest.mark.postgres
@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
async def test_one_reader_per_mailbox_on_postgresql(
    store, dovecot: DovecotServer,  # type: ignore[no-untyped-def]
) -> None:
    settings = MailSettings(**dovecot.mail_settings())
    got: dict[str, list[str]] = {"a": [], "b": []}

    def recorder(name: str):  # type: ignore[no-untyped-def]
        async def on_messages(inbounds) -> None:  # type: ignore[no-untyped-def]
            got[name].extend(inbound.external_id for inbound in inbounds)
        return on_messages

    first = ImapIntake(settings, store, recorder("a"), lock_retry_seconds=0.2)
    second = ImapIntake(settings, store, recorder("b"), lock_retry_seconds=0.2)
    stop_first, stop_second = asyncio.Event(), asyncio.Event()
    task_first = asyncio.create_task(first.run(stop_first))
    await wait_until(lambda: count(store, MailboxState), what="the first reader")
    task_second = asyncio.create_task(second.run(stop_second))
    try:
        await asyncio.sleep(0.5)  # the second reader tries the lock and waits
        await asyncio.to_thread(dovecot.deliver_many, [question(n) for n in range(5)])
        await wait_until(lambda: _has(got["a"], 5), what="five messages")
        assert got["b"] == []
        # The first stops; the second takes the lock and carries on from the stored UID.
        stop_first.set()
        await asyncio.wait_for(task_first, 15)
        await asyncio.to_thread(dovecot.deliver, question(9))
        await wait_until(lambda: _has(got["b"], 1), what="the second reader takes over")
        assert got["b"] == ["<q9@springfield.gov>"]
        assert len(got["a"]) == 5
    finally:
        stop_first.set()
        stop_second.set()
        await asyncio.wait_for(asyncio.gather(task_first, task_second), 15)
