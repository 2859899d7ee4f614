"""Throughput and accuracy of the question classifier, beside the spaCy tokenizer and a peer.

Prints one JSON object: questions/second for our pipeline (topics + entities + urgency, and
topics alone, which is what the peer does) against the spaCy tokenizer alone on the same texts (a
Doc per text, as spaCy's own ``pipe`` makes them) and against a scikit-learn TF-IDF + logistic
regression (one-vs-rest) trained on the same train split; dev micro-F1 and top-1 accuracy for
both models (and on each set of held-out realistic questions the repository has); ratios; and the
CPU count. Timings are the best of a few runs, one process, over the dev questions repeated (every
text seen before: warm caches); beside them, one pass over every shipped question by a pipeline
that has seen none of them (``first_sight``: each new word is a new lexeme to stem, and each new
chunk is cached by the tokenizer), against the peer on the same texts and against spaCy's
tokenizer alone, which bounds what any spaCy pipeline can do with texts it has not seen.

Every run trains the peer and times its training, then keeps it in bench/.cache; ``--quick``
reuses that peer when the train split and scikit-learn are the same (``peer_from_cache``), as
its training is most of a quick run and would measure nothing new.

    python bench/bench_classify.py [--quick]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import pickle
import sys
import tempfile
import time
from collections import deque
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from spacy.attrs import NORM  # noqa: E402

from desk.ports import TOPICS  # noqa: E402
from nlp.build import ensure_model, load_model  # noqa: E402
from nlp.classifier import SpacyClassifier, select_topics  # noqa: E402
from nlp.data import DATA_DIR, Question, load_questions, read_jsonl, split  # noqa: E402
from nlp.pipeline import TOKENIZER_CACHE  # noqa: E402
from nlp.train import Metrics, compute_metrics  # noqa: E402

GOAL_QPS = 5000
HELDOUT = "heldout_realistic*.jsonl"  # never trained on; each reported under its own name
CACHE = Path(__file__).resolve().parent / ".cache"
PEER_TFIDF: dict[str, Any] = {"ngram_range": (1, 2), "sublinear_tf": True}
PEER_LOGREG: dict[str, Any] = {"C": 10.0, "max_iter": 2000}


def best_rates(runs: dict[str, Callable[[], object]], n: int, repeats: int) -> dict[str, float]:
    """Items per second, best of ``repeats``; the contenders take turns, so a busy spell on the
    machine hurts them alike."""
    best = dict.fromkeys(runs, float("inf"))
    for _ in range(repeats):
        for name, run in runs.items():
            started = time.perf_counter()
            run()
            best[name] = min(best[name], time.perf_counter() - started)
    return {name: n / seconds for name, seconds in best.items()}


def measure_first_sight(model_dir: Path, texts: Sequence[str],
                        peer_scores: Callable[[Sequence[str]], object]) -> dict[str, Any]:
    """Questions/second of one pass over ``texts`` by freshly loaded pipelines (one for topics
    alone, one for the whole classification, and the tokenizer alone: the least any spaCy
    pipeline does with a text, a Doc per text as spaCy's ``pipe`` makes them), and of the peer
    (best of three: it keeps nothing between calls)."""
    out: dict[str, Any] = {"n_texts": len(texts)}

    def tokenizer_only(clf: SpacyClassifier) -> None:
        tokenizer = clf.nlp.tokenizer
        setattr(tokenizer, "max_cache_size", TOKENIZER_CACHE)  # noqa: B010 (as ours has it)
        deque(tokenizer.pipe(texts), maxlen=0)

    for name, run in (("ours_topics_only", lambda c: c.topic_lists(texts)),
                      ("ours_topics_entities_urgency", lambda c: c.classify_many(texts)),
                      ("spacy_tokenizer_only", tokenizer_only)):
        fresh = load_model(model_dir)
        started = time.perf_counter()
        run(fresh)
        out[name] = round(len(texts) / (time.perf_counter() - started))
    out["peer"] = round(best_rates({"peer": lambda: peer_scores(texts)}, len(texts), 3)["peer"])
    out["ours_topics_only_vs_peer"] = round(out["ours_topics_only"] / out["peer"], 3)
    out["ours_vs_peer"] = round(out["ours_topics_entities_urgency"] / out["peer"], 3)
    out["spacy_tokenizer_only_vs_peer"] = round(out["spacy_tokenizer_only"] / out["peer"], 3)
    return out


def summary(m: Metrics) -> dict[str, float]:
    return {"top1_accuracy": m.top1_accuracy, "top1_in_gold": m.top1_in_gold,
            "micro_f1": m.micro.f1, "macro_f1": m.macro.f1, "n": m.n}


def ours_metrics(clf: SpacyClassifier, data: Sequence[Question]) -> dict[str, float]:
    predicted = clf.topic_lists([q.text for q in data])
    return summary(compute_metrics([q.topics for q in data], predicted))


def peer_key(train: Sequence[Question]) -> str:
    """What the trained peer depends on: the train split, its parameters, scikit-learn."""
    import sklearn

    h = hashlib.sha256(repr([sklearn.__version__, PEER_TFIDF, PEER_LOGREG, TOPICS]).encode())
    for q in train:
        h.update(json.dumps([q.id, q.text, list(q.topics)]).encode())
    return h.hexdigest()[:20]


def load_peer(path: Path) -> tuple[Any, Any, float] | None:
    try:
        with path.open("rb") as f:
            value = pickle.load(f)  # our own file, written by save_peer
    except (OSError, pickle.UnpicklingError, EOFError, AttributeError, ImportError):
        return None
    return value if isinstance(value, tuple) and len(value) == 3 else None


def save_peer(path: Path, value: tuple[Any, Any, float]) -> None:
    """Written beside and swapped in, so a run reading it at the same time sees all or none;
    peers trained on other data go."""
    path.parent.mkdir(exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".peer-")
    with os.fdopen(fd, "wb") as f:
        pickle.dump(value, f)
    os.replace(tmp, path)
    for old in path.parent.glob("classify-peer-*.pickle"):
        if old != path:
            old.unlink(missing_ok=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="fewer texts and repeats")
    args = parser.parse_args()
    n_texts, repeats = (2000, 3) if args.quick else (20000, 5)

    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.multiclass import OneVsRestClassifier
    from sklearn.preprocessing import MultiLabelBinarizer

    questions = load_questions()
    train, dev = split(questions)
    heldout = {path.stem: read_jsonl(path) for path in sorted(DATA_DIR.glob(HELDOUT))}
    model_dir = ensure_model()
    clf = load_model(model_dir)
    texts = [dev[i % len(dev)].text for i in range(n_texts)]
    clf.classify_many(texts[:500])  # warm the vocabulary

    tokenizer = clf.nlp.tokenizer
    matcher = clf.nlp.get_pipe("city311_entities").matcher

    def spacy_floor() -> None:
        """The least a spaCy pipeline that makes a Doc per text and tags topics and entities
        does with a text: tokenize it, read its token features into an array once, and run one
        PhraseMatcher over it. Ours makes one Doc per batch (``nlp.batch``), which is cheaper."""
        for doc in tokenizer.pipe(texts, batch_size=256):
            doc.to_array(NORM)
            matcher(doc)

    def train_peer() -> tuple[Any, Any, float]:
        started = time.perf_counter()
        vectorizer = TfidfVectorizer(**PEER_TFIDF)
        x_train = vectorizer.fit_transform([q.text for q in train])
        binarizer = MultiLabelBinarizer(classes=list(TOPICS))
        y_train = binarizer.fit_transform([q.topics for q in train])
        peer = OneVsRestClassifier(LogisticRegression(**PEER_LOGREG)).fit(x_train, y_train)
        return vectorizer, peer, time.perf_counter() - started

    cache = CACHE / f"classify-peer-{peer_key(train)}.pickle"
    cached = load_peer(cache) if args.quick else None
    if cached is None:
        vectorizer, peer, peer_train_s = train_peer()
        save_peer(cache, (vectorizer, peer, peer_train_s))
    else:
        vectorizer, peer, peer_train_s = cached

    def peer_scores(batch: Sequence[str]) -> Any:
        return peer.predict_proba(vectorizer.transform(batch))

    def peer_metrics(data: Sequence[Question]) -> dict[str, float]:
        probs = peer_scores([q.text for q in data])
        predicted = [select_topics(dict(zip(TOPICS, map(float, row), strict=True)), clf.config)
                     for row in probs]
        return summary(compute_metrics([q.topics for q in data], predicted))

    rates = best_rates({
        "ours": lambda: clf.classify_many(texts),
        # What the peer does: topic scores, chosen and ordered (no entities, no urgency).
        "ours_topics": lambda: clf.topic_lists(texts),
        # Each doc dropped as soon as it is made, as the floor and our pipeline drop theirs:
        # holding 20,000 docs would time the allocator and the cyclic collector instead.
        "tokenizer": lambda: deque(tokenizer.pipe(texts, batch_size=256), maxlen=0),
        "floor": spacy_floor,
        "peer": lambda: peer_scores(texts),
    }, n_texts, repeats)
    first_sight = measure_first_sight(model_dir, [q.text for q in questions], peer_scores)
    ours_qps, tok_qps, peer_qps = rates["ours"], rates["tokenizer"], rates["peer"]
    floor_qps, topics_qps = rates["floor"], rates["ours_topics"]

    ours: dict[str, Any] = {"questions_per_second": round(ours_qps),
                            "dev": ours_metrics(clf, dev),
                            "build_seconds": clf.meta.get("seconds")}
    sk: dict[str, Any] = {"questions_per_second": round(peer_qps), "dev": peer_metrics(dev),
                          "train_seconds": round(peer_train_s, 2),
                          "peer_from_cache": cached is not None}
    for name, questions_held_out in heldout.items():
        ours[name] = ours_metrics(clf, questions_held_out)
        sk[name] = peer_metrics(questions_held_out)
    result = {
        "benchmark": "classify",
        "quick": args.quick,
        "cpu_count": os.cpu_count(),
        "n_texts": n_texts,
        "n_train": len(train),
        "n_dev": len(dev),
        "ours_topics_entities_urgency": ours,
        "ours_topics_only": {"questions_per_second": round(topics_qps)},
        "spacy_tokenizer_only": {"questions_per_second": round(tok_qps)},
        "spacy_floor_tokenizer_array_one_matcher": {"questions_per_second": round(floor_qps)},
        "sklearn_tfidf_logreg": sk,
        "first_sight": first_sight,
        "goal_questions_per_second": GOAL_QPS,
        "ratios": {
            "ours_vs_goal": round(ours_qps / GOAL_QPS, 3),
            "ours_vs_tokenizer_ceiling": round(ours_qps / tok_qps, 3),
            "ours_vs_sklearn_speed": round(ours_qps / peer_qps, 3),
            "ours_topics_only_vs_sklearn_speed": round(topics_qps / peer_qps, 3),
            "tokenizer_vs_sklearn_speed": round(tok_qps / peer_qps, 3),
            "floor_vs_sklearn_speed": round(floor_qps / peer_qps, 3),
            "ours_minus_sklearn_dev_micro_f1": round(
                ours["dev"]["micro_f1"] - sk["dev"]["micro_f1"], 4),
            "ours_minus_sklearn_dev_top1": round(
                ours["dev"]["top1_accuracy"] - sk["dev"]["top1_accuracy"], 4),
        },
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
