"""Sandbox cost per program-of-thought sample (issue: members that reason differently): the sandbox must
add at most 150 ms per sample, as the median over real recorded programs.

Each recorded program (bench/runs/*-pot-*.jsonl[.gz]) is run three ways, interleaved so that drift on a
shared machine hits all of them alike: in the sandbox (what `ask` does), as a bare `python -I -c` subprocess
(what running a program costs at all), and in the sandbox with the namespaces and syscall filter off (what
the confinement itself adds: namespaces, the allow-list root, nobody, the filter). Prints medians and the ratio; --json for RESULTS.

    python bench/sandbox_overhead.py [--runs bench/runs/gsm8k-dev-pot-k5.jsonl.gz] [--programs 100]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from edgemux import sandbox
from edgemux.answers.code import extract_program
from edgemux.sandbox import runner
from edgemux.sandbox.confine import Level
from edgemux.selection.runs import read_runs_files

HERE = Path(__file__).parent


def default_runs() -> str:
    for name in ("gsm8k-dev-pot-k5.jsonl", "gsm8k-dev-pot-k5.jsonl.gz"):
        if (HERE / "runs" / name).exists():
            return str(HERE / "runs" / name)
    raise SystemExit("no program-of-thought runs under bench/runs (run bench/collect_runs.sh first)")


def bare(program: str) -> float:
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        try:
            subprocess.run([sys.executable, "-I", "-c", program], cwd=tmp, capture_output=True, timeout=5)
        except subprocess.TimeoutExpired:
            pass
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", default=None)
    parser.add_argument("--programs", type=int, default=100)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    programs = []
    for record in read_runs_files(args.runs or default_runs()):
        for s in record.samples:
            program = extract_program(s.text)
            if program is not None and s.program is not None and s.program.ok:  # programs that ran to the end
                programs.append((program, s.program.stdout))
    programs = programs[: args.programs]
    if not programs:
        raise SystemExit("no recorded programs that ran cleanly in those runs")
    unconfined_level = Level(namespaces=False, user_namespace=False, seccomp=False, nobody=False)
    confined, unconfined, plain = [], [], []
    same = 0  # programs that print what they printed when recorded: the allow-list root lacks nothing they use
    for program, recorded in programs:
        start = time.perf_counter()
        same += sandbox.run_python(program).stdout == recorded
        confined.append(time.perf_counter() - start)
        start = time.perf_counter()
        runner._launch(program, sandbox.Limits(), unconfined_level)
        unconfined.append(time.perf_counter() - start)
        plain.append(bare(program))
    row = {
        "programs": len(programs),
        "isolation": sandbox.isolation(),
        "level": runner._confinement().name,
        "same_output_as_recorded": same,
        "sandbox_median_ms": 1000 * statistics.median(confined),
        "sandbox_p90_ms": 1000 * statistics.quantiles(confined, n=10)[-1] if len(confined) > 1 else None,
        "limits_only_median_ms": 1000 * statistics.median(unconfined),
        "bare_subprocess_median_ms": 1000 * statistics.median(plain),
        "ratio_sandbox_to_bare": statistics.median(confined) / statistics.median(plain),
    }
    if args.json:
        print(json.dumps(row, indent=2))
        return
    print(f"{row['programs']} recorded programs, {row['level']}, isolation {row['isolation']}")
    print(f"  {same} of {row['programs']} print what they printed when recorded")
    print(
        f"  sandbox (every sample of a pot member):   median {row['sandbox_median_ms']:.0f} ms, p90 {row['sandbox_p90_ms']:.0f} ms"
    )
    print(f"  limits only (no namespaces, root, no filter):  median {row['limits_only_median_ms']:.0f} ms")
    print(f"  bare python -I subprocess:                median {row['bare_subprocess_median_ms']:.0f} ms")
    print(f"  sandbox / bare: {row['ratio_sandbox_to_bare']:.2f}x  (target: the sandbox adds <= 150 ms per sample)")


if __name__ == "__main__":
    main()
