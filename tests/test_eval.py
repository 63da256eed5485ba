"""`edgemux eval`: every method's numbers against a count done by hand on a fixed runs file, the report
files, and a live run with the real model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from edgemux.cli import cli
from edgemux.decide.confidence import VoteRule
from edgemux.errors import InvalidRequestError
from edgemux.measure.evaluate import score_runs, wilson
from edgemux.profiles import Profile, ProfileModel
from edgemux.selection.runs import read_runs
from edgemux.types import Sampling

RUNS = Path(__file__).parent / "data" / "eval-runs.jsonl"
PROFILE_YAML = """name: handcount
kind: number
models:
  - {name: m1, validation_accuracy: 0.6}
  - {name: m2, validation_accuracy: 0.5}
sampling: {k: 3}
"""


def invoke(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args))


# The fixed file, by hand (reference; m1's samples; m2's samples), m1 = 10 tokens and m2 = 20 per sample:
#   A  7   7 7 3    7 7 7      m1 majority 7 ✓ (2/3)   m2 7 ✓ (3/3)   MUX m2 → 7 ✓   pooled 7 ✓
#   B  5   5 2 2    9 9 9      m1 2 ✗ (2/3)            m2 9 ✗ (3/3)   MUX m2 → 9 ✗   pooled 9 ✗ (3 vs 2 vs 1)
#   C  1   4 4 1    1 1 6      m1 4 ✗ (2/3)            m2 1 ✓ (2/3)   tie → m1 (0.6) → 4 ✗   pooled 1 ✓ (3 vs 2)
#   D  8   ∅ 8 2    3 2 3      m1 8 ✓ (1/3, 8 first)   m2 3 ✗ (2/3)   MUX m2 → 3 ✗   pooled 2 ✗ (2 and 3 tie, 2 seen first)
# single sample (index 0): m1 7 ✓ 5 ✓ 4 ✗ ∅ ✗ = 2/4; m2 7 ✓ 9 ✗ 1 ✓ 3 ✗ = 2/4. Oracle (some majority right): A C D = 3/4.
EXPECTED = {
    "m1, first sample": (2, 10),
    "m2, first sample": (2, 20),
    "m1, majority of 3": (2, 30),
    "m2, majority of 3": (2, 60),
    "pooled vote": (2, 90),
    "SLM-MUX": (1, 90),
    "oracle": (3, 90),
}


def test_every_method_matches_the_count_by_hand() -> None:
    profile = Profile("handcount", "number", (ProfileModel("m1", 0.6), ProfileModel("m2", 0.5)), Sampling(k=3))
    report = score_runs(read_runs(RUNS), profile)
    assert {m.method: (m.correct, m.tokens / m.n) for m in report.methods} == EXPECTED
    assert all(m.n == 4 for m in report.methods)
    mux = report.method("SLM-MUX")
    assert mux.seconds / mux.n == pytest.approx(3.0 + 6.0)  # each model's batch: its slowest sample
    assert [q.answers["SLM-MUX"] for q in report.questions] == ["7", "9", "4", "3"]
    assert [q.answers["pooled vote"] for q in report.questions] == ["7", "9", "1", "2"]


def test_k_below_the_collected_uses_the_first_samples() -> None:
    profile = Profile("handcount", "number", (ProfileModel("m1", 0.6), ProfileModel("m2", 0.5)), Sampling(k=3))
    report = score_runs(read_runs(RUNS), profile, k=1)
    # k=1: each model's one sample; MUX ties at 1/1 everywhere except D (m1 has no answer) → m1, m1, m1, m2
    assert [q.answers["SLM-MUX"] for q in report.questions] == ["7", "5", "4", "3"]
    with pytest.raises(InvalidRequestError, match="k=4 asked, but some records hold only 3"):
        score_runs(read_runs(RUNS), profile, k=4)
    other = Profile("x", "number", (ProfileModel("m1"), ProfileModel("m9")), Sampling(k=3))
    with pytest.raises(InvalidRequestError, match="no samples of m9"):
        score_runs(read_runs(RUNS), other)


def test_wilson_interval() -> None:
    assert wilson(0, 10)[0] == 0 and 0.25 < wilson(0, 10)[1] < 0.35
    low, high = wilson(50, 100)
    assert low == pytest.approx(0.4038, abs=1e-3) and high == pytest.approx(0.5962, abs=1e-3)


def test_the_exact_stop_replayed_gives_every_question_the_same_answer_for_fewer_tokens() -> None:
    profile = Profile("handcount", "number", (ProfileModel("m1", 0.6), ProfileModel("m2", 0.5)), Sampling(k=3))
    report = score_runs(read_runs(RUNS), profile, stops=True)
    exact = "SLM-MUX, exact early stop (replayed)"
    assert [q.answers[exact] for q in report.questions] == [q.answers["SLM-MUX"] for q in report.questions]
    # by hand: m1 (first in the tie order) ends every question with at most 2 of 3 agreeing, and m2 could
    # still reach 3 of 3 until its last sample: no exact rule can stop anything here
    assert report.method(exact).tokens == report.method("SLM-MUX").tokens == 360


def test_offline_eval_writes_the_report(tmp_path: Path) -> None:
    profile = tmp_path / "handcount.yaml"
    profile.write_text(PROFILE_YAML)
    out = tmp_path / "report"
    result = invoke("eval", "--runs", str(RUNS), "--profile", str(profile), "--out", str(out), "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    exact = "SLM-MUX, exact early stop (replayed)"  # the exact rule replayed: the same answers, fewer tokens
    agree = "SLM-MUX, agree stop 3/1 (replayed)"  # a count profile also gets the agree rule at its default
    expected = {k: v[0] for k, v in EXPECTED.items()} | {exact: 1, agree: 1}
    assert {m["method"]: m["correct"] for m in data["methods"]} == expected
    rows = {m["method"]: m for m in data["methods"]}
    assert rows[exact]["tokens_per_question"] <= rows["SLM-MUX"]["tokens_per_question"]
    assert json.loads((out / "report.json").read_text()) == data
    markdown = (out / "report.md").read_text()
    assert "| SLM-MUX | 25.0 % |" in markdown and "accuracy_vs_tokens.png" in markdown
    assert (out / "accuracy_vs_tokens.png").read_bytes()[:4] == b"\x89PNG"
    table = invoke("eval", "--runs", str(RUNS), "--profile", str(profile))
    assert "SLM-MUX" in table.stdout and "75.0%" in table.stdout  # the oracle


def test_eval_bad_input(tmp_path: Path) -> None:
    result = invoke("eval", "--profile", "tiny")
    assert result.exit_code == 2 and "either --tasks" in result.output
    result = invoke("eval", "--runs", str(RUNS), "--profile", "tiny")
    assert result.exit_code == 2 and "no samples of smollm2-135m" in result.output


def test_live_eval_with_the_real_model(smollm2_in_home: Path, tmp_path: Path) -> None:
    tasks = tmp_path / "t.jsonl"
    tasks.write_text(
        json.dumps({"id": "a", "question": "What is 2 + 3?", "answer": "5"}) + "\n"
        + json.dumps({"id": "b", "question": "What is 10 - 4?", "answer": "6"}) + "\n"
    )  # fmt: skip
    out = tmp_path / "ev"
    args = [
        "eval",
        "--tasks",
        str(tasks),
        "--profile",
        "tiny",
        "-k",
        "2",
        "--max-tokens",
        "24",
        "--out",
        str(out),
        "--json",
    ]
    result = invoke(*args)
    assert result.exit_code == 0, result.output
    methods = {m["method"]: m for m in json.loads(result.stdout)["methods"]}
    assert set(methods) == {"smollm2-135m, first sample", "smollm2-135m, majority of 2", "pooled vote", "SLM-MUX",
                            "SLM-MUX + early stop", "oracle"}  # fmt: skip
    assert all(m["questions"] == 2 for m in methods.values())
    assert 0 < methods["SLM-MUX + early stop"]["tokens_per_question"] <= methods["SLM-MUX"]["tokens_per_question"]
    assert methods["SLM-MUX"]["resident_bytes"] > 50 * 2**20  # measured after loading
    lines = (out / "early_stop.jsonl").read_text().splitlines()
    assert [json.loads(line)["task"] for line in lines] == ["a", "b"]
    again = invoke(*args)  # resumed: nothing is drawn twice
    assert again.exit_code == 0 and (out / "early_stop.jsonl").read_text().splitlines() == lines
    assert len((out / "runs.jsonl").read_text().splitlines()) == 2


def test_votes_weighed_by_confidence_are_scored_next_to_the_count(tmp_path: Path) -> None:
    # The fixed file with token confidences: every sample 5 except on D, where m1's "8" is sure (12) and its
    # others unsure (1), and m2's "2" is sure (10) and its two "3" unsure (2). By hand, weighted (T = 1): D's m1
    # share for 8 = e^12 / (e^12 + 2e) beats m2's for 2 = e^10 / (e^10 + 2e^2): 8 ✓; A, B, C as counted: 2 of 4.
    # Filtered to the surest third (one sample each, ties to the earlier): A 7 ✓ (tie → m1), B m1's 5 ✓
    # (tie → m1), C m1's 4 ✗, D m1's 8 ✓ (tie → m1): 3 of 4.
    path = _runs_with_confidence(tmp_path)
    profile = Profile("handcount", "number", (ProfileModel("m1", 0.6), ProfileModel("m2", 0.5)), Sampling(k=3))
    votes = {"weighted": VoteRule("weighted", "lowest_group", 4, 1.0), "filtered": VoteRule("filtered", keep=0.33)}
    report = score_runs(read_runs(path), profile, votes=votes)
    correct = {m.method: m.correct for m in report.methods}
    assert (correct["SLM-MUX"], correct["SLM-MUX (weighted)"], correct["SLM-MUX (filtered)"]) == (1, 2, 3)
    assert [q.answers["SLM-MUX (weighted)"] for q in report.questions] == ["7", "9", "4", "8"]
    assert (
        score_runs(read_runs(RUNS), profile, votes=votes).method("SLM-MUX (weighted)").correct == 1
    )  # no signals: counts


def _runs_with_confidence(tmp_path: Path) -> Path:
    """The fixed runs with token confidences: every sample 5 except on D (see the test above)."""
    sure = {("D", "m1"): [1, 12, 1], ("D", "m2"): [2, 10, 2]}
    lines = []
    for line in RUNS.read_text().splitlines():
        row = json.loads(line)
        for s, c in zip(row["samples"], sure.get((row["task"], row["model"]), [5, 5, 5]), strict=True):
            s["lp"], s["tc"] = [-0.1] * 3, [float(c)] * 3
        lines.append(json.dumps(row))
    path = tmp_path / "runs.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_eval_of_a_profile_that_votes_weighted_scores_its_own_vote(tmp_path: Path) -> None:
    # How the profile answers is a row of its own, beside the count; a weighted vote has no early stop to replay.
    profile = tmp_path / "weighted.yaml"
    profile.write_text(PROFILE_YAML + "vote: {rule: weighted, measure: lowest_group, window: 4, temperature: 1.0}\n")
    result = invoke("eval", "--runs", str(_runs_with_confidence(tmp_path)), "--profile", str(profile), "--json")
    assert result.exit_code == 0, result.output
    correct = {m["method"]: m["correct"] for m in json.loads(result.stdout)["methods"]}
    assert (correct["SLM-MUX"], correct["SLM-MUX (weighted)"]) == (1, 2)
    assert not any("replayed" in method for method in correct)
