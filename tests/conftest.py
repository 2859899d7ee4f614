"""Databases for every suite: SQLite in a temp dir, and a fresh PostgreSQL database per session."""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import AsyncIterator, Iterator

import pytest
from sqlalchemy import text

from desk.migrate import upgrade
from desk.models import Base
from desk.store import Store
from tests.servers.dovecot import DovecotServer
from tests.servers.smtp import SmtpServer
from tests.support import FakeClock, unavailable

PG_SERVER = os.environ.get("TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")


async def pg_admin(sql: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(PG_SERVER, timeout=5)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """A fresh PostgreSQL database for this test session, migrated to head."""
    name = f"city311_test_{os.getpid()}_{secrets.token_hex(3)}"
    try:
        asyncio.run(pg_admin(f'CREATE DATABASE "{name}"'))
    except Exception as exc:  # no server on this laptop
        unavailable(f"PostgreSQL not reachable at {PG_SERVER}: {exc}")
    base = PG_SERVER.rsplit("/", 1)[0]
    url = f"{base.replace('postgresql://', 'postgresql+asyncpg://')}/{name}"
    upgrade(url)
    yield url
    asyncio.run(pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A migrated database URL, on each backend in turn."""
    if request.param == "sqlite":
        path = tmp_path_factory.mktemp("db") / "city311.db"
        url = f"sqlite+aiosqlite:///{path}"
        upgrade(url)
        return url
    url: str = request.getfixturevalue("pg_url")
    asyncio.run(truncate_all(url))
    return url


async def truncate_all(url: str) -> None:
    store = Store.from_url(url)
    tables = ", ".join(f'"{t.name}"' for t in Base.metadata.sorted_tables)
    async with store.session() as session:
        names = await session.execute(text(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public' "
            "AND tablename <> 'alembic_version'"))
        every = ", ".join(f'"{n}"' for n in names.scalars().all()) or tables
        await session.execute(text(f"TRUNCATE {every} RESTART IDENTITY CASCADE"))
    await store.close()


@pytest.fixture
async def store(db_url: str) -> AsyncIterator[Store]:
    store = Store.from_url(db_url)
    yield store
    await store.close()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def dovecot() -> Iterator[DovecotServer]:
    """A throwaway Dovecot (IMAP + LMTP) for one test."""
    server = DovecotServer.start()
    yield server
    server.stop()


@pytest.fixture
def smtp_server() -> Iterator[SmtpServer]:
    """A recording aiosmtpd server for one test."""
    server = SmtpServer().start()
    yield server
    server.stop()
