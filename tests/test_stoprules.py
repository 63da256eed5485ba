"""The early stop rules: the confident rule's bars fitted from validation samples, the agree rule, the
profile's `stop:` section, and the real scheduler stopping a question on a sure sample or on agreeing ones
(FakeEngine with scripted token confidences)."""

from __future__ import annotations

import math
import random
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from edgemux.cli import cli
from edgemux.decide.replay import Drawn, mux_decision, replay_question
from edgemux.decide.stoprules import MIN_SAMPLES, Agreement, ConfidenceBars, fit_bar
from edgemux.errors import ConfigError, InvalidRequestError
from edgemux.profiles import Profile, ProfileModel, load_profile, parse_profile
from edgemux.schedule.runtime import LoadOptions, Mux
from edgemux.selection.runs import Record
from edgemux.testing import FakeEngine
from edgemux.types import Sample, Sampling, TokenSignals
from tests.test_build import POOL, SETTINGS, invoke


@pytest.mark.parametrize(
    ("scored", "precision", "bar"),
    [
        # best first: 9 9 8 7 6 right, 5 wrong, 4 right, 3 wrong: at 0.8 the bar goes down to 4 (6/7 right)
        ([(9, True), (9, True), (8, True), (7, True), (6, True), (5, False), (4, True), (3, False)], 0.8, 4),
        ([(9, True), (9, True), (8, True), (7, True), (6, True), (5, False), (4, True), (3, False)], 1.0, 6),
        ([(9, True), (8, True), (7, True), (6, True)], 0.8, None),  # fewer than MIN_SAMPLES above any bar
        ([(9, False)] * 6, 0.5, None),  # never precise enough
        # a bar admits every sample at its score: 5 right and 2 wrong at 6 are one group (5/7 < 0.8)
        ([(9, True)] * 4 + [(6, True), (6, False), (6, False)], 0.8, None),
        ([(math.inf, True), (-math.inf, True)] + [(1.0, True)] * 5, 0.9, 1.0),  # infinite scores ignored
    ],
)
def test_a_bar_is_the_lowest_score_that_keeps_the_precision(
    scored: list[tuple[float, bool]], precision: float, bar: float | None
) -> None:
    assert MIN_SAMPLES == 5
    assert fit_bar(scored, precision) == bar


def sample(model: str, answer: str | None, confidence: float | None) -> Sample:
    signals = None if confidence is None else TokenSignals((-1 / confidence,) * 4, (confidence,) * 4)
    return Sample(model, 0, 1, "", answer, 4, "eos", 0.1, signals=signals)


def test_a_sample_is_sure_at_its_members_bar_with_an_answer_and_signals() -> None:
    bars = ConfidenceBars("tail", 32, 0.8, {"a": 5.0})
    assert bars.is_sure(sample("a", "4", 5.0)) and not bars.is_sure(sample("a", "4", 4.9))
    assert not bars.is_sure(sample("a", None, 9.0)) and not bars.is_sure(sample("a", "4", None))
    assert not bars.is_sure(sample("b", "4", 9.0))  # b has no bar: it never answers alone
    with pytest.raises(ValueError, match="unknown measure"):
        ConfidenceBars("loudness")


STOP_PROFILE = """name: sure
kind: number
models:
  - {{name: alpha, validation_accuracy: 0.8}}
  - {{name: beta, validation_accuracy: 0.5}}
sampling: {{k: 3, max_tokens: 50, seed: 3}}
{stop}
"""


def write_profile(tmp_path: Path, stop: str) -> Path:
    path = tmp_path / "sure.yaml"
    path.write_text(STOP_PROFILE.format(stop=stop))
    return path


def test_the_profile_carries_its_rule_and_bars(tmp_path: Path) -> None:
    p = parse_profile(write_profile(tmp_path, "stop: {rule: confident, measure: tail, window: 8, bars: {alpha: 5}}"))
    assert p.stop_rule == "confident" and p.bars == ConfidenceBars("tail", 8, 0.8, {"alpha": 5.0})
    assert parse_profile(write_profile(tmp_path, "stop: {rule: answer}")).stop_rule == "answer"
    agree = parse_profile(write_profile(tmp_path, "stop: {rule: agree, need: 2, dissent: 0}"))
    assert agree.stop_rule == "agree" and agree.agreement == Agreement(2, 0) and agree.bars is None
    assert parse_profile(write_profile(tmp_path, "stop: {rule: agree}")).agreement == Agreement(3, 1)
    assert parse_profile(write_profile(tmp_path, "")).stop_rule is None


@pytest.mark.parametrize(
    ("stop", "says"),
    [
        ("stop: {rule: sometimes}", "expected one of decision, answer, confident, agree"),
        ("stop: {rule: agree, need: 1}", "at least 2 samples"),
        ("stop: {rule: agree, need: 3, dissent: 3}", "fewer dissenting"),
        ("stop: {rule: agree, need: many}", "key stop.need"),
        ("stop: {rule: confident}", "needs each member's bar"),
        ("stop: {rule: confident, bars: {gamma: 1}}", "not a member of this profile"),
        ("stop: {rule: confident, bars: {alpha: high}}", "key stop.bars.alpha"),
        ("stop: {rule: confident, measure: loudness, bars: {alpha: 1}}", "unknown measure"),
        ("stop: {rule: confident, colour: red, bars: {alpha: 1}}", "unknown key"),
    ],
)
def test_a_bad_stop_section_says_where(tmp_path: Path, stop: str, says: str) -> None:
    with pytest.raises(ConfigError, match=None) as caught:
        parse_profile(write_profile(tmp_path, stop))
    assert says in str(caught.value) and "sure.yaml" in str(caught.value)


def engines(alpha: list[str], alpha_confidence: list[float]) -> dict[str, FakeEngine]:
    # beta: three long, hesitant samples that all say 4 (three of three: it would win under counting)
    return {
        "alpha": FakeEngine(alpha, confidences=alpha_confidence),
        "beta": FakeEngine(["w " * 20 + "#### 4"] * 3, confidences=[3.0]),
    }


def ask(fake_models: list[str], tmp_path: Path, stop: str, scripted: dict[str, FakeEngine],
        stop_rule: str | None = None) -> Any:  # fmt: skip
    profile = parse_profile(write_profile(tmp_path, stop))
    factory = lambda spec, *_: scripted[spec.name]  # noqa: E731
    options = LoadOptions(policy="priority", stop_rule=stop_rule)
    with Mux(profile, engine_factory=factory, load=options) as mux:
        return mux.ask("What is 2+2?")


BARS = "stop: {rule: confident, measure: tail, window: 32, bars: {alpha: 5.0}}"


def test_a_sure_sample_that_is_the_current_answer_ends_the_question(fake_models: list[str], tmp_path: Path) -> None:
    alpha = ["#### 4", "a b c #### 4", "a b c d e f #### 5"]
    sure = ask(fake_models, tmp_path, BARS, engines(alpha, [9.0]))
    assert sure.stop_rule == "confident" and sure.answer == "4" and sure.decision.winner == "alpha"
    # alpha's first sample (2 tokens) was sure: its other two and all of beta's never counted
    assert sorted((s.model, s.index) for s in sure.stopped) == [("alpha", 1), ("alpha", 2), ("beta", 0),
                                                                 ("beta", 1), ("beta", 2)]  # fmt: skip
    exact = ask(fake_models, tmp_path, BARS, engines(alpha, [9.0]), stop_rule="decision")
    # the exact rule draws everything that could still matter: beta's unanimous 4 wins at 3/3
    assert exact.stop_rule == "decision" and exact.decision.winner == "beta" and exact.answer == "4"
    assert sure.tokens < exact.tokens


def test_a_sure_sample_against_the_current_answer_does_not_stop(fake_models: list[str], tmp_path: Path) -> None:
    # alpha: a hesitant 5 first, then a sure 4 (1 against 1: the current answer is still 5, seen first),
    # then a sure 4 again, which is the current answer now (2 of 3): beta is stopped before it starts
    alpha = ["#### 5", "a b #### 4", "a b c d #### 4"]
    result = ask(fake_models, tmp_path, BARS, engines(alpha, [1.0, 9.0, 9.0]))
    assert result.answer == "4" and result.decision.winner == "alpha"
    assert [s.answer for s in result.decision.vote_of("alpha").samples] == ["5", "4", "4"]
    assert {s.model for s in result.stopped} == {"beta"}


def test_the_confident_rule_needs_bars_and_says_how_to_get_them(fake_models: list[str], tmp_path: Path) -> None:
    with pytest.raises(InvalidRequestError, match="no confidence bars.*profile build"):
        ask(fake_models, tmp_path, "", engines(["#### 4"], [9.0]), stop_rule="confident")
    plain = Profile("p", "number", (ProfileModel("alpha"),), Sampling(k=1))
    with pytest.raises(InvalidRequestError, match="unknown stop rule 'never'"):
        Mux(plain, engine_factory=lambda *a: FakeEngine(["#### 1"]), load=LoadOptions(stop_rule="never"))


def test_ask_takes_the_rule_from_the_profile_or_the_flag(fake_models: list[str], tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    scripted = engines(["#### 4", "a b c #### 4", "a b c d e f #### 5"], [9.0])
    monkeypatch.setattr("edgemux.schedule.loader.llama_engine", lambda spec, *a: scripted[spec.name])
    path = write_profile(tmp_path, BARS)
    import json

    shown = CliRunner().invoke(cli, ["ask", "--profile", str(path), "--json", "What is 2+2?"])
    assert shown.exit_code == 0, shown.output
    assert json.loads(shown.stdout)["early_stop"]["rule"] == "confident"
    flagged = CliRunner().invoke(
        cli, ["ask", "--profile", str(path), "--json", "--stop-rule", "answer", "What is 2+2?"]
    )
    assert json.loads(flagged.stdout)["early_stop"]["rule"] == "answer"


def drawn(member: int, rows: list[tuple[int, int, bool, float]]) -> list[Drawn]:
    return [Drawn(member, j, *row) for j, row in enumerate(rows)]


def test_the_replay_spends_what_each_rule_lets_run() -> None:
    # member 0 (wins ties): three 1s of 10, 20 and 30 tokens, the first one sure; member 1: three 3s of 5
    favourite = drawn(0, [(10, 1, True, 9.0), (20, 1, True, 1.0), (30, 1, True, 1.0)])
    challenger = drawn(1, [(5, 3, False, 1.0)] * 3)
    samples = [favourite, challenger]
    assert replay_question(samples, 3, "none") == (75, True, False, 1)  # 3/3 against 3/3: the tie goes to member 0
    # exact: once member 0 has 3/3 nothing can beat it; member 1 never starts
    assert replay_question(samples, 3, "decision") == (60, True, False, 1)
    # confident: member 0's first sample is sure and the current answer: the batch stops at its 10 tokens
    assert replay_question(samples, 3, "confident", [5.0, None]) == (30, True, True, 1)
    assert replay_question(samples, 3, "confident", [10.0, None]) == (60, True, False, 1)  # not sure enough: exact


def write_runs(path: Path, n_tasks: int = 60, seed: int = 1, signals: bool = True) -> Path:
    """A short member whose confident samples are right (and whose unsure ones are often wrong) and a long one
    that is right 60 % of the time: a sure short sample can end the question early."""
    rng = random.Random(seed)
    with path.open("w") as f:
        for t in range(n_tasks):
            for model, tokens, p_right in ((POOL[0], 10, 0.7), (POOL[1], 100, 0.6)):
                samples = []
                for j in range(5):
                    ok = rng.random() < p_right
                    level = (3.0 if ok else 1.0) if model == POOL[0] else rng.choice([1.0, 3.0])
                    answer = "7" if ok else rng.choice(["3", "4"])
                    scored = TokenSignals((-1 / level,) * tokens, (level,) * tokens) if signals else None
                    samples.append(Sample(model, j, j, f"\\boxed{{{answer}}}", answer, tokens, "eos", 0.1,
                                          signals=scored))  # fmt: skip
                f.write(Record(f"t{t}", model, "number", "7", None, SETTINGS, 30, tuple(samples)).to_json() + "\n")
    return path


def test_profile_build_writes_a_confident_rule_that_saves_tokens(tmp_path: Path) -> None:
    runs = write_runs(tmp_path / "r.jsonl")
    out = tmp_path / "p.yaml"
    built = invoke("profile", "build", "--runs", str(runs), "--name", "s", "--out", str(out), "--votes", "count",
                   "--models", f"{POOL[0]},{POOL[1]}", "--budget", "8GiB")  # fmt: skip
    assert built.exit_code == 0, built.output
    profile = load_profile(str(out))
    assert profile.stop_rule == "confident" and profile.bars is not None and POOL[0] in profile.bars.bars
    rows = {row["rule"].split(" (")[0]: row for row in profile.measured["stop_rules"]}
    # each early rule's best, the cheapest chosen; and trace kill on top of it, the best tried (none pays here)
    assert set(rows) == {"none", "decision", "confident", "agree", "trace kill"} and profile.kill is None
    assert rows["confident"]["tokens_per_answer"] <= rows["agree"]["tokens_per_answer"]
    chosen = next(
        r for r in profile.measured["stop_rules"] if r["rule"].startswith(f"confident ({profile.bars.measure}")
    )
    assert chosen["tokens_per_answer"] < rows["decision"]["tokens_per_answer"]
    assert chosen["accuracy"] >= rows["none"]["accuracy"] - 0.01

    exact = tmp_path / "e.yaml"
    plain = invoke("profile", "build", "--runs", str(runs), "--name", "e", "--out", str(exact), "--votes", "count",
                   "--models", f"{POOL[0]},{POOL[1]}", "--budget", "8GiB", "--stops", "exact")  # fmt: skip
    assert plain.exit_code == 0 and load_profile(str(exact)).stop_rule is None


def test_an_answer_a_sure_sample_ended_says_how_often_such_answers_were_right(fake_models: list[str],
                                                                              tmp_path: Path) -> None:  # fmt: skip
    alpha = ["#### 4", "a b c #### 4", "a b c d e f #### 5"]
    measured = ("measured: {tasks: 100, runs: r.jsonl, stop_rules: [{rule: 'confident (tail, window 32, precision "
                "0.8)', tokens_per_answer: 80, accuracy: 0.7, ended_by_a_sure_sample: 40, right_when_ended_so: 36}]}")  # fmt: skip
    result = ask(fake_models, tmp_path, BARS + "\n" + measured, engines(alpha, [9.0]))
    assert result.stopped and result.decision.confidence == pytest.approx(1 / 3)  # one drawn sample of three
    assert result.calibration == {"stop": "confident", "answered": 40, "right": 36, "accuracy": 0.9}
    assert result.calibration_text.endswith("answers ended that way were right 90 % of the time (36 of 40)")
    unmeasured = ask(fake_models, tmp_path, BARS, engines(alpha, [9.0]))
    assert "not calibrated" in unmeasured.calibration_text


def test_a_decision_the_exact_rule_settles_keeps_its_exact_stop(fake_models: list[str], tmp_path: Path) -> None:
    # alpha's three sure 4s finish in one step: 3 of 3, which beta can only tie and alpha wins ties by its
    # validation accuracy: the exact rule settles it, and the answer keeps its exact confidence
    result = ask(fake_models, tmp_path, BARS, engines(["#### 4"] * 3, [9.0]))
    assert result.answer == "4" and result.decision.confidence == 1.0
    assert {s.model for s in result.stopped} == {"beta"} and "not calibrated" not in result.calibration_text


def test_the_replay_breaks_a_tie_inside_a_member_by_draw_order_as_the_vote_does() -> None:
    # Two answers once each: the vote (mux.tally) keeps the one drawn first (index 0), not the one that
    # finished first (the shorter sample, index 1).
    samples = [[Drawn(0, 0, 100, 7, True, 0.0), Drawn(0, 1, 10, 8, False, 0.0)]]
    assert mux_decision([samples[0][1], samples[0][0]], 1, 2) == (0, 7, True)
    for rule in ("none", "decision"):
        assert replay_question(samples, 2, rule).answer == 7


@pytest.mark.parametrize(
    ("answers", "need", "dissent", "agreed"),
    [
        (["4", "4"], 2, 0, "4"),
        (["4", "5"], 2, 0, None),
        (["4", None, "4"], 2, 0, "4"),  # an unparsable sample neither agrees nor dissents
        (["5", "4", "4", "4"], 3, 1, "4"),
        (["5", "4", "4", "4"], 3, 0, None),  # one dissent is too many
        (["5", "6", "4", "4", "4"], 3, 1, None),
        (["4", "4"], 3, 1, None),  # not enough yet
        ([None, None], 2, 0, None),
        ([], 2, 0, None),
    ],
)
def test_agreement_needs_enough_samples_on_one_answer_and_few_against(
    answers: list[str | None], need: int, dissent: int, agreed: str | None
) -> None:
    assert Agreement(need, dissent).agreed(answers) == agreed


def test_agreeing_samples_on_the_current_answer_end_the_question(fake_models: list[str], tmp_path: Path) -> None:
    # alpha: a 5, then two 4s; beta would say 4 three times. Two agreeing with none against: not after the
    # 5 and the first 4, nor after the second 4 (the 5 dissents); with one dissent allowed, after the second 4.
    alpha = ["#### 5", "a b #### 4", "a b c d #### 4"]
    strict = ask(fake_models, tmp_path, "stop: {rule: agree, need: 2, dissent: 0}", engines(alpha, [1.0]))
    assert [s.answer for s in strict.decision.vote_of("alpha").samples] == ["5", "4", "4"]
    assert strict.decision.winner == "beta"  # beta ran: its 3 of 3 beat alpha's 2 of 3
    lenient = ask(fake_models, tmp_path, "stop: {rule: agree, need: 2, dissent: 1}", engines(alpha, [1.0]))
    assert lenient.stop_rule == "agree" and lenient.answer == "4" and lenient.decision.winner == "alpha"
    assert {s.model for s in lenient.stopped} == {"beta"} and lenient.tokens < strict.tokens
    # the flag picks the rule; the profile without a stop section agrees at its default, 3 with 1 against
    flagged = ask(fake_models, tmp_path, "", engines(["#### 4", "a #### 4", "a b #### 4"], [1.0]), stop_rule="agree")
    assert flagged.stop_rule == "agree" and {s.model for s in flagged.stopped} == {"beta"}


def test_agreement_against_the_current_answer_does_not_stop(fake_models: list[str], tmp_path: Path) -> None:
    # pooled over the members, 4 agrees twice (alpha's second, beta's first) and 5 once; but SLM-MUX's
    # current answer is alpha's 5 (drawn first, and alpha wins the 1-of-3 tie with beta): no stop until
    # beta's second 4 makes 4 the answer (then the exact rule settles it)
    scripted = {"alpha": FakeEngine(["#### 5", "a b #### 4", "a b c d e f g h no answer"], confidences=[1.0]),
                "beta": FakeEngine(["#### 4", "w " * 20 + "#### 4", "w " * 20 + "#### 9"], confidences=[1.0])}  # fmt: skip
    result = ask(fake_models, tmp_path, "stop: {rule: agree, need: 2, dissent: 1}", scripted)
    assert result.answer == "4" and result.decision.winner == "beta"


def test_the_replay_of_agree_stops_where_the_scheduler_does() -> None:
    # member 0: 1 (10 tokens), 1 (20), 2 (30); member 1: three 3s. 2 agreeing with none against ends the
    # question at member 0's second sample: its batch stops at 20 tokens, member 1 never starts
    favourite = drawn(0, [(10, 1, True, 0.0), (20, 1, True, 0.0), (30, 2, False, 0.0)])
    samples = [favourite, drawn(1, [(5, 3, False, 0.0)] * 3)]
    assert replay_question(samples, 3, "agree", agreement=Agreement(2, 0)) == (10 + 20 + 20, True, True, 1)
    assert not replay_question(samples, 3, "agree", agreement=Agreement(3, 0)).early


def test_an_answer_agreement_ended_says_how_often_such_answers_were_right(fake_models: list[str],
                                                                          tmp_path: Path) -> None:  # fmt: skip
    measured = ("measured: {tasks: 100, runs: r.jsonl, stop_rules: [{rule: 'agree (2 samples agree, none dissents)', "
                "tokens_per_answer: 80, accuracy: 0.7, ended_early: 50, right_when_ended_so: 40}]}")  # fmt: skip
    stop = "stop: {rule: agree, need: 2, dissent: 0}\n" + measured
    result = ask(fake_models, tmp_path, stop, engines(["#### 4", "a #### 4", "a b #### 5"], [1.0]))
    assert result.calibration == {"stop": "agree", "answered": 50, "right": 40, "accuracy": 0.8}
    assert result.calibration_text.startswith("answered early on agreeing samples")


def test_profile_build_chooses_agree_where_samples_carry_no_signals(tmp_path: Path) -> None:
    runs = write_runs(tmp_path / "r.jsonl", signals=False)
    out = tmp_path / "p.yaml"
    built = invoke("profile", "build", "--runs", str(runs), "--name", "a", "--out", str(out), "--votes", "count",
                   "--models", f"{POOL[0]},{POOL[1]}", "--budget", "8GiB")  # fmt: skip
    assert built.exit_code == 0, built.output
    profile = load_profile(str(out))
    assert profile.stop_rule == "agree" and profile.agreement is not None and profile.bars is None
    rows = {row["rule"].split(" (")[0]: row for row in profile.measured["stop_rules"]}
    assert set(rows) == {"none", "decision", "agree"}
    assert rows["agree"]["tokens_per_answer"] < rows["decision"]["tokens_per_answer"]
    assert rows["agree"]["accuracy"] >= rows["none"]["accuracy"] - 0.01
