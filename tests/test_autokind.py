"""kind auto: the kind chosen per question, and open answers through the runtime (scripted engine)."""

from __future__ import annotations

import json

import pytest

from edgemux.answers.autokind import resolve_kind
from edgemux.events import ModelStopped
from edgemux.profiles import Profile, ProfileModel
from edgemux.schedule.runtime import LoadOptions, Mux
from edgemux.testing import fake_engine_factory
from edgemux.types import Sampling


@pytest.mark.parametrize(
    ("question", "choices", "kind"),
    [
        ("Why is the sky blue?", None, "open"),
        ("Who wrote Hamlet?", None, "open"),
        ("What is 17 * 24?", None, "number"),
        ("How many legs does a spider have?", None, "number"),
        ("Simplify $\\frac{6}{8}$.", None, "math"),
        ("Which gas do plants take in?", ("oxygen", "carbon dioxide"), "choice"),
    ],
)
def test_the_rule(question: str, choices: tuple[str, ...] | None, kind: str) -> None:
    assert resolve_kind(question, choices)[0] == kind


def auto_mux(outputs: dict[str, list[str]], members: list[str]) -> Mux:
    profile = Profile(name="t", kind="auto", models=tuple(ProfileModel(n, validation_accuracy=0.5) for n in members),
                      sampling=Sampling(k=3, max_tokens=40, seed=1), measured={"kind": "number"})  # fmt: skip
    return Mux(profile, engine_factory=fake_engine_factory(outputs), load=LoadOptions(early_stop=False))  # type: ignore[arg-type]


def test_an_open_question_is_answered_in_words_by_the_members_that_answer_in_words(fake_models: list[str]) -> None:
    replies = ["Rayleigh scattering\nShort wavelengths scatter more.", "Rayleigh scattering of sunlight", "Dust"]
    with auto_mux({"alpha": replies}, ["alpha:pot", "alpha"]) as m:
        events = list(m.stream("Why is the sky blue?"))
    assert any(isinstance(e, ModelStopped) and e.model == "alpha:pot" for e in events)  # programs sit out
    result = events[-1].result  # type: ignore[attr-defined]
    assert result.kind == "open" and "in words" in result.kind_reason
    assert "Rayleigh scattering" in (result.answer or "") and result.decision.confidence == pytest.approx(2 / 3)
    assert result.text.startswith("Rayleigh scattering")  # a whole reply, as the model wrote it
    clusters = json.loads(json.dumps(result.to_dict()))["clusters"]
    assert clusters["similarity"] == "lexical ≥ 0.8" and [c["size"] for c in clusters["clusters"]] == [2, 1]


def test_a_computation_whose_samples_end_in_no_number_is_read_again_as_words(fake_models: list[str]) -> None:
    replies = ["In 1990 it was George Bush.", "George Bush", "George H. W. Bush was president then."]  # no final number
    with auto_mux({"alpha": replies}, ["alpha"]) as m:
        result = m.ask("Who was the US president in 1990?")
    assert result.kind == "open" and "no member's samples ended in a number" in result.kind_reason
    assert result.answer is not None and "Bush" in result.answer


def test_empty_replies_count_against_their_member_and_the_others_answer(fake_models: list[str]) -> None:
    with auto_mux({"alpha": ["   ", "\n", ""], "beta": ["Paris", "Paris\nIt is the capital.", "Lyon"]},
                  ["alpha", "beta"]) as m:  # fmt: skip
        result = m.ask("What is the capital of France?")
    assert result.decision.vote_of("alpha").unparsable == 3 and result.answer == "Paris"
    with auto_mux({"alpha": ["", " ", "\n\n"]}, ["alpha"]) as m:
        nothing = m.ask("What is the capital of France?")
    assert nothing.answer is None and nothing.decision.reason  # exit 8 with the reason, no traceback


def test_replies_all_cut_off_still_answer_by_their_first_line(fake_models: list[str]) -> None:
    long = "Paris\nIt " + "is the capital and a large city " * 10  # 70 words: cut off at max_tokens 40
    with auto_mux({"alpha": [long], "beta": ["", " ", "\n"]}, ["alpha", "beta"]) as m:
        result = m.ask("What is the capital of France?")
    assert [s.stop_reason for s in result.decision.vote_of("alpha").samples] == ["length"] * 3
    assert result.answer == "Paris" and result.decision.winner == "alpha" and result.text.startswith("Paris\nIt is")
    assert result.decision.vote_of("beta").unparsable == 3
