"""Two `city311 worker` processes on one PostgreSQL database: no question is filed twice,
no acknowledgement, review card or reply leaves twice, and nothing is left behind."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import func, select

from city311.wiring import Service
from desk.errors import WorkflowError
from desk.models import Case, Draft, Outbox
from tests.faults.harness import (
    REVIEW_CHANNEL,
    WorkerProcess,
    card_posts,
    case_count,
    inbound_messages,
    inbound_thread_keys,
    mail_by_kind,
    outbox_rows,
    question,
    sender,
    wait_drained,
    wait_until,
    worker_env,
)
from tests.servers.dovecot import DovecotServer
from tests.servers.slack_api import SlackApi
from tests.servers.smtp import SmtpServer

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.dovecot]

QUESTIONS = 60


async def test_two_workers_file_and_send_everything_exactly_once(
    shared_pg_database: str, tmp_path: Path, dovecot: DovecotServer, smtp_server: SmtpServer,
    slack_api: SlackApi, workers: Callable[[str, dict[str, str]], WorkerProcess],
    service_for: Callable[[str], asyncio.Future[Service]],
) -> None:
    service = await service_for(shared_pg_database)
    store = service.store
    env = worker_env(shared_pg_database, tmp_path / "data", dovecot=dovecot, smtp=smtp_server,
                     slack=slack_api)
    pool = [workers("worker-a", env), workers("worker-b", env)]

    async def intake_held() -> bool:
        return any("mail intake watching" in w.log() for w in pool) and all(
            "311 for Cities worker" in w.banner() for w in pool)

    await wait_until(intake_held, timeout=180, what="both workers up, one reading mail",
                     workers=pool)

    await asyncio.to_thread(dovecot.deliver_many, [question(n) for n in range(QUESTIONS)])

    async def filed_and_acknowledged() -> bool:
        mail = mail_by_kind(smtp_server)
        return len(card_posts(slack_api)) >= QUESTIONS and len(mail["ack"]) >= QUESTIONS

    await wait_until(filed_and_acknowledged, timeout=300,
                     what=f"{QUESTIONS} review cards and acknowledgements", workers=pool)
    assert await case_count(store) == QUESTIONS

    # Approve every case, twice at once (two reviewers clicking): exactly one approval wins.
    async with store.session() as session:
        refs = list((await session.execute(select(Case.ref).order_by(Case.id))).scalars())
    for ref in refs:
        outcome = await asyncio.gather(service.desk.approve(ref, "UREV1"),
                                       service.desk.approve(ref, "UREV2"),
                                       return_exceptions=True)
        won = [o for o in outcome if isinstance(o, Case)]
        lost = [o for o in outcome if isinstance(o, WorkflowError)]
        assert len(won) == 1 and len(lost) == 1, (ref, outcome)

    async def all_sent() -> bool:
        return await case_count(store, Case.status == "sent") >= QUESTIONS

    await wait_until(all_sent, timeout=300, what="every reply sent", workers=pool)
    await wait_drained(store, pool, timeout=120)

    # Every question became exactly one case, threaded on its own Message-ID.
    keys = await inbound_thread_keys(store)
    expected = {f"<q{n}@{sender(n).split('@')[1]}>" for n in range(QUESTIONS)}
    assert set(keys) == expected
    assert max(keys.values()) == 1
    stored = await inbound_messages(store)
    assert set(stored) == expected and max(stored.values()) == 1
    # Drafted once each: a second processing of a case would add a second draft version.
    async with store.session() as session:
        drafts = Counter((await session.execute(select(Draft.case_id))).scalars().all())
        statuses = Counter((await session.execute(select(Case.status))).scalars().all())
    assert len(drafts) == QUESTIONS and set(drafts.values()) == {1}
    assert statuses == {"sent": QUESTIONS}

    # Each acknowledgement and each reply reached the SMTP server exactly once.
    mail = mail_by_kind(smtp_server)
    assert set(mail["ack"]) == set(refs) and set(mail["ack"].values()) == {1}
    assert set(mail["reply"]) == set(refs) and set(mail["reply"].values()) == {1}
    assert len(smtp_server.received) == 2 * QUESTIONS
    assert set(mail["message_id"].values()) == {1}
    rows = await outbox_rows(store, Outbox.channel == "email")
    assert Counter(r.kind for r in rows) == {"ack": QUESTIONS, "reply": QUESTIONS}
    assert {r.status for r in rows} == {"sent"}
    assert {r.external_id for r in rows} == set(mail["message_id"])

    # Each review card was posted once, and nothing else went to the channel's top level.
    cards = card_posts(slack_api)
    assert len(cards) == QUESTIONS and set(cards.values()) == {1}
    top_level = [c for c in slack_api.calls_to("chat.postMessage")
                 if c.get("channel") == REVIEW_CHANNEL and not c.get("thread_ts")]
    assert len(top_level) == QUESTIONS
    async with store.session() as session:
        failed = await session.execute(select(func.count(Outbox.id)).where(
            Outbox.status != "sent"))
    assert failed.scalar_one() == 0

    # Both processes lived through it, and both delivered: the work really was shared.
    assert all(w.alive for w in pool)
    sent_by = [w.count(" sent ack for ") + w.count(" sent reply for ") for w in pool]
    assert sum(sent_by) == 2 * QUESTIONS, sent_by
    assert min(sent_by) > 0, f"one worker did all the sending: {sent_by}"
