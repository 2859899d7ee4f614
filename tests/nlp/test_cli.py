"""``city311 classify`` and ``city311 nlp evaluate|retrain`` through typer, and the corrections
reviewers stored in the database."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from city311.cmd_nlp import corrections_from_store, register
from desk.models import Correction
from desk.ports import TOPICS
from desk.store import Store


@pytest.fixture(scope="module")
def app() -> typer.Typer:
    app = typer.Typer(add_completion=False)

    @app.command("version")
    def version() -> None:  # a second command, so typer keeps the group structure
        typer.echo("0")

    register(app)
    return app


def test_classify_json_lines(app: typer.Typer, model_dir: Path) -> None:
    lines = [json.dumps({"id": i, "text": f"How do we fund pothole repairs on street {i}?"})
             for i in range(1500)]
    lines.append(json.dumps({"id": "x", "text": "Can HOME funds pay for rehab in Eugene OR?"}))
    result = CliRunner().invoke(app, ["classify", "--model-dir", str(model_dir)],
                                input="\n".join(lines) + "\n")
    assert result.exit_code == 0, result.output
    out = [json.loads(line) for line in result.stdout.splitlines()]
    assert [o["id"] for o in out] == [*range(1500), "x"]
    first = out[0]
    assert set(first) >= {"id", "topics", "scores", "entities"}
    assert 1 <= len(first["topics"]) <= 3 and set(first["scores"]) == set(TOPICS)
    assert first["topics"][0] == "infrastructure"
    assert {(e["label"], e["value"]) for e in out[-1]["entities"]} >= {
        ("PROGRAM", "HOME"), ("CITY", "Eugene, OR")}


def test_classify_malformed_lines(app: typer.Typer, model_dir: Path) -> None:
    good = json.dumps({"id": "a", "text": "Vacant lots: should we start a land bank?"})
    stdin = "\n".join([good, "{not json", json.dumps(["a list"]), json.dumps({"id": "b"}),
                       json.dumps({"id": "c", "text": "Need a zoning code rewrite."}),
                       '{"id": "d", "text": "budget \\ud800 gap"}']) + "\n"
    result = CliRunner().invoke(app, ["classify", "--model-dir", str(model_dir)], input=stdin)
    assert result.exit_code == 1
    assert [json.loads(line)["id"] for line in result.stdout.splitlines()] == ["a", "c"]
    errors = result.stderr.strip().splitlines()
    assert len(errors) == 4
    assert errors[0].startswith("error: line 2: not valid JSON")
    assert "line 3" in errors[1] and "line 4" in errors[2] and '"text"' in errors[2]
    assert errors[3] == ('error: line 6: "text" is not valid Unicode (a lone surrogate at '
                         'character 7)')
    assert "Traceback" not in result.stderr


def test_evaluate_prints_the_metrics(app: typer.Typer, model_dir: Path) -> None:
    result = CliRunner().invoke(app, ["nlp", "evaluate", "--model-dir", str(model_dir)])
    assert result.exit_code == 0, result.output
    for word in ("precision", "recall", "F1", "micro", "macro", "top-1 accuracy", *TOPICS):
        assert word in result.stdout
    as_json = CliRunner().invoke(app, ["nlp", "evaluate", "--json", "--model-dir",
                                       str(model_dir)])
    metrics = json.loads(as_json.stdout)
    assert set(metrics["per_topic"]) == set(TOPICS)
    assert 0.0 < metrics["micro"]["f1"] <= 1.0 and 0.0 < metrics["top1_accuracy"] <= 1.0


def test_retrain_with_corrections_reports_before_and_after(
    app: typer.Typer, small_model_dir: Path, tmp_path: Path
) -> None:
    fixes = tmp_path / "fixes.jsonl"
    fixes.write_text("\n".join(json.dumps({"text": t, "topics": ["community_services"]}) for t in (
        "Splash pad or pool for the east side?", "Library hours on Sundays: worth it?")) + "\n")
    result = CliRunner().invoke(app, ["nlp", "retrain", "--corrections", str(fixes),
                                      "--no-database", "--dry-run", "--json",
                                      "--model-dir", str(small_model_dir)])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["corrections"] == 2 and report["saved"] is False
    assert set(report["before"]) == set(report["after"]) == {"top1_accuracy", "micro_f1",
                                                             "macro_f1"}


def test_retrain_bad_corrections_file(app: typer.Typer, model_dir: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"text": "x", "topics": ["not_a_topic"]}) + "\n")
    result = CliRunner().invoke(app, ["nlp", "retrain", "--corrections", str(bad),
                                      "--no-database", "--dry-run"])
    assert result.exit_code != 0
    assert "bad.jsonl line 1" in str(result.exception)


async def test_corrections_from_the_database(store: Store) -> None:
    now = datetime.now(UTC)
    async with store.session() as session:
        session.add(Correction(case_id=None, text="Splash pad budget?", actor="U1",
                               topics=["community_services", "budget_finance"],
                               previous=["infrastructure"], created_at=now))
        session.add(Correction(case_id=None, text="", topics=["housing"], previous=[],
                               actor="U2", created_at=now))
        await session.commit()
    corrections = await corrections_from_store(store)
    assert [(c.text, c.topics) for c in corrections] == [
        ("Splash pad budget?", ["community_services", "budget_finance"])]
