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
from typing import Literal

from ..decide.confidence import VoteRule
from ..decide.earlystop import ModelProgress, outlook
from ..decide.mux import COUNT, tally
from ..errors import BudgetError
from ..events import DecodeProgress, Event, ModelFinished, ModelStopped, SampleFinished
from ..types import BatchStep, FinishedSequence, ModelVote, Sample

__all__ = ["POLICIES", "STOP_RULES", "Policy", "decode"]

log = logging.getLogger("edgemux.scheduler")

Policy = Literal["interleave", "priority", "staged"]
POLICIES: tuple[str, ...] = ("priority", "staged", "interleave")
# "decision": stop only what cannot change the winner, its answer or its confidence (the winner's samples
# always finish); "answer": also stop
# once the answer is settled whoever wins (the confidence reported is then a lower bound).
STOP_RULES: tuple[str, ...] = ("answer", "decision")

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
    policy: str = "priority",
    early_stop: bool = True,
    stop_rule: str = "decision",
    remote: frozenset[str] = frozenset(),
    rule: VoteRule = COUNT,
) -> Generator[Event, None, dict[str, ModelVote]]:
    """Yield events while the models in ``order`` draw k samples each; return every model's vote, its
    samples weighed by ``rule``. Early stop reasons about counts: the runtime turns it off for other rules."""
    pending = list(order)
    running: dict[str, Iterator[BatchStep]] = {}
    # Which samples each model decodes in its next wave: all k at once, except under ``staged``, where
    # every model after the first draws one sample at a time, so a challenger that cannot matter any more
    # stops before its next sample starts (its prompt stays cached between waves).
    waves: dict[str, list[int]] = {m: list(range(k)) for m in order}
    wave_of: dict[str, list[int]] = {}
    progress = {m: ModelProgress(k, running=k) for m in order}
    samples: dict[str, list[Sample]] = {m: [] for m in order}
    tokens_now: dict[str, tuple[int, ...]] = {m: (0,) * k for m in order}
    votes: dict[str, ModelVote] = {}

    def stop(model: str, reason: str) -> Iterator[Event]:
        done = {s.index for s in samples[model]}
        cancelled = [
            Sample(model, i, -1, "", None, tokens_now[model][i], "cancelled", 0.0) for i in range(k) if i not in done
        ]
        waves[model] = []
        if model in running:
            running.pop(model).close()  # type: ignore[attr-defined]  # frees the sequences in the engine
            finish(model)
        elif model in pending:
            pending.remove(model)
        progress[model].running = 0
        if cancelled:  # a model whose samples all finished in this very step was not stopped
            log.info("stopping %s (%d samples): %s", model, len(cancelled), reason)
            yield ModelStopped(model, reason, tuple(s.index for s in cancelled))
        votes[model] = tally(model, samples[model] + cancelled, validation_accuracy(model), rule)
        yield ModelFinished(votes[model])

    def next_wave(model: str) -> Generator[Event, None, Iterator[BatchStep] | None]:
        size = 1 if policy == "staged" and model != order[0] and model not in remote else len(waves[model])
        indices, waves[model] = waves[model][:size], waves[model][size:]
        generator = yield from start(model, indices)
        if generator is None:
            waves[model] = indices + waves[model]
        else:
            wave_of[model] = indices
        return generator

    try:
        while pending or running:
            while (model := _next_to_start(pending, running, remote, policy)) is not None:
                generator = yield from next_wave(model)
                if generator is None:
                    if not running:  # nothing to wait for: it would never fit
                        raise BudgetError(f"{model} cannot be loaded: the budget is held by pinned models")
                    break
                pending.remove(model)
                running[model] = generator
            for model in list(running):
                if model not in running:  # stopped earlier in this round
                    continue
                step = next(running[model], None)
                if step is None:
                    del running[model]
                    finish(model)
                    if waves[model]:  # more samples to draw: the next wave
                        generator = yield from next_wave(model)
                        if generator is None:
                            raise BudgetError(f"{model} could not be held again for its next sample")
                        running[model] = generator
                        continue
                    votes[model] = tally(model, samples[model], validation_accuracy(model), rule)
                    yield ModelFinished(votes[model])
                    continue
                indices = wave_of[model]
                now = list(tokens_now[model])
                for i, n in enumerate(step.tokens):
                    now[indices[i]] = n
                tokens_now[model] = tuple(now)
                yield DecodeProgress(model, tokens_now[model], step.elapsed_s)
                for f in step.finished:
                    sample = make_sample(model, replace(f, index=indices[f.index]))
                    samples[model].append(sample)
                    progress[model].answers.append(sample.answer)
                    progress[model].running -= 1
                    yield SampleFinished(sample)
                if early_stop and step.finished:
                    yield from _apply_outlook(progress, ranks, votes, stop, stop_rule)
    finally:
        for model, generator in running.items():  # the caller walked away: cancel what still decodes
            generator.close()  # type: ignore[attr-defined]
            finish(model)
    return votes


def _next_to_start(
    pending: list[str], running: Mapping[str, object], remote: frozenset[str], policy: str
) -> str | None:
    """Remote members first (they cost nothing here), then local ones as the policy allows."""
    for model in pending:
        if model in remote:
            return model
    local_busy = any(m not in remote for m in running)
    return pending[0] if pending and (policy == "interleave" or not local_busy) else None


def _apply_outlook(
    progress: dict[str, ModelProgress],
    ranks: dict[str, int] | None,
    votes: dict[str, ModelVote],
    stop: Callable[[str, str], Iterator[Event]],
    stop_rule: str,
) -> Iterator[Event]:
    view = outlook(progress, ranks)
    live = [m for m in progress if m not in votes]
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
