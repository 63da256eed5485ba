"""Confidence an app can act on: how often SLM-MUX answers were right at each level of agreement, measured
on validation runs, stored in the profile, and said with every answer (pure).

A profile's ``measured.calibration`` lists, for its members at its k, each level of the winner's agreement
(``agreeing`` of ``k`` samples) with how many validation questions were answered at that level and how
many of those were right. ``risk_coverage`` is the same data read as a threshold: answer only at or above a
level, and see what share of the questions is answered and how accurately.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .search import RunTable

__all__ = ["CoveragePoint", "Level", "calibration_block", "levels_of", "measure", "risk_coverage", "sentence"]


@dataclass(frozen=True)
class Level:
    agreeing: int  # the winner's top count
    k: int
    answered: int  # validation questions decided at this level
    right: int

    @property
    def confidence(self) -> float:
        return self.agreeing / self.k

    @property
    def accuracy(self) -> float | None:
        return self.right / self.answered if self.answered else None

    def to_dict(self) -> dict[str, Any]:
        accuracy = self.accuracy
        return {"agreeing": self.agreeing, "k": self.k, "answered": self.answered, "right": self.right,
                "accuracy": None if accuracy is None else round(accuracy, 4)}  # fmt: skip


def measure(table: RunTable, members: Sequence[str], k: int) -> list[Level]:
    """The SLM-MUX decision of ``members`` on each task from their first k recorded samples (as `eval`
    scores them), grouped by the winner's agreement: one Level per count k, k-1, …, 0 (0: no answer)."""
    import numpy as np  # numpy and the search only for `profile build`; `ask` reads the stored levels

    from .search import majority, mux_pick

    rows = [table.models.index(m) for m in members]
    confidence, right = majority(table.answers[rows, :, :k], table.correct[rows, :, :k])
    accuracy = table.correct[rows].mean(axis=(1, 2))
    ranks = list(np.argsort(-accuracy, kind="stable").argsort())  # ties to the better member, as the profile
    winner = mux_pick(confidence, ranks)
    tasks = np.arange(confidence.shape[1])
    agreeing = np.rint(confidence[winner, tasks] * k).astype(int)
    won_right = right[winner, tasks]
    return [
        Level(c, k, int((agreeing == c).sum()), int((won_right & (agreeing == c)).sum())) for c in range(k, -1, -1)
    ]


def calibration_block(levels: Sequence[Level], *, runs: str, tasks: int) -> str:
    """A profile's ``measured:`` section holding only the calibration (for a hand-written profile), as YAML
    to append to its file so that its comments and layout stay as they were."""
    rows = "".join(
        f"    - {{agreeing: {lv.agreeing}, k: {lv.k}, answered: {lv.answered}, right: {lv.right}, "
        f"accuracy: {'null' if lv.accuracy is None else round(lv.accuracy, 4)}}}\n"
        for lv in levels
    )
    return f"measured:\n  runs: {runs}\n  tasks: {tasks}\n  calibration:\n{rows}"


def levels_of(measured: Mapping[str, Any], k: int) -> list[Level]:
    """The levels a profile's ``measured`` section stores for this k (none for another k: not calibrated)."""
    out = []
    for row in measured.get("calibration") or []:
        if isinstance(row, dict) and row.get("k") == k:
            out.append(Level(int(row["agreeing"]), k, int(row["answered"]), int(row["right"])))
    return out


def sentence(level: Level, measured: Mapping[str, Any]) -> str:
    """The calibration of one answer, in words."""
    where = f"{measured.get('tasks', '?')} validation questions ({measured.get('runs', 'the profile runs')})"
    if not level.answered:
        return f"on {where}, no answer had {level.agreeing} of {level.k} agreeing: this confidence is not calibrated"
    return (
        f"on {where}, answers with {level.agreeing} of {level.k} agreeing were right "
        f"{100 * (level.accuracy or 0):.0f} % of the time ({level.right} of {level.answered})"
    )


@dataclass(frozen=True)
class CoveragePoint:
    threshold: float  # answer only when the confidence is at least this
    coverage: float  # share of the questions answered
    accuracy: float | None  # of the answered ones
    answered: int
    right: int


def risk_coverage(confidences: Sequence[float], right: Sequence[bool]) -> list[CoveragePoint]:
    """For every confidence seen (high to low): answer only at or above it. The last point answers all."""
    points = []
    n = len(confidences)
    for threshold in sorted(set(confidences), reverse=True):
        chosen = [r for c, r in zip(confidences, right, strict=True) if c >= threshold]
        answered, correct = len(chosen), sum(chosen)
        points.append(CoveragePoint(threshold, answered / n if n else 0.0, correct / answered if answered else None,
                                    answered, correct))  # fmt: skip
    return points
