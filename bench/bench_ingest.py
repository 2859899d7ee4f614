"""Email ingestion: messages/second from a real mailbox into cases with drafts, beside the
bare IMAP fetch rate of the same mailbox (the ceiling).

N real-shaped messages (plain, multipart/alternative, HTML only, attachments of 20–600 KB,
quoted reply chains; senders at the shipped cities' domains) are delivered over LMTP to a
throwaway Dovecot. The ceiling is a bare aioimaplib session that UID FETCHes every message
with BODY.PEEK[], one UID at a time as the intake does (a single ``UID FETCH 1:*`` is
reported too). Then the real intake (``build_service``: ImapIntake, the Desk, the trained
classifier and the LibraryDrafter) drains the same mailbox into cases with drafts, on SQLite
and on a fresh PostgreSQL database. Goal: the intake at least 50% of the per-UID fetch rate.

Each backend drains for at most ``--budget`` seconds (25 by default, 3 with --quick) so that
``make bench`` stays inside its ten minutes; the rate is then over the messages drained so
far (``drained_all`` says whether that was all of them). ``--budget 0`` drains everything.
``--quick`` is a smoke check of 40 messages.

    python bench/bench_ingest.py [--quick] [--n N] [--budget S] [--backends sqlite,postgresql]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import random
import secrets
import sys
import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime, make_msgid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import aioimaplib  # noqa: E402
from sqlalchemy import distinct, func, select  # noqa: E402

from city311.wiring import Service, build_service  # noqa: E402
from desk.directory import import_cities, shipped_cities  # noqa: E402
from desk.models import Case, Draft, Message  # noqa: E402
from desk.ports import Classifier  # noqa: E402
from desk.settings import DatabaseSettings, MailSettings, Settings, WebSettings  # noqa: E402
from knowledge.library import ensure_seeded, library_for  # noqa: E402
from nlp import load_classifier  # noqa: E402
from nlp.data import load_questions  # noqa: E402
from tests.servers.dovecot import DovecotServer  # noqa: E402

__all__ = ["generate_messages", "load_average", "main", "pg_database", "prepare_service"]

GOAL_RATIO = 0.5
PG_SERVER = os.environ.get("TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
FIRST = ["dana", "pat", "lee", "morgan", "alex", "sam", "jordan", "casey", "robin", "terry",
         "jamie", "chris", "kim", "drew", "avery", "quinn", "rene", "toni", "jesse", "shawn"]
LAST = ["ruiz", "nguyen", "okafor", "smith", "brennan", "kowalski", "haddad", "lopez", "price",
        "tanaka", "moreau", "silva", "oneil", "fischer", "baptiste"]
TITLES = ["Finance Director", "City Manager", "Assistant City Manager", "Mayor's Chief of Staff",
          "Planning Director", "Housing Coordinator", "Budget Analyst", "Police Chief",
          "Public Works Director", "Economic Development Manager"]
ATTACHMENTS = [("budget-summary.pdf", "application/pdf"),
               ("draft-ordinance.docx", "application/vnd.openxmlformats-officedocument."
                "wordprocessingml.document"),
               ("parcels.csv", "text/csv"), ("site-photo.jpg", "image/jpeg")]
ATTACHMENT_SIZES = [20_000, 60_000, 150_000, 600_000]
log = logging.getLogger("bench.ingest")


# ---- messages ------------------------------------------------------------------------------

def _senders(rng: random.Random, count: int) -> list[tuple[str, str, str]]:
    """(name, address, city label) at the shipped cities' own domains."""
    cities = [(c.name, c.state, d) for c in shipped_cities() for d in c.domains]
    out = []
    for i in range(count):
        first, last = FIRST[i % len(FIRST)], LAST[(i // len(FIRST)) % len(LAST)]
        name, state, domain = cities[i % len(cities)]
        local = f"{first}.{last}" if i < len(FIRST) * len(LAST) else f"{first}.{last}{i}"
        out.append((f"{first.title()} {last.title()}", f"{local}@{domain}",
                    f"City of {name}, {state}"))
    rng.shuffle(out)
    return out


def _html(text: str) -> str:
    paragraphs = "".join(f"<p style=\"margin:0 0 8px\">{p.replace(chr(10), '<br>')}</p>"
                         for p in text.split("\n\n"))
    return ("<html><head><style>p{font-family:Calibri}</style></head><body>"
            f"<div dir=\"ltr\">{paragraphs}</div>"
            "<img src=\"https://city.example/logo.png\" width=\"120\" alt=\"seal\"></body></html>")


def generate_messages(count: int, *, seed: int = 311, to: str = "desk@311.test",
                      senders: int = 300, tag: str = "") -> list[bytes]:
    """``count`` distinct city questions as raw RFC 5322 bytes (CRLF), reproducibly.

    Each sender writes at most ``ceil(count / senders)`` messages, under the per-sender flood
    limit, so every message is drafted rather than held in triage. With ``tag``, subjects
    start with ``[TAG-i]`` so a benchmark can find each message again downstream."""
    rng = random.Random(seed)
    questions = [q.text for q in load_questions() if len(q.text) > 40]
    people = _senders(rng, senders)
    out = []
    now = datetime.now(UTC)
    for i in range(count):
        name, address, city = people[i % len(people)]
        title = rng.choice(TITLES)
        body = rng.choice(questions)
        text = f"{body}\n\nThank you,\n{name}\n{title}\n{city}\n"
        kind = rng.choices(["plain", "alternative", "html", "attachment", "thread"],
                           weights=[35, 25, 15, 15, 10])[0]
        if kind == "thread":  # a question that carries a long quoted history
            history = "\n".join(f"> {line}" for q in rng.sample(questions, rng.randint(3, 12))
                                for line in q.splitlines())
            text += f"\nOn Mon, Nov 2, 2026 at 9:12 AM Council Office wrote:\n{history}\n"
        msg = EmailMessage()
        msg["From"] = f"{name} <{address}>"
        msg["To"] = to
        first_line = body.strip().splitlines()[0][:70]
        label = f"[{tag}-{i}] " if tag else ""
        msg["Subject"] = ("Re: " if kind == "thread" else "") + label + first_line
        msg["Date"] = format_datetime(now)
        msg["Message-ID"] = make_msgid(idstring=f"bench{seed}x{i}", domain=address.split("@")[1])
        if kind == "html":
            msg.set_content(_html(text), subtype="html")
        else:
            msg.set_content(text)
            if kind == "alternative":
                msg.add_alternative(_html(text), subtype="html")
            elif kind == "attachment":
                filename, ctype = rng.choice(ATTACHMENTS)
                size = rng.choice(ATTACHMENT_SIZES)
                maintype, subtype = ctype.split("/", 1)
                msg.add_attachment(rng.randbytes(size), maintype=maintype, subtype=subtype,
                                   filename=filename)
        out.append(msg.as_bytes(policy=SMTP))
    return out


# ---- the ceiling: a bare IMAP session ----------------------------------------------------

def warm(server: DovecotServer) -> None:
    """Let Dovecot build its index and cache for the new mail before anything is timed.
    (The stdlib client: aioimaplib recurses too deep on thousands of untagged FETCH lines.)"""
    client = server.imap()
    try:
        client.select("INBOX", readonly=True)
        client.uid("FETCH", "1:*", "(FLAGS RFC822.SIZE)")
    finally:
        client.logout()


async def bare_fetch(server: DovecotServer, *, bulk: bool) -> dict[str, Any]:
    started = time.perf_counter()
    client = aioimaplib.IMAP4(host=server.host, port=server.imap_port, timeout=60)
    await client.wait_hello_from_server()
    await client.login(server.user, server.password)
    await client.select("INBOX")
    found = await client.uid_search("ALL", charset=None)
    uids = [int(u) for line in found.lines[:-1] for u in bytes(line).split() if u.isdigit()]
    fetched = size = 0
    if bulk:
        response = await client.uid("fetch", "1:*", "(UID BODY.PEEK[])")
        for line in response.lines:
            if isinstance(line, bytearray):
                fetched += 1
                size += len(line)
    else:
        for uid in uids:
            response = await client.uid("fetch", str(uid), "(UID BODY.PEEK[])")
            for line in response.lines:
                if isinstance(line, bytearray):
                    fetched += 1
                    size += len(line)
    elapsed = time.perf_counter() - started
    await client.logout()
    if fetched != len(uids):
        raise RuntimeError(f"bare fetch read {fetched} of {len(uids)} messages")
    return {"messages": fetched, "bytes": size, "seconds": round(elapsed, 3),
            "messages_per_second": round(fetched / elapsed, 1)}


def parse_floor(raws: Sequence[bytes], ceiling: float) -> dict[str, Any]:
    """What parsing alone allows, on the same messages in this process: the standard library's
    ``message_from_bytes`` (the least any Python intake does with a message) and the intake's
    own ``parse_message`` (bodies and attachments decoded). Beside the per-UID fetch rate, it
    shows how close to the ceiling an intake that parses each message could ever come."""
    import email

    from mail.parse import parse_message

    figures: dict[str, Any] = {}
    for name, parse in (("stdlib_message_from_bytes", email.message_from_bytes),
                        ("parse_message", parse_message)):
        started = time.perf_counter()
        for raw in raws:
            parse(raw)
        rate = len(raws) / (time.perf_counter() - started)
        figures[name] = {"messages_per_second": round(rate, 1),
                         "ratio_to_bare_fetch": ratio(rate, ceiling)}
    return figures


# ---- the real intake ---------------------------------------------------------------------

async def prepare_service(settings: Settings, classifier: Classifier | None = None) -> Service:
    """The service as ``city311 serve`` wires it: migrated, cities and library seeded, the
    classifier loaded (or the one given, loaded the same way) and the library's search
    vocabulary built (a running service has both warm; the first draft would otherwise pay)."""
    service = await build_service(settings, classifier=classifier, long_running=True)
    async with service.store.session() as session:
        empty = not await service.store.list_cities(session)
    if empty:
        await import_cities(service.store, shipped_cities(), service.clock.now())
    await ensure_seeded(service.store)
    await library_for(service.store).search("warm up")
    if service.desk.classifier is not None:
        service.desk.classifier.classify("warm up the pipeline")
    return service


async def drain(server: DovecotServer, url: str, n: int, folder: Path,
                budget: float | None = None, classifier: Classifier | None = None
                ) -> dict[str, Any]:
    """Run the intake until all ``n`` messages are cases with drafts, or ``budget`` seconds
    have passed (the rate is then over the messages handled so far)."""
    settings = Settings(
        data_dir=folder, database=DatabaseSettings(url=url),
        mail=MailSettings(**server.mail_settings(), imap_poll_seconds=3600.0),
        web=WebSettings(base_url="http://311.test"))
    service = await prepare_service(settings, classifier)
    try:
        intake = service.parts["mail_intake"]
        stop = asyncio.Event()
        started = time.perf_counter()
        task = asyncio.create_task(intake.run(stop))
        while intake.handled < n:
            if task.done():
                raise RuntimeError(f"intake stopped at {intake.handled} of {n} messages")
            if time.perf_counter() - started > (budget or n * 2.0):
                if not budget:
                    raise RuntimeError(f"intake drained {intake.handled} of {n} messages in "
                                       f"{n * 2.0:.0f} s")
                break
            await asyncio.sleep(0.02)
        elapsed = time.perf_counter() - started
        handled = intake.handled
        stop.set()
        await asyncio.wait_for(task, 120)
        async with service.store.reading() as session:
            stored = (await session.execute(select(func.count(Message.id)).where(
                Message.direction == "in"))).scalar_one()
            cases = (await session.execute(select(func.count(Case.id)))).scalar_one()
            drafted = (await session.execute(select(func.count(distinct(Draft.case_id)))))\
                .scalar_one()
            statuses = dict((await session.execute(
                select(Case.status, func.count(Case.id)).group_by(Case.status))).all())
        if drafted != intake.handled or handled == 0:
            raise RuntimeError(f"{drafted} of {intake.handled} handled messages became cases "
                               f"with drafts ({statuses})")
        return {"messages": handled, "drained_all": handled == n, "seconds": round(elapsed, 3),
                "messages_per_second": round(handled / elapsed, 1), "stored_messages": stored,
                "cases": cases, "cases_with_drafts": drafted, "statuses": statuses}
    finally:
        await service.close()


async def _pg_admin(sql: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(PG_SERVER, timeout=5)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


class pg_database:  # noqa: N801 - used like a function: ``with pg_database() as url``
    """A fresh PostgreSQL database for one run, dropped afterwards; ``None`` when no server."""

    def __enter__(self) -> str | None:
        self.name = f"city311_bench_{secrets.token_hex(4)}"
        try:
            asyncio.run(_pg_admin(f'CREATE DATABASE "{self.name}"'))
        except Exception as exc:  # noqa: BLE001 - no server here: the figures say so
            self.error = str(exc)
            self.name = ""
            return None
        base = PG_SERVER.rsplit("/", 1)[0]
        return f"{base}/{self.name}"

    def __exit__(self, *exc: object) -> None:
        if self.name:
            asyncio.run(_pg_admin(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)'))


def deliver_parallel(server: DovecotServer, raws: Sequence[bytes], connections: int = 4) -> None:
    """LMTP delivery over a few connections at once, as an MTA with several queue runners."""
    chunks = [raws[i::connections] for i in range(connections)]
    with ThreadPoolExecutor(connections) as pool:
        for done in [pool.submit(server.deliver_many, chunk) for chunk in chunks]:
            done.result()


def mark_unseen(server: DovecotServer, n: int) -> None:
    server.set_flags(range(1, n + 1), "-FLAGS", r"\Seen")


def load_average() -> float | None:
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return None


def ratio(a: float, b: float) -> float:
    return round(a / b, 3) if b else 0.0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="40 messages, a smoke check")
    parser.add_argument("--n", type=int, help="number of messages (default 2000, quick 40)")
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--budget", type=float,
                        help="seconds each backend may drain for (default 25, quick 3; 0: "
                        "drain everything); the rate is over what was drained by then")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr,
                        format="%(levelname)s %(name)s: %(message)s")
    n = args.n or (40 if args.quick else 2000)
    budget = args.budget if args.budget is not None else (3.0 if args.quick else 25.0)
    load_before = load_average()
    raws = generate_messages(n)
    server = DovecotServer.start()
    try:
        started = time.perf_counter()
        deliver_parallel(server, raws)
        deliver_s = time.perf_counter() - started
        warm(server)
        per_uid = asyncio.run(asyncio.wait_for(bare_fetch(server, bulk=False), 300))
        bulk = asyncio.run(asyncio.wait_for(bare_fetch(server, bulk=True), 300))
        # Once, shared by both backends' services; warmed as `city311 serve` warms its own.
        classifier = load_classifier(warm=True)
        ceiling = per_uid["messages_per_second"]
        parse_only = parse_floor(raws, ceiling)
        results: dict[str, Any] = {}
        for backend in args.backends.split(","):
            with tempfile.TemporaryDirectory() as folder:
                if backend == "sqlite":
                    url = f"sqlite:///{Path(folder) / 'city311.db'}"
                    figures = asyncio.run(drain(server, url, n, Path(folder), budget,
                                                classifier))
                else:
                    with pg_database() as pg_url:
                        if pg_url is None:
                            results[backend] = {"skipped": "PostgreSQL not reachable"}
                            continue
                        figures = asyncio.run(drain(server, pg_url, n, Path(folder),
                                                    budget, classifier))
            figures["ratio_to_bare_fetch"] = ratio(figures["messages_per_second"], ceiling)
            figures["ratio_to_bulk_fetch"] = ratio(figures["messages_per_second"],
                                                   bulk["messages_per_second"])
            figures["meets_goal"] = figures["ratio_to_bare_fetch"] >= GOAL_RATIO
            results[backend] = figures
            print(json.dumps({backend: figures}), file=sys.stderr)
            mark_unseen(server, n)
    finally:
        server.stop()
    measured = [r for r in results.values() if "meets_goal" in r]
    print(json.dumps({
        "name": "email ingestion", "quick": args.quick, "messages": n,
        "mailbox_bytes": sum(len(r) for r in raws),
        "goal": f"intake at least {GOAL_RATIO:.0%} of the bare per-UID fetch rate",
        "goal_ratio": GOAL_RATIO, "drain_budget_seconds": budget or None,
        "lmtp_delivery_seconds": round(deliver_s, 2),
        "bare_fetch_per_uid": per_uid, "bare_fetch_bulk": bulk, "parse_only": parse_only,
        "intake": results,
        "all_meet_goal": bool(measured) and all(r["meets_goal"] for r in measured),
        "cpu_count": os.cpu_count(), "load_average_before": load_before,
        "load_average_after": load_average(),
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
