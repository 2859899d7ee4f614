"""Test support shared by every suite: a settable clock, the rule for missing servers, and an
ASGI app served for real."""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import uvicorn
from starlette.types import ASGIApp

REPO = Path(__file__).resolve().parents[1]
SHARED_FIXTURES = REPO.parent / "shared" / "fixtures"
IN_CI = bool(os.environ.get("CI"))


def unavailable(reason: str) -> None:
    """Skip on a laptop without the server; fail in CI, where every server must be there."""
    if IN_CI:
        pytest.fail(f"required in CI: {reason}")
    pytest.skip(reason)


def shared_fixtures() -> Path:
    if not SHARED_FIXTURES.is_dir():
        unavailable(f"shared fixtures not found at {SHARED_FIXTURES}")
    return SHARED_FIXTURES


class FakeClock:
    """A clock the test moves by hand; SLA tests never sleep."""

    def __init__(self, now: datetime | None = None) -> None:
        self._now = now or datetime(2026, 11, 24, 15, 0, tzinfo=UTC)  # a Tuesday, 10:00 ET

    def now(self) -> datetime:
        return self._now

    def set(self, now: datetime) -> None:
        self._now = now

    def advance(self, **delta: float) -> datetime:
        self._now += timedelta(**delta)
        return self._now


def loopback_socket() -> socket.socket:
    """A socket bound to a free loopback port, for an app that must know its URL first."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    return sock


def url_of(sock: socket.socket) -> str:
    return f"http://127.0.0.1:{sock.getsockname()[1]}"


@asynccontextmanager
async def serve(app: ASGIApp, sock: socket.socket | None = None) -> AsyncIterator[str]:
    """``app`` under uvicorn on ``sock`` (or a free loopback port); yields its base URL."""
    sock = sock or loopback_socket()
    server = uvicorn.Server(uvicorn.Config(app, log_config=None, lifespan="off",
                                           access_log=False))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        for _ in range(1000):
            if server.started or task.done():
                break
            await asyncio.sleep(0.01)
        assert server.started, "the web app did not start"
        yield url_of(sock)
    finally:
        server.should_exit = True
        await task
        sock.close()
