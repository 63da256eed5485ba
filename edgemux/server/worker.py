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
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from ..catalog import fetch
from ..catalog.catalog import Catalog
from ..errors import ShuttingDownError
from ..events import DecisionMade, Event
from ..profiles import Profile, load_profile
from ..schedule.generation import plain_request
from ..schedule.loader import ContextShape, EngineFactory, LoadOptions, Models
from ..schedule.runtime import Mux
from ..types import FinishedSequence, Sampling

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
    logprobs: int | None = None  # None: none; n: each token's logprob with its n likeliest alternatives
    piece: Callable[[int], bytes] | None = None  # a token's bytes in its model's vocabulary (set when decoding)


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
    """Runs jobs one at a time on its own thread, over one ``Models`` shared by every profile it serves."""

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
        engine_factory: EngineFactory | None = None,
    ) -> None:
        self.catalog = catalog or Catalog()
        self.default_profile = load_profile(default_profile)  # a bad name fails before the server starts
        # Every model gets the same context: ``cells`` KV cells for up to ``max_sequences`` samples at once.
        # The decode thread never downloads (``download=False``): the web layer does, beside it.
        self.models = Models(self.catalog, load, budget_bytes, ContextShape(cells, max_sequences),
                             engine_factory=engine_factory, download=False)  # fmt: skip
        self.resident = self.models.resident
        self.budget_bytes = budget_bytes
        self.cells, self.max_sequences = cells, max_sequences
        self.queue: queue.Queue[Job | None] = queue.Queue(maxsize=max_queue)
        self.stats = Stats()
        self.ready = threading.Event()
        self.load_error: BaseException | None = None
        self.current: Job | None = None
        self.batch: list[Job] = []  # the requests decoded together with ``current``
        self._muxes: dict[str, Mux] = {}
        self._thread = threading.Thread(target=self._run, name="edgemux-decode", daemon=True)

    def mux_for(self, profile: str | Profile) -> Mux:
        """The Mux of a profile (by name, or the profile itself), sharing the worker's models."""
        name = profile.name if isinstance(profile, Profile) else profile
        if name not in self._muxes:
            loaded = profile if isinstance(profile, Profile) else load_profile(name)
            self._muxes[name] = Mux(loaded, models=self.models)
        return self._muxes[name]

    # -- lifecycle --------------------------------------------------------------------------------------

    def start(self, on_event: Callable[[Event], None] | None = None) -> None:
        """Start the thread; it preloads the default profile's models first (``ready`` is set after)."""
        self._on_preload = on_event or (lambda e: None)
        self._thread.start()

    def abort(self, why: str = "the server is shutting down") -> int:
        """Cancel every running and waiting job, telling each client ``why`` (503); returns how many."""
        jobs = [*self.batch, *([self.current] if self.current else [])]
        while True:
            try:
                waiting = self.queue.get_nowait()
            except queue.Empty:
                break
            if waiting is not None:
                jobs.append(waiting)
        unique = list({id(job): job for job in jobs}.values())  # a batch holds ``current`` too
        for job in unique:
            job.cancelled.set()  # first: the decode thread then reports nothing more for it
            job.emit("error", ShuttingDownError(why))
        return len(unique)

    def stop(self) -> None:
        self.abort()
        self.queue.put(None)
        self._thread.join(timeout=30)
        self.models.close()

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
        jobs: list[GenerateJob] = [first, *self._companions(first)]
        self.batch = [*jobs]
        try:
            engine = self._hold(first)
            try:
                prepared = [p for job in jobs if (p := self._prepare(engine, job)) is not None]
                while prepared:  # what does not fit next to the others is decoded right after them
                    now, prepared = _fitting(engine, prepared)
                    self._decode_together(engine, now)
            finally:
                self.models.release(first.model)
        finally:
            self.batch = []

    def _hold(self, job: GenerateJob) -> Any:
        """The job's model, its loading reported to the job."""
        hold = self.models.hold(job.model)
        while True:
            try:
                job.emit("event", next(hold))
            except StopIteration as held:
                return held.value

    def _prepare(self, engine: Any, job: GenerateJob) -> tuple[GenerateJob, Any] | None:
        """The job's prompt as a GenerationRequest, or None after telling the job why it cannot run (a
        prompt that cannot fit the context is refused with the numbers; its companions go on)."""
        try:
            request = plain_request(engine, job.model, messages=job.messages, prompt=job.prompt,
                                    sampling=job.sampling, stop=job.stop, logprobs=job.logprobs)  # fmt: skip
        except Exception as e:  # noqa: BLE001 - reported to the client
            job.emit("error", e)
            return None
        return job, request

    def _decode_together(self, engine: Any, batch: list[tuple[GenerateJob, Any]]) -> None:
        jobs = [job for job, _ in batch]
        for job in jobs:
            job.piece = engine.text.piece  # the model's own token texts, for logprobs on the wire
        finished: list[dict[int, FinishedSequence]] = [{} for _ in batch]
        steps = engine.generate_many([r for _, r in batch], cancelled=lambda i: jobs[i].cancelled.is_set())
        try:
            for report in steps:
                for i, step in enumerate(report):
                    if step is not None:
                        jobs[i].emit("delta", step)
                        finished[i].update((f.index, f) for f in step.finished)
        finally:
            steps.close()
        for (job, request), done in zip(batch, finished, strict=True):
            if not job.cancelled.is_set():
                self.stats.prompt_tokens += len(request.prompt)
                self.stats.generated_tokens += sum(f.tokens for f in done.values())
                job.emit("done", ([done[i] for i in sorted(done)], len(request.prompt)))

    def model_names(self) -> list[str]:
        """Models served by name: those already cached and those of the preloaded profile (others would
        need a download first: `edgemux models pull NAME`, then they are listed too)."""
        profile = set(self.default_profile.model_names)
        return [s.name for s in self.catalog.all() if not s.is_remote and (s.name in profile or fetch.is_cached(s))]


def _fitting(engine: Any, prepared: list[tuple[GenerateJob, Any]]) -> tuple[list[Any], list[Any]]:
    """The longest prefix of ``prepared`` whose prompts and samples fit the engine's context together (the
    first always fits: ``check_fits`` let it through), and the rest."""
    cells, sequences = 0, 0
    for i, (_, request) in enumerate(prepared):
        cells += len(request.prompt) + len(request.seeds) * request.sampling.max_tokens
        sequences += len(request.seeds)
        if i > 0 and (cells > engine.n_ctx or sequences > engine.n_seq_max):
            return prepared[:i], prepared[i:]
    return prepared, []
