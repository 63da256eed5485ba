"""Log-probabilities from one row of raw logits: what the engine records for every sampled token.

The values follow llama-server's ``/v1`` semantics (and vLLM's default): log-softmax of the model's raw
logits, *before* the sampler chain (temperature, top-k, top-p, min-p), so they describe the model, not
the sampling settings, and a token the chain would never pick still has its logprob.

Cost matters, because this runs once per generated token: a full log-softmax over Qwen2.5's 151,936
logits is ~120 µs in numpy, but a full ``argpartition`` for the top 20 is ~1 ms. The top N come from a
two-stage search instead: the logits are cut into 64-row strided groups, and the N largest lie in the N
groups with the largest maxima (a group holding one of them has a maximum at least that large, and at most
N - 1 other groups can beat it), so only those N groups are searched.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from ..types import TokenLogprobs

__all__ = ["CONFIDENCE_TOP", "confidence_of", "log_normaliser", "token_logprobs"]

CONFIDENCE_TOP = 20  # DeepConf's token confidence: minus the mean logprob of the 20 most likely tokens
_ROWS = 64  # the logits are searched as 64 rows of strided groups (one fast reduction per group)


def _top_indices(logits: np.ndarray, n: int) -> np.ndarray:
    """Indices of the n largest logits, largest first (among equal logits, any of them)."""
    size = logits.shape[0]
    n = min(n, size)
    columns = size // _ROWS
    if columns < 4 * n:
        candidates = np.arange(size)
    else:
        # Group j holds tokens j, j + columns, j + 2 * columns, ...: its maximum is one strided reduction.
        maxima = logits[: _ROWS * columns].reshape(_ROWS, columns).max(axis=0)
        best = np.argpartition(maxima, columns - n)[columns - n :]
        candidates = (best[None, :] + columns * np.arange(_ROWS)[:, None]).ravel()
        candidates = np.concatenate([candidates, np.arange(_ROWS * columns, size)])  # the ragged tail
    values = logits[candidates]
    if len(candidates) > n:
        keep = np.argpartition(values, len(candidates) - n)[len(candidates) - n :]
        candidates, values = candidates[keep], values[keep]
    order = np.lexsort((candidates, -values))
    return candidates[order]


def log_normaliser(logits: np.ndarray) -> float:
    """log(sum(exp(logits))), computed stably."""
    peak = logits.max()
    shifted = np.subtract(logits, peak, dtype=np.float32)
    return float(peak) + math.log(float(np.exp(shifted, out=shifted).sum(dtype=np.float64)))


def confidence_of(top_logprobs: Sequence[float]) -> float:
    """DeepConf's token confidence from the logprobs of the likeliest tokens, most likely first: minus the
    mean of the first ``CONFIDENCE_TOP`` (the engine's, and a remote server's top 20)."""
    best = top_logprobs[:CONFIDENCE_TOP]
    return -math.fsum(best) / len(best)


def token_logprobs(logits: np.ndarray, token: int, keep: int) -> TokenLogprobs:
    """The logprob of ``token`` under ``logits`` (one row, float32), the token confidence over the top
    ``CONFIDENCE_TOP``, and the ``keep`` most likely tokens with their logprobs (``keep`` ≤ 20)."""
    z = log_normaliser(logits)
    top = _top_indices(logits, max(keep, CONFIDENCE_TOP))
    top_logprobs = logits[top].astype(np.float64) - z
    confidence = confidence_of(top_logprobs.tolist())
    kept = tuple((int(t), float(lp)) for t, lp in zip(top[:keep], top_logprobs[:keep], strict=True))
    return TokenLogprobs(token, float(logits[token]) - z, confidence, kept)
