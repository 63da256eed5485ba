"""The llama.cpp engine: one loaded model, its context and the batched decode loop (llama.cpp comes from ``llama.py``).

An Engine is one loaded GGUF model with one context. ``generate`` draws k samples over one shared prompt
as one batch: the prompt is evaluated once with every sequence id attached to its tokens (so its KV cells
are shared), then each step decodes one token for every live sequence in a single ``llama_batch``, each
sequence sampled by its own seeded sampler chain. Finished sequences leave the batch and their cells are
freed. The rest goes to the runtime, which turns finished sequences into samples and votes.
"""

from __future__ import annotations

import ctypes
import logging
import time
from collections.abc import Callable, Generator, Iterator, Sequence
from pathlib import Path

import numpy as np

from ..catalog.gguf import check_file, read_header
from ..errors import EngineError, InvalidRequestError, PromptTooLongError
from ..memory.memory import check_context
from ..memory.osmemory import rss_bytes
from ..types import BatchStep, FinishedSequence, Sampling, TokenLogprobs
from .llama import default_threads, llama_cpp, model_params
from .logits import token_logprobs
from .samplers import eog_tokens, new_sampler
from .scoring import Scorer
from .sequences import DecodingSequence, GenerationRequest
from .tokenizer import Tokenizer

__all__ = ["Engine", "default_threads"]

log = logging.getLogger("edgemux.engine")


class Engine:
    """One GGUF model loaded with llama.cpp, with a context sized for ``n_ctx`` cells and ``n_seq_max`` sequences.

    Use as a context manager, or call ``close()``: that frees the model, the context and the batch.
    """

    def __init__(
        self,
        path: Path | str,
        *,
        n_ctx: int = 4096,
        n_seq_max: int = 8,
        n_gpu_layers: int = 0,
        n_threads: int | None = None,
        expected_nbytes: int | None = None,
    ) -> None:
        self.path = Path(path)
        check_file(self.path, expected_nbytes)  # a clear error for a missing, foreign or truncated file
        self.n_threads = n_threads or default_threads()
        self.n_gpu_layers = n_gpu_layers
        self._model: ctypes.c_void_p | None = None
        self._ctx: ctypes.c_void_p | None = None
        self._batch: llama_cpp.llama_batch | None = None
        self._batch_capacity = 0
        self._batch_seq_max = 0
        self._prompt_logits_pos = 0
        self._eog: list[int] | None = None  # end-of-generation tokens, listed on first need
        self._scorer: Scorer | None = None  # made on first score()
        rss_before = rss_bytes()
        self._model = llama_cpp.llama_model_load_from_file(str(self.path).encode(), model_params(n_gpu_layers))
        if not self._model:
            read_header(self.path)  # a file cut short says so (exit 6) rather than "llama.cpp failed"
            raise EngineError(
                f"llama.cpp could not load {self.path}; run with -v to see why (corrupt file or unsupported architecture)"
            )
        self._vocab = llama_cpp.llama_model_get_vocab(self._model)
        self.n_ctx_train = int(llama_cpp.llama_model_n_ctx_train(self._model))
        self._n_vocab = int(llama_cpp.llama_vocab_n_tokens(self._vocab))
        self.text = Tokenizer(self._model, self.path.name)
        try:
            self._new_context(n_ctx, n_seq_max)
        except BaseException:
            self.close()
            raise
        rss_after = rss_bytes()
        # What loading really cost this process (llama.cpp populates the mapping, so the weights count).
        self.measured_nbytes = rss_after - rss_before if rss_before is not None and rss_after is not None else None

    # -- lifecycle ------------------------------------------------------------------------------------

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Free the batch, the context and the model (idempotent)."""
        if self._batch is not None:
            llama_cpp.llama_batch_free(self._batch)
            self._batch = None
        if self._ctx:
            llama_cpp.llama_free(self._ctx)
            self._ctx = None
        if self._scorer is not None:
            self._scorer.close()
            self._scorer = None
        if self._model:
            llama_cpp.llama_model_free(self._model)
            self._model = None

    @property
    def closed(self) -> bool:
        return self._model is None

    @property
    def n_ctx(self) -> int:
        return int(llama_cpp.llama_n_ctx(self._ctx)) if self._ctx else 0

    @property
    def n_seq_max(self) -> int:
        return int(llama_cpp.llama_n_seq_max(self._ctx)) if self._ctx else 0

    @property
    def model_nbytes(self) -> int:
        return int(llama_cpp.llama_model_size(self._model)) if self._model else 0

    def _new_context(self, n_ctx: int, n_seq_max: int) -> None:
        if self._ctx:
            llama_cpp.llama_free(self._ctx)
            self._ctx = None
        params = llama_cpp.llama_context_default_params()
        params.n_ctx = n_ctx
        params.n_batch = min(n_ctx, 512)
        params.n_ubatch = min(n_ctx, 512)
        params.n_seq_max = n_seq_max
        # We never ask for more than one output per sequence per batch: reserving logits for a whole ubatch
        # (llama.cpp's default) costs n_ubatch x n_vocab x 4 bytes, 300 MiB for Qwen2.5, for nothing.
        params.n_outputs_max = n_seq_max
        params.n_threads = self.n_threads
        params.n_threads_batch = self.n_threads
        params.kv_unified = True  # one cache for all sequences, so the shared prompt is stored once
        params.no_perf = True
        self._ctx = llama_cpp.llama_init_from_model(self._model, params)
        if not self._ctx:
            raise EngineError(
                f"llama.cpp could not create a context of {n_ctx} tokens for {self.path.name}; lower the context or -k"
            )
        self._memory = llama_cpp.llama_get_memory(self._ctx)
        self._ensure_batch(max(params.n_batch, n_seq_max), n_seq_max)

    def _ensure_batch(self, n_tokens: int, n_seq_max: int) -> None:
        if self._batch is not None and self._batch_capacity >= n_tokens and self._batch_seq_max >= n_seq_max:
            return
        if self._batch is not None:
            llama_cpp.llama_batch_free(self._batch)
        self._batch = llama_cpp.llama_batch_init(n_tokens, 0, n_seq_max)
        self._batch_capacity, self._batch_seq_max = n_tokens, n_seq_max

    # -- text (the model's own tokenizer and chat template) ------------------------------------------

    @property
    def has_chat_template(self) -> bool:
        return self.text.has_chat_template

    def render_chat(self, messages: Sequence[tuple[str, str]]) -> str:
        return self.text.render_chat(messages)

    def tokenize(self, text: str) -> list[int]:
        return self.text.tokenize(text)

    # -- benchmarking -----------------------------------------------------------------------------

    @property
    def n_vocab(self) -> int:
        return self._n_vocab

    def time_prompt(self, tokens: Sequence[int]) -> float:
        """Seconds to evaluate ``tokens`` as one sequence's prompt from an empty cache (llama-bench's pp)."""
        if self.closed:
            raise EngineError("the engine is closed")
        self.check_fits(len(tokens), 1, 0)
        llama_cpp.llama_memory_clear(self._memory, True)
        start = time.perf_counter()
        try:
            self._eval_prompt(tokens, [0])
            llama_cpp.llama_synchronize(self._ctx)
            return time.perf_counter() - start
        finally:
            llama_cpp.llama_memory_clear(self._memory, True)

    # -- teacher-forced scoring --------------------------------------------------------------------

    def score(
        self, prompt: Sequence[int], continuations: Sequence[Sequence[int]], keep: int = 0
    ) -> list[list[TokenLogprobs]]:
        """Each continuation token's logprobs given the prompt and the tokens before it, at prompt speed
        (``scoring.Scorer``: a second context, made on first use, freed with the engine)."""
        if self.closed or self._model is None:
            raise EngineError("the engine is closed")
        if self._scorer is None:
            self._scorer = Scorer(self._model, self.n_ctx, self.n_threads, self._n_vocab, self.path.name)
        return self._scorer.score(prompt, continuations, keep)

    # -- generation ---------------------------------------------------------------------------------

    def check_fits(self, prompt_tokens: int, k: int, max_tokens: int) -> int:
        """Cells needed for the prompt (stored once) plus k sequences of up to max_tokens; raise with the
        numbers when they exceed what the model was trained for or the context it was given at load (the
        context never grows: its bytes were granted by the resident set when it loaded)."""
        needed = check_context(self.path.name, prompt_tokens, k, max_tokens, cells=self.n_ctx, trained=self.n_ctx_train)
        if k > self.n_seq_max:
            raise InvalidRequestError(
                f"{k} samples at once, but {self.path.name} was loaded for at most {self.n_seq_max}: lower n / -k"
            )
        return needed

    def generate(
        self,
        prompt: Sequence[int],
        sampling: Sampling,
        seeds: Sequence[int],
        stop: Sequence[str] = (),
        *,
        ignore_eos: bool = False,
        logprobs: int | None = None,
        kill: tuple[float, int] | None = None,
    ) -> Iterator[BatchStep]:
        """Draw len(seeds) samples of ``prompt`` as one batch; yield after every decode step.

        ``ignore_eos`` forbids end-of-generation tokens so every sample runs to max_tokens (benchmarks).
        ``logprobs`` (0-20) records every generated token's logprob and confidence in the finished sequences,
        with that many most likely alternatives (``logits.token_logprobs``); None computes nothing.
        ``kill`` (floor, window): trace kill (``DecodingSequence.check_kill``; computes confidences too).
        Closing the generator early cancels the live sequences and frees their cells.
        """
        steps = self.generate_many([GenerationRequest(prompt, sampling, seeds, stop, ignore_eos, logprobs, kill)])
        try:
            for step in steps:
                if step[0] is not None:
                    yield step[0]
        finally:
            steps.close()

    def generate_many(
        self, requests: Sequence[GenerationRequest], cancelled: Callable[[int], bool] | None = None
    ) -> Generator[list[BatchStep | None], None, None]:
        """Decode several requests together: each prompt is evaluated once (its cells shared by its k
        sequences), then every step decodes one token for every live sequence of every request in a single
        ``llama_batch``. Yields, after every step, one BatchStep per request (None once it is over).
        ``cancelled(i)`` is asked each step; a cancelled request's sequences leave the batch at once.
        """
        if self.closed:
            raise EngineError("the engine is closed")
        if not requests:
            return
        self._check_fits_together(requests)
        start = time.perf_counter()
        # Every call evaluates its prompt afresh. Reusing the cells of an identical earlier prompt would save
        # that work, but the last prompt token evaluated alone gives logits that differ in the last bits from
        # the same token evaluated inside the whole prompt, and the samples then drift: same seeds would no
        # longer mean same samples, which early stop and the benchmarks rely on.
        llama_cpp.llama_memory_clear(self._memory, True)
        groups = self._sequences(requests)
        over = [False] * len(requests)
        finished: list[list[FinishedSequence]] = [[] for _ in requests]
        try:
            for g, (r, group) in enumerate(zip(requests, groups, strict=True)):
                self._eval_prompt(r.prompt, [s.seq_id for s in group])
                for s in group:  # sample now: the next prompt's evaluation replaces these logits
                    s.batch_pos = self._prompt_logits_pos
                    self._sample(s, finished[g], start)
            while True:
                report: list[BatchStep | None] = []
                for g, group in enumerate(groups):
                    if over[g]:
                        report.append(None)
                        continue
                    report.append(BatchStep(
                        tuple(s.tokens for s in group), tuple(finished[g]), len(requests[g].prompt),
                        time.perf_counter() - start, tuple(s.text for s in group), tuple(s.logprobs for s in group),
                    ))  # fmt: skip
                    finished[g] = []
                    over[g] = all(s.done is not None for s in group)
                yield report
                for g, group in enumerate(groups):  # the caller may have cancelled while we were paused
                    if not over[g] and cancelled is not None and cancelled(g):
                        self._drop(group)
                        over[g] = True
                live = [s for g, group in enumerate(groups) if not over[g] for s in group if s.done is None]
                if not live:
                    return
                self._decode_step(live)
                for g, group in enumerate(groups):
                    for s in group:
                        if s.done is None and not over[g]:
                            self._sample(s, finished[g], start)
        finally:
            for group in groups:
                for s in group:
                    llama_cpp.llama_sampler_free(s.sampler)
            if self._ctx:
                llama_cpp.llama_memory_clear(self._memory, True)

    def _check_fits_together(self, requests: Sequence[GenerationRequest]) -> None:
        needed, total = 0, 0
        for r in requests:
            if not r.prompt:
                raise InvalidRequestError("the prompt is empty")
            needed += self.check_fits(len(r.prompt), len(r.seeds), r.sampling.max_tokens)
            total += len(r.seeds)
        if needed > self.n_ctx or total > self.n_seq_max:
            raise PromptTooLongError(
                f"{len(requests)} requests need {needed} KV cells and {total} sequences together; "
                f"{self.path.name} was loaded with {self.n_ctx} cells for {self.n_seq_max}: decode them apart"
            )

    def _sequences(self, requests: Sequence[GenerationRequest]) -> list[list[DecodingSequence]]:
        """One group of sequences per request, each with its own seeded sampler and a unique sequence id."""
        groups, next_id = [], 0
        for r in requests:
            eog = self._eog_tokens() if r.ignore_eos else ()
            n = len(r.prompt)
            groups.append([DecodingSequence(i, next_id + i, new_sampler(self._vocab, r.sampling, seed, eog=eog),
                                     r.sampling.max_tokens, r.stop, pos=n, prompt_len=n,
                                     logprobs=None if r.logprobs is None and r.kill is None else [],
                                     top_logprobs=r.logprobs or 0, kill=r.kill)
                           for i, seed in enumerate(r.seeds)])  # fmt: skip
            next_id += len(r.seeds)
        return groups

    def _sample(self, s: DecodingSequence, finished: list[FinishedSequence], start: float) -> None:
        token = llama_cpp.llama_sampler_sample(s.sampler, self._ctx, s.batch_pos)
        if s.logprobs is not None and not llama_cpp.llama_vocab_is_eog(self._vocab, token):
            # The same logits the sampler chain read, before it: the model's distribution, not the chain's.
            logits = np.ctypeslib.as_array(
                llama_cpp.llama_get_logits_ith(self._ctx, s.batch_pos), shape=(self._n_vocab,)
            )
            s.logprobs.append(token_logprobs(logits, token, s.top_logprobs))
        self._advance(s, token)
        s.check_kill()
        if s.done is not None:  # free its own cells; the prompt's stay (shared, and cached for the next call)
            llama_cpp.llama_memory_seq_rm(self._memory, s.seq_id, s.prompt_len, -1)
            logprobs = tuple(s.logprobs) if s.logprobs is not None else None
            finished.append(FinishedSequence(s.index, s.text, s.tokens, s.done, time.perf_counter() - start,
                                             logprobs=logprobs))  # fmt: skip

    def _drop(self, group: list[DecodingSequence]) -> None:
        for s in group:
            if s.done is None:
                llama_cpp.llama_memory_seq_rm(self._memory, s.seq_id, s.prompt_len, -1)
                s.done = "cancelled"

    def _eog_tokens(self) -> list[int]:
        if self._eog is None:
            self._eog = eog_tokens(self._vocab)
        return self._eog

    def _set_token(self, i: int, token: int, pos: int, seq_ids: Sequence[int], logits: bool) -> None:
        b = self._batch
        assert b is not None  # allocated with the context, freed only by close()
        b.token[i] = token
        b.pos[i] = pos  # type: ignore[call-overload]
        b.n_seq_id[i] = len(seq_ids)
        for j, seq in enumerate(seq_ids):
            b.seq_id[i][j] = seq
        b.logits[i] = logits

    def _decode(self, n_tokens: int) -> None:
        assert self._batch is not None
        self._batch.n_tokens = n_tokens
        code = llama_cpp.llama_decode(self._ctx, self._batch)
        if code == 1:
            raise EngineError(
                f"{self.path.name}: no room left in the KV cache ({self.n_ctx} cells); lower -k or --max-tokens"
            )
        if code != 0:
            raise EngineError(f"{self.path.name}: llama_decode failed with code {code}")

    def _eval_prompt(self, prompt: Sequence[int], seq_ids: Sequence[int]) -> None:
        # Every prompt token belongs to all k sequences: its KV cells are computed and stored once.
        all_seqs = list(seq_ids)
        n_batch = int(llama_cpp.llama_n_batch(self._ctx))
        for chunk_start in range(0, len(prompt), n_batch):
            chunk = prompt[chunk_start : chunk_start + n_batch]
            for i, token in enumerate(chunk):
                is_last = chunk_start + i == len(prompt) - 1
                self._set_token(i, token, chunk_start + i, all_seqs, is_last)
            self._decode(len(chunk))
        self._prompt_logits_pos = (len(prompt) - 1) % n_batch

    def _decode_step(self, live: list[DecodingSequence]) -> None:
        for i, s in enumerate(live):
            self._set_token(i, s.last_token, s.pos, (s.seq_id,), True)
            s.batch_pos = i
            s.pos += 1
        self._decode(len(live))

    def _advance(self, s: DecodingSequence, token: int) -> None:
        if llama_cpp.llama_vocab_is_eog(self._vocab, token):
            s.finish("eos")
        else:
            s.add(token, self.text.piece(token))
