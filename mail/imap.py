"""A small typed IMAP client over aioimaplib: connect (TLS, STARTTLS or plain), select, search
and fetch by UID, flag or move, and wait for news with IDLE.

aioimaplib hands back raw byte lines and not every command honours its timeout, so every call
here goes through ``asyncio.wait_for`` and every failure becomes :class:`ImapError`.
"""

from __future__ import annotations

import asyncio
import logging
import re
import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import aioimaplib

__all__ = ["ImapConnection", "ImapError", "Selected", "uid_set"]

log = logging.getLogger(__name__)

Security = Literal["tls", "starttls", "plain"]

_UIDVALIDITY = re.compile(rb"UIDVALIDITY (\d+)")
_UIDNEXT = re.compile(rb"UIDNEXT (\d+)")
_EXISTS = re.compile(rb"^(\d+) EXISTS")
_FETCH_UID = re.compile(rb"UID (\d+)")


class ImapError(Exception):
    """The IMAP session failed or the server said no; reconnect and try again."""


@dataclass(frozen=True)
class Selected:
    mailbox: str
    uidvalidity: int
    uidnext: int | None
    exists: int


class ImapConnection:
    """One logged-in IMAP session. Create with :meth:`open` inside a running loop."""

    def __init__(self, client: Any, host: str, timeout: float) -> None:
        self._client = client
        self.host = host
        self.timeout = timeout
        self.lost = asyncio.Event()

    # ---- connecting ---------------------------------------------------------------------

    @classmethod
    async def open(
        cls, host: str, port: int, security: Security, user: str, password: str, *,
        ssl_context: ssl.SSLContext | None = None, command_timeout: float = 30.0,
    ) -> ImapConnection:
        lost = asyncio.Event()
        context = ssl_context or ssl.create_default_context()
        try:
            client = aioimaplib.IMAP4(
                host=host, port=port, timeout=command_timeout,
                conn_lost_cb=lambda _exc: lost.set(),
                ssl_context=context if security == "tls" else None,
            )
            conn = cls(client, host, command_timeout)
            conn.lost = lost
            await conn._call(client.wait_hello_from_server(), "greeting")
            if security == "starttls":
                await conn._starttls(context)
            response = await conn._call(client.login(user, password), "LOGIN")
        except ImapError:
            raise
        except (OSError, aioimaplib.AioImapException) as exc:
            raise ImapError(f"cannot connect to {host}:{port}: {exc}") from exc
        if response.result != "OK":
            await conn.close()
            raise ImapError(f"login refused by {host}: {_text(response.lines)}")
        return conn

    async def _starttls(self, context: ssl.SSLContext) -> None:
        # aioimaplib has no STARTTLS: send the command, then upgrade the transport in place.
        protocol = self._client.protocol
        if "STARTTLS" not in protocol.capabilities:
            raise ImapError(f"{self.host} does not offer STARTTLS")
        command = aioimaplib.Command("STARTTLS", protocol.new_tag(), loop=protocol.loop)
        response = await self._call(protocol.execute(command), "STARTTLS")
        if response.result != "OK":
            raise ImapError(f"STARTTLS refused: {_text(response.lines)}")
        loop = asyncio.get_running_loop()
        try:
            transport = await asyncio.wait_for(
                loop.start_tls(protocol.transport, protocol, context, server_hostname=self.host),
                self.timeout)
        except (OSError, ssl.SSLError, TimeoutError) as exc:
            raise ImapError(f"TLS handshake with {self.host} failed: {exc}") from exc
        protocol.transport = transport
        # Capabilities may change once the session is encrypted (RFC 3501 6.2.1).
        await self._call(protocol.capability(), "CAPABILITY")

    async def _call(self, awaitable: Any, what: str) -> Any:
        try:
            return await asyncio.wait_for(self._unless_lost(awaitable, what), self.timeout)
        except TimeoutError as exc:
            raise ImapError(f"{what} timed out after {self.timeout:.0f}s") from exc
        except (OSError, aioimaplib.AioImapException) as exc:
            raise ImapError(f"{what} failed: {exc!r}") from exc

    async def _unless_lost(self, awaitable: Any, what: str) -> Any:
        """Await a command, or fail as soon as the connection drops: aioimaplib leaves
        pending commands waiting (until their timeout) when the server hangs up."""
        work = asyncio.ensure_future(awaitable)
        lost = asyncio.ensure_future(self.lost.wait())
        try:
            await asyncio.wait({work, lost}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            lost.cancel()
            if not work.done():
                work.cancel()
        if work.done() and not work.cancelled():
            return work.result()
        raise ImapError(f"{what}: the connection was lost")

    async def _ok(self, awaitable: Any, what: str) -> list[Any]:
        response = await self._call(awaitable, what)
        if response.result != "OK":
            raise ImapError(f"{what}: {response.result} {_text(response.lines)}")
        return list(response.lines)

    # ---- commands -----------------------------------------------------------------------

    def has_capability(self, name: str) -> bool:
        return bool(self._client.has_capability(name))

    async def select(self, mailbox: str) -> Selected:
        lines = await self._ok(self._client.select(_quote(mailbox)), "SELECT")
        uidvalidity = uidnext = None
        exists = 0
        for line in lines:
            if not isinstance(line, bytes | bytearray):
                continue
            if match := _UIDVALIDITY.search(line):
                uidvalidity = int(match.group(1))
            if match := _UIDNEXT.search(line):
                uidnext = int(match.group(1))
            if match := _EXISTS.match(line):
                exists = int(match.group(1))
        if uidvalidity is None:
            raise ImapError(f"SELECT {mailbox}: the server sent no UIDVALIDITY")
        return Selected(mailbox, uidvalidity, uidnext, exists)

    async def uid_search(self, *criteria: str) -> list[int]:
        lines = await self._ok(self._client.uid_search(*criteria, charset=None), "UID SEARCH")
        uids: list[int] = []
        # aioimaplib strips "* SEARCH" from the untagged line; the last line is the tagged
        # completion text.
        for line in lines[:-1]:
            if not isinstance(line, bytes | bytearray):
                continue
            line = bytes(line).removeprefix(b"SEARCH").strip()
            if re.fullmatch(rb"[\d ]*", line):
                uids.extend(int(part) for part in line.split())
        return sorted(set(uids))

    async def fetch_raw(self, uid: int) -> bytes | None:
        """The whole message (``BODY.PEEK[]``, so it is not flagged \\Seen); None if gone."""
        lines = await self._ok(self._client.uid("fetch", str(uid), "(UID BODY.PEEK[])"),
                               "UID FETCH")
        for index, line in enumerate(lines):
            if not isinstance(line, bytes) or b"FETCH" not in line:
                continue
            match = _FETCH_UID.search(line)
            if match and int(match.group(1)) != uid:
                continue
            if index + 1 < len(lines) and isinstance(lines[index + 1], bytearray):
                return bytes(lines[index + 1])
        return None

    async def mark_seen(self, uids: Sequence[int]) -> None:
        await self._ok(self._client.uid("store", uid_set(uids), "+FLAGS.SILENT", r"(\Seen)"),
                       "UID STORE")

    async def move(self, uids: Sequence[int], folder: str) -> None:
        """Move messages; COPY, flag \\Deleted and expunge where MOVE is missing."""
        which = uid_set(uids)
        if self.has_capability("MOVE"):
            await self._ok(self._client.uid("move", which, _quote(folder)), "UID MOVE")
            return
        await self._ok(self._client.uid("copy", which, _quote(folder)), "UID COPY")
        await self._ok(self._client.uid("store", which, "+FLAGS.SILENT",
                                        r"(\Seen \Deleted)"), "UID STORE")
        if self.has_capability("UIDPLUS"):
            await self._ok(self._client.uid("expunge", which), "UID EXPUNGE")
        else:
            await self._ok(self._client.expunge(), "EXPUNGE")

    async def ensure_mailbox(self, name: str) -> None:
        response = await self._call(self._client.create(_quote(name)), "CREATE")
        # NO [ALREADYEXISTS] is fine; anything else shows up when we first move into it.
        if response.result not in ("OK", "NO"):
            raise ImapError(f"CREATE {name}: {response.result} {_text(response.lines)}")

    async def noop(self) -> None:
        await self._ok(self._client.noop(), "NOOP")

    async def idle(self, seconds: float, stop: asyncio.Event) -> bool:
        """IDLE until the server reports news, ``seconds`` pass or ``stop`` is set.
        True when the server pushed something (new mail, expunges, flag changes)."""
        client = self._client
        self._drain_pushes()
        try:
            idle = await asyncio.wait_for(
                self._unless_lost(client.idle_start(timeout=seconds + 60), "IDLE"), self.timeout)
        except TimeoutError as exc:
            raise ImapError("IDLE was not acknowledged") from exc
        except (OSError, aioimaplib.AioImapException) as exc:
            raise ImapError(f"IDLE failed: {exc!r}") from exc
        push = asyncio.ensure_future(client.wait_server_push(timeout=seconds + 60))
        stopped = asyncio.ensure_future(stop.wait())
        lost = asyncio.ensure_future(self.lost.wait())
        try:
            done, _ = await asyncio.wait({push, stopped, lost}, timeout=seconds,
                                         return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (push, stopped, lost):
                task.cancel()
        if lost in done or self.lost.is_set():
            idle.cancel()
            raise ImapError("connection lost during IDLE")
        pushed = push in done and not push.cancelled() and push.exception() is None and (
            push.result() != aioimaplib.STOP_WAIT_SERVER_PUSH)
        client.idle_done()
        try:
            # A server that says BYE and hangs up never answers DONE.
            await asyncio.wait_for(self._unless_lost(idle, "IDLE"), self.timeout)
        except TimeoutError as exc:
            raise ImapError("IDLE did not end after DONE") from exc
        except (OSError, aioimaplib.AioImapException) as exc:
            raise ImapError(f"IDLE failed: {exc!r}") from exc
        self._drain_pushes()
        return bool(pushed)

    def _drain_pushes(self) -> None:
        queue = self._client.protocol.idle_queue
        while not queue.empty():
            queue.get_nowait()

    async def close(self) -> None:
        """Log out politely when possible; never raises."""
        try:
            if not self.lost.is_set():
                await asyncio.wait_for(self._client.logout(), min(self.timeout, 5.0))
        except Exception:  # noqa: BLE001 - closing a session that may already be dead
            log.debug("IMAP logout failed", exc_info=True)
        transport = getattr(self._client.protocol, "transport", None)
        if transport is not None:
            transport.close()


def _quote(mailbox: str) -> str:
    if re.fullmatch(r"[A-Za-z0-9._/-]+", mailbox):
        return mailbox
    return '"' + mailbox.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _text(lines: list[Any]) -> str:
    return " ".join(line.decode(errors="replace") if isinstance(line, bytes | bytearray)
                    else str(line) for line in lines)[:300]


def uid_set(uids: Sequence[int]) -> str:
    """An IMAP sequence set for ``uids``, runs collapsed: [1, 2, 3, 7] -> "1:3,7" (aioimaplib
    takes the set as a string and has no helper for it)."""
    parts: list[str] = []
    ordered = sorted(set(uids))
    start = previous = ordered[0]
    for uid in [*ordered[1:], None]:
        if uid is not None and uid == previous + 1:
            previous = uid
            continue
        parts.append(str(start) if start == previous else f"{start}:{previous}")
        if uid is not None:
            start = previous = uid
    return ",".join(parts)
