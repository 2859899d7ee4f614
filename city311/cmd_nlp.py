"""``city311 classify`` and ``city311 nlp evaluate|retrain``.

``classify`` reads JSON lines ``{"id": ..., "text": ...}`` on stdin and writes one JSON line per
good input line: ``{"id", "topics", "scores", "entities", "urgency", "urgency_reasons",
"needs_triage"}``. A bad line gets one error line on stderr naming its line number; the others are
still classified, and the exit code is 1 if any line failed. Lines are classified in batches, so
thousands of lines in one call are fine.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

import typer

from desk.errors import InputError, check_unicode

if TYPE_CHECKING:
    from desk.store import Store
    from nlp.classifier import SpacyClassifier
    from nlp.data import LabelledText
    from nlp.train import Metrics

__all__ = ["Correction", "classify_stream", "corrections_from_store", "database_corrections",
           "read_corrections", "register"]

_CHUNK = 2000

MODEL_DIR_OPTION = typer.Option(None, "--model-dir", help="a trained model directory "
                                "(default: the package's own, built when missing)")


@dataclass(frozen=True)
class Correction:
    """A question with the topics a reviewer chose, best first."""

    text: str
    topics: list[str]


def _load(model_dir: Path | None) -> SpacyClassifier:
    from nlp.build import ensure_model, load_model

    if model_dir is not None and not model_dir.is_dir():
        raise InputError(f"no model directory at {model_dir}")
    return load_model(ensure_model(model_dir))


def _parse_line(line: str, number: int) -> tuple[Any, str]:
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as exc:
        raise InputError(f"line {number}: not valid JSON ({exc.msg} at column {exc.colno})") \
            from exc
    if not isinstance(obj, dict):
        raise InputError(f"line {number}: expected a JSON object with \"id\" and \"text\"")
    text = obj.get("text")
    if not isinstance(text, str):
        raise InputError(f"line {number}: \"text\" must be a string")
    return obj.get("id"), check_unicode(text, f"line {number}: \"text\"")


def classify_stream(classifier: SpacyClassifier, lines: Iterable[str], out: TextIO,
                    err: TextIO) -> int:
    """Classify JSON lines from ``lines`` onto ``out``; return the number of bad lines."""
    failed = 0
    numbered: Iterator[tuple[int, str]] = enumerate(lines, start=1)
    while True:
        chunk = list(itertools.islice(numbered, _CHUNK))
        if not chunk:
            return failed
        good: list[tuple[Any, str]] = []
        for number, line in chunk:
            if not line.strip():
                continue
            try:
                good.append(_parse_line(line, number))
            except InputError as exc:
                failed += 1
                err.write(f"error: {exc}\n")
        results = classifier.classify_many([text for _, text in good])
        for (qid, _text), result in zip(good, results, strict=True):
            out.write(json.dumps({
                "id": qid,
                "topics": [t.topic for t in result.topics],
                "scores": result.scores,
                "entities": [e.as_dict() for e in result.entities],
                "urgency": result.urgency,
                "urgency_reasons": result.urgency_reasons,
                "needs_triage": result.needs_triage,
            }) + "\n")
        out.flush()


def read_corrections(path: Path) -> list[Correction]:
    """JSON lines ``{"text": ..., "topics": [...]}``; any bad line is an error naming it."""
    from nlp.data import parse_question

    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror}") from exc
    out: list[Correction] = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        where = f"{path.name} line {number}"
        try:
            q = parse_question(json.loads(line), where)
        except json.JSONDecodeError as exc:
            raise InputError(f"{where}: not valid JSON ({exc.msg})") from exc
        out.append(Correction(q.text, list(q.topics)))
    return out


async def corrections_from_store(store: Store) -> list[Correction]:
    """The topic changes reviewers made in Slack, as training examples."""
    rows = await store.list_corrections()
    return [Correction(str(r.text), [str(t) for t in r.topics]) for r in rows
            if r.text and r.topics]


async def database_corrections() -> list[Correction]:
    """:func:`corrections_from_store` on the database the settings name."""
    from city311.wiring import build_store
    from desk.migrate import upgrade_async
    from desk.settings import load_settings

    settings = load_settings()
    await upgrade_async(settings.database_url)
    store = build_store(settings)
    try:
        return await corrections_from_store(store)
    finally:
        await store.close()


def _metrics_table(m: Metrics) -> str:
    lines = [f"{'topic':<26}{'precision':>10}{'recall':>8}{'F1':>7}{'support':>9}"]
    for topic, t in m.per_topic.items():
        lines.append(f"{topic:<26}{t.precision:>10.3f}{t.recall:>8.3f}{t.f1:>7.3f}"
                     f"{t.support:>9}")
    for name, t in (("micro", m.micro), ("macro", m.macro)):
        lines.append(f"{name:<26}{t.precision:>10.3f}{t.recall:>8.3f}{t.f1:>7.3f}"
                     f"{t.support:>9}")
    lines.append(f"top-1 accuracy {m.top1_accuracy:.3f} (best topic among the labelled ones "
                 f"{m.top1_in_gold:.3f}) on {m.n} dev questions")
    return "\n".join(lines)


def _summary(m: Metrics) -> dict[str, float]:
    return {"top1_accuracy": m.top1_accuracy, "micro_f1": m.micro.f1, "macro_f1": m.macro.f1}


def register(app: typer.Typer) -> None:
    """Add ``classify`` and the ``nlp`` group to the ``city311`` command."""
    nlp_app = typer.Typer(no_args_is_help=True, help="The topic classifier: evaluate, retrain.")

    @app.command("classify")
    def classify(model_dir: Path | None = MODEL_DIR_OPTION) -> None:
        """Classify JSON lines {"id", "text"} from stdin; JSON lines out."""
        classifier = _load(model_dir)
        failed = classify_stream(classifier, sys.stdin, sys.stdout, sys.stderr)
        if failed:
            raise typer.Exit(1)

    @nlp_app.command("evaluate")
    def evaluate(
        model_dir: Path | None = MODEL_DIR_OPTION,
        as_json: bool = typer.Option(False, "--json", help="print the metrics as JSON"),
    ) -> None:
        """Per-topic precision, recall and F1, micro and macro, top-1 accuracy on the dev split."""
        from nlp.data import load_questions
        from nlp.train import evaluate as run_evaluation

        metrics = run_evaluation(_load(model_dir), load_questions())
        if as_json:
            typer.echo(json.dumps(metrics.as_dict(), indent=2))
        else:
            typer.echo(_metrics_table(metrics))

    @nlp_app.command("retrain")
    def retrain(
        corrections: list[Path] = typer.Option(
            [], "--corrections", help="JSON lines {\"text\", \"topics\"} (repeatable)"),
        database: bool = typer.Option(True, "--database/--no-database",
                                      help="include the corrections stored by reviewers"),
        model_dir: Path | None = MODEL_DIR_OPTION,
        save: bool = typer.Option(True, "--save/--dry-run",
                                  help="replace the model with the retrained one"),
        as_json: bool = typer.Option(False, "--json"),
    ) -> None:
        """Retrain with the reviewers' corrections; print dev scores before and after."""
        from nlp.build import DEFAULT_MODEL_DIR, save_model
        from nlp.data import load_questions
        from nlp.train import retrain as run_retrain

        extra: list[LabelledText] = []
        for path in corrections:
            extra.extend(read_corrections(path))
        if database:
            extra.extend(asyncio.run(database_corrections()))
        current = _load(model_dir)
        questions = load_questions()
        new, before, after = run_retrain(questions, extra, current)
        if save:
            meta = dict(current.meta)
            meta.update(n_extra=len(extra), dev_metrics=after.as_dict())
            save_model(new, model_dir or DEFAULT_MODEL_DIR, meta)
        if as_json:
            typer.echo(json.dumps({"corrections": len(extra), "saved": save,
                                   "before": _summary(before), "after": _summary(after)}))
            return
        typer.echo(f"retrained with {len(extra)} corrections"
                   + ("" if save else " (dry run: model not replaced)"))
        for name, b, a in (("top-1 accuracy", before.top1_accuracy, after.top1_accuracy),
                           ("micro F1", before.micro.f1, after.micro.f1),
                           ("macro F1", before.macro.f1, after.macro.f1)):
            typer.echo(f"{name:<16}{b:.3f} -> {a:.3f} ({a - b:+.3f})")

    app.add_typer(nlp_app, name="nlp")

