"""Answers compared by embeddings computed through llama.cpp: the other similarity ``opentext`` offers
(``measure: embedding``), next to the lexical default.

The vectors are a pool model's mean-pooled hidden states (SmolLM2-135M unless ``EDGEMUX_EMBEDDING_MODEL``
names another cached model): no embedding model can be fetched from PyPI, and the pool's own models
are already here. Two answers agree at cosine ≥ 0.9, the SLM-MUX authors' open-ended threshold. What it
buys over the lexical measure, and costs, is measured by ``bench/open_answers.py``.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

__all__ = ["clear_cache", "embed_answers", "embedding_similarity"]

_lock = threading.Lock()  # one embedding context, used from whichever thread decides


class _Embedder:
    """One GGUF loaded for embeddings: many texts decoded as one batch, one sequence each, mean-pooled."""

    N_CTX = 512
    N_SEQ = 64

    def __init__(self, path: Path) -> None:
        from ..errors import EngineError
        from .llama import default_threads, llama_cpp, model_params
        from .tokenizer import Tokenizer

        self._llama = llama_cpp
        self._model = llama_cpp.llama_model_load_from_file(str(path).encode(), model_params())
        if not self._model:
            raise EngineError(f"llama.cpp could not load {path} for embeddings; run with -v to see why")
        params = llama_cpp.llama_context_default_params()
        params.n_ctx = params.n_batch = params.n_ubatch = self.N_CTX
        params.n_seq_max = self.N_SEQ
        params.embeddings = True
        params.pooling_type = llama_cpp.LLAMA_POOLING_TYPE_MEAN
        params.kv_unified = True
        params.n_threads = params.n_threads_batch = default_threads()
        self._ctx = llama_cpp.llama_init_from_model(self._model, params)
        if not self._ctx:
            raise EngineError(f"llama.cpp could not create an embedding context for {path}")
        self._n_embd = int(llama_cpp.llama_model_n_embd(self._model))
        self._tokenizer = Tokenizer(self._model, path.name)
        self._batch = llama_cpp.llama_batch_init(self.N_CTX, 0, 1)

    def embed(self, texts: Sequence[str]) -> list[NDArray[np.float64]]:
        # A text longer than the context is cut: an answer's own words are a few tokens.
        tokens = [self._tokenizer.tokenize(t or " ")[: self.N_CTX] for t in texts]
        rows: list[NDArray[np.float64]] = []
        group: list[list[int]] = []
        for t in tokens:
            if group and (len(group) == self.N_SEQ or sum(map(len, group)) + len(t) > self.N_CTX):
                rows += self._embed_group(group)
                group = []
            group.append(t)
        return rows + (self._embed_group(group) if group else [])

    def _embed_group(self, group: list[list[int]]) -> list[NDArray[np.float64]]:
        llama, b, n = self._llama, self._batch, 0
        for seq, toks in enumerate(group):
            for pos, token in enumerate(toks):
                b.token[n], b.pos[n], b.n_seq_id[n], b.logits[n] = token, pos, 1, True
                b.seq_id[n][0] = seq
                n += 1
        b.n_tokens = n
        llama.llama_memory_clear(llama.llama_get_memory(self._ctx), True)
        if llama.llama_decode(self._ctx, b) != 0:
            from ..errors import EngineError

            raise EngineError("llama.cpp could not embed the answers")
        return [np.ctypeslib.as_array(llama.llama_get_embeddings_seq(self._ctx, seq), shape=(self._n_embd,))
                .astype(np.float64) for seq in range(len(group))]  # fmt: skip


@lru_cache(maxsize=1)
def _model(name: str) -> _Embedder:
    from ..catalog import fetch
    from ..catalog.catalog import Catalog
    from ..errors import NotCachedError

    spec = Catalog().get(name)
    if not fetch.is_cached(spec):
        raise NotCachedError(f"the embedding model {name} is not downloaded: run `edgemux models pull {name}`")
    return _Embedder(fetch.cached_path(spec))


_MAX_CACHED = 4096
_vectors: dict[str, NDArray[np.float64]] = {}  # text -> unit vector; a server's recent answers stay cached


def _embedding_model() -> _Embedder:
    return _model(os.environ.get("EDGEMUX_EMBEDDING_MODEL", "smollm2-135m"))


def _embed(texts: Sequence[str]) -> None:
    """Embed the texts not cached yet, in one batch (one model pass for all of them)."""
    with _lock:
        new = list(dict.fromkeys(t for t in texts if t not in _vectors))
        if not new:
            return
        rows = _embedding_model().embed([t or " " for t in new])
        if len(_vectors) + len(new) > _MAX_CACHED:
            _vectors.clear()
        for text, v in zip(new, rows, strict=True):
            norm = float(np.linalg.norm(v))
            _vectors[text] = v / norm if norm else v


def _vector(text: str) -> NDArray[np.float64]:
    _embed([text])
    return _vectors[text]


def clear_cache() -> None:
    with _lock:
        _vectors.clear()


def _words(answer: str, question: str) -> str:
    from ..answers.opentext import answer_words

    return " ".join(answer_words(answer, question))


def embed_answers(answers: Sequence[str], question: str = "") -> None:
    """Embed answers about to be compared, all in one batch."""
    _embed([_words(a, question) for a in answers])


def embedding_similarity(a: str, b: str, question: str = "") -> float:
    """Cosine of the two answers' own words (as the lexical measure sees them), embedded."""
    return float(_vector(_words(a, question)) @ _vector(_words(b, question)))
