"""The live half of ``edgemux eval``: draw every model's k samples for each task (into ``DIR/runs.jsonl``,
as ``collect`` does, so the baselines score on them), then ask the profile with early stop on
(``DIR/early_stop.jsonl``: answer, tokens, seconds). Both files are resumable, one line per task; the
early-stop run uses the same seeds as the recorded samples."""

from __future__ import annotations

import dataclasses
import json
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..answers.equivalence import Unifier, reference_of
from ..answers.strategies import parse_member
from ..errors import InvalidRequestError
from ..selection.collect import plan_collection, run_collection, task_seed
from ..selection.runs import drop_cut_line, read_runs
from ..selection.tasks import Task
from .evaluate import MUX, MUX_EARLY, EvalReport, MethodScore, score_runs

if TYPE_CHECKING:  # a Mux is passed in; these modules make none
    from ..schedule.runtime import Mux

__all__ = ["EarlyStopRow", "evaluate_live", "read_early_stop", "run_live"]


@dataclass(frozen=True)
class EarlyStopRow:
    task: str
    answer: str | None
    tokens: int
    seconds: float
    stopped: int  # samples cancelled by early stop


def read_early_stop(path: Path) -> dict[str, EarlyStopRow]:
    rows: dict[str, EarlyStopRow] = {}
    if not path.exists():
        return rows
    with path.open(encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.endswith("\n"):
                break  # cut off by a kill: run again
            try:
                row = json.loads(line)
                rows[row["task"]] = EarlyStopRow(
                    row["task"], row["answer"], row["tokens"], row["seconds"], row["stopped"]
                )
            except (json.JSONDecodeError, KeyError, TypeError) as e:
                raise InvalidRequestError(f"{path}:{n}: not an early-stop row ({e})") from None
    return rows


def run_live(mux: Mux, tasks: list[Task], out: Path, seed: int) -> Iterator[str]:
    """Yield one line of progress per step done."""
    out.mkdir(parents=True, exist_ok=True)
    collection = plan_collection(mux, tasks, out / "runs.jsonl", seed)
    for record in run_collection(mux, collection):
        yield f"{record.task} {record.model}: {' '.join(s.answer or '∅' for s in record.samples)}"
    path = out / "early_stop.jsonl"
    done = read_early_stop(path)
    drop_cut_line(path)
    with path.open("a", encoding="utf-8") as f:
        for task in tasks:
            if task.id in done:
                continue
            sampling = dataclasses.replace(mux.profile.sampling, seed=task_seed(seed, task.id))
            start = time.perf_counter()
            result = mux.ask(task.question, sampling=sampling, choices=task.choices, tests=task.tests)
            row = EarlyStopRow(task.id, result.answer, result.tokens, time.perf_counter() - start, len(result.stopped))
            f.write(json.dumps(dataclasses.asdict(row)) + "\n")
            f.flush()
            os.fsync(f.fileno())
            right = is_right(mux.profile.kind, task, result.answer)
            mark = "" if right is None else " ✓" if right else " ✗"
            yield f"{task.id} early stop: {result.answer or '∅'}{mark} ({result.tokens} tokens, {len(result.stopped)} stopped)"


def is_right(kind: str, task: Task, answer: str | None) -> bool | None:
    """Whether an answer is right for a task (None: the task has no usable reference), judged as the
    offline eval judges (a MATH answer equal in meaning, an open one matching an alias)."""
    unify = Unifier(kind, question=task.question)
    reference = reference_of(kind, task.answer, task.tests, task.aliases, unify)
    return None if reference is None else reference.is_right(unify(answer))


def evaluate_live(
    mux: Mux, tasks: list[Task], out: Path, seed: int, *, rescore: bool = True, progress: Callable[[str], None]
) -> EvalReport:
    """Run what is left of a live eval under ``out``, then score every method on the same samples, with
    the early-stop run as one more method and the models' measured resident bytes."""
    for line in run_live(mux, tasks, out, seed):
        progress(line)
    profile = mux.profile
    measured = {n: mux.resident.nbytes(n) if mux.resident.is_resident(n) else 0 for n in profile.model_names}
    ids = {t.id for t in tasks}
    records = [r for r in read_runs(out / "runs.jsonl") if r.task in ids]

    def resident_bytes(members: Sequence[str]) -> int | None:
        return sum(measured[m] for m in {parse_member(n).model for n in members}) or None

    # a live eval ran these programs itself a moment ago: scoring code answers may run them again
    report = score_runs(records, profile, rescore=rescore, resident_bytes=resident_bytes, run_programs=True)
    early = read_early_stop(out / "early_stop.jsonl")
    score = MethodScore(MUX_EARLY, resident_bytes=report.method(MUX).resident_bytes)
    by_id = {t.id: t for t in tasks}
    for q in report.questions:
        row = early[q.task]
        score.add(bool(is_right(profile.kind, by_id[q.task], row.answer)), row.tokens, row.seconds)
        q.answers[MUX_EARLY] = row.answer
    report.methods.insert(report.methods.index(report.method(MUX)) + 1, score)
    return report
