"""One trained pipeline per test session: the package's default model, built from the shipped
data when missing or stale (the same path a fresh clone takes)."""

from __future__ import annotations

from pathlib import Path

import pytest
import spacy

from nlp.build import build_model, ensure_model, load_model
from nlp.classifier import SpacyClassifier
from nlp.data import load_questions
from nlp.pipeline import PipelineConfig, make_pipeline


@pytest.fixture(scope="session")
def model_dir() -> Path:
    return ensure_model()


@pytest.fixture(scope="session")
def classifier(model_dir: Path) -> SpacyClassifier:
    return load_model(model_dir)


@pytest.fixture(scope="session")
def small_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A quickly trained model, for commands that retrain with the model's own settings."""
    path = tmp_path_factory.mktemp("nlp") / "small-model"
    build_model(path, load_questions()[::3])
    return path


@pytest.fixture(scope="session")
def untrained() -> spacy.language.Language:
    """Entities and urgency only: no training needed."""
    return make_pipeline(PipelineConfig(), with_topics=False)
