"""MATH answers compared by meaning: equal values and expressions vote together and score as right."""

from __future__ import annotations

import pytest

from edgemux.answers.equivalence import Unifier, math_key
from edgemux.answers.extract import extract
from edgemux.selection.runs import Record
from edgemux.selection.search import build_table
from edgemux.types import Sample


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("2\\sqrt{2}", "\\sqrt{8}"),
        ("x^2+1", "1+x^2"),
        ("\\frac{2a+b}{2}", "a+\\frac{b}{2}"),
        ("\\frac{\\pi}{2}", "\\pi/2"),
        ("\\frac{1}{2}", "0.5"),
        ("[0,\\infty)", "[0, \\infty)"),
    ],
)
def test_same_meaning_same_key(a: str, b: str) -> None:
    assert math_key(a) == math_key(b)


@pytest.mark.parametrize(
    ("a", "b"), [("2\\sqrt{2}", "2\\sqrt{3}"), ("x^2+1", "x^2-1"), ("(1,2)", "[1,2]"), ("3", "-3")]
)
def test_different_meaning_different_key(a: str, b: str) -> None:
    assert math_key(a) != math_key(b)


def test_hostile_or_huge_answers_stay_strings_and_fast() -> None:
    long = "x+" * 100 + "1"
    assert math_key(long) == long  # too long to parse: compared as written
    assert math_key("\\frac{") in ("\\frac{", "s:\\frac{")  # unparsable: as written, never an error
    assert math_key("10^{10^{10}}") != math_key("10^{10^{11}}")
    assert math_key("(x+1)^{60}").startswith("s:")  # not expanded


def test_a_unifier_keeps_the_first_spelling() -> None:
    unify = Unifier("math")
    assert [unify(a) for a in ["\\sqrt{8}", "2\\sqrt{2}", None, "3", "\\frac{6}{2}"]] == [
        "\\sqrt{8}",
        "\\sqrt{8}",
        None,
        "3",
        "3",
    ]
    assert Unifier("number")("2\\sqrt{2}") == "2\\sqrt{2}"  # only MATH answers are compared by meaning


def test_equivalent_answers_vote_together_and_score_right_in_the_search() -> None:
    def record(model: str, texts: list[str]) -> Record:
        samples = tuple(Sample(model, j, j, t, extract("math", t), 10, "eos", 1.0) for j, t in enumerate(texts))
        return Record("t", model, "math", "2\\sqrt{2}", None, {"k": 3}, 5, samples)

    table = build_table([record("a", ["\\boxed{\\sqrt{8}}", "\\boxed{2\\sqrt2}", "\\boxed{3}"]),
                         record("b", ["\\boxed{3}", "\\boxed{3.0}", "\\boxed{\\sqrt{8}}"])])  # fmt: skip
    assert table.correct[0].tolist() == [[True, True, False]] and table.correct[1].tolist() == [[False, False, True]]
    assert table.answers[0, 0, 0] == table.answers[0, 0, 1] == table.answers[1, 0, 2]


def test_ask_counts_equivalent_answers_as_one(fake_models: list[str]) -> None:
    from edgemux.profiles import Profile, ProfileModel
    from edgemux.schedule.runtime import LoadOptions, Mux
    from edgemux.testing import fake_engine_factory
    from edgemux.types import Sampling

    outputs = {
        "alpha": ["\\boxed{\\sqrt{8}}", "\\boxed{2\\sqrt{2}}", "\\boxed{3}"],
        "beta": ["\\boxed{3}", "\\boxed{4}", "\\boxed{5}"],
    }
    profile = Profile("m", "math", (ProfileModel("alpha"), ProfileModel("beta")), Sampling(k=3, max_tokens=20, seed=1))
    with Mux(profile, engine_factory=fake_engine_factory(outputs), load=LoadOptions(early_stop=False)) as mux:  # type: ignore[arg-type]
        result = mux.ask("What is the square root of 8?")
    assert (result.answer, result.decision.winner, round(result.decision.confidence, 2)) == ("\\sqrt{8}", "alpha", 0.67)
