"""Shared pieces of the hostile-input tests: the seed corpus, a desk on SQLite, and the
check that nothing secret or personal reached a log."""

from __future__ import annotations

import re
from collections.abc import Iterable
from html.parser import HTMLParser
from pathlib import Path

from desk.directory import import_cities, shipped_cities
from desk.migrate import upgrade_async
from desk.pipeline import Desk
from desk.settings import SLASettings
from desk.sla import BusinessCalendar
from desk.store import Store
from tests.support import FakeClock, shared_fixtures

__all__ = [
    "MAIL_DATA", "active_content", "corpus", "email_bytes", "leaks", "seeded_desk",
]

MAIL_DATA = Path(__file__).resolve().parents[1] / "mail" / "data" / "eml"


def corpus() -> list[bytes]:
    """Real messages to mutate: the mail suite's own and the shared real-world ones."""
    paths = sorted(MAIL_DATA.glob("*.eml")) + sorted((shared_fixtures() / "emails" / "raw")
                                                     .glob("*.eml"))
    return [p.read_bytes() for p in paths]


async def seeded_desk(path: Path, clock: FakeClock) -> Desk:
    """A desk on a fresh, migrated SQLite file with the shipped city directory."""
    url = f"sqlite+aiosqlite:///{path}"
    await upgrade_async(url)
    store = Store.from_url(url)
    await import_cities(store, shipped_cities(), clock.now())
    return Desk(store, clock, BusinessCalendar(SLASettings()), review_channel="CREVIEW")


def leaks(text: str, secrets: Iterable[str]) -> list[str]:
    """The secrets (tokens, passwords, full addresses) that appear in ``text``."""
    found = [s for s in secrets if s and s in text]
    # Any Slack token shape at all, not only the ones we configured.
    found += re.findall(r"\bx(?:ox[abprse]|app)-[A-Za-z0-9-]{6,}", text)
    return found


def email_bytes(n: int | str, sender: str, *, subject: str = "How do we improve our bond rating?",
                body: str = "Hello,\n\nHow do other cities improve their bond rating?\n",
                headers: str = "", content_type: str = "text/plain; charset=utf-8") -> bytes:
    """A city's message as raw RFC 822 bytes with CRLF line ends."""
    head = (f"From: City Staff <{sender}>\nTo: desk@311.test\nSubject: {subject}\n"
            f"Date: Tue, 24 Nov 2026 10:00:00 -0500\nMessage-ID: <m{n}@{sender.split('@')[-1]}>\n"
            f"MIME-Version: 1.0\nContent-Type: {content_type}\n{headers}")
    return (head + "\n" + body).replace("\r\n", "\n").replace("\n", "\r\n").encode()




_FORBIDDEN_TAGS = {"script", "iframe", "frame", "object", "embed", "applet", "base", "meta"}
_SOURCES = {"src", "srcset", "data", "action", "formaction", "background", "poster"}


class _ActiveContent(HTMLParser):
    """Collects everything in a page that could run code or load something from elsewhere."""

    def __init__(self, origin: str) -> None:
        super().__init__(convert_charrefs=True)
        self.origin = origin
        self.found: list[str] = []
        self._in_style = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _FORBIDDEN_TAGS and not (tag == "meta" and _harmless_meta(attrs)):
            self.found.append(f"<{tag}>")
        self._in_style = tag == "style"
        for name, value in attrs:
            value = (value or "").strip()
            lowered = re.sub(r"[\s\x00-\x1f]", "", value).lower()
            if name.startswith("on"):
                self.found.append(f"<{tag} {name}=>")
            elif name in _SOURCES and value and not self._own(value):
                self.found.append(f"<{tag} {name}={value}>")
            elif name == "href" and lowered.startswith(("javascript:", "vbscript:", "data:")):
                self.found.append(f"<{tag} href={value}>")
            elif name == "href" and tag == "link" and not self._own(value):
                self.found.append(f"<link href={value}>")
            elif name == "style" and ("url(" in lowered or "expression(" in lowered):
                self.found.append(f"<{tag} style={value}>")

    def handle_data(self, data: str) -> None:
        if self._in_style and "url(" in data.lower():
            self.found.append("<style> with url()")

    def handle_endtag(self, tag: str) -> None:
        if tag == "style":
            self._in_style = False

    def _own(self, url: str) -> bool:
        if url.startswith("/") and not url.startswith("//"):
            return True
        return bool(self.origin) and url.startswith(self.origin)


def _harmless_meta(attrs: list[tuple[str, str | None]]) -> bool:
    names = {name for name, _ in attrs}
    return names <= {"charset", "name", "content"}


def active_content(html: str, origin: str = "") -> list[str]:
    """Scripts, event handlers, javascript: links, frames and anything loaded from outside
    ``origin`` in ``html``; an empty list means the page is inert."""
    parser = _ActiveContent(origin)
    parser.feed(html)
    parser.close()
    return parser.found
