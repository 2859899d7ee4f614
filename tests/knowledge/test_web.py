"""The public library pages, the JSON API and the package pages over real HTTP."""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest

from desk.ports import Entity
from desk.store import Store
from knowledge.web import routes
from tests.knowledge.web_support import draft_case, serve_library

CDBG = "Can we use CDBG money to demolish blighted vacant houses?"


@pytest.fixture(scope="module")
def library_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    """SQLite only for the page tests: search itself is tested on both backends, and the
    package pages below run on both through ``seeded_store``."""
    import asyncio

    from desk.migrate import upgrade
    from tests.knowledge.conftest import _seed

    url = f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('web') / 'city311.db'}"
    upgrade(url)
    asyncio.run(_seed(url))
    return url


async def test_api_search_filters_and_pages(library_store: Store) -> None:
    async with serve_library(library_store) as base, httpx.AsyncClient(base_url=base) as http:
        typo = (await http.get("/api/resources", params={"q": "bond ratng"})).json()
        assert typo["corrected_query"] == "bond rating"
        assert "rating" in typo["results"][0]["title"].lower()
        assert typo["results"][0]["page_url"] == f"{base}/library/{typo['results'][0]['id']}"
        housing = (await http.get("/api/resources", params={
            "q": "", "topic": "housing", "kind": "guide"})).json()
        assert housing["total"] > 0
        assert all("housing" in r["topics"] and r["kind"] == "guide"
                   for r in housing["results"])
        second = (await http.get("/api/resources", params={"page": 2})).json()
        first = (await http.get("/api/resources")).json()
        assert second["page"] == 2 and first["pages"] == second["pages"] > 1
        assert {r["id"] for r in first["results"]}.isdisjoint(
            r["id"] for r in second["results"])
        injected = await http.get("/api/resources",
                                  params={"q": "'; DROP TABLE resources; --"})
        assert injected.status_code == 200
        assert (await http.get("/api/resources")).json()["total"] == first["total"]


@pytest.mark.parametrize(("params", "message"), [
    ({"q": "x" * 20_000}, "too long"),
    ({"q": "bond\x01"}, "control characters"),
    ({"topic": "astrology"}, "unknown topic"),
    ({"page": "two"}, "page"),
    ({"year": "1e9"}, "year"),
    ({"per_page": "1000"}, "per_page"),
])
async def test_api_bad_input_is_a_400_with_a_message(library_store: Store,
                                                     params: dict[str, str],
                                                     message: str) -> None:
    async with serve_library(library_store) as base, httpx.AsyncClient(base_url=base) as http:
        response = await http.get("/api/resources", params=params)
    assert response.status_code == 400
    assert message in response.json()["error"]


async def _asgi_get(app: Any, path: str, query: bytes) -> tuple[int, str]:
    """One GET straight into the ASGI app: no client or server limits the URL length."""
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
             "method": "GET", "scheme": "http", "path": path, "raw_path": path.encode(),
             "query_string": query, "root_path": "", "headers": [(b"host", b"test")],
             "client": ("127.0.0.1", 1), "server": ("test", 80)}
    await app(scope, receive, send)
    status = next(m["status"] for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return status, body.decode()


async def test_a_megabyte_query_gets_a_clear_message(library_store: Store) -> None:
    # A 1 MB URL is refused by HTTP clients and servers before it reaches us; straight into
    # the ASGI app it gets our answer, not an error page.
    from starlette.applications import Starlette

    app = Starlette(routes=routes(library_store, "http://test"))
    query = urlencode({"q": "budget " * 150_000}).encode()
    status, body = await _asgi_get(app, "/api/resources", query)
    assert status == 400 and "too long" in json.loads(body)["error"]
    status, body = await _asgi_get(app, "/library", query)
    assert status == 400 and "too long" in body and 'role="alert"' in body


async def test_library_page_is_server_rendered_and_accessible(library_store: Store) -> None:
    async with serve_library(library_store) as base, httpx.AsyncClient(base_url=base) as http:
        page = await http.get("/library", params={"q": "land bank"})
        assert page.status_code == 200
        html = page.text
        assert '<label for="q">' in html and 'id="q"' in html
        assert "<h1>" in html and 'lang="en"' in html and 'name="viewport"' in html
        assert "Skip to content" in html
        assert re.search(r'<h3><a href="/library/[a-z0-9-]+">[^<]*Land Bank', html, re.I)
        assert 'href="/library?q=land+bank&amp;topic=housing"' in html
        filtered = await http.get("/library", params={"q": "land bank",
                                                      "topic": "vacant_blighted_property"})
        assert 'aria-current="true"' in filtered.text
        css = await http.get("/static/library.css")
        assert css.status_code == 200 and "text/css" in css.headers["content-type"]


async def test_user_text_is_escaped_on_the_library_page(library_store: Store) -> None:
    async with serve_library(library_store) as base, httpx.AsyncClient(base_url=base) as http:
        page = await http.get("/library", params={"q": "<script>alert(1)</script>"})
    assert page.status_code == 200
    assert "<script>alert(1)</script>" not in page.text
    assert "&lt;script&gt;" in page.text


async def test_detail_page_and_missing_resource(library_store: Store) -> None:
    async with serve_library(library_store) as base, httpx.AsyncClient(base_url=base) as http:
        hit = (await http.get("/api/resources", params={"q": "fund balance"})).json()
        ident = hit["results"][0]["id"]
        page = await http.get(f"/library/{ident}")
        assert page.status_code == 200
        assert hit["results"][0]["url"] in page.text
        assert "<h1>" in page.text
        assert (await http.get("/library/no-such-resource")).status_code == 404


async def test_package_page_shows_only_its_own_case(seeded_store: Store) -> None:
    ours = await draft_case(seeded_store, ref="311-1001", city="Dayton", question=CDBG,
                            topics=["vacant_blighted_property"],
                            entities=[Entity("PROGRAM", "CDBG", 11, 15, "CDBG")])
    theirs = await draft_case(seeded_store, ref="311-1002", city="Akron",
                              question="How can we improve our bond rating?",
                              topics=["budget_finance"])
    async with serve_library(seeded_store) as base, httpx.AsyncClient(base_url=base) as http:
        page = await http.get(f"/p/{ours.token}")
        assert page.status_code == 200
        assert "311-1001" in page.text and "Dayton, OH" in page.text
        assert "311-1002" not in page.text and "Akron" not in page.text
        for resource in ours.resources:
            assert str(resource["url"]) in page.text
        assert "coaching call" in page.text
        assert page.headers["cache-control"] == "private, no-store"
        assert "noindex" in page.headers["x-robots-tag"]
        other = await http.get(f"/p/{theirs.token}")
        assert "311-1002" in other.text and "311-1001" not in other.text
        for guess in (ours.token[:-1] + ("A" if ours.token[-1] != "A" else "B"),
                      "0" * 32, "short", "a" * 200, ours.token.upper() + "x"):
            response = await http.get(f"/p/{guess}")
            assert response.status_code == 404, guess
            assert "311-1001" not in response.text and "311-1002" not in response.text
