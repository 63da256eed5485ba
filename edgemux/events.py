"""Events yielded by ``Mux.stream()``: what the CLI's live view draws and the server streams."""

from __future__ import annotations

from dataclasses import dataclass

from .types import ModelVote, MuxResult, Sample

__all__ = [
    "DecodeProgress",
    "DecisionMade",
    "Event",
    "ModelFinished",
    "ModelLoaded",
    "ModelLoading",
    "ModelStopped",
    "SampleFinished",
    "SamplingStarted",
]


@dataclass(frozen=True)
class ModelLoading:
    model: str


@dataclass(frozen=True)
class ModelLoaded:
    model: str
    load_s: float


@dataclass(frozen=True)
class SamplingStarted:
    model: str
    k: int
    prompt_tokens: int


@dataclass(frozen=True)
class DecodeProgress:
    model: str
    tokens: tuple[int, ...]  # tokens generated so far, per sample
    elapsed_s: float


@dataclass(frozen=True)
class SampleFinished:
    sample: Sample


@dataclass(frozen=True)
class ModelStopped:
    """Early stop cancelled some of a model's samples: they could no longer change the decision."""

    model: str
    reason: str
    samples: tuple[int, ...]  # indices of the cancelled samples
    rule: str = ""  # "confident" or "agree" when an early rule ended the question (stoprules.py); else exact
    never_started: tuple[int, ...] = ()  # those of ``samples`` whose wave had not begun (the cheap ones went first)


@dataclass(frozen=True)
class ModelFinished:
    vote: ModelVote


@dataclass(frozen=True)
class DecisionMade:
    result: MuxResult


Event = (
    ModelLoading
    | ModelLoaded
    | SamplingStarted
    | DecodeProgress
    | SampleFinished
    | ModelStopped
    | ModelFinished
    | DecisionMade
)
