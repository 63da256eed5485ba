"""The edgemux error tree. Every error a user can cause is one of these, with a message that says what
to do next; the CLI maps the types to exit codes in one place (``cli.py``).

    EdgemuxError
    ├── ConfigError              malformed YAML, unknown key, wrong type in a manifest or profile
    ├── NotFoundError            unknown model or profile name (with the closest names)
    ├── InvalidRequestError      empty question, k out of range, negative temperature, ...
    │   └── PromptTooLongError   the prompt and the samples do not fit the context
    ├── BudgetError              the models cannot fit the memory budget (the message names the fix)
    ├── FetchError               pip or Hugging Face download failed, network down
    │   ├── NotCachedError       the model is not downloaded yet (the server downloads on its own thread)
    │   └── ChecksumError        the assembled file's sha256 or size is wrong (the file is removed)
    ├── ModelFileError           the file is missing, truncated, or not a GGUF at all
    └── EngineError              llama.cpp refused to load or decode
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable

__all__ = [
    "BudgetError",
    "ChecksumError",
    "ConfigError",
    "EdgemuxError",
    "EngineError",
    "FetchError",
    "InvalidRequestError",
    "ModelFileError",
    "NotCachedError",
    "NotFoundError",
    "PromptTooLongError",
    "ShuttingDownError",
]


class EdgemuxError(Exception):
    """Base of every error edgemux raises on purpose."""


class ConfigError(EdgemuxError):
    """A manifest or profile file is malformed."""


class NotFoundError(EdgemuxError):
    """A model or profile name that does not exist."""

    def __init__(self, kind: str, name: str, known: Iterable[str], hint: str = "") -> None:
        known = sorted(known)
        close = difflib.get_close_matches(name, known, n=3, cutoff=0.4)
        message = f"unknown {kind} {name!r}"
        if close:
            message += f"; did you mean {', '.join(repr(c) for c in close)}?"
        elif known:
            message += f"; known: {', '.join(known)}"
        if hint:
            message += f" ({hint})"
        super().__init__(message)
        self.kind = kind
        self.name = name
        self.suggestions = close


class InvalidRequestError(EdgemuxError):
    """A request that cannot be served as asked (bad question or sampling settings)."""


class PromptTooLongError(InvalidRequestError):
    """The prompt plus k × max_tokens does not fit the model's context."""


class BudgetError(EdgemuxError):
    """The requested models cannot be held within the memory budget."""


class FetchError(EdgemuxError):
    """A download failed; nothing was left in the cache."""


class NotCachedError(FetchError):
    """A model that must be downloaded before it can load, where loading may not wait for the network."""

    def __init__(self, name: str) -> None:
        super().__init__(f"{name} is not downloaded yet: run `edgemux models pull {name}`")
        self.name = name


class ChecksumError(FetchError):
    """A downloaded or assembled file did not match its pinned sha256 or size."""


class ModelFileError(EdgemuxError):
    """A model file that is missing, truncated, or not a GGUF."""


class ShuttingDownError(EdgemuxError):
    """The server is stopping: a request still waiting or running when its grace period ended."""


class EngineError(EdgemuxError):
    """llama.cpp failed to load a model or to decode."""
