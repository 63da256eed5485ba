"""Task files, runs files and `edgemux collect`: resumable, seeded by task id, strict about bad input."""

from __future__ import annotations

import gzip
import itertools
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from edgemux.answers.extract import canonical_reference
from edgemux.cli import cli
from edgemux.errors import InvalidRequestError
from edgemux.profiles import adhoc_profile
from edgemux.schedule.runtime import LoadOptions, Mux
from edgemux.selection.collect import plan_collection, run_collection, task_seed
from edgemux.selection.runs import RunWriter, read_runs
from edgemux.selection.tasks import guess_kind, load_tasks
from edgemux.testing import fake_engine_factory
from edgemux.types import Sampling, TokenSignals


def write_tasks(path: Path, rows: list[dict[str, object]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


TASKS = [{"id": f"t{i}", "question": f"What is {i} + {i}?", "answer": str(2 * i)} for i in range(4)]


# -- task files -------------------------------------------------------------------------------------------


def test_load_tasks_limit_and_shuffle(tmp_path: Path) -> None:
    path = write_tasks(tmp_path / "t.jsonl", TASKS)
    assert [t.id for t in load_tasks(path, limit=2)] == ["t0", "t1"]
    shuffled = [t.id for t in load_tasks(path, shuffle_seed=3)]
    assert sorted(shuffled) == ["t0", "t1", "t2", "t3"] and shuffled == [t.id for t in load_tasks(path, shuffle_seed=3)]
    assert guess_kind(load_tasks(path)) is None  # plain questions: the profile's kind decides
    with_choices = write_tasks(tmp_path / "c.jsonl", [{"id": 1, "question": "q", "answer": "B", "choices": ["x", "y"]}])
    assert guess_kind(load_tasks(with_choices)) == "choice"
    with_tests = write_tasks(
        tmp_path / "m.jsonl",
        [{"id": 1, "question": "q", "answer": "def f(): pass", "test_list": ["assert f() is None"]}],
    )
    assert guess_kind(load_tasks(with_tests)) == "code" and load_tasks(with_tests)[0].tests == ("assert f() is None",)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("{not json", "t.jsonl:2: not valid JSON"),
        (json.dumps({"id": "x"}), "t.jsonl:2: missing 'question'"),
        (json.dumps({"id": "t0", "question": "again"}), "t.jsonl:2: task id 't0' appears twice"),
        (json.dumps({"id": "x", "question": "q", "choices": "ABCD"}), "'choices' should be a list"),
        (json.dumps([1, 2]), "expected a JSON object"),
    ],
)
def test_bad_task_lines_name_the_line(tmp_path: Path, line: str, message: str) -> None:
    path = tmp_path / "t.jsonl"
    path.write_text(json.dumps(TASKS[0]) + "\n" + line + "\n")
    with pytest.raises(InvalidRequestError, match=message):
        load_tasks(path)


def test_missing_or_empty_task_file(tmp_path: Path) -> None:
    with pytest.raises(InvalidRequestError, match="no such task file"):
        load_tasks(tmp_path / "absent.jsonl")
    (tmp_path / "empty.jsonl").write_text("\n")
    with pytest.raises(InvalidRequestError, match="no tasks"):
        load_tasks(tmp_path / "empty.jsonl")


def test_canonical_reference_matches_extracted_answers() -> None:
    assert canonical_reference("number", "1,430") == "1430"
    assert canonical_reference("math", "\\dfrac{1}{2}") == canonical_reference("math", "\\frac12")
    assert canonical_reference("choice", " c ") == "C"
    assert canonical_reference("choice", "CD") is None


# -- collect on the fake engine ---------------------------------------------------------------------------


def fake_mux(names: list[str], k: int = 3) -> Mux:
    outputs = {names[0]: ["so \\boxed{2}", "so \\boxed{2}", "maybe 3"], names[1]: ["it is 4 words long"]}
    profile = adhoc_profile(names, "number", Sampling(k=k, max_tokens=20))
    options = LoadOptions(policy="interleave", early_stop=False)
    return Mux(profile, engine_factory=fake_engine_factory(outputs), load=options)  # type: ignore[arg-type]


def test_collect_records_every_sample_and_resumes_after_a_kill(fake_models: list[str], tmp_path: Path) -> None:
    tasks = load_tasks(write_tasks(tmp_path / "t.jsonl", TASKS[:3]))
    out = tmp_path / "runs.jsonl"
    with fake_mux(fake_models) as mux:
        first = plan_collection(mux, tasks, out, seed=11)
        assert first.done == 0 and len(first.todo) == 6
        list(itertools.islice(run_collection(mux, first), 3))  # killed after three records
        with out.open("a") as f:
            f.write('{"task": "t1", "model": "be')  # and in the middle of writing the fourth
        second = plan_collection(mux, tasks, out, seed=11)
        assert second.done == 3 and [(t.id, m) for t, m in second.todo] == [
            ("t1", "beta"),
            ("t2", "alpha"),
            ("t2", "beta"),
        ]
        list(run_collection(mux, second))
    records = read_runs(out)
    assert [(r.task, r.model) for r in records] == [(t.id, m) for t in tasks for m in fake_models]
    first_record = records[0]
    assert first_record.reference == "0" and first_record.kind == "number" and first_record.k == 3
    assert [s.answer for s in first_record.samples] == ["2", "2", "3"]
    assert [s.seed for s in first_record.samples] == [task_seed(11, "t0") + j for j in range(3)]
    assert all(s.tokens > 0 and s.stop_reason == "eos" for r in records for s in r.samples)
    assert records[1].samples[0].answer == "4"


def test_resuming_with_other_settings_is_refused(fake_models: list[str], tmp_path: Path) -> None:
    tasks = load_tasks(write_tasks(tmp_path / "t.jsonl", TASKS[:1]))
    out = tmp_path / "runs.jsonl"
    with fake_mux(fake_models) as mux:
        list(run_collection(mux, plan_collection(mux, tasks, out, seed=1)))
    before = out.read_bytes()
    with fake_mux(fake_models, k=2) as mux, pytest.raises(InvalidRequestError, match="other settings .*k=3"):
        plan_collection(mux, tasks, out, seed=1)
    assert out.read_bytes() == before


# -- runs files -------------------------------------------------------------------------------------------


def test_runs_files_read_gz_and_reject_bad_lines(fake_models: list[str], tmp_path: Path) -> None:
    tasks = load_tasks(write_tasks(tmp_path / "t.jsonl", TASKS[:2]))
    out = tmp_path / "runs.jsonl"
    with fake_mux(fake_models) as mux:
        list(run_collection(mux, plan_collection(mux, tasks, out, seed=1)))
    lines = out.read_text().splitlines()
    packed = tmp_path / "runs.jsonl.gz"
    packed.write_bytes(gzip.compress(out.read_bytes()))
    assert read_runs(packed) == read_runs(out)
    with pytest.raises(InvalidRequestError, match="collect writes plain"):
        RunWriter(packed)

    def bad(text: str, message: str) -> None:
        path = tmp_path / "bad.jsonl"
        path.write_text(text)
        with pytest.raises(InvalidRequestError, match=message):
            read_runs(path)

    bad(lines[0] + "\n" + lines[0] + "\n", "bad.jsonl:2: task 't0' for alpha appears twice")
    bad(lines[0] + "\n{oops\n" + lines[1] + "\n", "bad.jsonl:2: not valid JSON")
    row = json.loads(lines[0])
    del row["samples"][1]["answer"]
    bad(json.dumps(row) + "\n", "sample 1 lacks one of")
    bad(json.dumps({"task": "x"}) + "\n", "missing model, kind, settings, samples")
    row = json.loads(lines[0])
    row["samples"][0].update(lp=[-0.5, -0.25], tc=[3.0])
    bad(json.dumps(row) + "\n", "sample 0: 'lp' and 'tc' should be two lists")
    row["samples"][0].update(tc=[3.0, 9.5])
    (tmp_path / "signals.jsonl").write_text(json.dumps(row) + "\n")
    (record,) = read_runs(tmp_path / "signals.jsonl")
    assert record.samples[0].signals == TokenSignals((-0.5, -0.25), (3.0, 9.5))
    assert json.loads(record.to_json())["samples"][0]["tc"] == [3.0, 9.5]
    assert record.samples[1].signals is None  # older files have none


# -- the command with the real model ----------------------------------------------------------------------


def test_collect_command_with_the_real_model(smollm2_in_home: Path, tmp_path: Path) -> None:
    tasks = write_tasks(tmp_path / "t.jsonl", TASKS[1:3])
    out = tmp_path / "runs.jsonl"
    args = [
        "collect",
        "--tasks",
        str(tasks),
        "--models",
        "smollm2-135m",
        "-k",
        "2",
        "--max-tokens",
        "24",
        "--out",
        str(out),
    ]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    records = read_runs(out)
    assert [r.task for r in records] == ["t1", "t2"]
    assert all(r.prompt_tokens > 10 and len({s.seed for s in r.samples}) == 2 for r in records)
    assert all(0 < s.tokens <= 24 and s.text for r in records for s in r.samples)
    # every generated token's logprob and confidence, kept to 4 and 3 decimals
    assert all(s.signals and len(s.signals.logprobs) == len(s.signals.confidences) == s.tokens
               for r in records for s in r.samples)  # fmt: skip
    assert all(lp <= 0 < c for r in records for s in r.samples if s.signals
               for lp, c in zip(s.signals.logprobs, s.signals.confidences, strict=True))  # fmt: skip
    again = CliRunner().invoke(cli, args)  # nothing left to do: nothing is run twice
    assert again.exit_code == 0 and "2 of 2 already" in again.output
    assert read_runs(out) == records
