"""Vote rules judged on held-out halves (edgemux.votesearch), share-bin calibration, and `profile build`
choosing a vote: the arrays must give what `mux.tally` gives one question at a time."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest

from edgemux.decide.calibration import Level, ShareBin, calibration_error, level_of
from edgemux.decide.confidence import VoteRule, sample_score
from edgemux.decide.mux import tally
from edgemux.profiles import load_profile
from edgemux.selection.calibrate import measure
from edgemux.selection.runs import Record, read_runs
from edgemux.selection.search import build_table, majority, mux_pick
from edgemux.selection.votesearch import GRID, half_of, vote_candidates, vote_weights
from edgemux.types import Sample, TokenSignals
from tests.test_build import POOL, SETTINGS, invoke

RULES = [VoteRule(), *GRID["weighted"][::5], *GRID["filtered"][::3], VoteRule("filtered", keep=0.25)]


def signals(level: float, n: int = 12) -> TokenSignals:
    return TokenSignals(tuple([-1 / (1 + level)] * n), tuple([level] * n))  # surer: both higher


@pytest.mark.parametrize("seed", range(40))
def test_array_votes_give_what_tally_gives(seed: int) -> None:
    rng = random.Random(seed)
    k = rng.randint(1, 6)
    rule = rng.choice(RULES)
    answers = [rng.choice(["1", "2", "3", None]) for _ in range(k)]
    levels = [rng.choice([1.0, 2.0, 2.0, 5.0, float(rng.randint(0, 9))]) for _ in range(k)]  # equal ones: ties
    no_signals = rng.random() < 0.15
    samples = [Sample("m", j, j, "", a, 12, "eos", 0.0, signals=None if no_signals and j == 0 else signals(c))
               for j, (a, c) in enumerate(zip(answers, levels, strict=True))]  # fmt: skip
    vote = tally("m", samples, rule=rule)

    ids = {a: i for i, a in enumerate(dict.fromkeys(a for a in answers if a is not None))}
    array = np.array([[ids[a] if a is not None else -1 for a in answers]])
    correct = array == (ids.get(vote.answer, -2) if vote.answer is not None else -2)
    scores = np.array(
        [[np.nan if s.signals is None else sample_score(s.signals, rule.measure, rule.window) for s in samples]]
    )
    confidence, right = majority(array, correct, vote_weights(scores, rule))
    assert confidence[0] == pytest.approx(vote.confidence)
    assert bool(right[0]) == (vote.answer is not None)  # the array's winner is tally's answer


def test_exact_ties_go_to_the_better_rank_and_near_ties_do_not() -> None:
    confidence = np.array([[0.5, 0.5000001], [0.5, 0.5]])
    assert list(mux_pick(confidence, [1, 0])) == [1, 0]  # tied: rank 0; 0.5000001 beats 0.5 whatever the rank


def runs_with_signals(path: Path, n_tasks: int = 60, seed: int = 0, telling: bool = True) -> Path:
    """Two members; every question has a right answer "7". The 1.5B's samples are right half the time and
    its wrong answers agree with each other (count votes pick them often); when ``telling``, a right sample's
    tokens are confident (3.0) and a wrong one's are not (1.0), so a confidence vote can see through it."""
    rng = random.Random(seed)
    with path.open("w") as f:
        for t in range(n_tasks):
            for model, p_right in ((POOL[0], 0.45), (POOL[1], 0.3)):
                samples = []
                for j in range(5):
                    ok = rng.random() < p_right
                    answer = "7" if ok else ("3" if rng.random() < 0.8 else "4")
                    level = (3.0 if ok else 1.0) if telling else rng.choice([1.0, 3.0])
                    samples.append(Sample(model, j, j, f"\\boxed{{{answer}}}", answer, 12, "eos", 0.1,
                                          signals=signals(level + rng.random() * 0.1)))  # fmt: skip
                f.write(Record(f"t{t}", model, "number", "7", None, SETTINGS, 30, tuple(samples)).to_json() + "\n")
    return path


def test_a_telling_confidence_wins_on_held_out_questions(tmp_path: Path) -> None:
    table = build_table(read_runs(runs_with_signals(tmp_path / "r.jsonl")))
    found = {(v.vote.vote, v.k): v for v in vote_candidates(table, [tuple(POOL[:2])], repeats=3)}
    assert {k for _, k in found} == {1, 2, 3, 4, 5} and {v for v, _ in found} == {"weighted", "filtered"}
    count = float(majority(table.answers[:, :, :5], table.correct[:, :, :5])[1].max(axis=0).mean())
    assert found["weighted", 5].mux.mean > count + 0.2  # weighted toward the confident right samples
    for v in found.values():  # each half was scored by a rule fitted on the other
        assert len(v.fitted_rules) == 2 and all(r.vote == v.vote.vote for r in v.fitted_rules)


def test_members_without_signals_get_no_vote_candidates(tmp_path: Path) -> None:
    path = runs_with_signals(tmp_path / "r.jsonl")
    records = [r for r in read_runs(path)]
    stripped = [Record(r.task, r.model, r.kind, r.reference, r.aliases, r.settings, r.prompt_tokens,
                       tuple(Sample(s.model, s.index, s.seed, s.text, s.answer, s.tokens, s.stop_reason, s.seconds)
                             for s in r.samples)) for r in records]  # fmt: skip
    assert vote_candidates(build_table(stripped), [tuple(POOL[:2])], repeats=2) == []


def test_halves_are_stable_and_both_used() -> None:
    halves = [half_of(f"t{i}") for i in range(60)]
    assert halves == [half_of(f"t{i}") for i in range(60)] and 15 < sum(halves) < 45


def test_share_bins_cover_every_share_once() -> None:
    bins = [b for b in measure_bins()]
    for share in (0.0, 0.3, 0.5, 0.69, 0.7, 0.9, 0.95, 0.999, 1.0):
        assert sum(b.holds(share) for b in bins) == 1, share


def measure_bins() -> list[ShareBin]:
    from edgemux.decide.calibration import share_bins as _bins

    return _bins("weighted", 5)


def test_calibration_under_a_vote_is_stored_and_read_back(tmp_path: Path) -> None:
    table = build_table(read_runs(runs_with_signals(tmp_path / "r.jsonl")))
    rule = VoteRule("weighted", "tail", 8, 0.25)
    bins = measure(table, list(POOL[:2]), 5, rule)
    assert all(isinstance(b, ShareBin) for b in bins) and sum(b.answered for b in bins) == 60
    measured = {"calibration": [b.to_dict() for b in bins] + [lv.to_dict() for lv in measure(table, list(POOL[:2]), 5)]}
    top = level_of(measured, 5, "weighted", 1.0)
    assert isinstance(top, ShareBin) and top.low == top.high == 1.0
    assert isinstance(level_of(measured, 5, "count", 0.6), Level)
    assert level_of(measured, 4, "weighted", 1.0) is None and level_of(measured, 5, "filtered", 1.0) is None


def test_calibration_error_is_the_answered_weighted_gap() -> None:
    fitted = [Level(2, 2, 10, 9), Level(1, 2, 10, 5), Level(0, 2, 0, 0)]
    held = [Level(2, 2, 30, 21), Level(1, 2, 10, 5), Level(0, 2, 0, 0)]
    assert calibration_error(fitted, held) == pytest.approx(30 / 40 * 0.2)
    assert calibration_error(fitted, fitted) == 0.0


def test_profile_build_chooses_a_vote_that_wins_on_held_out_questions(tmp_path: Path) -> None:
    runs = runs_with_signals(tmp_path / "r.jsonl")
    out = tmp_path / "p.yaml"
    result = invoke("profile", "build", "--runs", str(runs), "--name", "conf", "--out", str(out), "--budget", "8GiB")
    assert result.exit_code == 0, result.output
    profile = load_profile(str(out))
    assert profile.vote.vote in ("weighted", "filtered") and "vote" in result.stderr
    assert profile.measured["vote"]["held_out_accuracy"] > profile.measured["vote"]["count_accuracy"]
    votes = {row.get("vote", "count") for row in profile.measured["calibration"]}
    assert votes == {"count", profile.vote.vote}

    counted = tmp_path / "c.yaml"
    plain = invoke("profile", "build", "--runs", str(runs), "--name", "c", "--out", str(counted), "--votes", "count")
    assert plain.exit_code == 0 and load_profile(str(counted)).vote.vote == "count"
