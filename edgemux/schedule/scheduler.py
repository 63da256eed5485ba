"""The decode loop: one loop owns every model's batch for a question and steps them in turn.

Policies decide the order, as a plan of waves (a wave: some of a model's samples, decoded as one batch):
``interleave`` starts every model that fits and steps them round-robin (so the live view moves for all of
them); ``priority`` runs one model at a time, best tie rank first, so that a confident favourite can settle
the decision before the others start; ``staged`` is priority with every model after the first drawing one
sample at a time; ``cheapest`` decodes the cheapest informative samples first: the member with the
shortest samples (measured on validation runs) draws two, every other member one, and only then the rest,
so that a stop rule can end the question before the long samples start. With early stop on, after every
finished sample the loop asks ``earlystop.outlook`` which models can no longer matter and cancels them
(freeing their sequences, and dropping waves never started), and once the decision is settled stops every
model but the winner, whose samples finish so that its confidence is exact. The early rules (``confident``,
``agree``: stoprules.py) also stop every model once a sure sample, or enough agreeing samples, back the
current answer.
Models are started through an injected ``start`` (which leases and loads) and released through ``finish``.
``remote`` members (another server decodes them) start at once whatever the policy: their requests are in
flight while the local models decode, and early stop cancels them like any other.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Generator, Iterator, Mapping, Sequence
from dataclasses import replace
from typing import Literal, get_args

from ..decide.confidence import VoteRule
from ..decide.earlystop import ModelProgress, outlook
from ..decide.mux import COUNT, decide, tally
from ..decide.stoprules import DEFAULT_STOP_RULE, EARLY_RULES, STOP_RULES, Agreement, ConfidenceBars, StopRule
from ..errors import BudgetError
from ..events import DecodeProgress, Event, ModelFinished, ModelStopped, SampleFinished
from ..types import NEVER_STARTED, BatchStep, FinishedSequence, ModelVote, Sample

__all__ = [
    "DEFAULT_POLICY",
    "DEFAULT_STOP_RULE",
    "POLICIES",
    "STOP_RULES",
    "Policy",
    "StopRule",
    "Wave",
    "decode",
    "wave_plan",
]

log = logging.getLogger("edgemux.scheduler")

Policy = Literal["priority", "cheapest", "staged", "interleave"]
POLICIES: tuple[str, ...] = get_args(Policy)
DEFAULT_POLICY: Policy = "priority"
CHEAP_FIRST = 2  # under ``cheapest``, how many samples the cheapest member draws before anyone else's second

Wave = tuple[str, tuple[int, ...]]  # a model and the sample indices it decodes as one batch

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
    agreement: Agreement | None = None,
    tokens_per_sample: Mapping[str, float] | None = None,
) -> Generator[Event, None, dict[str, ModelVote]]:
    """Yield events while the models in ``order`` draw k samples each; return every model's vote, its
    samples weighed by ``rule``. Early stop reasons about counts: the runtime turns it off for other rules.
    ``bars``: the members' calibrated bars, which the ``confident`` stop rule needs; ``agreement``: the
    ``agree`` rule's setting (its default if None); ``tokens_per_sample``: each member's measured mean
    sample length, which the ``cheapest`` policy orders by."""
    if stop_rule == "confident" and bars is None:
        raise ValueError("the confident stop rule needs the members' confidence bars")
    early = _EarlyRule(stop_rule, bars, agreement or Agreement()) if stop_rule in EARLY_RULES else None
    plan = wave_plan(order, k, policy, remote, tokens_per_sample)
    loop = _Loop(order, k, plan, start, finish, make_sample, validation_accuracy, policy, remote, rule)
    try:
        while loop.queue or loop.running:
            yield from loop.start_what_fits()
            for model in list(loop.running):
                if model in loop.running:  # not stopped earlier in this round
                    finished = yield from loop.step(model)
                    if early_stop and finished:
                        yield from _apply_stop_rule(loop, ranks, stop_rule, early, finished)
    finally:
        loop.cancel_running()  # the caller walked away, or an error: cancel what still decodes
    return loop.votes


def wave_plan(
    order: Sequence[str],
    k: int,
    policy: str,
    remote: frozenset[str] = frozenset(),
    tokens_per_sample: Mapping[str, float] | None = None,
) -> list[Wave]:
    """The waves of one question in the order they start. Remote members draw all k in one wave whatever
    the policy (they cost nothing here); ``order`` is the local members' order where the policy keeps it."""
    everything = tuple(range(k))
    local = [m for m in order if m not in remote]
    plan: list[Wave] = [(m, everything) for m in order if m in remote]
    if policy == "staged" and local:  # a challenger that cannot matter stops before its next sample starts
        return plan + [(local[0], everything)] + [(m, (i,)) for m in local[1:] for i in everything]
    if policy == "cheapest" and local:
        cost = tokens_per_sample or {}
        cheapest = min(local, key=lambda m: cost.get(m, math.inf))  # unknown or equal costs: the first in order
        members = [cheapest] + [m for m in local if m != cheapest]
        first = {m: CHEAP_FIRST if m == cheapest else 1 for m in members}
        plan += [(m, everything[: first[m]]) for m in members]
        return plan + [(m, everything[first[m] :]) for m in members if everything[first[m] :]]
    return plan + [(m, everything) for m in local]


class _Loop:
    """The state of one question's decode loop: the waves not started yet, which models run, each one's
    samples, its progress (for early stop) and its vote once it has one."""

    def __init__(self, order: Sequence[str], k: int, plan: list[Wave], start: Starter, finish: Callable[[str], None],
                 make_sample: Callable[[str, FinishedSequence], Sample],
                 validation_accuracy: Callable[[str], float | None], policy: str, remote: frozenset[str],
                 rule: VoteRule) -> None:  # fmt: skip
        self.order, self.k, self._start, self._finish, self._make_sample = order, k, start, finish, make_sample
        self.validation_accuracy, self.policy, self.remote, self.rule = validation_accuracy, policy, remote, rule
        self.queue = list(plan)  # waves not started yet
        self.running: dict[str, Iterator[BatchStep]] = {}
        self.wave_of: dict[str, tuple[int, ...]] = {}  # the sample indices of each running model's wave
        self.started: dict[str, set[int]] = {m: set() for m in order}
        # every sample not finished counts as still coming, started or not: early stop stays exact
        self.progress = {m: ModelProgress(k, running=k) for m in order}
        self.samples: dict[str, list[Sample]] = {m: [] for m in order}
        self.tokens_now: dict[str, tuple[int, ...]] = {m: (0,) * k for m in order}
        self.votes: dict[str, ModelVote] = {}

    def start_what_fits(self) -> Generator[Event, None, None]:
        """Start the next waves while the policy and the budget allow."""
        while (wave := _next_wave(self.queue, self.running, self.remote, self.policy)) is not None:
            model, indices = wave
            generator = yield from self._start(model, indices)
            if generator is None:
                if not self.running:  # nothing to wait for: it would never fit
                    raise BudgetError(f"{model} cannot be loaded: the budget is held by pinned models")
                return
            self.queue.remove(wave)
            self.running[model], self.wave_of[model] = generator, indices
            self.started[model].update(indices)

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
        """``model``'s wave ended: it waits for its next wave in the plan, or records its vote."""
        del self.running[model]
        self._finish(model)
        if any(m == model for m, _ in self.queue):
            return
        self.votes[model] = tally(model, self.samples[model], self.validation_accuracy(model), self.rule)
        yield ModelFinished(self.votes[model])

    def stop(self, model: str, reason: str, rule: str = "") -> Iterator[Event]:
        """Early stop: cancel what ``model`` still decodes, drop its waves not started, record its vote."""
        cancelled = self._placeholders(model)
        self.queue = [w for w in self.queue if w[0] != model]
        if model in self.running:
            self.running.pop(model).close()  # type: ignore[attr-defined]  # frees the sequences in the engine
            self._finish(model)
        self.progress[model].running = 0
        if cancelled:  # a model whose samples all finished in this very step was not stopped
            never = tuple(s.index for s in cancelled if s.note == NEVER_STARTED)
            log.info("stopping %s (%d samples, %d never started): %s", model, len(cancelled), len(never), reason)
            yield ModelStopped(model, reason, tuple(s.index for s in cancelled), rule, never)
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

    def stop_all(self, reason: str, rule: str) -> Iterator[Event]:
        """An early rule ends the question: every model still drawing is stopped."""
        for m in [m for m in self.order if m not in self.votes]:
            yield from self.stop(m, reason, rule=rule)

    def _placeholders(self, model: str) -> list[Sample]:
        """A cancelled sample, with no answer, for every index of ``model`` that has not finished."""
        done, tokens = {s.index for s in self.samples[model]}, self.tokens_now[model]
        return [Sample(model, i, -1, "", None, tokens[i], "cancelled", 0.0,
                       note="" if i in self.started[model] else NEVER_STARTED)
                for i in range(self.k) if i not in done]  # fmt: skip

    def cancel_running(self) -> None:
        for model, generator in self.running.items():
            generator.close()  # type: ignore[attr-defined]
            self._finish(model)


def _next_wave(
    queue: Sequence[Wave], running: Mapping[str, object], remote: frozenset[str], policy: str
) -> Wave | None:
    """Remote members' waves first (they cost nothing here), then local ones as the policy allows: under
    ``interleave`` every model's at once, else the next in the plan once no local model decodes."""
    waiting = [w for w in queue if w[0] not in running]
    for wave in waiting:
        if wave[0] in remote:
            return wave
    local_busy = any(m not in remote for m in running)
    return waiting[0] if waiting and (policy == "interleave" or not local_busy) else None


class _EarlyRule:
    """A rule that may end a question before it is settled (stoprules.py): once a finished sample is sure
    (confident) or the finished samples agree (agree) on the answer SLM-MUX gives now."""

    def __init__(self, rule: str, bars: ConfidenceBars | None, agreement: Agreement) -> None:
        self.rule, self.bars, self.agreement = rule, bars, agreement

    def reason_to_end(self, loop: _Loop, finished: Sequence[Sample], ranks: Mapping[str, int] | None) -> str | None:
        """Why the question ends now that ``finished`` finished, or None. The current answer (a tally of
        every model) is worked out only when the rule's evidence is there."""
        if self.rule == "confident":
            bars = self.bars
            assert bars is not None  # decode() refuses the confident rule without bars
            sure = [s for s in finished if bars.is_sure(s)]
            current = loop.answer_now(ranks) if sure else None
            for sample in sure:
                if sample.answer == current:
                    return (
                        f"confident: {sample.model} sample {sample.index} is sure by its calibrated bar "
                        f"({bars.measure}, right {bars.precision:.0%} of the time on validation runs) and gives "
                        f"the current answer {sample.answer}"
                    )
            return None
        agreed = self.agreement.agreed([s.answer for m in loop.order for s in loop.samples[m]])
        if agreed is not None and agreed == loop.answer_now(ranks):
            return f"agree: {self.agreement.describe()} on the current answer {agreed}"
        return None


def _apply_stop_rule(
    loop: _Loop, ranks: dict[str, int] | None, stop_rule: str, early: _EarlyRule | None, finished: Sequence[Sample]
) -> Iterator[Event]:
    """After samples finished: stop what the rule lets stop. The exact outlook first; an early rule stops
    everything only where the decision is not settled already, so a settled one keeps its exact stop and
    exact confidence."""
    progress, stop = loop.progress, loop.stop
    view = outlook(progress, ranks)
    if early is not None and view.settled is None:
        reason = early.reason_to_end(loop, finished, ranks)
        if reason is not None:
            yield from loop.stop_all(reason, early.rule)
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
        reason = f"decision settled: {view.settled} has at least {w.floor() * w.k} of {w.k} and its answer is fixed"
        for m in live:
            if m != view.settled:
                yield from stop(m, reason)
        return
    for m in live:
        if m in view.hopeless:
            p = progress[m]
            yield from stop(
                m, f"cannot win: at most {p.ceiling() * p.k} of {p.k} while another model has more for sure"
            )
