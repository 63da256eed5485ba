"""edgemux: several small GGUF language models answering together by the SLM-MUX rule."""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from .answers import opentext
from .answers.opentext import Embedder

# Names are imported when first used, so `import edgemux.decide.mux` (the pure decision core) does not load the
# runtime, fetching, YAML or llama.cpp; `from edgemux import Mux` still works as before.
_HOME = {
    "Catalog": "catalog.catalog",
    "LoadOptions": "schedule.loader",
    "Mux": "schedule.runtime",
    "Profile": "profiles",
    "ProfileModel": "profiles",
    "list_profiles": "profiles",
    "load_profile": "profiles",
    **dict.fromkeys(
        ["BudgetError", "ChecksumError", "ConfigError", "EdgemuxError", "EngineError", "FetchError",
         "InvalidRequestError", "ModelFileError", "NotFoundError", "PromptTooLongError"], "errors"),
    **dict.fromkeys(["Decision", "ModelVote", "MuxResult", "Sample", "Sampling"], "types"),
    "ModelSpec": "specs",
    **dict.fromkeys(
        ["DecisionMade", "DecodeProgress", "ModelFinished", "ModelLoaded", "ModelLoading", "ModelStopped",
         "SampleFinished", "SamplingStarted"], "events"),
}  # fmt: skip


def _llama_embedder() -> Embedder:
    from .engine import embeddings  # loads llama.cpp: only when an embedding similarity is first computed

    return embeddings


# The composition root wires the engine's embeddings into the answer layer, which imports no engine.
opentext.use_embedder(_llama_embedder)


def __getattr__(name: str) -> Any:
    if name not in _HOME:
        raise AttributeError(f"module 'edgemux' has no attribute {name!r}")
    value = getattr(import_module(f".{_HOME[name]}", __name__), name)
    globals()[name] = value
    return value


if TYPE_CHECKING:
    from .catalog.catalog import Catalog
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
    from .events import (
        DecisionMade,
        DecodeProgress,
        ModelFinished,
        ModelLoaded,
        ModelLoading,
        ModelStopped,
        SampleFinished,
        SamplingStarted,
    )
    from .profiles import Profile, ProfileModel, list_profiles, load_profile
    from .schedule.loader import LoadOptions
    from .schedule.runtime import Mux
    from .specs import ModelSpec
    from .types import Decision, ModelVote, MuxResult, Sample, Sampling

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
