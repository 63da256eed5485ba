"""Confidence an app can act on: calibration measured on validation runs and stored in profiles, said with
every answer; abstention below a threshold (exit 10, the API, the profile); risk–coverage in eval."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from edgemux.cli import cli
from edgemux.decide.calibration import Level, levels_of, risk_coverage, sentence
from edgemux.profiles import load_profile
from edgemux.selection.calibrate import measure
from edgemux.selection.runs import Record
from edgemux.selection.search import build_table
from edgemux.testing import fake_engine_factory
from edgemux.types import Sample


def record(task: str, model: str, answers: list[str | None], reference: str) -> Record:
    samples = tuple(
        Sample(model, j, j, "none" if a is None else f"#### {a}", a, 10, "eos", 1.0) for j, a in enumerate(answers)
    )
    return Record(task, model, "number", reference, None, {"k": len(answers), "max_tokens": 64}, 5, samples)


def test_levels_count_the_winners_agreement_and_rightness() -> None:
    records = [
        record("t1", "a", ["1", "1", "1"], "1"),  # a unanimous, right
        record("t1", "b", ["2", "2", "9"], "1"),
        record("t2", "a", ["5", "6", "5"], "6"),  # a 2/3 wrong; b 1/3
        record("t2", "b", ["6", None, None], "6"),
        record("t3", "a", ["3", "3", "4"], "3"),  # a 2/3 right
        record("t3", "b", ["3", "8", "9"], "3"),
    ]
    levels = measure(build_table(records), ["a", "b"], 3)
    assert [(lv.agreeing, lv.answered, lv.right) for lv in levels] == [(3, 1, 1), (2, 2, 1), (1, 0, 0), (0, 0, 0)]
    assert levels[1].accuracy == 0.5 and levels[2].accuracy is None
    measured = {"tasks": 3, "runs": "r.jsonl", "calibration": [lv.to_dict() for lv in levels]}
    assert levels_of(measured, 3) == levels and levels_of(measured, 5) == []  # another k: not calibrated
    assert sentence(levels[1], measured) == (
        "on 3 validation questions (r.jsonl), answers with 2 of 3 agreeing were right 50 % of the time (1 of 2)"
    )


def test_risk_coverage() -> None:
    points = risk_coverage([1.0, 1.0, 0.6, 0.4], [True, True, False, True])
    assert [(p.threshold, p.answered, p.coverage, p.accuracy) for p in points] == [
        (1.0, 2, 0.5, 1.0), (0.6, 3, 0.75, 2 / 3), (0.4, 4, 1.0, 0.75),
    ]  # fmt: skip


PROFILE = """name: cal
kind: number
models:
  - {{name: alpha, validation_accuracy: 0.8}}
  - {{name: beta, validation_accuracy: 0.5}}
sampling: {{k: 3, max_tokens: 50, seed: 3}}
{extra}
measured:
  runs: dev.jsonl
  tasks: 100
  calibration:
    - {{agreeing: 3, k: 3, answered: 40, right: 38, accuracy: 0.95}}
    - {{agreeing: 2, k: 3, answered: 40, right: 24, accuracy: 0.6}}
    - {{agreeing: 1, k: 3, answered: 20, right: 4, accuracy: 0.2}}
"""


def ask(fake_models: list[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path, outputs: dict[str, list[str]],
        *args: str, extra: str = "") -> tuple[int, str, str]:  # fmt: skip
    monkeypatch.setattr("edgemux.schedule.loader.llama_engine", fake_engine_factory(outputs))
    path = tmp_path / "cal.yaml"
    path.write_text(PROFILE.format(extra=extra))
    result = CliRunner().invoke(cli, ["ask", "--profile", str(path), "--no-early-stop", *args, "What is 2+2?"])
    return result.exit_code, result.stdout, result.stderr


def test_an_answer_comes_with_its_calibration(fake_models: list[str], monkeypatch: pytest.MonkeyPatch,
                                              tmp_path: Path) -> None:  # fmt: skip
    code, out, err = ask(
        fake_models,
        monkeypatch,
        tmp_path,
        {"alpha": ["#### 4", "#### 4", "#### 5"], "beta": ["#### 7", "#### 8", "#### 9"]},
    )
    assert (code, out) == (0, "4\n")
    assert "answers with 2 of 3 agreeing were right 60 % of the time (24 of 40)" in err
    code, out, _ = ask(
        fake_models,
        monkeypatch,
        tmp_path,
        {"alpha": ["#### 4", "#### 4", "#### 5"], "beta": ["#### 7", "#### 8", "#### 9"]},
        "--json",
    )
    data = json.loads(out)
    assert data["calibration"]["validation_accuracy"] == 0.6 and data["abstained"] is False


def test_an_auto_profile_is_calibrated_for_the_kind_it_was_measured_on(
    fake_models: list[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # The shipped default is `kind: auto` measured on GSM8K: a computation read as a number gets the levels
    # (it printed no calibration at all before, since "number" != "auto").
    auto = PROFILE.replace("kind: number", "kind: auto").replace("measured:\n", "measured:\n  kind: number\n")
    monkeypatch.setattr("edgemux.schedule.loader.llama_engine", fake_engine_factory(
        {"alpha": ["#### 4", "#### 4", "#### 4"], "beta": ["#### 7", "#### 8", "#### 9"]}))  # fmt: skip
    path = tmp_path / "auto.yaml"
    path.write_text(auto.format(extra=""))
    result = CliRunner().invoke(cli, ["ask", "--profile", str(path), "--no-early-stop", "--json", "What is 2+2?"])
    data = json.loads(result.stdout)
    assert data["answer"] == "4" and data["calibration"]["agreeing"] == 3
    assert data["calibration"]["validation_accuracy"] == 0.95
    words = CliRunner().invoke(cli, ["ask", "--profile", str(path), "--no-early-stop", "--json", "Who wrote Hamlet?"])
    assert json.loads(words.stdout)["calibration"] is None  # read as open: not what was measured


def test_below_min_confidence_it_says_it_is_not_sure(fake_models: list[str], monkeypatch: pytest.MonkeyPatch,
                                                     tmp_path: Path) -> None:  # fmt: skip
    outputs = {"alpha": ["#### 4", "#### 4", "#### 5"], "beta": ["#### 7", "#### 8", "#### 9"]}
    code, out, err = ask(fake_models, monkeypatch, tmp_path, outputs, "--min-confidence", "0.9")
    assert code == 10 and out == ""
    assert "not sure: best guess 4 from alpha, confidence 0.67 < 0.9" in err and "SLM-MUX vote" in err
    code, out, _ = ask(fake_models, monkeypatch, tmp_path, outputs, "--min-confidence", "0.9", "--json")
    assert code == 10 and json.loads(out)["abstained"] is True and json.loads(out)["answer"] == "4"
    # the profile's abstain_below, and the flag overriding it
    assert ask(fake_models, monkeypatch, tmp_path, outputs, extra="abstain_below: 0.9")[0] == 10
    assert (
        ask(fake_models, monkeypatch, tmp_path, outputs, "--min-confidence", "0.5", extra="abstain_below: 0.9")[0] == 0
    )
    unanimous = {"alpha": ["#### 4"], "beta": ["#### 7", "#### 8", "#### 9"]}
    assert ask(fake_models, monkeypatch, tmp_path, unanimous, "--min-confidence", "0.9")[:2] == (0, "4\n")


def test_abstain_below_must_be_a_share(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(PROFILE.format(extra="abstain_below: 1.5"))
    result = CliRunner().invoke(cli, ["ask", "--profile", str(path), "q?"])
    assert result.exit_code == 4 and "between 0 and 1" in result.stderr


def test_the_python_api_abstains_too(fake_models: list[str], tmp_path: Path) -> None:
    from edgemux.schedule.runtime import LoadOptions, Mux

    path = tmp_path / "cal.yaml"
    path.write_text(PROFILE.format(extra=""))
    factory = fake_engine_factory({"alpha": ["#### 4", "#### 4", "#### 5"], "beta": ["#### 7", "#### 8", "#### 9"]})
    with Mux(load_profile(str(path)), engine_factory=factory, load=LoadOptions(early_stop=False)) as mux:  # type: ignore[arg-type]
        result = mux.ask("q?", min_confidence=0.7)
    assert result.abstained and result.answer == "4"
    assert result.calibration == {"agreeing": 2, "k": 3, "answered": 40, "right": 24, "accuracy": 0.6}


def test_profile_build_stores_the_calibration(tmp_path: Path) -> None:
    from tests.test_build import POOL, invoke, write_runs

    runs = write_runs(tmp_path / "runs.jsonl", dict(zip(POOL, [0.7, 0.5, 0.3, 0.2], strict=True)))
    out = tmp_path / "p.yaml"
    result = invoke("profile", "build", "--runs", str(runs), "--name", "p", "--out", str(out), "--budget", "8GiB")
    assert result.exit_code == 0, result.output
    profile = load_profile(str(out))
    levels = levels_of(profile.measured, profile.sampling.k)
    assert len(levels) == profile.sampling.k + 1 and sum(lv.answered for lv in levels) == profile.measured["tasks"]
    assert all(isinstance(lv, Level) and 0 <= lv.right <= lv.answered for lv in levels)


def test_profile_calibrate_adds_the_measured_levels_to_a_hand_written_profile(tmp_path: Path) -> None:
    from edgemux.selection.runs import RunWriter

    path = tmp_path / "mine.yaml"
    path.write_text("# my own profile: this comment stays\nname: mine\nkind: number\nmodels: [a]\n"
                    "sampling: {k: 3, temperature: 0.7, max_tokens: 64}\n")  # fmt: skip
    settings = {"k": 3, "temperature": 0.7, "top_p": 0.95, "top_k": 40, "min_p": 0.05, "max_tokens": 64}
    runs = tmp_path / "runs.jsonl"
    with RunWriter(runs) as w:
        for t, answers in enumerate([["1", "1", "1"], ["2", "2", "9"], ["3", "4", "5"]]):
            r = record(f"t{t}", "a", answers, "1" if t == 0 else "2" if t == 1 else "7")
            w.append(Record(r.task, r.model, r.kind, r.reference, None, settings, 5, r.samples))
    result = CliRunner().invoke(cli, ["profile", "calibrate", str(path), "--runs", str(runs)])
    assert result.exit_code == 0, result.output
    assert path.read_text().startswith("# my own profile: this comment stays")
    levels = levels_of(load_profile(str(path)).measured, 3)
    assert [(lv.agreeing, lv.answered, lv.right) for lv in levels] == [(3, 1, 1), (2, 1, 1), (1, 1, 0), (0, 0, 0)]
    again = CliRunner().invoke(cli, ["profile", "calibrate", str(path), "--runs", str(runs)])
    assert again.exit_code == 2 and "measured section already" in again.stderr
    other = tmp_path / "other.yaml"
    other.write_text("name: other\nkind: number\nmodels: [a]\nsampling: {k: 3, temperature: 0.3, max_tokens: 64}\n")
    refused = CliRunner().invoke(cli, ["profile", "calibrate", str(other), "--runs", str(runs)])
    assert refused.exit_code == 2 and "temperature=0.7" in refused.stderr
