"""llama.cpp sampler chains: one per sample, seeded, built from the request's ``Sampling``."""

from __future__ import annotations

import ctypes
from collections.abc import Sequence

from ..types import Sampling
from .llama import llama_cpp

__all__ = ["eog_tokens", "new_sampler"]


def eog_tokens(vocab: ctypes.c_void_p) -> list[int]:
    """Every end-of-generation token of a vocabulary (a model may have several: EOS, EOT, <|im_end|> …)."""
    n_vocab = llama_cpp.llama_vocab_n_tokens(vocab)
    return [t for t in range(n_vocab) if llama_cpp.llama_vocab_is_eog(vocab, t)]


def new_sampler(vocab: ctypes.c_void_p, sampling: Sampling, seed: int, *, eog: Sequence[int] = ()) -> ctypes.c_void_p:
    """The chain for one sample: top-k → top-p → min-p → temperature → a draw seeded by ``seed`` (greedy at
    temperature 0). ``eog`` tokens are banned (benchmarks that must decode exactly max_tokens)."""
    chain = llama_cpp.llama_sampler_chain_init(llama_cpp.llama_sampler_chain_default_params())
    if eog:
        biases = (llama_cpp.llama_logit_bias * len(eog))(*[llama_cpp.llama_logit_bias(t, float("-inf")) for t in eog])
        n_vocab = llama_cpp.llama_vocab_n_tokens(vocab)
        llama_cpp.llama_sampler_chain_add(chain, llama_cpp.llama_sampler_init_logit_bias(n_vocab, len(eog), biases))
    if sampling.temperature <= 0:
        llama_cpp.llama_sampler_chain_add(chain, llama_cpp.llama_sampler_init_greedy())
        return chain  # type: ignore[no-any-return]
    if sampling.top_k > 0:
        llama_cpp.llama_sampler_chain_add(chain, llama_cpp.llama_sampler_init_top_k(sampling.top_k))
    llama_cpp.llama_sampler_chain_add(chain, llama_cpp.llama_sampler_init_top_p(sampling.top_p, 1))
    llama_cpp.llama_sampler_chain_add(chain, llama_cpp.llama_sampler_init_min_p(sampling.min_p, 1))
    llama_cpp.llama_sampler_chain_add(chain, llama_cpp.llama_sampler_init_temp(sampling.temperature))
    llama_cpp.llama_sampler_chain_add(chain, llama_cpp.llama_sampler_init_dist(seed))
    return chain  # type: ignore[no-any-return]
