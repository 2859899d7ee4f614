"""The web app: health, and the places where Slack and the public library plug in."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from city311.wiring import Service
from desk.outbox import failing
from knowledge.web import routes as library_routes

__all__ = ["build_app"]


def build_app(service: Service) -> Starlette:
    async def health(request: Request) -> Response:
        try:
            async with service.store.session() as session:
                stuck = await failing(session)  # a query: it also says the database answers
        except Exception:  # the check reports, it must not crash
            return JSONResponse({"status": "database unavailable"}, status_code=503)
        # Messages that keep failing make the service degraded, not down: restarting it would
        # not deliver them, so the answer stays 200 and says what is wrong.
        delayed = stuck.delayed(service.clock.now(), service.dispatcher.delayed_after)
        return JSONResponse({
            "status": "degraded" if delayed else "ok", "channels": sorted(service.channels),
            "delivery": {"failing": stuck.count, "failing_since":
                         stuck.since.isoformat() if stuck.since else None,
                         "delayed": delayed},
        })

    async def home(request: Request) -> Response:
        return RedirectResponse("/library", status_code=302)

    routes: list[BaseRoute] = [Route("/healthz", health), Route("/", home)]
    for part in service.parts.values():
        extra = getattr(part, "routes", None)
        if extra is not None:
            routes.extend(extra())
    routes.extend(library_routes(service.store, service.settings.web.public_url))
    return Starlette(routes=routes)
