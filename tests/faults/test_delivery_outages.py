"""SMTP refuses (451), then is gone; Slack answers 429 with Retry-After, then 500. Nothing is
lost and nothing is sent twice once they recover: counted at the SMTP server and at the Slack
stand-in."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from city311.wiring import Service
from desk.models import Outbox
from tests.faults.harness import (
    WorkerProcess,
    approve_all,
    assert_everything_once,
    card_posts,
    case_count,
    mail_by_kind,
    outbox_rows,
    question,
    question_ids,
    wait_drained,
    wait_until,
    worker_env,
)
from tests.servers.dovecot import DovecotServer
from tests.servers.slack_api import SlackApi
from tests.servers.smtp import SmtpServer

pytestmark = [pytest.mark.slow, pytest.mark.dovecot, pytest.mark.postgres]

QUESTIONS = 5


async def test_outages_delay_delivery_but_everything_arrives_once(
    shared_pg_database: str, tmp_path: Path, dovecot: DovecotServer, smtp_server: SmtpServer,
    slack_api: SlackApi, workers: Callable[[str, dict[str, str]], WorkerProcess],
    service_for: Callable[[str], Awaitable[Service]],
) -> None:
    service = await service_for(shared_pg_database)
    store = service.store
    # From the start: the SMTP server defers every message, and Slack rate-limits the first
    # posts, then fails with server errors. The SDK retries each once by itself, so every
    # failure here costs it two calls.
    smtp_server.refuse("451 4.3.0 Mail server temporarily busy", times=None)
    slack_api.fail("chat.postMessage", status=429, retry_after=1, times=4)
    slack_api.fail("chat.postMessage", status=500, times=4)
    worker = workers("worker", worker_env(shared_pg_database, tmp_path / "data",
                                          dovecot=dovecot, smtp=smtp_server, slack=slack_api))
    pool = [worker]

    async def watching() -> bool:
        return "mail intake watching" in worker.log()

    await wait_until(watching, timeout=180, what="the worker reading mail", workers=pool)
    await asyncio.to_thread(dovecot.deliver_many, [question(n) for n in range(QUESTIONS)])

    async def acks_erroring(needle: str) -> bool:
        rows = await outbox_rows(store, Outbox.kind == "ack")
        return len(rows) == QUESTIONS and all(
            r.status == "pending" and needle in (r.last_error or "") for r in rows)

    await wait_until(lambda: acks_erroring("451"), timeout=120,
                     what="every acknowledgement deferred by the SMTP server", workers=pool)
    # Then the SMTP server is gone altogether: connections are refused.
    await asyncio.to_thread(smtp_server.stop)
    await wait_until(lambda: acks_erroring("SMTP unavailable"), timeout=60,
                     what="every acknowledgement retried against the stopped server",
                     workers=pool)
    assert smtp_server.received == []
    smtp_server.accept()
    await asyncio.to_thread(smtp_server.start)

    async def acknowledged_and_carded() -> bool:
        return (len(mail_by_kind(smtp_server)["ack"]) >= QUESTIONS
                and len(card_posts(slack_api)) >= QUESTIONS)

    await wait_until(acknowledged_and_carded, timeout=120,
                     what="acknowledgements and cards after the outages", workers=pool)
    assert await case_count(store) == QUESTIONS

    # The replies meet a deferral each, and the card updates a rate limit and an error.
    smtp_server.refuse("451 4.7.1 Greylisted, try again", times=QUESTIONS)
    slack_api.fail("chat.update", status=429, retry_after=1, times=2)
    slack_api.fail("chat.update", status=500, times=2)
    await approve_all(service, QUESTIONS)

    async def replied() -> bool:
        return len(mail_by_kind(smtp_server)["reply"]) >= QUESTIONS

    await wait_until(replied, timeout=120, what="every reply", workers=pool)
    await wait_drained(store, pool, timeout=120)
    await asyncio.sleep(1.0)  # let any stray second attempt show itself before counting

    assert worker.alive, worker.tail()
    await assert_everything_once(store, smtp_server, question_ids(range(QUESTIONS)),
                                 slack=slack_api)
    # The outages really were met: each acknowledgement took three tries (deferred, refused,
    # sent), each reply at least two, and Slack answered 429 and 500 before it worked.
    rows = await outbox_rows(store, Outbox.channel == "email")
    assert min(r.attempts for r in rows if r.kind == "ack") >= 3
    assert min(r.attempts for r in rows if r.kind == "reply") >= 2
    statuses = Counter((c.method, c.status) for c in slack_api.calls)
    for method in ("chat.postMessage", "chat.update"):
        assert statuses[(method, 429)] and statuses[(method, 500)], statuses
    # Every card update reached its card (none gave up), each note posted once in the thread.
    notes = Counter(str(((c.get("metadata") or {}).get("event_payload") or {}).get("key"))
                    for c in slack_api.calls_to("chat.postMessage") if c.get("thread_ts"))
    assert notes and set(notes.values()) == {1}, notes
