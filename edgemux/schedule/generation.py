"""Plain generation (a model asked directly, no vote): the one place a chat or a completion prompt becomes a
request the engine decodes — rendered with the model's template, tokenized, seeded (``Sampling.seeded``)
and checked against the context before anything is decoded. The server's single-model requests use it."""

from __future__ import annotations

from collections.abc import Sequence

from ..engine.remote import RemoteEngine
from ..engine.sequences import GenerationRequest
from ..errors import InvalidRequestError
from ..types import Sampling
from .loader import EngineLike

__all__ = ["plain_request"]


def plain_request(
    engine: EngineLike,
    name: str,
    *,
    messages: Sequence[tuple[str, str]] | None,
    prompt: str | None,
    sampling: Sampling,
    stop: Sequence[str] = (),
    logprobs: int | None = None,
) -> GenerationRequest:
    """``messages`` (a chat, rendered with the model's template) or ``prompt`` (used as is) for model
    ``name`` as one request of k seeded samples; raises when it cannot fit or the model is remote."""
    if isinstance(engine, RemoteEngine):  # edgemux is no proxy: a remote model votes in mux profiles
        raise InvalidRequestError(
            f"{name} is a remote model ({engine.source.url}): ask that server directly, or use it as a member "
            "of a mux profile"
        )
    text = engine.render_chat(messages) if messages is not None else prompt or ""
    tokens = engine.tokenize(text)
    seeded = sampling.seeded()
    engine.check_fits(len(tokens), seeded.k, seeded.max_tokens)
    return GenerationRequest(tokens, seeded, seeded.seeds(), tuple(stop), logprobs=logprobs)
