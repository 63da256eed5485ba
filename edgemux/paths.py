"""Where edgemux keeps things: one home for state (EDGEMUX_HOME, else the platform cache directory),
and the manifests and profiles that ship with the package."""

from __future__ import annotations

import os
import sys
from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent


def home() -> Path:
    """The state directory: model cache, user-added manifests and profiles."""
    explicit = os.environ.get("EDGEMUX_HOME")
    if explicit:
        return Path(explicit).expanduser()
    if sys.platform == "darwin":
        base = Path.home() / "Library" / "Caches"
    elif sys.platform == "win32":
        base = Path(os.environ.get("LOCALAPPDATA", Path.home() / "AppData" / "Local"))
    else:
        base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "edgemux"


def model_cache() -> Path:
    return home() / "models"


def user_manifests() -> Path:
    return home() / "manifests"


def user_profiles() -> Path:
    return home() / "profiles"


def _shipped(name: str) -> Path:
    # A wheel carries the top-level folders as edgemux/_data/<name>; a source checkout has them beside
    # the package.
    inside = _PACKAGE / "_data" / name
    return inside if inside.is_dir() else _PACKAGE.parent / name


def shipped_manifests() -> Path:
    return _shipped("models")


def shipped_profiles() -> Path:
    return _shipped("profiles")
