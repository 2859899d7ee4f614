"""Build the trained pipeline from the shipped data, deterministically, when it is missing or stale.

The model directory holds the saved spaCy pipeline and ``city311-model.json``: the hash of the
training data and configuration it was built from, the sizes of the splits and its dev
metrics. ``ensure_model`` rebuilds when that hash differs from the data in the repository, so a
fresh clone works with no extra step; ``python -m nlp.build`` (``make model``) does it up front.
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import json
import logging
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from spacy import about

from desk.errors import InputError
from nlp.classifier import SpacyClassifier
from nlp.data import LabelledText, Question, load_questions, split
from nlp.pipeline import LANG, PipelineConfig, load_pipeline
from nlp.train import evaluate, train_pipeline

__all__ = [
    "DEFAULT_MODEL_DIR",
    "META_FILE",
    "build_model",
    "data_hash",
    "ensure_model",
    "load_model",
    "main",
    "read_meta",
    "save_model",
]

log = logging.getLogger(__name__)

DEFAULT_MODEL_DIR = Path(__file__).resolve().parent / "model"
META_FILE = "city311-model.json"
# Bump when the code that turns data into a model changes in a way the config does not show.
FORMAT = 8


def data_hash(questions: Sequence[Question], config: PipelineConfig) -> str:
    h = hashlib.sha256()
    h.update(json.dumps({"format": FORMAT, "config": config.as_dict(),
                         "spacy": about.__version__, "lang": LANG}, sort_keys=True).encode())
    for q in sorted(questions, key=lambda q: q.id):
        h.update(json.dumps([q.id, q.text, list(q.topics)]).encode())
        h.update(b"\n")
    return h.hexdigest()


def read_meta(model_dir: Path) -> dict[str, Any] | None:
    try:
        meta = json.loads((model_dir / META_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return meta if isinstance(meta, dict) else None


def save_model(classifier: SpacyClassifier, model_dir: Path, meta: dict[str, Any]) -> None:
    """Write to a sibling temporary directory, then swap it in, so a reader never sees half a
    model."""
    model_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{model_dir.name}-", dir=model_dir.parent))
    try:
        classifier.nlp.to_disk(tmp)
        (tmp / META_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n",
                                     encoding="utf-8")
        if model_dir.exists():
            old = model_dir.with_name(f".{model_dir.name}-old-{os.getpid()}")
            os.replace(model_dir, old)
            shutil.rmtree(old, ignore_errors=True)
        os.replace(tmp, model_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def build_model(
    model_dir: Path,
    questions: Sequence[Question] | None = None,
    *,
    extra: Sequence[LabelledText] = (),
    config: PipelineConfig | None = None,
) -> SpacyClassifier:
    """Train on the shipped data (plus ``extra``), save to ``model_dir`` and return it."""
    config = config or PipelineConfig()
    questions = list(questions) if questions is not None else load_questions()
    started = time.perf_counter()
    classifier = train_pipeline(questions, extra, config=config)
    metrics = evaluate(classifier, questions)
    train, dev = split(questions)
    meta = {
        "format": FORMAT,
        "hash": data_hash(questions, config),
        "config": config.as_dict(),
        "n_train": len(train),
        "n_dev": len(dev),
        "n_extra": len(extra),
        "dev_metrics": metrics.as_dict(),
        "seconds": round(time.perf_counter() - started, 2),
    }
    save_model(classifier, model_dir, meta)
    classifier.meta = meta
    log.info("built the topic model in %.1fs: dev top-1 %.3f, micro-F1 %.3f",
             meta["seconds"], metrics.top1_accuracy, metrics.micro.f1)
    return classifier


def load_model(model_dir: Path) -> SpacyClassifier:
    """The model saved in ``model_dir``. One made by an older version of this code is refused:
    it would load, and quietly be wrong (a model before the lead heads orders topics by score
    alone). The default directory never holds one: ``ensure_model`` rebuilds it first."""
    meta = read_meta(model_dir) or {}
    if meta.get("format") != FORMAT:
        raise InputError(
            f"the topic model in {model_dir} was built by another version (model format "
            f"{meta.get('format', 'before 5')}; this version reads {FORMAT}): build it again "
            f"with `python -m nlp.build --model-dir {model_dir}`, then `city311 nlp retrain "
            f"--model-dir {model_dir}` to add the reviewers' corrections")
    known = PipelineConfig.__dataclass_fields__
    raw = {k: v for k, v in (meta.get("config") or {}).items() if k in known}
    return SpacyClassifier(load_pipeline(model_dir), PipelineConfig(**raw), meta)


def _writable(directory: Path) -> bool:
    probe = directory if directory.exists() else directory.parent
    return os.access(probe, os.W_OK)


def ensure_model(model_dir: Path | None = None) -> Path:
    """The directory of an up-to-date model, building it first when needed.

    With no ``model_dir`` the default one inside the package is rebuilt whenever the shipped data
    or configuration changed (a model retrained with corrections on the same data is kept).
    An explicit directory is only built when it holds no model yet.
    """
    if model_dir is not None:
        return _built(model_dir, None)
    target = DEFAULT_MODEL_DIR
    if not _writable(target):
        target = Path(tempfile.gettempdir()) / "city311-nlp-model"
    questions = load_questions()
    return _built(target, data_hash(questions, PipelineConfig()), questions)


def _built(target: Path, wanted: str | None,
           questions: Sequence[Question] | None = None) -> Path:
    """``target`` once it holds a model (built from ``wanted`` data, when given)."""
    if _current(target, wanted):
        return target
    # Two workers starting on a fresh checkout: one builds, the other waits and finds it built.
    target.parent.mkdir(parents=True, exist_ok=True)
    with (target.parent / f".{target.name}.lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not _current(target, wanted):
            log.info("building the topic model in %s", target)
            build_model(target, questions)
    return target


def _current(model_dir: Path, wanted: str | None) -> bool:
    meta = read_meta(model_dir)
    return meta is not None and (wanted is None or meta.get("hash") == wanted)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m nlp.build",
                                     description="Build the topic model from the shipped data.")
    parser.add_argument("--model-dir", type=Path, default=DEFAULT_MODEL_DIR)
    parser.add_argument("--force", action="store_true", help="rebuild even when up to date")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.force or args.model_dir != DEFAULT_MODEL_DIR:
        build_model(args.model_dir)
    else:
        ensure_model()
    meta = read_meta(args.model_dir) or {}
    dev = meta.get("dev_metrics", {})
    sys.stdout.write(json.dumps({
        "model_dir": str(args.model_dir), "n_train": meta.get("n_train"),
        "n_dev": meta.get("n_dev"), "top1_accuracy": dev.get("top1_accuracy"),
        "micro_f1": (dev.get("micro") or {}).get("f1"), "seconds": meta.get("seconds"),
    }) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
