"""Arrival to review card: from LMTP delivery to the review card at the Slack stand-in.

The real worker (``city311.worker.Worker`` over ``build_service``) runs with IMAP IDLE on a
throwaway Dovecot, SMTP on a local aiosmtpd (acknowledgements leave for real), and Slack's
Web API on the local stand-in. Each message is delivered over LMTP and timed until the
stand-in receives the ``chat.postMessage`` of its review card in the review channel; then the
next one goes. p50 and p95 over 100 messages after 2 untimed ones, beside the goal p95 < 1.5 s
(the common help desks poll every 30 s to 5 min). ``--quick`` is a smoke check: 8 messages
after 1 untimed, so its p95 is close to the slowest of them.

    python bench/bench_arrival.py [--quick] [--n N] [--backends sqlite,postgresql]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import aioimaplib  # noqa: E402

from bench.bench_ingest import (  # noqa: E402
    generate_messages,
    load_average,
    pg_database,
    prepare_service,
)
from city311.worker import Worker  # noqa: E402
from desk.settings import (  # noqa: E402
    DatabaseSettings,
    MailSettings,
    Settings,
    SlackSettings,
    WebSettings,
)
from tests.servers.dovecot import DovecotServer  # noqa: E402
from tests.servers.slack_api import SlackApi  # noqa: E402
from tests.servers.smtp import SmtpServer  # noqa: E402

__all__ = ["TimedSlackApi", "main", "percentile"]

GOAL_P95_S = 1.5
REVIEW_CHANNEL = "CREVIEW"
SECRET = "bench-signing-secret-0123456789ab"  # noqa: S105 - a throwaway local stand-in
WARMUP = 2
QUICK_WARMUP = 1
log = logging.getLogger("bench.arrival")


class TimedSlackApi(SlackApi):
    """The stand-in, noting when each review-channel post arrives and which tag it carries."""

    def __post_init__(self) -> None:
        super().__post_init__()
        self.waiting: dict[str, asyncio.Future[float]] = {}

    def _m_chat_postMessage(self, args: dict[str, Any]) -> dict[str, Any]:  # noqa: N802
        arrived = time.perf_counter()
        if args.get("channel") == REVIEW_CHANNEL and not args.get("thread_ts"):
            text = json.dumps(args)
            for tag, future in list(self.waiting.items()):
                if tag in text and not future.done():
                    future.set_result(arrived)
                    del self.waiting[tag]
        return super()._m_chat_postMessage(args)

    def expect(self, tag: str) -> asyncio.Future[float]:
        future: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        self.waiting[tag] = future
        return future


async def watch_idle(server: DovecotServer, pushes: list[float], ready: asyncio.Event,
                     stop: asyncio.Event) -> None:
    """A bare aioimaplib client idling on the same mailbox: when Dovecot itself announces
    each new message (it waits 500 ms after a change before it tells IDLE clients)."""
    client = aioimaplib.IMAP4(host=server.host, port=server.imap_port, timeout=30)
    await client.wait_hello_from_server()
    await client.login(server.user, server.password)
    await client.select("INBOX")
    idle = await client.idle_start(timeout=3600)
    ready.set()
    while not stop.is_set():
        try:
            lines = await client.wait_server_push(timeout=0.5)
        except TimeoutError:
            continue
        if lines == aioimaplib.STOP_WAIT_SERVER_PUSH:
            break
        if any(b"EXISTS" in line for line in lines if isinstance(line, bytes | bytearray)):
            pushes.append(time.perf_counter())
    client.idle_done()
    with contextlib.suppress(Exception):
        await asyncio.wait_for(idle, 5)
        await asyncio.wait_for(client.logout(), 5)


def percentile(values: Sequence[float], q: int) -> float:
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


async def measure(url: str, n: int, folder: Path, warmup: int = WARMUP) -> dict[str, Any]:
    dovecot = DovecotServer.start()
    smtp = SmtpServer().start()
    api = await TimedSlackApi().start()
    api.add_user("UREV1", email="reviewer@network.test", name="Reviewer")
    service = None
    stop = asyncio.Event()
    worker_task = None
    try:
        settings = Settings(
            data_dir=folder, database=DatabaseSettings(url=url),
            mail=MailSettings(**{**dovecot.mail_settings(), **smtp.mail_settings()},
                              imap_poll_seconds=3600.0),
            slack=SlackSettings(bot_token="xoxb-bench", signing_secret=SECRET,
                                review_channel=REVIEW_CHANNEL, api_url=api.base_url,
                                reviewers=["UREV1"]),
            web=WebSettings(base_url="http://311.test"))
        service = await prepare_service(settings)
        worker_task = asyncio.create_task(Worker(service).run(stop))
        pushes: list[float] = []
        watching = asyncio.Event()
        watcher = asyncio.create_task(watch_idle(dovecot, pushes, watching, stop))
        await asyncio.wait_for(watching.wait(), 30)
        raws = generate_messages(n + warmup, seed=1500, tag="ARR")
        rng = random.Random(7)
        latencies: list[float] = []
        lmtp: list[float] = []
        floor: list[float] = []
        for i, raw in enumerate(raws):
            tag = f"[ARR-{i}]"
            arrived = api.expect(tag)
            started = time.perf_counter()
            await asyncio.to_thread(dovecot.deliver, raw)
            delivered = time.perf_counter()
            try:
                at = await asyncio.wait_for(arrived, 30)
            except TimeoutError:
                raise RuntimeError(f"no review card for message {i} after 30 s") from None
            if i >= warmup:
                latencies.append(at - started)
                lmtp.append(delivered - started)
                pushed = [p for p in pushes if p >= started]
                if pushed:
                    floor.append(pushed[0] - started)
            await asyncio.sleep(rng.uniform(0.0, 0.1))  # arrivals are not back to back
        acks = len(smtp.received)
        stop.set()
        await asyncio.wait_for(watcher, 10)
        beyond = sorted(a - f for a, f in zip(latencies, floor, strict=False))
        floor.sort()
        latencies.sort()
        p50, p95 = percentile(latencies, 50), percentile(latencies, 95)
        return {
            "messages": len(latencies), "p50_s": round(p50, 3), "p95_s": round(p95, 3),
            "max_s": round(latencies[-1], 3), "min_s": round(latencies[0], 3),
            "lmtp_delivery_p50_s": round(percentile(sorted(lmtp), 50), 4),
            "dovecot_idle_push_p50_s": round(percentile(floor, 50), 3) if floor else None,
            "dovecot_idle_push_p95_s": round(percentile(floor, 95), 3) if floor else None,
            "after_push_p50_s": round(percentile(beyond, 50), 3) if beyond else None,
            "after_push_p95_s": round(percentile(beyond, 95), 3) if beyond else None,
            "acknowledgements_sent": acks, "goal_p95_s": GOAL_P95_S,
            "ratio_to_goal": round(p95 / GOAL_P95_S, 3), "meets_goal": p95 < GOAL_P95_S,
        }
    finally:
        stop.set()
        if worker_task is not None:
            await asyncio.wait_for(worker_task, 30)
        if service is not None:
            await service.close()
        await api.stop()
        smtp.stop()
        dovecot.stop()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="8 messages, a smoke check")
    parser.add_argument("--n", type=int, help="messages to time (default 100, quick 8)")
    parser.add_argument("--backends", default="sqlite",
                        help="comma-separated: sqlite, postgresql")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr,
                        format="%(levelname)s %(name)s: %(message)s")
    n = args.n or (8 if args.quick else 100)
    warmup = QUICK_WARMUP if args.quick else WARMUP
    load_before = load_average()
    results: dict[str, Any] = {}
    for backend in args.backends.split(","):
        with tempfile.TemporaryDirectory() as folder:
            if backend == "sqlite":
                url = f"sqlite:///{Path(folder) / 'city311.db'}"
                results[backend] = asyncio.run(measure(url, n, Path(folder), warmup))
            else:
                with pg_database() as pg_url:
                    if pg_url is None:
                        results[backend] = {"skipped": "PostgreSQL not reachable"}
                        continue
                    results[backend] = asyncio.run(measure(pg_url, n, Path(folder), warmup))
        print(json.dumps({backend: results[backend]}), file=sys.stderr)
    measured = [r for r in results.values() if "meets_goal" in r]
    print(json.dumps({
        "name": "arrival to review card", "quick": args.quick,
        "goal": f"p95 under {GOAL_P95_S:g} s from LMTP delivery to the card in Slack",
        "goal_p95_s": GOAL_P95_S, "results": results,
        "all_meet_goal": bool(measured) and all(r["meets_goal"] for r in measured),
        "cpu_count": os.cpu_count(), "load_average_before": load_before,
        "load_average_after": load_average(),
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
