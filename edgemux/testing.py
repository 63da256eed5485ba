"""A scripted engine for testing scheduling and decision logic without llama.cpp (public, so users can
test code built on edgemux the same way). It is never a substitute for the real engine's own tests."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

from .decide.stoprules import TraceKill
from .errors import PromptTooLongError
from .specs import ModelSpec
from .types import BatchStep, FinishedSequence, Sampling, StopReason, TokenLogprobs, TokenSignals

__all__ = ["FakeEngine", "ReplayEngine", "fake_engine_factory"]


class FakeEngine:
    """Sample i's text is ``outputs[i % len(outputs)]``; one word is one token; one step decodes one word
    for every live sample, the way the real engine steps its batch. With ``confidences``, every token of
    sample i has confidence ``confidences[i % len]`` (and logprob minus its inverse) when logprobs are asked,
    and trace kill (``kill``) ends a sample as the real engine would."""

    def __init__(self, outputs: Sequence[str], *, n_ctx_train: int = 4096, chat: bool = True,
                 confidences: Sequence[float] | None = None) -> None:  # fmt: skip
        self.outputs = list(outputs)
        self.confidences = list(confidences) if confidences else None
        self.n_ctx_train = n_ctx_train
        self.has_chat_template = chat
        self.closed = False
        self.prompts: list[list[int]] = []
        self.cancelled = 0

    def render_chat(self, messages: Sequence[tuple[str, str]]) -> str:
        return "\n".join(content for _, content in messages)

    def tokenize(self, text: str) -> list[int]:
        return list(range(len(text.split())))

    def check_fits(self, prompt_tokens: int, k: int, max_tokens: int) -> int:
        if prompt_tokens + max_tokens > self.n_ctx_train:
            raise PromptTooLongError(f"the prompt is {prompt_tokens} tokens; the fake context holds {self.n_ctx_train}")
        return prompt_tokens + k * max_tokens

    def generate(
        self, prompt: Sequence[int], sampling: Sampling, seeds: Sequence[int], stop: Sequence[str] = (),
        *, logprobs: int | None = None, kill: tuple[float, int] | None = None,
    ) -> Iterator[BatchStep]:  # fmt: skip
        self.prompts.append(list(prompt))
        indices = _indices(sampling, seeds)
        words = [self.outputs[i % len(self.outputs)].split(" ") for i in indices]
        limits = [min(len(w), sampling.max_tokens) for w in words]
        killed = [_kill_point(self._confidences(i, n), kill) for i, n in zip(indices, limits, strict=True)]
        limits = [n if cut is None else cut for n, cut in zip(limits, killed, strict=True)]
        done = [False] * len(seeds)
        step = 0
        try:
            while not all(done):
                step += 1
                finished = []
                for i, limit in enumerate(limits):
                    if not done[i] and step >= limit:
                        done[i] = True
                        reason: StopReason = "killed" if killed[i] else "eos" if limit == len(words[i]) else "length"
                        finished.append(
                            FinishedSequence(
                                i,
                                " ".join(words[i][:limit]),
                                limit,
                                reason,
                                step * 0.01,
                                logprobs=self._logprobs(indices[i], limit, logprobs, kill),
                            )
                        )
                tokens = tuple(min(step, limit) for limit in limits)
                yield BatchStep(tokens, tuple(finished), len(prompt), step * 0.01)
        except GeneratorExit:
            self.cancelled += 1
            raise

    def _confidences(self, index: int, tokens: int) -> list[float] | None:
        if self.confidences is None:
            return None
        return [self.confidences[index % len(self.confidences)]] * tokens

    def _logprobs(self, index: int, tokens: int, asked: int | None,
                  kill: tuple[float, int] | None = None) -> tuple[TokenLogprobs, ...] | None:  # fmt: skip
        confidences = self._confidences(index, tokens)
        if (asked is None and kill is None) or confidences is None:
            return None
        return tuple(TokenLogprobs(j, -1.0 / c, c) for j, c in enumerate(confidences))

    def close(self) -> None:
        self.closed = True


def fake_engine_factory(outputs: Mapping[str, Sequence[str]], created: dict[str, FakeEngine] | None = None):  # type: ignore[no-untyped-def]
    """An engine factory for ``Mux(engine_factory=...)`` that serves scripted outputs per model name."""

    def factory(spec: ModelSpec, path: Path, n_ctx: int, n_seq_max: int, options: object) -> FakeEngine:
        engine = FakeEngine(outputs[spec.name])
        if created is not None:
            created[spec.name] = engine
        return engine

    return factory


class ReplayEngine(FakeEngine):
    """Plays recorded samples (a runs file's texts and token counts) through the real scheduler: sample i
    finishes at step ``tokens[i]`` with ``texts[i]``. Call ``play`` before each question. For measuring
    what early stop saves on many recorded questions without generating them again.

    One model may serve several members, each asking in its own words: ``play(..., prompt_has=...)`` gives
    each member its own recording, picked by a piece of text only that member's prompt contains."""

    _SCRIPT = 1 << 30  # the first token of a prompt says whose recording it plays

    def __init__(self) -> None:
        super().__init__([""])
        self._scripts: list[tuple[str, list[str], list[int], list[TokenSignals | None]]] = []

    def play(self, texts: Sequence[str], tokens: Sequence[int], prompt_has: str = "",
             signals: Sequence[TokenSignals | None] | None = None) -> None:  # fmt: skip
        """Record what the next question's samples say; ``signals``: their token signals, given back as
        logprobs when a request asks for them (so that a stop rule that reads confidence sees them)."""
        played: list[TokenSignals | None] = list(signals) if signals is not None else [None] * len(texts)
        self._scripts = [s for s in self._scripts if s[0] != prompt_has] + [
            (prompt_has, list(texts), list(tokens), played)
        ]

    def tokenize(self, text: str) -> list[int]:
        found = [(len(s[0]), i) for i, s in enumerate(self._scripts) if s[0] in text]
        index = max(found)[1] if found else 0  # the most specific recording whose text the prompt holds
        return [self._SCRIPT + index, *super().tokenize(text)]

    def generate(
        self, prompt: Sequence[int], sampling: Sampling, seeds: Sequence[int], stop: Sequence[str] = (),
        *, logprobs: int | None = None, kill: tuple[float, int] | None = None,
    ) -> Iterator[BatchStep]:  # fmt: skip
        indices = _indices(sampling, seeds)
        _, recorded_texts, recorded_tokens, recorded_signals = self._scripts[prompt[0] - self._SCRIPT]
        if max(indices) >= len(recorded_texts):
            raise ValueError(f"sample {max(indices)} asked, {len(recorded_texts)} recorded")
        texts = [recorded_texts[i] for i in indices]
        limits = [max(1, min(recorded_tokens[i], sampling.max_tokens)) for i in indices]
        signals = [recorded_signals[i] for i in indices]
        killed = [
            _kill_point(list(s.confidences[:n]) if s else None, kill) for s, n in zip(signals, limits, strict=True)
        ]
        limits = [n if cut is None else cut for n, cut in zip(limits, killed, strict=True)]
        step = 0
        try:
            while step < max(limits):
                step += 1
                finished = tuple(
                    FinishedSequence(i, texts[i], n, "killed" if killed[i] else "eos", float(step),
                                     logprobs=_played(signals[i], logprobs, kill))
                    for i, n in enumerate(limits) if n == step
                )  # fmt: skip
                yield BatchStep(tuple(min(step, n) for n in limits), finished, len(prompt), float(step))
        except GeneratorExit:
            self.cancelled += 1
            raise


def _kill_point(confidences: list[float] | None, kill: tuple[float, int] | None) -> int | None:
    """Where trace kill ends a sample with these token confidences (None: never, or no confidences)."""
    if kill is None or confidences is None:
        return None
    floor, window = kill
    return TraceKill(window).kill_point(confidences, floor)


def _played(signals: TokenSignals | None, asked: int | None,
            kill: tuple[float, int] | None = None) -> tuple[TokenLogprobs, ...] | None:  # fmt: skip
    """Recorded signals as the engine's per-token logprobs (token ids are not recorded: 0)."""
    if (asked is None and kill is None) or signals is None:
        return None
    return tuple(TokenLogprobs(0, lp, c) for lp, c in zip(signals.logprobs, signals.confidences, strict=True))


def _indices(sampling: Sampling, seeds: Sequence[int]) -> list[int]:
    """Which samples these are: Mux gives sample j the seed ``sampling.seed + j`` (a wave may be any subset)."""
    base = sampling.seed if sampling.seed is not None else (seeds[0] if seeds else 0)
    return [seed - base for seed in seeds]
