"""Estimate vs measured resident bytes, per model and k (issue: memory budget and scheduler).

For each model and each k, a fresh subprocess loads the model with the context edgemux would give it
(cells = n_ctx + (k - 1) x max_tokens), draws k samples of a few tokens (so every buffer is touched), and
reports how much its RSS grew. The estimate comes from the GGUF header alone. Target: every ratio within
+-15 %.

    python bench/memory_estimate.py --models smollm2-135m,gemma3-270m,qwen2.5-coder-0.5b,qwen2.5-coder-1.5b
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

from edgemux.catalog import fetch
from edgemux.catalog.catalog import Catalog
from edgemux.catalog.gguf import read_header
from edgemux.memory.memory import ModelShape, estimate, format_bytes, kv_cells

CHILD = r"""
import json, os, sys
from edgemux.engine.engine import Engine
from edgemux.memory.osmemory import rss_bytes as rss
from edgemux.types import Sampling
path, cells, k = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
before = rss()
with Engine(path, n_ctx=cells, n_seq_max=k, n_threads=2) as e:
    prompt = e.tokenize("Question: What is 2 + 2?\nAnswer:")
    for _ in e.generate(prompt, Sampling(temperature=0.7, max_tokens=4), list(range(k))):
        pass
    print(json.dumps({"measured": rss() - before, "engine_reported": e.measured_nbytes}))
"""


def measure(path: str, cells: int, k: int) -> dict[str, int]:
    out = subprocess.run(
        [sys.executable, "-c", CHILD, path, str(cells), str(k)], capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="smollm2-135m,gemma3-270m,qwen2.5-coder-0.5b,qwen2.5-coder-1.5b")
    parser.add_argument("-k", default="1,3,5")
    parser.add_argument("--n-ctx", type=int, default=2048)
    parser.add_argument("--max-tokens", type=int, default=384)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if not sys.platform.startswith("linux"):
        raise SystemExit("this benchmark reads RSS from /proc (Linux)")
    rows = []
    for name in args.models.split(","):
        path = fetch.pull(Catalog().get(name))
        shape = ModelShape.from_header(read_header(path))
        for k in (int(x) for x in args.k.split(",")):
            cells = kv_cells(args.n_ctx, k, args.max_tokens)
            est = estimate(name, shape, cells=cells, k=k)
            got = measure(str(path), cells, k)
            rows.append({
                "model": name, "k": k, "cells": cells, "estimate": est.total_bytes, "measured": got["measured"],
                "engine_reported": got["engine_reported"], "ratio": est.total_bytes / got["measured"],
                "weights": est.weights_bytes, "kv": est.kv_bytes, "compute": est.compute_bytes, "other": est.other_bytes,
            })  # fmt: skip
            print(
                f"  {name} k={k}: estimate {format_bytes(est.total_bytes)}, measured {format_bytes(got['measured'])}",
                file=sys.stderr,
            )
    worst = max(rows, key=lambda r: abs(r["ratio"] - 1))
    if args.json:
        print(json.dumps({"rows": rows, "worst_ratio": worst["ratio"]}, indent=2))
        return
    print(
        f"\n{'model':<20} {'k':>2} {'cells':>6} {'weights':>10} {'KV':>9} {'compute':>9} {'other':>8} {'estimate':>10} {'measured':>10} {'est/meas':>8}"
    )
    for r in rows:
        print(f"{r['model']:<20} {r['k']:>2} {r['cells']:>6} {format_bytes(r['weights']):>10} {format_bytes(r['kv']):>9} "
              f"{format_bytes(r['compute']):>9} {format_bytes(r['other']):>8} {format_bytes(r['estimate']):>10} "
              f"{format_bytes(r['measured']):>10} {r['ratio']:>8.3f}")  # fmt: skip
    print(f"\nworst ratio: {worst['ratio']:.3f} ({worst['model']}, k={worst['k']}); target within 0.85-1.15")


if __name__ == "__main__":
    main()
