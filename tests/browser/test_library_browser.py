"""The public library in a real browser (Debian's Chromium driven by Playwright)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from desk.ports import Entity
from desk.store import Store
from knowledge.library import ensure_seeded
from tests.knowledge.web_support import draft_case, serve_library
from tests.support import REPO, unavailable

pytestmark = pytest.mark.browser

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]
ARTIFACTS = REPO / "test-artifacts"


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    """SQLite only: the browser checks the pages, the storage suites check both backends."""
    from desk.migrate import upgrade

    url = f"sqlite+aiosqlite:///{tmp_path / 'browser.db'}"
    upgrade(url)
    return url


@pytest.fixture
async def seeded_store(store: Store) -> Store:
    await ensure_seeded(store)
    return store


async def test_search_facets_detail_and_package_page(seeded_store: Store) -> None:
    if not Path(CHROMIUM).exists() or shutil.which("chromium") is None:
        unavailable("Debian's chromium is not installed")
    try:
        from playwright.async_api import async_playwright
    except ImportError:
        unavailable("playwright is not installed")
    case = await draft_case(seeded_store, ref="311-2001", city="Dayton",
                            question="Can we use CDBG money to demolish blighted houses?",
                            topics=["vacant_blighted_property", "housing"],
                            entities=[Entity("PROGRAM", "CDBG", 15, 19, "CDBG")])
    ARTIFACTS.mkdir(exist_ok=True)
    async with serve_library(seeded_store) as base, async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        try:
            page = await browser.new_page(viewport={"width": 390, "height": 844})
            await page.goto(f"{base}/library")
            # A typo search, typed and submitted with the keyboard.
            await page.get_by_label("Search the library").fill("bond ratng")
            await page.keyboard.press("Enter")
            await page.wait_for_url("**/library?q=bond+ratng*")
            assert "bond rating" in (await page.locator(".corrected").inner_text()).lower()
            first = page.locator("ol.hits li.hit h3 a").first
            assert "rating" in (await first.inner_text()).lower()
            await page.screenshot(path=str(ARTIFACTS / "library-search.png"), full_page=True)

            # Facets narrow the results.
            await page.goto(f"{base}/library")
            heading = page.locator("#results-heading")
            everything = int((await heading.inner_text()).split()[0])
            await page.locator(".facets a", has_text="Housing").first.click()
            await page.wait_for_url("**topic=housing*")
            housing = int((await heading.inner_text()).split()[0])
            assert 0 < housing < everything
            metas = await page.locator("ol.hits .meta").all_inner_texts()
            assert metas and all("Housing" in m for m in metas)
            await page.locator(".facets a", has_text="Guide").first.click()
            await page.wait_for_url("**kind=guide*")
            guides = int((await heading.inner_text()).split()[0])
            assert 0 < guides <= housing

            # A detail page opens.
            title = await page.locator("ol.hits li.hit h3 a").first.inner_text()
            await page.locator("ol.hits li.hit h3 a").first.click()
            await page.wait_for_url("**/library/*")
            assert (await page.locator("h1").inner_text()).strip() == title.strip()

            # The package page of a drafted case renders.
            await page.goto(f"{base}/p/{case.token}")
            assert "311-2001" in await page.locator("h1").inner_text()
            links = await page.locator("#resources-heading + ol a").all_inner_texts()
            assert [str(r["title"]) for r in case.resources] == links
            assert "coaching call" in await page.locator(".next").inner_text()
            await page.screenshot(path=str(ARTIFACTS / "package-page.png"), full_page=True)
        finally:
            await browser.close()
    assert (ARTIFACTS / "package-page.png").stat().st_size > 1000
