"""Offline speed (issues: selection profiles, eval): the search over 4 models × 5 samples × 100 questions
must take under 2 s, and re-scoring 4 models × 5 samples × 300 questions under 2 s (reading the runs file,
extracting every answer again from its text, and scoring every method).

The runs are built from real recorded samples (bench/runs/*.jsonl[.gz], texts and token counts) repeated
under new task ids up to the size asked, so extraction sees real model output.

    python bench/offline_speed.py
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

from edgemux.measure.evaluate import score_runs
from edgemux.profiles import Profile, ProfileModel
from edgemux.selection.runs import Record, read_runs
from edgemux.selection.search import build_table, search
from edgemux.types import Sampling

HERE = Path(__file__).parent


def source_records() -> list[Record]:
    for name in ("gsm8k-dev-k5.jsonl.gz", "gsm8k-dev-k5.jsonl"):
        path = HERE / "runs" / name
        if path.exists():
            return read_runs(path)
    raise SystemExit("no recorded runs under bench/runs (run bench/collect_runs.sh first)")


def synthetic(records: list[Record], n_tasks: int) -> list[Record]:
    by_task: dict[str, list[Record]] = {}
    for r in records:
        by_task.setdefault(r.task, []).append(r)
    models = sorted({r.model for r in records})
    complete = [rs for rs in by_task.values() if len(rs) == len(models)]
    out = []
    for i in range(n_tasks):
        for r in complete[i % len(complete)]:
            out.append(
                Record(
                    f"{r.task}#{i}", r.model, r.kind, r.reference, r.n_choices, r.settings, r.prompt_tokens, r.samples
                )
            )
    return out


def timed(fn, repeats: int) -> float:  # type: ignore[no-untyped-def]
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-r", "--repeats", type=int, default=5)
    args = parser.parse_args()
    records = source_records()
    models = sorted({r.model for r in records})
    with tempfile.TemporaryDirectory() as tmp:
        small, large = Path(tmp) / "search.jsonl", Path(tmp) / "rescore.jsonl"
        small.write_text("".join(r.to_json() + "\n" for r in synthetic(records, 100)))
        large.write_text("".join(r.to_json() + "\n" for r in synthetic(records, 300)))
        profile = Profile("all", records[0].kind, tuple(ProfileModel(m) for m in models), Sampling(k=5))
        search_s = timed(lambda: search(build_table(read_runs(small)), max_models=4), args.repeats)
        rescore_s = timed(lambda: score_runs(read_runs(large), profile, rescore=True), args.repeats)
    out = {
        "models": len(models), "samples": 5,
        "search_100_questions_s": search_s, "search_target_s": 2.0,
        "rescore_300_questions_s": rescore_s, "rescore_target_s": 2.0,
    }  # fmt: skip
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
