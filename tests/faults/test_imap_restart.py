"""The IMAP server restarts while the worker is idling on it: intake reconnects by itself and
catches up on everything that arrived meanwhile, without filing anything twice."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path

import pytest
from sqlalchemy import select

from city311.wiring import Service
from desk.models import MailboxState
from mail.imap import ImapConnection, ImapError
from tests.faults.harness import (
    WorkerProcess,
    approve_all,
    assert_everything_once,
    case_count,
    mail_by_kind,
    question,
    question_ids,
    wait_drained,
    wait_until,
    worker_env,
)
from tests.servers.dovecot import DovecotServer
from tests.servers.smtp import SmtpServer

pytestmark = [pytest.mark.slow, pytest.mark.dovecot, pytest.mark.postgres]

BATCH = 4


def drop_into_maildir(dovecot: DovecotServer, raws: Iterable[bytes]) -> None:
    """Deliver as a local delivery agent does while the IMAP server is down: write each
    message to the maildir's tmp/, then rename it into new/."""
    maildir = dovecot.root / "mail" / dovecot.user.split("@")[0]
    owner = os.stat(maildir)
    for index, raw in enumerate(raws):
        name = f"{time.time_ns()}.M{index}P{os.getpid()}.faults"
        staged = maildir / "tmp" / name
        staged.write_bytes(raw)
        os.chown(staged, owner.st_uid, owner.st_gid)
        staged.rename(maildir / "new" / name)


async def _all_seen(dovecot: DovecotServer, count: int) -> bool:
    flags = await asyncio.to_thread(dovecot.flags)
    return len(flags) == count and all("\\Seen" in f for f in flags.values())


async def test_intake_reconnects_after_an_imap_restart_and_catches_up(
    shared_pg_database: str, tmp_path: Path, dovecot: DovecotServer, smtp_server: SmtpServer,
    workers: Callable[[str, dict[str, str]], WorkerProcess],
    service_for: Callable[[str], Awaitable[Service]],
) -> None:
    service = await service_for(shared_pg_database)
    store = service.store
    worker = workers("worker", worker_env(shared_pg_database, tmp_path / "data",
                                          dovecot=dovecot, smtp=smtp_server))
    pool = [worker]

    async def watching() -> bool:
        return "mail intake watching" in worker.log()

    await wait_until(watching, timeout=180, what="the worker reading mail", workers=pool)

    async def filed(count: int) -> bool:
        return (await case_count(store) >= count
                and len(mail_by_kind(smtp_server)["ack"]) >= count)

    await asyncio.to_thread(dovecot.deliver_many, [question(n) for n in range(BATCH)])
    await wait_until(lambda: filed(BATCH), timeout=120, what="the first batch", workers=pool)
    await wait_until(lambda: _all_seen(dovecot, BATCH), timeout=30, what="the batch flagged",
                     workers=pool)
    # The intake is back in IDLE now. Take the server away under it (the test server's own
    # stop and start, without removing its maildir).
    reconnects = worker.count("reconnecting in")
    await asyncio.to_thread(dovecot._terminate)

    async def noticed() -> bool:
        return worker.count("reconnecting in") > reconnects

    await wait_until(noticed, timeout=30, what="the intake to notice", workers=pool)
    await asyncio.to_thread(drop_into_maildir, dovecot,
                            [question(n) for n in range(BATCH, 2 * BATCH)])
    await asyncio.to_thread(dovecot._launch)
    # More mail right after the restart, most likely before the intake is back.
    await asyncio.to_thread(dovecot.deliver_many,
                            [question(n) for n in range(2 * BATCH, 3 * BATCH)])

    await wait_until(lambda: filed(3 * BATCH), timeout=120,
                     what="the mail that arrived around the restart", workers=pool)
    await wait_until(lambda: _all_seen(dovecot, 3 * BATCH), timeout=30,
                     what="every message flagged", workers=pool)
    assert worker.count("mail intake watching") >= 2, "the intake never reconnected"
    async with store.session() as session:
        state = (await session.execute(select(MailboxState))).scalar_one()
    assert state.last_uid == 3 * BATCH

    await approve_all(service, 3 * BATCH)

    async def replied() -> bool:
        return len(mail_by_kind(smtp_server)["reply"]) >= 3 * BATCH

    await wait_until(replied, timeout=60, what="every reply", workers=pool)
    await wait_drained(store, pool, timeout=60, channels=["email"])
    await asyncio.sleep(1.0)  # let any stray second attempt show itself before counting
    assert worker.alive, worker.tail()
    await assert_everything_once(store, smtp_server, question_ids(range(3 * BATCH)))


async def _bye_then_hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """An IMAP server shutting down the way Dovecot sometimes does: during IDLE it says BYE,
    reads the client's DONE, and closes the connection without answering it."""
    writer.write(b"* OK [CAPABILITY IMAP4rev1 IDLE] ready\r\n")
    await writer.drain()
    try:
        while line := await reader.readline():
            tag, _, rest = line.decode().strip().partition(" ")
            command = rest.split(" ", 1)[0].upper()
            if command == "CAPABILITY":
                writer.write(f"* CAPABILITY IMAP4rev1 IDLE\r\n{tag} OK done\r\n".encode())
            elif command == "LOGIN":
                writer.write(f"{tag} OK logged in\r\n".encode())
            elif command == "SELECT":
                writer.write(f"* 0 EXISTS\r\n* OK [UIDVALIDITY 7] ok\r\n* OK [UIDNEXT 1] ok\r\n"
                             f"{tag} OK [READ-WRITE] selected\r\n".encode())
            elif command == "IDLE":
                writer.write(b"+ idling\r\n")
                await writer.drain()
                writer.write(b"* BYE Server shutting down.\r\n")
                await writer.drain()
                await reader.readline()  # DONE, never answered
                break
            else:
                writer.write(f"{tag} BAD unexpected\r\n".encode())
            await writer.drain()
    finally:
        writer.close()


async def test_a_server_that_says_bye_during_idle_is_noticed_at_once() -> None:
    # Dovecot stopping under an IDLE client may send BYE before it closes the connection;
    # the client then ends IDLE with DONE, which nobody will ever answer.
    server = await asyncio.start_server(_bye_then_hang_up, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        # A command timeout far beyond the test's patience: only noticing the hang-up
        # itself ends the wait in time.
        conn = await ImapConnection.open("127.0.0.1", port, "plain", "intake", "secret",
                                         command_timeout=600)
        await conn.select("INBOX")
        with pytest.raises(ImapError):
            await asyncio.wait_for(conn.idle(600, asyncio.Event()), 15)
        assert conn.lost.is_set()
        await conn.close()
    finally:
        server.close()
        await server.wait_closed()
