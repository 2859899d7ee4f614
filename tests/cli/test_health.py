"""``GET /healthz`` on the embedded default (SQLite): "ok", and "degraded" (still 200) while a
message has been failing for longer than the setting allows."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import update

from city311.web import build_app
from city311.wiring import Service, build_service
from desk.models import Outbox
from desk.outbox import enqueue
from desk.settings import Settings
from tests.support import FakeClock


@pytest.fixture
async def service(tmp_path: Path, clock: FakeClock) -> AsyncIterator[Service]:
    built = await build_service(Settings(data_dir=tmp_path, delivery_delayed_minutes=30),
                                clock=clock, with_classifier=False)
    yield built
    await built.close()


async def _health(service: Service) -> tuple[int, dict[str, Any]]:
    transport = httpx.ASGITransport(app=build_app(service))
    async with httpx.AsyncClient(transport=transport, base_url="http://city311.test") as http:
        response = await http.get("/healthz")
    return response.status_code, response.json()


async def _failing(service: Service, key: str, since: timedelta) -> None:
    now = service.clock.now()
    async with service.store.session() as session:
        await enqueue(session, kind="reply", channel="email", key=key, now=now - since)
        await session.execute(update(Outbox).where(Outbox.idempotency_key == key).values(
            attempts=3, last_error="451 try later", failing_since=now - since))


async def test_health_is_degraded_only_past_the_delay(service: Service) -> None:
    assert await _health(service) == (200, {
        "status": "ok", "channels": [],
        "delivery": {"failing": 0, "failing_since": None, "delayed": False}})
    await _failing(service, "reply:a", timedelta(minutes=29))
    status, body = await _health(service)
    assert status == 200 and body["status"] == "ok"
    assert body["delivery"]["failing"] == 1 and not body["delivery"]["delayed"]
    await _failing(service, "reply:b", timedelta(minutes=31))
    status, body = await _health(service)
    assert status == 200 and body["status"] == "degraded"
    since = (service.clock.now() - timedelta(minutes=31)).isoformat()
    assert body["delivery"] == {"failing": 2, "failing_since": since, "delayed": True}

