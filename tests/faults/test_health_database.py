"""``GET /healthz`` while PostgreSQL is stopped: 503 "database unavailable", and "ok" again
once it is back, from the same running app (a private PostgreSQL server, stopped for real)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import httpx
import pytest

from city311.web import build_app
from city311.wiring import Service
from tests.servers.postgres import PostgresServer

pytestmark = [pytest.mark.postgres]


async def test_health_is_503_while_the_database_is_down_and_ok_after(
    private_pg: PostgresServer, private_pg_database: str,
    service_for: Callable[[str], Awaitable[Service]],
) -> None:
    service = await service_for(private_pg_database)
    transport = httpx.ASGITransport(app=build_app(service))
    async with httpx.AsyncClient(transport=transport, base_url="http://city311.test") as http:
        assert (await http.get("/healthz")).json()["status"] == "ok"
        await asyncio.to_thread(private_pg.stop_server, "fast")
        down = await http.get("/healthz")
        assert down.status_code == 503
        assert down.json() == {"status": "database unavailable"}
        await asyncio.to_thread(private_pg.start_server)
        up = await http.get("/healthz")
        assert up.status_code == 200 and up.json()["status"] == "ok"
