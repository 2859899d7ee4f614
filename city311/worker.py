"""The worker: routes and drafts what arrived, delivers the outbox, runs the clocks and the
channels' own loops (IMAP intake, Slack Socket Mode). One failing step never stops the rest."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from city311.wiring import Service

__all__ = ["Worker"]

log = logging.getLogger(__name__)

Step = Callable[[], Awaitable[object]]


class Worker:
    def __init__(self, service: Service) -> None:
        self.service = service
        self.steps: list[tuple[str, Step]] = [
            ("recover", service.desk.recover),
            ("outbox", service.dispatcher.run_once),
        ]
        for name, part in service.parts.items():
            tick = getattr(part, "tick", None)
            if tick is not None:
                self.steps.append((name, tick))

    def add_step(self, name: str, step: Step) -> None:
        self.steps.append((name, step))

    async def run_once(self) -> None:
        for name, step in self.steps:
            try:
                await step()
            except Exception:
                log.exception("worker step %s failed; it runs again next round", name)

    async def run(self, stop: asyncio.Event) -> None:
        loops = []
        for name, part in self.service.parts.items():
            runner = getattr(part, "run", None)
            if runner is not None:
                loop = asyncio.create_task(runner(stop), name=f"{name}-loop")
                loop.add_done_callback(_report_end)
                loops.append(loop)
        log.info("worker started")
        try:
            while not stop.is_set():
                self.service.wake.clear()
                await self.run_once()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(
                        _first(stop.wait(), self.service.wake.wait()),
                        timeout=self.service.settings.worker_interval,
                    )
        finally:
            for task in loops:
                task.cancel()
            for task in loops:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            log.info("worker stopped")


def _report_end(task: asyncio.Task[None]) -> None:
    """A channel loop that dies says so at once, not silently at shutdown."""
    if not task.cancelled() and task.exception() is not None:
        log.error("%s stopped: %r; the rest of the worker runs on", task.get_name(),
                  task.exception(), exc_info=task.exception())


async def _first(*waits: Awaitable[object]) -> None:
    tasks = [asyncio.ensure_future(w) for w in waits]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
