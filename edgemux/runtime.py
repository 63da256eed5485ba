"""Mux: ties the catalog, fetching, the resident set, the decode loop and the MUX rule together.

``stream(question)`` yields typed events (model loaded, decode progress, sample finished, model stopped,
model finished, decision); ``ask(question)`` consumes that stream and returns the MuxResult. Models are
held through the resident set (within the memory budget) and decoded by ``scheduler.decode``; the rest
goes to the MUX rule.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Generator, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol

from . import fetch
from .calibration import Level, levels_of, sentence
from .catalog import Catalog
from .earlystop import tie_ranks
from .equivalence import Unifier
from .errors import BudgetError, InvalidRequestError
from .members import Member, answer_of, parse_member, run_program_of
from .memory import ModelShape, estimate, kv_cells
from .mux import decide
from .planning import resolve_budget, shape_of
from .profiles import Profile, adhoc_profile, load_profile
from .prompts import build_prompt, format_question
from .resident import ResidentSet
from .scheduler import POLICIES, decode
from .types import (
    BatchStep,
    Decision,
    DecisionMade,
    Event,
    FinishedSequence,
    ModelLoaded,
    ModelLoading,
    ModelSpec,
    MuxResult,
    Sample,
    Sampling,
    SamplingStarted,
)

log = logging.getLogger("edgemux.runtime")

__all__ = ["EngineLike", "LoadOptions", "Mux"]


class EngineLike(Protocol):
    """What the runtime needs from an engine; ``engine.Engine`` and ``testing.FakeEngine`` provide it."""

    @property
    def has_chat_template(self) -> bool: ...

    def render_chat(self, messages: Sequence[tuple[str, str]]) -> str: ...
    def tokenize(self, text: str) -> list[int]: ...
    def check_fits(self, prompt_tokens: int, k: int, max_tokens: int) -> int: ...
    def generate(
        self, prompt: Sequence[int], sampling: Sampling, seeds: Sequence[int], stop: Sequence[str] = ()
    ) -> Iterator[Any]: ...
    def close(self) -> None: ...


@dataclass(frozen=True)
class LoadOptions:
    """How models are loaded and scheduled: GPU layers (-1 = all), CPU threads (None = one per core), the
    memory budget (None: --budget/EDGEMUX_BUDGET/profile/default), decode policy and early stop."""

    n_gpu_layers: int = 0
    n_threads: int | None = None
    budget: str | None = None
    policy: str = "priority"
    early_stop: bool = True
    stop_rule: str = "decision"


EngineFactory = Callable[[ModelSpec, Path, int, int, LoadOptions], EngineLike]


def _llama_engine(spec: ModelSpec, path: Path, n_ctx: int, n_seq_max: int, options: LoadOptions) -> EngineLike:
    from .engine import Engine  # imported lazily: the pure layers and the fake engine never load llama.cpp

    return Engine(
        path,
        n_ctx=min(n_ctx, spec.context_length),
        n_seq_max=n_seq_max,
        n_gpu_layers=options.n_gpu_layers,
        n_threads=options.n_threads,
        expected_nbytes=spec.file_nbytes,
    )


class Mux:
    """Several models answering one question together. Use as a context manager, or call ``close()``."""

    def __init__(
        self,
        profile: Profile,
        *,
        catalog: Catalog | None = None,
        load: LoadOptions | None = None,
        engine_factory: EngineFactory | None = None,
        fetch_progress: Callable[[], fetch.Progress] | None = None,
        resident: ResidentSet | None = None,
    ) -> None:
        self.profile = profile
        self.catalog = catalog or Catalog()
        self.specs = {name: self.catalog.get(name) for name in profile.model_names}  # unknown names fail here
        self.options = load or LoadOptions()
        if self.options.policy not in POLICIES:
            raise InvalidRequestError(f"unknown policy {self.options.policy!r}; use one of {', '.join(POLICIES)}")
        self._engine_factory = engine_factory or _llama_engine
        self._fetch_progress = fetch_progress or fetch.NullProgress
        self._shapes: dict[str, ModelShape] = {}
        self.budget_bytes, self.budget_source = resolve_budget(self.options.budget, profile)
        # A shared resident set (the server's, one for every profile and model it serves) loads models its
        # own way; otherwise this Mux has its own, sized for its profile.
        self.resident = resident or ResidentSet(self.budget_bytes, self._load, self.estimated_bytes)
        self._owns_resident = resident is None

    @classmethod
    def from_profile(cls, name_or_path: str = "default", **kwargs: Any) -> Mux:
        return cls(load_profile(name_or_path), **kwargs)

    @classmethod
    def from_models(
        cls, models: list[str], kind: str = "number", sampling: Sampling | None = None, **kwargs: Any
    ) -> Mux:
        return cls(adhoc_profile(models, kind, sampling), **kwargs)

    # -- lifecycle ------------------------------------------------------------------------------------

    def __enter__(self) -> Mux:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Unload every model (of its own resident set; a shared one is closed by its owner)."""
        if self._owns_resident:
            self.resident.close()

    def pull(self) -> list[Path]:
        """Fetch every model of the profile that is not cached yet."""
        return [fetch.pull(spec, self._fetch_progress()) for spec in self.specs.values()]

    def preload(self) -> Iterator[Event]:
        """Load the profile's models now, those marked ``resident`` first (and pinned), then the others in
        profile order while the budget holds them, so the first question pays no silent cold start."""
        pinned = {parse_member(m.name).model for m in self.profile.models if m.resident}
        for name in sorted(self.profile.model_names, key=lambda n: n not in pinned):
            if not self.resident.is_resident(name):
                if not self.resident.can_acquire(name):
                    if name in pinned:
                        raise BudgetError(
                            f"{name} is marked resident but does not fit next to the other resident models"
                        )
                    continue
                yield from self._hold(name)
                self.resident.release(name)
            if name in pinned:
                self.resident.pin(name)

    def _hold(self, name: str) -> Generator[Event, None, EngineLike]:
        """Acquire ``name`` from the resident set, announcing the load when it is not loaded yet."""
        if self.resident.is_resident(name):
            engine: EngineLike = self.resident.acquire(name)
            return engine
        yield ModelLoading(name)
        start = time.perf_counter()
        engine = self.resident.acquire(name)
        yield ModelLoaded(name, time.perf_counter() - start)
        return engine

    @property
    def _cells(self) -> int:
        """KV cells each model's context gets: its k samples share the prompt (memory.kv_cells)."""
        s = self.profile.sampling
        return kv_cells(self.profile.n_ctx, s.k, s.max_tokens)

    def _load(self, name: str) -> EngineLike:
        spec = self.specs[name]
        # llama.cpp needs the file; an injected engine (tests, replays of recorded runs) gets the path where
        # the file would be and fetches nothing.
        real = self._engine_factory is _llama_engine
        path = fetch.pull(spec, self._fetch_progress()) if real else fetch.cached_path(spec)
        return self._engine_factory(spec, path, self._cells, self.profile.sampling.k, self.options)

    def estimated_bytes(self, name: str) -> int:
        if name not in self._shapes:
            try:
                self._shapes[name] = shape_of(self.specs[name])
            except (InvalidRequestError, ValueError) as e:  # no shape known: it is measured once loaded
                log.info("no memory estimate for %s (%s); it will be measured when it loads", name, e)
                return 0
        shape, k = self._shapes[name], self.profile.sampling.k
        return estimate(name, shape, cells=self._cells, k=k, n_gpu_layers=self.options.n_gpu_layers).total_bytes

    # -- answering ----------------------------------------------------------------------------------

    def ask(self, question: str, **kwargs: Any) -> MuxResult:
        """Answer ``question``; keyword arguments as for ``stream``."""
        for event in self.stream(question, **kwargs):
            if isinstance(event, DecisionMade):
                return event.result
        raise RuntimeError("the event stream ended without a decision")  # a bug, not a user error

    def stream(
        self,
        question: str,
        *,
        sampling: Sampling | None = None,
        kind: str | None = None,
        choices: Sequence[str] | None = None,
        tests: Sequence[str] | None = None,
        min_confidence: float | None = None,
    ) -> Iterator[Event]:
        """Yield events while the members answer ``question``; the last event is DecisionMade. Below
        ``min_confidence`` (default: the profile's ``abstain_below``) the result is marked abstained: its
        answer is a best guess."""
        question = question.strip()
        if not question:
            raise InvalidRequestError("the question is empty")
        threshold = self.profile.abstain_below if min_confidence is None else min_confidence
        if threshold is not None and not 0.0 <= threshold <= 1.0:
            raise InvalidRequestError(f"min_confidence must be between 0 and 1, got {threshold}")
        profile = self.profile.with_overrides(kind=kind)
        sampling = (sampling or profile.sampling).validated()
        if sampling.seed is None:
            sampling = replace(sampling, seed=random.randrange(2**31 - 1 - sampling.k))
        seeds = [sampling.seed + j for j in range(sampling.k)]  # type: ignore[operator]
        text = format_question(question, choices, tests)
        n_choices = len(choices) if choices else None
        started = time.perf_counter()
        ranks = tie_ranks(profile.member_names, {m.name: m.validation_accuracy for m in profile.models})

        members = {m.name: m for m in profile.members}
        prompts: dict[str, tuple[list[int], tuple[str, ...]]] = {}
        busy: set[str] = set()  # models decoding for a member now: another member of the same model waits

        def start(name: str, indices: Sequence[int]) -> Generator[Event, None, Iterator[BatchStep] | None]:
            member = members[name]
            if member.model in busy or not self.resident.can_acquire(member.model):
                return None
            engine = yield from self._hold(member.model)
            first = name not in prompts
            if first:
                try:
                    prompts[name] = self._prompt_tokens(engine, member, text, profile, sampling)
                except BaseException:
                    self.resident.release(member.model)
                    raise
            tokens, stop = prompts[name]
            if first:
                yield SamplingStarted(name, sampling.k, len(tokens))
            busy.add(member.model)
            generator: Iterator[BatchStep] = engine.generate(tokens, sampling, [seeds[i] for i in indices], stop)
            return generator

        def finish(name: str) -> None:
            model = members[name].model
            busy.discard(model)
            self.resident.release(model)

        unify = Unifier(profile.kind)  # MATH answers that mean the same vote together

        def make_sample(name: str, f: FinishedSequence) -> Sample:
            sample = _sample(members[name], f, seeds, profile.kind, n_choices, tests, choices)
            return replace(sample, answer=unify(sample.answer))

        votes = yield from decode(
            self._order(profile, ranks),
            k=sampling.k,
            start=start,
            finish=finish,
            make_sample=make_sample,
            validation_accuracy=profile.validation_accuracy,
            ranks=ranks,
            policy=self.options.policy,
            early_stop=self.options.early_stop,
            stop_rule=self.options.stop_rule,
        )
        decision = decide([votes[name] for name in profile.member_names])
        winning_text = ""
        if decision.winner is not None:
            vote = decision.vote_of(decision.winner)
            winning_text = next(s.text for s in vote.samples if s.answer == decision.answer)
        level = self._calibration(profile, sampling.k, decision)
        result = MuxResult(
            question=question,
            kind=profile.kind,
            profile=profile.name,
            sampling=sampling,
            decision=decision,
            text=winning_text,
            seconds=time.perf_counter() - started,
            policy=self.options.policy,
            early_stop=self.options.early_stop,
            calibration=None if level is None else (level.agreeing, level.k, level.answered, level.right),
            calibration_text="" if level is None else sentence(level, profile.measured),
            min_confidence=threshold,
            abstained=threshold is not None and decision.answer is not None and decision.confidence < threshold,
        )
        yield DecisionMade(result)

    def _calibration(self, profile: Profile, k: int, decision: Decision) -> Level | None:
        """The profile's validation accuracy at this answer's agreement, when it was measured for exactly
        these members at this k and kind (a -k or --kind override is not calibrated)."""
        if decision.answer is None or profile.kind != self.profile.kind:
            return None
        agreeing = round(decision.confidence * k)
        return next((lv for lv in levels_of(profile.measured, k) if lv.agreeing == agreeing), None)

    def draw(
        self,
        name: str,
        question: str,
        *,
        sampling: Sampling,
        choices: Sequence[str] | None = None,
        tests: Sequence[str] | None = None,
    ) -> tuple[list[Sample], int]:
        """All k samples of one member, each decoded to its end (no early stop, no vote), and the prompt's
        length in tokens: what ``edgemux collect`` records. ``sampling.seed`` must be set."""
        if sampling.seed is None:
            raise InvalidRequestError("draw() needs a seed, so that the samples can be drawn again")
        seeds = [sampling.seed + j for j in range(sampling.k)]
        n_choices = len(choices) if choices else None
        member = parse_member(name)
        engine = self.resident.acquire(member.model)
        try:
            tokens, stop = self._prompt_tokens(
                engine, member, format_question(question, choices, tests), self.profile, sampling
            )
            finished = [f for step in engine.generate(tokens, sampling, seeds, stop) for f in step.finished]
        finally:
            self.resident.release(member.model)
        samples = [_sample(member, f, seeds, self.profile.kind, n_choices, tests, choices) for f in finished]
        return sorted(samples, key=lambda s: s.index), len(tokens)

    def _order(self, profile: Profile, ranks: dict[str, int] | None) -> list[str]:
        names = profile.member_names
        if self.options.policy == "priority" and ranks is not None:
            return sorted(names, key=ranks.__getitem__)  # the member that wins ties goes first
        # Models already loaded go first, so a tight budget swaps each model in at most once per question.
        return sorted(names, key=lambda n: not self.resident.is_resident(parse_member(n).model))

    def _prompt_tokens(
        self, engine: EngineLike, member: Member, question: str, profile: Profile, sampling: Sampling
    ) -> tuple[list[int], tuple[str, ...]]:
        style = self.specs[member.model].prompt_style if engine.has_chat_template else "completion"
        instruction = member.instruction(profile.kind, profile.instruction)
        prompt = build_prompt(question, profile.kind, style, instruction, profile.system)
        text = engine.render_chat(prompt.messages) if prompt.messages else prompt.text
        tokens = engine.tokenize(text)
        engine.check_fits(len(tokens), sampling.k, sampling.max_tokens)
        return tokens, prompt.stop


def _sample(
    member: Member, f: FinishedSequence, seeds: Sequence[int], kind: str, n_choices: int | None,
    tests: Sequence[str] | None, choices: Sequence[str] | None = None,
) -> Sample:
    """A finished sequence as a sample: its answer extracted, or for a program-of-thought member, its program
    run in the sandbox and the printed value canonicalised (an unparsable sample when it does not run)."""
    program = run_program_of(f.text) if member.runs_programs else None
    answer = answer_of(member, kind, f.text, program_stdout=program.stdout if program and program.ok else None,
                       n_choices=n_choices, tests=tuple(tests) if tests else None, choices=choices)  # fmt: skip
    if program is not None and not program.ok:
        log.info("%s sample %d: its program %s (%s)", member.name, f.index, program.status, program.detail)
    return Sample(member.name, f.index, seeds[f.index], f.text, answer, f.tokens, f.stop_reason, f.seconds, program)
