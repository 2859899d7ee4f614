"""Search and command-line input with SQL and full-text-search syntax, control characters and
megabyte strings: a result or a clear error, never a 500 and never a traceback."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from city311.web import build_app
from city311.wiring import Service, build_service
from desk.settings import DatabaseSettings, Settings, WebSettings
from knowledge.library import ensure_seeded
from tests.support import serve

CLI = [sys.executable, "-m", "city311"]
MEGABYTE = "a" * 1_000_000
# One argument may not exceed 128 KiB on Linux (MAX_ARG_STRLEN), so arguments get the
# largest string the kernel passes; files and stdin get the full megabyte.
LONG_ARG = "word " * 25_000

HOSTILE = [
    "' OR 1=1 --", "'; DROP TABLE resources; --", "\" OR \"\"=\"", "1; SELECT * FROM cases",
    '"unterminated', "NEAR(bond rating)", "bond AND OR NOT", "*", "bond*", "^bond",
    "title:bond", "{title keywords}:bond", "-bond", "(bond", "bond)", "a:b:c", "\"\"",
    "bond & | !rating", "bond <-> rating", "':*", "\\", "%", "_", "%%__%%", "NULL",
    "bond rating" * 40, "ＢＯＮＤ ｒａｔｉｎｇ", "\u202ebond", "bønd ratíng", "🏙️ bonds",
    "\x00", "\x1b[31mbond", "bond\x7f", "bond\trating\nzoning", "\x08\x08",
]


@pytest.fixture
async def web(db_url: str, tmp_path: Path) -> AsyncIterator[str]:
    settings = Settings(data_dir=tmp_path, database=DatabaseSettings(url=db_url),
                        web=WebSettings(base_url="http://311.test"))
    service: Service = await build_service(settings, migrate=False, with_classifier=False)
    try:
        await ensure_seeded(service.store)
        async with serve(build_app(service)) as base:
            yield base
    finally:
        await service.close()


async def test_library_and_api_answer_hostile_queries_without_a_500(web: str) -> None:
    async with httpx.AsyncClient(base_url=web, timeout=60) as http:
        for query in [*HOSTILE, MEGABYTE[:60_000]]:  # httpx's own URL limit is 64 KiB
            api = await http.get("/api/resources", params={"q": query})
            assert api.status_code in (200, 400), (query[:40], api.status_code)
            body = api.json()
            if api.status_code == 400:
                assert body["error"] and "Traceback" not in body["error"]
            else:
                assert isinstance(body["results"], list)
            page = await http.get("/library", params={"q": query})
            assert page.status_code in (200, 400), (query[:40], page.status_code)
            assert "Traceback" not in page.text
            if page.status_code == 400:
                assert "Search problem" in page.text
        # Filters and paging take the same treatment.
        for params in ({"topic": "' OR 1=1 --"}, {"kind": "<script>"}, {"year": "1e9"},
                       {"year": "-1"}, {"page": "-1"}, {"page": "9" * 40},
                       {"per_page": "1e9"}, {"per_page": "0"}, {"publisher": "\x00"},
                       {"publisher": "x" * 5_000}):
            api = await http.get("/api/resources", params=params)
            assert api.status_code == 400, params
            assert api.json()["error"]
            page = await http.get("/library", params=params)
            # The page has a fixed page size and ignores per_page.
            assert page.status_code == (200 if "per_page" in params else 400), params
        # A megabyte in the URL (sent by hand: clients refuse to) is a clear refusal too.
        for path in ("/api/resources", "/library"):
            status = await _raw_get(web, f"{path}?q={MEGABYTE}")
            assert status.split()[1] in ("200", "400", "413", "414", "431"), status
        assert (await http.get("/healthz")).status_code == 200  # and the server lives on


async def _raw_get(base: str, target: str) -> str:
    """The status line for a GET of ``target`` written straight onto the socket."""
    host, port = base.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(f"GET {target} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
                     .encode())
        await writer.drain()
        return (await reader.readline()).decode("latin-1").strip()
    finally:
        writer.close()


def _env(data_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("SLACK_", "MAIL_", "DATABASE_", "SLA_", "WEB_", "CITY311_"))}
    env["CITY311_DATA_DIR"] = str(data_dir)
    return env


def _run(args: list[str], data_dir: Path, stdin: str | None = None
         ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, env=_env(data_dir),
                          input=stdin, timeout=300, check=False)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """One data dir, migrated and seeded (by a first command) before the rest run side by
    side."""
    path = tmp_path_factory.mktemp("cli")
    warm = _run(["library", "stats", "--json"], path)
    assert warm.returncode == 0, warm.stderr
    yield path


def _clean(result: subprocess.CompletedProcess[str], what: str) -> None:
    assert "Traceback" not in result.stderr, (what, result.stderr[-2000:])
    if result.returncode != 0:
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert lines and lines[-1].startswith(("error:", "Error", "Usage:")), (
            what, result.stderr[-500:])


def test_cli_commands_give_results_or_one_line_errors(data_dir: Path, tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.eml"
    garbage.write_bytes(b"Subject: \x00\xff" + MEGABYTE.encode() + b"\r\n\r\n\x00" * 100)
    lines = [json.dumps({"id": i, "text": q}) for i, q in enumerate(HOSTILE)]
    lines += ["not json", "[1, 2]", json.dumps({"id": "x"}), json.dumps({"id": 1, "text": 5}),
              json.dumps({"id": "big", "text": MEGABYTE}), "{\"id\": 1, \"text\": \"\\u0000\"}",
              "{\"id\": \"half\", \"text\": \"zoning \\ud800\"}"]
    # Few commands, each carrying many hostile inputs: every one starts a Python process.
    jobs: dict[str, tuple[list[str], str | None]] = {
        "search fts": (["library", "search", "' OR 1=1; -- \"bond NEAR( rating* ^x {a}:b",
                        "--json"], None),
        "search control": (["library", "search", "bond\x1b[31m"], None),
        "ask": (["ask", "'; DROP TABLE cases; -- \x1b[2J\x07 zoning? " + LONG_ARG, "--json"],
                None),
        "classify": (["classify"], "\n".join(lines) + "\n"),
        # Not UTF-8 on the command line: Python hands it on as a lone surrogate.
        "ask not utf-8": (["ask", "zoning \udcff"], None),
        "mail garbage": (["mail", "parse", str(garbage), "--json"], None),
        "mail missing": (["mail", "parse", str(tmp_path / "nope.eml")], None),
        "show sql": (["cases", "show", "' OR 1=1 --\x1b[31m"], None),
    }
    with ThreadPoolExecutor(max_workers=3) as pool:
        futures = {name: pool.submit(_run, args, data_dir, stdin)
                   for name, (args, stdin) in jobs.items()}
        results = {name: future.result() for name, future in futures.items()}
    for name, result in results.items():
        _clean(result, name)
    found = json.loads(results["search fts"].stdout)
    assert found["query"] and isinstance(found["results"], list)
    assert results["search control"].returncode == 2
    assert "control characters" in results["search control"].stderr
    assert results["ask"].returncode == 0
    assert json.loads(results["ask"].stdout)["topics"]
    classified = [json.loads(line) for line in results["classify"].stdout.splitlines()]
    assert {row["id"] for row in classified} >= {"big", *range(len(HOSTILE))}
    assert results["classify"].returncode == 1  # the bad lines are named on stderr
    assert results["classify"].stderr.count("error:") == 5
    assert "not valid Unicode" in results["classify"].stderr
    assert results["ask not utf-8"].returncode == 2
    assert "the question is not valid Unicode" in results["ask not utf-8"].stderr
    parsed = json.loads(results["mail garbage"].stdout)
    assert len(parsed["subject"]) >= 1_000_000 and isinstance(parsed["problems"], list)
    for name in ("mail missing", "show sql"):
        assert results[name].returncode != 0, name
        assert results[name].stderr.strip().count("\n") == 0, name  # one line


def test_cases_show_with_a_huge_number_is_a_one_line_error(data_dir: Path) -> None:
    result = _run(["cases", "show", "9" * 20], data_dir)
    _clean(result, "show huge number")
    assert result.returncode != 0
