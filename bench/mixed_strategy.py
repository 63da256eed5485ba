"""The third strategy the members issue asks to try: reasoning in words with code whose *real* output
replaces the invented one, in one generation ("mix"). Measured on the committed chain-of-thought runs, so
the same samples are scored both ways and nothing but the rule differs:

- ``cot``: the answer extracted from the text, as shipped;
- ``mix``: when the reply holds a Python program, the program is run in the sandbox and what it prints is
  the answer; a reply without a program, or whose program fails or prints nothing, keeps its text answer.

The coder models write code in a fifth of their GSM8K chain-of-thought replies unprompted, so this is the
mix rule with the chain-of-thought prompt; the ``MODEL:mix`` member (its own prompt, asking for words and
code) is read from ``bench/runs/gsm8k-dev-mix-k5.jsonl`` where it has been collected, on the questions it
has run. Prints, per member: one-sample accuracy and majority of k
both ways, how many replies held a program, and SLM-MUX of the shipped pairing with ``mix`` in place of
``cot``. ``--json`` for RESULTS.

    python bench/mixed_strategy.py [--runs A.jsonl.gz,B.jsonl.gz] [--json]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from concurrent.futures import ThreadPoolExecutor

from runfiles import committed_runs

from edgemux.answers.members import answer_of, program_in, recorded_answer
from edgemux.answers.strategies import Member, parse_member
from edgemux.sandbox import run_python
from edgemux.selection.runs import Record, read_runs_files
from edgemux.selection.search import build_table, search

DEFAULT_RUNS = ("gsm8k-dev-k5", "gsm8k-dev-pot-k5", "gsm8k-dev-mix-k5")  # the mix runs are read when collected
CODERS = ("qwen2.5-coder-1.5b", "qwen2.5-coder-0.5b")


def mixed(record: Record, pool: ThreadPoolExecutor) -> tuple[Record, int]:
    """The record re-scored by the mix rule, under the member name ``MODEL:mix``; and how many of its
    replies held a program."""
    member = Member(record.model, "mix")
    programs = [program_in(member, s.text) for s in record.samples]
    runs = list(pool.map(lambda p: run_python(p) if p else None, programs))
    samples = [
        dataclasses.replace(s, answer=answer_of(member, record.kind, s.text, program_stdout=(
            run.stdout if run is not None and run.ok else None)))
        for s, run in zip(record.samples, runs, strict=True)
    ]  # fmt: skip
    return (dataclasses.replace(record, model=f"{record.model} (cot prompt, code run)", samples=tuple(samples)),
            sum(p is not None for p in programs))  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", default=None, help="comma-separated runs files (default: the GSM8K ones)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    args.runs = args.runs or ",".join(committed_runs(DEFAULT_RUNS))
    records = read_runs_files(args.runs)
    cot = [r for r in records if parse_member(r.model).strategy == "cot" and r.model in CODERS]
    with ThreadPoolExecutor(2) as pool:
        scored = [mixed(r, pool) for r in cot]
    with_programs = {m: sum(n for r, n in scored if r.model.startswith(f"{m} ")) for m in CODERS}
    rescored = [dataclasses.replace(r, samples=tuple(
        dataclasses.replace(s, answer=recorded_answer(r.kind, r.model, s, n_choices=r.n_choices, tests=r.tests))
        for s in r.samples)) for r in records]  # fmt: skip
    table = build_table(rescored + [r for r, _ in scored], rescore=False)
    result = search(table, max_models=3)
    members = {m.model: {"one_sample": round(100 * m.accuracy, 1),
                         "majority": round(100 * m.self_consistency[table.k].mean, 1)}
               for m in result.models}  # fmt: skip
    subsets = {" + ".join(s.models): {"mux": round(100 * s.by_k[table.k].mux.mean, 1),
                                      "pooled": round(100 * s.by_k[table.k].pooled.mean, 1),
                                      "oracle": round(100 * s.by_k[table.k].oracle, 1)}
               for s in result.subsets if any(m.startswith("qwen2.5-coder-1.5b") for m in s.models)}  # fmt: skip
    out = {
        "runs": args.runs, "tasks": len(table.tasks), "k": table.k,
        "replies_with_a_program": {m: f"{n} of {len([r for r in cot if r.model == m]) * table.k}"
                                   for m, n in with_programs.items()},
        "members": members,
        "subsets": dict(sorted(subsets.items(), key=lambda kv: -kv[1]["mux"])[:12]),
    }  # fmt: skip
    if args.json:
        print(json.dumps(out, indent=2))
        return
    print(f"{out['tasks']} tasks, k={out['k']}; replies with a program: {out['replies_with_a_program']}")
    for name, m in sorted(members.items()):
        print(f"  {name:28s} one sample {m['one_sample']:5.1f}  majority@{table.k} {m['majority']:5.1f}")
    print(f"  subsets with a 1.5B member, best SLM-MUX@{table.k} first:        MUX  pooled oracle")
    for name, acc in out["subsets"].items():
        print(f"  {name:62s} {acc['mux']:5.1f} {acc['pooled']:6.1f} {acc['oracle']:6.1f}")


if __name__ == "__main__":
    main()
