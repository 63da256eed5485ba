"""Trace kill (DeepConf's online filter): the window rule, the floors fitted from validation samples, the
profile's `kill:` section, the scheduler with a killed sample (FakeEngine with scripted confidences), and
`profile build` keeping it only where it pays. The real engine's kill is tested in test_engine.py."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import pytest
from click.testing import CliRunner

from edgemux.cli import cli
from edgemux.decide.stoprules import TraceKill, fit_floor, window_below
from edgemux.errors import ConfigError, InvalidRequestError
from edgemux.measure.evaluate import score_runs
from edgemux.profiles import Profile, ProfileModel, parse_profile
from edgemux.schedule.runtime import LoadOptions, Mux
from edgemux.selection.runs import Record, read_runs
from edgemux.selection.search import build_table
from edgemux.selection.stopsearch import fit_trace_kill, score_rule
from edgemux.testing import FakeEngine
from edgemux.types import Sample, Sampling, TokenSignals
from edgemux.ui.live import LiveView
from tests.test_build import POOL, SETTINGS


@pytest.mark.parametrize(
    ("confidences", "floor", "killed_at"),
    [
        # window 4: the means of tokens ..4, ..5, ..6, ..7 are 3, 2.5, 2.0 (not below 2.0), 1.5 (below)
        ([3, 3, 3, 3, 1, 1, 1, 1], 2.0, 7),
        ([3, 3, 3, 3, 1, 1, 1, 1], 1.0, None),  # the lowest window is 1.0: never below it
        ([0, 0, 0], 9.0, None),  # shorter than the window: never killed
        ([5, 5, 5, 5, 5], math.inf, 4),  # an infinite floor kills at the first full window
        ([0, 0, 0, 0, 0], -math.inf, None),
    ],
)
def test_a_sample_is_killed_at_the_first_window_whose_mean_is_below_the_floor(
    confidences: list[float], floor: float, killed_at: int | None
) -> None:
    assert TraceKill(window=4).kill_point(confidences, floor) == killed_at
    at = [n for n in range(len(confidences) + 1) if window_below(confidences, n, floor, 4)]
    assert (at[0] if at else None) == killed_at  # the same rule the engine asks after every token


def test_a_floor_is_a_low_percentile_of_the_lowest_window_confidences() -> None:
    assert fit_floor([5, 1, 4, 2, 3], 50) == 3  # nearest rank, rounding down: the 3rd of 5
    assert fit_floor([5, 1, 4, 2, 3, math.inf], 10) == 1  # infinite scores (no tokens) ignored
    assert fit_floor([5, 1, 4, 2], 10) is None  # fewer than MIN_SAMPLES
    with pytest.raises(ValueError, match="percentile"):
        TraceKill(percentile=100)


KILL_PROFILE = """name: kill
kind: number
models:
  - {{name: alpha, validation_accuracy: 0.8}}
sampling: {{k: 3, max_tokens: 50, seed: 3}}
{kill}
"""


def write_profile(tmp_path: Path, kill: str) -> Path:
    path = tmp_path / "kill.yaml"
    path.write_text(KILL_PROFILE.format(kill=kill))
    return path


FLOORS = "kill: {window: 4, percentile: 10, floors: {alpha: 1.0}}"


def test_the_profile_carries_its_floors(tmp_path: Path) -> None:
    assert parse_profile(write_profile(tmp_path, FLOORS)).kill == TraceKill(4, 10.0, {"alpha": 1.0})
    assert parse_profile(write_profile(tmp_path, "")).kill is None
    for section, error in [
        ("kill: {floors: {gamma: 1.0}}", "not a member"),
        ("kill: {window: 0, floors: {alpha: 1.0}}", "window must be at least 1"),
        ("kill: {percentile: 100, floors: {alpha: 1.0}}", "percentile"),
        ("kill: {floors: {alpha: 1.0}, bars: 2}", "bars"),
        ("kill: {window: 4}", "floors"),
    ]:
        with pytest.raises(ConfigError, match=error):
            parse_profile(write_profile(tmp_path, section))


def ask(tmp_path: Path, kill: str, trace_kill: bool | None = None) -> object:
    # alpha: two hesitant samples that say 5 (confidence 0.5, below the floor of 1.0) and a sure one that
    # says 4; every sample is 7 words (tokens), past the 4-token window
    engine = FakeEngine(["a b c d e #### 5", "a b c d e #### 5", "a b c d e #### 4"], confidences=[0.5, 0.5, 9.0])
    profile = parse_profile(write_profile(tmp_path, kill))
    with Mux(profile, engine_factory=lambda *_: engine, load=LoadOptions(trace_kill=trace_kill)) as mux:
        return mux.ask("What is 2+2?")


def test_a_killed_sample_stops_at_its_window_and_does_not_vote(fake_models: list[str], tmp_path: Path) -> None:
    killed = ask(tmp_path, FLOORS)
    assert killed.answer == "4"  # type: ignore[attr-defined]
    assert [(s.index, s.tokens, s.answer) for s in killed.killed] == [(0, 4, None), (1, 4, None)]  # type: ignore[attr-defined]
    assert killed.to_dict()["early_stop"]["killed_samples"] == [  # type: ignore[attr-defined]
        {"model": "alpha", "index": 0, "tokens": 4},
        {"model": "alpha", "index": 1, "tokens": 4},
    ]
    # the flag turns it off: the two hesitant 5s outvote the 4
    assert ask(tmp_path, FLOORS, trace_kill=False).answer == "5"  # type: ignore[attr-defined]
    with pytest.raises(InvalidRequestError, match="no trace-kill floors"):
        ask(tmp_path, "", trace_kill=True)


def write_runs(path: Path, long_wrong: bool, n_tasks: int = 60, seed: int = 2) -> Path:
    """Two members whose right samples are short and sure (20 tokens at 3.0). Their wrong samples are
    hesitant (0.1-0.3 throughout) and, with ``long_wrong``, 200 tokens long (else 20): killing the most
    hesitant after 16 tokens saves most of their length, and costs no right answer."""
    rng = random.Random(seed)
    with path.open("w") as f:
        for t in range(n_tasks):
            for model in POOL[:2]:
                samples = []
                for j in range(5):
                    ok = rng.random() < 0.6
                    tokens, level = (20, 3.0) if ok else (200 if long_wrong else 20, rng.uniform(0.1, 0.3))
                    answer = "7" if ok else rng.choice(["3", "4"])
                    signals = TokenSignals((-1 / level,) * tokens, (level,) * tokens)
                    samples.append(Sample(model, j, j, f"\\boxed{{{answer}}}", answer, tokens, "eos", 0.1,
                                          signals=signals))  # fmt: skip
                f.write(Record(f"t{t}", model, "number", "7", None, SETTINGS, 30, tuple(samples)).to_json() + "\n")
    return path


def test_profile_build_keeps_trace_kill_only_where_it_saves_tokens(tmp_path: Path) -> None:
    table = build_table(read_runs(write_runs(tmp_path / "long.jsonl", long_wrong=True)))
    kill, (score,) = fit_trace_kill(table, POOL[:2], 5, None)
    assert kill is not None and set(kill.floors) == set(POOL[:2]) and 0.1 < min(kill.floors.values()) < 0.3
    rows = [table.models.index(m) for m in POOL[:2]]
    exact = score_rule(table, rows, 5, "decision")
    assert score.rule.startswith("trace kill") and score.tokens < 0.95 * exact.tokens
    assert score.accuracy >= score_rule(table, rows, 5, "none").accuracy - 0.01
    # the same hesitation on samples as short as the right ones: a kill saves 4 tokens of 20, not enough
    short = build_table(read_runs(write_runs(tmp_path / "short.jsonl", long_wrong=False)))
    kept, tried = fit_trace_kill(short, POOL[:2], 5, None)
    assert kept is None and len(tried) == 1  # the best it tried, for the profile's record


def test_eval_replays_the_profiles_own_rule_with_its_trace_kill(tmp_path: Path) -> None:
    records = read_runs(write_runs(tmp_path / "long.jsonl", long_wrong=True))
    table = build_table(records)
    kill, _ = fit_trace_kill(table, POOL[:2], 5, None)
    members = tuple(ProfileModel(m, 0.6 - i / 10) for i, m in enumerate(POOL[:2]))
    profile = Profile("k", "number", members, Sampling(k=5), kill=kill)
    report = score_runs(records, profile, stops=True)
    killed, exact = (
        report.method("SLM-MUX, decision stop + trace kill (replayed)"),
        report.method("SLM-MUX, exact early stop (replayed)"),
    )
    assert killed.tokens < 0.95 * exact.tokens and killed.correct >= exact.correct - 1


def test_the_live_view_marks_killed_samples_and_says_why(fake_models: list[str], tmp_path: Path) -> None:
    engine = FakeEngine(["a b c d e #### 5", "a b c d e #### 4"], confidences=[0.5, 9.0])
    profile = parse_profile(write_profile(tmp_path, FLOORS))
    view = LiveView(profile.member_names)
    with Mux(profile, engine_factory=lambda *_: engine) as mux:
        for event in mux.stream("What is 2+2?"):
            view.update(event)
    table, note = view.render().renderables[:2]  # type: ignore[attr-defined]
    cells = [str(c) for c in table.columns[1].cells]  # type: ignore[attr-defined]
    assert cells == ["[yellow]4✂[/] [green]7✓[/] [yellow]4✂[/]"]  # samples 1 and 3 (confidence 0.5) were cut
    assert "alpha: 2 samples cut by trace kill" in str(note)


def test_profile_show_says_the_stop_rule_and_the_floors(tmp_path: Path) -> None:
    path = write_profile(tmp_path, FLOORS)
    shown = CliRunner().invoke(cli, ["profile", "show", str(path)])
    assert shown.exit_code == 0, shown.output
    assert "stop rule: decision (exact); trace kill (window 4, floors at percentile 10): alpha 1.00" in shown.output
    as_json = json.loads(CliRunner().invoke(cli, ["profile", "show", str(path), "--json"]).stdout)
    assert as_json["kill"] == {"window": 4, "percentile": 10.0, "floors": {"alpha": 1.0}}
