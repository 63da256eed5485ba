"""Memory estimates, budgets and plans (pure), and the estimate against the real engine's measurement."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from edgemux.catalog.catalog import Catalog
from edgemux.catalog.gguf import read_header
from edgemux.cli import cli
from edgemux.errors import InvalidRequestError
from edgemux.memory.memory import ModelShape, estimate, kv_cells, parse_bytes, plan
from edgemux.profiles import load_profile
from edgemux.schedule.planning import resolve_budget, shape_of

MiB = 2**20

# A made-up 4-layer model: 10 MiB per layer (4 of them repackable), 8 MiB embeddings, 2 MiB output.
TOY = ModelShape(
    n_layer=4, n_embd=256, n_ff=1024, n_head=4, n_head_kv=2, head_dim_k=64, head_dim_v=64, n_vocab=1000,
    file_nbytes=50 * MiB, layer_nbytes=(10 * MiB,) * 4, repack_nbytes=(4 * MiB,) * 4, output_nbytes=2 * MiB,
)  # fmt: skip


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("3GiB", 3 * 2**30),
        ("512MiB", 512 * MiB),
        ("1.5G", 1_500_000_000),
        ("2 GB", 2_000_000_000),
        ("4096", 4096),
        (77, 77),
    ],
)
def test_parse_bytes(text: str | int, expected: int) -> None:
    assert parse_bytes(text) == expected


@pytest.mark.parametrize("text", ["lots", "3 GiBs", "-1GiB", ""])
def test_parse_bytes_rejects(text: str) -> None:
    with pytest.raises(InvalidRequestError, match="cannot read"):
        parse_bytes(text)


def test_kv_cells_share_the_prompt() -> None:
    assert kv_cells(n_ctx=2048, k=1, max_tokens=384) == 2048
    assert kv_cells(n_ctx=2048, k=3, max_tokens=384) == 2048 + 2 * 384


def test_estimate_cpu_parts() -> None:
    e = estimate("toy", TOY, cells=1000, k=3)
    assert e.weights_bytes == 50 * MiB + 16 * MiB  # the mapped file plus the repacked copies
    assert e.kv_bytes == 4 * 1000 * 2 * (64 + 64) * 2  # layers x cells x kv heads x (K+V) x f16
    assert e.gpu_bytes == 0
    assert e.total_bytes == e.weights_bytes + e.kv_bytes + e.compute_bytes + e.other_bytes


def test_estimate_grows_with_k_only_through_kv_and_outputs() -> None:
    one, five = (
        estimate("toy", TOY, cells=kv_cells(1000, 1, 100), k=1),
        estimate("toy", TOY, cells=kv_cells(1000, 5, 100), k=5),
    )
    assert five.weights_bytes == one.weights_bytes
    assert five.kv_bytes == one.kv_bytes * 1400 // 1000
    assert five.total_bytes > one.total_bytes


def test_gpu_offload_moves_the_last_layers() -> None:
    half = estimate("toy", TOY, cells=1000, k=1, n_gpu_layers=2)
    assert half.gpu_bytes >= 20 * MiB and half.weights_bytes == 30 * MiB + 8 * MiB  # 2 layers left on CPU, repacked
    everything = estimate("toy", TOY, cells=1000, k=1, n_gpu_layers=-1)
    assert everything.weights_bytes == 50 * MiB - 42 * MiB and everything.kv_bytes == 0


def test_summary_round_trip() -> None:
    again = ModelShape.from_summary(TOY.summary())
    assert estimate("toy", again, cells=500, k=2) == estimate("toy", TOY, cells=500, k=2)


def test_plan_fits_and_advice() -> None:
    models = [("a", TOY), ("b", TOY)]
    roomy = plan(models, budget_bytes=2**30, k=3, n_ctx=1000, max_tokens=100)
    assert roomy.fits and roomy.advice == ""
    one = estimate("a", TOY, cells=kv_cells(1000, 3, 100), k=3).total_bytes
    tight = plan(models, budget_bytes=int(one * 1.5), k=3, n_ctx=1000, max_tokens=100)
    assert not tight.fits and "drop" in tight.advice
    tiny = plan(models, budget_bytes=10 * MiB, k=3, n_ctx=1000, max_tokens=100)
    assert "alone needs" in tiny.advice and "raise --budget" in tiny.advice


def test_plan_prefers_lowering_k() -> None:
    big_kv = ModelShape(**{**TOY.__dict__, "n_head_kv": 64})  # KV-heavy: k matters
    models = [("a", big_kv), ("b", big_kv)]
    at_k1 = plan(models, budget_bytes=2**40, k=1, n_ctx=1000, max_tokens=1000).total_bytes
    result = plan(models, budget_bytes=at_k1 + MiB, k=4, n_ctx=1000, max_tokens=1000)
    assert result.advice.endswith("lower -k to 1")


def test_budget_precedence(monkeypatch: pytest.MonkeyPatch) -> None:
    profile = load_profile("default")
    assert resolve_budget("2GiB", profile) == (2 * 2**30, "--budget")
    monkeypatch.setenv("EDGEMUX_BUDGET", "3GiB")
    assert resolve_budget(None, profile) == (3 * 2**30, "EDGEMUX_BUDGET")
    monkeypatch.delenv("EDGEMUX_BUDGET")
    budget, source = resolve_budget(None, profile)
    assert source == "default" and budget > 0
    with pytest.raises(InvalidRequestError, match="--budget"):
        resolve_budget("much", profile)


def test_manifest_shape_matches_the_header(smollm2_path: Path) -> None:
    spec = Catalog().get("smollm2-135m")
    from_header = ModelShape.from_header(read_header(smollm2_path))
    from_manifest = ModelShape.from_summary(dict(spec.shape or ()))
    assert from_manifest.summary() == from_header.summary()


def test_uncached_model_plans_from_its_manifest() -> None:
    shape = shape_of(Catalog().get("qwen2.5-coder-1.5b"))  # not pulled in this test's home
    assert shape.n_layer == 28 and shape.repack_nbytes


def test_uncached_model_without_shape() -> None:
    with pytest.raises(InvalidRequestError, match="edgemux models pull llama3.2-1b-instruct"):
        shape_of(Catalog().get("llama3.2-1b-instruct"))


def test_estimate_matches_what_loading_really_costs(smollm2_path: Path) -> None:
    # A fresh process: in this one, memory freed by earlier tests' engines would be reused and hide the cost.
    shape = ModelShape.from_header(read_header(smollm2_path))
    cells = kv_cells(1024, 3, 256)
    code = (
        "import sys; from edgemux.engine.engine import Engine; "
        f"e = Engine(sys.argv[1], n_ctx={cells}, n_seq_max=3, n_threads=2); print(e.measured_nbytes)"
    )
    out = subprocess.run([sys.executable, "-c", code, str(smollm2_path)], capture_output=True, text=True, check=True)
    measured = int(out.stdout.strip().splitlines()[-1])
    assert abs(estimate("smollm2-135m", shape, cells=cells, k=3).total_bytes / measured - 1) < 0.15


def test_plan_cli() -> None:
    pair = "qwen2.5-coder-1.5b,qwen2.5-coder-0.5b"
    ok = CliRunner().invoke(cli, ["plan", "--models", pair, "--budget", "8GiB", "--json"])
    assert ok.exit_code == 0, ok.stderr
    data = json.loads(ok.stdout)
    assert data["fits"] and [m["name"] for m in data["models"]] == ["qwen2.5-coder-1.5b", "qwen2.5-coder-0.5b"]
    assert data["budget_source"] == "--budget"
    members = json.loads(CliRunner().invoke(cli, ["plan", "--profile", "default", "--budget", "8GiB", "--json"]).stdout)
    assert [m["name"] for m in members["models"]] == ["qwen2.5-coder-1.5b"]  # two members, one model to load
    bad = CliRunner().invoke(cli, ["plan", "--models", pair, "--budget", "1GiB"])
    assert bad.exit_code == 9
    assert "drop qwen2.5-coder-1.5b" in bad.stderr and "does not fit" in bad.stdout
    alone = CliRunner().invoke(cli, ["plan", "--models", "qwen2.5-coder-1.5b", "--budget", "1GiB"])
    assert alone.exit_code == 9 and "qwen2.5-coder-1.5b alone needs" in alone.stderr
    table = CliRunner().invoke(cli, ["plan", "--models", "smollm2-135m,gemma3-270m", "-k", "5", "--budget", "2GiB"])
    assert table.exit_code == 0 and "gemma3-270m" in table.stdout and "fits" in table.stdout
