"""Task files: JSONL with one task per line — ``id``, ``question``, optional ``answer``, ``choices`` and
``aliases`` (accepted answers of an open question) (the form of ../shared/data). Bad lines are reported with their line number; nothing is guessed."""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path

from ..errors import InvalidRequestError

__all__ = ["Task", "guess_kind", "load_tasks"]


@dataclass(frozen=True)
class Task:
    id: str
    question: str
    answer: str | None = None  # the reference, as the dataset writes it; None: collect works, nothing is scored
    choices: tuple[str, ...] | None = None
    tests: tuple[str, ...] | None = None  # code tasks: asserts that the answer must pass (MBPP's test_list)
    aliases: tuple[str, ...] | None = None  # open questions: every accepted answer (TriviaQA, NQ)


def _parse(line: str, where: str) -> Task:
    try:
        row = json.loads(line)
    except json.JSONDecodeError as e:
        raise InvalidRequestError(f"{where}: not valid JSON ({e.msg})") from None
    if not isinstance(row, dict):
        raise InvalidRequestError(f"{where}: expected a JSON object, got {type(row).__name__}")
    for key in ("id", "question"):
        if not isinstance(row.get(key), (str, int)) or str(row[key]).strip() == "":
            raise InvalidRequestError(f"{where}: missing {key!r} (every task needs an id and a question)")
    answer = row.get("answer")
    if answer is not None and not isinstance(answer, (str, int, float)):
        raise InvalidRequestError(f"{where}: 'answer' should be a string or a number")
    choices = row.get("choices")
    if choices is not None and (not isinstance(choices, list) or not all(isinstance(c, str) for c in choices)):
        raise InvalidRequestError(f"{where}: 'choices' should be a list of strings")
    tests = row.get("test_list", row.get("tests"))
    if tests is not None and (not isinstance(tests, list) or not all(isinstance(t, str) for t in tests)):
        raise InvalidRequestError(f"{where}: 'test_list' should be a list of assert statements")
    aliases = row.get("aliases")
    if aliases is not None and (not isinstance(aliases, list) or not all(isinstance(a, str) for a in aliases)):
        raise InvalidRequestError(f"{where}: 'aliases' should be a list of accepted answers (strings)")
    return Task(
        str(row["id"]),
        str(row["question"]),
        None if answer is None else str(answer),
        tuple(choices) if choices else None,
        tuple(tests) if tests else None,
        tuple(aliases) if aliases else None,
    )


def load_tasks(path: Path, *, limit: int | None = None, shuffle_seed: int | None = None) -> list[Task]:
    """Tasks in file order (or shuffled with ``shuffle_seed``), the first ``limit`` of them."""
    if not path.is_file():
        raise InvalidRequestError(f"{path}: no such task file (expected JSONL: id, question, answer per line)")
    tasks: list[Task] = []
    seen: set[str] = set()
    with path.open(encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            task = _parse(line, f"{path}:{n}")
            if task.id in seen:
                raise InvalidRequestError(f"{path}:{n}: task id {task.id!r} appears twice")
            seen.add(task.id)
            tasks.append(task)
    if not tasks:
        raise InvalidRequestError(f"{path}: no tasks in the file")
    if shuffle_seed is not None:
        random.Random(shuffle_seed).shuffle(tasks)
    return tasks[:limit] if limit is not None else tasks


def guess_kind(tasks: list[Task]) -> str | None:
    """``choice`` when the tasks carry choices, ``code`` when they carry tests, else None (the profile's
    kind; say --kind math for MATH)."""
    if any(t.choices for t in tasks):
        return "choice"
    if any(t.tests for t in tasks):
        return "code"
    return None
