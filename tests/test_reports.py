"""The measurement layer's outputs on their own: the eval report's tables, its files and plots, and the
live eval's early-stop rows, on the hand-counted runs file of test_eval."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edgemux.errors import InvalidRequestError
from edgemux.measure import plot
from edgemux.measure.evaluate import EvalReport, score_runs
from edgemux.measure.live_eval import is_right, read_early_stop
from edgemux.measure.report import eval_markdown, write_report
from edgemux.profiles import Profile, ProfileModel
from edgemux.selection.runs import read_runs
from edgemux.selection.tasks import Task
from edgemux.types import Sampling

RUNS = Path(__file__).parent / "data" / "eval-runs.jsonl"
PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def report() -> EvalReport:
    profile = Profile("handcount", "number", (ProfileModel("m1", 0.6), ProfileModel("m2", 0.5)), Sampling(k=3))
    return score_runs(read_runs(RUNS), profile)


def test_the_markdown_tables_carry_the_counted_numbers(report: EvalReport) -> None:
    text = eval_markdown(report, source="runs.jsonl")
    # by hand (test_eval): SLM-MUX right on 1 of 4, oracle 3 of 4, m2's majority 60 tokens per question
    assert "| SLM-MUX | 25.0 % | 4.6–69.9 | 90 | 9.0 | — |" in text
    assert "| oracle | 75.0 % |" in text and "| m2, majority of 3 | 50.0 % | 15.0–85.0 | 60 | 6.0 | — |" in text
    # confidences 1, 1, 2/3, 2/3: answering only at 1.00 answers A (right) and B (wrong)
    assert "| ≥ 1.00 | 2 | 50.0 % | 50.0 % |" in text and "| ≥ 0.67 | 4 | 100.0 % | 25.0 % |" in text


def test_left_out_tasks_are_said_below_the_table_not_in_it(report: EvalReport) -> None:
    report.left_out["tasks without a usable reference answer"] = 2
    lines = eval_markdown(report, source="runs.jsonl").splitlines()
    at = lines.index("Left out: 2 tasks without a usable reference answer.")
    assert lines[at - 1] == ""


def test_write_report_writes_markdown_json_and_both_plots(report: EvalReport, tmp_path: Path) -> None:
    write_report(report, tmp_path / "out", source="runs.jsonl")
    out = tmp_path / "out"
    assert json.loads((out / "report.json").read_text())["questions"] == 4
    markdown = (out / "report.md").read_text()
    for png in ("accuracy_vs_tokens.png", "risk_coverage.png"):
        assert (out / png).read_bytes().startswith(PNG) and f"]({png})" in markdown


def test_a_plot_that_cannot_be_written_is_a_clear_error(report: EvalReport, tmp_path: Path) -> None:
    with pytest.raises(InvalidRequestError, match="cannot write"):
        plot.plot_eval(report, tmp_path)  # a directory


def test_a_profile_without_a_curve_says_which_command_writes_one() -> None:
    profile = Profile("hand", "number", (ProfileModel("m1", 0.6),), Sampling(k=3))
    with pytest.raises(InvalidRequestError, match="profile build"):
        plot.plot_curve(profile, Path("unused.png"))


def test_early_stop_rows_resume_past_a_cut_line_and_refuse_a_bad_one(tmp_path: Path) -> None:
    path = tmp_path / "early_stop.jsonl"
    row = {"task": "a", "answer": "4", "tokens": 12, "seconds": 0.5, "stopped": 2}
    path.write_text(json.dumps(row) + "\n" + '{"task": "b", "ans')  # killed while writing b
    assert list(read_early_stop(path)) == ["a"] and read_early_stop(path)["a"].stopped == 2
    path.write_text(json.dumps({"task": "a"}) + "\n")
    with pytest.raises(InvalidRequestError, match="early_stop.jsonl:1: not an early-stop row"):
        read_early_stop(path)
    assert read_early_stop(tmp_path / "missing.jsonl") == {}


def test_live_answers_are_judged_as_the_offline_eval_judges() -> None:
    assert is_right("math", Task("t", "x?", answer="\\frac{1}{2}"), "0.5") is True
    assert is_right("number", Task("t", "x?", answer="1,000"), "1000") is True
    assert is_right("open", Task("t", "who?", answer="Paris", aliases=("Paris", "Paris, France")), "paris") is True
    assert is_right("number", Task("t", "x?", answer="7"), None) is False
    assert is_right("number", Task("t", "x?"), "7") is None
