"""The public library on the web: search page, detail pages, a JSON API, and the online page
of each case's package. Server-rendered HTML that works without JavaScript."""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from sqlalchemy import select
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import BaseRoute, Route

from desk.errors import InputError
from desk.models import Case, Draft
from desk.ports import TOPICS
from desk.store import Store
from knowledge.labels import RESOURCE_KINDS, kind_label, topic_label
from knowledge.library import Filters, Library, library_for
from knowledge.render import FOLLOW_UP_OFFER, environment, understood

__all__ = ["routes"]

log = logging.getLogger(__name__)

PER_PAGE = 20
STATIC = Path(__file__).resolve().parent / "static"
_TOKEN = re.compile(r"[A-Za-z0-9_-]{16,128}")
_ENV = environment()
_PRIVATE = {"Cache-Control": "private, no-store", "X-Robots-Tag": "noindex, nofollow",
            "Referrer-Policy": "no-referrer"}


def _page_number(raw: str | None) -> int:
    if raw in (None, ""):
        return 1
    # ASCII digits only: int() also reads full-width and other scripts' digits.
    if raw is None or not (raw.isascii() and raw.isdigit()) or len(raw) > 6:
        raise InputError("page must be a whole number between 1 and 10000")
    page = int(raw)
    if not 1 <= page <= 10_000:
        raise InputError("page must be between 1 and 10000")
    return page


def _search_args(request: Request) -> tuple[str, Filters, int]:
    params = request.query_params
    query = params.get("q", "")
    filters = Filters.parse(topic=params.get("topic"), kind=params.get("kind"),
                            publisher=params.get("publisher"), year=params.get("year"))
    return query, filters, _page_number(params.get("page"))


class LibraryPages:
    def __init__(self, store: Store, public_url: str) -> None:
        self.store = store
        self.public_url = public_url.rstrip("/")
        self.library: Library = library_for(store)

    def _html(self, template: str, status: int = 200, headers: dict[str, str] | None = None,
              **context: Any) -> HTMLResponse:
        context.setdefault("title", "Resource library")
        body = _ENV.get_template(template).render(
            topic_label=topic_label, kind_label=kind_label, **context)
        return HTMLResponse(body, status_code=status, headers=headers)

    # ---- /library ---------------------------------------------------------------------------

    async def index(self, request: Request) -> Response:
        try:
            query, filters, page = _search_args(request)
            result = await self.library.search(query, filters, page=page, per_page=PER_PAGE)
        except InputError as exc:
            return self._html("library.html", status=400, error=str(exc), query="",
                              filters=Filters(), result=None, facets=await self._facets(),
                              link=lambda **_: "/library", title="Search problem")
        return self._html("library.html", query=result.query, filters=filters, result=result,
                          facets=await self._facets(), error=None,
                          link=_linker(result.query, filters),
                          title=f"{result.query} - Resource library" if result.query
                          else "Resource library")

    async def _facets(self) -> dict[str, Any]:
        stats = await self.library.stats()
        return {
            "topics": [(t, topic_label(t), stats["topics"].get(t, 0)) for t in TOPICS],
            "kinds": [(k, kind_label(k), stats["kinds"].get(k, 0)) for k in RESOURCE_KINDS
                      if stats["kinds"].get(k, 0)],
            "resources": stats["resources"],
        }

    async def detail(self, request: Request) -> Response:
        ident = str(request.path_params["ident"])
        entry = await self.library.get(ident) if len(ident) <= 120 else None
        if entry is None:
            return self._html("not_found.html", status=404, title="Not found",
                              message="There is no resource at this address.")
        return self._html("resource.html", entry=entry, title=entry["title"])

    # ---- /api/resources ---------------------------------------------------------------------

    async def api(self, request: Request) -> Response:
        try:
            query, filters, page = _search_args(request)
            per_page = request.query_params.get("per_page", str(PER_PAGE))
            if not per_page.isdigit() or not 1 <= int(per_page) <= 100:
                raise InputError("per_page must be between 1 and 100")
            result = await self.library.search(query, filters, page=page,
                                               per_page=int(per_page))
        except InputError as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        body = result.as_dict()
        for hit in body["results"]:
            hit["page_url"] = f"{self.public_url}/library/{hit['id']}"
        return JSONResponse(body)

    # ---- /p/{token} -------------------------------------------------------------------------

    async def package(self, request: Request) -> Response:
        token = str(request.path_params["token"])
        found = await self._package(token) if _TOKEN.fullmatch(token) else None
        if found is None:
            return self._html("not_found.html", status=404, headers=_PRIVATE,
                              title="Not found",
                              message="There is no package at this address. Check the link "
                                      "in the message we sent you.")
        case, package = found
        topics = [t["topic"] if isinstance(t, dict) else str(t) for t in case.topics]
        city = case.city
        return self._html(
            "package_page.html", headers=_PRIVATE, case_ref=case.ref,
            understood=understood(topics, city.name if city else None,
                                  city.state if city else None),
            resources=package.get("resources", []), referrals=package.get("referrals", []),
            tools=package.get("tools", []), follow_up=FOLLOW_UP_OFFER,
            title=f"Resource package {case.ref}")

    async def _package(self, token: str) -> tuple[Case, dict[str, Any]] | None:
        async with self.store.reading() as session:
            case = (await session.execute(
                select(Case).where(Case.package_token == token))).scalar_one_or_none()
            if case is None:
                return None
            draft = (await session.execute(
                select(Draft).where(Draft.case_id == case.id)
                .order_by(Draft.version.desc()).limit(1))).scalar_one_or_none()
            if draft is None or not draft.package:
                return None
            return case, dict(draft.package)

    async def css(self, request: Request) -> Response:
        return Response((STATIC / "library.css").read_text(encoding="utf-8"),
                        media_type="text/css",
                        headers={"Cache-Control": "public, max-age=3600"})


def _linker(query: str, filters: Filters) -> Any:
    """Builds /library links that keep the current search and change one thing."""

    def link(**changes: Any) -> str:
        params: dict[str, Any] = {"q": query, **filters.as_dict(), "page": None, **changes}
        clean = {k: v for k, v in params.items() if v not in (None, "")}
        return "/library" + ("?" + urlencode(clean) if clean else "")

    return link


def routes(store: Store, public_url: str) -> list[BaseRoute]:
    pages = LibraryPages(store, public_url)
    return [
        Route("/library", pages.index, methods=["GET", "HEAD"]),
        Route("/library/{ident}", pages.detail, methods=["GET", "HEAD"]),
        Route("/api/resources", pages.api, methods=["GET", "HEAD"]),
        Route("/p/{token}", pages.package, methods=["GET", "HEAD"]),
        Route("/static/library.css", pages.css, methods=["GET", "HEAD"]),
    ]


