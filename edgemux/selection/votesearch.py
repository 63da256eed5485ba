"""Which vote a profile's members should use, judged on questions the vote was not fitted on (issue 25).
Pure numpy over a search table; nothing is generated.

The weighted (CISC) and filtered (DeepConf) rules have parameters: the confidence measure, its window, the
softmax temperature, the share of samples kept. A rule chosen on the questions it is scored on flatters
itself, so the questions are split in two halves by a hash of their id; each half's rule is fitted on the
other half (the best SLM-MUX accuracy at the collected k, ties to the simplest: a longer window, a higher
temperature, a larger share kept) and scored on it, and every question is scored once. The number a
candidate (members, k, vote) reports is that held-out accuracy (the mean over the same draws of k of the
collected samples the count search uses); the rule the profile stores is fitted on all the questions.
"""

from __future__ import annotations

import hashlib
import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from ..decide.confidence import MEASURES, VoteRule
from .search import Bools, Ints, RunTable, Spread, accuracy_ranks, majority, mux_pick

__all__ = ["GRID", "VoteCandidate", "half_of", "has_signals", "vote_candidates", "vote_weights"]

Floats = NDArray[np.float64]

WINDOWS = (8, 16, 32)  # tokens: answers run 30-400 tokens; DeepConf's 2048 would cover most of them whole
TEMPERATURES = (0.25, 0.5, 1.0, 2.0)  # in the measure's units (nats for mean_logprob)
KEEPS = (0.5, 0.75)


def _grid() -> dict[str, tuple[VoteRule, ...]]:
    """Every rule tried, per family, simplest last (so that a tie keeps the simplest)."""
    windows = {m: WINDOWS[-1:] if m in ("mean_logprob", "answer_mass") else WINDOWS for m in MEASURES}  # no window
    weighted = [VoteRule("weighted", m, w, t) for m in MEASURES for w, t in itertools.product(windows[m], TEMPERATURES)]
    filtered = [VoteRule("filtered", m, w, keep=q) for m in MEASURES for w, q in itertools.product(windows[m], KEEPS)]
    return {"weighted": tuple(weighted), "filtered": tuple(filtered)}


GRID = _grid()


def half_of(task: str) -> int:
    """Which half a question falls in (a hash of its id: stable across runs files and sessions)."""
    return hashlib.sha256(task.encode()).digest()[0] % 2


def has_signals(table: RunTable, rows: Sequence[int]) -> bool:
    """Every sample of these members carries token signals (else every rule would count)."""
    return bool(table.signals) and all(s is not None for m in rows for per_task in table.signals[m] for s in per_task)


def vote_weights(scores: Floats, rule: VoteRule) -> Floats:
    """``confidence.weigh`` on arrays: each sample's weight ([..., k]) from its score (NaN: no signals, and
    then its whole row counts, as a member with a signal-less sample does)."""
    ones = np.ones_like(scores)
    if rule.vote == "count":
        return ones
    counted = np.isnan(scores).any(axis=-1, keepdims=True)
    s = np.where(np.isnan(scores), -np.inf, scores)
    if rule.vote == "filtered":
        kept = max(1, math.ceil(rule.keep * s.shape[-1] - 1e-9))
        place = np.argsort(-s, axis=-1, kind="stable").argsort(axis=-1)  # 0 = the most confident; ties: earlier
        return np.where(counted, ones, (place < kept).astype(np.float64))
    finite = np.isfinite(s)
    top = np.where(finite, s, -np.inf).max(axis=-1, keepdims=True)
    none_finite = ~finite.any(axis=-1, keepdims=True)
    with np.errstate(invalid="ignore", over="ignore"):
        w = np.where(finite, np.exp((s - np.where(none_finite, 0.0, top)) / rule.temperature), 0.0)
    return np.where(counted | none_finite, ones, w)


@dataclass(frozen=True)
class VoteCandidate:
    """One (members, k, vote): its held-out SLM-MUX accuracy and the rule fitted on all the questions."""

    models: tuple[str, ...]
    k: int
    vote: VoteRule
    mux: Spread  # held-out accuracy over the draws
    fitted_rules: tuple[VoteRule, VoteRule]  # the rule each half was scored with (fitted on the other)


Draw = tuple[Ints, Bools, Floats]  # answers, correctness and sample order of one draw, [S, T, k']


def _mux_right(answers: Ints, correct: Bools, weights: Floats, ranks: Sequence[int]) -> Bools:
    confidence, right = majority(answers, correct, weights)
    pick = mux_pick(confidence, ranks)
    return np.asarray(np.take_along_axis(right, pick[None, :], axis=0)[0])


class _Scorer:
    """One subset of members: its samples, their scores under every measure and window, and its draws."""

    def __init__(self, table: RunTable, rows: Sequence[int], repeats: int, seed: int) -> None:
        self.answers, self.correct = table.answers[list(rows)], table.correct[list(rows)]
        self.halves = np.array([half_of(t) for t in table.tasks])
        self._scores = {(r.measure, r.window): table.scores(r.measure, r.window)[list(rows)]
                        for rules in GRID.values() for r in rules}  # fmt: skip
        rng = np.random.default_rng(seed)
        n_rows, n_tasks, k_max = self.answers.shape
        self.orders = {
            k: [np.sort(rng.random((n_rows, n_tasks, k_max)).argsort(axis=-1)[..., :k], axis=-1)
                for _ in range(1 if k == k_max else repeats)]
            for k in range(1, k_max + 1)
        }  # fmt: skip

    def ranks(self, tasks: NDArray[np.bool_]) -> list[int]:
        return accuracy_ranks(self.correct[:, tasks])

    def right(self, rule: VoteRule, order: Ints, tasks: NDArray[np.bool_], ranks: Sequence[int]) -> Bools:
        """Whether SLM-MUX under ``rule`` is right on each of ``tasks`` with the samples ``order`` picks."""
        answers = np.take_along_axis(self.answers, order, axis=-1)[:, tasks]
        correct = np.take_along_axis(self.correct, order, axis=-1)[:, tasks]
        scores = np.take_along_axis(self._scores[rule.measure, rule.window], order, axis=-1)[:, tasks]
        return _mux_right(answers, correct, vote_weights(scores, rule), ranks)

    def fit(self, family: str, tasks: NDArray[np.bool_]) -> VoteRule:
        """The family's rule with the best SLM-MUX accuracy on ``tasks`` at the collected k."""
        full, ranks = self.orders[max(self.orders)][0], self.ranks(tasks)
        rules = GRID[family]
        accuracy = [float(self.right(r, full, tasks, ranks).mean()) for r in rules]
        return rules[max(range(len(rules)), key=lambda i: (accuracy[i], i))]

    def held_out(self, fitted: Sequence[VoteRule], k: int) -> Spread:
        """Accuracy at k when each half is scored by the rule fitted on the other half."""
        halves = [(rule, self.halves == half, self.ranks(self.halves != half)) for half, rule in enumerate(fitted)]
        per_draw = []
        for order in self.orders[k]:
            right = sum(int(self.right(rule, order, tasks, ranks).sum()) for rule, tasks, ranks in halves)
            per_draw.append(right / len(self.halves))
        return Spread.of(per_draw)


def vote_candidates(table: RunTable, subsets: Sequence[tuple[str, ...]], *, repeats: int = 20,
                    seed: int = 0) -> list[VoteCandidate]:  # fmt: skip
    """For each subset whose samples all carry token signals, each family (weighted, filtered) at each k:
    its held-out accuracy. Subsets of members without signals give none (their vote can only count)."""
    out = []
    for members in subsets:
        rows = [table.models.index(m) for m in members]
        if not has_signals(table, rows) or len(set(half_of(t) for t in table.tasks)) < 2:
            continue
        scorer = _Scorer(table, rows, repeats, seed)
        everything = np.ones(len(table.tasks), dtype=np.bool_)
        for family in GRID:
            fitted = (scorer.fit(family, scorer.halves == 1), scorer.fit(family, scorer.halves == 0))
            rule = scorer.fit(family, everything)
            for k in scorer.orders:
                out.append(VoteCandidate(tuple(members), k, rule, scorer.held_out(fitted, k), fitted))
    return out
