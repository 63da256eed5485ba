"""What recording every token's logprobs costs (issue 25): ≤ 3 % of decode time at k = 5.

For each model, k samples of one prompt, exactly n tokens each (end-of-generation forbidden), decoded by
the engine three ways, interleaved so that machine noise hits them alike: without logprobs, with each
token's logprob and confidence (``logprobs=0``: what ``ask`` and ``collect`` record), and with the top 20
alternatives as well (``logprobs=20``: the most a server request can ask). Reports the median wall time of
each, the extra share of decode time, and the extra microseconds per generated token. The per-token cost is
also timed alone (``logits.token_logprobs`` on a row of the model's real vocabulary size), which is the
steadier number on a noisy machine.

    python bench/logprob_cost.py --models smollm2-135m,qwen2.5-coder-0.5b,qwen2.5-coder-1.5b -k 5 -n 128 -r 5
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

import numpy as np

from edgemux.catalog import fetch
from edgemux.catalog.catalog import Catalog
from edgemux.engine.engine import Engine, default_threads
from edgemux.engine.logits import token_logprobs
from edgemux.types import Sampling

PROMPT = "Write a long story about a brave dragon who learns to cook. Describe every dish in detail."
WAYS = {"none": None, "logprob+confidence": 0, "top-20": 20}


def decode_seconds(
    engine: Engine, prompt: list[int], sampling: Sampling, seeds: list[int], logprobs: int | None
) -> float:
    start = time.perf_counter()
    for _ in engine.generate(prompt, sampling, seeds, ignore_eos=True, logprobs=logprobs):
        pass
    return time.perf_counter() - start


def per_token_us(n_vocab: int, keep: int, reps: int = 2000) -> float:
    """token_logprobs alone on logits shaped like a real model's (a peaked row, as language models give)."""
    rng = np.random.default_rng(0)
    logits = (rng.standard_normal(n_vocab) * 2.5).astype(np.float32)
    logits[rng.integers(n_vocab, size=5)] += 12.0
    token_logprobs(logits, 1, keep)  # warm-up
    start = time.perf_counter()
    for _ in range(reps):
        token_logprobs(logits, 1, keep)
    return (time.perf_counter() - start) / reps * 1e6


def bench_model(name: str, k: int, n: int, reps: int, threads: int) -> dict[str, object]:
    path = fetch.pull(Catalog().get(name))  # a cached model is used as it is
    with Engine(path, n_ctx=2048, n_seq_max=k, n_threads=threads) as engine:
        prompt = engine.tokenize(engine.render_chat([("user", PROMPT)]))
        sampling = Sampling(temperature=0.7, max_tokens=n)
        seeds = list(range(k))
        decode_seconds(engine, prompt, sampling, seeds, 20)  # warm-up
        times: dict[str, list[float]] = {w: [] for w in WAYS}
        for _ in range(reps):
            for way, logprobs in WAYS.items():
                times[way].append(decode_seconds(engine, prompt, sampling, seeds, logprobs))
        n_vocab = engine.n_vocab
    median = {w: statistics.median(t) for w, t in times.items()}
    tokens = k * n
    return {
        "model": name, "n_vocab": n_vocab, "k": k, "n": n, "reps": reps, "median_s": median,
        "extra_share": {w: median[w] / median["none"] - 1 for w in WAYS if w != "none"},
        "extra_us_per_token": {w: (median[w] - median["none"]) / tokens * 1e6 for w in WAYS if w != "none"},
        "decode_us_per_token": median["none"] / tokens * 1e6,
        "alone_us_per_token": {"logprob+confidence": per_token_us(n_vocab, 0), "top-20": per_token_us(n_vocab, 20)},
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="smollm2-135m,qwen2.5-coder-0.5b,qwen2.5-coder-1.5b")
    parser.add_argument("-k", type=int, default=5)
    parser.add_argument("-n", type=int, default=128, help="tokens generated per sample")
    parser.add_argument("-r", "--reps", type=int, default=5)
    parser.add_argument("--threads", type=int, default=default_threads())
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    results = []
    for name in args.models.split(","):
        print(f"benchmarking {name} (k={args.k}, n={args.n}, {args.reps} reps)...", file=sys.stderr)
        results.append(bench_model(name, args.k, args.n, args.reps, args.threads))
    if args.json:
        print(json.dumps(results, indent=2))
        return
    for r in results:
        alone = r["alone_us_per_token"]
        print(f"\n{r['model']} (vocabulary {r['n_vocab']}): k={r['k']}, {r['n']} tokens each, median of {r['reps']}")
        print(f"  decode without logprobs: {r['decode_us_per_token']:.0f} µs per token")
        for way, share in r["extra_share"].items():  # type: ignore[attr-defined]
            per = alone[way]  # type: ignore[index]
            print(f"  {way:<20} {share:+.1%} of decode time in the run; {per:.0f} µs per token alone "
                  f"= {per / r['decode_us_per_token']:.1%}   target ≤ 3 %")  # type: ignore[operator]  # fmt: skip


if __name__ == "__main__":
    main()
