"""Progress on stderr: download bars, step bars, collection lines, model loads."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from ..events import Event, ModelLoaded
from .console import stderr

if TYPE_CHECKING:
    from ..selection.runs import Record


class DownloadBar:
    """fetch.Progress drawn as a rich bar: bytes, speed, ETA."""

    def __init__(self, console: Console = stderr) -> None:
        self.console = console
        self._progress: Progress | None = None
        self._task = TaskID(0)

    def start(self, description: str, total_bytes: int | None) -> None:
        self._progress = Progress(
            TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
            TimeRemainingColumn(), console=self.console, transient=False,
        )  # fmt: skip
        self._progress.start()
        self._task = self._progress.add_task(description, total=total_bytes)

    def advance(self, nbytes: int) -> None:
        if self._progress is not None:
            self._progress.advance(self._task, nbytes)

    def finish(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None


def _record_line(record: Record, reference: str | None) -> str:
    answers = " ".join(s.answer or "∅" for s in record.samples)
    tail = ""
    if reference is not None:
        right = sum(s.answer == reference for s in record.samples)
        tail = f"  {right}/{record.k} right"
    return f"{record.task} {record.model}: {answers}{tail}"


def track_collection(
    records: Iterator[Record], *, total: int, done: int, quiet: bool, console: Console = stderr
) -> list[Record]:
    """Drain a collect run with a progress bar and ETA (a terminal) or one line per record (a log file)."""
    out: list[Record] = []
    if quiet:
        return list(records)
    if console.is_terminal:
        columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                   TimeRemainingColumn(), TextColumn("{task.fields[last]}"))  # fmt: skip
        with Progress(*columns, console=console) as progress:
            bar = progress.add_task("collecting", total=total, completed=done, last="")
            for record in records:
                out.append(record)
                progress.update(bar, advance=1, last=_record_line(record, record.reference_answer()))
        return out
    start = time.monotonic()
    for record in records:
        out.append(record)
        n = done + len(out)
        remaining = (time.monotonic() - start) / len(out) * (total - n)
        console.print(f"[{n}/{total}, {remaining / 60:.0f} min left] {_record_line(record, record.reference_answer())}")
    return out


def follow_loads(events: Iterator[Event], *, quiet: bool, console: Console = stderr) -> None:
    """Drain preload events, one line per model loaded."""
    for event in events:
        if not quiet and isinstance(event, ModelLoaded):
            console.print(f"{event.model}: loaded in {event.load_s:.2f} s")


@contextmanager
def steps_bar(
    description: str, total: int, *, quiet: bool = False, console: Console = stderr
) -> Iterator[Callable[[], None]]:
    """A progress bar over ``total`` steps; yields the function that advances it by one."""
    if quiet:
        yield lambda: None
        return
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console, transient=True) as progress:
        task = progress.add_task(description, total=total)
        yield lambda: progress.advance(task)
