"""A real HTTP server for the library pages, and a drafted case to look at."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from starlette.applications import Starlette

from desk.models import Case, City, Draft
from desk.ports import DraftRequest, Entity
from desk.store import Store
from knowledge.drafting import LibraryDrafter
from knowledge.web import routes
from tests.support import loopback_socket, serve, url_of

__all__ = ["DraftedCase", "draft_case", "serve_library"]


@asynccontextmanager
async def serve_library(store: Store) -> AsyncIterator[str]:
    """The library routes under uvicorn on a free loopback port; yields the base URL."""
    sock = loopback_socket()  # bound first: the routes link to their own base URL
    async with serve(Starlette(routes=routes(store, url_of(sock))), sock) as base:
        yield base


@dataclass
class DraftedCase:
    ref: str
    token: str
    resources: list[dict[str, object]]


async def draft_case(store: Store, *, ref: str, city: str, question: str,
                     topics: list[str], entities: list[Entity] | None = None) -> DraftedCase:
    """A case with a system draft, as the pipeline leaves it."""
    now = datetime(2026, 11, 24, 15, 0, tzinfo=UTC)
    token = secrets.token_urlsafe(24)
    package = await LibraryDrafter(store).draft(DraftRequest(
        case_ref=ref, question=question, topics=topics, entities=entities or [], city=city,
        state="OH", package_url=f"/p/{token}"))
    async with store.session() as session:
        place = City(name=city, state="OH", created_at=now, domains=[])
        session.add(place)
        await session.flush()
        case = Case(
            ref=ref, channel="email", thread_key=f"<{ref}@city.test>", status="drafted",
            subject="Question", question=question, city_id=place.id,
            topics=[{"topic": t, "score": 0.9} for t in topics], scores={}, entities=[],
            urgency=0.0, received_at=now, clock_started_at=now, due_at=now + timedelta(days=3),
            package_token=token, cycle=1, meta={}, created_at=now, updated_at=now)
        session.add(case)
        await session.flush()
        session.add(Draft(case_id=case.id, version=1, text=package.text, html=package.html,
                          mrkdwn=package.mrkdwn, package=package.as_dict(), topics=topics,
                          author="system", created_at=now))
    return DraftedCase(ref=ref, token=token, resources=package.resources)
