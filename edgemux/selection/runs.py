"""Runs files: what ``edgemux collect`` recorded, one JSON line per (task, model) with all k samples.

Append-only and resumable: every line is written whole and flushed to disk before the next task starts;
a line cut off by a kill is dropped (and reported) when the file is opened again, and a task whose line
is there is never run twice. ``.jsonl.gz`` files (the shipped runs) are read the same way.

    {"task": "gsm8k-test-0013", "model": "qwen2.5-coder-1.5b", "kind": "number", "reference": "18",
     "n_choices": null, "settings": {"k": 5, "temperature": 0.3, ..., "instruction": "..."},
     "prompt_tokens": 96, "samples": [{"index": 0, "seed": 1234, "text": "...", "answer": "18",
     "tokens": 212, "stop": "eos", "seconds": 9.8, "lp": [-0.01, ...], "tc": [14.2, ...]}, ...]}

``lp`` and ``tc`` (when the engine gave them) are each generated token's logprob and confidence
(``types.TokenSignals``), rounded to what a vote can tell apart; older files have neither.
"""

from __future__ import annotations

import gzip
import json
import logging
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from ..errors import InvalidRequestError
from ..programs import ProgramRun
from ..types import TASK_KINDS, Sample, TokenSignals

log = logging.getLogger("edgemux.runs")

__all__ = ["Record", "RunWriter", "drop_cut_line", "merged_settings", "read_runs", "read_runs_files"]

_SAMPLE_KEYS = ("index", "seed", "text", "answer", "tokens", "stop", "seconds")


@dataclass(frozen=True)
class Record:
    """All k samples one model drew for one task."""

    task: str
    model: str
    kind: str
    reference: str | None  # as the task file wrote it; canonicalised by whoever scores
    n_choices: int | None
    settings: dict[str, Any]  # sampling settings, instruction and n_ctx: equal across a runs file
    prompt_tokens: int
    samples: tuple[Sample, ...]
    tests: tuple[str, ...] | None = None  # code tasks: the asserts answers are run against
    choices: tuple[str, ...] | None = (
        None  # choice tasks: the choices' texts (a reply may give one instead of its letter)
    )
    aliases: tuple[str, ...] | None = None  # open questions: every accepted answer
    question: str | None = None  # open questions: its words are not what two answers must share

    @property
    def k(self) -> int:
        return len(self.samples)

    def reference_answer(self) -> str | None:
        """The reference in the kind's canonical form (None when there is none, or it does not parse)."""
        from ..answers.extract import canonical_reference

        return canonical_reference(self.kind, self.reference, self.tests) if self.reference is not None else None

    def to_json(self) -> str:
        row = {
            "task": self.task, "model": self.model, "kind": self.kind, "reference": self.reference,
            "n_choices": self.n_choices, **({"tests": list(self.tests)} if self.tests else {}),
            **({"choices": list(self.choices)} if self.choices else {}),
            **({"aliases": list(self.aliases)} if self.aliases else {}),
            **({"question": self.question} if self.question else {}),
            "settings": self.settings, "prompt_tokens": self.prompt_tokens,
            "samples": [
                {"index": s.index, "seed": s.seed, "text": s.text, "answer": s.answer, "tokens": s.tokens,
                 "stop": s.stop_reason, "seconds": round(s.seconds, 3),
                 **({"program": s.program.to_json()} if s.program else {}),
                 **(_signals_json(s.signals) if s.signals else {})}
                for s in self.samples
            ],
        }  # fmt: skip
        return json.dumps(row, ensure_ascii=False)


def _record(row: Any, where: str) -> Record:
    if not isinstance(row, dict):
        raise InvalidRequestError(f"{where}: expected a JSON object")
    missing = [k for k in ("task", "model", "kind", "settings", "samples") if k not in row]
    if missing:
        raise InvalidRequestError(f"{where}: missing {', '.join(missing)} (is this a file from `edgemux collect`?)")
    if row["kind"] not in TASK_KINDS:
        raise InvalidRequestError(f"{where}: unknown task kind {row['kind']!r}")
    if not isinstance(row["samples"], list) or not row["samples"]:
        raise InvalidRequestError(f"{where}: 'samples' should be a non-empty list")
    samples = []
    for j, s in enumerate(row["samples"]):
        if not isinstance(s, dict) or any(k not in s for k in _SAMPLE_KEYS):
            raise InvalidRequestError(f"{where}: sample {j} lacks one of {', '.join(_SAMPLE_KEYS)}")
        program = s.get("program")
        if program is not None and (not isinstance(program, dict) or "status" not in program):
            raise InvalidRequestError(f"{where}: sample {j}: 'program' should be an object with a status")
        samples.append(
            Sample(
                row["model"],
                s["index"],
                s["seed"],
                s["text"],
                s["answer"],
                s["tokens"],
                s["stop"],
                s["seconds"],
                ProgramRun.from_json(program) if program else None,
                signals=_signals(s, f"{where}: sample {j}"),
            )  # fmt: skip
        )
    return Record(
        str(row["task"]), str(row["model"]), row["kind"], row.get("reference"), row.get("n_choices"),
        dict(row["settings"]), int(row.get("prompt_tokens", 0)), tuple(samples),
        tuple(row["tests"]) if row.get("tests") else None,
        tuple(str(c) for c in row["choices"]) if isinstance(row.get("choices"), list) and row["choices"] else None,
        tuple(str(a) for a in row["aliases"]) if isinstance(row.get("aliases"), list) and row["aliases"] else None,
        str(row["question"]) if isinstance(row.get("question"), str) else None,
    )  # fmt: skip


def _signals_json(signals: TokenSignals) -> dict[str, Any]:
    mass = {} if signals.answer_mass is None else {"am": round(signals.answer_mass, 4)}
    return {"lp": [round(x, 4) for x in signals.logprobs], "tc": [round(x, 3) for x in signals.confidences], **mass}


def _signals(s: dict[str, Any], where: str) -> TokenSignals | None:
    if "lp" not in s and "tc" not in s:
        return None
    lp, tc = s.get("lp"), s.get("tc")
    if not (isinstance(lp, list) and isinstance(tc, list) and len(lp) == len(tc)
            and all(isinstance(x, (int, float)) for x in (*lp, *tc))):  # fmt: skip
        raise InvalidRequestError(f"{where}: 'lp' and 'tc' should be two lists of numbers of the same length")
    mass = s.get("am")
    if mass is not None and not (isinstance(mass, (int, float)) and 0 <= mass <= 1):
        raise InvalidRequestError(f"{where}: 'am' (the answer letter's probability) should be a number from 0 to 1")
    return TokenSignals(tuple(float(x) for x in lp), tuple(float(x) for x in tc), None if mass is None else float(mass))


def _open_text(path: Path) -> TextIO:
    if path.suffix == ".gz":
        return gzip.open(path, "rt", encoding="utf-8")
    return path.open(encoding="utf-8")


def _lines(path: Path) -> Iterator[tuple[int, str, bool]]:
    """(line number, text, whether the line ended with a newline)."""
    with _open_text(path) as f:
        for n, line in enumerate(f, 1):
            yield n, line, line.endswith("\n")


def read_runs(path: Path) -> list[Record]:
    """Every record in a runs file. A last line without its newline (a run killed while writing) is left
    out with a warning; any other bad line is an error naming the line."""
    if not path.is_file():
        raise InvalidRequestError(f"{path}: no such runs file (make one with `edgemux collect`)")
    records: list[Record] = []
    seen: set[tuple[str, str]] = set()
    try:
        for n, line, complete in _lines(path):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                if not complete:
                    log.warning("%s:%d: the last line was cut off (a killed run?); it is left out", path, n)
                    break
                raise InvalidRequestError(f"{path}:{n}: not valid JSON ({e.msg})") from None
            record = _record(row, f"{path}:{n}")
            key = (record.task, record.model)
            if key in seen:
                raise InvalidRequestError(f"{path}:{n}: task {record.task!r} for {record.model} appears twice")
            seen.add(key)
            records.append(record)
    except (OSError, EOFError, UnicodeDecodeError) as e:
        raise InvalidRequestError(f"{path}: cannot read the runs file ({e})") from None
    return records


def read_runs_files(spec: str | Path) -> list[Record]:
    """The records of one runs file, or of several given as ``a.jsonl,b.jsonl.gz``: one per strategy (members'
    records for the same tasks, searched together) or one per task set (TriviaQA and NQ-open, the same
    members). A member's record of one task in two files is an error."""
    paths = [Path(p.strip()) for p in str(spec).split(",") if p.strip()]
    if not paths:
        raise InvalidRequestError("--runs needs a runs file (several: separated by commas)")
    if len(set(paths)) != len(paths):
        raise InvalidRequestError(f"--runs names a file twice: {spec}")
    records: list[Record] = []
    owner: dict[tuple[str, str], Path] = {}
    for path in paths:
        for record in read_runs(path):
            if owner.setdefault((record.task, record.model), path) != path:
                raise InvalidRequestError(f"{record.model}'s samples of task {record.task!r} are in both "
                                          f"{owner[record.task, record.model]} and {path}; give them once")  # fmt: skip
            records.append(record)
    merged_settings(records)  # settings that differ are an error now, not a profile with the wrong ones
    return records


# Settings members may differ in (each strategy asks in its own words).
_PER_MEMBER = frozenset({"instruction", "strategies", "seed"})


def merged_settings(records: Sequence[Record]) -> dict[str, Any]:
    """The one set of settings records from several runs files share: sampling settings must be equal;
    the chain-of-thought instruction is the first one given, and the strategies' instructions are merged."""
    merged: dict[str, Any] = {}
    strategies: dict[str, Any] = {}
    for record in records:
        for key, value in record.settings.items():
            if key == "strategies":
                strategies.update(value)
            elif key not in merged:
                merged[key] = value
            elif merged[key] != value and key not in _PER_MEMBER:
                raise InvalidRequestError(
                    f"the runs were collected with different {key} ({merged[key]!r} and {value!r} for "
                    f"{record.model}); search runs collected with the same sampling settings"
                )
    if strategies:
        merged["strategies"] = dict(sorted(strategies.items()))
    return merged


def drop_cut_line(path: Path) -> None:
    """Truncate a trailing line without its newline (a kill while writing), so appends start clean."""
    if not path.exists() or path.stat().st_size == 0:
        return
    with path.open("rb+") as f:
        data = f.read()
        if data.endswith(b"\n"):
            return
        keep = data.rfind(b"\n") + 1
        log.warning("%s: dropping a cut-off last line (%d bytes) from a killed run", path, len(data) - keep)
        f.truncate(keep)


class RunWriter:
    """Appends records to a runs file, one whole line at a time, each on disk before the next is made."""

    def __init__(self, path: Path) -> None:
        if path.suffix == ".gz":
            raise InvalidRequestError(f"{path}: collect writes plain .jsonl (compress it when it is done)")
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        drop_cut_line(path)
        self._file = path.open("a", encoding="utf-8")

    def append(self, record: Record) -> None:
        self._file.write(record.to_json() + "\n")
        self._file.flush()
        os.fsync(self._file.fileno())

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> RunWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
