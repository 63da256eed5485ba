"""Exact early stop for the SLM-MUX rule (pure).

While samples are still running, each model's final confidence is bounded: at least its current top
count / k (more samples never lower a count), at most (top count + running) / k (every running sample
joins the top answer). From those bounds:

- a model is **hopeless** once some other model surely beats it: it cannot win, and since answers are
  never pooled its samples cannot change anything; stop all of them;
- the decision is **settled** once one model's majority answer can no longer change and it surely beats
  every other model: stop everything.

"Surely beats" compares the worst case of one against the best case of the other, and uses the profile's
tie order only where that order is fixed for every possible tie (all models have a validation accuracy,
or none does); otherwise a possible tie counts as undecided. Both rules only stop samples whose outcome
cannot change the decision, so the decision with early stop equals the one after all samples finish.

A third rule settles the *answer* sooner (``stop_rule="answer"``): the answer is settled once every model
that could still win could only win with one and the same answer. A model m can win with answer x only
if, with all its running samples giving x, x is its majority and beats every other model's worst case; an
answer none of its samples gave yet counts as "anything". Then the answer is known although the winner or
its confidence may not be: what was decoded so far is itself one possible outcome (the stopped samples
gave nothing), so the decision taken on it has that answer, and its confidence is a lower bound.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction

__all__ = ["ModelProgress", "Outlook", "outlook", "settled_answer", "tie_ranks", "winning_answers"]


@dataclass
class ModelProgress:
    """One model's samples so far: finished answers (None = unparsable) and how many still run."""

    k: int
    answers: list[str | None] = field(default_factory=list)  # finished, by sample index order of finishing
    running: int = 0

    def counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for a in self.answers:
            if a is not None:
                counts[a] = counts.get(a, 0) + 1
        return counts

    def floor(self) -> Fraction:
        """The least final confidence: the current top count can only grow."""
        return Fraction(max(self.counts().values(), default=0), self.k)

    def ceiling(self) -> Fraction:
        """The most final confidence: every running sample joins the current top answer."""
        return Fraction(max(self.counts().values(), default=0) + self.running, self.k)

    def fixed_answer(self) -> str | None:
        """The majority answer if no outcome of the running samples can change it, else None."""
        counts = self.counts()
        if not counts:
            return None
        top_answer, top = max(counts.items(), key=lambda item: item[1])
        rivals = [c for a, c in counts.items() if a != top_answer] + [0]  # 0: an answer not seen yet
        return top_answer if all(c + self.running < top for c in rivals) else None


def tie_ranks(order: Sequence[str], validation_accuracy: Mapping[str, float | None]) -> dict[str, int] | None:
    """Position of each model in the tie-break order (0 = wins ties), when that order is the same for
    every possible tie: all models have a validation accuracy, or none has. Otherwise None."""
    accuracies = [validation_accuracy.get(m) for m in order]
    if all(a is None for a in accuracies):
        return {m: i for i, m in enumerate(order)}
    if all(a is not None for a in accuracies):
        ranked = sorted(order, key=lambda m: (-(validation_accuracy[m] or 0.0), order.index(m)))
        return {m: i for i, m in enumerate(ranked)}
    return None


@dataclass(frozen=True)
class Outlook:
    settled: str | None  # the model that has surely won, with its answer fixed
    hopeless: frozenset[str]  # models that can no longer win
    answer: str | None = None  # the answer, when it can no longer change (whoever wins)


UNSEEN = object()  # "an answer no sample gave yet": it could be anything


def _could_win(m: str, best: int, progress: Mapping[str, ModelProgress], ranks: Mapping[str, int] | None) -> bool:
    """Whether m, ending with ``best`` samples on one answer, can beat every other model's worst case."""
    if best <= 0:
        return False
    mine = Fraction(best, progress[m].k)
    for n, other in progress.items():
        if n == m:
            continue
        floor = other.floor()
        if mine < floor:
            return False
        if mine == floor and ranks is not None and ranks[n] < ranks[m]:
            return False  # a tie goes to n
    return True


def winning_answers(m: str, progress: Mapping[str, ModelProgress], ranks: Mapping[str, int] | None) -> set[object]:
    """The answers m could still win with (UNSEEN: one not given yet). A superset: ties count as possible."""
    p = progress[m]
    counts = p.counts()
    out: set[object] = set()
    for x, count in counts.items():
        best = count + p.running
        if best >= max((c for a, c in counts.items() if a != x), default=0) and _could_win(m, best, progress, ranks):
            out.add(x)
    if p.running and p.running >= max(counts.values(), default=0) and _could_win(m, p.running, progress, ranks):
        out.add(UNSEEN)
    return out


def settled_answer(progress: Mapping[str, ModelProgress], ranks: Mapping[str, int] | None) -> str | None:
    """The answer every possible outcome leads to, if there is one (and some model surely has an answer)."""
    if not any(p.floor() > 0 for p in progress.values()):
        return None
    possible: set[object] = set()
    for m in progress:
        possible |= winning_answers(m, progress, ranks)
        if UNSEEN in possible or len(possible) > 1:
            return None
    (answer,) = possible
    return answer if isinstance(answer, str) else None


def _surely_beats(a: str, b: str, progress: Mapping[str, ModelProgress], ranks: Mapping[str, int] | None) -> bool:
    worst_a, best_b = progress[a].floor(), progress[b].ceiling()
    if worst_a > best_b:
        return True
    # An exact tie at the boundary goes to the better-ranked model, when the tie order is fixed.
    return worst_a == best_b and worst_a > 0 and ranks is not None and ranks[a] < ranks[b]


def outlook(progress: Mapping[str, ModelProgress], ranks: Mapping[str, int] | None) -> Outlook:
    """Which models can be stopped now without changing the decision, and whether it is settled."""
    names = list(progress)
    hopeless = frozenset(b for b in names if any(_surely_beats(a, b, progress, ranks) for a in names if a != b))
    for a in names:
        if progress[a].fixed_answer() is not None and all(
            _surely_beats(a, b, progress, ranks) for b in names if b != a
        ):
            return Outlook(a, hopeless, progress[a].fixed_answer())
    return Outlook(None, hopeless, settled_answer(progress, ranks))
