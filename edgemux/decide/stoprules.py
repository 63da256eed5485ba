"""Stop rules that end a question before it is settled: ``confident`` and ``agree`` (pure; issue 26).

The exact rules (earlystop.py) stop only what can no longer change the answer. Two rules also stop
everything earlier, each once the answer SLM-MUX would give on the samples finished so far is backed by:

- ``confident``: a sample that just finished and is *sure*: its confidence (``confidence.sample_score``) is
  at least its member's bar;
- ``agree``: ``need`` finished samples, pooled over the members, giving that answer while at most
  ``dissent`` give another (ESC's and CoT/PoT agreement's rule; unparsable samples neither agree nor
  dissent).

The answer is then still SLM-MUX's over the samples that finished; what is given up is the chance that
the samples not drawn would have changed it.

Beside any rule, **trace kill** (``TraceKill``, DeepConf's online filter) stops one running sample, not
the question: once the mean token confidence of its last ``window`` tokens falls below its member's floor,
it is cut there and does not vote. A member's floor is a low percentile of its validation samples' lowest
window confidence (``fit_floor``), so about that share of samples like its validation ones is killed.

A member's bar is fitted on validation runs, never on the question being answered: the lowest score
above which that member's samples were right at least ``precision`` of the time (``fit_bar``). A member
whose samples never reach that precision gets no bar (it never stops a question).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar, get_args

from ..types import Sample
from .confidence import MEASURES, sample_score

__all__ = [
    "DEFAULT_STOP_RULE",
    "EARLY_RULES",
    "MIN_SAMPLES",
    "STOP_RULES",
    "Agreement",
    "ConfidenceBars",
    "KILL_WINDOW",
    "StopRule",
    "TraceKill",
    "fit_bar",
    "fit_floor",
    "rule_label",
    "window_below",
    "early_stop_calibration",
]

# "decision": stop only what cannot change the winner, its answer or its confidence (the winner's samples
# always finish); "answer": also stop once the answer is settled whoever wins (the confidence reported is
# then a lower bound). Both are exact (earlystop.py). "confident" and "agree": "decision", and also stop
# everything once the current answer is backed by a sure sample, or by enough agreeing samples (this module).
StopRule = Literal["decision", "answer", "confident", "agree"]
STOP_RULES: tuple[str, ...] = get_args(StopRule)
DEFAULT_STOP_RULE: StopRule = "decision"
EARLY_RULES = ("confident", "agree")  # the rules that may end a question before it is settled

T = TypeVar("T")

MIN_SAMPLES = 5  # a bar needs at least this many validation samples above it
# Trace kill's window: DeepConf's group (2,048 tokens on 8B reasoning traces) scaled to answers of 30-400
# tokens; the confidence measures' AUROC on the GSM8K runs (RESULTS) barely moves between 8 and 32.
KILL_WINDOW = 16


@dataclass(frozen=True)
class ConfidenceBars:
    """Per member, the score at which one of its samples is sure enough to answer (see the module)."""

    measure: str = "tail"
    window: int = 32
    precision: float = 0.8  # what a sample above its bar was right on validation runs, at least
    bars: Mapping[str, float] = field(default_factory=dict)  # member -> bar; absent: that member never stops

    def __post_init__(self) -> None:
        if self.measure not in MEASURES:
            raise ValueError(f"unknown measure {self.measure!r}; known: {', '.join(MEASURES)}")
        if self.window < 1 or not 0.0 < self.precision <= 1.0:
            raise ValueError("window must be at least 1 and precision in (0, 1]")

    def is_sure(self, sample: Sample) -> bool:
        """Whether ``sample`` answers alone: it has an answer, signals, and a score at its member's bar."""
        bar = self.bars.get(sample.model)
        if bar is None or sample.answer is None or sample.signals is None:
            return False
        return sample_score(sample.signals, self.measure, self.window) >= bar


@dataclass(frozen=True)
class Agreement:
    """The ``agree`` rule: ``need`` finished samples give one answer and at most ``dissent`` another."""

    need: int = 3
    dissent: int = 1

    def __post_init__(self) -> None:
        if self.need < 2 or not 0 <= self.dissent < self.need:
            raise ValueError("agreement needs at least 2 samples, and fewer dissenting ones than agreeing")

    def agreed(self, answers: Sequence[T | None]) -> T | None:
        """The answer ``answers`` (finished samples, pooled; None: unparsable) agree on, else None. Among
        equally common answers the first given wins (they cannot both have ``need`` with fewer dissenting)."""
        given = [a for a in answers if a is not None]
        if not given:
            return None
        top = max(dict.fromkeys(given), key=given.count)
        agreeing = given.count(top)
        return top if agreeing >= self.need and len(given) - agreeing <= self.dissent else None

    def describe(self) -> str:
        against = "none dissents" if not self.dissent else f"at most {self.dissent} dissent{'s' * (self.dissent == 1)}"
        return f"{self.need} samples agree, {against}"


@dataclass(frozen=True)
class TraceKill:
    """Per member, the floor below which a running sample's window confidence kills it (see the module)."""

    window: int = KILL_WINDOW
    percentile: float = 10.0  # what the floors were fitted at: about this share of samples is killed
    floors: Mapping[str, float] = field(default_factory=dict)  # member -> floor; absent: never killed

    def __post_init__(self) -> None:
        if self.window < 1 or not 0.0 < self.percentile < 100.0:
            raise ValueError("window must be at least 1 and percentile in (0, 100)")

    def of(self, member: str) -> tuple[float, int] | None:
        """What the engine is given for ``member``'s samples: (its floor, the window); None: never killed."""
        floor = self.floors.get(member)
        return None if floor is None else (floor, self.window)

    def kill_point(self, confidences: Sequence[float], floor: float) -> int | None:
        """After how many tokens a sample with these token confidences is killed; None: never."""
        n_tokens = len(confidences)
        return next(
            (n for n in range(self.window, n_tokens + 1) if window_below(confidences, n, floor, self.window)), None
        )

    def to_dict(self) -> dict[str, Any]:
        """As a profile's ``kill:`` mapping (floors to 4 decimals, as ``profile build`` writes them)."""
        floors = {m: round(f, 4) for m, f in self.floors.items()}
        return {"window": self.window, "percentile": self.percentile, "floors": floors}

    def describe(self) -> str:
        return f"trace kill (window {self.window}, floors at percentile {self.percentile:g})"


def window_below(confidences: Sequence[float], n: int, floor: float, window: int) -> bool:
    """Whether the mean confidence of tokens n-window+1 .. n is below ``floor`` (never before ``window``
    tokens): a sample is killed at its ``n``-th token. The engine asks it after every token."""
    return n >= window and sum(confidences[n - window : n]) < floor * window


def fit_floor(lowest: Sequence[float], percentile: float) -> float | None:
    """A member's kill floor: the ``percentile``-th of its validation samples' lowest window confidences
    (nearest rank, rounding down); None without MIN_SAMPLES of them."""
    ranked = sorted(x for x in lowest if math.isfinite(x))
    if len(ranked) < MIN_SAMPLES:
        return None
    return ranked[int(percentile / 100 * (len(ranked) - 1))]


def fit_bar(scored: Sequence[tuple[float, bool]], precision: float) -> float | None:
    """The lowest score s such that the samples scoring at least s were right at least ``precision`` of the
    time, with at least MIN_SAMPLES of them; None when no score is that good. ``scored``: (score, right)."""
    bar: float | None = None
    right = 0
    ranked = sorted((s for s in scored if math.isfinite(s[0])), key=lambda s: -s[0])
    for i, (score, ok) in enumerate(ranked, 1):
        right += ok
        at_end_of_ties = i == len(ranked) or ranked[i][0] < score  # a bar admits every sample at its score
        if at_end_of_ties and i >= MIN_SAMPLES and right / i >= precision:
            bar = score
    return bar


def rule_label(rule: str, bars: ConfidenceBars | None = None, agreement: Agreement | None = None) -> str:
    """A stop rule as profiles, ``eval`` and ``profile show`` name it, with its setting where it has one."""
    if rule == "confident" and bars is not None:
        return f"confident ({bars.measure}, window {bars.window}, precision {bars.precision:g})"
    if rule == "agree" and agreement is not None:
        return f"agree ({agreement.describe()})"
    return rule


EARLY_STOP_WORDS = {"confident": "on a sure sample", "agree": "on agreeing samples"}


def early_stop_calibration(measured: Mapping[str, Any], rule: str) -> tuple[dict[str, Any], str]:
    """What an answer ``rule`` (confident, agree) ended early is worth, from the profile's replay of that
    rule on validation runs (``measured.stop_rules``): as JSON and in words."""
    words = EARLY_STOP_WORDS[rule]
    row = next((r for r in measured.get("stop_rules", []) if str(r.get("rule", "")).startswith(rule)), None)
    answered = int(row.get("ended_early", row.get("ended_by_a_sure_sample", 0))) if row else 0  # the old name too
    if row is None or not answered:
        return {"stop": rule, "answered": 0}, f"answered early {words}; that is not calibrated"
    right = int(row["right_when_ended_so"])
    where = f"{measured.get('tasks', '?')} validation questions ({measured.get('runs', 'the profile runs')})"
    return (
        {"stop": rule, "answered": answered, "right": right, "accuracy": round(right / answered, 4)},
        f"answered early {words}: on {where}, answers ended that way were right "
        f"{100 * right / answered:.0f} % of the time ({right} of {answered})",
    )
