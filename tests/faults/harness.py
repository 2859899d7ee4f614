"""What the fault tests share: `city311 worker` processes, questions from cities, and counts
of what reached the SMTP server and the Slack stand-in.

The workers are the real command (``python -m city311 worker``) configured only through the
environment, exactly as the Procfile runs them; the test process talks to the same database
through its own :class:`~city311.wiring.Service` (to approve cases and read the outcome).
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from city311.wiring import Service, build_service
from desk.models import Case, Message, Outbox
from desk.settings import DatabaseSettings, Settings
from desk.store import Store
from tests.servers.dovecot import DovecotServer
from tests.servers.slack_api import SlackApi
from tests.servers.smtp import SmtpServer
from tests.support import REPO

__all__ = [
    "ADDRESS",
    "CITIES",
    "REVIEW_CHANNEL",
    "WorkerProcess",
    "add_cities",
    "approve_all",
    "assert_everything_once",
    "card_posts",
    "case_count",
    "drafted",
    "drained",
    "inbound_messages",
    "inbound_thread_keys",
    "mail_by_kind",
    "open_service",
    "outbox_rows",
    "question",
    "question_ids",
    "sender",
        "wait_until",
    "wait_drained",
    "worker_env",
]

ADDRESS = "desk@311.test"
REVIEW_CHANNEL = "CREVIEW"
SLACK_TOKEN = "xoxb-fault-test-token"  # noqa: S105 - the stand-in accepts any token
SLACK_SECRET = "fault-test-signing-secret"  # noqa: S105
# (name, state, domain): several cities, so the directory lookup is not trivially one row.
CITIES = [("Springfield", "IL", "springfield.gov"), ("Shelbyville", "IL", "shelbyville.gov"),
          ("Ogdenville", "OR", "ogdenville.org")]
_OURS = ("DATABASE_", "MAIL_", "SLACK_", "CITY311_", "SLA_", "WEB_")


def sender(n: int) -> str:
    """A distinct official per question, so no per-sender limit (acks, floods) applies."""
    domain = CITIES[n % len(CITIES)][2]
    return f"official{n}@{domain}"


def question(n: int, *, tag: str = "q") -> bytes:
    """A city's question as raw RFC 822 bytes; its Message-ID is ``<{tag}{n}@domain>``."""
    address = sender(n)
    domain = address.split("@")[1]
    text = (f"From: Official {n} <{address}>\nTo: {ADDRESS}\n"
            f"Subject: How should we finance road repairs ({tag}{n})?\n"
            f"Date: Tue, 24 Nov 2026 10:00:00 -0500\nMessage-ID: <{tag}{n}@{domain}>\n"
            "MIME-Version: 1.0\nContent-Type: text/plain; charset=utf-8\n\n"
            f"Hello,\n\nOur streets need repair and our budget is tight. Which bonds or "
            f"grants have other cities used? (question {tag}{n})\n\nThanks,\nOfficial {n}\n")
    return text.replace("\n", "\r\n").encode()


def worker_env(database_url: str, data_dir: Path, *, dovecot: DovecotServer | None = None,
               smtp: SmtpServer | None = None, slack: SlackApi | None = None,
               **extra: str) -> dict[str, str]:
    """The environment of a worker: ours replaces whatever the test runner had set."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(_OURS)}
    env.update({
        "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1",
        "DATABASE_URL": database_url, "CITY311_DATA_DIR": str(data_dir),
        "CITY311_LOG_LEVEL": "INFO", "CITY311_WORKER_INTERVAL": "0.3",
        "MAIL_ADDRESS": ADDRESS,
    })
    if dovecot is not None:
        env.update({
            "MAIL_IMAP_HOST": dovecot.host, "MAIL_IMAP_PORT": str(dovecot.imap_port),
            "MAIL_IMAP_SECURITY": "plain", "MAIL_IMAP_USER": dovecot.user,
            "MAIL_IMAP_PASSWORD": dovecot.password,
        })
    if smtp is not None:
        env.update({"MAIL_SMTP_HOST": smtp.host, "MAIL_SMTP_PORT": str(smtp.port),
                    "MAIL_SMTP_SECURITY": "plain"})
    if slack is not None:
        env.update({"SLACK_BOT_TOKEN": SLACK_TOKEN, "SLACK_SIGNING_SECRET": SLACK_SECRET,
                    "SLACK_REVIEW_CHANNEL": REVIEW_CHANNEL, "SLACK_API_URL": slack.base_url})
    env.update(extra)
    return env


class WorkerProcess:
    """One ``python -m city311 worker``; its output goes to files the test can read."""

    def __init__(self, name: str, env: dict[str, str], log_dir: Path) -> None:
        self.name = name
        self.out = log_dir / f"{name}.out"
        self.err = log_dir / f"{name}.err"
        with self.out.open("wb") as out, self.err.open("wb") as err:
            self.proc = subprocess.Popen(  # noqa: S603
                [sys.executable, "-m", "city311", "worker"], cwd=REPO, env=env,
                stdout=out, stderr=err, start_new_session=True)

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def log(self) -> str:
        return self.err.read_text(errors="replace") if self.err.exists() else ""

    def banner(self) -> str:
        return self.out.read_text(errors="replace") if self.out.exists() else ""

    def tail(self, lines: int = 40) -> str:
        return f"--- {self.name} (exit {self.proc.poll()}) ---\n" + "\n".join(
            self.log().splitlines()[-lines:])

    def count(self, needle: str) -> int:
        return self.log().count(needle)

    def stop(self, timeout: float = 20.0) -> int | None:
        """SIGTERM (a clean stop, as on a deploy), then SIGKILL if it hangs."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        return self.proc.returncode


async def wait_until(predicate: Callable[[], Awaitable[bool]], *, timeout: float,
                     what: str, workers: Iterable[WorkerProcess] = ()) -> None:
    """Poll until true; on timeout fail with the workers' last log lines."""
    workers = list(workers)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await predicate():
            return
        dead = [w for w in workers if not w.alive]
        if dead:
            raise AssertionError(f"a worker exited while waiting for {what}:\n"
                                 + "\n".join(w.tail() for w in dead))
        await asyncio.sleep(0.1)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}:\n"
                         + "\n".join(w.tail() for w in workers))


async def open_service(database_url: str, data_dir: Path) -> Service:
    """The test's own handle on the database: a service with no channels (it sends nothing;
    the workers do)."""
    settings = Settings(data_dir=data_dir, database=DatabaseSettings(url=database_url))
    return await build_service(settings, migrate=False, with_classifier=False)


async def add_cities(store: Store) -> None:
    async with store.session() as session:
        for name, state, domain in CITIES:
            await store.add_city(session, name, state, [domain], datetime.now(UTC))


async def case_count(store: Store, *where: Any) -> int:
    async with store.session() as session:
        result = await session.execute(select(func.count(Case.id)).where(*where))
        return int(result.scalar_one())


async def outbox_rows(store: Store, *where: Any) -> list[Outbox]:
    async with store.session() as session:
        return list((await session.execute(select(Outbox).where(*where)
                                           .order_by(Outbox.id))).scalars().all())


async def approve_all(service: Service, expected: int, actor: str = "UREV1") -> list[str]:
    """Approve every drafted case (there must be ``expected`` of them); returns their refs."""
    async with service.store.session() as session:
        refs = list((await session.execute(select(Case.ref).where(
            Case.status.in_(("drafted", "needs_triage"))).order_by(Case.id))).scalars())
    assert len(refs) == expected, f"{len(refs)} cases ready for approval, not {expected}"
    for ref in refs:
        await service.desk.approve(ref, actor)
    return refs


async def drafted(store: Store, count: int) -> bool:
    """True when ``count`` cases have been through drafting (and wait for a reviewer)."""
    return await case_count(store, Case.status.in_(("drafted", "needs_triage"))) >= count


async def inbound_thread_keys(store: Store) -> Counter[str]:
    async with store.session() as session:
        keys = (await session.execute(select(Case.thread_key))).scalars().all()
        return Counter(keys)


async def inbound_messages(store: Store) -> Counter[str]:
    async with store.session() as session:
        ids = (await session.execute(select(Message.external_id).where(
            Message.direction == "in"))).scalars().all()
        return Counter(ids)


def mail_by_kind(smtp: SmtpServer) -> dict[str, Counter[str]]:
    """What reached the SMTP server: for ``ack`` and ``reply``, how many messages each case
    reference got; for ``message_id``, how often each Message-ID arrived."""
    kinds: dict[str, Counter[str]] = {"ack": Counter(), "reply": Counter(),
                                      "message_id": Counter()}
    for received in smtp.received:
        message = received.message
        ref = str(message.get("X-City311-Case", ""))
        # Acknowledgements are automatic mail (RFC 3834); the reviewed reply is not.
        kind = "ack" if message.get("Auto-Submitted") == "auto-replied" else "reply"
        kinds[kind][ref] += 1
        kinds["message_id"][str(message["Message-ID"])] += 1
    return kinds


def card_posts(api: SlackApi) -> Counter[str]:
    """Review cards the Slack stand-in accepted, counted per outbox idempotency key."""
    keys: Counter[str] = Counter()
    for args in api.calls_to("chat.postMessage"):
        key = str(((args.get("metadata") or {}).get("event_payload") or {}).get("key", ""))
        if args.get("channel") == REVIEW_CHANNEL and key.startswith("card:"):
            keys[key] += 1
    return keys


async def assert_everything_once(store: Store, smtp: SmtpServer, questions: set[str], *,
                                 slack: SlackApi | None = None) -> None:
    """Every question (by Message-ID) is one case, answered: one acknowledgement and one
    reply per case at the SMTP server, one review card per case at Slack, and every outbox
    row of those channels sent."""
    keys = await inbound_thread_keys(store)
    assert set(keys) == questions, sorted(set(keys) ^ questions)
    assert max(keys.values()) == 1, [k for k, n in keys.items() if n > 1]
    stored = await inbound_messages(store)
    assert set(stored) == questions and max(stored.values()) == 1
    async with store.session() as session:
        refs = set((await session.execute(select(Case.ref))).scalars().all())
        statuses = Counter((await session.execute(select(Case.status))).scalars().all())
    assert statuses == {"sent": len(questions)}, statuses
    mail = mail_by_kind(smtp)
    assert set(mail["ack"]) == refs and set(mail["ack"].values()) == {1}, mail["ack"]
    assert set(mail["reply"]) == refs and set(mail["reply"].values()) == {1}, mail["reply"]
    assert set(mail["message_id"].values()) == {1}
    assert len(smtp.received) == 2 * len(questions)
    channels = ["email"] + (["slack"] if slack is not None else [])
    rows = await outbox_rows(store, Outbox.channel.in_(channels))
    assert {r.status for r in rows} == {"sent"}, Counter(r.status for r in rows)
    email_rows = [r for r in rows if r.channel == "email"]
    assert {r.external_id for r in email_rows} == set(mail["message_id"])
    if slack is not None:
        cards = card_posts(slack)
        assert len(cards) == len(questions) and set(cards.values()) == {1}, cards


async def drained(store: Store, channels: Iterable[str] = ("email", "slack")) -> bool:
    """True when no outbox row of these channels is waiting or being sent."""
    return not await outbox_rows(store, Outbox.channel.in_(list(channels)),
                                 Outbox.status.in_(("pending", "sending")))


async def wait_drained(store: Store, workers: Iterable[WorkerProcess], *, timeout: float,
                       channels: Iterable[str] = ("email", "slack")) -> None:
    """Wait for the outbox to drain; on timeout, say which rows are stuck and why."""
    channels = list(channels)
    try:
        await wait_until(lambda: drained(store, channels), timeout=timeout,
                         what="the outbox drained", workers=workers)
    except AssertionError as exc:
        stuck = await outbox_rows(store, Outbox.channel.in_(channels),
                                  Outbox.status.in_(("pending", "sending")))
        detail = "\n".join(
            f"outbox {r.id} {r.kind} {r.status} attempts={r.attempts} "
            f"next={r.next_attempt_at} lease={r.lease_until} error={r.last_error!r}"
            for r in stuck)
        raise AssertionError(f"stuck outbox rows:\n{detail}\n{exc}") from None


def question_ids(numbers: Iterable[int], tag: str = "q") -> set[str]:
    return {f"<{tag}{n}@{sender(n).split('@')[1]}>" for n in numbers}
