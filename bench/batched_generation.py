"""k samples of one prompt, three ways, side by side in one run (issue: `edgemux ask` performance).

(a) edgemux: Engine.generate — prompt evaluated once, k sequences decoded as one llama_batch per step.
(b) llama-cpp-python as users run it today: k sequential ``Llama.create_completion`` calls, one seed each.
    ``Llama`` reuses the KV cache of a matching prompt prefix between calls, so we also time
    (b-cold): the same calls after ``Llama.reset()``, where the prompt really is evaluated k times.
(c) a minimal raw llama.cpp batched loop over the same ctypes API, with the same sampler chain and no text
    handling: the floor the runtime's own overhead is measured against.

Every method generates exactly n tokens per sample (end-of-generation tokens are forbidden, as
llama-bench does), from the same prompt tokens, with the same sampling settings and threads. Repetitions
are interleaved (a, b, b-cold, c, a, b, ...) so machine noise hits all methods alike; the median is
reported. Throughput counts generated tokens over wall time including prompt evaluation.

    python bench/batched_generation.py --models smollm2-135m,qwen2.5-coder-0.5b -k 5 -n 128 -r 3
"""

from __future__ import annotations

import argparse
import ctypes
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import llama_cpp

from edgemux.catalog import fetch
from edgemux.catalog.catalog import Catalog
from edgemux.engine.engine import Engine, default_threads
from edgemux.engine.llama import library_llama, model_params
from edgemux.types import Sampling

PROMPT = "Write a long story about a brave dragon who learns to cook. Describe every dish in detail."


def method_edgemux(engine: Engine, prompt: list[int], sampling: Sampling, seeds: list[int]) -> int:
    tokens = 0
    for step in engine.generate(prompt, sampling, seeds, ignore_eos=True):
        tokens = sum(step.tokens)
    return tokens


def method_llama(
    llm: llama_cpp.Llama, prompt: list[int], sampling: Sampling, seeds: list[int], eog: list[int], cold: bool
) -> int:
    tokens = 0
    for seed in seeds:
        if cold:
            llm.reset()  # forget the cached prompt: it is evaluated again, once per sample
        out = llm.create_completion(
            prompt, max_tokens=sampling.max_tokens, temperature=sampling.temperature, top_p=sampling.top_p,
            top_k=sampling.top_k, min_p=sampling.min_p, seed=seed, logit_bias={t: float("-inf") for t in eog},
        )  # fmt: skip
        tokens += out["usage"]["completion_tokens"]
    return tokens


class RawLoop:
    """The shortest correct batched k-sequence loop over llama.cpp's C API (what llama-batched does)."""

    def __init__(self, path: Path, n_ctx: int, k: int, threads: int) -> None:
        self.model = llama_cpp.llama_model_load_from_file(str(path).encode(), model_params())
        params = llama_cpp.llama_context_default_params()
        params.n_ctx, params.n_batch, params.n_ubatch, params.n_seq_max = n_ctx, 512, 512, k
        params.n_threads = params.n_threads_batch = threads
        params.kv_unified, params.no_perf = True, True
        self.ctx = llama_cpp.llama_init_from_model(self.model, params)
        self.vocab = llama_cpp.llama_model_get_vocab(self.model)
        self.n_vocab = llama_cpp.llama_vocab_n_tokens(self.vocab)
        self.eog = [t for t in range(self.n_vocab) if llama_cpp.llama_vocab_is_eog(self.vocab, t)]
        self.batch = llama_cpp.llama_batch_init(512, 0, k)

    def sampler(self, s: Sampling, seed: int) -> ctypes.c_void_p:
        chain = llama_cpp.llama_sampler_chain_init(llama_cpp.llama_sampler_chain_default_params())
        biases = (llama_cpp.llama_logit_bias * len(self.eog))(
            *[llama_cpp.llama_logit_bias(t, float("-inf")) for t in self.eog]
        )
        for smpl in (
            llama_cpp.llama_sampler_init_logit_bias(self.n_vocab, len(self.eog), biases),
            llama_cpp.llama_sampler_init_top_k(s.top_k), llama_cpp.llama_sampler_init_top_p(s.top_p, 1),
            llama_cpp.llama_sampler_init_min_p(s.min_p, 1), llama_cpp.llama_sampler_init_temp(s.temperature),
            llama_cpp.llama_sampler_init_dist(seed),
        ):  # fmt: skip
            llama_cpp.llama_sampler_chain_add(chain, smpl)
        return chain

    def run(self, prompt: list[int], s: Sampling, seeds: list[int]) -> int:
        k, b = len(seeds), self.batch
        llama_cpp.llama_memory_clear(llama_cpp.llama_get_memory(self.ctx), True)
        samplers = [self.sampler(s, seed) for seed in seeds]
        for i, tok in enumerate(prompt):
            b.token[i], b.pos[i], b.n_seq_id[i], b.logits[i] = tok, i, k, i == len(prompt) - 1
            for j in range(k):
                b.seq_id[i][j] = j
        b.n_tokens = len(prompt)
        llama_cpp.llama_decode(self.ctx, b)
        idx = [len(prompt) - 1] * k
        for step in range(s.max_tokens):
            toks = [llama_cpp.llama_sampler_sample(samplers[j], self.ctx, idx[j]) for j in range(k)]
            if step == s.max_tokens - 1:
                break
            for j, tok in enumerate(toks):
                b.token[j], b.pos[j], b.n_seq_id[j], b.logits[j] = tok, len(prompt) + step, 1, True
                b.seq_id[j][0] = j
                idx[j] = j
            b.n_tokens = k
            llama_cpp.llama_decode(self.ctx, b)
        for smpl in samplers:
            llama_cpp.llama_sampler_free(smpl)
        return k * s.max_tokens

    def close(self) -> None:
        llama_cpp.llama_batch_free(self.batch)
        llama_cpp.llama_free(self.ctx)
        llama_cpp.llama_model_free(self.model)


def bench_model(name: str, k: int, n: int, reps: int, threads: int) -> dict[str, object]:
    spec = Catalog().get(name)
    path = fetch.pull(spec)
    sampling = Sampling(k=k, temperature=0.7, max_tokens=n)
    seeds = list(range(1, k + 1))
    engine = Engine(path, n_ctx=1024, n_seq_max=k, n_threads=threads)
    prompt = engine.tokenize(engine.render_chat([("user", PROMPT)]))
    n_ctx = len(prompt) + k * n + 16
    engine.close()
    engine = Engine(path, n_ctx=n_ctx, n_seq_max=k, n_threads=threads)
    llm = library_llama(
        str(path), n_ctx=len(prompt) + n + 16, n_threads=threads, n_threads_batch=threads, verbose=False
    )
    raw = RawLoop(path, n_ctx, k, threads)
    methods: dict[str, Callable[[], int]] = {
        "a edgemux batched": lambda: method_edgemux(engine, prompt, sampling, seeds),
        "b llama-cpp-python x k": lambda: method_llama(llm, prompt, sampling, seeds, raw.eog, cold=False),
        "b-cold (prompt re-evaluated)": lambda: method_llama(llm, prompt, sampling, seeds, raw.eog, cold=True),
        "c raw llama.cpp batch": lambda: raw.run(prompt, sampling, seeds),
    }
    for run in methods.values():  # warm-up: page in the weights, build the graphs
        run()
    rates: dict[str, list[float]] = {m: [] for m in methods}
    for _ in range(reps):
        for m, run in methods.items():
            start = time.perf_counter()
            tokens = run()
            seconds = time.perf_counter() - start
            if tokens != k * n:
                raise SystemExit(f"{m} generated {tokens} tokens, expected {k * n}")
            rates[m].append(tokens / seconds)
    engine.close()
    raw.close()
    llm.close()
    medians = {m: statistics.median(r) for m, r in rates.items()}
    return {
        "model": name,
        "prompt_tokens": len(prompt),
        "k": k,
        "n": n,
        "reps": reps,
        "tokens_per_s": medians,
        "all_runs": rates,
        "a_over_b": medians["a edgemux batched"] / medians["b llama-cpp-python x k"],
        "a_over_b_cold": medians["a edgemux batched"] / medians["b-cold (prompt re-evaluated)"],
        "a_over_c": medians["a edgemux batched"] / medians["c raw llama.cpp batch"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="smollm2-135m,qwen2.5-coder-0.5b")
    parser.add_argument("-k", type=int, default=5)
    parser.add_argument("-n", type=int, default=128, help="tokens generated per sample")
    parser.add_argument("-r", "--reps", type=int, default=3)
    parser.add_argument("--threads", type=int, default=default_threads())
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    results = []
    for name in args.models.split(","):
        print(
            f"benchmarking {name} (k={args.k}, n={args.n}, {args.reps} reps, {args.threads} threads)...",
            file=sys.stderr,
        )
        results.append(bench_model(name, args.k, args.n, args.reps, args.threads))
    if args.json:
        print(json.dumps(results, indent=2))
        return
    for r in results:
        print(
            f"\n{r['model']}: prompt {r['prompt_tokens']} tokens, k={r['k']}, {r['n']} tokens per sample, median of {r['reps']}"
        )
        print(f"  {'method':<32} {'tok/s':>8}")
        for m, v in r["tokens_per_s"].items():  # type: ignore[union-attr]
            print(f"  {m:<32} {v:8.1f}")
        print(f"  (a)/(b)      = {r['a_over_b']:.2f}   target >= 1.2")
        print(f"  (a)/(b-cold) = {r['a_over_b_cold']:.2f}")
        print(f"  (a)/(c)      = {r['a_over_c']:.2f}   target >= 0.9")


if __name__ == "__main__":
    main()
