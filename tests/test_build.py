"""`edgemux profile build` and `profile show`: the choice rule, the written profile, bad input."""

from __future__ import annotations

import dataclasses
import json
import random
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from edgemux.cli import cli
from edgemux.errors import BudgetError, InvalidRequestError
from edgemux.profiles import load_profile
from edgemux.selection.build import Candidate, choose
from edgemux.selection.runs import Record
from edgemux.selection.search import Spread
from edgemux.types import Sample

POOL = ["qwen2.5-coder-1.5b", "qwen2.5-coder-0.5b", "gemma3-270m", "smollm2-135m"]
SETTINGS = {"k": 5, "temperature": 0.3, "top_p": 0.95, "top_k": 40, "min_p": 0.05, "max_tokens": 128,
            "instruction": "Solve it.\n\n{question}", "system": None, "n_ctx": 1024, "seed": 0}  # fmt: skip


def write_runs(path: Path, skills: dict[str, float], n_tasks: int = 40, seed: int = 0) -> Path:
    rng = random.Random(seed)
    with path.open("w") as f:
        for t in range(n_tasks):
            for m, (model, skill) in enumerate(skills.items()):
                answers = ["7" if rng.random() < skill else rng.choice(["1", "2", "3"]) for _ in range(5)]
                samples = tuple(
                    Sample(model, j, j, f"\\boxed{{{a}}}", a, 20 * (m + 1), "eos", 0.1 * (m + 1))
                    for j, a in enumerate(answers)
                )
                f.write(Record(f"t{t}", model, "number", "7", None, SETTINGS, 30, samples).to_json() + "\n")
    return path


def invoke(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args))


def test_build_writes_a_profile_ask_can_load(tmp_path: Path) -> None:
    runs = write_runs(tmp_path / "runs.jsonl", dict(zip(POOL, [0.7, 0.5, 0.3, 0.2], strict=True)))
    out = tmp_path / "p.yaml"
    result = invoke("profile", "build", "--runs", str(runs), "--name", "mine", "--out", str(out), "--budget", "8GiB")
    assert result.exit_code == 0, result.output
    profile = load_profile(str(out))
    assert profile.name == "mine" and profile.kind == "number"
    assert 2 <= len(profile.models) <= 3
    accuracies = [m.validation_accuracy for m in profile.models]
    assert accuracies == sorted(accuracies, reverse=True)  # tie-break order: best measured first
    assert profile.models[0].resident and not any(m.resident for m in profile.models[1:])
    assert profile.sampling.max_tokens == 128 and profile.sampling.temperature == 0.3
    assert profile.instruction == "Solve it.\n\n{question}" and profile.n_ctx == 1024
    measured = profile.measured
    assert measured["tasks"] == 40 and measured["collected_k"] == 5
    assert 0 <= measured["mux_accuracy"] <= 1 and measured["resident_bytes"] > 0
    assert "curve" not in measured  # the profile stays short: the curve is its own file
    assert len(json.loads((tmp_path / "p.curve.json").read_text())) == 10 * 5  # 6 pairs + 4 triples, k = 1..5

    again = invoke("profile", "build", "--runs", str(runs), "--name", "mine", "--out", str(out))
    assert again.exit_code == 2 and "exists already; pass --force" in again.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.curve.json", "p.yaml", "runs.jsonl"]  # no temporary files

    shown = invoke("profile", "show", str(out), "--json")
    assert json.loads(shown.stdout)["measured"]["mux_accuracy"] == measured["mux_accuracy"]
    png = tmp_path / "curve.png"
    assert invoke("profile", "show", str(out), "--plot", str(png)).exit_code == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def candidate(models: tuple[str, ...], k: int, accuracy: float, seconds: float, fits: bool = True) -> Candidate:
    s = Spread(accuracy, 0.0, accuracy, accuracy)
    return Candidate(models, k, s, s, s, models[0], seconds * 10, seconds, 10**9, fits)


def test_choose_takes_the_cheapest_within_the_tolerance() -> None:
    found = [
        candidate(("a", "b"), 5, 0.60, 100.0),
        candidate(("a", "b"), 3, 0.595, 60.0),
        candidate(("a", "c"), 3, 0.58, 20.0),
        candidate(("a", "b", "c"), 5, 0.70, 300.0, fits=False),
    ]
    chosen, why = choose(found, tolerance_points=1.0)
    assert (chosen.models, chosen.k) == (("a", "b"), 3)
    assert "costs 1.7× as much for 0.5 points" in why
    chosen, _ = choose(found, tolerance_points=3.0)
    assert (chosen.models, chosen.k) == (("a", "c"), 3)
    # k = 1: every model is fully confident, the favourite always wins; never an ensemble's choice
    found.append(candidate(("a", "c"), 1, 0.60, 5.0))
    assert choose(found, tolerance_points=1.0)[0].k == 3
    assert choose([candidate(("a",), 1, 0.6, 5.0)])[0].k == 1  # a single model at k = 1 is plain sampling
    with pytest.raises(InvalidRequestError, match="an ensemble needs k ≥ 2"):  # runs collected with -k 1
        choose([candidate(("a", "b"), 1, 0.6, 5.0)])
    with pytest.raises(BudgetError, match="no subset fits the budget: the smallest"):
        choose([candidate(("a", "b"), 1, 0.5, 1.0, fits=False)])


def test_at_equal_cost_counting_wins_over_a_vote_a_hair_more_accurate() -> None:
    """A confidence vote draws every sample live (no exact early stop): at the same cost and within the
    tolerance, the count rule is chosen; a vote that is cheaper within the tolerance still wins."""
    from edgemux.decide.confidence import VoteRule

    weighted = VoteRule("weighted", "mean_logprob", 16, 1.0)
    count = candidate(("a", "b"), 3, 0.600, 30.0)
    hair = dataclasses.replace(candidate(("a", "b"), 3, 0.601, 30.0), vote=weighted, count_mux=count.mux)
    assert choose([hair, count])[0] is count
    cheaper = dataclasses.replace(candidate(("a", "b"), 2, 0.598, 20.0), vote=weighted, count_mux=count.mux)
    assert choose([hair, count, cheaper])[0] is cheaper


def test_build_bad_input(tmp_path: Path) -> None:
    runs = write_runs(tmp_path / "runs.jsonl", {"qwen2.5-coder-0.5b": 0.5, "no-such-model": 0.4}, n_tasks=5)
    result = invoke("profile", "build", "--runs", str(runs), "--name", "x", "--out", str(tmp_path / "x.yaml"))
    assert result.exit_code == 3 and "unknown model 'no-such-model'" in result.output
    runs = write_runs(tmp_path / "runs2.jsonl", {"qwen2.5-coder-0.5b": 0.5, "smollm2-135m": 0.4}, n_tasks=5)
    result = invoke(
        "profile", "build", "--runs", str(runs), "--name", "x", "--budget", "10MiB", "--out", str(tmp_path / "x.yaml")
    )
    assert result.exit_code == 9 and "no subset fits the budget" in result.output
    result = invoke("profile", "build", "--runs", str(runs), "--name", "bad name", "--out", str(tmp_path / "x.yaml"))
    assert result.exit_code == 2 and "not a valid profile name" in result.output
    assert not (tmp_path / "x.yaml").exists()
    result = invoke("profile", "show", "tiny", "--plot", str(tmp_path / "d.png"))
    assert result.exit_code == 2 and "no measured curve" in result.output


def test_build_with_fixed_models_chooses_only_k(tmp_path: Path) -> None:
    runs = write_runs(tmp_path / "runs.jsonl", dict(zip(POOL, [0.7, 0.5, 0.3, 0.2], strict=True)))
    out = tmp_path / "p.yaml"
    args = ["profile", "build", "--runs", str(runs), "--name", "d", "--out", str(out), "--budget", "8GiB", "--force"]
    result = invoke(*args, "--models", "smollm2-135m,gemma3-270m")
    assert result.exit_code == 0, result.output
    profile = load_profile(str(out))
    assert profile.model_names == ["gemma3-270m", "smollm2-135m"]  # measured-accuracy order, not the flag's
    assert "(models fixed by --models)" in profile.measured["why"]
    result = invoke(*args, "--models", "qwen2.5-coder-1.5b")  # one model: self-consistency only
    assert result.exit_code == 0 and load_profile(str(out)).model_names == ["qwen2.5-coder-1.5b"]

    result = invoke(*args, "--models", "gemma3-270m,nope")
    assert result.exit_code == 3 and "unknown member 'nope'" in result.output and "runs.jsonl" in result.output
    result = invoke(*args, "--models", "gemma3-270m,gemma3-270m")
    assert result.exit_code == 2 and "named twice" in result.output
