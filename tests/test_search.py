"""The search on arrays against the reference rule (mux.tally/decide) and hand-checked cases."""

from __future__ import annotations

import json
import random
from collections import Counter
from pathlib import Path

import pytest
from click.testing import CliRunner

from edgemux.cli import cli
from edgemux.decide.mux import decide, tally
from edgemux.errors import InvalidRequestError
from edgemux.selection.runs import Record
from edgemux.selection.search import build_table, search
from edgemux.types import Sample


def record(
    task: str, model: str, answers: list[str | None], reference: str | None = "1", k: int | None = None
) -> Record:
    samples = tuple(
        Sample(model, j, 100 + j, f"so \\boxed{{{a}}}" if a is not None else "no idea", a, 10 + j, "eos", 1.0 + j)
        for j, a in enumerate(answers[: k or len(answers)])
    )
    return Record(task, model, "number", reference, None, {"k": len(samples)}, 20, samples)


def random_runs(n_models: int, n_tasks: int, k: int, seed: int) -> list[Record]:
    rng = random.Random(seed)
    records = []
    for t in range(n_tasks):
        for m in range(n_models):
            skill = 0.2 + 0.15 * m  # models differ, so tie-breaks by accuracy matter
            answers = ["1" if rng.random() < skill else rng.choice(["2", "3", None]) for _ in range(k)]
            records.append(record(f"t{t}", f"m{m}", answers))
    return records


def test_simulated_mux_equals_the_mux_rule_question_by_question() -> None:
    records = random_runs(4, 60, 5, seed=1)
    result = search(build_table(records), max_models=3)
    accuracy = {m.model: m.accuracy for m in result.models}
    for subset in result.subsets:
        right = 0
        for t in range(60):
            votes = [
                tally(r.model, r.samples, accuracy[r.model])
                for name in subset.models
                for r in records
                if r.task == f"t{t}" and r.model == name
            ]
            right += decide(votes).answer == "1"
        assert subset.by_k[5].mux.mean == pytest.approx(right / 60), subset.models


def test_pooled_vote_self_consistency_union_and_contradiction_by_hand() -> None:
    records = [
        # t0: a is right 2/3; b is confidently wrong -> contradiction; MUX picks b (3/3), pooled picks 9 (3 vs 2)
        record("t0", "a", ["1", "1", "2"]), record("t0", "b", ["9", "9", "9"]),
        # t1: both right
        record("t1", "a", ["1", "1", "1"]), record("t1", "b", ["1", "5", "1"]),
        # t2: nobody has an answer
        record("t2", "a", [None, None, None]), record("t2", "b", [None, "4", None]),
    ]  # fmt: skip
    result = search(build_table(records), max_models=2)
    a, b = result.model("a"), result.model("b")
    assert a.accuracy == pytest.approx(5 / 9) and b.accuracy == pytest.approx(2 / 9)
    assert a.self_consistency[3].mean == pytest.approx(2 / 3) and b.self_consistency[3].mean == pytest.approx(1 / 3)
    assert b.confidently_wrong == pytest.approx(1 / 3) and a.confidently_wrong == 0
    assert a.unparsable == pytest.approx(1 / 3)
    (pair,) = result.subsets
    assert pair.union_accuracy == pytest.approx(2 / 3)
    assert pair.contradiction == pytest.approx(1 / 3)
    assert pair.objective == pytest.approx(1 / 3)
    at3 = pair.by_k[3]
    assert at3.mux.mean == pytest.approx(1 / 3)  # t1 only
    assert at3.pooled.mean == pytest.approx(1 / 3)  # t0: 9 ×3 beats 1 ×2; t1 right
    assert at3.oracle == pytest.approx(2 / 3)
    assert at3.best_single.mean == pytest.approx(2 / 3)
    assert at3.tokens == pytest.approx(2 * (10 + 11 + 12))


def test_subsampled_k_reports_a_spread_within_bounds() -> None:
    result = search(build_table(random_runs(3, 40, 5, seed=2)), max_models=2, repeats=15)
    for subset in result.subsets:
        assert set(subset.by_k) == {1, 2, 3, 4, 5}
        for at in subset.by_k.values():
            assert 0 <= at.mux.low <= at.mux.mean <= at.mux.high <= 1
        assert subset.by_k[5].mux.std == 0  # all samples: one draw
        assert subset.by_k[1].tokens < subset.by_k[5].tokens
    assert any(s.by_k[2].mux.std > 0 for s in result.subsets)


def test_search_over_the_issue_size_finishes() -> None:
    # Its speed (the 2 s target) is measured in bench/offline_speed.py, not asserted here.
    table = build_table(random_runs(4, 100, 5, seed=3))
    result = search(table, max_models=4)
    assert len(result.subsets) == 6 + 4 + 1  # every pair, triple and the four together


def test_bad_runs_say_what_cannot_be_scored() -> None:
    with pytest.raises(InvalidRequestError, match="mix sample counts .*k=3: 1 records, k=2: 1 records"):
        build_table([record("t0", "a", ["1", "1", "1"]), record("t0", "b", ["1", "1"])])
    with pytest.raises(InvalidRequestError, match="nothing to score: 1 tasks without a usable reference"):
        build_table([record("t0", "a", ["1"], reference=None), record("t0", "b", ["1"], reference=None)])
    table = build_table([
        record("t0", "a", ["1"]), record("t0", "b", ["2"]), record("t1", "a", ["1"]),
        record("t2", "a", ["1"], reference=None), record("t2", "b", ["1"], reference=None),
    ])  # fmt: skip
    assert table.tasks == ["t0"]
    assert table.left_out == Counter(
        {"tasks not yet run by every model": 1, "tasks without a usable reference answer": 1}
    )
    with pytest.raises(InvalidRequestError, match="no records"):
        build_table([])


def test_search_command_tables_and_json(tmp_path: Path) -> None:
    runs = tmp_path / "runs.jsonl"
    runs.write_text("".join(r.to_json() + "\n" for r in random_runs(3, 20, 4, seed=5)))
    text = CliRunner().invoke(cli, ["search", "--runs", str(runs), "--max-models", "2"])
    assert text.exit_code == 0, text.output
    assert "m2 + m1" not in text.stdout and "m0 + m1" in text.stdout and "test-time scaling" in text.stdout
    out = CliRunner().invoke(cli, ["search", "--runs", str(runs), "--json", "--max-models", "3"])
    data = json.loads(out.stdout)
    assert data["tasks"] == 20 and data["k"] == 4 and len(data["subsets"]) == 4
    md = CliRunner().invoke(cli, ["search", "--runs", str(runs), "--markdown", "--max-models", "2"]).stdout
    assert "| `m0` + `m1` |" in md and md.count("\n| ---") == 3  # models, subsets, scaling
    bad = CliRunner().invoke(cli, ["search", "--runs", str(tmp_path / "absent.jsonl")])
    assert bad.exit_code == 2 and "no such runs file" in bad.output


def test_seconds_per_token_ignores_a_batch_slowed_by_something_else() -> None:
    # each batch of 3: 10 + 11 + 12 = 33 tokens in 3.0 s (the last sample's finish); one batch was paused
    records = [record(f"t{t}", "m0", ["1", "1", "2"]) for t in range(5)]
    records[2] = Record(**{**records[2].__dict__, "samples": tuple(
        Sample(s.model, s.index, s.seed, s.text, s.answer, s.tokens, s.stop_reason, s.seconds + 600) for s in records[2].samples
    )})  # fmt: skip
    records += [record(f"t{t}", "m1", ["1", "1", "1"]) for t in range(5)]
    stats = search(build_table(records), max_models=2).model("m0")
    assert stats.seconds_per_token == pytest.approx(3.0 / 33)
