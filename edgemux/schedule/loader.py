"""The one way models are loaded: a ``Models`` is a loader and a resident set within one budget, with one
context shape (KV cells and sequences) for every model it loads. The CLI's ``Mux`` makes one sized for
its profile; the server makes one for everything it serves and hands it to every profile's ``Mux``.

An engine's context never grows after load (``Engine.check_fits`` refuses what does not fit), so the
bytes the resident set granted at load are all a model can take.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Generator, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from ..catalog import fetch
from ..catalog.catalog import Catalog
from ..errors import InvalidRequestError, NotCachedError
from ..events import Event, ModelLoaded, ModelLoading
from ..memory.memory import ModelShape, check_context, estimate
from ..specs import ModelSpec, RemoteSource
from ..types import Sampling
from .planning import shape_of
from .resident import ResidentSet
from .scheduler import DEFAULT_POLICY

__all__ = ["ContextShape", "EngineLike", "LoadOptions", "Models", "llama_engine"]

log = logging.getLogger("edgemux.loader")

TEMPLATE_TOKENS = 256  # more than any chat template adds around a prompt's text


class EngineLike(Protocol):
    """What the runtime needs from an engine; ``engine.Engine`` and ``testing.FakeEngine`` provide it."""

    @property
    def has_chat_template(self) -> bool: ...

    def render_chat(self, messages: Sequence[tuple[str, str]]) -> str: ...
    def tokenize(self, text: str) -> list[int]: ...
    def check_fits(self, prompt_tokens: int, k: int, max_tokens: int) -> int: ...
    def generate(
        self, prompt: Sequence[int], sampling: Sampling, seeds: Sequence[int], stop: Sequence[str] = (),
        *, logprobs: int | None = None, kill: tuple[float, int] | None = None,
    ) -> Iterator[Any]: ...  # fmt: skip
    def close(self) -> None: ...


@dataclass(frozen=True)
class LoadOptions:
    """How models are loaded and scheduled: GPU layers (-1 = all), CPU threads (None = one per core), the
    memory budget (None: --budget/EDGEMUX_BUDGET/profile/default), decode policy, early stop and its rule
    (None: the profile's, else stoprules.DEFAULT_STOP_RULE)."""

    n_gpu_layers: int = 0
    n_threads: int | None = None
    budget: str | None = None
    policy: str = DEFAULT_POLICY
    early_stop: bool = True
    stop_rule: str | None = None
    trace_kill: bool | None = None  # None: the profile's (on where it has kill floors)


@dataclass(frozen=True)
class ContextShape:
    """Every loaded model's context: ``cells`` KV cells shared by up to ``sequences`` samples at once."""

    cells: int
    sequences: int


EngineFactory = Callable[[ModelSpec, Path, int, int, LoadOptions], EngineLike]


def llama_engine(spec: ModelSpec, path: Path, n_ctx: int, n_seq_max: int, options: LoadOptions) -> EngineLike:
    from ..engine.engine import Engine  # imported lazily: the pure layers and the fake engine never load llama.cpp

    return Engine(
        path,
        n_ctx=min(n_ctx, spec.context_length * n_seq_max),
        n_seq_max=n_seq_max,
        n_gpu_layers=options.n_gpu_layers,
        n_threads=options.n_threads,
        expected_nbytes=spec.file_nbytes,
    )


class Models:
    """Loaded models within ``budget_bytes``, each with the context ``shape``.

    ``download``: whether a model that is not cached is fetched when it is first needed (with
    ``fetch_progress``); the server says False, so its decode thread never waits on the network and a
    missing model is a ``NotCachedError`` (the server downloads on a thread of its own).
    An injected ``engine_factory`` (tests, replays of recorded runs) gets the path where the file would be
    and nothing is fetched.
    """

    def __init__(
        self,
        catalog: Catalog,
        options: LoadOptions,
        budget_bytes: int,
        shape: ContextShape,
        *,
        engine_factory: EngineFactory | None = None,
        fetch_progress: Callable[[], fetch.Progress] | None = None,
        download: bool = True,
    ) -> None:
        self.catalog, self.options, self.shape = catalog, options, shape
        self._engine_factory = engine_factory or llama_engine
        self._fetch_progress = fetch_progress or fetch.NullProgress
        self._download = download
        self._shapes: dict[str, ModelShape] = {}
        self.resident = ResidentSet(budget_bytes, self._load, self.estimated_bytes)

    @property
    def budget_bytes(self) -> int:
        return self.resident.budget_bytes

    def _load(self, name: str) -> EngineLike:
        spec = self.catalog.get(name)
        real = self._engine_factory is llama_engine
        if isinstance(spec.source, RemoteSource):
            if not real:  # a scripted engine stands in for the server; there is no file
                return self._engine_factory(spec, Path(), self.shape.cells, self.shape.sequences, self.options)
            from ..engine.remote import RemoteEngine

            return RemoteEngine(name, spec.source)
        if not real or fetch.is_cached(spec):
            path = fetch.cached_path(spec)
        elif self._download:
            path = fetch.pull(spec, self._fetch_progress())
        else:
            raise NotCachedError(name)
        return self._engine_factory(spec, path, self.shape.cells, self.shape.sequences, self.options)

    def estimated_bytes(self, name: str) -> int | None:
        """Bytes ``name`` will hold with this context shape; None when its shape is unknown before loading
        (the resident set then measures it once loaded). A remote model holds none here."""
        if self.catalog.get(name).is_remote:
            return 0
        if name not in self._shapes:
            try:
                self._shapes[name] = shape_of(self.catalog.get(name))
            except (InvalidRequestError, ValueError) as e:
                log.info("no memory estimate for %s (%s); it will be measured when it loads", name, e)
                return None
        return estimate(
            name, self._shapes[name], cells=self.shape.cells, k=self.shape.sequences,
            n_gpu_layers=self.options.n_gpu_layers,
        ).total_bytes  # fmt: skip

    def reshape(self, shape: ContextShape) -> None:
        """Give models loaded from now on the context ``shape``; loaded ones are unloaded (they are idle
        between questions), so every context still gets its bytes from the resident set first."""
        if shape != self.shape:
            log.info("contexts resized to %d cells for %d sequences", shape.cells, shape.sequences)
            self.resident.close()
            self.shape = shape

    def check_prompt_before_load(
        self, name: str, k: int, max_tokens: int, text_bytes: int, tokens_of: Callable[[Any], list[int]]
    ) -> None:
        """Refuse (PromptTooLongError, with the numbers) a prompt that cannot fit ``name``'s context before
        the model is loaded for it: ``text_bytes`` bounds its tokens from above (a token is at least one
        byte, the chat template adds little), so only a long prompt pays for reading the vocabulary alone
        and counting them with ``tokens_of(tokenizer)``."""
        spec = self.catalog.get(name)
        if spec.is_remote:
            return  # the server holds its own limit and says so
        cells = min(self.shape.cells, spec.context_length * self.shape.sequences)
        if text_bytes + TEMPLATE_TOKENS + k * max_tokens <= cells:
            return
        if self._engine_factory is not llama_engine or not fetch.is_cached(spec):
            return  # a scripted engine checks for itself; an absent file is counted once it is here
        from ..engine.tokenizer import Tokenizer

        with Tokenizer.open(fetch.cached_path(spec), spec.file_nbytes) as tokenizer:
            prompt_tokens = len(tokens_of(tokenizer))
        check_context(name, prompt_tokens, k, max_tokens, cells=cells, trained=spec.context_length)

    def hold(self, name: str) -> Generator[Event, None, EngineLike]:
        """Acquire ``name`` from the resident set, announcing the load when it is not loaded yet."""
        if self.resident.is_resident(name):
            engine: EngineLike = self.resident.acquire(name)
            return engine
        yield ModelLoading(name)
        start = time.perf_counter()
        engine = self.resident.acquire(name)
        yield ModelLoaded(name, time.perf_counter() - start)
        return engine

    def release(self, name: str) -> None:
        self.resident.release(name)

    def close(self) -> None:
        """Unload every model."""
        self.resident.close()
