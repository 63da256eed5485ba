"""Stop rules replayed on recorded runs: what each saves and what it costs in accuracy (issue 26).

Every question of a runs table is decoded again on paper under a rule (``decide/replay.py``: the
``priority`` schedule with ``none``, the exact ``decision`` rule, ``confident`` or ``agree``).
``fit_early_stop`` scores every setting of both early rules and keeps the cheapest within a tolerance of
drawing every sample: a confident rule's bars are fitted on one half of the questions and scored on the
other (votesearch.half_of), both ways, then fitted on every question for the profile; an agree rule has
nothing to fit but its setting. ``fit_trace_kill`` then tries trace kill on top of the rule chosen: each
member's floor fitted on one half, the other half's samples cut where their window confidence falls below
it (a cut sample costs its tokens so far and does not vote); kept only if it saves tokens within the same
tolerance. ``choose_stops`` does both.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeVar

import numpy as np

from ..decide.confidence import sample_score
from ..decide.replay import Drawn, cut_by_kill, replay_question
from ..decide.stoprules import Agreement, ConfidenceBars, TraceKill, fit_bar, fit_floor, rule_label
from .search import RunTable, accuracy_ranks
from .votesearch import half_of

__all__ = [
    "EarlyStop",
    "StopChoice",
    "StopScore",
    "choose_stops",
    "fit_early_stop",
    "fit_trace_kill",
    "rows_in_tie_order",
    "score_rule",
]

MIN_SAVING = 0.05  # an early rule must spend at least 5 % fewer tokens than the exact one
# What the confident rule is tried with: measures that rank a member's samples (issue 25's AUROC), windows
# for answers of 80-400 tokens (mean_logprob has none), and how often a sure sample must have been right.
GRID = [("tail", w, p) for w in (16, 32) for p in (0.8, 0.9, 0.95)] + [
    ("mean_logprob", 16, p) for p in (0.8, 0.9, 0.95)
]
# What the agree rule is tried with: two samples (the cheapest evidence, CoT/PoT agreement) to four, with
# no dissent or one.
AGREEMENTS = [Agreement(need, dissent) for need, dissent in ((2, 0), (3, 0), (3, 1), (4, 0), (4, 1))]
# Trace kill's floors: the share of a member's validation samples (by lowest window confidence) a floor
# would kill, from DeepConf's aggressive 10 % to a mild 2 %.
KILL_PERCENTILES = (2.0, 5.0, 10.0)
T = TypeVar("T")
EarlyStop = ConfidenceBars | Agreement  # a profile's early rule: confident (its bars) or agree


@dataclass(frozen=True)
class StopScore:
    rule: str
    tokens: float  # per question
    accuracy: float
    questions: int
    # questions the rule ended before they were settled (confident, agree), and how many of them were right
    ended_early: int = 0
    right_when_early: int = 0


def rows_in_tie_order(table: RunTable, members: Sequence[str]) -> list[int]:
    """The members' rows in the tie order, which is also the order `priority` decodes in: best single-sample
    accuracy first."""
    by_rank = sorted(zip(accuracy_ranks(table.correct[[table.models.index(m) for m in members]]), members, strict=True))
    return [table.models.index(m) for _, m in by_rank]


def drawn(table: RunTable, rows: Sequence[int], q: int, k: int, measure: str, window: int,
          kill: tuple[TraceKill, Sequence[float | None]] | None = None) -> list[list[Drawn]]:  # fmt: skip
    """Question ``q``'s first k samples of each member in ``rows`` (tie order), scored by ``measure``;
    with ``kill`` (trace kill and each member's floor) a sample is cut where it would be killed."""
    trace_kill, floors = kill if kill is not None else (None, [None] * len(rows))
    out = []
    for m, row in enumerate(rows):
        mine = []
        for j in range(k):
            signals = table.signals[row][q][j] if table.signals else None
            score = sample_score(signals, measure, window) if signals is not None else -np.inf
            sample = Drawn(m, j, int(table.tokens[row, q, j]), int(table.answers[row, q, j]),
                           bool(table.correct[row, q, j]), score)  # fmt: skip
            confidences = signals.confidences if signals is not None else None
            mine.append(cut_by_kill(sample, confidences, trace_kill, floors[m]))
        out.append(mine)
    return out


def floors_for(table: RunTable, rows: Sequence[int], tasks: Sequence[int], k: int,
               kill: TraceKill) -> list[float | None]:  # fmt: skip
    """Each member's kill floor fitted on ``tasks``: the percentile of its samples' lowest window confidence
    (samples shorter than the window are never killed, and do not count)."""
    return [
        fit_floor([sample_score(s, "lowest_group", kill.window) for q in tasks for s in table.signals[row][q][:k]
                   if s is not None and len(s.confidences) >= kill.window], kill.percentile)
        for row in rows
    ]  # fmt: skip


def bars_for(table: RunTable, rows: Sequence[int], tasks: Sequence[int], k: int, measure: str, window: int,
             precision: float) -> list[float | None]:  # fmt: skip
    """Each member's bar fitted on ``tasks``' answered samples."""
    per_member: list[list[tuple[float, bool]]] = [[] for _ in rows]
    for q in tasks:
        for m, samples in enumerate(drawn(table, rows, q, k, measure, window)):
            per_member[m] += [(d.score, d.right) for d in samples if d.answer >= 0]
    return [fit_bar(pairs, precision) for pairs in per_member]


def score_rule(table: RunTable, rows: Sequence[int], k: int, rule: str, setting: tuple[str, int, float] | None = None,
               tasks: Sequence[int] | None = None, agreement: Agreement | None = None,
               kill: TraceKill | None = None) -> StopScore:  # fmt: skip
    """Tokens and accuracy of ``rule`` on ``tasks`` (default: all); a confident rule's bars, and trace
    kill's floors, are fitted on the other half of the questions for each half scored."""
    tasks = list(range(len(table.tasks))) if tasks is None else list(tasks)
    agreement = agreement or Agreement()
    measure, window, precision = setting or ("tail", 32, 0.8)
    halves = [[q for q in tasks if half_of(table.tasks[q]) == h] for h in (0, 1)]
    spent, right, early = [], [], []
    for fit, scored in ((0, 1), (1, 0)):
        bars = bars_for(table, rows, halves[fit], k, measure, window, precision) if rule == "confident" else []
        cuts = (kill, floors_for(table, rows, halves[fit], k, kill)) if kill is not None else None
        for q in halves[scored]:
            samples = drawn(table, rows, q, k, measure, window, cuts)
            tokens, ok, ended, _ = replay_question(samples, k, rule, bars, agreement)
            spent.append(tokens)
            right.append(ok)
            early.append(ended)
    label = rule_label(rule, ConfidenceBars(measure, window, precision), agreement)
    label = f"{kill.describe()} + {label}" if kill is not None else label
    return StopScore(label, float(np.mean(spent)), float(np.mean(right)), len(spent), sum(early),
                     sum(ok for ok, ended in zip(right, early, strict=True) if ended))  # fmt: skip


def fit_early_stop(table: RunTable, members: Sequence[str], k: int,
                   tolerance_points: float = 1.0) -> tuple[EarlyStop | None, list[StopScore]]:  # fmt: skip
    """The early rule, for ``members`` decoded in their tie order, that spends the fewest tokens while
    staying within ``tolerance_points`` of the profile without early stop: every agree setting, and, where
    the runs have token signals, every confident setting of GRID (scored on the half its bars were not
    fitted on; the bars kept are fitted on every question). None when none saves MIN_SAVING of the exact
    rule's tokens. Also the scores of drawing every sample, of the exact rule and of each rule's best."""
    rows = rows_in_tie_order(table, members)
    scores = [score_rule(table, rows, k, "none"), score_rule(table, rows, k, "decision")]
    floor = scores[0].accuracy - tolerance_points / 100
    cheaper = scores[1].tokens * (1 - MIN_SAVING)  # giving up exactness is worth it only for a real saving

    def cheapest(tried: list[tuple[StopScore, T]]) -> tuple[StopScore, T] | None:
        good = [t for t in tried if t[0].accuracy >= floor - 1e-9 and t[0].tokens <= cheaper]
        return min(good, key=lambda t: (t[0].tokens, -t[0].accuracy)) if good else None

    found: list[tuple[StopScore, EarlyStop]] = []
    if agree := cheapest([(score_rule(table, rows, k, "agree", agreement=a), a) for a in AGREEMENTS]):
        found.append(agree)
    if _has_signals(table, rows, k) and (
        confident := cheapest([(score_rule(table, rows, k, "confident", g), g) for g in GRID])
    ):
        bars = _bars(table, rows, k, confident[1])
        if bars.bars:  # sure on each half, on no member over all the questions: nothing would ever stop
            found.append((confident[0], bars))
    found.sort(key=lambda f: (f[0].tokens, -f[0].accuracy))
    return (found[0][1] if found else None), [*scores, *(score for score, _ in found)]


def _bars(table: RunTable, rows: Sequence[int], k: int, setting: tuple[str, int, float]) -> ConfidenceBars:
    """The confident rule with ``setting``, its bars fitted on every question (a member never sure gets none)."""
    measure, window, precision = setting
    bars = bars_for(table, rows, range(len(table.tasks)), k, measure, window, precision)
    members = [table.models[r] for r in rows]
    return ConfidenceBars(
        measure, window, precision, {m: b for m, b in zip(members, bars, strict=True) if b is not None}
    )


def fit_trace_kill(table: RunTable, members: Sequence[str], k: int, early: EarlyStop | None,
                   tolerance_points: float = 1.0) -> tuple[TraceKill | None, list[StopScore]]:  # fmt: skip
    """Trace kill on top of ``early`` (None: the exact rule) at each of KILL_PERCENTILES: the cheapest within
    ``tolerance_points`` of drawing every sample that saves MIN_SAVING of the rule's tokens without it, its
    floors fitted on every question (None when none does, or the runs have no token signals). Also its
    score (or, when none is kept, the best tried)."""
    rows = rows_in_tie_order(table, members)
    if not _has_signals(table, rows, k):
        return None, []
    rule, setting, agreement = _rule_of(early)
    base = score_rule(table, rows, k, rule, setting, agreement=agreement)
    floor = score_rule(table, rows, k, "none").accuracy - tolerance_points / 100
    tried = [(score_rule(table, rows, k, rule, setting, agreement=agreement, kill=TraceKill(percentile=p)), p)
             for p in KILL_PERCENTILES]  # fmt: skip
    good = [t for t in tried if t[0].accuracy >= floor - 1e-9 and t[0].tokens <= base.tokens * (1 - MIN_SAVING)]
    if not good:
        return None, [max(tried, key=lambda t: (t[0].accuracy, -t[0].tokens))[0]]
    score, percentile = min(good, key=lambda t: (t[0].tokens, -t[0].accuracy))
    kill = TraceKill(percentile=percentile)
    floors = floors_for(table, rows, range(len(table.tasks)), k, kill)
    named = {table.models[r]: f for r, f in zip(rows, floors, strict=True) if f is not None}
    return TraceKill(kill.window, percentile, named), [score]


@dataclass(frozen=True)
class StopChoice:
    """What ``profile build`` chose for stopping: the early rule (None: exact), trace kill (None: off), and
    every rule it scored."""

    rule: EarlyStop | None = None
    kill: TraceKill | None = None
    scores: Sequence[StopScore] = ()


def choose_stops(table: RunTable, members: Sequence[str], k: int) -> StopChoice:
    early, scores = fit_early_stop(table, members, k)
    kill, kill_scores = fit_trace_kill(table, members, k, early)
    return StopChoice(early, kill, [*scores, *kill_scores])


def _has_signals(table: RunTable, rows: Sequence[int], k: int) -> bool:
    """Whether every sample of these members carries token signals (the confident rule and trace kill need them)."""
    return bool(table.signals) and not any(s is None for r in rows for per in table.signals[r] for s in per[:k])


def _rule_of(early: EarlyStop | None) -> tuple[str, tuple[str, int, float] | None, Agreement | None]:
    """(rule, confident setting, agreement) for score_rule."""
    if isinstance(early, Agreement):
        return "agree", None, early
    if isinstance(early, ConfidenceBars):
        return "confident", (early.measure, early.window, early.precision), None
    return "decision", None, None
