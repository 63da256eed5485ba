"""The committed runs a bench script reads by default: for each name, the plain file where a collection is
still running, else its committed snapshot (``.jsonl.gz``); names with neither are left out."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

RUNS = Path(__file__).parent / "runs"


def committed_runs(names: Sequence[str]) -> list[str]:
    found = []
    for name in names:
        path = next((p for p in (RUNS / f"{name}.jsonl", RUNS / f"{name}.jsonl.gz") if p.exists()), None)
        if path is not None:
            found.append(str(path))
    return found
