"""Fixtures for the fault tests: real servers (Dovecot, SMTP, the Slack stand-in, PostgreSQL)
and `city311 worker` processes that are stopped at teardown."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import pytest

from city311.wiring import Service
from desk.migrate import upgrade
from tests.conftest import PG_SERVER, pg_admin
from tests.faults.harness import WorkerProcess, add_cities, open_service
from tests.servers.postgres import PostgresServer
from tests.servers.slack_api import SlackApi
from tests.support import unavailable


def _asyncpg(url: str) -> str:
    return url.replace("postgresql://", "postgresql+asyncpg://", 1)


@pytest.fixture
def shared_pg_database() -> Iterator[str]:
    """A fresh, migrated database on the shared PostgreSQL server (dropped afterwards), as
    the plain ``postgresql://`` URL a deployment would put in DATABASE_URL."""
    name = f"city311_faults_{secrets.token_hex(4)}"
    try:
        asyncio.run(pg_admin(f'CREATE DATABASE "{name}"'))
    except Exception as exc:  # no server on this laptop
        unavailable(f"PostgreSQL not reachable at {PG_SERVER}: {exc}")
    url = f"{PG_SERVER.rsplit('/', 1)[0]}/{name}"
    try:
        # The release step of a deployment: migrate once, before any worker starts.
        upgrade(_asyncpg(url))
        yield url
    finally:
        asyncio.run(pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture
def private_pg() -> Iterator[PostgresServer]:
    """A PostgreSQL server of our own, which the test may stop and restart."""
    server = PostgresServer.start()
    yield server
    server.destroy()


@pytest.fixture
def private_pg_database(private_pg: PostgresServer) -> str:
    url = private_pg.create_database("city311")
    upgrade(_asyncpg(url))
    return url




@pytest.fixture
async def slack_api() -> AsyncIterator[SlackApi]:
    api = await SlackApi().start()
    yield api
    await api.stop()


@pytest.fixture
def workers(tmp_path: Path) -> Iterator[Callable[[str, dict[str, str]], WorkerProcess]]:
    """Start worker processes; each is stopped (SIGTERM, then SIGKILL) at teardown."""
    started: list[WorkerProcess] = []

    def start(name: str, env: dict[str, str]) -> WorkerProcess:
        worker = WorkerProcess(name, env, tmp_path)
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.stop()


@pytest.fixture
async def service_for(tmp_path: Path) -> AsyncIterator[Callable[[str], Awaitable[Service]]]:
    """The test's own service on a database (with the cities added); closed at teardown."""
    opened: list[Service] = []

    async def open_one(url: str) -> Service:
        service = await open_service(url, tmp_path / "test-data")
        opened.append(service)
        await add_cities(service.store)
        return service

    yield open_one
    for service in opened:
        await service.close()
