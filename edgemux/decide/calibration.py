"""Confidence an app can act on: how often SLM-MUX answers were right at each level of agreement, measured
on validation runs, stored in the profile, and said with every answer (pure).

A profile's ``measured.calibration`` lists, for its members at its k, each level of the winner's agreement
with how many validation questions were answered at that level and how many of those were right. Under
the count rule a level is ``agreeing`` of ``k`` samples (a ``Level``); under a weighted or filtered vote
the winner's share of its weight is continuous, so a level is a range of shares (a ``ShareBin``, edges
``SHARE_EDGES``). ``risk_coverage`` is the same data read as a threshold: answer only at or above a level,
and see what share of the questions is answered and how accurately. ``calibration_error`` says how far
levels measured on some questions are from what happens on others (the expected calibration error).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "SHARE_EDGES",
    "CoveragePoint",
    "Level",
    "ShareBin",
    "calibration_block",
    "calibration_error",
    "level_of",
    "levels_of",
    "risk_coverage",
    "sentence",
    "share_bins",
]

# A weighted share's levels: [0, 0.5), [0.5, 0.7), [0.7, 0.9), [0.9, 1) and exactly 1 (every sample agreeing,
# or every kept one): few enough that each holds dozens of validation questions.
SHARE_EDGES = (0.5, 0.7, 0.9, 1.0)


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

    def holds(self, confidence: float) -> bool:
        return self.agreeing == round(confidence * self.k)

    def describe(self) -> str:
        return f"answers with {self.agreeing} of {self.k} agreeing"

    def short(self) -> str:
        return f"{self.agreeing}/{self.k}"


@dataclass(frozen=True)
class ShareBin:
    """Under a weighted or filtered ``vote``: answers whose winner held a share of its weight in
    [low, high) (the top bin is exactly 1)."""

    vote: str
    k: int
    low: float
    high: float
    answered: int
    right: int

    @property
    def accuracy(self) -> float | None:
        return self.right / self.answered if self.answered else None

    def to_dict(self) -> dict[str, Any]:
        accuracy = self.accuracy
        return {"vote": self.vote, "k": self.k, "share_from": self.low, "share_to": self.high,
                "answered": self.answered, "right": self.right,
                "accuracy": None if accuracy is None else round(accuracy, 4)}  # fmt: skip

    def holds(self, confidence: float) -> bool:
        if self.low == self.high:
            return confidence >= self.low - 1e-9
        return self.low - 1e-9 <= confidence < self.high - 1e-9

    def describe(self) -> str:
        if self.low == self.high:
            return f"answers whose winner held all of its {self.vote} vote"
        return f"answers whose winner held {100 * self.low:.0f}–{100 * self.high:.0f} % of its {self.vote} vote"

    def short(self) -> str:
        return "100%" if self.low == self.high else f"{100 * self.low:.0f}–{100 * self.high:.0f}%"


Calibrated = Level | ShareBin


def share_bins(vote: str, k: int) -> list[ShareBin]:
    """The empty levels of a weighted or filtered vote, highest first (edges ``SHARE_EDGES``)."""
    edges = (0.0, *SHARE_EDGES)
    spans = [(edges[i], edges[i + 1]) for i in range(len(edges) - 1)] + [(1.0, 1.0)]
    return [ShareBin(vote, k, low, high, 0, 0) for low, high in reversed(spans)]


def calibration_error(fitted: Sequence[Calibrated], held_out: Sequence[Calibrated]) -> float:
    """Expected calibration error: over the held-out questions, the mean gap between the accuracy the
    fitted levels promise and the accuracy each level had (levels the fit never saw promise nothing and
    count in full)."""
    total = sum(lv.answered for lv in held_out)
    if not total:
        return 0.0
    gap = 0.0
    for promised, seen in zip(fitted, held_out, strict=True):
        if seen.answered:
            gap += seen.answered * abs((promised.accuracy or 0.0) - (seen.accuracy or 0.0))
    return gap / total


def calibration_block(levels: Sequence[Calibrated], *, runs: str, tasks: int) -> str:
    """A profile's ``measured:`` section holding only the calibration (for a hand-written profile), as YAML
    to append to its file so that its comments and layout stay as they were."""
    rows = "".join(
        "    - {"
        + ", ".join(f"{key}: {'null' if value is None else value}" for key, value in lv.to_dict().items())
        + "}\n"
        for lv in levels
    )
    return f"measured:\n  runs: {runs}\n  tasks: {tasks}\n  calibration:\n{rows}"


def levels_of(measured: Mapping[str, Any], k: int, vote: str = "count") -> list[Calibrated]:
    """The levels a profile's ``measured`` section stores for this k and vote (none for another k or
    vote: not calibrated)."""
    out: list[Calibrated] = []
    for row in measured.get("calibration") or []:
        if not isinstance(row, dict) or row.get("k") != k or row.get("vote", "count") != vote:
            continue
        if vote == "count":
            out.append(Level(int(row["agreeing"]), k, int(row["answered"]), int(row["right"])))
        else:
            out.append(ShareBin(vote, k, float(row["share_from"]), float(row["share_to"]), int(row["answered"]),
                                int(row["right"])))  # fmt: skip
    return out


def level_of(measured: Mapping[str, Any], k: int, vote: str, confidence: float) -> Calibrated | None:
    """The stored level an answer of this confidence falls in."""
    return next((lv for lv in levels_of(measured, k, vote) if lv.holds(confidence)), None)


def sentence(level: Calibrated, measured: Mapping[str, Any]) -> str:
    """The calibration of one answer, in words."""
    where = f"{measured.get('tasks', '?')} validation questions ({measured.get('runs', 'the profile runs')})"
    if not level.answered:
        return f"on {where}, no validation answer was among {level.describe()}: this confidence is not calibrated"
    return (
        f"on {where}, {level.describe()} were right "
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
