"""What the live view costs `edgemux ask` (issue: one runtime, target ≤ 1.03×).

Side by side in one run, rounds interleaved: `edgemux ask` with its live view (stdout and stderr on a
pseudo-terminal, so the view is drawn as it is for a user) against `edgemux ask -q` on the same
pseudo-terminal, same profile, same seed (so the same samples: equal decode work). Prints each one's
median wall time over the rounds and the ratio; pause other jobs first (timings on a shared CPU drift).

    python bench/live_view_overhead.py --profile tiny -k 5 --max-tokens 200 --rounds 7
"""

from __future__ import annotations

import argparse
import json
import os
import pty
import statistics
import subprocess
import sys
import time
from pathlib import Path

QUESTION = "Tom has 3 boxes of 12 pencils and gives away 7 pencils. How many pencils does he have left?"


def run_on_pty(args: list[str]) -> tuple[float, int]:
    """Seconds the command takes with stdout and stderr on a fresh pseudo-terminal (its output drained)."""
    leader, follower = pty.openpty()
    start = time.perf_counter()
    proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=follower, stderr=follower, close_fds=True,
                            env={**os.environ, "COLUMNS": "120", "TERM": "xterm-256color"})  # fmt: skip
    os.close(follower)
    while True:  # drain, or the child blocks on a full terminal buffer
        try:
            if not os.read(leader, 65536):
                break
        except OSError:  # EIO: the child closed its side
            break
    code = proc.wait()
    elapsed = time.perf_counter() - start
    os.close(leader)
    return elapsed, code


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", default="tiny")
    parser.add_argument("-k", type=int, default=5)
    parser.add_argument("--max-tokens", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "runs" / "live_view_overhead.json")
    args = parser.parse_args()
    base = [sys.executable, "-m", "edgemux", "ask", "--profile", args.profile, "-k", str(args.k),
            "--max-tokens", str(args.max_tokens), "--temperature", "0.7", "--seed", "11"]  # fmt: skip
    live_cmd, quiet_cmd = [*base, QUESTION], [*base, "-q", QUESTION]
    run_on_pty(quiet_cmd)  # warm-up: page the model in
    times: dict[str, list[float]] = {"live": [], "quiet": []}
    for r in range(args.rounds):
        order = [("live", live_cmd), ("quiet", quiet_cmd)]
        for name, cmd in order if r % 2 == 0 else order[::-1]:
            seconds, code = run_on_pty(cmd)
            if code != 0:
                sys.exit(f"{name} run exited {code}: {' '.join(cmd)}")
            times[name].append(seconds)
        print(f"round {r + 1}: live {times['live'][-1]:.2f} s, quiet {times['quiet'][-1]:.2f} s", flush=True)
    live, quiet = statistics.median(times["live"]), statistics.median(times["quiet"])
    result = {"profile": args.profile, "k": args.k, "max_tokens": args.max_tokens, "rounds": args.rounds,
              "live_s": times["live"], "quiet_s": times["quiet"], "median_live_s": live, "median_quiet_s": quiet,
              "ratio": live / quiet}  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"live view {live:.2f} s, quiet {quiet:.2f} s (medians of {args.rounds}): ratio {live / quiet:.3f}")


if __name__ == "__main__":
    main()
