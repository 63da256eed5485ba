"""The server under load (issue: edgemux serve): 8 concurrent clients for 2 minutes on SmolLM2-135M.

Starts `edgemux serve` on loopback with the real openai client as the load:
  1. sequential: the same kind of request (chat, max_tokens N), one at a time, for --seq-seconds;
  2. concurrent: --clients threads sending those requests back to back for --seconds.
Reports errors by kind (only 429 is allowed), the server's RSS (from /metrics) after warm-up and at the
end (growth must stay under 5 %), and aggregate generated tokens/s concurrent vs sequential (must be ≥ 1).

    python bench/server_soak.py --clients 8 --seconds 120
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter

import openai

PORT = 8799


def rss(url: str) -> int:
    text = urllib.request.urlopen(url + "/metrics", timeout=10).read().decode()
    return int(re.search(r"^edgemux_process_resident_bytes (\d+)", text, re.M).group(1))  # type: ignore[union-attr]


def request(client: openai.OpenAI, i: int, max_tokens: int) -> int:
    r = client.chat.completions.create(
        model="smollm2-135m", messages=[{"role": "user", "content": f"Tell me a fact about the number {i}."}],
        max_tokens=max_tokens, seed=i, temperature=0.8,
    )  # fmt: skip
    return r.usage.completion_tokens  # type: ignore[union-attr]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=120)
    parser.add_argument("--seq-seconds", type=float, default=40)
    parser.add_argument("--max-tokens", type=int, default=64)
    args = parser.parse_args()
    url = f"http://127.0.0.1:{PORT}"
    server = subprocess.Popen(
        [sys.executable, "-m", "edgemux", "serve", "--profile", "tiny", "--port", str(PORT), "--max-queue", "16", "-q"],
        env=os.environ.copy(),
    )
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if json.loads(urllib.request.urlopen(url + "/health", timeout=2).read())["status"] == "ok":
                    break
            except OSError:
                pass
            time.sleep(0.5)
        client = openai.OpenAI(base_url=url + "/v1", api_key="-", max_retries=0, timeout=120)
        for i in range(3):  # warm-up
            request(client, i, args.max_tokens)

        tokens, start, i = 0, time.monotonic(), 0
        while time.monotonic() - start < args.seq_seconds:
            tokens += request(client, i, args.max_tokens)
            i += 1
        sequential = tokens / (time.monotonic() - start)

        rss_start = rss(url)
        outcomes: Counter[str] = Counter()
        produced = [0] * args.clients
        lock = threading.Lock()
        stop_at = time.monotonic() + args.seconds
        samples = []

        def client_loop(c: int) -> None:
            own = openai.OpenAI(base_url=url + "/v1", api_key="-", max_retries=0, timeout=120)
            n = 0
            while time.monotonic() < stop_at:
                try:
                    produced[c] += request(own, 1000 * c + n, args.max_tokens)
                    kind = "ok"
                except openai.RateLimitError:
                    kind = "429"
                    time.sleep(0.5)
                except Exception as e:  # noqa: BLE001 - counted and reported
                    kind = type(e).__name__
                with lock:
                    outcomes[kind] += 1
                n += 1

        threads = [threading.Thread(target=client_loop, args=(c,)) for c in range(args.clients)]
        started = time.monotonic()
        for t in threads:
            t.start()
        while any(t.is_alive() for t in threads):
            time.sleep(5)
            samples.append(rss(url))
        for t in threads:
            t.join()
        concurrent = sum(produced) / (time.monotonic() - started)
        rss_end = rss(url)
        errors = {k: v for k, v in outcomes.items() if k not in ("ok", "429")}
        out = {
            "clients": args.clients, "seconds": args.seconds, "max_tokens": args.max_tokens,
            "outcomes": dict(outcomes), "errors_other_than_429": sum(errors.values()),
            "rss_after_warmup": rss_start, "rss_end": rss_end, "rss_peak": max(samples or [rss_end]),
            "rss_growth": rss_end / rss_start - 1,
            "sequential_tokens_per_s": sequential, "concurrent_tokens_per_s": concurrent,
            "concurrent_vs_sequential": concurrent / sequential,
        }  # fmt: skip
        print(json.dumps(out, indent=2))
    finally:
        server.terminate()
        server.wait(timeout=30)


if __name__ == "__main__":
    main()
