"""The clairvoyant bound on exact early stop (bench/early_stop_bound.py), which the early-stop issue's
closing argument rests on: hand-counted cases, and no real scheduler policy ever decodes fewer tokens."""

from __future__ import annotations

import random
import sys
from pathlib import Path

import pytest

from edgemux.profiles import Profile, ProfileModel
from edgemux.schedule.runtime import LoadOptions, Mux
from edgemux.testing import ReplayEngine
from edgemux.types import Sampling

sys.path.insert(0, str(Path(__file__).parents[1] / "bench"))
from early_stop_bound import cheapest_certificate, interleavings, order_cost  # noqa: E402

MODELS = ["alpha", "beta"]
ACCURACY: list[float | None] = [0.6, 0.3]  # alpha wins ties


def slots(alpha: list[tuple[str | None, int]], beta: list[tuple[str | None, int]]):  # type: ignore[no-untyped-def]
    answers = {(m, i): a for m, row in enumerate((alpha, beta)) for i, (a, _) in enumerate(row)}
    tokens = {(m, i): t for m, row in enumerate((alpha, beta)) for i, (_, t) in enumerate(row)}
    return answers, tokens


def test_a_unanimous_favourite_is_the_whole_certificate() -> None:
    # beta's cheap unanimous 3/3 cannot settle anything while alpha's third sample could still fall to 2/3
    answers, tokens = slots([("4", 10), ("4", 10), ("4", 10)], [("5", 1), ("5", 1), ("5", 1)])
    assert cheapest_certificate(answers, tokens, MODELS, 3, ACCURACY) == (30, ((0, 0), (0, 1), (0, 2)))


def test_a_challenger_sample_that_agrees_settles_the_answer() -> None:
    # alpha has "4" twice (its majority whatever its third says); beta's first sample is "4" too, so beta can
    # reach at most 2/3 on anything else, and a 2/3 tie goes to alpha: the answer is "4" without the rest
    answers, tokens = slots([("4", 10), ("4", 10), ("9", 100)], [("4", 5), ("7", 50), ("8", 50)])
    assert cheapest_certificate(answers, tokens, MODELS, 3, ACCURACY) == (25, ((0, 0), (0, 1), (1, 0)))


def test_fixed_orders_stop_as_soon_as_the_answer_is_settled() -> None:
    orders = list(interleavings(2, 3))
    assert len(orders) == len(set(orders)) == 20  # C(6, 3): which turns are alpha's
    assert all([s for s in o if s[0] == 0] == [(0, 0), (0, 1), (0, 2)] for o in orders)
    answers, tokens = slots([("4", 10), ("4", 10), ("9", 100)], [("4", 5), ("7", 50), ("8", 50)])
    staged = ((0, 0), (0, 1), (0, 2), (1, 0), (1, 1), (1, 2))
    assert order_cost(staged, answers, tokens, MODELS, 3, ACCURACY, {}) == 125  # alpha's three, then beta's "4"
    challenger_early = ((0, 0), (0, 1), (1, 0), (0, 2), (1, 1), (1, 2))
    assert order_cost(challenger_early, answers, tokens, MODELS, 3, ACCURACY, {}) == 25


def test_scattered_answers_need_every_sample() -> None:
    answers, tokens = slots([("1", 10), ("2", 10), ("3", 10)], [("4", 10), ("5", 10), ("6", 10)])
    assert cheapest_certificate(answers, tokens, MODELS, 3, ACCURACY)[0] == 60


@pytest.mark.parametrize("seed", range(12))
def test_no_scheduler_policy_beats_the_bound(seed: int, fake_models: list[str], home: Path) -> None:
    rng = random.Random(seed)
    rows = [[(rng.choice(["4", "5", "6", None]), rng.randint(5, 60)) for _ in range(3)] for _ in MODELS]
    answers, tokens = slots(rows[0], rows[1])
    bound, _ = cheapest_certificate(answers, tokens, MODELS, 3, ACCURACY)

    engines = {name: ReplayEngine() for name in fake_models}
    models = tuple(ProfileModel(n, a) for n, a in zip(fake_models, ACCURACY, strict=True))
    profile = Profile("r", "number", models, Sampling(k=3, max_tokens=100, seed=1))
    full_tokens = sum(tokens.values())
    for options in (LoadOptions(policy="staged", stop_rule="answer"), LoadOptions(policy="priority")):
        with Mux(profile, load=options, engine_factory=lambda spec, *_: engines[spec.name]) as mux:  # type: ignore[arg-type, return-value]
            for name, row in zip(fake_models, rows, strict=True):
                engines[name].play([f"\\boxed{{{a}}}" if a else "no idea" for a, _ in row], [t for _, t in row])
            result = mux.ask("q")
        assert bound <= result.tokens <= full_tokens, options
