"""Import, export and validate: through the library API on both databases, and the CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from desk.errors import InputError
from desk.store import Store
from knowledge.library import library_for
from knowledge.records import LibraryData, check, dump, find_problems, read_file

REPO = Path(__file__).resolve().parents[2]

NEW = {
    "id": "test-zyzzyva-stormwater-fees", "title": "Zyzzyva Stormwater Utility Fee Primer",
    "url": "https://example.org/zyzzyva-stormwater", "publisher": "Example Institute",
    "year": 2024, "kind": "guide", "topics": ["infrastructure", "budget_finance"],
    "annotation": "How a city sets up a stormwater utility fee, from rate studies to credits.",
    "audience": "public works directors", "reviewed": "2026-11-01",
    "keywords": ["stormwater utility", "zyzzyva"],
}


async def test_export_import_round_trip(seeded_store: Store, tmp_path: Path) -> None:
    library = library_for(seeded_store)
    exported = await library.export()
    assert len(exported.resources) >= 200 and exported.referrals and exported.tools
    for fmt in ("yaml", "json", "csv"):
        path = tmp_path / f"library.{fmt}"
        path.write_text(dump(exported, fmt), encoding="utf-8")
        again = check(read_file(path))
        assert again.as_dict() == check(exported).as_dict(), fmt
    counts = await library.upsert(read_file(tmp_path / "library.yaml"))
    assert counts == {"inserted": 0, "updated": len(exported)}
    assert (await library.export()).as_dict() == exported.as_dict()


async def test_import_upserts_by_id_and_by_url(seeded_store: Store) -> None:
    library = library_for(seeded_store)
    assert (await library.search("zyzzyva")).total == 0
    counts = await library.upsert(LibraryData(resources=[dict(NEW)]))
    assert counts == {"inserted": 1, "updated": 0}
    found = await library.search("zyzzyva")  # the vocabulary was refreshed
    assert [h["id"] for h in found.hits] == [NEW["id"]]
    typo = await library.search("zyzzyvas stormwatr")
    assert typo.hits and typo.hits[0]["id"] == NEW["id"]
    # Same URL, another id: the stored entry is updated and keeps its id.
    changed = {**NEW, "id": "another-id", "annotation": "A newer annotation for the primer."}
    assert await library.upsert(LibraryData(resources=[changed])) == {"inserted": 0,
                                                                      "updated": 1}
    entry = await library.get(NEW["id"])
    assert entry is not None and entry["annotation"] == changed["annotation"]
    assert await library.get("another-id") is None
    by_topic = await library.search("zyzzyva", None)
    assert by_topic.hits[0]["topics"] == ["infrastructure", "budget_finance"]


async def test_import_refuses_a_url_owned_by_another_entry(seeded_store: Store) -> None:
    library = library_for(seeded_store)
    first = (await library.export()).resources[0]
    clash = {**NEW, "url": first["url"]}
    await library.upsert(LibraryData(resources=[dict(NEW)]))
    with pytest.raises(InputError, match="already used"):
        await library.upsert(LibraryData(resources=[clash]))


def _planted(tmp_path: Path) -> Path:
    entries = [
        dict(NEW),
        {**NEW, "id": "near-duplicate", "title": "Zyzzyva Stormwater Utility Fees Primer",
         "url": "https://example.org/other"},
        {**NEW, "id": "bad-url", "title": "Something else entirely", "url": "htp:/broken"},
        {**NEW, "id": "dup-url", "title": "A third unrelated title",
         "url": "https://example.org/zyzzyva-stormwater/"},
        {**NEW, "id": "no-topics", "title": "Fourth title with nothing in common",
         "url": "https://example.org/4", "topics": []},
    ]
    path = tmp_path / "planted.yaml"
    path.write_text(yaml.safe_dump({"resources": entries}), encoding="utf-8")
    return path


def test_validate_finds_planted_problems(tmp_path: Path) -> None:
    problems = find_problems(read_file(_planted(tmp_path)))
    text = [str(p) for p in problems]
    assert any("near-duplicate" in t or "nearly the same" in t for t in text), text
    assert any(p.ident == "bad-url" and "malformed URL" in p.message for p in problems)
    assert any(p.ident == "dup-url" and "duplicate URL" in p.message for p in problems)
    assert any(p.ident == "no-topics" and "topics missing" in p.message for p in problems)
    with pytest.raises(InputError):
        check(read_file(_planted(tmp_path)))


def test_shipped_library_passes_its_own_blocking_checks() -> None:
    from knowledge.library import shipped_data

    assert not [p for p in find_problems(shipped_data()) if p.fatal]


@pytest.mark.parametrize(("name", "content", "message"), [
    ("broken.yaml", "resources: [\n  - {id: x", "not valid YAML"),
    ("broken.json", "{", "not valid JSON"),
    ("odd.txt", "hello", "unknown format"),
    ("list.yaml", "resources: 3", "must be a list"),
    ("cells.csv", "title,url\na,b,c\n", "more cells"),
])
def test_unreadable_files_are_input_errors(tmp_path: Path, name: str, content: str,
                                           message: str) -> None:
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    with pytest.raises(InputError, match=message):
        read_file(path)


# ---- the CLI, as a person runs it ------------------------------------------------------------

class Cli:
    """Runs ``city311 library …`` through the real entry point, in this process."""

    def __init__(self, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                 monkeypatch: pytest.MonkeyPatch) -> None:
        self.capsys = capsys
        self.monkeypatch = monkeypatch
        for name in list(os.environ):
            if name.startswith(("DATABASE_", "CITY311_")):
                monkeypatch.delenv(name)
        monkeypatch.setenv("CITY311_DATA_DIR", str(tmp_path / "data"))
        monkeypatch.setenv("CITY311_LOG_LEVEL", "WARNING")

    def __call__(self, *args: str) -> tuple[int, str, str]:
        from city311.cli import main

        self.monkeypatch.setattr(sys, "argv", ["city311", "library", *args])
        code: int | str | None = 0
        try:
            main()
        except SystemExit as exc:
            code = exc.code
        out = self.capsys.readouterr()
        return int(code or 0), out.out, out.err


@pytest.fixture
def cli(tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> Cli:
    return Cli(tmp_path, capsys, monkeypatch)


def test_cli_import_search_export_validate(tmp_path: Path, cli: Cli) -> None:
    new = tmp_path / "new.csv"
    new.write_text(dump(LibraryData(resources=[dict(NEW)]), "csv"), encoding="utf-8")
    code, out, err = cli("import", str(new))
    assert code == 0, err
    assert "1 new" in out
    code, out, err = cli("search", "zyzzva stormwater", "--json", "--limit", "3")
    assert code == 0, err
    found = json.loads(out)
    assert found["corrected_query"] == "zyzzyva stormwater"
    assert found["results"][0]["id"] == NEW["id"]
    stats = json.loads(cli("stats", "--json")[1])
    assert stats["resources"] >= 201 and set(stats["topics"]) >= {"housing", "infrastructure"}
    assert sum(stats["kinds"].values()) == stats["resources"]
    code, out, _ = cli("export", "--format", "json")
    assert code == 0
    assert NEW["id"] in {e["id"] for e in json.loads(out)["resources"]}
    target = tmp_path / "out.yaml"
    assert cli("export", "--output", str(target))[0] == 0
    assert NEW["id"] in {e["id"] for e in yaml.safe_load(target.read_text())["resources"]}
    assert cli("validate")[0] == 0


def test_cli_bad_input_is_one_line_and_non_zero(tmp_path: Path, cli: Cli) -> None:
    planted = _planted(tmp_path)
    code, out, _ = cli("validate", str(planted))
    assert code == 1
    assert "malformed URL" in out and "topics missing" in out
    for args in (["import", str(planted)], ["import", str(tmp_path / "missing.yaml")],
                 ["search", "x" * 5000], ["search", "bond", "--topic", "astrology"],
                 ["export", "--format", "xml"], ["search", "bond\x00"]):
        code, _, err = cli(*args)
        assert code != 0, args
        assert "Traceback" not in err, args
        errors = [line for line in err.splitlines() if line.startswith("error:")]
        assert len(errors) == 1, (args, err)


def test_cli_entry_point_reports_bad_input_without_a_traceback(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_", "CITY311_"))}
    env.update(CITY311_DATA_DIR=str(tmp_path / "data"))
    result = subprocess.run([sys.executable, "-m", "city311", "library", "search", "x" * 5000],
                            cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "error: the search is too long (5,000 characters; at most 500)"]
