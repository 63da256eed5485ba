"""``edgemux collect``: every model draws k full samples for every task, recorded in a runs file.

Tasks go in the outer loop and models in the inner one, so a run stopped at any point holds the same
questions for every model and can already be searched. Seeds come from the task id (not the position), so a
resumed or reordered run draws exactly the samples a straight run would have.
"""

from __future__ import annotations

import dataclasses
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..answers.prompts import DEFAULT_INSTRUCTIONS
from ..errors import InvalidRequestError
from .runs import Record, RunWriter, read_runs
from .tasks import Task

if TYPE_CHECKING:  # a Mux is passed in; these modules make none
    from ..schedule.runtime import Mux

__all__ = ["Collection", "plan_collection", "run_collection", "settings_of", "task_seed"]


def settings_of(mux: Mux, seed: int) -> dict[str, Any]:
    """What must be equal for two records to belong to one runs file."""
    p = mux.profile
    sampling = {f: getattr(p.sampling, f) for f in p.sampling.field_names() if f != "seed"}
    instruction = p.instruction or DEFAULT_INSTRUCTIONS[p.kind]
    settings = {**sampling, "instruction": instruction, "system": p.system, "n_ctx": p.n_ctx, "seed": seed}
    # Members with another strategy ask in their own words: record those too (only then, so runs collected
    # before members resume as they were).
    others = {m.strategy: m.instruction(p.kind, None) for m in p.members if m.strategy != "cot"}
    if others:
        settings["strategies"] = dict(sorted(others.items()))
    return settings


def task_seed(base: int, task_id: str) -> int:
    """The first sample's seed for a task; sample j uses this + j."""
    return (base + zlib.crc32(task_id.encode())) % (2**31 - 1024)


@dataclass(frozen=True)
class Collection:
    """What a collect run will do: the (task, model) pairs still to run, and how many are done already."""

    out: Path
    tasks: list[Task]
    models: list[str]
    settings: dict[str, Any]
    todo: list[tuple[Task, str]]
    done: int


def plan_collection(mux: Mux, tasks: list[Task], out: Path, seed: int) -> Collection:
    settings = settings_of(mux, seed)
    models = mux.profile.member_names
    done: set[tuple[str, str]] = set()
    if out.exists() and out.stat().st_size > 0:
        for record in read_runs(out):
            if record.settings != settings:
                differ = sorted(
                    k for k in settings.keys() | record.settings.keys() if settings.get(k) != record.settings.get(k)
                )
                raise InvalidRequestError(
                    f"{out} was collected with other settings ({', '.join(f'{k}={record.settings.get(k)!r}' for k in differ)}); "
                    "collect into another --out, or repeat the original flags to resume"
                )
            if record.kind != mux.profile.kind:
                raise InvalidRequestError(
                    f"{out} holds {record.kind!r} answers; this run extracts {mux.profile.kind!r}"
                )
            done.add((record.task, record.model))
    todo = [(task, model) for task in tasks for model in models if (task.id, model) not in done]
    already = len(tasks) * len(models) - len(todo)
    return Collection(out, tasks, models, settings, todo, already)


def run_collection(mux: Mux, collection: Collection) -> Iterator[Record]:
    """Run what is left, appending each record to the runs file as soon as it is complete."""
    base = collection.settings["seed"]
    with RunWriter(collection.out) as writer:
        for task, model in collection.todo:
            sampling = dataclasses.replace(mux.profile.sampling, seed=task_seed(base, task.id))
            samples, prompt_tokens = mux.draw(
                model, task.question, sampling=sampling, choices=task.choices, tests=task.tests
            )
            record = Record(
                task=task.id,
                model=model,
                kind=mux.profile.kind,
                reference=task.answer,
                n_choices=len(task.choices) if task.choices else None,
                settings=collection.settings,
                prompt_tokens=prompt_tokens,
                samples=tuple(samples),
                tests=task.tests,
                choices=task.choices,
                aliases=task.aliases,
                question=task.question if mux.profile.kind == "open" else None,
            )
            writer.append(record)
            yield record
