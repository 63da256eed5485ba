"""Mux's event stream and decision plumbing, on the scripted FakeEngine (no llama.cpp)."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgemux import paths
from edgemux.errors import InvalidRequestError, NotFoundError, PromptTooLongError
from edgemux.profiles import Profile, ProfileModel
from edgemux.runtime import Mux
from edgemux.testing import FakeEngine, fake_engine_factory
from edgemux.types import (
    DecisionMade,
    DecodeProgress,
    ModelFinished,
    ModelLoaded,
    ModelLoading,
    SampleFinished,
    Sampling,
    SamplingStarted,
)

from .conftest import write_minimal_gguf


@pytest.fixture
def fake_models(home: Path, tmp_path: Path) -> list[str]:
    """Two user-registered models whose files are header-only GGUFs (the fake engine never reads them)."""
    names = ["alpha", "beta"]
    paths.user_manifests().mkdir(parents=True)
    for name in names:
        gguf = write_minimal_gguf(tmp_path / f"{name}.gguf")
        (paths.user_manifests() / f"{name}.yaml").write_text(
            f"name: {name}\nfamily: f\narchitecture: llama\nparams_billions: 0.1\nquant: Q4_0\n"
            f"context_length: 2048\nprompt_style: chat\nsource: {{path: {gguf}}}\n"
        )
    return names


def profile(names: list[str], accuracies: list[float | None] | None = None, k: int = 3) -> Profile:
    accuracies = accuracies or [None] * len(names)
    models = tuple(ProfileModel(n, a) for n, a in zip(names, accuracies, strict=True))
    return Profile(name="test", kind="number", models=models, sampling=Sampling(k=k, max_tokens=50, seed=7))


def mux(
    names: list[str], outputs: dict[str, list[str]], created: dict[str, FakeEngine] | None = None, **kw: object
) -> Mux:
    return Mux(profile(names, **kw), engine_factory=fake_engine_factory(outputs, created))  # type: ignore[arg-type]


def test_event_stream_order_and_result(fake_models: list[str]) -> None:
    outputs = {
        "alpha": ["so #### 4", "it is #### 5 ok", "#### 4"],
        "beta": ["#### 9", "#### 9", "#### 9 and more words"],
    }
    with mux(fake_models, outputs) as m:
        events = list(m.stream("What is 2 + 2?"))
    kinds = [type(e) for e in events]
    assert kinds[:4] == [ModelLoading, ModelLoaded, ModelLoading, ModelLoaded]
    assert kinds.count(SamplingStarted) == 2 and kinds.count(SampleFinished) == 6
    assert kinds.count(ModelFinished) == 2 and kinds[-1] is DecisionMade
    assert DecodeProgress in kinds
    result = events[-1].result  # type: ignore[attr-defined]
    assert (result.answer, result.decision.winner, result.decision.confidence) == ("9", "beta", 1.0)
    assert result.text == "#### 9"
    assert result.sampling.seed == 7
    assert [s.seed for s in result.decision.vote_of("alpha").samples] == [7, 8, 9]


def test_models_progress_together(fake_models: list[str]) -> None:
    # Interleaved decoding: both models report progress before either finishes.
    outputs = {"alpha": ["w " * 20 + "#### 1"], "beta": ["w " * 20 + "#### 2"]}
    with mux(fake_models, outputs) as m:
        events = list(m.stream("q"))
    first_finish = next(i for i, e in enumerate(events) if isinstance(e, ModelFinished))
    progressed = {e.model for e in events[:first_finish] if isinstance(e, DecodeProgress)}
    assert progressed == {"alpha", "beta"}


def test_tie_uses_validation_accuracy(fake_models: list[str]) -> None:
    outputs = {"alpha": ["#### 1", "#### 1", "#### 2"], "beta": ["#### 3", "#### 3", "#### 4"]}
    with mux(fake_models, outputs, accuracies=[0.2, 0.6]) as m:
        result = m.ask("q")
    assert (result.answer, result.decision.tie_break) == ("3", "validation_accuracy")


def test_tie_without_accuracies_says_profile_order(fake_models: list[str]) -> None:
    outputs = {"alpha": ["#### 1", "#### 1", "#### 2"], "beta": ["#### 3", "#### 3", "#### 4"]}
    with mux(fake_models, outputs) as m:
        result = m.ask("q")
    assert (result.answer, result.decision.tie_break) == ("1", "profile_order")
    assert "no validation accuracies" in result.to_dict()["reason"]


def test_no_parsable_answer(fake_models: list[str]) -> None:
    outputs = {"alpha": ["no idea"], "beta": ["none either"]}
    with mux(fake_models, outputs) as m:
        result = m.ask("q")
    assert result.answer is None and result.text == "" and result.decision.tie_break == "no_answer"


def test_stopping_the_stream_cancels_decoding(fake_models: list[str]) -> None:
    created: dict[str, FakeEngine] = {}
    outputs = {"alpha": ["w " * 30], "beta": ["w " * 30]}
    with mux(fake_models, outputs, created) as m:
        stream = m.stream("q")
        progressed = set()
        for event in stream:
            if isinstance(event, DecodeProgress):
                progressed.add(event.model)
            if progressed == {"alpha", "beta"}:
                break
        stream.close()
        assert created["alpha"].cancelled + created["beta"].cancelled == 2
    assert all(e.closed for e in created.values())


def test_models_load_once_and_close(fake_models: list[str]) -> None:
    created: dict[str, FakeEngine] = {}
    with mux(fake_models, {"alpha": ["#### 1"], "beta": ["#### 1"]}, created) as m:
        list(m.preload())
        events = list(m.stream("q"))
        assert not any(isinstance(e, ModelLoading) for e in events)
    assert all(e.closed for e in created.values())


def test_empty_question(fake_models: list[str]) -> None:
    with mux(fake_models, {"alpha": ["x"], "beta": ["x"]}) as m, pytest.raises(InvalidRequestError, match="empty"):
        m.ask("   \n")


def test_prompt_too_long_is_raised_before_any_decoding(fake_models: list[str]) -> None:
    created: dict[str, FakeEngine] = {}
    with mux(fake_models, {"alpha": ["#### 1"], "beta": ["#### 1"]}, created) as m:
        with pytest.raises(PromptTooLongError):
            m.ask("word " * 5000)
        assert not created["alpha"].prompts and not created["beta"].prompts


def test_unknown_model_in_profile(home: Path) -> None:
    with pytest.raises(NotFoundError, match="unknown model 'nonesuch'"):
        Mux(profile(["nonesuch"]))


def test_bad_sampling_is_refused(fake_models: list[str]) -> None:
    with mux(fake_models, {"alpha": ["x"], "beta": ["x"]}) as m, pytest.raises(InvalidRequestError, match="k must"):
        m.ask("q", sampling=Sampling(k=0))


def test_completion_style_without_template(fake_models: list[str], tmp_path: Path) -> None:
    created: dict[str, FakeEngine] = {}
    with mux(fake_models, {"alpha": ["#### 3"], "beta": ["#### 3"]}, created) as m:
        list(m.preload())
        created["beta"].has_chat_template = False  # a base model: few-shot raw completion
        m.ask("How many?")
    assert len(created["beta"].prompts[0]) > len(created["alpha"].prompts[0])  # the few-shot examples
