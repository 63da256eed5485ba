"""Mux's event stream and decision plumbing, on the scripted FakeEngine (no llama.cpp)."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgemux.errors import BudgetError, InvalidRequestError, NotFoundError, PromptTooLongError
from edgemux.events import (
    DecisionMade,
    DecodeProgress,
    ModelFinished,
    ModelLoaded,
    ModelLoading,
    ModelStopped,
    SampleFinished,
    SamplingStarted,
)
from edgemux.profiles import Profile, ProfileModel
from edgemux.schedule.runtime import LoadOptions, Mux
from edgemux.testing import FakeEngine, fake_engine_factory
from edgemux.types import Sampling


def profile(names: list[str], accuracies: list[float | None] | None = None, k: int = 3) -> Profile:
    accuracies = accuracies or [None] * len(names)
    models = tuple(ProfileModel(n, a) for n, a in zip(names, accuracies, strict=True))
    return Profile(name="test", kind="number", models=models, sampling=Sampling(k=k, max_tokens=50, seed=7))


def mux(
    names: list[str],
    outputs: dict[str, list[str]],
    created: dict[str, FakeEngine] | None = None,
    options: LoadOptions | None = None,
    **kw: object,
) -> Mux:
    # Without early stop and interleaved, every model draws all its samples: the plain MUX plumbing.
    options = options or LoadOptions(policy="interleave", early_stop=False)
    return Mux(profile(names, **kw), engine_factory=fake_engine_factory(outputs, created), load=options)  # type: ignore[arg-type]


def test_event_stream_order_and_result(fake_models: list[str]) -> None:
    outputs = {
        "alpha": ["so #### 4", "it is #### 5 ok", "#### 4"],
        "beta": ["#### 9", "#### 9", "#### 9 and more words"],
    }
    with mux(fake_models, outputs) as m:
        events = list(m.stream("What is 2 + 2?"))
    kinds = [type(e) for e in events]
    assert kinds[:3] == [ModelLoading, ModelLoaded, SamplingStarted]
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
        assert created and all(not e.prompts for e in created.values())


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


# -- scheduling policies, early stop, the resident set -------------------------------------------------


def test_priority_with_a_unanimous_favourite_never_runs_the_others(fake_models: list[str]) -> None:
    created: dict[str, FakeEngine] = {}
    outputs = {"alpha": ["#### 7"], "beta": ["#### 8"]}
    with mux(fake_models, outputs, created, LoadOptions(policy="priority", early_stop=True)) as m:
        events = list(m.stream("q"))
    result = events[-1].result  # type: ignore[attr-defined]
    assert (result.answer, result.decision.winner) == ("7", "alpha")
    stopped = [e for e in events if isinstance(e, ModelStopped)]
    assert [(e.model, e.samples, e.never_started) for e in stopped] == [("beta", (0, 1, 2), (0, 1, 2))]
    assert "beta" not in created  # never even loaded
    assert result.to_dict()["early_stop"]["stopped_samples"] == [
        {"model": "beta", "index": i, "tokens": 0, "never_started": True} for i in range(3)
    ]


def test_early_stop_agrees_with_full_sampling(fake_models: list[str]) -> None:
    # beta is unanimous after three short samples; alpha, split, can reach at most 2/3 with its long third
    # sample: early stop must cancel that one. The winner's own samples always finish (exact confidence).
    outputs = {"alpha": ["#### 1", "#### 2", "w " * 30 + "#### 3"], "beta": ["#### 3", "#### 3", "#### 3"]}
    answers = {}
    for policy in ("interleave", "priority"):
        for early in (False, True):
            with mux(fake_models, outputs, options=LoadOptions(policy=policy, early_stop=early)) as m:
                r = m.ask("q")
                answers[(policy, early)] = (r.answer, r.decision.winner, r.decision.confidence, r.tokens)
    full = answers[("interleave", False)]
    assert all(a[:3] == full[:3] for a in answers.values())  # answer, winner and confidence
    assert answers[("interleave", True)][3] < full[3]  # alpha's long third sample was not needed


def model_bytes(names: list[str]) -> int:
    """What one of the fake models is estimated to hold (they are alike), to size budgets around it."""
    sizes = {mux(names, {}).models.estimated_bytes(n) for n in names}
    assert len(sizes) == 1 and None not in sizes
    return sizes.pop() or 0


def test_tight_budget_takes_turns(sized_fake_models: list[str]) -> None:
    created: dict[str, FakeEngine] = {}
    budget = model_bytes(sized_fake_models) * 3 // 2  # room for one model at a time
    options = LoadOptions(policy="interleave", early_stop=False, budget=str(budget))
    m = mux(sized_fake_models, {"alpha": ["#### 1"], "beta": ["#### 2"]}, created, options)
    with m:
        result = m.ask("q")
        assert m.resident.peak_bytes <= budget and m.resident.loads == ["alpha", "beta"]
        m.ask("q")  # beta is resident now: it goes first, then alpha swaps in
        assert m.resident.loads == ["alpha", "beta", "alpha"]
    assert {v.model for v in result.decision.votes} == {"alpha", "beta"}
    assert created["alpha"].closed and created["beta"].closed


def test_model_alone_over_budget(sized_fake_models: list[str]) -> None:
    budget = str(model_bytes(sized_fake_models) // 2)
    m = mux(sized_fake_models, {"alpha": ["#### 1"], "beta": ["#### 2"]}, options=LoadOptions(budget=budget))
    with m, pytest.raises(BudgetError, match="alpha alone needs"):
        m.ask("q")


def test_unknown_policy(fake_models: list[str]) -> None:
    with pytest.raises(InvalidRequestError, match="unknown policy"):
        mux(fake_models, {"alpha": ["x"], "beta": ["x"]}, options=LoadOptions(policy="random"))


def test_resident_models_are_preloaded_and_pinned(sized_fake_models: list[str]) -> None:
    created: dict[str, FakeEngine] = {}
    models = (ProfileModel("alpha"), ProfileModel("beta", resident=True))
    p = Profile(name="pinned", kind="number", models=models, sampling=Sampling(k=1, max_tokens=10, seed=1))
    budget = str(model_bytes(sized_fake_models) * 3 // 2)  # one at a time
    m = Mux(p, engine_factory=fake_engine_factory({"alpha": ["#### 1"], "beta": ["#### 2"]}, created),
            load=LoadOptions(policy="interleave", early_stop=False, budget=budget))  # fmt: skip
    with m:
        assert [type(e) for e in m.preload()] == [ModelLoading, ModelLoaded]  # beta, pinned; alpha no room
        assert m.resident.names() == ["beta"]
        with pytest.raises(BudgetError, match="held by pinned models"):
            m.ask("q")  # alpha can never load: the budget is held by a pinned model


def test_a_remote_member_starts_at_once_whatever_the_policy(fake_models: list[str]) -> None:
    from edgemux import paths

    (paths.user_manifests() / "far.yaml").write_text("name: far\nsource: {remote: {url: 'http://h:1/v1', model: m}}\n")
    # alpha (local, ranked first) and beta would run one after the other under priority; far, remote,
    # decodes elsewhere: it is started before alpha and runs beside it
    outputs = {"alpha": ["w " * 20 + "#### 4"] * 3, "beta": ["#### 5"] * 3, "far": ["#### 4"] * 3}
    with mux(["alpha", "beta", "far"], outputs, options=LoadOptions(policy="priority", early_stop=False),
             accuracies=[0.9, 0.8, 0.1]) as m:  # fmt: skip
        events = list(m.stream("q"))
    started = [e.model for e in events if isinstance(e, SamplingStarted)]
    assert started[:2] == ["far", "alpha"]
    progress = [e.model for e in events if isinstance(e, DecodeProgress)]
    first_alpha_done = next(i for i, e in enumerate(events) if isinstance(e, ModelFinished) and e.vote.model == "alpha")
    assert "far" in {e.model for e in events[:first_alpha_done] if isinstance(e, DecodeProgress)}
    assert progress.index("beta") > progress.index("alpha")  # the local ones still take their turns
    result = events[-1].result  # type: ignore[attr-defined]
    assert result.answer == "4" and {v.model for v in result.decision.votes} == {"alpha", "beta", "far"}
