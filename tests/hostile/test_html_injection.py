"""An HTML email full of scripts, event handlers, javascript: links, frames, remote images and
CSS url(), plus Slack control sequences: after intake and drafting nothing of it runs or loads
on our pages, in our email reply, or in the review card (whose text is escaped)."""

from __future__ import annotations

import re
import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from city311.web import build_app
from city311.wiring import Service, build_service
from desk.directory import import_cities, shipped_cities
from desk.models import Case
from desk.ports import Classifier
from desk.settings import DatabaseSettings, MailSettings, Settings, SlackSettings, WebSettings
from knowledge.library import ensure_seeded
from mail.parse import parse_message, to_inbound
from tests.hostile.conftest import REVIEWERS
from tests.hostile.support import active_content
from tests.servers.slack_api import SlackApi
from tests.servers.smtp import SmtpServer
from tests.support import FakeClock, serve, unavailable

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]
SENDER = "dana@fallriverma.org"

HOSTILE_HTML = """<html><head><script>alert('head')</script>
<style>body { background: url(http://evil.test/bg.png) }</style>
<meta http-equiv="refresh" content="0;url=http://evil.test/">
<base href="http://evil.test/"></head>
<body onload="alert('body')">
<p>How do we improve our bond rating after a downgrade? <script>alert(1)</script></p>
<img src="http://evil.test/pixel.png" onerror="alert(2)">
<p><a href="javascript:alert(3)">click me</a> and <a href="http://evil.test/phish">our page</a></p>
<iframe src="http://evil.test/frame"></iframe>
<div style="background-image: url('http://evil.test/css.png')">styled</div>
<svg onload="alert(4)"><circle r="1"></circle></svg>
<p>&lt;script&gt;alert(5)&lt;/script&gt; &lt;img src=x onerror=alert(6)&gt;</p>
<p>&lt;!channel&gt; &lt;!here&gt; &lt;http://evil.test/|click here&gt; &lt;@U0HACKER&gt;
&amp; more</p>
<form action="http://evil.test/steal"><input name="x"></form>
</body></html>"""
HOSTILE_SUBJECT = "Bond rating <!channel> <script>alert(7)</script>"
HOSTILE_NAME = "<!everyone> <img src=x onerror=alert(8)> Dana"
# What must never reach Slack unescaped: broadcasts, a forged link, a forged mention.
SLACK_FORBIDDEN = ["<!channel>", "<!here>", "<!everyone>", "<http://evil.test", "<@U0HACKER>",
                   "<javascript:"]
QUERIES = ["<script>alert(1)</script>", '"><img src=x onerror=alert(1)>',
           "javascript:alert(1)", "</title><script>alert(1)</script>",
           "' onmouseover='alert(1)", "<iframe src=http://evil.test/>", "{{7*7}} ${7*7}",
           "<style>@import url(http://evil.test/x.css)</style>"]


def hostile_email() -> bytes:
    message = EmailMessage()
    message["From"] = f'"{HOSTILE_NAME}" <{SENDER}>'
    message["To"] = "desk@311.test"
    message["Subject"] = HOSTILE_SUBJECT
    message["Message-ID"] = "<hostile-html@fallriverma.org>"
    message["Date"] = "Tue, 24 Nov 2026 10:00:00 -0500"
    message.set_content(HOSTILE_HTML, subtype="html")
    return message.as_bytes()


@dataclass
class Scene:
    service: Service
    slack: SlackApi
    smtp: SmtpServer
    case: Case


@pytest.fixture
async def scene(tmp_path: Path, smtp: SmtpServer, slack_api: SlackApi,
                classifier: Classifier) -> AsyncIterator[Scene]:
    settings = Settings(
        data_dir=tmp_path, database=DatabaseSettings(url=f"sqlite:///{tmp_path / 'h.db'}"),
        mail=MailSettings(**smtp.mail_settings()),
        slack=SlackSettings(bot_token="xoxb-html-test", signing_secret="s" * 32,
                            review_channel="CREVIEW", api_url=slack_api.base_url,
                            reviewers=REVIEWERS),
        web=WebSettings(base_url="http://311.test"))
    clock = FakeClock()
    service = await build_service(settings, clock=clock, classifier=classifier)
    try:
        await import_cities(service.store, shipped_cities(), clock.now())
        await ensure_seeded(service.store)
        raw = hostile_email()
        received = await service.on_inbound(
            to_inbound(parse_message(raw), raw, datetime(2026, 11, 24, 15, tzinfo=UTC)))
        await _settle(service)
        async with service.store.session() as session:
            case = await session.get(Case, received.case_id)
        assert case is not None and case.status in ("drafted", "needs_triage")
        yield Scene(service, slack_api, smtp, case)
    finally:
        await service.close()


async def _settle(service: Service) -> None:
    for _ in range(10):
        result = await service.dispatcher.run_once()
        await service.parts["slack"].drain()
        if not result.sent and not result.failed:
            return


def _slack_texts(api: SlackApi) -> list[str]:
    """Every piece of text the app sent to Slack: message text and every block text."""
    out: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key in ("text", "alt_text", "title") and isinstance(value, str):
                    out.append(value)
                else:
                    walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    for call in api.calls:
        if call.method.startswith(("chat.", "views.")):
            walk(call.args)
    return out


async def test_review_card_and_reply_email_are_inert(scene: Scene) -> None:
    texts = _slack_texts(scene.slack)
    card = "\n".join(texts)
    assert "bond rating" in card.lower()  # the question is on the card ...
    assert "&lt;!channel&gt;" in card  # ... shown, escaped
    for forbidden in SLACK_FORBIDDEN:
        assert forbidden not in card, forbidden
    # Every control sequence left in what we sent is one of ours: a mention of a real user
    # id, a channel, or a link to the package page or a library resource.
    for sequence in re.findall(r"<([^<>]*)>", card):
        assert not sequence.startswith(("!", "javascript")), sequence
        assert "evil.test" not in sequence, sequence
    # The city's text is in the email reply only as escaped text, never as markup.
    await scene.service.desk.approve(scene.case.ref, REVIEWERS[0])
    await _settle(scene.service)
    replies = [r.message for r in scene.smtp.received
               if SENDER in r.rcpt_tos and r.message["Subject"].startswith("Re:")]
    assert replies, "the approved reply was not sent"
    html_part = replies[-1].get_body(preferencelist=("html",))
    assert html_part is not None
    html = html_part.get_content()
    assert active_content(html) == []
    assert "<script" not in html.lower() and "<img" not in html.lower()
    assert "How do we improve our bond rating" in html  # the excerpt is there, as text


async def test_package_and_library_pages_are_inert_over_http(scene: Scene) -> None:
    async with serve(build_app(scene.service)) as base, \
            httpx.AsyncClient(base_url=base, timeout=30) as http:
        pages = [f"/p/{scene.case.package_token}", "/library"]
        pages += [f"/library?q={quote(q)}" for q in QUERIES]
        pages += [f"/library/{quote(q, safe='')}" for q in QUERIES[:3]]
        for path in pages:
            response = await http.get(path)
            assert response.status_code in (200, 400, 404), path
            assert "<script" not in response.text.lower(), path
            if response.headers["content-type"].startswith("text/html"):
                assert active_content(response.text, base) == [], path
            else:  # a path with a slash in it matches no page: the framework's plain 404
                assert response.status_code == 404, path
        package = await http.get(f"/p/{scene.case.package_token}")
        assert scene.case.ref in package.text
        for query in QUERIES:
            api = await http.get("/api/resources", params={"q": query})
            assert api.status_code in (200, 400)
            assert api.headers["content-type"].startswith("application/json")


@pytest.mark.browser
async def test_pages_run_nothing_and_load_nothing_foreign_in_chromium(scene: Scene) -> None:
    if not Path(CHROMIUM).exists() or shutil.which("chromium") is None:
        unavailable("Debian's chromium is not installed")
    try:
        from playwright.async_api import async_playwright
    except ImportError:
        unavailable("playwright is not installed")
    requests: list[str] = []
    dialogs: list[str] = []
    async with serve(build_app(scene.service)) as base, async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        try:
            page = await browser.new_page()
            page.on("request", lambda request: requests.append(request.url))

            async def dismiss(dialog: Any) -> None:
                dialogs.append(dialog.message)
                await dialog.dismiss()

            page.on("dialog", dismiss)
            await page.goto(f"{base}/p/{scene.case.package_token}", wait_until="networkidle")
            assert scene.case.ref in await page.locator("h1").inner_text()
            for query in QUERIES:
                await page.goto(f"{base}/library?q={quote(query)}", wait_until="networkidle")
            # Typed into the search box and submitted, the hostile text stays inert too.
            await page.goto(f"{base}/library")
            await page.get_by_label("Search the library").fill(QUERIES[1])
            await page.keyboard.press("Enter")
            await page.wait_for_load_state("networkidle")
            assert "onerror" in await page.get_by_label("Search the library").input_value()
        finally:
            await browser.close()
    assert dialogs == []
    foreign = [url for url in requests if not url.startswith(base + "/")]
    assert foreign == []
    assert any("/p/" in url for url in requests)
