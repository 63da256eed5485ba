"""The SLM-MUX rule, table-driven (../shared/SLM-MUX.md §1)."""

from __future__ import annotations

import pytest

from edgemux.decide.mux import decide, tally
from edgemux.types import Sample


def samples(model: str, answers: list[str | None]) -> list[Sample]:
    return [Sample(model, i, i, f"text {a}", a, 10, "eos", 0.1) for i, a in enumerate(answers)]


def vote(model: str, answers: list[str | None], acc: float | None = None):  # type: ignore[no-untyped-def]
    return tally(model, samples(model, answers), acc)


@pytest.mark.parametrize(
    ("answers", "majority", "confidence"),
    [
        (["7", "7", "7"], "7", 1.0),
        (["7", "8", "7"], "7", 2 / 3),
        (["7", None, None], "7", 1 / 3),  # divide by k, not by the parsable count
        ([None, None, None], None, 0.0),  # unparsable samples never form a majority
        (["8", "7"], "8", 0.5),  # tie inside a model: the earliest first sample wins
        (["7", "8", "8", "7"], "7", 0.5),
        ([None, "9", None, "9", "3"], "9", 0.4),
    ],
)
def test_tally(answers: list[str | None], majority: str | None, confidence: float) -> None:
    v = vote("m", answers)
    assert v.answer == majority
    assert v.confidence == pytest.approx(confidence)
    assert v.unparsable == answers.count(None)


def test_tally_orders_by_sample_index_not_finish_order() -> None:
    finished_late_first = list(reversed(samples("m", ["8", "7"])))
    assert tally("m", finished_late_first).answer == "8"


def test_most_confident_model_wins() -> None:
    d = decide([vote("a", ["1", "2", "3"]), vote("b", ["5", "5", "4"])])
    assert (d.winner, d.answer, d.tie_break) == ("b", "5", "none")
    assert d.confidence == pytest.approx(2 / 3)
    assert "b was the most confident (2/3" in d.reason


def test_answers_are_not_pooled_across_models() -> None:
    # Pooled, "1" has 4 votes of 6; per model, b is more confident in "2".
    d = decide([vote("a", ["1", "1", "3"]), vote("b", ["2", "2", "2"]), vote("c", ["1", "1", "4"])])
    assert d.answer == "2"


def test_tie_goes_to_validation_accuracy() -> None:
    d = decide([vote("a", ["1", "1", "2"], acc=0.4), vote("b", ["3", "3", "4"], acc=0.7)])
    assert (d.winner, d.answer, d.tie_break) == ("b", "3", "validation_accuracy")
    assert "0.700" in d.reason


def test_tie_without_accuracies_goes_to_profile_order_and_says_so() -> None:
    d = decide([vote("a", ["1", "1", "2"]), vote("b", ["3", "3", "4"])])
    assert (d.winner, d.tie_break) == ("a", "profile_order")
    assert "no validation accuracies" in d.reason


def test_tie_with_equal_accuracies_goes_to_profile_order() -> None:
    d = decide([vote("a", ["1", "2"], acc=0.5), vote("b", ["3", "4"], acc=0.5)])
    assert (d.winner, d.tie_break) == ("a", "profile_order")


def test_partial_accuracies_fall_back_to_profile_order() -> None:
    d = decide([vote("a", ["1"], acc=None), vote("b", ["2"], acc=0.9)])
    assert (d.winner, d.tie_break) == ("a", "profile_order")


def test_unparsable_model_cannot_win() -> None:
    d = decide([vote("a", [None, None, None]), vote("b", ["4", "5", "6"])])
    assert (d.winner, d.answer) == ("b", "4")


def test_no_answer_at_all() -> None:
    d = decide([vote("a", [None, None]), vote("b", [None, None])])
    assert (d.answer, d.winner, d.tie_break, d.confidence) == (None, None, "no_answer", 0.0)


def test_decision_keeps_every_vote() -> None:
    d = decide([vote("a", ["1", "2"]), vote("b", ["2", "2"])])
    assert [v.model for v in d.votes] == ["a", "b"]
    assert d.vote_of("a").counts == (("1", 1), ("2", 1))


def test_decide_needs_votes() -> None:
    with pytest.raises(ValueError):
        decide([])


def test_the_ui_renders_and_builds_nothing() -> None:
    """`import edgemux.ui` brings no runtime, bench, eval or search (and no Unix-only `resource`)."""
    import subprocess
    import sys

    heavy = ("edgemux.schedule.runtime", "edgemux.measure.benchmark", "edgemux.measure.evaluate", "edgemux.selection.search", "edgemux.selection.runs",
             "resource", "llama_cpp", "yaml")  # fmt: skip
    probe = f"import sys, edgemux.ui; print([m for m in {heavy!r} if m in sys.modules])"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
