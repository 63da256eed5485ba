"""Stop rules replayed on recorded runs: what each saves and what it costs in accuracy (issue 26).

Every question of a runs table is decoded again on paper under a rule (``decide/replay.py``: the
``priority`` schedule with ``none``, the exact ``decision`` rule or ``confident``). ``fit_confident``
chooses the confident rule's measure, window and precision on one half of the questions and scores it on
the other (votesearch.half_of), both ways; then fits the bars on every question.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..decide.confidence import sample_score
from ..decide.replay import Drawn, replay_question
from ..decide.stoprules import ConfidenceBars, fit_bar
from .search import RunTable, accuracy_ranks
from .votesearch import half_of

__all__ = ["StopScore", "fit_confident", "score_rule"]

MIN_SAVING = 0.05  # a confident rule must spend at least 5 % fewer tokens than the exact one
# What the confident rule is tried with: measures that rank a member's samples (issue 25's AUROC), windows
# for answers of 80-400 tokens (mean_logprob has none), and how often a sure sample must have been right.
GRID = [("tail", w, p) for w in (16, 32) for p in (0.8, 0.9, 0.95)] + [
    ("mean_logprob", 16, p) for p in (0.8, 0.9, 0.95)
]


@dataclass(frozen=True)
class StopScore:
    rule: str
    tokens: float  # per question
    accuracy: float
    questions: int
    sure_answered: int = 0  # questions a sure sample ended (confident), and how many of those were right
    sure_right: int = 0


def drawn(table: RunTable, rows: Sequence[int], q: int, k: int, measure: str, window: int) -> list[list[Drawn]]:
    """Question ``q``'s first k samples of each member in ``rows`` (tie order), scored by ``measure``."""
    out = []
    for m, row in enumerate(rows):
        mine = []
        for j in range(k):
            signals = table.signals[row][q][j] if table.signals else None
            score = sample_score(signals, measure, window) if signals is not None else -np.inf
            mine.append(Drawn(m, j, int(table.tokens[row, q, j]), int(table.answers[row, q, j]),
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
            tokens, ok, ended, _ = replay_question(drawn(table, rows, q, k, measure, window), k, rule, bars)
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
