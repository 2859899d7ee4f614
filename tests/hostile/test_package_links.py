"""Package links (/p/{token}) over real HTTP: a guessed, altered or empty token gets 404, never
another city's package.

What "expired" means here: a package link is the city's to keep. It is sent in the reply, it
stays tied to its own case for the life of the case, and it keeps working when the city
writes again and the case is reopened (the page then shows the case's current package), so a
link in an old email never breaks. Rejection does not expire it either: a case answered once
and rejected after a reopening leaves the city holding a link to what it was sent. A link
resolves to nothing, and gets 404, when the token is malformed, matches no case exactly
(tokens are compared byte for byte: no case folding, no wildcards), or belongs to a case that
has no drafted package yet.
"""

from __future__ import annotations

import secrets
import string
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from city311.web import build_app
from city311.wiring import Service, build_service
from desk.directory import import_cities, shipped_cities
from desk.models import Case
from desk.settings import DatabaseSettings, MailSettings, Settings, WebSettings
from knowledge.library import ensure_seeded
from mail.parse import parse_message, to_inbound
from tests.hostile.support import email_bytes
from tests.servers.smtp import SmtpServer
from tests.support import FakeClock, serve

SENDERS = ["dana@fallriverma.org", "chief@miamigov.com", "clerk@comptoncity.org"]


@pytest.fixture
async def service(db_url: str, tmp_path: Path, smtp: SmtpServer) -> AsyncIterator[Service]:
    settings = Settings(data_dir=tmp_path, database=DatabaseSettings(url=db_url),
                        mail=MailSettings(**smtp.mail_settings()),
                        web=WebSettings(base_url="http://311.test"))
    clock = FakeClock()
    built = await build_service(settings, clock=clock, migrate=False, with_classifier=False)
    await import_cities(built.store, shipped_cities(), clock.now())
    await ensure_seeded(built.store)
    yield built
    await built.close()


async def _ask(service: Service, n: int, sender: str, body: str, **extra: str) -> int:
    raw = email_bytes(n, sender, body=body, **extra)
    inbound = to_inbound(parse_message(raw), raw, datetime(2026, 11, 24, 15, tzinfo=UTC))
    received = await service.on_inbound(inbound)
    assert received.case_id is not None
    return received.case_id


async def _case(service: Service, case_id: int) -> Case:
    async with service.store.session() as session:
        case = await session.get(Case, case_id)
        assert case is not None
        return case


def _near_misses(token: str) -> list[str]:
    """The token with one character changed, dropped or added, and with its case swapped."""
    alphabet = string.ascii_letters + string.digits + "-_"
    out = []
    for at in (0, len(token) // 2, len(token) - 1):
        other = next(ch for ch in alphabet if ch != token[at])
        out.append(token[:at] + other + token[at + 1:])
    out += [token[:-1], token + "A", token.swapcase(), token[1:] + token[0]]
    return [t for t in dict.fromkeys(out) if t != token]


async def test_guessed_altered_and_empty_tokens_get_404(service: Service) -> None:
    ids = [await _ask(service, i, sender, f"How do we fix our budget? ({i})")
           for i, sender in enumerate(SENDERS)]
    cases = [await _case(service, i) for i in ids]
    assert all(c.status in ("drafted", "needs_triage") for c in cases)
    async with serve(build_app(service)) as base, httpx.AsyncClient(base_url=base) as http:
        # Each real token shows its own case and no other.
        for case in cases:
            page = await http.get(f"/p/{case.package_token}")
            assert page.status_code == 200
            assert case.ref in page.text
            assert all(o.ref not in page.text for o in cases if o is not case)
            assert "no-store" in page.headers["cache-control"]
            assert "noindex" in page.headers["x-robots-tag"]
        guesses = [secrets.token_urlsafe(24) for _ in range(50)]
        guesses += [t for c in cases for t in _near_misses(c.package_token)]
        guesses += ["_" * 32, "-" * 16, "%" * 20, "*" * 20, "' OR '1'='1", "1 OR 1=1--",
                    "a" * 16, "A" * 129, "%00" * 8, "..%2F..%2Fetc%2Fpasswd", "%2e%2e",
                    "%20", "%09" * 20, cases[0].package_token + "%00"]
        for guess in guesses:
            page = await http.get(f"/p/{guess}")
            assert page.status_code == 404, guess
            assert not any(c.ref in page.text for c in cases), guess
        head = await http.head(f"/p/{secrets.token_urlsafe(24)}")
        assert head.status_code == 404
        assert "no-store" in head.headers["cache-control"]  # a miss is not cached either
        for empty in ("/p/", "/p", "/p//"):
            page = await http.get(empty)
            assert page.status_code == 404, empty
            assert not any(c.ref in page.text for c in cases)


async def test_a_case_without_a_package_yet_is_404(service: Service) -> None:
    raw = email_bytes(77, SENDERS[0], body="How do we attract jobs downtown?")
    inbound = to_inbound(parse_message(raw), raw, datetime(2026, 11, 24, 15, tzinfo=UTC))
    received = await service.desk.receive(inbound)  # stored and routed, not drafted
    case = await _case(service, received.case_id or 0)
    assert case.status == "received"
    async with serve(build_app(service)) as base, httpx.AsyncClient(base_url=base) as http:
        page = await http.get(f"/p/{case.package_token}")
        assert page.status_code == 404
        assert case.ref not in page.text


async def test_the_link_survives_sending_and_reopening_and_stays_with_its_case(
        service: Service, smtp: SmtpServer) -> None:
    first = await _ask(service, 1, SENDERS[0], "How do we improve our bond rating?")
    other = await _ask(service, 2, SENDERS[1], "How do we reduce violent crime?")
    case = await _case(service, first)
    await service.desk.approve(case.ref, "UREV1")
    for _ in range(3):
        await service.dispatcher.run_once()
    sent = await _case(service, first)
    assert sent.status == "sent"
    reply = next(r for r in smtp.received if r.message["Subject"].startswith("Re:")
                 and "/p/" + case.package_token in r.raw.decode("utf-8", "replace"))
    answer_id = str(reply.message["Message-ID"])
    # The city writes again in the same thread: the case reopens, the link stays.
    await _ask(service, 3, SENDERS[0], "Thanks! And what about our reserves policy?",
               headers=f"In-Reply-To: {answer_id}\nReferences: {answer_id}\n")
    reopened = await _case(service, first)
    assert reopened.cycle == 2 and reopened.package_token == case.package_token
    stranger = await _case(service, other)
    async with serve(build_app(service)) as base, httpx.AsyncClient(base_url=base) as http:
        page = await http.get(f"/p/{case.package_token}")
        assert page.status_code == 200 and case.ref in page.text
        assert stranger.ref not in page.text
        for miss in _near_misses(case.package_token):
            assert (await http.get(f"/p/{miss}")).status_code == 404
