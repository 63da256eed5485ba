"""The live view of one question being answered, and its plain rendering for pipes and logs."""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from ..answers.strategies import parse_member
from ..events import (
    DecisionMade,
    DecodeProgress,
    Event,
    ModelFinished,
    ModelLoaded,
    ModelLoading,
    ModelStopped,
    SampleFinished,
    SamplingStarted,
)
from ..types import MuxResult
from .console import stderr

REFRESH_PER_S = 8

# -- the live view of one question ----------------------------------------------------------------------


@dataclass
class _Row:
    state: str = "waiting"
    k: int = 0
    tokens: tuple[int, ...] = ()
    elapsed_s: float = 0.0
    answers: dict[int, str | None] = field(default_factory=dict)
    stopped: set[int] = field(default_factory=set)
    never_started: set[int] = field(default_factory=set)
    killed: set[int] = field(default_factory=set)  # trace kill ended them: they do not vote
    why_not_started: str = ""  # the stop rule's reason, shown under the table
    failed: str = ""  # a remote member whose requests failed: why
    confidence: float | None = None


class LiveView:
    """Consumes Mux events and keeps one row per member: sample progress, answers, confidence.

    Updating is cheap (a few fields per event); the table is built only when the screen is redrawn, at
    Live's fixed rate, by ``__rich__`` on rich's refresh thread, hence the lock.
    """

    def __init__(self, models: Iterable[str]) -> None:
        self.rows = {m: _Row() for m in models}
        self.result: MuxResult | None = None
        self._lock = threading.Lock()

    def __rich__(self) -> Group:
        with self._lock:
            return self.render()

    def _rows_of_model(self, model: str) -> list[_Row]:
        """Loads are per model; rows are per member (a model may serve several)."""
        return [row for name, row in self.rows.items() if parse_member(name).model == model]

    def update(self, event: Event) -> None:
        with self._lock:
            self._update(event)

    def _update(self, event: Event) -> None:
        if isinstance(event, ModelLoading):
            for row in self._rows_of_model(event.model):
                row.state = "loading"
        elif isinstance(event, ModelLoaded):
            for row in self._rows_of_model(event.model):
                row.state = f"loaded in {event.load_s:.1f} s"
        elif isinstance(event, SamplingStarted):
            row = self.rows[event.model]
            row.state, row.k, row.tokens = "decoding", event.k, (0,) * event.k
        elif isinstance(event, DecodeProgress):
            row = self.rows[event.model]
            row.tokens, row.elapsed_s = event.tokens, event.elapsed_s
        elif isinstance(event, SampleFinished):
            row = self.rows[event.sample.model]
            row.answers[event.sample.index] = event.sample.answer
            if event.sample.stop_reason == "failed":
                row.failed = event.sample.note
            if event.sample.stop_reason == "killed":
                row.killed.add(event.sample.index)
        elif isinstance(event, ModelStopped):
            row = self.rows[event.model]
            row.stopped.update(event.samples)
            row.never_started.update(event.never_started)
            if event.never_started:
                row.why_not_started = event.reason
        elif isinstance(event, ModelFinished):
            row = self.rows[event.vote.model]
            row.state, row.confidence = "done", event.vote.confidence
        elif isinstance(event, DecisionMade):
            self.result = event.result

    def render(self) -> Group:
        table = Table(box=None, pad_edge=False, header_style="bold")
        for column in ("member", "samples", "tok/s", "answers", "confidence"):
            table.add_column(column)
        for model, row in self.rows.items():
            samples = " ".join(_sample_cell(i, t, row) for i, t in enumerate(row.tokens)) or row.state
            if row.stopped and not any(row.tokens):
                samples = "[dim]not needed[/]"  # early stop settled the answer before this model started
            if row.failed:
                samples = f"[red]failed[/]: {row.failed[:60]}"
            rate = f"{sum(row.tokens) / row.elapsed_s:.0f}" if row.elapsed_s > 0 else ""
            answers = " ".join("∅" if a is None else a for _, a in sorted(row.answers.items()))
            conf = _running_confidence(row)
            table.add_row(model, samples, rate, answers, conf)
        parts: list[object] = [table]
        for model, row in self.rows.items():
            if row.never_started:
                n = len(row.never_started)
                parts.append(Text(f"{model}: {n} sample{'s' if n > 1 else ''} never started: {row.why_not_started}",
                                  style="dim"))  # fmt: skip
            if row.killed:
                n = len(row.killed)
                parts.append(Text(f"{model}: {n} sample{'s' if n > 1 else ''} cut by trace kill (✂): its token "
                                  "confidence fell below the member's floor; no vote", style="dim"))  # fmt: skip
        if self.result is not None:
            parts.append(decision_line(self.result))
        return Group(*parts)  # type: ignore[arg-type]


def _sample_cell(index: int, tokens: int, row: _Row) -> str:
    if index in row.never_started:
        return "[dim]–[/]"  # early stop made it unnecessary before it began
    if index in row.stopped:
        return f"[dim]{tokens}✗[/]"  # cancelled by early stop
    if index in row.killed:
        return f"[yellow]{tokens}✂[/]"  # cut by trace kill: no vote
    return f"[green]{tokens}✓[/]" if index in row.answers else str(tokens)


def _running_confidence(row: _Row) -> str:
    if row.confidence is not None:
        return f"{row.confidence:.2f}"
    if not row.answers or not row.k:
        return ""
    counts: dict[str, int] = {}
    for a in row.answers.values():
        if a is not None:
            counts[a] = counts.get(a, 0) + 1
    best = max(counts.values(), default=0)
    return f"≥{best / row.k:.2f}"


def decision_line(result: MuxResult) -> Text:
    d = result.decision
    if d.answer is None:
        return Text(f"no answer: {d.reason}", style="bold red")
    text = Text()
    text.append("answer ", style="bold")
    text.append(d.answer, style="bold green")
    text.append(f"  from {d.winner}, confidence {d.confidence:.2f}: {d.reason}")
    return text


def follow(
    events: Iterator[Event], models: list[str], *, live: bool, quiet: bool, console: Console = stderr
) -> MuxResult:
    """Drain the event stream, rendering it; return the final result."""
    view = LiveView(models)
    if live and not quiet:
        # Redrawn REFRESH_PER_S times a second whatever the token rate (a GPU makes hundreds of events a
        # second); the last frame is drawn on exit.
        with Live(view, console=console, refresh_per_second=REFRESH_PER_S, transient=False):
            for event in events:
                view.update(event)
    else:
        for event in events:
            view.update(event)
            if not quiet:
                _log_event(event, console)
    assert view.result is not None
    return view.result


def _log_event(event: Event, console: Console) -> None:
    """The plain rendering for pipes and logs: one line per meaningful event."""
    if isinstance(event, ModelLoaded):
        console.print(f"{event.model}: loaded in {event.load_s:.2f} s")
    elif isinstance(event, SampleFinished):
        s = event.sample
        console.print(
            f"{s.model}: sample {s.index + 1} → {s.answer or '∅'} ({s.tokens} tokens, {s.stop_reason}, {s.seconds:.1f} s)"
            + (f": {s.note}" if s.note else "")
        )
    elif isinstance(event, ModelStopped):
        never = f", {len(event.never_started)} never started" if event.never_started else ""
        console.print(f"{event.model}: stopped {len(event.samples)} sample(s){never}: {event.reason}")
    elif isinstance(event, ModelFinished):
        v = event.vote
        console.print(f"{v.model}: majority {v.answer or '∅'}, confidence {v.confidence:.2f}")
    elif isinstance(event, DecisionMade):
        console.print(decision_line(event.result))
