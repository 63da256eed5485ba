"""Which model set is the better *general* choice for the default profile? Score every subset of the pool
at one k on several task sets' runs and rank by the mean simulated SLM-MUX accuracy across them (issue:
selection profiles — "profiles/default.yaml pointing at the better general choice").

    python bench/general_choice.py --runs bench/runs/gsm8k-dev-k5.jsonl.gz,bench/runs/arc-dev-k5.jsonl.gz -k 3

Prints one row per subset (and per single model, self-consistency) with its accuracy on each task set,
the mean, and tokens per answer; the first row is the choice. Ties within --tolerance points of the best
mean go to the cheapest in tokens. Then build the default profile with exactly those models:
`edgemux profile build --runs <the default's task set> --name default --models <the choice>`.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from edgemux.selection.runs import read_runs
from edgemux.selection.search import build_table, search


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", required=True, help="comma-separated runs files, one per task set")
    parser.add_argument("-k", type=int, default=3)
    parser.add_argument("--max-models", type=int, default=3)
    parser.add_argument("--tolerance", type=float, default=1.0, help="accuracy points")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    files = [Path(p) for p in args.runs.split(",")]
    rows: dict[tuple[str, ...], dict[str, tuple[float, float]]] = {}  # setup -> task set -> (accuracy, tokens)
    tasks = {}
    for path in files:
        result = search(build_table(read_runs(path)), max_models=args.max_models)
        tasks[path.name] = result.tasks
        for s in result.subsets:
            at = s.by_k[args.k]
            rows.setdefault(s.models, {})[path.name] = (at.mux.mean, at.tokens)
        for m in result.models:
            rows.setdefault((m.model,), {})[path.name] = (m.self_consistency[args.k].mean, m.tokens_per_sample * args.k)
    complete = {setup: per for setup, per in rows.items() if len(per) == len(files)}
    scored = sorted(
        ((sum(a for a, _ in per.values()) / len(per), sum(t for _, t in per.values()) / len(per), setup, per)
         for setup, per in complete.items()),
        key=lambda r: -r[0],
    )  # fmt: skip
    best = scored[0][0]
    choice = min((r for r in scored if r[0] >= best - args.tolerance / 100), key=lambda r: r[1])
    ensembles = [r for r in scored if len(r[2]) > 1]
    ensemble_choice = min((r for r in ensembles if r[0] >= ensembles[0][0] - args.tolerance / 100), key=lambda r: r[1])
    if args.json:
        print(json.dumps({
            "k": args.k, "tasks": tasks, "choice": list(choice[2]), "ensemble_choice": list(ensemble_choice[2]),
            "rows": [{"models": list(s), "mean": m, "tokens": t, **{f: a for f, (a, _) in per.items()}}
                     for m, t, s, per in scored],
        }, indent=2))  # fmt: skip
        return
    names = [p.name for p in files]
    print(f"k = {args.k}; " + ", ".join(f"{n}: {tasks[n]} questions" for n in names))
    print(f"| models | {' | '.join(names)} | mean | tokens / answer |")
    print("|---|" + "---|" * (len(names) + 2))
    for mean, tokens, setup, per in scored:
        mark = " **(choice)**" if setup == ensemble_choice[2] else ""
        cells = " | ".join(f"{100 * per[n][0]:.1f}" for n in names)
        print(f"| {' + '.join(setup)}{' (alone, majority)' if len(setup) == 1 else ''}{mark} | {cells} | "
              f"{100 * mean:.1f} | {tokens:.0f} |")  # fmt: skip
    print(f"ensemble choice: {' + '.join(ensemble_choice[2])} ({100 * ensemble_choice[0]:.1f}% mean)")
    if choice[2] != ensemble_choice[2]:
        print(f"(a single model does as well or better: {' + '.join(choice[2])}, {100 * choice[0]:.1f}% mean)")


if __name__ == "__main__":
    main()
