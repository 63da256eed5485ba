"""edgemux: several small GGUF language models answering together by the SLM-MUX rule."""

from __future__ import annotations

from .catalog import Catalog
from .errors import (
    BudgetError,
    ChecksumError,
    ConfigError,
    EdgemuxError,
    EngineError,
    FetchError,
    InvalidRequestError,
    ModelFileError,
    NotFoundError,
    PromptTooLongError,
)
from .profiles import Profile, ProfileModel, list_profiles, load_profile
from .runtime import LoadOptions, Mux
from .types import (
    Decision,
    DecisionMade,
    DecodeProgress,
    ModelFinished,
    ModelLoaded,
    ModelLoading,
    ModelSpec,
    ModelStopped,
    ModelVote,
    MuxResult,
    Sample,
    SampleFinished,
    Sampling,
    SamplingStarted,
)

__all__ = [
    "BudgetError",
    "Catalog",
    "ChecksumError",
    "ConfigError",
    "Decision",
    "DecisionMade",
    "DecodeProgress",
    "EdgemuxError",
    "EngineError",
    "FetchError",
    "InvalidRequestError",
    "LoadOptions",
    "ModelFileError",
    "ModelFinished",
    "ModelLoaded",
    "ModelLoading",
    "ModelSpec",
    "ModelStopped",
    "ModelVote",
    "Mux",
    "MuxResult",
    "NotFoundError",
    "Profile",
    "ProfileModel",
    "PromptTooLongError",
    "Sample",
    "SampleFinished",
    "Sampling",
    "SamplingStarted",
    "list_profiles",
    "load_profile",
]
