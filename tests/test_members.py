"""Members (a model with a strategy): names, program-of-thought answers, and members through the runtime,
the runs files and the search — on the scripted engine, with real programs run in the sandbox."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from edgemux.answers.members import canonical_output, program_in, recorded_answer
from edgemux.answers.strategies import Member, parse_member, parse_members
from edgemux.cli import cli
from edgemux.errors import InvalidRequestError
from edgemux.profiles import Profile, ProfileModel, adhoc_profile
from edgemux.sandbox import ProgramRun
from edgemux.schedule.runtime import LoadOptions, Mux
from edgemux.selection.runs import Record, read_runs, read_runs_files
from edgemux.selection.search import build_table
from edgemux.testing import FakeEngine, fake_engine_factory
from edgemux.types import Sample, Sampling

PROGRAM_42 = "```python\nprint(6*7)\n```"  # as prose its last number is 7; run, it prints 42


def test_member_names() -> None:
    assert parse_member("qwen2.5-coder-1.5b:pot") == Member("qwen2.5-coder-1.5b", "pot")
    assert parse_member("qwen2.5-coder-1.5b") == Member("qwen2.5-coder-1.5b", "cot")
    assert parse_member("m:cot").name == "m"  # one spelling per member
    assert parse_member("m:mix") == Member("m", "mix")
    with pytest.raises(InvalidRequestError, match="unknown strategy 'foo'.*cot.*pot.*mix"):
        parse_member("m:foo")
    with pytest.raises(InvalidRequestError, match="named twice"):
        parse_members(["m", "m:cot"])
    assert adhoc_profile(["m:pot", "m"]).model_names == ["m"]  # one model, loaded once
    assert adhoc_profile(["m:pot", "m"]).member_names == ["m:pot", "m"]


@pytest.mark.parametrize(
    ("kind", "printed", "answer"),
    [
        ("number", "42\n", "42"),
        ("number", "18.000000000000004\n", "18"),
        ("number", "debug line\n2.5\n", "2.5"),
        ("number", "$1,200\n", "1200"),
        ("number", "nan\n", None),
        ("number", "", None),
        ("number", "the answer\n", None),
        ("math", "\\frac{3}{4}\n", "\\frac{3}{4}"),
        ("math", "0.75\n", "\\frac{3}{4}"),
        ("choice", "B\n", "B"),
    ],
)
def test_a_programs_printed_answer_in_canonical_form(kind: str, printed: str, answer: str | None) -> None:
    assert canonical_output(kind, printed) == answer


def test_rescoring_a_program_sample_uses_its_recorded_output_and_runs_nothing() -> None:
    ran = ProgramRun("ok", "41\n", "", 0.05)  # recorded: what the program printed when it was collected
    sample = Sample("m:pot", 0, 1, PROGRAM_42, "41", 10, "eos", 1.0, ran)
    assert recorded_answer("number", "m:pot", sample, n_choices=None, tests=None) == "41"  # not re-run: 41
    failed = Sample("m:pot", 0, 1, PROGRAM_42, None, 10, "eos", 1.0, ProgramRun("timeout", "42\n", "", 5.0))
    assert recorded_answer("number", "m:pot", failed, n_choices=None, tests=None) is None
    assert recorded_answer("number", "m", sample, n_choices=None, tests=None) == "7"  # prose: extracted


def test_a_mixed_reply_takes_its_programs_real_output_else_its_texts_answer() -> None:
    mixed = Member("m", "mix")
    invented = "Let me compute.\n```python\nprint(6*7)\n```\n```output\n41\n```\nThe answer is 41."
    ran = Sample("m:mix", 0, 1, invented, None, 10, "eos", 1.0, ProgramRun("ok", "42\n", "", 0.05))
    assert recorded_answer("number", "m:mix", ran, n_choices=None, tests=None) == "42"  # the real output wins
    failed = Sample("m:mix", 0, 1, invented, None, 10, "eos", 1.0, ProgramRun("error", "", "ZeroDivisionError", 0.05))
    assert recorded_answer("number", "m:mix", failed, n_choices=None, tests=None) == "41"  # else the text's
    assert program_in(mixed, "42") is None and program_in(Member("m", "pot"), "42") == "42"  # prose is not code
    assert "```python" in (mixed.instruction("number", None) or "")
    with pytest.raises(InvalidRequestError, match="not :mix"):
        mixed.instruction("code", None)


def mux(
    members: list[str], outputs: dict[str, list[str]], created: dict[str, FakeEngine] | None = None, **kw: object
) -> Mux:
    models = tuple(ProfileModel(n) for n in members)
    profile = Profile(name="t", kind="number", models=models, sampling=Sampling(k=3, max_tokens=50, seed=3))
    options = LoadOptions(**kw)  # type: ignore[arg-type]
    return Mux(profile, engine_factory=fake_engine_factory(outputs, created), load=options)  # type: ignore[arg-type]


@pytest.mark.parametrize("policy", ["priority", "interleave", "staged"])
def test_two_members_of_one_model_vote_separately(fake_models: list[str], policy: str) -> None:
    created: dict[str, FakeEngine] = {}
    with mux(["alpha:pot", "alpha"], {"alpha": [PROGRAM_42]}, created, policy=policy, early_stop=False) as m:
        result = m.ask("What is 6 times 7?")
    votes = {v.model: v for v in result.decision.votes}
    assert votes["alpha:pot"].answer == "42" and votes["alpha"].answer == "7"
    assert all(s.program is not None and s.program.ok for s in votes["alpha:pot"].samples)
    assert all(s.program is None for s in votes["alpha"].samples)
    assert list(created) == ["alpha"]  # loaded once
    first, second = created["alpha"].prompts[0], created["alpha"].prompts[-1]
    assert len(first) != len(second)  # each member asked in its own words
    assert json.loads(json.dumps(result.to_dict()))["models"][0]["samples"][0]["program"]["stdout"] == "42\n"


def test_a_failing_program_is_an_unparsable_sample(fake_models: list[str]) -> None:
    outputs = {
        "alpha": ["```python\nwhile True:\n    pass\n```", "no program here", "```python\nraise ValueError\n```"]
    }
    with mux(["alpha:pot", "beta"], {**outputs, "beta": ["#### 5"]}, early_stop=False) as m:
        result = m.ask("q?")
    vote = result.decision.vote_of("alpha:pot")
    assert [s.answer for s in vote.samples] == [None, None, None] and vote.confidence == 0.0
    statuses = [s.program.status for s in vote.samples if s.program]
    assert statuses[0] in ("timeout", "killed") and statuses[1:] == ["error", "error"]  # loop: wall or CPU limit
    assert result.answer == "5"


def test_collect_records_program_runs_and_search_reads_them_without_running(fake_models: list[str], tmp_path: Path,
                                                                            monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    tasks = tmp_path / "tasks.jsonl"
    tasks.write_text(json.dumps({"id": "t1", "question": "6 times 7?", "answer": "42"}) + "\n")
    outputs = {"alpha": [PROGRAM_42], "beta": ["#### 42"]}
    monkeypatch.setattr("edgemux.schedule.loader.llama_engine", fake_engine_factory(outputs))
    pot, cot = tmp_path / "pot.jsonl", tmp_path / "cot.jsonl"
    runner = CliRunner()
    for out, members in ((pot, "alpha:pot"), (cot, "alpha,beta")):
        result = runner.invoke(cli, ["collect", "--tasks", str(tasks), "--models", members, "-k", "2", "--out",
                                     str(out), "-q"])  # fmt: skip
        assert result.exit_code == 0, result.output
    (record,) = read_runs(pot)
    assert record.model == "alpha:pot" and record.samples[0].program == ProgramRun(
        "ok", "42\n", "", record.samples[0].program.seconds
    )  # type: ignore[union-attr]
    assert "strategies" in record.settings and "Python program" in record.settings["strategies"]["pot"]

    monkeypatch.setattr("edgemux.sandbox.run_python", lambda *a, **k: pytest.fail("re-scoring ran a program"))
    table = build_table(read_runs_files(f"{pot},{cot}"))
    assert table.models == ["alpha:pot", "alpha", "beta"]
    assert table.correct[0].all() and not table.correct[1].any() and table.correct[2].all()
    with pytest.raises(InvalidRequestError, match="twice"):
        read_runs_files(f"{pot},{pot}")
    both = tmp_path / "both.jsonl"
    both.write_text(pot.read_text())
    with pytest.raises(InvalidRequestError, match="in both"):
        read_runs_files(f"{pot},{both}")
    # the same member on another task set (TriviaQA and NQ-open, say) is searched together
    other = tmp_path / "other.jsonl"
    other.write_text(json.dumps({**json.loads(pot.read_text()), "task": "another"}) + "\n")
    assert [r.task for r in read_runs_files(f"{pot},{other}")] == [record.task, "another"]


def test_an_unknown_strategy_is_exit_2_naming_the_strategies() -> None:
    result = CliRunner().invoke(cli, ["ask", "--models", "qwen2.5-coder-1.5b:foo", "What is 2+2?"])
    assert result.exit_code == 2
    assert "unknown strategy 'foo'" in result.output and "pot" in result.output and "Traceback" not in result.output


def test_a_profile_with_an_unknown_strategy_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text("name: p\nkind: number\nmodels:\n  - qwen2.5-coder-1.5b:nope\n")
    result = CliRunner().invoke(cli, ["ask", "--profile", str(path), "q?"])
    assert result.exit_code == 4 and "unknown strategy 'nope'" in result.output


def test_record_round_trip_keeps_the_program_run(tmp_path: Path) -> None:
    sample = Sample("m:pot", 0, 1, PROGRAM_42, "42", 10, "eos", 1.0, ProgramRun("error", "", "ValueError", 0.1))
    record = Record("t", "m:pot", "number", "42", None, {"k": 1}, 5, (sample,))
    path = tmp_path / "r.jsonl"
    path.write_text(record.to_json() + "\n")
    assert read_runs(path)[0].samples[0].program == ProgramRun("error", "", "ValueError", 0.1)


def test_the_live_view_shows_one_row_per_member(fake_models: list[str]) -> None:
    from edgemux.ui.live import LiveView
    from edgemux.ui.tables import vote_table

    with mux(["alpha:pot", "alpha", "beta"], {"alpha": [PROGRAM_42], "beta": ["#### 42"]}, early_stop=False) as m:
        view = LiveView(m.profile.member_names)
        for event in m.stream("6 times 7?"):
            view.update(event)
    assert view.result is not None and set(view.rows) == {"alpha:pot", "alpha", "beta"}
    assert view.rows["alpha:pot"].answers == {0: "42", 1: "42", 2: "42"} and view.rows["alpha"].answers[0] == "7"
    assert [v.model for v in view.result.decision.votes] == ["alpha:pot", "alpha", "beta"]
    assert vote_table(view.result).row_count == 3
