"""Teacher-forced scoring: what recorded samples' token signals would have been, at prompt speed.

A ``Scorer`` owns a second llama.cpp context on an engine's model, of one sequence, that keeps the logits
of every position of a 128-token chunk (the decode context keeps one per sequence, to save memory). The
prompt is evaluated once; each continuation is evaluated after it in chunks, and each position's logprobs
are read while its chunk's logits are there.
"""

from __future__ import annotations

import ctypes
from collections.abc import Sequence

import numpy as np

from ..errors import EngineError, PromptTooLongError
from ..types import TokenLogprobs
from .llama import llama_cpp
from .logits import token_logprobs

__all__ = ["Scorer"]


class Scorer:
    """Scores continuations on ``model`` (a loaded llama.cpp model; ``name`` for messages)."""

    def __init__(self, model: ctypes.c_void_p, n_ctx: int, n_threads: int, n_vocab: int, name: str) -> None:
        self._model, self.n_ctx, self.n_threads, self.n_vocab, self.name = model, n_ctx, n_threads, n_vocab, name
        self._ctx: ctypes.c_void_p | None = None

    def close(self) -> None:
        if self._ctx:
            llama_cpp.llama_free(self._ctx)
            self._ctx = None

    def score(
        self, prompt: Sequence[int], continuations: Sequence[Sequence[int]], keep: int = 0
    ) -> list[list[TokenLogprobs]]:
        """Each continuation token's logprob and confidence given the prompt and the tokens before it, at
        prompt speed (the prompt evaluated once, each continuation after it in chunks, every position's
        logits kept): what recorded samples' signals would have been, without drawing them again. Equal to
        what ``generate`` records up to kernel rounding (another batch shape: ~0.05 in token confidence).
        ``keep``: the most likely alternatives kept per token, as ``generate(logprobs=...)``."""
        longest = max((len(c) for c in continuations), default=0)
        if not prompt or not longest:
            return [[] for _ in continuations]
        if len(prompt) + longest > self.n_ctx:
            raise PromptTooLongError(
                f"{len(prompt) + longest} tokens to score; {self.name} was loaded with {self.n_ctx}"
            )
        ctx = self._context()
        memory = llama_cpp.llama_get_memory(ctx)
        llama_cpp.llama_memory_clear(memory, True)
        batch = llama_cpp.llama_batch_init(int(llama_cpp.llama_n_ubatch(ctx)), 0, 1)
        try:
            self._score_chunks(ctx, batch, prompt[:-1], 0)  # shared: its cells stay
            out: list[list[TokenLogprobs]] = []
            for continuation in continuations:
                llama_cpp.llama_memory_seq_rm(memory, 0, len(prompt) - 1, -1)
                # the last prompt token's logits predict the first continuation token, and so on
                inputs = [prompt[-1], *continuation[:-1]] if continuation else []
                out.append(self._score_chunks(ctx, batch, inputs, len(prompt) - 1, continuation, keep))
            return out
        finally:
            llama_cpp.llama_batch_free(batch)

    def _score_chunks(self, ctx: ctypes.c_void_p, batch: llama_cpp.llama_batch, tokens: Sequence[int], first_pos: int,
                      targets: Sequence[int] = (), keep: int = 0) -> list[TokenLogprobs]:  # fmt: skip
        """Evaluate ``tokens`` from ``first_pos`` on in chunks of the scoring context's size; with ``targets``
        (the token each position should predict), each one's logprobs, read while its chunk's logits are there."""
        scored: list[TokenLogprobs] = []
        size = int(llama_cpp.llama_n_ubatch(ctx))
        for start in range(0, len(tokens), size):
            chunk = tokens[start : start + size]
            for i, token in enumerate(chunk):
                batch.token[i], batch.pos[i], batch.n_seq_id[i] = token, first_pos + start + i, 1  # type: ignore[call-overload]
                batch.seq_id[i][0] = 0
                batch.logits[i] = bool(targets)
            batch.n_tokens = len(chunk)
            if llama_cpp.llama_decode(ctx, batch) != 0:
                raise EngineError(f"{self.name}: llama_decode failed while scoring")
            for i in range(len(chunk) if targets else 0):
                row = np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(ctx, i), shape=(self.n_vocab,))
                scored.append(token_logprobs(row, targets[start + i], keep))
        return scored

    def _context(self) -> ctypes.c_void_p:
        """A second context of one sequence that keeps the logits of every position of a 128-token chunk
        (the decode context keeps one per sequence, to save memory)."""
        if self._ctx is None:
            params = llama_cpp.llama_context_default_params()
            params.n_ctx = self.n_ctx
            params.n_batch = params.n_ubatch = min(self.n_ctx, 128)
            params.n_seq_max = 1
            params.n_threads = params.n_threads_batch = self.n_threads
            params.no_perf = True
            self._ctx = llama_cpp.llama_init_from_model(self._model, params)
            if not self._ctx:
                raise EngineError(f"llama.cpp could not create a scoring context for {self.name}")
        return self._ctx
