"""A budget that holds two of three models, 20 questions over all three (issue: memory budget and
scheduler). Checks: peak resident bytes of the models stay within budget + 5 %; no model is loaded twice
in a row when another choice existed; every question is answered.

Peak RSS is sampled every 10 ms by a thread; the baseline is the process RSS before any model is loaded,
so "model bytes" = peak RSS - baseline is what the budget governs.

    python bench/residency.py --models smollm2-135m,gemma3-270m,qwen2.5-coder-0.5b --questions 20
"""

from __future__ import annotations

import argparse
import json
import threading
from pathlib import Path

from edgemux.memory.memory import format_bytes
from edgemux.memory.osmemory import rss_bytes
from edgemux.profiles import adhoc_profile
from edgemux.schedule.runtime import LoadOptions, Mux
from edgemux.types import Sampling

HERE = Path(__file__).parent


class PeakRss:
    def __init__(self) -> None:
        self.peak = rss_bytes() or 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.01):
            self.peak = max(self.peak, rss_bytes() or 0)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="smollm2-135m,gemma3-270m,qwen2.5-coder-0.5b")
    parser.add_argument("--questions", type=int, default=20)
    parser.add_argument("--max-tokens", type=int, default=96)
    args = parser.parse_args()
    names = args.models.split(",")
    profile = adhoc_profile(names, "number", Sampling(k=3, max_tokens=args.max_tokens, temperature=0.7))
    profile = profile.with_overrides(n_ctx=1024)
    tasks = [json.loads(line) for line in (HERE / "tasks" / "gsm8k-dev.jsonl").read_text().splitlines()][
        : args.questions
    ]

    probe = Mux(profile, load=LoadOptions(budget="1TiB"))
    sizes = {n: probe.models.estimated_bytes(n) or 0 for n in names}
    two = sorted(sizes.values())[-2:]
    budget = sum(two) + (min(sizes.values()) // 2)  # any two fit, all three do not
    assert budget < sum(sizes.values())
    baseline = rss_bytes() or 0
    answered = 0
    with (
        PeakRss() as peak,
        Mux(profile, load=LoadOptions(budget=str(budget), policy="interleave", early_stop=False)) as mux,
    ):
        for i, task in enumerate(tasks):
            result = mux.ask(task["question"], sampling=Sampling(k=3, max_tokens=args.max_tokens, seed=i))
            answered += result.answer is not None or all(v.samples for v in result.decision.votes)
        loads = list(mux.resident.loads)
        accounted_peak = mux.resident.peak_bytes
    model_peak = peak.peak - baseline
    repeats = sum(a == b for a, b in zip(loads, loads[1:], strict=False))
    report = {
        "models": {n: sizes[n] for n in names},
        "budget_bytes": budget,
        "questions": len(tasks),
        "answered": answered,
        "loads": len(loads),
        "load_sequence": loads,
        "same_model_loaded_twice_in_a_row": repeats,
        "accounted_peak_bytes": accounted_peak,
        "baseline_rss_bytes": baseline,
        "peak_rss_bytes": peak.peak,
        "model_peak_bytes": model_peak,
        "model_peak_over_budget": model_peak / budget,
    }
    print(json.dumps(report, indent=2))
    print(
        f"budget {format_bytes(budget)}; model peak {format_bytes(model_peak)} = {model_peak / budget:.3f} x budget "
        f"(target <= 1.05); {len(loads)} loads for {len(tasks)} questions, {repeats} repeated loads; "
        f"answered {answered}/{len(tasks)}"
    )


if __name__ == "__main__":
    main()
