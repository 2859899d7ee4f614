"""The split, the metrics and learning from reviewers' corrections."""

from __future__ import annotations

from dataclasses import dataclass

from nlp.data import Question, is_dev, load_questions, split
from nlp.pipeline import stem
from nlp.train import compute_metrics, retrain, train_pipeline


@dataclass
class Fix:
    text: str
    topics: list[str]


def test_split_is_fixed_by_id_and_at_least_a_fifth() -> None:
    questions = load_questions()
    train, dev = split(questions)
    assert len(dev) >= 0.2 * len(questions)
    assert {q.id for q in dev} == {q.id for q in questions if is_dev(q.id)}
    # Adding examples never moves an old one.
    more = [Question(id=f"new{i}", text="x", topics=("housing",)) for i in range(50)]
    _, dev2 = split(questions + more)
    assert {q.id for q in dev} <= {q.id for q in dev2}
    assert is_dev("a0001") == is_dev("a0001")


def test_metrics_by_hand() -> None:
    gold = [["housing", "community_services"], ["budget_finance"], ["public_safety"]]
    pred = [["housing"], ["infrastructure", "budget_finance"], ["public_safety"]]
    m = compute_metrics(gold, pred)
    assert m.top1_accuracy == round(2 / 3, 4)
    assert m.top1_in_gold == round(2 / 3, 4)
    # tp=3 (housing, budget_finance, public_safety), fp=1, fn=1
    assert (m.micro.precision, m.micro.recall, m.micro.f1) == (0.75, 0.75, 0.75)
    assert m.per_topic["infrastructure"].precision == 0.0
    assert m.per_topic["housing"].recall == 1.0
    assert m.per_topic["community_services"].recall == 0.0


def test_stems_join_word_forms() -> None:
    assert stem("zoning") == stem("zoned") == stem("zone")
    assert stem("houses") == stem("housing")
    assert stem("2024") == "#"
    assert stem("SS4A") == "ss4a"


def test_corrections_change_the_model() -> None:
    questions = load_questions()[::5]
    base = train_pipeline(questions)
    text = "Zorbling the quibbleworth at the municipal fleem"
    fixes = [Fix(text, ["community_services"])] * 8
    new, before, after = retrain(questions, fixes, base)
    assert new.scores([text])[0]["community_services"] > base.scores([text])[0][
        "community_services"]
    assert before.n == after.n > 0
