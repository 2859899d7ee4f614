"""PostgreSQL goes away and comes back while a worker runs: the worker recovers by itself
(nobody restarts it), and every question still becomes one case answered once."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from city311.wiring import Service
from desk.models import Case, Outbox
from desk.store import Store
from tests.faults.harness import (
    WorkerProcess,
    approve_all,
    assert_everything_once,
    card_posts,
    case_count,
    drafted,
    mail_by_kind,
    outbox_rows,
    question,
    question_ids,
    wait_drained,
    wait_until,
    worker_env,
)
from tests.servers.dovecot import DovecotServer
from tests.servers.postgres import PostgresServer
from tests.servers.slack_api import SlackApi
from tests.servers.smtp import RecordingHandler, SmtpServer

pytestmark = [pytest.mark.slow, pytest.mark.dovecot]

BATCH = 4


async def test_worker_recovers_from_a_database_restart_and_loses_nothing(
    private_pg: PostgresServer, private_pg_database: str, tmp_path: Path,
    dovecot: DovecotServer, smtp_server: SmtpServer, slack_api: SlackApi,
    workers: Callable[[str, dict[str, str]], WorkerProcess],
    service_for: Callable[[str], Awaitable[Service]],
) -> None:
    service = await service_for(private_pg_database)
    store = service.store
    worker = workers("worker", worker_env(private_pg_database, tmp_path / "data",
                                          dovecot=dovecot, smtp=smtp_server, slack=slack_api))
    pool = [worker]

    async def watching() -> bool:
        return "mail intake watching" in worker.log()

    await wait_until(watching, timeout=180, what="the worker reading mail", workers=pool)

    async def handled(count: int) -> bool:
        return (await case_count(store) >= count and len(mail_by_kind(smtp_server)["ack"])
                >= count and len(card_posts(slack_api)) >= count)

    # Before: a batch filed, acknowledged, carded, approved and answered.
    await asyncio.to_thread(dovecot.deliver_many, [question(n) for n in range(BATCH)])
    await wait_until(lambda: handled(BATCH), timeout=120, what="the first batch", workers=pool)
    await approve_all(service, BATCH)

    async def replied(count: int) -> bool:
        return len(mail_by_kind(smtp_server)["reply"]) >= count

    await wait_until(lambda: replied(BATCH), timeout=60, what="the first replies",
                     workers=pool)
    # The outage starts with the outbox idle; deliveries caught mid-flight by it are the
    # subject of the tests further down, where the timing is held still.
    await wait_drained(store, pool, timeout=60)

    # The database goes down; mail keeps arriving at the IMAP server meanwhile.
    retries_before = worker.count("mail intake failed; reconnecting")
    await asyncio.to_thread(private_pg.stop_server, "fast")
    await asyncio.to_thread(dovecot.deliver_many, [question(n) for n in range(BATCH, 2 * BATCH)])

    async def noticed() -> bool:
        # The intake tried to store the new mail and could not: it is in its retry loop.
        return worker.count("mail intake failed; reconnecting") > retries_before

    await wait_until(noticed, timeout=30, what="the intake to meet the outage", workers=pool)
    await asyncio.to_thread(private_pg.start_server)
    # And once it is back, more mail, before the worker has necessarily reconnected.
    await asyncio.to_thread(dovecot.deliver_many,
                            [question(n) for n in range(2 * BATCH, 3 * BATCH)])

    await wait_until(lambda: handled(3 * BATCH), timeout=180,
                     what="every message filed after the restart", workers=pool)
    await approve_all(service, 2 * BATCH)
    await wait_until(lambda: replied(3 * BATCH), timeout=120, what="every reply",
                     workers=pool)
    await wait_drained(store, pool, timeout=60)
    # Let any stray second attempt show itself before counting.
    await asyncio.sleep(1.0)

    assert worker.alive, worker.tail()
    await assert_everything_once(store, smtp_server, question_ids(range(3 * BATCH)),
                                 slack=slack_api)


class GatedHandler(RecordingHandler):
    """Holds every DATA until the test opens the gate, so the test can take the database
    away while a message is on the wire."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = threading.Event()
        self.gate.set()
        self.waiting = threading.Event()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        if not self.gate.is_set():
            self.waiting.set()
            while not self.gate.is_set():
                await asyncio.sleep(0.02)
        return await super().handle_DATA(server, session, envelope)


@pytest.fixture
def gated_smtp() -> Iterator[SmtpServer]:
    server = SmtpServer()
    server.handler = GatedHandler()
    server.start()
    yield server
    server.handler.gate.set()  # type: ignore[attr-defined]
    server.stop()


@pytest.fixture
async def reply_held_while_the_database_stops(
    private_pg: PostgresServer, private_pg_database: str, tmp_path: Path,
    dovecot: DovecotServer, gated_smtp: SmtpServer,
    workers: Callable[[str, dict[str, str]], WorkerProcess],
    service_for: Callable[[str], Awaitable[Service]],
) -> tuple[Store, WorkerProcess]:
    """A worker answers a city's question; its approved reply is held at the SMTP server's
    gate while PostgreSQL stops. The caller decides how the server answers, then opens it."""
    service = await service_for(private_pg_database)
    store = service.store
    handler = gated_smtp.handler
    assert isinstance(handler, GatedHandler)
    worker = workers("worker", worker_env(private_pg_database, tmp_path / "data",
                                          dovecot=dovecot, smtp=gated_smtp))
    pool = [worker]

    async def acknowledged() -> bool:
        return len(mail_by_kind(gated_smtp)["ack"]) == 1

    await asyncio.to_thread(dovecot.deliver, question(0))
    await wait_until(acknowledged, timeout=180, what="the question acknowledged", workers=pool)
    await wait_until(lambda: drafted(store, 1), timeout=60, what="the draft", workers=pool)
    handler.gate.clear()
    await approve_all(service, 1)
    await asyncio.to_thread(handler.waiting.wait, 60)
    assert handler.waiting.is_set(), worker.tail()
    await asyncio.to_thread(private_pg.stop_server, "fast")
    return store, worker


async def test_database_down_while_a_reply_is_on_the_wire_neither_stalls_nor_doubles_it(
    private_pg: PostgresServer, gated_smtp: SmtpServer,
    reply_held_while_the_database_stops: tuple[Store, WorkerProcess],
) -> None:
    # The reply is accepted by the SMTP server only once the database is down: the send
    # succeeds, the bookkeeping after it cannot.
    store, worker = reply_held_while_the_database_stops
    pool = [worker]
    gated_smtp.handler.gate.set()  # type: ignore[attr-defined]

    async def reply_received() -> bool:
        return len(mail_by_kind(gated_smtp)["reply"]) == 1

    await wait_until(reply_received, timeout=30, what="the reply at the SMTP server",
                     workers=pool)
    await asyncio.sleep(1.0)  # the worker meets the outage while recording the send
    await asyncio.to_thread(private_pg.start_server)

    async def recorded() -> bool:
        rows = await outbox_rows(store, Outbox.kind == "reply")
        return bool(rows) and all(r.status == "sent" for r in rows)

    # Once the database is back the worker records what it sent, at once: not when a
    # 10-minute lease runs out, and without sending it again.
    try:
        await wait_until(recorded, timeout=20, what="the sent reply recorded", workers=pool)
    except AssertionError:
        rows = await outbox_rows(store, Outbox.kind == "reply")
        seen = [line for line in worker.log().splitlines()
                if "sent reply" in line or "step outbox" in line or "lease" in line]
        raise AssertionError(
            "the delivered reply was not recorded once the database was back: "
            f"{[(r.status, r.attempts, str(r.lease_until)) for r in rows]}\n"
            + "\n".join(seen)) from None
    assert await case_count(store, Case.status == "sent") == 1
    replies = mail_by_kind(gated_smtp)["reply"]
    assert len(replies) == 1 and set(replies.values()) == {1}, replies


async def test_database_down_while_a_reply_is_deferred_retries_it_once_the_database_is_back(
    private_pg: PostgresServer, gated_smtp: SmtpServer,
    reply_held_while_the_database_stops: tuple[Store, WorkerProcess],
) -> None:
    # The reply reaches the SMTP server, which defers it (451) only once the database is
    # down: the worker must put the row back for a retry and cannot write that down.
    store, worker = reply_held_while_the_database_stops
    pool = [worker]
    gated_smtp.refuse("451 4.3.0 Try again later")
    gated_smtp.handler.gate.set()  # type: ignore[attr-defined]

    async def deferred() -> bool:
        return worker.count("will retry in") > 0

    await wait_until(deferred, timeout=30, what="the reply deferred", workers=pool)
    await asyncio.sleep(1.0)  # the worker meets the outage while scheduling the retry
    await asyncio.to_thread(private_pg.start_server)

    async def replied() -> bool:
        return len(mail_by_kind(gated_smtp)["reply"]) == 1

    # A deferred reply is retried after its backoff (seconds), not after a lease (minutes).
    try:
        await wait_until(replied, timeout=30, what="the reply retried", workers=pool)
    except AssertionError:
        rows = await outbox_rows(store, Outbox.kind == "reply")
        raise AssertionError(
            "the deferred reply was not retried once the database was back: "
            f"{[(r.status, r.attempts, str(r.lease_until)) for r in rows]}") from None
    await wait_drained(store, pool, timeout=30, channels=["email"])
    assert await case_count(store, Case.status == "sent") == 1
    replies = mail_by_kind(gated_smtp)["reply"]
    assert len(replies) == 1 and set(replies.values()) == {1}, replies
