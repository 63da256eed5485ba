"""What comparing MATH answers by meaning costs (issue: confidence you can act on): math-verify's parse per
distinct answer, on every answer of the recorded MATH runs, and how many votes and scores it changes
against comparing normalised strings.

    python bench/math_equivalence.py [--runs bench/runs/math-dev-k5.jsonl.gz]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

from edgemux.answers.equivalence import math_key
from edgemux.answers.extract import canonical_reference
from edgemux.answers.members import recorded_answer
from edgemux.selection.runs import read_runs_files

HERE = Path(__file__).parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", default=str(HERE / "runs" / "math-dev-k5.jsonl.gz"))
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    records = read_runs_files(args.runs)
    answers, references = [], {}
    for r in records:
        references[r.task] = canonical_reference("math", r.reference or "")
        answers += [(r.task, recorded_answer("math", r.model, s, n_choices=None, tests=None)) for s in r.samples]
    distinct = sorted({a for _, a in answers if a is not None} | {a for a in references.values() if a})
    math_key("1")  # the parser's import and first parse are paid once per process
    times = []
    for a in distinct:
        start = time.perf_counter()
        math_key(a)
        times.append(time.perf_counter() - start)
    by_string = sum(1 for t, a in answers if a is not None and a == references[t])
    by_meaning = sum(
        1 for t, a in answers if a is not None and references[t] and math_key(a) == math_key(references[t])
    )
    out = {
        "samples": len(answers), "distinct_answers": len(distinct),
        "parse_ms_median": 1000 * statistics.median(times), "parse_ms_p90": 1000 * statistics.quantiles(times, n=10)[-1],
        "parse_s_total": sum(times), "right_by_string": by_string, "right_by_meaning": by_meaning,
    }  # fmt: skip
    if args.json:
        print(json.dumps(out, indent=2))
        return
    print(f"{out['samples']} samples, {out['distinct_answers']} distinct answers: parse median {out['parse_ms_median']:.1f} ms, "
          f"p90 {out['parse_ms_p90']:.1f} ms, {out['parse_s_total']:.1f} s in all (each distinct answer once)")  # fmt: skip
    print(f"samples equal to the reference: {by_string} as strings, {by_meaning} by meaning")


if __name__ == "__main__":
    main()
