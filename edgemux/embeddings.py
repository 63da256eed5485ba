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
from functools import lru_cache

import numpy as np
from numpy.typing import NDArray

__all__ = ["embedding_similarity"]

_lock = threading.Lock()  # one embedding context, used from whichever thread decides


@lru_cache(maxsize=1)
def _model(name: str) -> object:
    from . import fetch
    from .catalog import Catalog
    from .errors import NotCachedError
    from .llama import default_threads, llama_cpp

    spec = Catalog().get(name)
    if not fetch.is_cached(spec):
        raise NotCachedError(f"the embedding model {name} is not downloaded: run `edgemux models pull {name}`")
    return llama_cpp.Llama(model_path=str(fetch.cached_path(spec)), embedding=True, n_ctx=512, verbose=False,
                           n_threads=default_threads(), pooling_type=llama_cpp.LLAMA_POOLING_TYPE_MEAN)  # fmt: skip


@lru_cache(maxsize=4096)
def _vector(text: str) -> NDArray[np.float64]:
    model = _model(os.environ.get("EDGEMUX_EMBEDDING_MODEL", "smollm2-135m"))
    with _lock:
        v = np.asarray(model.embed(text or " "), dtype=np.float64)  # type: ignore[attr-defined]
    norm = float(np.linalg.norm(v))
    return v / norm if norm else v


def embedding_similarity(a: str, b: str, question: str = "") -> float:
    """Cosine of the two answers' own words (as the lexical measure sees them), embedded."""
    from .opentext import answer_words

    va, vb = _vector(" ".join(answer_words(a, question))), _vector(" ".join(answer_words(b, question)))
    return float(va @ vb)
