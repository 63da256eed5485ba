"""Frozen dataclasses shared by every layer: model specs, sampling settings, samples, votes, decisions
and the typed events that ``Mux.stream`` yields. Quantities carry their unit in the name."""

from __future__ import annotations

import math
import random
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any, Literal

from .errors import InvalidRequestError
from .programs import ProgramRun

__all__ = [
    "ASK_KINDS",
    "NEVER_STARTED",
    "TASK_KINDS",
    "BatchStep",
    "Decision",
    "FinishedSequence",
    "ModelVote",
    "MuxResult",
    "Sample",
    "Sampling",
    "TokenLogprobs",
    "TokenSignals",
]

TASK_KINDS = ("number", "math", "choice", "text", "open", "code")
ASK_KINDS = (*TASK_KINDS, "auto")  # auto: decided per question (autokind.py); runs files hold a concrete kind
TaskKind = Literal["number", "math", "choice", "text", "open"]
NEVER_STARTED = "never started"  # the note of a cancelled sample whose wave early stop dropped before it began
# failed: a remote request that failed; killed: its window confidence fell below its member's floor (trace kill)
StopReason = Literal["eos", "stop", "length", "cancelled", "failed", "killed"]

MAX_SAMPLES_PER_MODEL = 64  # llama.cpp allows 256 sequences; beyond 64 a vote gains nothing on a laptop


# ---------------------------------------------------------------------------------------------------------
# Sampling settings: declared once here; profile keys and CLI flags are derived from these fields.


def _option(help: str, low: float, high: float, flag: str | None = None, low_open: bool = False) -> dict[str, Any]:
    return {"help": help, "flag": flag, "range": (low, high), "low_open": low_open}


@dataclass(frozen=True)
class Sampling:
    """How each model draws its samples. Field names are the profile keys; CLI flags and the server's
    request fields derive from them, with the ranges declared here (``validated`` checks them)."""

    k: int = field(default=3, metadata=_option("samples per model", 1, MAX_SAMPLES_PER_MODEL, flag="-k"))
    temperature: float = field(
        default=0.3, metadata=_option("sampling temperature; 0 = greedy (0.3 is the SLM-MUX paper's)", 0.0, 5.0)
    )
    top_p: float = field(
        default=0.95, metadata=_option("nucleus sampling: keep the top tokens up to this mass", 0.0, 1.0, low_open=True)
    )
    top_k: int = field(default=40, metadata=_option("keep only the k most likely tokens; 0 = off", 0, 1 << 20))
    min_p: float = field(default=0.05, metadata=_option("drop tokens below this share of the best one", 0.0, 1.0))
    max_tokens: int = field(default=512, metadata=_option("most tokens one sample may generate", 1, 32768))
    seed: int | None = field(
        default=None,
        metadata=_option("base seed; sample j of a model uses seed + j", 0, 2**31 - 1 - MAX_SAMPLES_PER_MODEL),
    )

    @classmethod
    def range_of(cls, name: str) -> tuple[float, float, bool]:
        """(low, high, whether low itself is excluded) of a field."""
        meta = next(f.metadata for f in fields(cls) if f.name == name)
        low, high = meta["range"]
        return low, high, meta["low_open"]

    def validated(self) -> Sampling:
        """Return self, or raise InvalidRequestError naming the bad setting and its range."""
        for name in self.field_names():
            value = getattr(self, name)
            if value is None:
                continue
            low, high, low_open = self.range_of(name)
            if not (low < value <= high if low_open else low <= value <= high):
                interval = f"in ({low:g}, {high:g}]" if low_open else f"between {low:g} and {high:g}"
                raise InvalidRequestError(f"{name} must be {interval}, got {value}")
        return self

    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls))

    def seeded(self) -> Sampling:
        """Self with a seed: the one given, or a random one (so that the samples can be drawn again)."""
        return self if self.seed is not None else replace(self, seed=random.randrange(2**31 - 1 - self.k))

    def seeds(self) -> list[int]:
        """Sample j's seed: seed + j (llama-server seeds its child j the same way). Needs a seed."""
        if self.seed is None:
            raise InvalidRequestError("the samples need a seed (Sampling.seeded())")
        return [self.seed + j for j in range(self.k)]


# ---------------------------------------------------------------------------------------------------------
# Results


@dataclass(frozen=True, slots=True)
class TokenLogprobs:
    """One generated token: its logprob (log-softmax of the raw logits, before the sampler chain), its
    confidence (minus the mean logprob of the 20 likeliest tokens: DeepConf's), and the likeliest tokens
    with their logprobs, most likely first (as many as were asked for)."""

    token: int
    logprob: float
    confidence: float
    top: tuple[tuple[int, float], ...] = ()


@dataclass(frozen=True)
class TokenSignals:
    """What a vote and a runs file keep of one sample's tokens: each one's logprob and confidence
    (``TokenLogprobs`` without the alternatives), and for a multiple-choice answer the probability the model
    gave its letter against the other options' letters where it wrote it (``confidence.answer_mass``).
    ``confidence.py`` turns them into a sample's score."""

    logprobs: tuple[float, ...]
    confidences: tuple[float, ...]
    answer_mass: float | None = None

    @classmethod
    def of(cls, tokens: Sequence[TokenLogprobs]) -> TokenSignals:
        return cls(tuple(t.logprob for t in tokens), tuple(t.confidence for t in tokens))


@dataclass(frozen=True)
class FinishedSequence:
    index: int
    text: str
    tokens: int
    stop_reason: StopReason
    seconds: float  # from the start of generate(), prompt evaluation included
    note: str = ""  # a failed sample: why (a remote request's error)
    logprobs: tuple[TokenLogprobs, ...] | None = None  # one per generated token, when they were asked for


@dataclass(frozen=True)
class BatchStep:
    """What one decode step produced: tokens so far per sequence, and the sequences that just finished."""

    tokens: tuple[int, ...]
    finished: tuple[FinishedSequence, ...]
    prompt_tokens: int
    elapsed_s: float
    texts: tuple[str, ...] = ()  # text so far per sequence (for streaming); may be empty for scripted engines
    # per sequence, its tokens' logprobs when they were asked for: a list the engine goes on appending to, so
    # read only its first ``tokens[i]`` entries (what this step had produced)
    logprobs: tuple[Sequence[TokenLogprobs] | None, ...] = ()


@dataclass(frozen=True)
class Sample:
    """One finished answer of one model."""

    model: str
    index: int
    seed: int
    text: str
    answer: str | None  # canonical answer, None when nothing parsable was found
    tokens: int
    stop_reason: StopReason
    seconds: float
    program: ProgramRun | None = None  # program-of-thought members: how the sample's program ran
    note: str = ""  # a failed sample: why (a remote request's error); a cancelled one: NEVER_STARTED or not
    signals: TokenSignals | None = None  # per-token logprob and confidence; None where the engine gave none


@dataclass(frozen=True)
class ModelVote:
    """One model's vote: its samples, the count of each canonical answer, its majority and confidence."""

    model: str
    samples: tuple[Sample, ...]
    counts: tuple[tuple[str, int], ...]  # in order of first appearance
    answer: str | None
    confidence: float  # the majority answer's share: its count / samples drawn (weighted votes: its weight / all)
    validation_accuracy: float | None = None
    vote: str = "count"  # the rule that weighed the samples (confidence.VOTES); count when a sample had no signals
    shares: tuple[tuple[str, float], ...] = ()  # each answer's share under that rule, as ``counts``
    scores: tuple[float | None, ...] = ()  # each sample's confidence score (the rule's measure); None: no signals

    @property
    def unparsable(self) -> int:
        return sum(1 for s in self.samples if s.answer is None)


@dataclass(frozen=True)
class Decision:
    """The SLM-MUX decision with everything it used, so a reader can see why the winner won."""

    answer: str | None
    winner: str | None
    confidence: float
    tie_break: Literal["none", "validation_accuracy", "profile_order", "no_answer"]
    reason: str
    votes: tuple[ModelVote, ...]

    def vote_of(self, model: str) -> ModelVote:
        return next(v for v in self.votes if v.model == model)


@dataclass(frozen=True)
class MuxResult:
    """What ``Mux.ask`` returns: the decision, the winning text, and the settings that produced it."""

    question: str
    kind: str
    profile: str
    sampling: Sampling
    decision: Decision
    text: str  # the winning model's earliest sample that gave the majority answer
    seconds: float
    policy: str = "priority"
    early_stop: bool = True
    stop_rule: str = "decision"  # which early-stop rule ran (stoprules.STOP_RULES)
    # the validation level this answer fell in (calibration.Level or ShareBin .to_dict()): agreeing and k, or
    # the vote and its share_from/share_to; answered, right and accuracy on validation data
    calibration: Mapping[str, Any] | None = None
    calibration_text: str = ""  # the same, in words
    min_confidence: float | None = None
    abstained: bool = False  # the confidence was below min_confidence: the answer is only a best guess
    kind_reason: str = ""  # kind auto: why this kind was used for this question
    similarity: str = ""  # open answers: the measure and threshold two answers agree at ("lexical ≥ 0.8")
    clusters: tuple[tuple[str, int], ...] = ()  # open answers: each cluster's answer and its size, all members

    @property
    def tokens(self) -> int:
        """Tokens generated for this answer, by every sample (cancelled ones up to where they stopped)."""
        return sum(s.tokens for v in self.decision.votes for s in v.samples)

    @property
    def stopped(self) -> list[Sample]:
        return [s for v in self.decision.votes for s in v.samples if s.stop_reason == "cancelled"]

    @property
    def killed(self) -> list[Sample]:
        """Samples trace kill ended (their window confidence fell below their member's floor): no vote."""
        return [s for v in self.decision.votes for s in v.samples if s.stop_reason == "killed"]

    @property
    def failures(self) -> dict[str, str]:
        """Members whose samples failed (a remote request that did not answer): the reason, by member."""
        return {s.model: s.note for v in self.decision.votes for s in v.samples if s.stop_reason == "failed"}

    @property
    def answer(self) -> str | None:
        return self.decision.answer

    def _calibration_json(self) -> dict[str, Any] | None:
        if self.calibration is None:
            return None
        renamed = {("validation_" + k if k in ("answered", "right", "accuracy") else k): v
                   for k, v in self.calibration.items()}  # fmt: skip
        return {**renamed, "text": self.calibration_text}

    def to_dict(self) -> dict[str, Any]:
        d = self.decision
        return {
            "question": self.question,
            "answer": d.answer,
            "winner": d.winner,
            "confidence": d.confidence,
            "tie_break": d.tie_break,
            "reason": d.reason,
            "abstained": self.abstained,
            "min_confidence": self.min_confidence,
            "calibration": self._calibration_json(),
            "text": self.text,
            "kind": self.kind,
            **({"kind_reason": self.kind_reason} if self.kind_reason else {}),
            **(
                {
                    "clusters": {
                        "similarity": self.similarity,
                        "clusters": [{"answer": a[:80], "size": n} for a, n in self.clusters],
                    }
                }
                if self.clusters
                else {}
            ),  # fmt: skip
            **({"failures": self.failures} if self.failures else {}),
            "profile": self.profile,
            "sampling": asdict(self.sampling),
            "seconds": round(self.seconds, 3),
            "tokens": self.tokens,
            "policy": self.policy,
            "early_stop": {
                "enabled": self.early_stop,
                "rule": self.stop_rule,
                "stopped_samples": [
                    {"model": s.model, "index": s.index, "tokens": s.tokens, "never_started": s.note == NEVER_STARTED}
                    for s in self.stopped
                ],
                # each stopped sample could have run to max_tokens: the most the stop can have saved
                "max_tokens_saved": sum(self.sampling.max_tokens - s.tokens for s in self.stopped),
                "killed_samples": [{"model": s.model, "index": s.index, "tokens": s.tokens} for s in self.killed],
            },
            "models": [_vote_json(v) for v in d.votes],
        }


def _vote_json(v: ModelVote) -> dict[str, Any]:
    return {
        "name": v.model,
        "answer": v.answer,
        "confidence": v.confidence,
        "counts": dict(v.counts),
        "vote": v.vote,
        "shares": {a: round(x, 4) for a, x in v.shares},
        "unparsable": v.unparsable,
        "validation_accuracy": v.validation_accuracy,
        "samples": [_sample_json(s, _score(v, j)) for j, s in enumerate(v.samples)],
    }


def _sample_json(s: Sample, score: float | None) -> dict[str, Any]:
    mass = s.signals.answer_mass if s.signals else None
    return {
        "index": s.index,
        "seed": s.seed,
        "text": s.text,
        "answer": s.answer,
        "tokens": s.tokens,
        "stop_reason": s.stop_reason,
        "seconds": round(s.seconds, 3),
        **({"confidence": round(score, 4)} if score is not None else {}),
        **({"answer_mass": round(mass, 4)} if mass is not None else {}),
        **({"program": s.program.to_json()} if s.program else {}),
        **({"note": s.note} if s.note else {}),
    }


def _score(vote: ModelVote, index: int) -> float | None:
    """A sample's confidence score in its member's vote (None when the engine gave no signals)."""
    score = vote.scores[index] if index < len(vote.scores) else None
    return score if score is not None and math.isfinite(score) else None
