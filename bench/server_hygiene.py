"""The server left running (issue 24): hostile model names, and SIGTERM with a request in flight.

Starts `edgemux serve --profile tiny` on loopback and measures, in one run:
  1. hostile names: /metrics size and the server's RSS after warm-up, then after --requests requests whose
     model name is hostile (half 500 KB names with newlines, quotes and a trailing backslash; half distinct
     well-formed names that no member has). Target: both unchanged within 5 %; /metrics still parses.
  2. drain: a second server with `--grace G`; one streaming request that would run far longer than G; SIGTERM
     after its first tokens. Target: the process exits within G + 2 s and the client gets an error event.

    python bench/server_hygiene.py --requests 200 --grace 3
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

import openai

PORT = 8797
PROMETHEUS_LINE = re.compile(r'^(#.*|[a-zA-Z_:][a-zA-Z0-9_:]*(\{([a-zA-Z_]+="([^"\\\n]|\\.)*",?)*\})? \S+)$')


def start(port: int, *extra: str) -> subprocess.Popen[bytes]:
    server = subprocess.Popen(
        [sys.executable, "-m", "edgemux", "serve", "--profile", "tiny", "--port", str(port), "-q", *extra],
        env=os.environ.copy(),
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if (
                json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2).read())["status"]
                == "ok"
            ):
                return server
        except OSError:
            pass
        time.sleep(0.5)
    server.kill()
    raise SystemExit("the server did not become ready in 120 s")


def metrics(url: str) -> tuple[int, int, int]:
    """(bytes of /metrics, resident bytes, lines that break the Prometheus text format)."""
    text = urllib.request.urlopen(url + "/metrics", timeout=10).read().decode()
    rss = int(re.search(r"^edgemux_process_resident_bytes (\d+)", text, re.M).group(1))  # type: ignore[union-attr]
    bad = sum(1 for line in text.splitlines() if line and not PROMETHEUS_LINE.match(line))
    return len(text.encode()), rss, bad


def hostile_name(i: int) -> str:
    if i % 2:
        return f"member-{i}-that-does-not-exist"
    return 'x\nedgemux_injected{a="1"} 1\n' + '"' * 10 + "y" * 500_000 + "\\"


def post(url: str, model: str) -> int:
    body = json.dumps({"model": model, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}).encode()
    req = urllib.request.Request(url + "/v1/chat/completions", body, {"Content-Type": "application/json"})
    try:
        return urllib.request.urlopen(req, timeout=30).status
    except urllib.error.HTTPError as e:
        return e.code


def hostile_names(requests: int) -> dict[str, object]:
    url = f"http://127.0.0.1:{PORT}"
    server = start(PORT)
    try:
        client = openai.OpenAI(base_url=url + "/v1", api_key="-", max_retries=0, timeout=120)
        for i in range(3):  # warm-up: the label sets a real member keeps
            client.chat.completions.create(
                model="smollm2-135m", messages=[{"role": "user", "content": f"Count to {i}."}], max_tokens=8
            )
            post(url, hostile_name(i))
        size_before, rss_before, _ = metrics(url)
        statuses: dict[int, int] = {}
        for i in range(requests):
            code = post(url, hostile_name(i))
            statuses[code] = statuses.get(code, 0) + 1
        size_after, rss_after, bad_lines = metrics(url)
        return {
            "requests": requests, "statuses": statuses,
            "metrics_bytes_before": size_before, "metrics_bytes_after": size_after,
            "metrics_growth": size_after / size_before - 1,
            "rss_before": rss_before, "rss_after": rss_after, "rss_growth": rss_after / rss_before - 1,
            "malformed_metric_lines": bad_lines,
        }  # fmt: skip
    finally:
        server.terminate()
        server.wait(timeout=30)


def drain(grace: float) -> dict[str, object]:
    url = f"http://127.0.0.1:{PORT + 1}"
    server = start(PORT + 1, "--grace", str(grace))
    client = openai.OpenAI(base_url=url + "/v1", api_key="-", max_retries=0, timeout=120)
    seen: dict[str, object] = {"chunks": 0, "error": None}
    first_token = threading.Event()

    def stream() -> None:
        try:
            chunks = client.chat.completions.create(
                model="smollm2-135m", stream=True, max_tokens=1500, temperature=0.8, seed=1,
                messages=[{"role": "user", "content": "Write a very long story about a lighthouse keeper."}],
            )  # fmt: skip
            for _ in chunks:
                seen["chunks"] = int(seen["chunks"]) + 1  # type: ignore[call-overload]
                first_token.set()
        except Exception as e:  # noqa: BLE001 - the error the client sees is the measurement
            seen["error"] = f"{type(e).__name__}: {e}"[:300]
        first_token.set()

    thread = threading.Thread(target=stream)
    thread.start()
    first_token.wait(timeout=120)
    sent = time.monotonic()
    server.send_signal(signal.SIGTERM)
    try:
        code = server.wait(timeout=grace + 30)
    except subprocess.TimeoutExpired:
        server.kill()
        code = None
    exited_after = time.monotonic() - sent
    thread.join(timeout=30)
    return {
        "grace_s": grace, "exit_code": code, "exited_after_s": round(exited_after, 2),
        "within_grace_plus_2": exited_after <= grace + 2, "chunks_before_end": seen["chunks"],
        "client_error": seen["error"], "stream_still_open": thread.is_alive(),
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--grace", type=float, default=3.0)
    args = parser.parse_args()
    print(json.dumps({"hostile_names": hostile_names(args.requests), "sigterm": drain(args.grace)}, indent=2))


if __name__ == "__main__":
    main()
