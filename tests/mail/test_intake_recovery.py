"""Intake survives what real mailboxes do: a worker killed mid-batch, a renumbered mailbox,
a server without IDLE, a done folder, TLS, and two workers on one PostgreSQL."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import func, select

from desk.migrate import upgrade
from desk.models import Case, MailboxState, Message
from desk.store import Store
from mail.intake import ImapIntake
from tests.mail.conftest import (
    CITY_DOMAIN,
    cases,
    count,
    mail_settings,
    make_service,
    question,
    wait_until,
)
from tests.servers import DovecotServer
from tests.support import REPO

BATCH = 400

pytestmark = pytest.mark.dovecot


async def _distinct_threads(store: Store) -> int:
    async with store.session() as session:
        result = await session.execute(select(func.count(func.distinct(Case.thread_key))))
        return int(result.scalar_one())


def _worker(db_url: str, data_dir: Path, dovecot: DovecotServer) -> subprocess.Popen[bytes]:
    # The log goes to a file: a pipe nobody reads until teardown would fill and stall it.
    with (data_dir / "workers.log").open("ab") as log:
        return subprocess.Popen(  # noqa: S603
            [sys.executable, "-m", "tests.mail.intake_worker", db_url, str(data_dir),
             dovecot.host, str(dovecot.imap_port), dovecot.user, dovecot.password],
            cwd=REPO, stdout=subprocess.DEVNULL, stderr=log,
            env={**os.environ, "PYTHONPATH": str(REPO)},
        )


@pytest.fixture
def sqlite_file(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A migrated SQLite file shared by the test and its worker processes."""
    url = f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('crash') / 'city311.db'}"
    upgrade(url)
    return url


@pytest.fixture
def workers(tmp_path: Path) -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for proc in started:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)
    log = tmp_path / "workers.log"
    if log.exists():  # shown by pytest when the test fails
        sys.stderr.write(log.read_text(errors="replace")[-20_000:])


@pytest.mark.slow
async def test_worker_killed_mid_batch_loses_nothing_and_doubles_nothing(
    sqlite_file: str, tmp_path: Path, dovecot: DovecotServer,
    workers: list[subprocess.Popen[bytes]],
) -> None:
    # One backend is enough here (the desk's dedupe is tested on both); a file SQLite
    # database is what a single-worker install runs on.
    store = Store.from_url(sqlite_file)
    try:
        await _kill_mid_batch(sqlite_file, store, tmp_path, dovecot, workers)
    finally:
        await store.close()


async def _kill_mid_batch(db_url: str, store: Store, tmp_path: Path, dovecot: DovecotServer,
                          workers: list[subprocess.Popen[bytes]]) -> None:
    async with store.session() as session:
        await store.add_city(session, "Springfield", "IL", [CITY_DOMAIN], datetime.now(UTC))
    first = _worker(db_url, tmp_path, dovecot)
    workers.append(first)
    await wait_until(lambda: count(store, MailboxState), timeout=30, what="worker ready")

    delivery = asyncio.create_task(asyncio.to_thread(
        dovecot.deliver_many, [question(n) for n in range(BATCH)]))
    await wait_until(lambda: _at_least(store, 25), timeout=30, what="the batch under way")
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=10)
    await delivery
    done_before = await count(store, Case)
    assert done_before < BATCH, "the worker finished before it could be killed"

    second = _worker(db_url, tmp_path, dovecot)
    workers.append(second)
    await wait_until(lambda: _at_least(store, BATCH), timeout=60, what="every message")
    await wait_until(lambda: _all_seen(dovecot), timeout=15, what="every message flagged")
    assert await count(store, Case) == BATCH
    assert await _distinct_threads(store) == BATCH
    assert await count(store, Message, Message.direction == "in") == BATCH
    async with store.session() as session:
        state = (await session.execute(select(MailboxState))).scalar_one()
    assert state.last_uid == BATCH


async def _at_least(store: Store, wanted: int) -> bool:
    # A reader: a writer's poll would queue behind the worker's batches and see them late.
    async with store.reading() as session:
        found = await session.execute(select(func.count(Case.id)))
        return int(found.scalar_one()) >= wanted


async def _all_seen(dovecot: DovecotServer) -> bool:
    flags = await asyncio.to_thread(dovecot.flags)
    return bool(flags) and all("\\Seen" in f for f in flags.values())


async def test_uidvalidity_change_resyncs_without_duplicates(
    db_url: str, tmp_path: Path, dovecot: DovecotServer, running,
) -> None:
    service = await make_service(db_url, tmp_path, mail_settings(dovecot))
    store = service.store
    await asyncio.to_thread(dovecot.deliver_many, [question(n) for n in (1, 2, 3)])
    intake: ImapIntake = service.parts["mail_intake"]
    stop = asyncio.Event()
    task = asyncio.create_task(intake.run(stop))
    await wait_until(lambda: _at_least(store, 3), what="three cases")
    await wait_until(lambda: _state(store, 3), what="state saved")
    stop.set()
    await task
    old_validity = dovecot.uidvalidity()

    # The mailbox is rebuilt (a restore, a migration): new UIDVALIDITY, UIDs from 1 again.
    # One message we already have comes back, two are new; all have UIDs <= the old last UID.
    await asyncio.to_thread(dovecot.renumber)
    assert dovecot.uidvalidity() != old_validity
    await asyncio.to_thread(dovecot.deliver_many, [question(2), question(4), question(5)])

    await running(service)
    await wait_until(lambda: _at_least(store, 5), what="the two new cases")
    await wait_until(lambda: _all_seen(dovecot), what="all flagged")
    # The state is saved after the resync's last batch is flagged, so it may come a moment later.
    validity = await asyncio.to_thread(dovecot.uidvalidity)
    await wait_until(lambda: _state(store, 3, validity), what="the new state saved")
    assert await count(store, Case) == 5
    assert await _distinct_threads(store) == 5
    assert {c.thread_key for c in await cases(store)} == {
        f"<q{n}@springfield.gov>" for n in range(1, 6)}


async def _state(store: Store, last_uid: int, uidvalidity: int | None = None) -> bool:
    async with store.session() as session:
        state = (await session.execute(select(MailboxState))).scalar_one_or_none()
        return state is not None and state.last_uid == last_uid and (
            uidvalidity is None or state.uidvalidity == uidvalidity)
