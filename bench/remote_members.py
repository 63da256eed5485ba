"""Remote members against a real llama-server (issue: remote members), side by side in one run.

    python bench/remote_members.py overlap --questions 20     # local + remote overlap
    python bench/remote_members.py cancel                     # early stop really stops the server
    python bench/remote_members.py kill                       # the server dies mid-question
    python bench/remote_members.py peer --questions 10        # peer members asked in turn vs edgemux

llama-server is built once from the llama.cpp sources vendored in the llama-cpp-python sdist
(``bench/llama_server.py``; 22 minutes on 2 idle cores here, cached under $EDGEMUX_HOME/tools). Models come
from edgemux's own cache (``edgemux models pull``). Results go to bench/runs/remote_members.<part>.json.

overlap: one machine stands in for two. This process decodes the local member on CPU 0 with one thread;
llama-server decodes the remote member on CPU 1 with one thread. Per question, interleaved: the local
member alone, the remote member alone, both as one ensemble (early stop off, so every sample is drawn):
the target is wall(both) <= 1.1 x max(wall(local), wall(remote)).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from llama_server import serving  # noqa: E402

from edgemux import paths
from edgemux.answers.extract import extract  # noqa: E402
from edgemux.answers.strategies import Member, parse_member
from edgemux.catalog import fetch  # noqa: E402
from edgemux.catalog.catalog import Catalog  # noqa: E402
from edgemux.catalog.register import register_remote  # noqa: E402
from edgemux.decide.mux import decide  # noqa: E402
from edgemux.engine.remote import RemoteEngine  # noqa: E402
from edgemux.profiles import Profile, ProfileModel, load_profile  # noqa: E402
from edgemux.schedule.runtime import LoadOptions, Mux  # noqa: E402
from edgemux.specs import RemoteSource
from edgemux.types import Sampling  # noqa: E402

HERE = Path(__file__).parent
TASKS = HERE / "tasks" / "gsm8k-dev.jsonl"


def _tasks(n: int) -> list[dict[str, str]]:
    return [json.loads(line) for line in TASKS.read_text().splitlines() if line.strip()][:n]


def _path(model: str) -> Path:
    spec = Catalog().get(model)
    if not fetch.is_cached(spec):
        sys.exit(f"{model} is not downloaded: run `edgemux models pull {model}`")
    return fetch.cached_path(spec)


@contextlib.contextmanager
def _remote_member(url: str, model: str) -> Iterator[str]:
    """A remote manifest for ``url`` in this home, removed afterwards; yields its name."""
    name = f"bench-remote-{model}-{os.getpid()}"
    catalog = Catalog()
    register_remote(RemoteSource(url, model, read_timeout_s=120.0), name, catalog)
    try:
        yield name
    finally:
        (catalog.user_dir / f"{name}.yaml").unlink(missing_ok=True)


def _profile(*members: str, k: int, max_tokens: int) -> Profile:
    base = load_profile("default")
    return dataclasses.replace(base, name="bench-remote", kind="number", models=tuple(ProfileModel(m) for m in members),
                               sampling=dataclasses.replace(base.sampling, k=k, max_tokens=max_tokens))  # fmt: skip


def _write(part: str, data: dict[str, object]) -> None:
    out = HERE / "runs" / f"remote_members.{part}.json"
    out.write_text(json.dumps(data, indent=2) + "\n")
    print(json.dumps({k: v for k, v in data.items() if k != "questions"}, indent=2))
    print(f"written to {out}", file=sys.stderr)


def overlap(args: argparse.Namespace) -> None:
    os.sched_setaffinity(0, {0})  # the local member's core; the server gets the other
    options = LoadOptions(n_threads=1, early_stop=False)
    rows = []
    with serving(_path(args.remote), parallel=args.k, ctx=args.k * (args.max_tokens + 512), threads=1, cpus={1}) as (
        url, _proc), _remote_member(url, args.remote) as remote:  # fmt: skip
        setups = {
            "local": _profile(args.local, k=args.k, max_tokens=args.max_tokens),
            "remote": _profile(remote, k=args.k, max_tokens=args.max_tokens),
            "both": _profile(remote, args.local, k=args.k, max_tokens=args.max_tokens),
        }
        muxes = {name: Mux(p, load=options) for name, p in setups.items()}
        try:
            for m in muxes.values():
                for _ in m.preload():
                    pass
            muxes["remote"].ask("Say hi.", sampling=Sampling(k=1, max_tokens=4, seed=1))  # warm the server
            for i, task in enumerate(_tasks(args.questions)):
                row: dict[str, object] = {"id": task["id"]}
                for name, m in muxes.items():
                    sampling = dataclasses.replace(m.profile.sampling, seed=1000 + i)
                    start = time.perf_counter()
                    result = m.ask(task["question"], sampling=sampling)
                    row[name] = {"seconds": time.perf_counter() - start, "answer": result.answer,
                                 "tokens": result.tokens, "failures": result.failures}  # fmt: skip
                row["ratio"] = row["both"]["seconds"] / max(row["local"]["seconds"], row["remote"]["seconds"])  # type: ignore[index]
                rows.append(row)
                print(f"[{i + 1}/{args.questions}] local {row['local']['seconds']:.1f} s, remote "  # type: ignore[index]
                      f"{row['remote']['seconds']:.1f} s, both {row['both']['seconds']:.1f} s: {row['ratio']:.2f}",  # type: ignore[index]
                      file=sys.stderr)  # fmt: skip
        finally:
            for m in muxes.values():
                m.close()
    total = {name: sum(r[name]["seconds"] for r in rows) for name in ("local", "remote", "both")}  # type: ignore[index]
    _write("overlap", {
        "what": f"local {args.local} (CPU 0, 1 thread) + remote {args.remote} (llama-server, CPU 1, 1 thread), "
                f"k={args.k}, max_tokens={args.max_tokens}, early stop off, {len(rows)} GSM8K dev questions",
        "median_ratio": round(statistics.median(r["ratio"] for r in rows), 3),  # type: ignore[misc]
        "ratio_of_sums": round(total["both"] / sum(max(r["local"]["seconds"], r["remote"]["seconds"])  # type: ignore[index]
                                                  for r in rows), 3),  # fmt: skip
        "seconds_total": {k: round(v, 1) for k, v in total.items()},
        "questions": rows,
    })  # fmt: skip


def _metric(base: str, name: str) -> float:
    with urllib.request.urlopen(base + "/metrics", timeout=5) as r:
        text = r.read().decode()
    m = re.search(rf"^llamacpp:{name} (\S+)$", text, flags=re.M)
    return float(m.group(1)) if m else float("nan")


def _busy_slots(base: str) -> int:
    with urllib.request.urlopen(base + "/slots", timeout=5) as r:
        return sum(bool(s.get("is_processing")) for s in json.loads(r.read()))


def cancel(args: argparse.Namespace) -> None:
    """Close the stream of an n = k request after a few chunks; watch the server's slots and counters."""
    rows = []
    with serving(_path(args.remote), parallel=args.k, ctx=args.k * 1024, threads=2) as (url, _proc):
        base = url.removesuffix("/v1")
        engine = RemoteEngine("bench", RemoteSource(url, args.remote))
        prompt = list(
            json.dumps([{"role": "user", "content": "Write a very long story about a lighthouse keeper."}]).encode()
        )
        sampling = Sampling(k=args.k, max_tokens=900, temperature=0.8, seed=5)
        for trial in range(args.trials):
            before = _metric(base, "tokens_predicted_total")
            steps = engine.generate(prompt, sampling, [5 + trial * 10 + j for j in range(args.k)])
            received = 0
            for step in steps:
                received = sum(step.tokens)
                if received >= 40:
                    break
            closed_at = time.perf_counter()
            steps.close()
            while _busy_slots(base) and time.perf_counter() - closed_at < 30:
                time.sleep(0.01)
            idle_after = time.perf_counter() - closed_at
            time.sleep(1.0)  # metrics are updated when a task ends
            generated = _metric(base, "tokens_predicted_total") - before
            rows.append({"received_tokens": received, "server_generated_tokens": generated,
                         "seconds_to_idle": round(idle_after, 3), "max_tokens_asked": args.k * 900})  # fmt: skip
            print(rows[-1], file=sys.stderr)
        engine.close()
    _write("cancel", {
        "what": f"{args.remote} on llama-server -np {args.k}: an n={args.k} request for up to 900 tokens each, its stream "
                "closed after 40 tokens arrived; the server's slots polled until idle",
        "median_seconds_to_idle": statistics.median(r["seconds_to_idle"] for r in rows),
        "median_server_generated_tokens": statistics.median(r["server_generated_tokens"] for r in rows),
        "questions": rows,
    })  # fmt: skip


def kill(args: argparse.Namespace) -> None:
    """`edgemux ask` with a remote and a local member; the server is SIGKILLed mid-question."""
    rows = []
    for trial in range(args.trials):
        with serving(_path(args.remote), parallel=args.k, ctx=args.k * 1024, threads=1, cpus={1}) as (url, proc), \
                _remote_member(url, args.remote) as remote:  # fmt: skip
            task = _tasks(trial + 1)[trial]
            argv = [sys.executable, "-m", "edgemux", "ask", "--models", f"{remote},{args.local}", "-k", str(args.k),
                    "--max-tokens", str(args.max_tokens), "--seed", str(7 + trial), "--json", "-q", "--kind", "number",
                    task["question"]]  # fmt: skip
            start = time.perf_counter()
            ask = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            threading.Timer(args.kill_after, lambda: proc.send_signal(signal.SIGKILL)).start()
            try:
                out, err = ask.communicate(timeout=180)
            except subprocess.TimeoutExpired:
                ask.kill()
                out, err = ask.communicate()
            seconds = time.perf_counter() - start
            result = json.loads(out) if out.strip().startswith("{") else {}
            rows.append({"exit": ask.returncode, "seconds": round(seconds, 1), "answer": result.get("answer"),
                         "winner": result.get("winner"), "failures": result.get("failures"),
                         "reference": extract("number", f"#### {task['answer']}"), "stderr": err.strip()[-300:]})  # fmt: skip
            print(rows[-1], file=sys.stderr)
    _write("kill", {
        "what": f"edgemux ask --models REMOTE({args.remote}),{args.local} -k {args.k}; the llama-server SIGKILLed "
                f"{args.kill_after:g} s into the question",
        "exit_codes": [r["exit"] for r in rows],
        "answered_by_the_local_member": sum(r["winner"] == args.local for r in rows),
        "questions": rows,
    })  # fmt: skip


def peer(args: argparse.Namespace) -> None:
    """The peer way: one llama-server per model of the default profile, each member asked n = k in turn
    (the next member's request only after the previous one's finished; no early stop), answers extracted
    and voted by edgemux's rule; against edgemux's local default profile with early stop. Interleaved per
    question, same prompts and seeds."""
    profile = load_profile("default")
    k = profile.sampling.k
    models = list(dict.fromkeys(m.model for m in profile.members))
    with contextlib.ExitStack() as stack:
        remote_of = {}
        for model in models:
            url, _ = stack.enter_context(serving(_path(model), parallel=k, ctx=k * (profile.sampling.max_tokens + 1024),
                                                 threads=2))  # fmt: skip
            remote_of[model] = stack.enter_context(_remote_member(url, model))
        # one single-member Mux per peer member, asked in turn: the way a user of the peers chains calls
        peer_muxes = []
        for m in profile.models:
            member = parse_member(m.name)
            remote = dataclasses.replace(m, name=Member(remote_of[member.model], member.strategy).name)
            peer_muxes.append(stack.enter_context(Mux(dataclasses.replace(profile, models=(remote,)),
                                                      load=LoadOptions(early_stop=False))))  # fmt: skip
        local = stack.enter_context(Mux(profile, load=LoadOptions()))
        for _ in local.preload():
            pass
        warm = Sampling(k=1, max_tokens=4, seed=1)
        for m in (*peer_muxes, local):  # first-request costs (server warm-up, page faults) out of the timing
            m.ask("What is 1 + 1?", sampling=warm)
        rows = []
        for i, task in enumerate(_tasks(args.questions)):
            reference = extract("number", f"#### {task['answer']}")
            sampling = dataclasses.replace(profile.sampling, seed=2000 + i)
            start = time.perf_counter()
            results = [m.ask(task["question"], sampling=sampling) for m in peer_muxes]
            peer_decision = decide([r.decision.votes[0] for r in results])
            peer_row = {"seconds": time.perf_counter() - start, "answer": peer_decision.answer,
                        "winner": peer_decision.winner, "correct": peer_decision.answer == reference,
                        "tokens": sum(r.tokens for r in results)}  # fmt: skip
            start = time.perf_counter()
            result = local.ask(task["question"], sampling=sampling)
            local_row = {"seconds": time.perf_counter() - start, "answer": result.answer, "winner": result.decision.winner,
                         "correct": result.answer == reference, "tokens": result.tokens,
                         "cancelled_samples": len(result.stopped)}  # fmt: skip
            row = {"id": task["id"], "peer": peer_row, "edgemux": local_row,
                   "ratio": local_row["seconds"] / peer_row["seconds"]}  # fmt: skip
            rows.append(row)
            print(f"[{i + 1}/{args.questions}] peer {peer_row['seconds']:.1f} s ({peer_row['tokens']} tokens), "
                  f"edgemux {local_row['seconds']:.1f} s ({local_row['tokens']} tokens): {row['ratio']:.2f}",
                  file=sys.stderr)  # fmt: skip
    _write("peer", {
        "what": f"default profile (k={k}); peer: llama-server -np {k} -t 2 --jinja per model, members asked in turn, "
                f"no early stop; edgemux: local, early stop; {len(rows)} GSM8K dev questions, interleaved",
        "ratio_of_sums": round(sum(r["edgemux"]["seconds"] for r in rows) / sum(r["peer"]["seconds"] for r in rows), 3),  # type: ignore[index]
        "median_ratio": round(statistics.median(r["ratio"] for r in rows), 3),  # type: ignore[misc]
        "tokens": {w: sum(r[w]["tokens"] for r in rows) for w in ("peer", "edgemux")},  # type: ignore[index]
        "accuracy": {w: sum(r[w]["correct"] for r in rows) / len(rows) for w in ("peer", "edgemux")},  # type: ignore[index]
        "questions": rows,
    })  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("part", choices=["overlap", "cancel", "kill", "peer"])
    parser.add_argument("--local", default="qwen2.5-coder-0.5b")
    parser.add_argument("--remote", default="qwen2.5-coder-0.5b", help="the model llama-server runs")
    parser.add_argument("--questions", type=int, default=20)
    parser.add_argument("--trials", type=int, default=3)
    parser.add_argument("-k", type=int, default=3)
    parser.add_argument("--max-tokens", type=int, default=256)
    parser.add_argument(
        "--kill-after", type=float, default=8.0, help="seconds into the ask (it loads the local model first)"
    )
    args = parser.parse_args()
    print(f"EDGEMUX_HOME={paths.home()}", file=sys.stderr)
    {"overlap": overlap, "cancel": cancel, "kill": kill, "peer": peer}[args.part](args)


if __name__ == "__main__":
    main()
