"""The decode loop: one loop owns every model's batch for a question and steps them in turn.

Policies decide the order: ``interleave`` starts every model that fits and steps them round-robin (so
the live view moves for all of them); ``priority`` runs one model at a time, best tie rank first, so that
a confident favourite can settle the decision before the others start. With early stop on, after every
finished sample the loop asks ``earlystop.outlook`` which models can no longer matter and cancels them
(freeing their sequences), and once the decision is settled stops every model but the winner, whose
samples finish so that its confidence is exact.
Models are started through an injected ``start`` (which leases and loads) and released through ``finish``.
``remote`` members (another server decodes them) start at once whatever the policy: their requests are in
flight while the local models decode, and early stop cancels them like any other.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Generator, Iterator, Mapping, Sequence
from dataclasses import replace
from typing import Literal, get_args

from ..decide.confidence import VoteRule
from ..decide.earlystop import ModelProgress, outlook
from ..decide.mux import COUNT, decide, tally
from ..decide.stoprules import DEFAULT_STOP_RULE, STOP_RULES, ConfidenceBars, StopRule
from ..errors import BudgetError
from ..events import DecodeProgress, Event, ModelFinished, ModelStopped, SampleFinished
from ..types import BatchStep, FinishedSequence, ModelVote, Sample

__all__ = ["DEFAULT_POLICY", "DEFAULT_STOP_RULE", "POLICIES", "STOP_RULES", "Policy", "StopRule", "decode"]

log = logging.getLogger("edgemux.scheduler")

Policy = Literal["priority", "staged", "interleave"]
POLICIES: tuple[str, ...] = get_args(Policy)
DEFAULT_POLICY: Policy = "priority"

# start(model, sample indices): lease the model and begin decoding those samples (None: it does not fit now)
Starter = Callable[[str, Sequence[int]], Generator[Event, None, "Iterator[BatchStep] | None"]]


def decode(
    order: Sequence[str],
    *,
    k: int,
    start: Starter,
    finish: Callable[[str], None],
    make_sample: Callable[[str, FinishedSequence], Sample],
    validation_accuracy: Callable[[str], float | None],
    ranks: dict[str, int] | None,
    policy: str = DEFAULT_POLICY,
    early_stop: bool = True,
    stop_rule: str = DEFAULT_STOP_RULE,
    remote: frozenset[str] = frozenset(),
    rule: VoteRule = COUNT,
    bars: ConfidenceBars | None = None,
) -> Generator[Event, None, dict[str, ModelVote]]:
    """Yield events while the models in ``order`` draw k samples each; return every model's vote, its
    samples weighed by ``rule``. Early stop reasons about counts: the runtime turns it off for other rules.
    ``bars``: the members' calibrated bars, which the ``confident`` stop rule needs."""
    if stop_rule == "confident" and bars is None:
        raise ValueError("the confident stop rule needs the members' confidence bars")
    loop = _Loop(order, k, start, finish, make_sample, validation_accuracy, policy, remote, rule)
    try:
        while loop.pending or loop.running:
            yield from loop.start_what_fits()
            for model in list(loop.running):
                if model in loop.running:  # not stopped earlier in this round
                    finished = yield from loop.step(model)
                    if early_stop and finished:
                        yield from _apply_stop_rule(loop, ranks, stop_rule, bars, finished)
    finally:
        loop.cancel_running()  # the caller walked away, or an error: cancel what still decodes
    return loop.votes


class _Loop:
    """The state of one question's decode loop: which models wait, run or have voted, each one's samples,
    its progress (for early stop) and the samples its next wave draws."""

    def __init__(self, order: Sequence[str], k: int, start: Starter, finish: Callable[[str], None],
                 make_sample: Callable[[str, FinishedSequence], Sample],
                 validation_accuracy: Callable[[str], float | None], policy: str, remote: frozenset[str],
                 rule: VoteRule) -> None:  # fmt: skip
        self.order, self.k, self._start, self._finish, self._make_sample = order, k, start, finish, make_sample
        self.validation_accuracy, self.policy, self.remote, self.rule = validation_accuracy, policy, remote, rule
        self.pending = list(order)
        self.running: dict[str, Iterator[BatchStep]] = {}
        # Which samples each model decodes in its next wave: all k at once, except under ``staged``, where
        # every model after the first draws one sample at a time, so a challenger that cannot matter any more
        # stops before its next sample starts (its prompt stays cached between waves).
        self.waves: dict[str, list[int]] = {m: list(range(k)) for m in order}
        self.wave_of: dict[str, list[int]] = {}
        self.progress = {m: ModelProgress(k, running=k) for m in order}
        self.samples: dict[str, list[Sample]] = {m: [] for m in order}
        self.tokens_now: dict[str, tuple[int, ...]] = {m: (0,) * k for m in order}
        self.votes: dict[str, ModelVote] = {}

    def start_what_fits(self) -> Generator[Event, None, None]:
        """Start pending models while the policy and the budget allow."""
        while (model := _next_to_start(self.pending, self.running, self.remote, self.policy)) is not None:
            generator = yield from self.next_wave(model)
            if generator is None:
                if not self.running:  # nothing to wait for: it would never fit
                    raise BudgetError(f"{model} cannot be loaded: the budget is held by pinned models")
                return
            self.pending.remove(model)
            self.running[model] = generator

    def next_wave(self, model: str) -> Generator[Event, None, Iterator[BatchStep] | None]:
        staged = self.policy == "staged" and model != self.order[0] and model not in self.remote
        size = 1 if staged else len(self.waves[model])
        indices, self.waves[model] = self.waves[model][:size], self.waves[model][size:]
        generator = yield from self._start(model, indices)
        if generator is None:
            self.waves[model] = indices + self.waves[model]
        else:
            self.wave_of[model] = indices
        return generator

    def step(self, model: str) -> Generator[Event, None, list[Sample]]:
        """One decode step of ``model``; the samples that finished in it."""
        step = next(self.running[model], None)
        if step is None:
            yield from self.wave_done(model)
            return []
        indices = self.wave_of[model]
        now = list(self.tokens_now[model])
        for i, n in enumerate(step.tokens):
            now[indices[i]] = n
        self.tokens_now[model] = tuple(now)
        yield DecodeProgress(model, self.tokens_now[model], step.elapsed_s)
        finished = []
        for f in step.finished:
            sample = self._make_sample(model, replace(f, index=indices[f.index]))
            self.samples[model].append(sample)
            self.progress[model].answers.append(sample.answer)
            self.progress[model].running -= 1
            finished.append(sample)
            yield SampleFinished(sample)
        return finished

    def wave_done(self, model: str) -> Generator[Event, None, None]:
        """``model``'s wave ended: start its next wave, or record its vote."""
        del self.running[model]
        self._finish(model)
        if self.waves[model]:  # more samples to draw: the next wave
            generator = yield from self.next_wave(model)
            if generator is None:
                raise BudgetError(f"{model} could not be held again for its next sample")
            self.running[model] = generator
            return
        self.votes[model] = tally(model, self.samples[model], self.validation_accuracy(model), self.rule)
        yield ModelFinished(self.votes[model])

    def stop(self, model: str, reason: str, rule: str = "") -> Iterator[Event]:
        """Early stop: cancel what ``model`` still decodes (or never started) and record its vote."""
        cancelled = self._placeholders(model)
        self.waves[model] = []
        if model in self.running:
            self.running.pop(model).close()  # type: ignore[attr-defined]  # frees the sequences in the engine
            self._finish(model)
        elif model in self.pending:
            self.pending.remove(model)
        self.progress[model].running = 0
        if cancelled:  # a model whose samples all finished in this very step was not stopped
            log.info("stopping %s (%d samples): %s", model, len(cancelled), reason)
            yield ModelStopped(model, reason, tuple(s.index for s in cancelled), rule)
        self.votes[model] = tally(model, self.samples[model] + cancelled, self.validation_accuracy(model), self.rule)
        yield ModelFinished(self.votes[model])

    def answer_now(self, ranks: Mapping[str, int] | None) -> str | None:
        """The answer SLM-MUX would give if every sample still to come gave none."""
        order = sorted(self.order, key=ranks.__getitem__) if ranks is not None else self.order
        votes = [
            self.votes.get(m)
            or tally(m, self.samples[m] + self._placeholders(m), self.validation_accuracy(m), self.rule)
            for m in order
        ]
        return decide(votes).answer

    def sure_answer(
        self, finished: Sequence[Sample], bars: ConfidenceBars, ranks: Mapping[str, int] | None
    ) -> str | None:
        """A reason to stop everything when one of ``finished`` is sure and gives the current answer."""
        sure = [s for s in finished if bars.is_sure(s)]
        current = self.answer_now(ranks) if sure else None  # a tally of every model: only when needed
        for sample in sure:
            if sample.answer == current:
                return (
                    f"confident: {sample.model} sample {sample.index} is sure by its calibrated bar "
                    f"({bars.measure}, right {bars.precision:.0%} of the time on validation runs) and gives "
                    f"the current answer {sample.answer}"
                )
        return None

    def stop_all(self, reason: str) -> Iterator[Event]:
        """A sure sample ends the question: every model still drawing is stopped."""
        for m in [m for m in self.order if m not in self.votes]:
            yield from self.stop(m, reason, rule="confident")

    def _placeholders(self, model: str) -> list[Sample]:
        """A cancelled sample, with no answer, for every index of ``model`` that has not finished."""
        done = {s.index for s in self.samples[model]}
        tokens = self.tokens_now[model]
        return [Sample(model, i, -1, "", None, tokens[i], "cancelled", 0.0) for i in range(self.k) if i not in done]

    def cancel_running(self) -> None:
        for model, generator in self.running.items():
            generator.close()  # type: ignore[attr-defined]
            self._finish(model)


def _next_to_start(
    pending: list[str], running: Mapping[str, object], remote: frozenset[str], policy: str
) -> str | None:
    """Remote members first (they cost nothing here), then local ones as the policy allows."""
    for model in pending:
        if model in remote:
            return model
    local_busy = any(m not in remote for m in running)
    return pending[0] if pending and (policy == "interleave" or not local_busy) else None


def _apply_stop_rule(
    loop: _Loop, ranks: dict[str, int] | None, stop_rule: str, bars: ConfidenceBars | None, finished: Sequence[Sample]
) -> Iterator[Event]:
    """After samples finished: stop what the rule lets stop. The exact outlook first; a sure sample (the
    confident rule) stops everything only where the decision is not settled already, so a settled one keeps
    its exact stop and exact confidence."""
    progress, stop = loop.progress, loop.stop
    view = outlook(progress, ranks)
    if stop_rule == "confident" and bars is not None and view.settled is None:
        reason = loop.sure_answer(finished, bars, ranks)
        if reason is not None:
            yield from loop.stop_all(reason)
            return
    live = [m for m in progress if m not in loop.votes]
    if stop_rule == "answer" and view.answer is not None:  # the answer is all this rule keeps exact
        reason = f"answer settled: every model that could still win would answer {view.answer}"
        for m in live:
            yield from stop(m, reason)
        return
    if view.settled is not None:
        # The winner's own running samples finish: any of them may still join its majority, and its
        # confidence (top count / k) is only exact once they have. Everyone else is stopped.
        w = progress[view.settled]
        reason = f"decision settled: {view.settled} has at least {w.floor()} and its answer is fixed"
        for m in live:
            if m != view.settled:
                yield from stop(m, reason)
        return
    for m in live:
        if m in view.hopeless:
            yield from stop(m, f"cannot win: at most {progress[m].ceiling()} while another model has more for sure")
