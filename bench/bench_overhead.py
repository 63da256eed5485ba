"""Does `edgemux bench` measure what llama.cpp delivers? (issue: eval and bench)

tg<N> for one sequence, side by side in one run, repetitions interleaved:
  (a) edgemux bench's measurement (benchmark.run_throughput's tg: Engine.generate, greedy, EOS forbidden);
  (b) llama-cpp-python's own ``Llama`` generating the same number of tokens from the same one-token prompt
      (``create_completion``, greedy, EOS forbidden by logit_bias), timed the same way.
Target: (a) within 10 % of (b). Prints each method's tokens/s (median and all runs) and the ratio.

    python bench/bench_overhead.py --models smollm2-135m,qwen2.5-coder-0.5b -n 128 -r 5
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import llama_cpp

from edgemux.catalog import fetch
from edgemux.catalog.catalog import Catalog
from edgemux.engine.engine import Engine, default_threads
from edgemux.engine.llama import library_llama
from edgemux.measure.benchmark import random_prompt
from edgemux.types import Sampling


def edgemux_tg(engine: Engine, prompt: list[int], n: int) -> float:
    start = time.perf_counter()
    for _ in engine.generate(prompt, Sampling(k=1, max_tokens=n, temperature=0.0), [0], ignore_eos=True):
        pass
    return n / (time.perf_counter() - start)


def llama_tg(llm: llama_cpp.Llama, prompt: list[int], n: int, eog: list[int]) -> float:
    llm.reset()
    start = time.perf_counter()
    out = llm.create_completion(prompt, max_tokens=n, temperature=0.0, logit_bias={t: float("-inf") for t in eog})
    elapsed = time.perf_counter() - start
    assert out["usage"]["completion_tokens"] == n, out["usage"]
    return n / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="smollm2-135m,qwen2.5-coder-0.5b")
    parser.add_argument("-n", type=int, default=128)
    parser.add_argument("-r", type=int, default=5)
    parser.add_argument("--threads", type=int, default=default_threads())
    args = parser.parse_args()
    catalog = Catalog()
    results = []
    for name in args.models.split(","):
        spec = catalog.get(name)
        path = fetch.pull(spec)
        engine = Engine(path, n_ctx=args.n + 16, n_seq_max=1, n_threads=args.threads)
        llm = library_llama(
            str(path), n_ctx=args.n + 16, n_threads=args.threads, n_threads_batch=args.threads, verbose=False
        )
        vocab = llm._model.vocab  # noqa: SLF001 - the model's end-of-generation ids, to forbid them
        eog = [t for t in range(llm.n_vocab()) if llama_cpp.llama_vocab_is_eog(vocab, t)]
        prompt = random_prompt(engine, 1, seed=1)
        edgemux_tg(engine, prompt, 16), llama_tg(llm, prompt, 16, eog)  # warm-up both
        a, b = [], []
        for _ in range(args.r):
            a.append(edgemux_tg(engine, prompt, args.n))
            b.append(llama_tg(llm, prompt, args.n, eog))
        engine.close()
        del llm
        row = {"model": name, "n": args.n, "threads": args.threads, "edgemux_tg": statistics.median(a),
               "llama_tg": statistics.median(b), "ratio": statistics.median(a) / statistics.median(b), "runs": {"edgemux": a, "llama": b}}  # fmt: skip
        print(
            f"{name}: tg{args.n} edgemux {row['edgemux_tg']:.1f} t/s, Llama {row['llama_tg']:.1f} t/s, ratio {row['ratio']:.3f}"
        )
        results.append(row)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
