"""Stop rules replayed on recorded runs: what each saves and what it costs in accuracy (issue 26).

A question's recorded samples (token counts, answers, token signals) are decoded again on paper the way
the scheduler's ``priority`` policy decodes them: each member's k samples as one batch, the member that
wins ties first. After each sample finishes the stop rule looks at the finished ones:

- ``none``: every sample is drawn;
- ``decision`` (exact, the default): a member that can no longer win is stopped; once the decision is
  settled the others are stopped and the winner's own samples finish (decide/earlystop.py);
- ``confident``: ``decision``, and once a finished sample is sure by its member's bar and gives the answer
  SLM-MUX gives on the finished samples, everything stops (decide/stoprules.py), unless the decision is
  settled already (then the exact stop, which lets the winner's samples finish).

The answer is SLM-MUX's over the samples that finished. A cancelled sample costs the tokens it had drawn.
``fit_confident`` chooses the confident rule's measure, window and precision on one half of the questions
and scores it on the other (votesearch.half_of), both ways; then fits the bars on every question.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..decide.confidence import sample_score
from ..decide.earlystop import ModelProgress, outlook
from ..decide.stoprules import ConfidenceBars, fit_bar
from .search import RunTable, accuracy_ranks
from .votesearch import half_of

__all__ = ["Drawn", "StopScore", "fit_confident", "replay_question", "score_rule"]

# What the confident rule is tried with: measures that rank a member's samples (issue 25's AUROC), windows
# for answers of 80-400 tokens, and how often a sure sample must have been right.
# (mean_logprob has no window.)
MIN_SAVING = 0.05  # a confident rule must spend at least 5 % fewer tokens than the exact one
GRID = [("tail", w, p) for w in (16, 32) for p in (0.8, 0.9, 0.95)] + [
    ("mean_logprob", 16, p) for p in (0.8, 0.9, 0.95)
]


@dataclass(frozen=True)
class Drawn:
    """One recorded sample: its member (position in the tie order), length, answer id (-1: none)."""

    member: int
    tokens: int
    answer: int
    right: bool
    score: float


@dataclass(frozen=True)
class StopScore:
    rule: str
    tokens: float  # per question
    accuracy: float
    questions: int
    sure_answered: int = 0  # questions a sure sample ended (confident), and how many of those were right
    sure_right: int = 0


def mux_decision(finished: Sequence[Drawn], n_members: int, k: int) -> tuple[int, int, bool]:
    """SLM-MUX over the finished samples: (winner, answer, right); confidence = top count / k, ties to the
    answer seen first and to the better-ranked member; (-1, -1, False) when nothing answered."""
    best: tuple[float, int, int, bool] | None = None
    for m in range(n_members):
        counts: dict[int, int] = {}
        for d in finished:
            if d.member == m and d.answer >= 0:
                counts[d.answer] = counts.get(d.answer, 0) + 1
        if not counts:
            continue
        top = max(counts, key=lambda a: counts[a])  # first seen among equals: dicts keep insertion order
        right = next(d.right for d in finished if d.member == m and d.answer == top)
        if best is None or counts[top] / k > best[0]:
            best = (counts[top] / k, m, top, right)
    return (-1, -1, False) if best is None else best[1:]


def _outlook(finished: Sequence[Drawn], running: Sequence[int], n_members: int, k: int) -> tuple[int | None, set[int]]:
    """(the settled winner or None, the hopeless members) under the exact rule."""
    progress = {
        str(m): ModelProgress(k, [str(d.answer) if d.answer >= 0 else None for d in finished if d.member == m],
                              running=running[m])
        for m in range(n_members)
    }  # fmt: skip
    view = outlook(progress, {str(m): m for m in range(n_members)})
    return (None if view.settled is None else int(view.settled)), {int(m) for m in view.hopeless}


def replay_question(samples: Sequence[Sequence[Drawn]], k: int, rule: str,
                    bars: Sequence[float | None] = ()) -> tuple[int, bool, bool]:  # fmt: skip
    """Tokens spent, whether the answer was right and whether a sure sample ended the question, decoding
    each member's k samples as a batch in tie order under ``rule`` (none, decision, confident; ``bars``:
    each member's, for confident)."""
    n = len(samples)
    finished: list[Drawn] = []
    running = [k] * n
    spent = 0
    stopped: set[int] = set()
    for m, wave in enumerate(samples):
        if m in stopped:
            continue
        cut: int | None = None  # the step at which this wave was cancelled
        for d in sorted(wave, key=lambda d: d.tokens):
            finished.append(d)
            running[m] -= 1
            if rule == "none":
                continue
            winner, hopeless = _outlook(finished, running, n, k)
            bar = bars[m] if rule == "confident" and bars and winner is None else None  # settled: exact stop
            if bar is not None and d.answer >= 0 and d.score >= bar and mux_decision(finished, n, k)[1] == d.answer:
                spent += sum(min(o.tokens, d.tokens) for o in wave)
                return spent, mux_decision(finished, n, k)[2], True
            stopped |= hopeless | ({i for i in range(n) if i != winner} if winner is not None else set())
            if m in stopped:
                cut = d.tokens
                break
        spent += sum(d.tokens if cut is None else min(d.tokens, cut) for d in wave)
        if cut is not None:
            finished = [f for f in finished if f.member != m or f.tokens <= cut]
    return spent, mux_decision(finished, n, k)[2], False


def drawn(table: RunTable, rows: Sequence[int], q: int, k: int, measure: str, window: int) -> list[list[Drawn]]:
    """Question ``q``'s first k samples of each member in ``rows`` (tie order), scored by ``measure``."""
    out = []
    for m, row in enumerate(rows):
        mine = []
        for j in range(k):
            signals = table.signals[row][q][j] if table.signals else None
            score = sample_score(signals, measure, window) if signals is not None else -np.inf
            mine.append(Drawn(m, int(table.tokens[row, q, j]), int(table.answers[row, q, j]),
                              bool(table.correct[row, q, j]), score))  # fmt: skip
        out.append(mine)
    return out


def bars_for(table: RunTable, rows: Sequence[int], tasks: Sequence[int], k: int, measure: str, window: int,
             precision: float) -> list[float | None]:  # fmt: skip
    """Each member's bar fitted on ``tasks``' answered samples."""
    per_member: list[list[tuple[float, bool]]] = [[] for _ in rows]
    for q in tasks:
        for m, samples in enumerate(drawn(table, rows, q, k, measure, window)):
            per_member[m] += [(d.score, d.right) for d in samples if d.answer >= 0]
    return [fit_bar(pairs, precision) for pairs in per_member]


def score_rule(table: RunTable, rows: Sequence[int], k: int, rule: str, setting: tuple[str, int, float] | None = None,
               tasks: Sequence[int] | None = None) -> StopScore:  # fmt: skip
    """Tokens and accuracy of ``rule`` on ``tasks`` (default: all); a confident rule's bars are fitted on
    the other half of the questions for each half scored."""
    tasks = list(range(len(table.tasks))) if tasks is None else list(tasks)
    measure, window, precision = setting or ("tail", 32, 0.8)
    halves = [[q for q in tasks if half_of(table.tasks[q]) == h] for h in (0, 1)]
    spent, right, sure = [], [], []
    for fit, scored in ((0, 1), (1, 0)):
        bars = bars_for(table, rows, halves[fit], k, measure, window, precision) if rule == "confident" else []
        for q in halves[scored]:
            tokens, ok, ended = replay_question(drawn(table, rows, q, k, measure, window), k, rule, bars)
            spent.append(tokens)
            right.append(ok)
            sure.append(ended)
    label = rule if rule != "confident" else f"confident ({measure}, window {window}, precision {precision:g})"
    return StopScore(label, float(np.mean(spent)), float(np.mean(right)), len(spent), sum(sure),
                     sum(ok for ok, ended in zip(right, sure, strict=True) if ended))  # fmt: skip


def fit_confident(table: RunTable, members: Sequence[str], k: int,
                  tolerance_points: float = 1.0) -> tuple[ConfidenceBars | None, list[StopScore]]:  # fmt: skip
    """The confident rule, for ``members`` decoded in their tie order, that spends the fewest tokens while
    staying within ``tolerance_points`` of the profile without early stop (each setting of GRID scored on the
    half it was not fitted on), with bars fitted on every question; None when none saves tokens over the
    exact rule by MIN_SAVING. Also the scores of drawing every sample, of the exact rule and of the rule chosen."""
    # the tie order, which is also the order `priority` decodes in: best single-sample accuracy first
    by_rank = sorted(zip(accuracy_ranks(table.correct[[table.models.index(m) for m in members]]), members, strict=True))
    members = [m for _, m in by_rank]
    rows = [table.models.index(m) for m in members]
    if not table.signals or any(s is None for r in rows for per in table.signals[r] for s in per[:k]):
        return None, []
    scores = [score_rule(table, rows, k, "none"), score_rule(table, rows, k, "decision")]
    tried = [(score_rule(table, rows, k, "confident", setting), setting) for setting in GRID]
    floor = scores[0].accuracy - tolerance_points / 100
    # giving up exactness is worth it only for a real saving
    cheaper = scores[1].tokens * (1 - MIN_SAVING)
    good = [(s, setting) for s, setting in tried if s.accuracy >= floor - 1e-9 and s.tokens <= cheaper]
    if not good:
        return None, scores
    best, (measure, window, precision) = min(good, key=lambda g: (g[0].tokens, -g[0].accuracy))
    bars = bars_for(table, rows, range(len(table.tasks)), k, measure, window, precision)
    fitted = {m: b for m, b in zip(members, bars, strict=True) if b is not None}
    if not fitted:  # sure on each half, on no member over all the questions: nothing would ever stop
        return None, scores
    return ConfidenceBars(measure, window, precision, fitted), [*scores, best]
