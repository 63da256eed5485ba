"""The server's decode thread: one thread owns every llama.cpp context and runs jobs from a bounded FIFO
queue, in the order they came, so no two requests ever touch a context at once. Plain generation
requests for the same model that wait in the queue are decoded together in one batch (up to
``max_sequences`` samples in all), which is where concurrent clients gain throughput.

A job is either a SLM-MUX question for a profile (``MuxJob``) or plain generation by one model with n
samples (``GenerateJob``). The worker reports back through the job's ``emit`` callback (which the web layer
turns into SSE chunks or one JSON body) and checks ``cancelled`` after every decode step: a client that
went away stops its generation and frees its sequences at once. All models live in one resident set
within the memory budget, shared by every profile and single model the server offers.
"""

from __future__ import annotations

import logging
import queue
import random
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from . import fetch
from .catalog import Catalog
from .errors import InvalidRequestError
from .planning import model_bytes
from .profiles import Profile, load_profile
from .resident import ResidentSet
from .runtime import LoadOptions, Mux
from .types import DecisionMade, Event, FinishedSequence, ModelLoaded, ModelLoading, Sampling

__all__ = ["GenerateJob", "Job", "MuxJob", "QueueFull", "Worker"]

log = logging.getLogger("edgemux.worker")

Emit = Callable[[str, Any], None]  # (kind, payload): "event", "delta", "done", "error"


class QueueFull(Exception):
    """The job queue is at capacity: the client should retry later."""


@dataclass
class Job:
    emit: Emit
    cancelled: threading.Event = field(default_factory=threading.Event)
    submitted: float = field(default_factory=time.monotonic)


@dataclass
class MuxJob(Job):
    profile: str = "default"
    question: str = ""
    sampling: dict[str, Any] = field(default_factory=dict)  # overrides of the profile's sampling
    min_confidence: float | None = None  # None: the profile's abstain_below


@dataclass
class GenerateJob(Job):
    model: str = ""
    messages: Sequence[tuple[str, str]] | None = None  # chat: rendered with the model's template
    prompt: str | None = None  # completion: used as is
    sampling: Sampling = field(default_factory=Sampling)
    stop: tuple[str, ...] = ()


@dataclass
class Stats:
    """Counters for /metrics (written by the worker thread, read by the web thread: plain ints are fine)."""

    requests: dict[tuple[str, str], int] = field(default_factory=dict)  # (model, outcome) -> count
    generated_tokens: int = 0
    prompt_tokens: int = 0
    busy_seconds: float = 0.0

    def count(self, model: str, outcome: str) -> None:
        self.requests[(model, outcome)] = self.requests.get((model, outcome), 0) + 1


class Worker:
    """Owns the models; runs jobs one at a time on its own thread."""

    def __init__(
        self,
        *,
        default_profile: str,
        budget_bytes: int,
        load: LoadOptions,
        max_queue: int = 16,
        cells: int = 4096,
        max_sequences: int = 8,
        catalog: Catalog | None = None,
        engine_factory: Callable[..., Any] | None = None,
    ) -> None:
        self.catalog = catalog or Catalog()
        self.default_profile = load_profile(default_profile)  # a bad name fails before the server starts
        self.load_options = load
        self.cells, self.max_sequences = cells, max_sequences
        self._engine_factory = engine_factory
        self.resident = ResidentSet(budget_bytes, self._load, self._estimate)
        self.budget_bytes = budget_bytes
        self.queue: queue.Queue[Job | None] = queue.Queue(maxsize=max_queue)
        self.stats = Stats()
        self.ready = threading.Event()
        self.load_error: BaseException | None = None
        self.current: Job | None = None
        self.batch: list[Job] = []  # the requests decoded together with ``current``
        self._muxes: dict[str, Mux] = {}
        self._thread = threading.Thread(target=self._run, name="edgemux-decode", daemon=True)

    # -- models ---------------------------------------------------------------------------------------

    def _load(self, name: str) -> Any:
        spec = self.catalog.get(name)
        if self._engine_factory is not None:
            return self._engine_factory(
                spec, fetch.cached_path(spec), self.cells, self.max_sequences, self.load_options
            )
        from .engine import Engine

        path = fetch.pull(spec)
        return Engine(
            path, n_ctx=min(self.cells, spec.context_length), n_seq_max=self.max_sequences,
            n_gpu_layers=self.load_options.n_gpu_layers, n_threads=self.load_options.n_threads,
            expected_nbytes=spec.file_nbytes,
        )  # fmt: skip

    def _estimate(self, name: str) -> int:
        size = model_bytes(
            self.catalog, name, cells=self.cells, k=self.max_sequences, n_gpu_layers=self.load_options.n_gpu_layers
        )
        return size or 0  # unknown: measured once loaded

    def mux_for(self, profile: str | Profile) -> Mux:
        """The Mux of a profile (by name, or the profile itself), sharing the worker's resident set."""
        name = profile.name if isinstance(profile, Profile) else profile
        if name not in self._muxes:
            loaded = profile if isinstance(profile, Profile) else load_profile(name)
            self._muxes[name] = Mux(loaded, catalog=self.catalog, load=self.load_options, resident=self.resident)
        return self._muxes[name]

    # -- lifecycle --------------------------------------------------------------------------------------

    def start(self, on_event: Callable[[Event], None] | None = None) -> None:
        """Start the thread; it preloads the default profile's models first (``ready`` is set after)."""
        self._on_preload = on_event or (lambda e: None)
        self._thread.start()

    def stop(self) -> None:
        for running in [*self.batch, *([self.current] if self.current else [])]:
            running.cancelled.set()
        while True:  # drop what waits: those clients are told the server is going away
            try:
                waiting = self.queue.get_nowait()
            except queue.Empty:
                break
            if waiting is not None:
                waiting.emit("error", InvalidRequestError("the server is shutting down"))
        self.queue.put(None)
        self._thread.join(timeout=30)
        for mux in self._muxes.values():
            mux.close()
        self.resident.close()

    def submit(self, job: Job) -> None:
        try:
            self.queue.put_nowait(job)
        except queue.Full:
            raise QueueFull from None

    @property
    def depth(self) -> int:
        """Requests waiting or running."""
        return self.queue.qsize() + max(len(self.batch), 1 if self.current is not None else 0)

    def _run(self) -> None:
        try:
            for event in self.mux_for(self.default_profile).preload():
                self._on_preload(event)
        except BaseException as e:  # reported by /health and the serve command
            self.load_error = e
            log.error("preloading failed: %s", e)
        self.ready.set()
        while True:
            job = self.queue.get()
            if job is None:
                return
            if job.cancelled.is_set():
                continue
            self.current = job
            start = time.perf_counter()
            try:
                if isinstance(job, MuxJob):
                    self._run_mux(job)
                elif isinstance(job, GenerateJob):
                    self._run_generate(job)
            except BaseException as e:  # the job fails, the worker goes on
                job.emit("error", e)
            finally:
                self.stats.busy_seconds += time.perf_counter() - start
                self.current = None

    # -- jobs -----------------------------------------------------------------------------------------

    def _run_mux(self, job: MuxJob) -> None:
        mux = self.mux_for(job.profile)
        sampling = replace(mux.profile.sampling, **{k: v for k, v in job.sampling.items() if v is not None}).validated()
        events = mux.stream(job.question, sampling=sampling, min_confidence=job.min_confidence)
        try:
            for event in events:
                if job.cancelled.is_set():
                    return  # closing the stream (finally) cancels the running batches and releases the models
                if isinstance(event, DecisionMade):
                    self.stats.generated_tokens += event.result.tokens
                    job.emit("done", event.result)
                else:
                    job.emit("event", event)
        finally:
            events.close()  # type: ignore[attr-defined]

    def _companions(self, job: GenerateJob) -> list[GenerateJob]:
        """Queued requests for the same model that fit next to ``job`` in one batch: decoding them together
        costs little more per step than one (the server's parallel requests, without a slot setting)."""
        picked: list[GenerateJob] = []
        total = job.sampling.k
        with self.queue.mutex:
            for other in list(self.queue.queue):
                if (
                    isinstance(other, GenerateJob) and other.model == job.model and not other.cancelled.is_set()
                    and total + other.sampling.k <= self.max_sequences
                ):  # fmt: skip
                    self.queue.queue.remove(other)
                    picked.append(other)
                    total += other.sampling.k
            if picked:
                self.queue.not_full.notify(len(picked))
        return picked

    def _run_generate(self, first: GenerateJob) -> None:
        from .engine import GenerationRequest  # only real engines decode several requests at once

        jobs: list[GenerateJob] = [first, *self._companions(first)]
        self.batch = [*jobs]
        engine = self._hold(first)
        try:
            requests, live = [], []
            for job in jobs:
                try:
                    text = engine.render_chat(job.messages) if job.messages is not None else job.prompt or ""
                    tokens = engine.tokenize(text)
                    sampling = job.sampling
                    if sampling.seed is None:
                        sampling = replace(sampling, seed=random.randrange(2**31 - 1 - sampling.k))
                    engine.check_fits(len(tokens), sampling.k, sampling.max_tokens)
                except BaseException as e:  # this request fails; its companions go on
                    job.emit("error", e)
                    continue
                seeds = [sampling.seed + j for j in range(sampling.k)]  # type: ignore[operator]
                requests.append(GenerationRequest(tokens, sampling, seeds, job.stop))
                live.append(job)
            if not live:
                return
            finished: list[dict[int, FinishedSequence]] = [{} for _ in live]
            steps = engine.generate_many(requests, cancelled=lambda i: live[i].cancelled.is_set())
            try:
                for report in steps:
                    for i, step in enumerate(report):
                        if step is None:
                            continue
                        live[i].emit("delta", step)
                        for f in step.finished:
                            finished[i][f.index] = f
            finally:
                steps.close()
            for job, request, done in zip(live, requests, finished, strict=True):
                if job.cancelled.is_set():
                    continue
                self.stats.prompt_tokens += len(request.prompt)
                self.stats.generated_tokens += sum(f.tokens for f in done.values())
                job.emit("done", ([done[i] for i in sorted(done)], len(request.prompt)))
        finally:
            self.batch = []
            self.resident.release(first.model)

    def _hold(self, job: GenerateJob) -> Any:
        loaded = self.resident.is_resident(job.model)
        if not loaded:
            job.emit("event", ModelLoading(job.model))
        start = time.perf_counter()
        engine = self.resident.acquire(job.model)
        if not loaded:
            job.emit("event", ModelLoaded(job.model, time.perf_counter() - start))
        return engine

    def model_names(self) -> list[str]:
        """Models served by name: those already cached and those of the preloaded profile (others would
        need a download first: `edgemux models pull NAME`, then they are listed too)."""
        profile = set(self.default_profile.model_names)
        return [s.name for s in self.catalog.all() if s.name in profile or fetch.is_cached(s)]
