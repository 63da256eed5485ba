"""A profile's calibration measured on runs: the SLM-MUX decision of its members on every validation
question, grouped into the levels ``decide.calibration`` stores and ``ask`` reports."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import numpy as np

from ..decide.calibration import Calibrated, Level, share_bins
from ..decide.confidence import VoteRule
from .search import RunTable, accuracy_ranks, majority, mux_pick
from .votesearch import vote_weights

__all__ = ["measure"]


def measure(table: RunTable, members: Sequence[str], k: int, rule: VoteRule | None = None,
            tasks: Sequence[int] | None = None) -> list[Calibrated]:  # fmt: skip
    """The SLM-MUX decision of ``members`` on each task (or on ``tasks``, indices) from their first k
    recorded samples (as `eval` scores them), under ``rule`` (default: count), grouped by the winner's
    agreement: one Level per count k, k-1, …, 0 (0: no answer), or one ShareBin per range of shares."""
    rows = [table.models.index(m) for m in members]
    chosen = np.arange(len(table.tasks)) if tasks is None else np.asarray(tasks, dtype=np.int64)
    answers, correct = table.answers[rows][:, chosen, :k], table.correct[rows][:, chosen, :k]
    counting = rule is None or rule.vote == "count"
    weights = None
    if rule is not None and not counting:
        weights = vote_weights(table.scores(rule.measure, rule.window)[rows][:, chosen, :k], rule)
    confidence, right = majority(answers, correct, weights)
    ranks = accuracy_ranks(table.correct[rows])  # the tie-break order, as the profile
    winner = mux_pick(confidence, ranks)
    n = np.arange(len(chosen))
    won, won_right = confidence[winner, n], right[winner, n]
    levels: list[Calibrated] = []
    levels += [Level(c, k, 0, 0) for c in range(k, -1, -1)] if rule is None or counting else share_bins(rule.vote, k)
    out: list[Calibrated] = []
    for level in levels:
        inside = np.array([level.holds(float(c)) for c in won], dtype=np.bool_)
        out.append(replace(level, answered=int(inside.sum()), right=int((inside & won_right).sum())))
    return out
