"""Sample confidence from token signals, and the votes that use it (edgemux.confidence, mux.tally)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from edgemux.cli import cli
from edgemux.decide.confidence import VoteRule, answer_mass, letter_tokens, sample_score, weights
from edgemux.decide.mux import decide, tally
from edgemux.errors import InvalidRequestError
from edgemux.testing import FakeEngine
from edgemux.types import Sample, TokenLogprobs, TokenSignals


def signals(confidences: list[float], logprobs: list[float] | None = None) -> TokenSignals:
    return TokenSignals(tuple(logprobs or [-0.1] * len(confidences)), tuple(confidences))


@pytest.mark.parametrize(
    ("confidences", "logprobs", "measure", "window", "expected"),
    [
        ([5, 5, 5, 5], [-1, -2, -3, -2], "mean_logprob", 2, -2.0),
        ([9, 9, 1, 1, 9, 9], None, "lowest_group", 2, 1.0),  # one hesitant stretch marks the sample
        ([9, 9, 1, 3, 9, 9], None, "lowest_group", 3, 13 / 3),  # windows: 19/3, 13/3, 13/3, 21/3
        ([9, 1], None, "lowest_group", 8, 5.0),  # shorter than the window: the mean of all
        ([1, 1, 1, 8, 10], None, "tail", 2, 9.0),  # where the answer is written
        ([1, 2], None, "tail", 5, 1.5),
        ([10] * 18 + [0, 0], None, "bottom_share", 1, 0.0),  # the lowest 10 % of 20 windows: 2 zeros
        ([4, 8] * 10, None, "bottom_share", 2, 6.0),
    ],
)
def test_sample_scores(confidences: list[float], logprobs: list[float] | None, measure: str, window: int,
                       expected: float) -> None:  # fmt: skip
    assert sample_score(signals(confidences, logprobs), measure, window) == pytest.approx(expected)


def test_a_sample_of_no_tokens_scores_lowest() -> None:
    assert sample_score(TokenSignals((), ()), "lowest_group", 4) == -math.inf


def sample(i: int, answer: str | None, confidence: float | None) -> Sample:
    s = signals([confidence] * 4) if confidence is not None else None
    return Sample("m", i, i, "", answer, 4, "eos", 0.0, signals=s)


def test_weighted_vote_is_a_softmax_of_the_scores() -> None:
    samples = [sample(0, "1", 10.0), sample(1, "2", 9.0), sample(2, None, 8.0)]
    w = weights(samples, VoteRule("weighted", "lowest_group", 4, temperature=0.5))
    assert w == pytest.approx([1.0, math.exp(-2), math.exp(-4)])
    assert weights(samples, VoteRule("count")) == [1.0, 1.0, 1.0]
    assert weights(samples, VoteRule("filtered", keep=0.5)) == [1.0, 1.0, 0.0]  # ceil(1.5) = 2 kept
    assert weights(samples, VoteRule("filtered", keep=0.1)) == [1.0, 0.0, 0.0]  # at least one


def test_confidence_can_overturn_a_count_majority() -> None:
    # Two hesitant samples say 7, one sure sample says 9: counting picks 7, weighing picks 9.
    samples = [sample(0, "7", 2.0), sample(1, "7", 2.5), sample(2, "9", 12.0)]
    counted = tally("m", samples)
    assert (counted.answer, counted.confidence, counted.vote) == ("7", pytest.approx(2 / 3), "count")
    weighted = tally("m", samples, rule=VoteRule("weighted", temperature=1.0))
    assert weighted.answer == "9" and weighted.vote == "weighted" and weighted.confidence > 0.99
    assert dict(weighted.shares)["7"] == pytest.approx(1 - weighted.confidence)
    assert dict(weighted.counts) == {"7": 2, "9": 1}  # the counts stay what they were
    filtered = tally("m", samples, rule=VoteRule("filtered", keep=0.33))
    assert (filtered.answer, filtered.confidence) == ("9", pytest.approx(1.0))
    assert "of the weight" in decide([weighted]).reason


def test_a_member_without_signals_falls_back_to_counting() -> None:
    samples = [sample(0, "7", 2.0), sample(1, "7", None), sample(2, "9", 12.0)]
    vote = tally("m", samples, rule=VoteRule("weighted"))
    assert (vote.answer, vote.vote, vote.confidence) == ("7", "count", pytest.approx(2 / 3))


def test_unparsable_samples_keep_their_weight_in_the_denominator() -> None:
    samples = [sample(0, "5", 10.0), sample(1, None, 10.0)]
    assert tally("m", samples, rule=VoteRule("weighted")).confidence == pytest.approx(0.5)


@pytest.mark.parametrize(
    "kwargs", [{"vote": "majority"}, {"measure": "entropy"}, {"window": 0}, {"temperature": 0}, {"keep": 1.5}]
)
def test_bad_rules_are_refused_with_the_choices(kwargs: dict[str, object]) -> None:
    with pytest.raises(InvalidRequestError, match="unknown|needs"):
        VoteRule(**kwargs)  # type: ignore[arg-type]


# -- through a profile and `edgemux ask` --------------------------------------------------------------------


PROFILE = """name: conf
kind: number
models:
  - {{name: alpha, validation_accuracy: 0.8}}
  - {{name: beta, validation_accuracy: 0.5}}
sampling: {{k: 3, max_tokens: 50, seed: 3}}
{vote}
"""


def ask_json(fake_models: list[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path, vote: str,
             *args: str) -> tuple[int, dict[str, Any], str]:  # fmt: skip
    # alpha: two hesitant 7s and a sure 9; beta: 9, 9, 5, all middling. Counting: alpha and beta tie at 2/3,
    # alpha wins on validation accuracy with 7. Weighing: alpha's sure 9 carries it, 9 either way.
    engines = {"alpha": FakeEngine(["#### 7", "#### 7", "#### 9"], confidences=[2.0, 2.5, 12.0]),
               "beta": FakeEngine(["#### 9", "#### 9", "#### 5"], confidences=[6.0, 6.0, 6.0])}  # fmt: skip
    monkeypatch.setattr("edgemux.schedule.loader.llama_engine", lambda spec, *a: engines[spec.name])
    path = tmp_path / "conf.yaml"
    path.write_text(PROFILE.format(vote=vote))
    result = CliRunner().invoke(cli, ["ask", "--profile", str(path), "--json", *args, "What is 4+5?"])
    return result.exit_code, json.loads(result.stdout) if result.stdout.startswith("{") else {}, result.output


def test_the_profile_and_the_flag_choose_the_vote(fake_models: list[str], monkeypatch: pytest.MonkeyPatch,
                                                  tmp_path: Path) -> None:  # fmt: skip
    code, counted, _ = ask_json(fake_models, monkeypatch, tmp_path, "")
    assert code == 0 and counted["answer"] == "7" and counted["models"][0]["vote"] == "count"
    assert counted["early_stop"]["enabled"] is True
    scores = [s["confidence"] for s in counted["models"][0]["samples"]]
    assert scores == [2.0, 2.5, 12.0]  # every sample's score is shown, whatever the rule
    code, weighted, _ = ask_json(fake_models, monkeypatch, tmp_path, "vote: {rule: weighted, temperature: 1.0}")
    alpha = weighted["models"][0]
    assert code == 0 and weighted["answer"] == "9" and weighted["winner"] == "alpha" and alpha["vote"] == "weighted"
    assert alpha["shares"]["9"] == pytest.approx(math.exp(12) / (math.exp(12) + math.exp(2) + math.exp(2.5)), abs=1e-4)
    assert weighted["early_stop"]["enabled"] is False and weighted["calibration"] is None
    code, flagged, _ = ask_json(fake_models, monkeypatch, tmp_path, "", "--vote", "filtered")
    assert code == 0 and flagged["answer"] == "9" and flagged["models"][0]["vote"] == "filtered"


@pytest.mark.parametrize(
    ("vote", "message"),
    [
        ("vote: majority", "unknown vote 'majority'"),
        ("vote: {rule: weighted, window: 0}", "window ≥ 1"),
        ("vote: {rule: weighted, colour: red}", "colour"),
    ],
)
def test_a_malformed_vote_in_a_profile_names_the_key(fake_models: list[str], monkeypatch: pytest.MonkeyPatch,
                                                     tmp_path: Path, vote: str, message: str) -> None:  # fmt: skip
    code, _, output = ask_json(fake_models, monkeypatch, tmp_path, vote)
    assert code == 4 and message in output and "Traceback" not in output


def test_a_weighted_profile_says_its_own_calibration(fake_models: list[str], monkeypatch: pytest.MonkeyPatch,
                                                     tmp_path: Path) -> None:  # fmt: skip
    # the winner (alpha's sure 9) holds ~100 % of its weighted vote: the top bin, not a count level
    measured = """vote: {rule: weighted, temperature: 1.0}
measured:
  tasks: 50
  runs: dev.jsonl
  calibration:
  - {agreeing: 2, k: 3, answered: 20, right: 11, accuracy: 0.55}
  - {vote: weighted, k: 3, share_from: 1.0, share_to: 1.0, answered: 4, right: 4, accuracy: 1.0}
  - {vote: weighted, k: 3, share_from: 0.9, share_to: 1.0, answered: 30, right: 27, accuracy: 0.9}"""
    code, weighted, _ = ask_json(fake_models, monkeypatch, tmp_path, measured)
    assert code == 0 and weighted["answer"] == "9" and weighted["confidence"] < 1.0
    calibration = weighted["calibration"]
    assert (
        calibration["vote"] == "weighted" and calibration["share_from"] == 0.9 and calibration["validation_right"] == 27
    )
    assert "90–100 % of its weighted vote were right 90 % of the time (27 of 30)" in calibration["text"]
    code, counted, _ = ask_json(fake_models, monkeypatch, tmp_path, measured, "--vote", "count")
    assert code == 0 and counted["calibration"]["agreeing"] == 2 and counted["calibration"]["validation_answered"] == 20


def tok(token: int, logprob: float, top: tuple[tuple[int, float], ...] = ()) -> TokenLogprobs:
    return TokenLogprobs(token, logprob, 1.0, top)


LETTER_OF = {10: "A", 11: "B", 12: "C", 13: "D", 21: "B"}  # 21: another way to write B (" B")


@pytest.mark.parametrize(
    ("tokens", "answer", "expected"),
    [
        # the last token that wrote B: B's two spellings summed against A, C and D
        (
            [tok(11, -3.0, ((10, -0.1),)), tok(5, -0.1), tok(21, -0.5, ((21, -0.5), (11, -2.0), (10, -1.5), (99, -3)))],
            "B",
            (math.exp(-0.5) + math.exp(-2.0)) / (math.exp(-0.5) + math.exp(-2.0) + math.exp(-1.5)),
        ),
        ([tok(11, -0.2, ((11, -0.2),))], "B", 1.0),  # no other letter among the alternatives
        ([tok(11, -4.0, ((10, -0.1),))], "B", math.exp(-4.0) / (math.exp(-4.0) + math.exp(-0.1))),  # outside them
        ([tok(11, -0.2, ((11, -0.2), (14, -1.0)))], "B", 1.0),  # 14 is no option of this question
        ([tok(5, -0.1, ((10, -0.1),))], "B", None),  # no token wrote B alone ("Bee")
        ([tok(11, -0.2)], "B", None),  # the alternatives were not kept
        ([tok(11, -0.2, ((11, -0.2),))], None, None),  # no answer
    ],
)
def test_answer_mass(tokens: list[TokenLogprobs], answer: str | None, expected: float | None) -> None:
    mass = answer_mass(tokens, LETTER_OF, answer, "ABCD")
    assert mass == (None if expected is None else pytest.approx(expected))


def test_letter_tokens_find_every_way_a_letter_is_written() -> None:
    vocab = {"": [], " ": [1], "(": [2], ":": [3], ": ": [3, 1], "**": [4], "\n": [5]}

    def tokenize(text: str) -> list[int]:  # a BOS token, then letters with or without a space before them
        if text in vocab:
            return [0, *vocab[text]]
        head, letter = text[:-1], text[-1]
        if head.endswith(" "):
            return [0, *vocab[head[:-1]], 200 + ord(letter)]
        return [0, *vocab[head], 100 + ord(letter)]

    found = letter_tokens(tokenize, "AB")
    assert found == {100 + ord("A"): "A", 200 + ord("A"): "A", 100 + ord("B"): "B", 200 + ord("B"): "B"}


def test_answer_mass_scores_a_sample_and_survives_a_runs_file(tmp_path: Path) -> None:
    from edgemux.selection.runs import Record, read_runs

    sure = TokenSignals((-0.1,), (2.0,), answer_mass=0.9)
    assert sample_score(sure, "answer_mass", 16) == pytest.approx(math.log(0.9))
    assert sample_score(TokenSignals((-0.1,), (2.0,)), "answer_mass", 16) == -math.inf
    settings = {"k": 1, "temperature": 0.3}
    record = Record(
        "t", "m", "choice", "A", 4, settings, 3, (Sample("m", 0, 0, "A", "A", 1, "eos", 0.1, signals=sure),)
    )
    path = tmp_path / "r.jsonl"
    path.write_text(record.to_json() + "\n")
    assert read_runs(path)[0].samples[0].signals == sure
    path.write_text(record.to_json().replace('"am": 0.9', '"am": 1.5') + "\n")
    with pytest.raises(InvalidRequestError, match="'am'"):
        read_runs(path)
