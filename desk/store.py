"""Database engine, sessions and the small queries everything shares."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any

from sqlalchemy import event, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine.interfaces import DBAPIConnection
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import selectinload
from sqlalchemy.pool import ConnectionPoolEntry

from desk.models import Case, City, CityDomain, Contact, Correction, Counter

__all__ = ["Store", "content_hash", "insert_ignore"]

READ_ONLY = "city311_read_only"


def content_hash(raw: bytes) -> str:
    return hashlib.sha256(raw).hexdigest()


def _sqlite_on_connect(dbapi_connection: DBAPIConnection, record: ConnectionPoolEntry) -> None:
    # Let SQLAlchemy emit BEGIN itself (below), and let readers run beside one writer.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def _sqlite_begin(conn: Any) -> None:
    # IMMEDIATE takes the write lock up front: two writers queue instead of failing with
    # "database is locked" when both upgrade from a read lock. Readers (WAL) need no lock.
    if conn.get_execution_options().get(READ_ONLY):
        conn.exec_driver_sql("BEGIN")
    else:
        conn.exec_driver_sql("BEGIN IMMEDIATE")


class Store:
    """Owns the engine. Use ``async with store.session() as s:`` for a unit of work."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self._sessions = async_sessionmaker(engine, expire_on_commit=False)
        self._readers = async_sessionmaker(engine.execution_options(**{READ_ONLY: True}),
                                           expire_on_commit=False)

    @classmethod
    def from_url(cls, url: str, *, echo: bool = False) -> Store:
        if url.startswith("sqlite"):
            engine = create_async_engine(url, echo=echo, connect_args={"timeout": 30})
            event.listen(engine.sync_engine, "connect", _sqlite_on_connect)
            event.listen(engine.sync_engine, "begin", _sqlite_begin)
        else:
            engine = create_async_engine(url, echo=echo, pool_pre_ping=True, pool_size=10)
        return cls(engine)

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncSession]:
        async with self._sessions() as session, session.begin():
            yield session

    @asynccontextmanager
    async def reading(self) -> AsyncIterator[AsyncSession]:
        """A unit of work that only reads: on SQLite it does not queue behind writers."""
        async with self._readers() as session, session.begin():
            yield session

    async def close(self) -> None:
        await self.engine.dispose()

    # ---- shared queries -------------------------------------------------------------------

    async def next_number(self, session: AsyncSession, name: str) -> int:
        """An atomic counter: concurrent callers get distinct numbers on both backends."""
        await insert_ignore(session, Counter, {"name": name, "value": 0})
        result = await session.execute(
            update(Counter).where(Counter.name == name).values(value=Counter.value + 1)
            .returning(Counter.value)
        )
        return int(result.scalar_one())

    async def find_case(self, session: AsyncSession, ref_or_id: str | int) -> Case | None:
        if isinstance(ref_or_id, int) or str(ref_or_id).isdigit():
            number = int(ref_or_id)
            # Beyond what any id column holds: no such case (and no overflow in the driver).
            return await session.get(Case, number) if 0 < number < 2**31 else None
        result = await session.execute(select(Case).where(Case.ref == str(ref_or_id).upper()))
        return result.scalar_one_or_none()

    async def city_by_domain(self, session: AsyncSession, domain: str) -> City | None:
        domain = domain.lower().strip(".")
        # A city's domain also covers its subdomains (police.kcmo.org under kcmo.org).
        candidates = [".".join(domain.split(".")[i:]) for i in range(domain.count("."))]
        if not candidates:
            return None
        result = await session.execute(
            select(City).join(CityDomain).where(CityDomain.domain.in_(candidates))
        )
        matches = result.scalars().unique().all()
        return matches[0] if matches else None

    async def contact_by_email(self, session: AsyncSession, email: str) -> Contact | None:
        result = await session.execute(select(Contact).where(Contact.email == email.lower()))
        return result.scalar_one_or_none()

    async def contact_by_slack(self, session: AsyncSession, user_id: str) -> Contact | None:
        result = await session.execute(select(Contact).where(Contact.slack_user_id == user_id))
        return result.scalar_one_or_none()

    async def list_cities(self, session: AsyncSession) -> Sequence[City]:
        result = await session.execute(select(City).options(selectinload(City.domains))
                                       .order_by(City.state, City.name))
        return result.scalars().all()

    async def add_city(
        self, session: AsyncSession, name: str, state: str, domains: Sequence[str], now: datetime
    ) -> City:
        state = state.upper()
        result = await session.execute(select(City).options(selectinload(City.domains))
                                       .where(City.name == name, City.state == state))
        city = result.scalar_one_or_none()
        if city is None:
            city = City(name=name, state=state, created_at=now, domains=[])
            session.add(city)
            await session.flush()
        known = {d.domain for d in city.domains}
        for domain in domains:
            domain = domain.lower().strip().strip(".")
            if domain and domain not in known:
                await insert_ignore(session, CityDomain, {"city_id": city.id, "domain": domain})
                known.add(domain)
        await session.refresh(city, ["domains"])
        return city

    async def list_corrections(self) -> list[Correction]:
        async with self.session() as session:
            result = await session.execute(select(Correction).order_by(Correction.id))
            return list(result.scalars().all())


async def insert_ignore(session: AsyncSession, model: Any, values: dict[str, Any]) -> bool:
    """INSERT that does nothing on a unique conflict; True when a row was inserted."""
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    statement = insert(model).values(**values).on_conflict_do_nothing()
    result = await session.execute(statement)
    return bool(getattr(result, "rowcount", 0))
