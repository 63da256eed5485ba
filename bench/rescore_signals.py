"""Token signals for runs recorded before the engine kept them, by teacher forcing (issue 25).

Every sample's text is evaluated after its prompt (rebuilt from the runs file's settings and the task
file's question, as `collect` built it) at prompt speed, and the runs file is written again with each
sample's ``lp``/``tc``. Resumable: records already in --out are skipped.

With --check, the input already has signals (a ``*-conf-*`` file): nothing is written; the rescored
signals are compared with the recorded ones (median and 90th percentile of the per-token difference, and
of the per-sample scores), which says how far rescored runs can stand in for collected ones.

    python bench/rescore_signals.py --runs bench/runs/gsm8k-dev-k5.jsonl.gz --tasks bench/tasks/gsm8k-dev.jsonl \
        --out bench/runs/gsm8k-dev-k5.rescored.jsonl
    python bench/rescore_signals.py --runs bench/runs/gsm8k-dev-conf-k8.jsonl.gz --tasks bench/tasks/gsm8k-dev.jsonl --check --limit 10
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
from pathlib import Path

from edgemux.decide.confidence import MEASURES, sample_score
from edgemux.profiles import adhoc_profile
from edgemux.schedule.runtime import LoadOptions, Mux
from edgemux.selection.runs import Record, RunWriter, read_runs, read_runs_files
from edgemux.selection.tasks import load_tasks
from edgemux.types import Sampling, TokenSignals


def mux_for(records: list[Record]) -> Mux:
    """A Mux whose prompts are the ones the runs were collected with."""
    settings = records[0].settings
    members = list(dict.fromkeys(r.model for r in records))
    profile = dataclasses.replace(
        adhoc_profile(members, records[0].kind, Sampling(k=records[0].k)),
        instruction=settings.get("instruction"), system=settings.get("system"), n_ctx=int(settings.get("n_ctx", 4096)),
    )  # fmt: skip
    return Mux(profile, load=LoadOptions(early_stop=False))


def rescored(mux: Mux, record: Record, question: str) -> Record:
    texts = [s.text for s in record.samples]
    signals = mux.score_samples(record.model, question, texts, choices=record.choices, tests=record.tests)
    samples = tuple(dataclasses.replace(s, signals=x) for s, x in zip(record.samples, signals, strict=True))
    return dataclasses.replace(record, samples=samples)


def differences(recorded: TokenSignals, again: TokenSignals) -> list[float]:
    n = min(len(recorded.confidences), len(again.confidences))
    return [abs(a - b) for a, b in zip(recorded.confidences[:n], again.confidences[:n], strict=True)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", required=True)
    parser.add_argument("--tasks", required=True, type=Path, help="the task file the runs were collected from")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--check", action="store_true", help="compare with the signals the runs already hold")
    parser.add_argument("--limit", type=int, help="only the first N records")
    parser.add_argument(
        "--models",
        help="only these members, comma-separated (default: every one in the runs); "
        "the others' records are copied as they are, after the rescored ones",
    )
    args = parser.parse_args()
    records = read_runs_files(args.runs)
    others: list[Record] = []  # members not rescored: copied as recorded, so that the file stays complete
    if args.models:
        others = [r for r in records if r.model not in args.models.split(",")]
        records = [r for r in records if r.model in args.models.split(",")]
    records = records[: args.limit]
    questions = {t.id: t.question for t in load_tasks(args.tasks)}
    if args.check:
        token_diff: list[float] = []
        score_diff: dict[str, list[float]] = {m: [] for m in MEASURES}
        with mux_for(records) as mux:
            for i, record in enumerate(records, 1):
                print(f"[{i}/{len(records)}] {record.task} {record.model}", file=sys.stderr)
                for old, new in zip(record.samples, rescored(mux, record, questions[record.task]).samples, strict=True):
                    if old.signals is None or new.signals is None:
                        continue
                    token_diff += differences(old.signals, new.signals)
                    for m in MEASURES:
                        score_diff[m].append(abs(sample_score(old.signals, m, 16) - sample_score(new.signals, m, 16)))
        q = statistics.quantiles
        print(json.dumps({
            "records": len(records), "tokens": len(token_diff),
            "token_confidence_diff": {"median": statistics.median(token_diff), "p90": q(token_diff, n=10)[-1]},
            "sample_score_diff_window16": {m: {"median": statistics.median(v), "p90": q(v, n=10)[-1]}
                                           for m, v in score_diff.items() if len(v) > 1},
        }, indent=2))  # fmt: skip
        return
    if args.out is None:
        raise SystemExit("--out is required unless --check")
    done = {(r.task, r.model) for r in read_runs(args.out)} if args.out.exists() and args.out.stat().st_size else set()
    todo = [r for r in records if (r.task, r.model) not in done]
    with mux_for(records) as mux, RunWriter(args.out) as writer:
        for i, record in enumerate(todo, 1):
            print(f"[{i}/{len(todo)}] {record.task} {record.model}", file=sys.stderr)
            writer.append(rescored(mux, record, questions[record.task]))
        for record in others if args.limit is None else []:
            if (record.task, record.model) not in done:
                writer.append(record)


if __name__ == "__main__":
    main()
