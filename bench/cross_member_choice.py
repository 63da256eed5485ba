"""Choose across members by a calibrated probability instead of the SLM-MUX rule (issue 25, open answers).

For each member, a logistic model of "this member's majority answer is right" over two features, the
majority's share of the k samples and the mean confidence of the samples that give it, is fitted on one half
of the questions (votesearch.half_of); on the other half the member with the higher predicted probability
answers. Both halves are scored this way and added. One line per confidence measure; the best single member
and the oracle over members' majorities are printed for comparison. numpy only, no model runs.

    python bench/cross_member_choice.py --runs bench/runs/triviaqa-dev-k5.rescored.jsonl.gz \\
        --models qwen2.5-coder-1.5b,gemma3-270m -k 5
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

import numpy as np
from numpy.typing import NDArray

from edgemux.decide.confidence import sample_score
from edgemux.selection.runs import read_runs_files
from edgemux.selection.search import RunTable, build_table, majority
from edgemux.selection.votesearch import half_of

Features = tuple[float, float, bool]  # share, mean score of the majority's samples, majority right
SETTINGS = (("mean_logprob", 0), ("lowest_group", 8), ("tail", 32), ("bottom_share", 32), ("answer_mass", 0))


def features(t: RunTable, m: int, q: int, k: int, measure: str, window: int) -> Features | None:
    """The member's majority as the search reads it (search.majority: ties to the answer seen first)."""
    answers, correct = t.answers[m, q, :k], t.correct[m, q, :k]
    if not (answers >= 0).any():
        return None
    share, right = majority(answers[None], correct[None])
    first = int(np.argmax([(answers == a).sum() if a >= 0 else -1 for a in answers]))
    scores = [sample_score(s, measure, window) for j in range(k)
              if answers[j] == answers[first] and (s := t.signals[m][q][j]) is not None]  # fmt: skip
    finite = [s for s in scores if np.isfinite(s)]
    return float(share[0]), float(np.mean(finite)) if finite else -10.0, bool(right[0])


def logistic(x: NDArray[np.float64], y: NDArray[np.float64], iters: int = 3000,
             rate: float = 0.1, l2: float = 1e-2) -> Callable[[NDArray[np.float64]], NDArray[np.float64]]:  # fmt: skip
    """A standardised, L2-regularised logistic regression by gradient descent; returns its predictor."""
    mu, sd = x.mean(0), x.std(0) + 1e-9
    design = np.c_[np.ones(len(x)), (x - mu) / sd]
    w = np.zeros(design.shape[1])
    for _ in range(iters):
        p = 1 / (1 + np.exp(-design @ w))
        w -= rate * (design.T @ (p - y) / len(y) + l2 * w)
    return lambda z: 1 / (1 + np.exp(-(np.c_[np.ones(len(z)), (z - mu) / sd] @ w)))


def held_out_accuracy(t: RunTable, members: list[int], k: int, measure: str, window: int) -> tuple[int, int]:
    halves = [[q for q, task in enumerate(t.tasks) if half_of(task) == h] for h in (0, 1)]
    right = 0
    for fit, scored in ((0, 1), (1, 0)):
        predict = {}
        for m in members:
            rows = [f for q in halves[fit] if (f := features(t, m, q, k, measure, window))]
            predict[m] = logistic(np.array([r[:2] for r in rows]), np.array([r[2] for r in rows], dtype=float))
        for q in halves[scored]:
            options = [(float(predict[m](np.array([f[:2]]))[0]), f[2])
                       for m in members if (f := features(t, m, q, k, measure, window))]  # fmt: skip
            right += bool(options) and max(options)[1]
    return right, len(t.tasks)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", required=True)
    parser.add_argument("--models", required=True)
    parser.add_argument("-k", type=int, default=5)
    args = parser.parse_args()
    t = build_table(read_runs_files(args.runs))
    members = [t.models.index(m) for m in args.models.split(",")]
    n = len(t.tasks)
    majority = [[features(t, m, q, args.k, "mean_logprob", 0) for q in range(n)] for m in members]
    for m, rows in zip(members, majority, strict=True):
        print(f"{t.models[m]}, majority of {args.k}: {sum(bool(r and r[2]) for r in rows) / n:.3f}")
    oracle = sum(any(rows[q] and rows[q][2] for rows in majority) for q in range(n))  # type: ignore[index]
    print(f"oracle over the members' majorities: {oracle / n:.3f}")
    for measure, window in SETTINGS:
        right, total = held_out_accuracy(t, members, args.k, measure, window)
        print(
            f"calibrated choice, {measure}{f' window {window}' if window else ''}: {right / total:.3f} ({right}/{total})"
        )


if __name__ == "__main__":
    main()
