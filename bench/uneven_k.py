"""Does drawing more of the cheap member's samples and fewer of the expensive one's buy accuracy per token?
(issue 25: the `default` target "today's accuracy at ≤ 50 % of today's tokens"). On runs collected at a
high k (the GSM8K k = 8 runs), every pair (k of the first member, k of the second) is scored by SLM-MUX
over random subsets of each member's recorded samples (`mux.tally` and `mux.decide`: the larger share of its
own k wins, ties to the first member, given the better validation accuracy as in `default`), with the tokens
those samples cost, before early stop.

    python bench/uneven_k.py --runs bench/runs/gsm8k-dev-conf-k8.jsonl.gz \
        --members qwen2.5-coder-1.5b:pot,qwen2.5-coder-1.5b
"""

from __future__ import annotations

import argparse
import random

from edgemux.decide.mux import decide, tally
from edgemux.selection.runs import Record, read_runs_files


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", required=True)
    parser.add_argument("--members", required=True, help="first,second: the first wins ties")
    parser.add_argument("--repeats", type=int, default=20, help="random subsets per question")
    args = parser.parse_args()
    first, second = args.members.split(",")
    by_task: dict[str, dict[str, Record]] = {}
    for r in read_runs_files(args.runs):
        by_task.setdefault(r.task, {})[r.model] = r
    tasks = [per for per in by_task.values() if first in per and second in per]
    collected = min(min(per[first].k, per[second].k) for per in tasks)
    rng = random.Random(0)
    print(f"{len(tasks)} questions, {args.repeats} random subsets each; k of {first} / k of {second}")
    print(f"{'k1':>3} {'k2':>3} {'accuracy':>9} {'tokens':>7}")
    for k1 in range(1, collected + 1):
        for k2 in range(0, collected + 1):
            right = tokens = n = 0
            for _ in range(args.repeats):
                for per in tasks:
                    a, b = per[first], per[second]
                    s1 = rng.sample(list(a.samples), k1)
                    s2 = rng.sample(list(b.samples), k2) if k2 else []
                    votes = [tally(first, s1, 1.0)] + ([tally(second, s2, 0.0)] if k2 else [])
                    answer = decide(votes).answer
                    right += answer is not None and answer == a.reference_answer()
                    tokens += sum(s.tokens for s in s1 + s2)
                    n += 1
            print(f"{k1:>3} {k2:>3} {right / n:>8.1%} {tokens / n:>7.0f}")


if __name__ == "__main__":
    main()
