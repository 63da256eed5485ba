"""Early stop on GSM8K: tokens, accuracy and time against full sampling and the best single model
(issue: memory budget and scheduler).

For every question, with the same seeds, runs of the profile (--methods picks them, back to back):
  full                interleave, no early stop: every model draws all k samples;
  priority            one model at a time, favourite first, exact early stop (decision rule);
  staged+answer       the favourite's k samples as one batch, the others' one at a time, answer rule;
  priority+confident  priority with the confident stop rule (the profile's bars; issue 26);
  staged+confident    staged with the confident stop rule (the fewest tokens on the recorded runs);
  cheapest+confident  the shortest samples first (the profile's tokens_per_sample), confident rule;
  single              the best single model (the profile's first) drawing its k samples alone.
(bench/runs/early_stop.jsonl holds an earlier run that compared full, priority and interleave.)
Same seeds give the same samples, so the answers of the early-stop runs can be checked against the full
run question by question. Results are appended to a JSONL file as they come (resumable: questions already
there are skipped), and the summary prints the ratios the issue asks for.

    python bench/early_stop.py --limit 100 --out bench/runs/early_stop_staged.jsonl
    python bench/early_stop.py --limit 20 --methods priority,priority+confident --out bench/runs/stop_rules_live.jsonl
    python bench/early_stop.py --limit 20 --methods priority,staged+confident --out bench/runs/staged_live.jsonl
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import statistics
import sys
import time
from pathlib import Path

from edgemux.answers.extract import extract
from edgemux.profiles import load_profile
from edgemux.schedule.runtime import LoadOptions, Mux

HERE = Path(__file__).parent
METHODS = {
    "full": LoadOptions(policy="interleave", early_stop=False),
    "priority": LoadOptions(policy="priority", early_stop=True, stop_rule="decision"),
    "staged+answer": LoadOptions(policy="staged", early_stop=True, stop_rule="answer"),
    "priority+confident": LoadOptions(policy="priority", early_stop=True, stop_rule="confident"),
    "staged+confident": LoadOptions(policy="staged", early_stop=True, stop_rule="confident"),
    "cheapest+confident": LoadOptions(policy="cheapest", early_stop=True, stop_rule="confident"),
    "priority+agree": LoadOptions(policy="priority", early_stop=True, stop_rule="agree"),
    "cheapest+agree": LoadOptions(policy="cheapest", early_stop=True, stop_rule="agree"),
}


def run_question(
    mux: Mux, single: Mux | None, task: dict[str, str], seed: int, methods: list[str]
) -> dict[str, object]:
    row: dict[str, object] = {"id": task["id"], "reference": task["answer"], "seed": seed}
    reference = extract("number", f"#### {task['answer']}")
    for method, options in [(m, METHODS.get(m)) for m in methods]:
        target = mux if options is not None else single
        assert target is not None
        if options is not None:
            target.options = options
        sampling = dataclasses.replace(target.profile.sampling, seed=seed)
        start = time.perf_counter()
        result = target.ask(task["question"], sampling=sampling)
        row[method] = {
            "answer": result.answer, "winner": result.decision.winner, "correct": result.answer == reference,
            "tokens": result.tokens, "seconds": time.perf_counter() - start, "stopped": len(result.stopped),
        }  # fmt: skip
    return row


def summarize(rows: list[dict]) -> dict[str, object]:  # type: ignore[type-arg]
    def mean(method: str, key: str) -> float:
        return statistics.mean(float(r[method][key]) for r in rows)

    methods = [k for k, v in rows[0].items() if isinstance(v, dict)]  # older files ran other methods
    out: dict[str, object] = {"questions": len(rows)}
    for method in methods:
        seconds = [float(r[method]["seconds"]) for r in rows]
        out[method] = {
            "accuracy": mean(method, "correct"),
            "tokens": mean(method, "tokens"),
            "seconds": mean(method, "seconds"),
            "seconds_median": statistics.median(seconds),
            "seconds_sum": sum(seconds),
        }
    base = "full" if "full" in methods else "priority"  # what each other run is compared with
    for method in [m for m in methods if m not in (base, "single")]:
        out[f"{method}_tokens_vs_{base}"] = mean(method, "tokens") / mean(base, "tokens")
        out[f"{method}_median_seconds_vs_{base}"] = out[method]["seconds_median"] / out[base]["seconds_median"]  # type: ignore[index]
        out[f"{method}_accuracy_delta_points"] = 100 * (mean(method, "correct") - mean(base, "correct"))
        out[f"{method}_same_answer_as_{base}"] = sum(r[method]["answer"] == r[base]["answer"] for r in rows) / len(rows)
        if "single" in methods:
            out[f"{method}_time_vs_single"] = mean(method, "seconds") / mean("single", "seconds")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", default=str(HERE / "tasks" / "gsm8k-dev.jsonl"))
    parser.add_argument("--profile", default="default")
    parser.add_argument("--limit", type=int, default=100)
    parser.add_argument("--out", default=str(HERE / "runs" / "early_stop_staged.jsonl"))
    parser.add_argument("--summarize", action="store_true", help="only summarize the questions already in --out")
    parser.add_argument("--methods", default="full,priority,staged+answer,single",
                        help=f"comma-separated, run in this order for each question: {', '.join(METHODS)}, single")  # fmt: skip
    args = parser.parse_args()
    tasks = [json.loads(line) for line in Path(args.tasks).read_text().splitlines() if line.strip()][: args.limit]
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    done = {json.loads(line)["id"] for line in out.read_text().splitlines()} if out.exists() else set()
    profile = load_profile(args.profile)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = [m for m in methods if m not in (*METHODS, "single")]
    if unknown:
        sys.exit(f"unknown methods: {', '.join(unknown)}")
    if args.summarize:
        rows = [json.loads(line) for line in out.read_text().splitlines()]
        print(json.dumps(summarize(rows), indent=2))
        return
    with contextlib.ExitStack() as stack:
        mux = stack.enter_context(Mux(profile))
        single = None  # the best single model alone: a second Mux, loaded only when asked for
        if "single" in methods:
            alone = dataclasses.replace(profile, models=profile.models[:1])
            single = stack.enter_context(Mux(alone, load=LoadOptions(early_stop=False)))
        for _ in (*mux.preload(), *(single.preload() if single else ())):  # no method pays the cold start
            pass
        for i, task in enumerate(tasks):
            if task["id"] in done:
                continue
            row = run_question(mux, single, task, seed=1000 + i, methods=methods)
            with out.open("a") as f:
                f.write(json.dumps(row) + "\n")
            print(
                f"[{i + 1}/{len(tasks)}] {task['id']}: "
                + ", ".join(
                    f"{m} {row[m]['answer']} ({row[m]['tokens']} tok, {row[m]['seconds']:.0f} s)" for m in methods
                ),
                file=sys.stderr,
            )  # type: ignore[index]
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    rows = [r for r in rows if r["id"] in {t["id"] for t in tasks}]
    print(json.dumps(summarize(rows), indent=2))


if __name__ == "__main__":
    main()
