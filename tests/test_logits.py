"""Log-probabilities from raw logits (edgemux.logits): the fast top-N search against a full sort."""

from __future__ import annotations

import math

import numpy as np
import pytest

from edgemux.engine.logits import CONFIDENCE_TOP, log_normaliser, token_logprobs


def full(logits: np.ndarray) -> np.ndarray:
    x = logits.astype(np.float64)
    return x - (x.max() + np.log(np.exp(x - x.max()).sum()))


@pytest.mark.parametrize("vocab", [7, 100, 3000, 49_152, 151_936])
@pytest.mark.parametrize("ties", [False, True])
def test_top_tokens_and_logprobs_equal_a_full_log_softmax(vocab: int, ties: bool) -> None:
    rng = np.random.default_rng(vocab)
    for _ in range(5):
        logits = (rng.standard_normal(vocab) * 3).astype(np.float32)
        logits[rng.integers(vocab, size=3)] += 10  # peaked, as a language model's are
        if ties:
            logits = np.round(logits)  # many equal logits around the 20th
        token = int(rng.integers(vocab))
        t = token_logprobs(logits, token, keep=5)
        reference = full(logits)
        best = np.sort(reference)[::-1]
        assert t.token == token and t.logprob == pytest.approx(reference[token], abs=1e-5)
        assert [lp for _, lp in t.top] == pytest.approx(best[: min(5, vocab)].tolist(), abs=1e-5)
        assert all(reference[i] == pytest.approx(lp, abs=1e-5) for i, lp in t.top)
        assert len({i for i, _ in t.top}) == len(t.top)
        assert t.confidence == pytest.approx(-best[: min(CONFIDENCE_TOP, vocab)].mean(), abs=1e-4)


def test_keep_zero_keeps_no_alternatives_and_twenty_keeps_twenty() -> None:
    logits = np.linspace(-5, 5, 1000, dtype=np.float32)
    assert token_logprobs(logits, 0, 0).top == ()
    top = token_logprobs(logits, 0, 20).top
    assert [i for i, _ in top] == list(range(999, 979, -1))


def test_a_certain_model_has_high_confidence_and_an_unsure_one_low() -> None:
    sure = np.full(50_000, -10.0, dtype=np.float32)
    sure[42] = 20.0
    flat = np.zeros(50_000, dtype=np.float32)
    assert token_logprobs(sure, 42, 0).logprob == pytest.approx(0.0, abs=1e-6)
    assert token_logprobs(sure, 42, 0).confidence > 25  # the other 19 are ~30 nats down
    assert token_logprobs(flat, 0, 0).confidence == pytest.approx(math.log(50_000), abs=1e-3)


def test_the_normaliser_survives_huge_logits() -> None:
    logits = np.array([1000.0, 1000.0, -1000.0], dtype=np.float32)
    assert log_normaliser(logits) == pytest.approx(1000 + math.log(2), abs=1e-4)
