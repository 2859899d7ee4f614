"""An email that keeps failing is retried all along, and once it has failed for the configured
time the reviewers get one notice in the case's thread and the health check says "degraded";
when the SMTP server takes mail again it goes out once and the health check is "ok" again. A
real worker process, Dovecot, the SMTP server and the Slack stand-in."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from city311.web import build_app
from city311.wiring import Service, build_service
from desk.settings import DatabaseSettings, Settings
from tests.faults.harness import (
    REVIEW_CHANNEL,
    WorkerProcess,
    add_cities,
    mail_by_kind,
    question,
    wait_until,
    worker_env,
)
from tests.servers.dovecot import DovecotServer
from tests.servers.slack_api import SlackApi
from tests.servers.smtp import SmtpServer

pytestmark = [pytest.mark.slow, pytest.mark.dovecot, pytest.mark.postgres]

DELAYED_MINUTES = "0.05"  # three seconds: the second retry of the acknowledgement is past it


def delay_notices(api: SlackApi) -> list[dict[str, Any]]:
    return [c for c in api.calls_to("chat.postMessage")
            if "has not gone out yet" in str(c.get("text", ""))]


async def test_an_email_failing_for_long_is_reported_once_then_sent_once(
    shared_pg_database: str, tmp_path: Path, dovecot: DovecotServer, smtp_server: SmtpServer,
    slack_api: SlackApi, workers: Callable[[str, dict[str, str]], WorkerProcess],
) -> None:
    settings = Settings(data_dir=tmp_path / "test-data",
                        database=DatabaseSettings(url=shared_pg_database),
                        delivery_delayed_minutes=float(DELAYED_MINUTES))
    service: Service = await build_service(settings, migrate=False, with_classifier=False)
    try:
        await add_cities(service.store)
        smtp_server.refuse("451 4.3.0 Mail server temporarily busy", times=None)
        worker = workers("worker", worker_env(
            shared_pg_database, tmp_path / "data", dovecot=dovecot, smtp=smtp_server,
            slack=slack_api, CITY311_DELIVERY_DELAYED_MINUTES=DELAYED_MINUTES))

        async def watching() -> bool:
            return "mail intake watching" in worker.log()

        await wait_until(watching, timeout=180, what="the worker reading mail", workers=[worker])
        await asyncio.to_thread(dovecot.deliver_many, [question(1)])

        async def reported() -> bool:
            return bool(delay_notices(slack_api))

        await wait_until(reported, timeout=60, what="the notice of the failing acknowledgement",
                         workers=[worker])
        notice = delay_notices(slack_api)[0]
        assert notice["channel"] == REVIEW_CHANNEL and notice.get("thread_ts")  # the case's
        assert "The acknowledgement by email" in notice["text"] and "451" in notice["text"]
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=build_app(service)),
                                     base_url="http://city311.test") as http:
            health = (await http.get("/healthz")).json()
            assert health["status"] == "degraded"
            assert health["delivery"]["failing"] == 1 and health["delivery"]["delayed"]

            smtp_server.accept()

            async def acknowledged() -> bool:
                return sum(mail_by_kind(smtp_server)["ack"].values()) >= 1

            await wait_until(acknowledged, timeout=60, what="the acknowledgement",
                             workers=[worker])
            await asyncio.sleep(1.0)  # a second notice or send would show itself by now
            health = (await http.get("/healthz")).json()
            assert health["status"] == "ok"
            assert health["delivery"] == {"failing": 0, "failing_since": None,
                                          "delayed": False}
        assert sum(mail_by_kind(smtp_server)["ack"].values()) == 1
        assert len(delay_notices(slack_api)) == 1
        assert worker.alive, worker.tail()
    finally:
        await service.close()
