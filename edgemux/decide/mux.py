"""The SLM-MUX rule (pure; ../shared/SLM-MUX.md §1).

Each model's confidence is the share of *all* its samples that gave its majority answer (divide by k, not
by the parsable count); samples with no parsable answer count in the denominator and never form a
majority. The most confident model wins; ties go to the better validation accuracy, then profile order.
Inside one model, tied answers go to the one whose first sample came earliest. Answers are never pooled
across models.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from ..types import Decision, ModelVote, Sample
from .confidence import VoteRule, weigh

__all__ = ["decide", "tally"]

COUNT = VoteRule()


def tally(
    model: str, samples: Sequence[Sample], validation_accuracy: float | None = None, rule: VoteRule = COUNT
) -> ModelVote:
    """One model's vote from its samples (in the order they were drawn: sample index order), each sample
    weighed by ``rule`` (``confidence.weights``; every sample weighs 1 under the default count rule)."""
    ordered = sorted(samples, key=lambda s: s.index)
    weighing = weigh(ordered, rule)
    counts: dict[str, int] = {}
    mass: dict[str, float] = {}
    for s, w in zip(ordered, weighing.weights, strict=True):
        if s.answer is not None:
            counts[s.answer] = counts.get(s.answer, 0) + 1  # dicts keep first-appearance order
            mass[s.answer] = mass.get(s.answer, 0.0) + w
    answer: str | None = None
    best = 0.0
    for candidate, m in mass.items():
        if m > best:  # strict: an equal weight later does not displace the earlier answer
            answer, best = candidate, m
    total = sum(weighing.weights)
    shares = tuple((a, m / total) for a, m in mass.items()) if total else ()
    confidence = best / total if total else 0.0
    return ModelVote(model, tuple(ordered), tuple(counts.items()), answer, confidence, validation_accuracy,
                     weighing.vote, shares, weighing.scores)  # fmt: skip


def _fraction(vote: ModelVote) -> str:
    if vote.vote != "count":
        return f"{vote.confidence:.0%} of the weight"
    best = dict(vote.counts).get(vote.answer, 0) if vote.answer is not None else 0
    return f"{best}/{len(vote.samples)}"


def decide(votes: Sequence[ModelVote]) -> Decision:
    """Pick the winner among ``votes`` (given in profile order) by the SLM-MUX rule, saying why."""
    if not votes:
        raise ValueError("decide() needs at least one model's vote")
    answered = [v for v in votes if v.answer is not None]
    if not answered:
        return Decision(None, None, 0.0, "no_answer", "no model produced a parsable answer", tuple(votes))
    top = max(v.confidence for v in answered)
    tied = [v for v in answered if v.confidence == top]
    winner = tied[0]
    if len(tied) == 1:
        runner_up = max((v for v in answered if v is not winner), key=lambda v: v.confidence, default=None)
        reason = f"{winner.model} was the most confident ({_fraction(winner)} samples agree"
        reason += f"; next best {runner_up.model} at {_fraction(runner_up)})" if runner_up else ")"
        return Decision(winner.answer, winner.model, top, "none", reason, tuple(votes))

    names = ", ".join(v.model for v in tied)
    accuracies: Mapping[str, float | None] = {v.model: v.validation_accuracy for v in tied}
    if all(a is not None for a in accuracies.values()):
        best_acc = max(a for a in accuracies.values() if a is not None)
        best = [v for v in tied if v.validation_accuracy == best_acc]
        if len(best) == 1:
            winner = best[0]
            others = ", ".join(f"{v.model} {v.validation_accuracy:.3f}" for v in tied if v is not winner)
            reason = (
                f"tie at {_fraction(winner)} between {names}; {winner.model} has the best validation accuracy "
                f"({best_acc:.3f} vs {others})"
            )
            return Decision(winner.answer, winner.model, top, "validation_accuracy", reason, tuple(votes))
        winner = best[0]
        reason = f"tie at {_fraction(winner)} between {names}, equal validation accuracy; profile order decides"
    else:
        reason = f"tie at {_fraction(winner)} between {names}; no validation accuracies in the profile, so profile order decides"
    return Decision(winner.answer, winner.model, top, "profile_order", reason, tuple(votes))
