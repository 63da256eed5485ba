"""One question's recorded samples decoded again on paper under a stop rule (pure; issue 26).

The scheduler's ``priority`` policy, replayed: each member's k samples decode as one batch, the member
that wins ties first. After each sample finishes the stop rule looks at the finished ones:

- ``none``: every sample is drawn;
- ``decision`` (exact): a member that can no longer win is stopped; once the decision is settled the
  others are stopped and the winner's own samples finish (earlystop.py);
- ``confident``: ``decision``, and once a finished sample is sure by its member's bar and gives the answer
  SLM-MUX gives on the finished samples, everything stops (stoprules.py), unless the decision is settled
  already (then the exact stop);
- ``agree``: the same, once the finished samples agree on that answer (``stoprules.Agreement``).

The answer is SLM-MUX's over the samples that finished. A cancelled sample costs the tokens it had drawn.
``selection/stopsearch.py`` fits the early rules with it; ``edgemux eval`` reports each rule with it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import NamedTuple

from .earlystop import ModelProgress, outlook
from .stoprules import Agreement, TraceKill

__all__ = ["Drawn", "Replayed", "cut_by_kill", "mux_decision", "replay_question"]


@dataclass(frozen=True)
class Drawn:
    """One recorded sample: its member (position in the tie order), index, length, answer id (-1: none)."""

    member: int
    index: int  # the order it was drawn in: tied answers inside a member go to the earliest (mux.tally)
    tokens: int
    answer: int
    right: bool
    score: float


def cut_by_kill(d: Drawn, confidences: Sequence[float] | None, kill: TraceKill | None, floor: float | None) -> Drawn:
    """The sample as trace kill leaves it: cut where its window confidence falls below ``floor``, with no
    answer (it does not vote); as it was when it is never killed, or has no floor or no confidences."""
    cut = kill.kill_point(confidences, floor) if kill and floor is not None and confidences is not None else None
    return d if cut is None else replace(d, tokens=cut, answer=-1, right=False)


class Replayed(NamedTuple):
    tokens: int  # spent on the question
    right: bool
    early: bool  # an early rule (confident, agree) ended it before it was settled
    answer: int  # the answer id SLM-MUX gave on the finished samples (-1: none)


def mux_decision(finished: Sequence[Drawn], n_members: int, k: int) -> tuple[int, int, bool]:
    """SLM-MUX over the finished samples: (winner, answer, right); confidence = top count / k, ties to the
    answer with the earliest sample (by index, as ``mux.tally``: not the first to finish) and to the
    better-ranked member; (-1, -1, False) when nothing answered."""
    best: tuple[float, int, int, bool] | None = None
    in_draw_order = sorted(finished, key=lambda d: d.index)
    for m in range(n_members):
        counts: dict[int, int] = {}
        for d in in_draw_order:
            if d.member == m and d.answer >= 0:
                counts[d.answer] = counts.get(d.answer, 0) + 1
        if not counts:
            continue
        top = max(counts, key=lambda a: counts[a])  # the earliest among equals: dicts keep insertion order
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


def replay_question(samples: Sequence[Sequence[Drawn]], k: int, rule: str, bars: Sequence[float | None] = (),
                    agreement: Agreement | None = None) -> Replayed:  # fmt: skip
    """What one question costs and answers, decoding each member's k samples as a batch in tie order under
    ``rule`` (none, decision, confident, agree; ``bars``: each member's, for confident; ``agreement``: the
    agree rule's, its default if None)."""
    agreement = agreement or Agreement()
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
            if winner is None and _ends_early(rule, d, finished, bars[m] if bars else None, agreement, n, k):
                spent += sum(min(o.tokens, d.tokens) for o in wave)  # the others of its batch stop at its length
                _, answer, right = mux_decision(finished, n, k)
                return Replayed(spent, right, True, answer)
            stopped |= hopeless | ({i for i in range(n) if i != winner} if winner is not None else set())
            if m in stopped:
                cut = d.tokens
                break
        spent += sum(d.tokens if cut is None else min(d.tokens, cut) for d in wave)
        if cut is not None:
            finished = [f for f in finished if f.member != m or f.tokens <= cut]
    _, answer, right = mux_decision(finished, n, k)
    return Replayed(spent, right, False, answer)


def _ends_early(rule: str, last: Drawn, finished: Sequence[Drawn], bar: float | None, agreement: Agreement,
                n_members: int, k: int) -> bool:  # fmt: skip
    """Whether ``rule`` ends the question now that ``last`` finished (it is not settled yet)."""
    if rule == "confident":
        sure = bar is not None and last.answer >= 0 and last.score >= bar
        return sure and mux_decision(finished, n_members, k)[1] == last.answer
    if rule == "agree":
        agreed = agreement.agreed([d.answer if d.answer >= 0 else None for d in finished])
        return agreed is not None and mux_decision(finished, n_members, k)[1] == agreed
    return False
