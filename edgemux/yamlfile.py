"""Strict reading of the YAML files edgemux is configured by (model manifests, profiles): a parse error,
an unknown key or a value of the wrong type raises ConfigError naming the file and the key."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

import yaml

from .errors import ConfigError

T = TypeVar("T")
_MISSING: Any = object()


def read_mapping(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError(f"{path}: cannot read: {e.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        where = getattr(e, "problem_mark", None)
        line = f" (line {where.line + 1})" if where is not None else ""
        raise ConfigError(f"{path}{line}: malformed YAML: {getattr(e, 'problem', e)}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of keys to values at the top level")
    return data


def write_mapping(path: Path, data: Mapping[str, Any]) -> None:
    """Write YAML atomically: a reader sees the old file or the new one, never half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            yaml.safe_dump(dict(data), f, sort_keys=False, allow_unicode=True)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class Section:
    """A mapping being read from a file, which remembers where it is for error messages."""

    def __init__(self, data: Mapping[str, Any], path: Path, prefix: str = "") -> None:
        self.data = data
        self.path = path
        self.prefix = prefix

    def where(self, key: str) -> str:
        return f"{self.path}: key {self.prefix}{key!s}"

    def only(self, allowed: set[str] | frozenset[str]) -> Section:
        unknown = sorted(str(k) for k in self.data if k not in allowed)
        if unknown:
            raise ConfigError(f"{self.where(unknown[0])}: unknown key; allowed here: {', '.join(sorted(allowed))}")
        return self

    def get(self, key: str, typ: type[T] | tuple[type, ...], default: Any = _MISSING) -> T:
        if key not in self.data or self.data[key] is None:
            if default is _MISSING:
                raise ConfigError(f"{self.where(key)}: required key is missing")
            return default  # type: ignore[no-any-return]
        value = self.data[key]
        types = typ if isinstance(typ, tuple) else (typ,)
        if float in types and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if isinstance(value, bool) and bool not in types:
            value = _MISSING
        if value is _MISSING or not isinstance(value, types):
            names = " or ".join(t.__name__ for t in types)
            raise ConfigError(f"{self.where(key)}: expected {names}, got {self.data[key]!r}")
        return value  # type: ignore[return-value]

    def section(self, key: str) -> Section:
        return Section(self.get(key, dict), self.path, f"{self.prefix}{key}.")

    def sections(self, key: str) -> list[Section]:
        items = self.get(key, list)
        out = []
        for i, item in enumerate(items):
            if not isinstance(item, dict):
                raise ConfigError(f"{self.where(f'{key}[{i}]')}: expected a mapping, got {item!r}")
            out.append(Section(item, self.path, f"{self.prefix}{key}[{i}]."))
        return out
