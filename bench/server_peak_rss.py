"""Peak memory of `edgemux serve` under the largest requests its API accepts (issue: one runtime — the
budget is a contract). Target: the server's peak RSS ≤ its RSS before any model was loaded + the budget
+ 5 %, so that every byte a model and its context take was granted by the resident set.

Starts `edgemux serve` on loopback with a budget that holds one of two models at a time (SmolLM2-135M and
Qwen2.5-Coder-0.5B), then sends, with the real openai client, the largest requests each model accepts:
n = --max-sequences samples that together fill the KV cells (--n-ctx), alternating models so that every
request evicts the other model first. Reads the process's peak RSS from /metrics
(edgemux_process_peak_resident_bytes) and prints the ratio; --json for RESULTS.

    python bench/server_peak_rss.py [--n-ctx 2048] [--max-sequences 8] [--rounds 2]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
import urllib.request

import openai

PORT = 8798
MODELS = ("smollm2-135m", "qwen2.5-coder-0.5b")


def metric(url: str, name: str) -> int:
    text = urllib.request.urlopen(url + "/metrics", timeout=10).read().decode()
    return int(re.search(rf"^{name} (\d+)", text, re.M).group(1))  # type: ignore[union-attr]


def wait_ready(url: str, server: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and server.poll() is None:
        try:
            if json.loads(urllib.request.urlopen(url + "/health", timeout=2).read())["status"] == "ok":
                return
        except OSError:
            pass
        time.sleep(0.5)
    raise SystemExit("the server did not become ready (see its log above)")


def start(args: argparse.Namespace, url: str) -> subprocess.Popen[bytes]:
    server = subprocess.Popen(
        [sys.executable, "-m", "edgemux", "serve", "--profile", "tiny", "--port", str(PORT), "-q",
         "--budget", args.budget, "--n-ctx", str(args.n_ctx), "--max-sequences", str(args.max_sequences)],
        env=os.environ.copy(),
    )  # fmt: skip
    wait_ready(url, server)
    return server


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n-ctx", type=int, default=2048)
    parser.add_argument("--max-sequences", type=int, default=8)
    parser.add_argument("--budget", default="900MiB", help="holds one of the two models with its context")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    url = f"http://127.0.0.1:{PORT}"
    server = start(args, url)
    try:
        budget = metric(url, "edgemux_budget_bytes")
        client = openai.OpenAI(base_url=url + "/v1", api_key="-", max_retries=0, timeout=600)
        # the largest request: n = max sequences, their tokens filling the cells (the prompt takes a few)
        max_tokens = args.n_ctx // args.max_sequences - 16
        served = []
        for r in range(args.rounds):
            for model in MODELS:
                started = time.perf_counter()
                reply = client.completions.create(model=model, prompt="Tell me a long story.", n=args.max_sequences,
                                                  max_tokens=max_tokens, temperature=1.0, seed=r)  # fmt: skip
                served.append({"model": model, "n": len(reply.choices), "tokens": reply.usage.completion_tokens,  # type: ignore[union-attr]
                               "seconds": round(time.perf_counter() - started, 1),
                               "peak": metric(url, "edgemux_process_peak_resident_bytes")})  # fmt: skip
                if not args.json:
                    print(
                        f"  {model}: n={len(reply.choices)} × ≤{max_tokens} tokens, peak RSS {served[-1]['peak'] / 2**20:.0f} MiB"
                    )
        peak = metric(url, "edgemux_process_peak_resident_bytes")
    finally:
        server.terminate()
        server.wait(timeout=60)
    baseline = no_model_peak(args, url)
    out = {
        "n_ctx": args.n_ctx, "max_sequences": args.max_sequences, "max_tokens": max_tokens, "requests": served,
        "budget_bytes": budget, "no_model_peak_bytes": baseline, "peak_bytes": peak,
        "peak_above_idle_bytes": peak - baseline, "ratio_to_budget": round((peak - baseline) / budget, 3),
    }  # fmt: skip
    if args.json:
        print(json.dumps(out, indent=2))
    else:
        print(f"peak RSS {peak / 2**20:.0f} MiB = no models {baseline / 2**20:.0f} MiB + {(peak - baseline) / 2**20:.0f} MiB; "
              f"budget {budget / 2**20:.0f} MiB: {out['ratio_to_budget']:.3f}× the budget (target ≤ 1.05)")  # fmt: skip


def no_model_peak(args: argparse.Namespace, url: str) -> int:
    """The peak RSS of a server started the same way that has answered nothing but /metrics, less the
    preloaded profile's model (the tiny profile preloads SmolLM2): the process before any model."""
    server = start(args, url)
    try:
        text = urllib.request.urlopen(url + "/metrics", timeout=10).read().decode()
        models = sum(int(n) for n in re.findall(r"^edgemux_resident_bytes\{[^}]*\} (\d+)", text, re.M))
        return metric(url, "edgemux_process_peak_resident_bytes") - models
    finally:
        server.terminate()
        server.wait(timeout=60)


if __name__ == "__main__":
    main()
