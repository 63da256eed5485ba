"""Mux: ties the catalog, fetching, engines, extraction and the MUX rule together.

``stream(question)`` yields typed events (model loaded, decode progress, sample finished, model finished,
decision); ``ask(question)`` consumes that stream and returns the MuxResult. The live decode loop steps
each model's batch in turn, so every model makes progress together. The rest goes to the MUX rule.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol

from . import fetch
from .catalog import Catalog
from .errors import InvalidRequestError
from .extract import extract
from .mux import decide, tally
from .profiles import Profile, adhoc_profile, load_profile
from .prompts import build_prompt, format_question
from .types import (
    DecisionMade,
    DecodeProgress,
    Event,
    ModelFinished,
    ModelLoaded,
    ModelLoading,
    ModelSpec,
    MuxResult,
    Sample,
    SampleFinished,
    Sampling,
    SamplingStarted,
)

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
    """How models are loaded: GPU layers (-1 = all), CPU threads (None = one per core)."""

    n_gpu_layers: int = 0
    n_threads: int | None = None


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
    ) -> None:
        self.profile = profile
        self.catalog = catalog or Catalog()
        self.specs = [self.catalog.get(name) for name in profile.model_names]  # unknown names fail here
        self.load_options = load or LoadOptions()
        self._engine_factory = engine_factory or _llama_engine
        self._fetch_progress = fetch_progress or fetch.NullProgress
        self._engines: dict[str, EngineLike] = {}

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
        """Free every loaded model."""
        engines, self._engines = self._engines, {}
        for engine in engines.values():
            engine.close()

    def pull(self) -> list[Path]:
        """Fetch every model of the profile that is not cached yet."""
        return [fetch.pull(spec, self._fetch_progress()) for spec in self.specs]

    def preload(self) -> Iterator[Event]:
        """Load every model of the profile now (so the first question pays no cold start)."""
        for spec in self.specs:
            if spec.name in self._engines:
                continue
            yield ModelLoading(spec.name)
            start = time.perf_counter()
            path = fetch.pull(spec, self._fetch_progress())
            self._engines[spec.name] = self._engine_factory(
                spec, path, self.profile.n_ctx, self.profile.sampling.k, self.load_options
            )
            yield ModelLoaded(spec.name, time.perf_counter() - start)

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
    ) -> Iterator[Event]:
        """Yield events while the models answer ``question``; the last event is DecisionMade."""
        question = question.strip()
        if not question:
            raise InvalidRequestError("the question is empty")
        profile = self.profile.with_overrides(kind=kind)
        sampling = (sampling or profile.sampling).validated()
        if sampling.seed is None:
            sampling = replace(sampling, seed=random.randrange(2**31 - 1 - sampling.k))
        seeds = [sampling.seed + j for j in range(sampling.k)]  # type: ignore[operator]
        text = format_question(question, choices)
        start = time.perf_counter()
        yield from self.preload()
        prompts = {spec.name: self._prompt_tokens(spec, text, profile, sampling) for spec in self.specs}

        generators = {}
        for spec in self.specs:
            tokens, stop = prompts[spec.name]
            generators[spec.name] = self._engines[spec.name].generate(tokens, sampling, seeds, stop)
            yield SamplingStarted(spec.name, sampling.k, len(tokens))
        samples: dict[str, list[Sample]] = {name: [] for name in generators}
        votes = {}
        try:
            # Round-robin over the live models: one decode step each, so all of them make progress.
            while generators:
                for name in list(generators):
                    step = next(generators[name], None)
                    if step is None:
                        del generators[name]
                        votes[name] = tally(name, samples[name], profile.validation_accuracy(name))
                        yield ModelFinished(votes[name])
                        continue
                    yield DecodeProgress(name, step.tokens, step.elapsed_s)
                    for f in step.finished:
                        sample = Sample(
                            model=name, index=f.index, seed=seeds[f.index], text=f.text,
                            answer=extract(profile.kind, f.text, n_choices=len(choices) if choices else None),
                            tokens=f.tokens, stop_reason=f.stop_reason, seconds=f.seconds,
                        )  # fmt: skip
                        samples[name].append(sample)
                        yield SampleFinished(sample)
        finally:
            for gen in generators.values():  # the caller stopped early: cancel what is still decoding
                gen.close()  # type: ignore[attr-defined]
        decision = decide([votes[spec.name] for spec in self.specs])
        winning_text = ""
        if decision.winner is not None:
            vote = decision.vote_of(decision.winner)
            winning_text = next(s.text for s in vote.samples if s.answer == decision.answer)
        result = MuxResult(
            question=question,
            kind=profile.kind,
            profile=profile.name,
            sampling=sampling,
            decision=decision,
            text=winning_text,
            seconds=time.perf_counter() - start,
        )
        yield DecisionMade(result)

    def _prompt_tokens(
        self, spec: ModelSpec, question: str, profile: Profile, sampling: Sampling
    ) -> tuple[list[int], tuple[str, ...]]:
        engine = self._engines[spec.name]
        style = spec.prompt_style if engine.has_chat_template else "completion"
        prompt = build_prompt(question, profile.kind, style, profile.instruction, profile.system)
        text = engine.render_chat(prompt.messages) if prompt.messages else prompt.text
        tokens = engine.tokenize(text)
        engine.check_fits(len(tokens), sampling.k, sampling.max_tokens)
        return tokens, prompt.stop
