"""Code answers: behaviour in a subprocess, votes by behaviour, scoring against the reference's behaviour."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from edgemux.answers import code
from edgemux.answers.extract import canonical_reference, extract
from edgemux.answers.prompts import format_question
from edgemux.errors import InvalidRequestError
from edgemux.measure.evaluate import score_runs
from edgemux.profiles import Profile, ProfileModel
from edgemux.selection.runs import Record
from edgemux.types import Sample, Sampling

TESTS = ("assert square(3) == 9", "assert square(-2) == 4", "assert square(0) == 0")
RIGHT_A = "Here you go:\n```python\ndef square(x):\n    return x * x\n```"
RIGHT_B = "```python\ndef square(n):\n    # a different program that behaves the same\n    return n ** 2\n```"
WRONG = "```python\ndef square(x):\n    return x + x\n```"


def test_same_behaviour_same_answer() -> None:
    a, b, wrong = (code.signature(t, TESTS) for t in (RIGHT_A, RIGHT_B, WRONG))
    assert a is not None and a == b and wrong != a
    assert canonical_reference("code", "def square(x):\n    return x*x", TESTS) == a
    assert extract("code", RIGHT_A, tests=TESTS) == a


def test_programs_that_do_not_load_have_no_answer() -> None:
    assert code.signature("I would write a loop.", TESTS) is None
    assert code.signature("```python\ndef square(x)\n    return x\n```", TESTS) is None  # syntax error
    assert code.signature("```python\nraise SystemExit(3)\n```", TESTS) is None
    failing = code.signature("```python\ndef square(x):\n    return 1 / 0\n```", TESTS)
    assert failing is not None and failing != code.signature(RIGHT_A, TESTS)  # it loads; its calls raise


def test_code_runs_in_a_subprocess_with_a_timeout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(code, "TIMEOUT_S", 1.0)
    monkeypatch.chdir(tmp_path)
    hang = "```python\ndef square(x):\n    while True:\n        pass\n```"
    assert code.run_tests(code.extract_program(hang) or "", TESTS) == ("timed out",)
    writer = "```python\nopen('written.txt', 'w').write('x')\nimport os\nos.environ['EDGEMUX_LEAK'] = '1'\ndef square(x):\n    return x * x\n```"
    assert code.signature(writer, TESTS) == code.signature(RIGHT_A, TESTS)
    assert not (tmp_path / "written.txt").exists() and "EDGEMUX_LEAK" not in os.environ


def test_without_tests_programs_vote_by_normalised_text() -> None:
    spaced = "```python\ndef square(x):\n\n    return x*x   # squared\n```"
    assert extract("code", spaced) == extract("code", RIGHT_A) == "def square(x):\n    return x * x"


def test_mbpp_prompt_carries_the_tests() -> None:
    assert format_question("Write a function to square a number.", tests=TESTS).endswith(
        "Your code should pass these tests:\n" + "\n".join(TESTS)
    )


def test_eval_scores_code_by_running_it() -> None:
    def record(model: str, texts: list[str]) -> Record:
        samples = tuple(Sample(model, j, j, t, None, 10, "eos", 1.0) for j, t in enumerate(texts))
        return Record("sq", model, "code", "def square(x):\n    return x * x", None, {}, 20, samples, TESTS)

    runs = [record("a", [RIGHT_A, WRONG, RIGHT_B]), record("b", [WRONG, WRONG, "no code"])]
    profile = Profile("c", "code", (ProfileModel("a", 0.5), ProfileModel("b", 0.4)), Sampling(k=3))
    with pytest.raises(InvalidRequestError, match="--run-programs"):  # a runs file alone executes nothing
        score_runs(runs, profile)
    report = score_runs(runs, profile, run_programs=True)
    scores = {m.method: m.correct for m in report.methods}
    # a: right, wrong, right (2/3 right, behaviour-equal); b: wrong, wrong, none (2/3 wrong) → tie at 2/3 → a wins
    assert scores == {"a, first sample": 1, "b, first sample": 0, "a, majority of 3": 1, "b, majority of 3": 0,
                      "pooled vote": 0, "SLM-MUX": 1, "oracle": 1}  # fmt: skip
