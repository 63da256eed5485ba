"""Register a model (``edgemux models add``): a local GGUF file, its manifest filled in from the file's own
header, or a remote one another server runs; the manifest is written to $EDGEMUX_HOME/manifests."""

from __future__ import annotations

import re
from pathlib import Path

from ..errors import InvalidRequestError
from ..specs import LocalSource, ModelSpec, RemoteSource
from .catalog import NAME_PATTERN, Catalog, write_manifest
from .fetch import sha256_of
from .gguf import read_header

__all__ = ["register_local", "register_remote"]

# llama.cpp's enum llama_ftype (the common ones): general.file_type -> quantisation name
_FILE_TYPES = {
    0: "F32",
    1: "F16",
    2: "Q4_0",
    3: "Q4_1",
    7: "Q8_0",
    8: "Q5_0",
    9: "Q5_1",
    10: "Q2_K",
    11: "Q3_K_S",
    12: "Q3_K_M",
    13: "Q3_K_L",
    14: "Q4_K_S",
    15: "Q4_K_M",
    16: "Q5_K_S",
    17: "Q5_K_M",
    18: "Q6_K",
    19: "IQ2_XXS",
    20: "IQ2_XS",
    24: "IQ1_S",
    25: "IQ4_NL",
    30: "IQ4_XS",
    32: "BF16",
}


def _params_billions(size_label: object) -> float:
    m = re.fullmatch(r"(\d+(?:\.\d+)?)([KMBT])", str(size_label or "").strip(), flags=re.IGNORECASE)
    if not m:
        return 0.0
    scale = {"K": 1e-6, "M": 1e-3, "B": 1.0, "T": 1e3}[m.group(2).upper()]
    return round(float(m.group(1)) * scale, 4)


def _check_new_name(name: str, catalog: Catalog) -> None:
    if not NAME_PATTERN.match(name):
        raise InvalidRequestError(f"{name!r} is not a valid model name: use lowercase letters, digits, '.', '_', '-'")
    if name in catalog.names():
        raise InvalidRequestError(
            f"a model named {name!r} exists already: pick another --name, or `edgemux models rm {name}` first"
        )


def register_local(path: Path, name: str, catalog: Catalog) -> ModelSpec:
    """Check ``path`` is a GGUF, describe it from its header, and write its manifest under ``name``."""
    _check_new_name(name, catalog)
    path = path.expanduser().resolve()
    header = read_header(path)
    meta = header.metadata
    spec = ModelSpec(
        name=name,
        title=header.name or path.stem,
        family=str(meta.get("general.basename") or header.architecture),
        architecture=header.architecture,
        params_billions=_params_billions(meta.get("general.size_label")),
        quant=_FILE_TYPES.get(int(meta.get("general.file_type", -1)), "unknown"),
        context_length=header.context_length or 2048,
        license=str(meta.get("general.license", "unknown")),
        prompt_style="chat" if header.chat_template else "completion",
        source=LocalSource(str(path)),
        file_nbytes=path.stat().st_size,
        file_sha256=sha256_of(path),
        notes="Added with `edgemux models add`; the file is used where it lies.",
    )
    catalog.user_dir.mkdir(parents=True, exist_ok=True)
    write_manifest(spec, catalog.user_dir)
    return spec


def register_remote(source: RemoteSource, name: str, catalog: Catalog) -> ModelSpec:
    """Write the manifest of a model another server runs (nothing is contacted: it may not be up yet)."""
    _check_new_name(name, catalog)
    if not re.match(r"^https?://[^/\s]+", source.url):
        raise InvalidRequestError(f"--remote: expected an http:// or https:// address, got {source.url!r}")
    spec = ModelSpec(
        name=name, title=f"{source.model} at {source.url}", family="remote", architecture="remote",
        params_billions=0.0, quant="remote", context_length=0, license="unknown", prompt_style=source.endpoint,
        source=source, notes="Added with `edgemux models add --remote`; the API key, if any, is read from the environment.",
    )  # fmt: skip
    catalog.user_dir.mkdir(parents=True, exist_ok=True)
    write_manifest(spec, catalog.user_dir)
    return spec
