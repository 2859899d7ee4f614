"""The email channel's intake: watch the 311 mailbox over IMAP and hand every new message on.

For each batch of new UIDs (a few at a time, so a burst pays for one database commit per
batch): fetch the raw messages (without flagging them), parse them, await ``on_messages``
(which stores them and opens or threads their cases), and only then flag them \\Seen or move
them to the done folder, and advance the stored ``(UIDVALIDITY, last UID)``.
A crash anywhere in between makes the next run fetch the message again; the desk dedupes it
on Message-ID or content hash, so nothing is lost and no case is doubled.

New mail is noticed with IDLE (re-issued well before the 29-minute limit), or by polling when
the server has no IDLE. A dropped connection is retried with backoff. On PostgreSQL a session
advisory lock makes sure only one worker reads the mailbox at a time.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import ssl
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime

from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncConnection

from desk.envelope import InboundMessage
from desk.models import MailboxState
from desk.ports import Clock, SystemClock
from desk.settings import MailSettings
from desk.store import Store, insert_ignore
from mail.imap import ImapConnection, ImapError, Selected
from mail.parse import parse_message, to_inbound

__all__ = ["ImapIntake", "lock_key"]

log = logging.getLogger(__name__)

IDLE_SECONDS = 25 * 60  # RFC 2177: servers may drop an IDLE after 30 minutes
MAX_BACKOFF = 60.0
LOCK_RETRY_SECONDS = 15.0
LOCK_PING_SECONDS = 15.0
STATE_EVERY = 25  # save the last UID after this many messages of a burst, and at its end
# Messages handed on together. Small enough that the first card of a burst is not kept
# waiting for the rest, and a cap on the bytes held in memory at once.
BATCH = 20
BATCH_BYTES = 20_000_000

OnMessages = Callable[[Sequence[InboundMessage]], Awaitable[object]]


def lock_key(mailbox_key: str) -> int:
    """A stable signed 64-bit advisory-lock key for one mailbox."""
    digest = hashlib.sha256(f"city311-imap:{mailbox_key}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


class ImapIntake:
    def __init__(
        self, settings: MailSettings, store: Store, on_messages: OnMessages, *,
        ssl_context: ssl.SSLContext | None = None, clock: Clock | None = None,
        idle_seconds: float = IDLE_SECONDS, timeout: float = 30.0,
        lock_retry_seconds: float = LOCK_RETRY_SECONDS,
    ) -> None:
        self.settings = settings
        self.store = store
        self.on_messages = on_messages
        # A custom context trusts a private CA (tests, an internal server); None: system CAs.
        self.ssl_context = ssl_context
        self.clock = clock or SystemClock()
        self.idle_seconds = idle_seconds
        self.timeout = timeout
        self.lock_retry_seconds = lock_retry_seconds
        self.mailbox = settings.imap_mailbox or "INBOX"
        self.state_key = (f"imap://{settings.imap_user}@{settings.imap_host}:"
                          f"{settings.imap_port}/{self.mailbox}")[:200]
        self.handled = 0  # messages handed on by this process, for logs and tests
        self._halt: asyncio.Event | None = None
        self._done = asyncio.Event()
        self._last_uid = 0
        self._saved_uid = -1
        self._uidvalidity = 0

    # ---- lifecycle ----------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Read the mailbox until ``stop`` is set (or :meth:`aclose`); never raises for
        server or network trouble, it reconnects with backoff instead."""
        halt = self._halt = asyncio.Event()
        self._done.clear()
        relay = asyncio.create_task(_relay(stop, halt))
        delay = 1.0
        try:
            while not halt.is_set():
                try:
                    worked = await self._locked_session(halt)
                except ImapError as exc:
                    log.warning("mail intake: %s; reconnecting in %.0fs", exc, delay)
                    worked = False
                except Exception:
                    log.exception("mail intake failed; reconnecting in %.0fs", delay)
                    worked = False
                if halt.is_set():
                    break
                if worked:
                    delay = 1.0
                    continue
                await _sleep(halt, delay)
                delay = min(delay * 2, MAX_BACKOFF)
        finally:
            relay.cancel()
            self._done.set()
            log.info("mail intake stopped")

    async def aclose(self) -> None:
        """Stop reading and let :meth:`run` finish (it closes the session and the lock)."""
        if self._halt is None:
            return
        self._halt.set()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._done.wait(), self.timeout)

    # ---- one session --------------------------------------------------------------------

    async def _locked_session(self, halt: asyncio.Event) -> bool:
        if self.store.dialect != "postgresql":
            return await self._session(halt)
        lock = await self._try_lock()
        if lock is None:
            log.info("another worker holds the mail intake; waiting")
            await _sleep(halt, self.lock_retry_seconds)
            return True
        session_halt = asyncio.Event()
        relay = asyncio.create_task(_relay(halt, session_halt))
        watchdog = asyncio.create_task(self._watch_lock(lock, session_halt))
        try:
            return await self._session(session_halt)
        finally:
            relay.cancel()
            watchdog.cancel()
            await self._release(lock)

    async def _try_lock(self) -> AsyncConnection | None:
        # A dedicated connection: the lock lives as long as this database session does.
        conn = await self.store.engine.connect()
        try:
            result = await conn.execute(select(func.pg_try_advisory_lock(
                lock_key(self.state_key))))
            got = bool(result.scalar())
            await conn.commit()
        except BaseException:
            await conn.close()
            raise
        if not got:
            await conn.close()
            return None
        return conn

    async def _watch_lock(self, lock: AsyncConnection, session_halt: asyncio.Event) -> None:
        while True:
            await asyncio.sleep(LOCK_PING_SECONDS)
            try:
                await asyncio.wait_for(lock.execute(text("SELECT 1")), self.timeout)
                await lock.commit()
            except Exception:  # the lock went with the connection: stop reading at once
                log.warning("lost the database connection holding the mail intake lock")
                session_halt.set()
                return

    async def _release(self, lock: AsyncConnection) -> None:
        try:
            await asyncio.wait_for(lock.execute(select(func.pg_advisory_unlock(
                lock_key(self.state_key)))), 5.0)
            await lock.commit()
        except Exception:  # noqa: BLE001 - closing the connection below ends the lock anyway
            log.debug("advisory unlock failed", exc_info=True)
        with contextlib.suppress(Exception):
            # Never hand a connection that may still hold the lock back to the pool.
            await lock.invalidate()
        with contextlib.suppress(Exception):
            await lock.close()

    async def _session(self, halt: asyncio.Event) -> bool:
        settings = self.settings
        conn = await ImapConnection.open(
            settings.imap_host, settings.imap_port, settings.imap_security,
            settings.imap_user, settings.imap_password, ssl_context=self.ssl_context,
            command_timeout=self.timeout,
        )
        try:
            selected = await conn.select(self.mailbox)
            if settings.imap_done_folder:
                await conn.ensure_mailbox(settings.imap_done_folder)
            await self._start(conn, selected, halt)
            idle = conn.has_capability("IDLE")
            log.info("mail intake watching %s (%s)", self.mailbox,
                     "IDLE" if idle else f"polling every {settings.imap_poll_seconds:g}s")
            while not halt.is_set():
                # Until a search finds nothing new: mail that arrived during the last round
                # was announced (EXISTS) inside a FETCH or STORE response, and IDLE will not
                # announce it again.
                while await self._catch_up(conn, halt) and not halt.is_set():
                    pass
                if halt.is_set():
                    break
                if idle:
                    await conn.idle(self.idle_seconds, halt)
                else:
                    await _sleep(halt, settings.imap_poll_seconds)
                    if not halt.is_set():
                        await conn.noop()
            return True
        finally:
            await conn.close()

    async def _start(self, conn: ImapConnection, selected: Selected,
                     halt: asyncio.Event) -> None:
        state = await self._load_state()
        self._uidvalidity = selected.uidvalidity
        if state is not None and state.uidvalidity == selected.uidvalidity:
            self._last_uid = self._saved_uid = state.last_uid
            return
        # First run, or the server renumbered the mailbox: the stored last UID means nothing.
        # Take every message not handled yet (unflagged, or still in the inbox when handled
        # mail is moved away); the desk drops the ones it already stored.
        if state is not None:
            log.warning("UIDVALIDITY of %s changed (%s -> %s); resynchronising", self.mailbox,
                        state.uidvalidity, selected.uidvalidity)
        criteria = "ALL" if self.settings.imap_done_folder else "UNSEEN"
        uids = await conn.uid_search(criteria)
        self._last_uid = 0
        pending = list(uids)
        while pending:
            if halt.is_set():
                return  # the state still says "resync", so the next run starts over
            del pending[:await self._handle(conn, pending)]
        floor = (selected.uidnext - 1) if selected.uidnext else 0
        self._last_uid = max([floor, *uids])
        await self._save_state()

    async def _catch_up(self, conn: ImapConnection, halt: asyncio.Event) -> int:
        """Handle every message after the last UID; returns how many there were."""
        # "UID n:*" always matches the newest message, even below n: filter.
        uids = [uid for uid in await conn.uid_search("UID", f"{self._last_uid + 1}:*")
                if uid > self._last_uid]
        pending = list(uids)
        try:
            while pending:
                if halt.is_set():
                    return len(uids)
                taken = await self._handle(conn, pending)
                self._last_uid = pending[taken - 1]
                del pending[:taken]
                # Saving after every batch would add database work to a burst; a crash makes
                # the next run refetch at most a few, which the desk drops.
                if self._last_uid - self._saved_uid >= STATE_EVERY:
                    await self._save_state()
        finally:
            if self._last_uid != self._saved_uid:
                await self._save_state()
        return len(uids)

    async def _handle(self, conn: ImapConnection, uids: Sequence[int]) -> int:
        """Fetch, hand on and flag the first of ``uids`` (up to BATCH of them, fewer once
        BATCH_BYTES are read); returns how many UIDs it took."""
        inbounds: list[InboundMessage] = []
        fetched: list[int] = []
        size = taken = 0
        for uid in uids[:BATCH]:
            taken += 1
            raw = await conn.fetch_raw(uid)
            if raw is None:
                log.info("message UID %s vanished before it could be read", uid)
                continue
            # Parsing large HTML can take a while: keep it off the event loop.
            parsed = await asyncio.to_thread(
                parse_message, raw, max_attachment_bytes=self.settings.max_attachment_bytes)
            inbounds.append(to_inbound(parsed, raw, self.clock.now().astimezone(UTC)))
            fetched.append(uid)
            size += len(raw)
            if size >= BATCH_BYTES:
                break
        if inbounds:
            await self.on_messages(inbounds)
            # Only now, with the messages safely stored, does the mailbox learn they were
            # handled.
            await conn.mark_seen(fetched)
            if self.settings.imap_done_folder:
                await conn.move(fetched, self.settings.imap_done_folder)
            self.handled += len(inbounds)
        return taken

    # ---- stored state -------------------------------------------------------------------

    async def _load_state(self) -> MailboxState | None:
        async with self.store.session() as session:
            return await session.get(MailboxState, self.state_key)

    async def _save_state(self) -> None:
        now = datetime.now(UTC)
        self._saved_uid = self._last_uid
        async with self.store.session() as session:
            inserted = await insert_ignore(session, MailboxState, {
                "mailbox": self.state_key, "uidvalidity": self._uidvalidity,
                "last_uid": self._last_uid, "updated_at": now})
            if not inserted:
                state = await session.get(MailboxState, self.state_key, with_for_update=True)
                assert state is not None
                state.uidvalidity = self._uidvalidity
                state.last_uid = self._last_uid
                state.updated_at = now


async def _relay(source: asyncio.Event, target: asyncio.Event) -> None:
    await source.wait()
    target.set()


async def _sleep(event: asyncio.Event, seconds: float) -> bool:
    """Wait ``seconds`` or until ``event`` is set; True when it was set."""
    try:
        await asyncio.wait_for(event.wait(), seconds)
    except TimeoutError:
        return False
    return True
