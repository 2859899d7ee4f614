"""Understanding a question: topics (1-3, best first, scored), entities and urgency.

A spaCy pipeline on ``spacy.blank("en")``: a topic classifier over the ten topic ids (TF-IDF over
stems and pairs of stems, a logistic regression for each topic and for whether it comes first),
trained deterministically from the questions in ``nlp/data/`` and blended with hand-written topic
cues; an entity component (US places from a shipped gazetteer, money, dates, federal programs,
agencies, organisations); and an urgency component. ``load_classifier()`` returns a
:class:`desk.ports.Classifier`.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from desk.ports import Classifier

__all__ = ["load_classifier"]


def load_classifier(model_dir: Path | None = None, *, warm: bool = False) -> Classifier:
    """Load the trained pipeline from ``model_dir`` (default: the package's own model, built
    from the shipped data first when missing or stale). Never touches the network. With
    ``warm``, it then reads the shipped questions once (about 0.4 s), as a long-running service
    wants: see :meth:`nlp.classifier.SpacyClassifier.warm`."""
    # Imported here so that ``import nlp`` stays cheap and ``python -m nlp.build`` runs clean.
    from nlp.build import ensure_model, load_model
    from nlp.data import load_questions

    classifier = load_model(ensure_model(model_dir))
    if warm:
        classifier.warm([q.text for q in load_questions()])
    return classifier
