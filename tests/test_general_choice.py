"""bench/general_choice.py: the default profile's model set is the best mean over several task sets."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from test_build import POOL, write_runs  # noqa: E402

SCRIPT = Path(__file__).parents[1] / "bench" / "general_choice.py"


def test_the_choice_is_the_best_mean_over_task_sets(tmp_path: Path) -> None:
    # The strongest model differs per task set: on the mean, the 1.5B + 0.5B pair wins
    a = write_runs(tmp_path / "a.jsonl", dict(zip(POOL, [0.9, 0.6, 0.1, 0.1], strict=True)), seed=1)
    b = write_runs(tmp_path / "b.jsonl", dict(zip(POOL, [0.5, 0.8, 0.1, 0.1], strict=True)), seed=2)
    out = subprocess.run(
        [sys.executable, str(SCRIPT), "--runs", f"{a},{b}", "-k", "3", "--json"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    result = json.loads(out.stdout)
    assert set(result["ensemble_choice"]) == {"qwen2.5-coder-1.5b", "qwen2.5-coder-0.5b"}
    rows = {tuple(r["models"]): r for r in result["rows"]}
    best = max((r for r in result["rows"] if len(r["models"]) > 1), key=lambda r: r["mean"])
    assert set(best["models"]) == set(result["ensemble_choice"])
    pair = rows[tuple(result["ensemble_choice"])]
    assert pair["mean"] == (pair["a.jsonl"] + pair["b.jsonl"]) / 2
