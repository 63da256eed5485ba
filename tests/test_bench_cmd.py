"""`edgemux bench` on the real SmolLM2: the llama-bench-style rows, k-scaling, the ensemble row, JSON."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from edgemux.cli import cli


def test_bench_json_with_the_real_model(smollm2_in_home: Path) -> None:
    args = ["bench", "--models", "smollm2-135m", "-p", "32", "-n", "8", "-k", "1,3", "-r", "2", "--threads", "1",
            "--profile", "tiny", "--questions", "1", "--json"]  # fmt: skip
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    tests = {r["test"]: r for r in data["throughput"]}
    assert set(tests) == {"pp32", "tg8"}
    for row in tests.values():
        assert len(row["runs"]) == 2 and all(v > 0 for v in row["runs"])
        assert row["backend"] == "CPU" and row["threads"] == 1 and row["nbytes"] > 50 * 2**20
    assert (
        tests["pp32"]["tokens_per_s"]["mean"] > tests["tg8"]["tokens_per_s"]["mean"]
    )  # prompts batch, decoding does not
    scaling = {r["k"]: r for r in data["scaling"]}
    assert set(scaling) == {1, 3}
    # (that a batch of three makes more tokens per second than one is a speed claim: bench/, not a test)
    assert all(scaling[k]["generation_tokens_per_s"]["mean"] > 0 for k in (1, 3))
    ensemble = data["ensemble"]
    assert ensemble["profile"] == "tiny" and ensemble["questions"] == 1 and ensemble["tokens_per_answer"] > 0
    assert ensemble["peak_rss_bytes"] > 50 * 2**20
    assert data["hardware"]["cores"] and "llama_cpp_python" in data["hardware"]


def test_bench_bad_input() -> None:
    result = CliRunner().invoke(cli, ["bench", "--models", "smollm2-135m", "-k", "1,x"])
    assert result.exit_code == 2 and "comma-separated integers" in result.output
    result = CliRunner().invoke(cli, ["bench", "--models", "no-such-model"])
    assert result.exit_code == 3 and "unknown model" in result.output
    result = CliRunner().invoke(cli, ["bench", "--models", "smollm2-135m", "--questions", "9", "--profile", "tiny"])
    assert result.exit_code == 2 and "--questions" in result.output
