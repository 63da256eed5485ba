"""Trace kill on recorded runs: tokens and accuracy for each stop rule, with and without trace kill at
several floors (issue 26). Everything is held out: a floor (and a confident rule's bars) is fitted on one
half of the questions and scored on the other, both ways (``selection/stopsearch.score_rule``); a killed
sample costs its tokens up to the kill and does not vote. No model runs.

    python bench/trace_kill.py --runs bench/runs/gsm8k-dev-conf-k8.jsonl.gz \\
        --members qwen2.5-coder-1.5b:pot,qwen2.5-coder-1.5b -k 4 [--json]
"""

from __future__ import annotations

import argparse
import json

from edgemux.decide.stoprules import KILL_WINDOW, Agreement, TraceKill
from edgemux.selection.runs import read_runs_files
from edgemux.selection.search import build_table

PERCENTILES = (None, 2.0, 5.0, 10.0, 20.0)
RULES = (("none", None, None), ("decision", None, None), ("agree", None, Agreement(3, 1)),
         ("agree", None, Agreement(3, 0)), ("confident", ("tail", 32, 0.8), None))  # fmt: skip


def main() -> None:
    from edgemux.selection.stopsearch import rows_in_tie_order, score_rule

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", required=True, help="runs file(s) with token signals, comma-separated")
    parser.add_argument("--members", required=True, help="members, comma-separated (decoded in tie order)")
    parser.add_argument("-k", type=int, required=True)
    parser.add_argument("--window", type=int, default=KILL_WINDOW)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    table = build_table(read_runs_files(args.runs))
    members = args.members.split(",")
    rows = rows_in_tie_order(table, members)
    out = []
    for rule, setting, agreement in RULES:
        for percentile in PERCENTILES:
            kill = TraceKill(args.window, percentile) if percentile is not None else None
            score = score_rule(table, rows, args.k, rule, setting, agreement=agreement, kill=kill)
            out.append({"rule": score.rule, "tokens": round(score.tokens), "accuracy": round(score.accuracy, 4)})
    if args.json:
        print(json.dumps(out, indent=1))
        return
    print(f"{len(table.tasks)} questions, {' + '.join(table.models[r] for r in rows)}, k={args.k} (held out)")
    for r in out:
        print(f"  {r['tokens']:6d} tokens  {100 * r['accuracy']:5.1f} %  {r['rule']}")


if __name__ == "__main__":
    main()
