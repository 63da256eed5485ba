"""What the engine decodes: requests (a prompt and its k seeds) and each sample's state while it decodes,
its text assembled from token bytes (UTF-8 split across tokens is held back) and cut at a stop string."""

from __future__ import annotations

import codecs
import ctypes
from collections.abc import Sequence
from dataclasses import dataclass, field

from ..decide.stoprules import window_below
from ..types import Sampling, StopReason, TokenLogprobs

__all__ = ["DecodingSequence", "GenerationRequest"]


@dataclass
class DecodingSequence:
    """One sample being decoded: its sampler, position, the text so far and why it ended (``done``)."""

    index: int  # within its request (the sample index)
    seq_id: int  # llama.cpp's sequence id, unique across the requests decoded together
    sampler: ctypes.c_void_p
    max_tokens: int
    stop: Sequence[str]
    pos: int = 0  # position of the next token it feeds (starts at the prompt's length)
    prompt_len: int = 0
    decoder: codecs.IncrementalDecoder = field(default_factory=lambda: codecs.getincrementaldecoder("utf-8")("replace"))
    text: str = ""
    tokens: int = 0
    last_token: int = -1
    batch_pos: int = -1  # where its logits are in the last decoded batch
    done: StopReason | None = None
    logprobs: list[TokenLogprobs] | None = None  # recorded per token when the request asked for them (or kill)
    top_logprobs: int = 0
    kill: tuple[float, int] | None = None  # (floor, window): killed once its window confidence is below the floor

    def add(self, token: int, piece: bytes) -> None:
        """One more token (not an end of generation): its text, then a stop string or max_tokens may end it."""
        self.tokens += 1
        self.last_token = token
        text = self.decoder.decode(piece)
        self.text += text
        if self.stop and text:
            window = len(text) + max(len(x) for x in self.stop)
            tail_start = max(0, len(self.text) - window)
            hits = [i for x in self.stop if (i := self.text.find(x, tail_start)) >= 0]
            if hits:
                self.text = self.text[: min(hits)]
                self.done = "stop"
                return
        if self.tokens >= self.max_tokens:
            self.finish("length")

    def check_kill(self) -> None:
        """Trace kill: end it ("killed") once its last ``window`` tokens' mean confidence is below the floor."""
        if self.done is None and self.kill is not None and self.logprobs is not None:
            floor, window = self.kill
            recent = [t.confidence for t in self.logprobs[-window:]]
            if window_below(recent, len(recent), floor, window):
                self.finish("killed")

    def finish(self, reason: StopReason) -> None:
        self.text += self.decoder.decode(b"", final=True)
        self.done = reason


@dataclass(frozen=True)
class GenerationRequest:
    """One prompt and its k samples (one seed each), for ``Engine.generate_many``."""

    prompt: Sequence[int]
    sampling: Sampling
    seeds: Sequence[int]
    stop: Sequence[str] = ()
    ignore_eos: bool = False
    logprobs: int | None = None  # None: none; n: each token's logprob and confidence, and its n likeliest tokens
    kill: tuple[float, int] | None = None  # trace kill: (floor, window) of stoprules.window_below; None: never
