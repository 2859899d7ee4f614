"""The web app: health, and the places where Slack and the public library plug in."""

from __future__ import annotations

from sqlalchemy import text
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from city311.wiring import Service
from knowledge.web import routes as library_routes

__all__ = ["build_app"]


def build_app(service: Service) -> Starlette:
    async def health(request: Request) -> Response:
        try:
            async with service.store.session() as session:
                await session.execute(text("SELECT 1"))
        except Exception:  # the check reports, it must not crash
            return JSONResponse({"status": "database unavailable"}, status_code=503)
        return JSONResponse({"status": "ok", "channels": sorted(service.channels)})

    async def home(request: Request) -> Response:
        return RedirectResponse("/library", status_code=302)

    routes: list[BaseRoute] = [Route("/healthz", health), Route("/", home)]
    for part in service.parts.values():
        extra = getattr(part, "routes", None)
        if extra is not None:
            routes.extend(extra())
    routes.extend(library_routes(service.store, service.settings.web.public_url))
    return Starlette(routes=routes)
