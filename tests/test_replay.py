"""ReplayEngine drives the real scheduler with recorded samples: early stop never changes the answer."""

from __future__ import annotations

from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from edgemux.profiles import Profile, ProfileModel
from edgemux.schedule.runtime import LoadOptions, Mux
from edgemux.testing import ReplayEngine
from edgemux.types import Sampling


def test_replay_plays_recorded_lengths_and_early_stop_saves_tokens(fake_models: list[str], home: Path) -> None:
    engines = {name: ReplayEngine() for name in fake_models}
    recorded = {
        "alpha": (["\\boxed{4}", "\\boxed{4}", "\\boxed{4}"], [30, 40, 50]),  # unanimous favourite
        "beta": (["\\boxed{5}", "\\boxed{5}", "\\boxed{5}"], [100, 100, 100]),
    }
    profile = Profile("r", "number", tuple(ProfileModel(n) for n in fake_models), Sampling(k=3, max_tokens=500, seed=1))

    def ask(options: LoadOptions) -> tuple[str | None, int]:
        with Mux(profile, load=options, engine_factory=lambda spec, *_: engines[spec.name]) as mux:  # type: ignore[arg-type, return-value]
            for name, (texts, tokens) in recorded.items():
                engines[name].play(texts, tokens)
            result = mux.ask("q")
        return result.answer, result.tokens

    full = ask(LoadOptions(policy="interleave", early_stop=False))
    assert full == ("4", 30 + 40 + 50 + 300)  # a tie at 3/3 goes to alpha (profile order)
    priority = ask(LoadOptions(policy="priority", early_stop=True))
    assert priority == ("4", 120)  # alpha 3/3 cannot be beaten: beta never starts


def test_staged_challengers_stop_before_their_next_sample(fake_models: list[str], home: Path) -> None:
    # The favourite settles at 2/3 on "4"; the challenger's first sample disagrees with its second, so it
    # can no longer reach 3/3: staged decoding never starts its third sample.
    engines = {name: ReplayEngine() for name in fake_models}
    recorded = {
        "alpha": (["\\boxed{4}", "\\boxed{4}", "\\boxed{9}"], [30, 40, 50]),
        "beta": (["\\boxed{5}", "\\boxed{6}", "\\boxed{5}"], [100, 100, 100]),
    }
    profile = Profile("r", "number", tuple(ProfileModel(n) for n in fake_models), Sampling(k=3, max_tokens=500, seed=1))

    def ask(options: LoadOptions) -> tuple[str | None, str | None, int]:
        with Mux(profile, load=options, engine_factory=lambda spec, *_: engines[spec.name]) as mux:  # type: ignore[arg-type, return-value]
            for name, (texts, tokens) in recorded.items():
                engines[name].play(texts, tokens)
            result = mux.ask("q")
        return result.answer, result.decision.winner, result.tokens

    assert ask(LoadOptions(policy="interleave", early_stop=False)) == ("4", "alpha", 420)
    assert ask(LoadOptions(policy="priority")) == ("4", "alpha", 420)  # beta's three samples end together
    assert ask(LoadOptions(policy="staged")) == ("4", "alpha", 320)  # beta's third never starts
    # the answer rule: beta's first sample "5" could still win 3/3 with 5, so the answer is not yet settled
    assert ask(LoadOptions(policy="staged", stop_rule="answer")) == ("4", "alpha", 320)


def test_two_members_of_one_model_replay_their_own_recordings(fake_models: list[str], home: Path) -> None:
    from edgemux.answers.prompts import DEFAULT_INSTRUCTIONS
    from edgemux.answers.strategies import POT_INSTRUCTIONS

    engine = ReplayEngine()
    engine.play(["```python\nprint(4)\n```"] * 3, [20, 20, 20], prompt_has=POT_INSTRUCTIONS["number"][:60])
    engine.play(
        ["\\boxed{5}", "\\boxed{5}", "\\boxed{6}"], [90, 90, 90], prompt_has=DEFAULT_INSTRUCTIONS["number"][:60]
    )
    members = (ProfileModel("alpha:pot"), ProfileModel("alpha"))
    profile = Profile("r", "number", members, Sampling(k=3, max_tokens=500, seed=1))
    for options in (LoadOptions(policy="interleave", early_stop=False), LoadOptions(policy="priority")):
        with Mux(profile, load=options, engine_factory=lambda *_: engine) as mux:  # type: ignore[arg-type, return-value]
            result = mux.ask("q")
        votes = {v.model: v for v in result.decision.votes}
        assert (result.answer, result.decision.winner) == ("4", "alpha:pot")
        if not options.early_stop:
            assert [s.answer for s in votes["alpha"].samples] == ["5", "5", "6"] and result.tokens == 60 + 270
        else:
            assert result.tokens == 60  # the program member is unanimous: the prose member never starts


def test_cheapest_policy_draws_short_samples_first_and_says_which_never_started(
    fake_models: list[str], home: Path
) -> None:
    # alpha wins ties (better validation accuracy) but its samples are long; beta's are short. Under
    # `cheapest` beta draws two, alpha one (no answer), beta its third: beta is unanimous and alpha, at most
    # 2 of 3 now, cannot win: the decision is settled and alpha's last two samples never start. `priority`
    # runs alpha's three first.
    from edgemux.events import ModelStopped
    from edgemux.ui.live import LiveView

    engines = {name: ReplayEngine() for name in fake_models}
    recorded = {
        "alpha": (["no answer", "\\boxed{4}", "\\boxed{4}"], [100, 100, 100]),
        "beta": (["\\boxed{4}"] * 3, [20] * 3),
    }
    members = (ProfileModel("alpha", 0.8, tokens_per_sample=100.0), ProfileModel("beta", 0.5, tokens_per_sample=20.0))
    profile = Profile("r", "number", members, Sampling(k=3, max_tokens=500, seed=1))

    def ask(options: LoadOptions) -> tuple[list[object], LiveView]:
        view = LiveView(profile.member_names)
        with Mux(profile, load=options, engine_factory=lambda spec, *_: engines[spec.name]) as mux:  # type: ignore[arg-type, return-value]
            for name, (texts, tokens) in recorded.items():
                engines[name].play(texts, tokens)
            events = list(mux.stream("q"))
        for event in events:
            view.update(event)  # type: ignore[arg-type]
        return events, view

    _, priority = ask(LoadOptions(policy="priority"))
    events, cheapest = ask(LoadOptions(policy="cheapest"))
    assert priority.result is not None and cheapest.result is not None
    assert (priority.result.answer, priority.result.decision.winner, priority.result.tokens) == ("4", "beta", 360)
    assert (cheapest.result.answer, cheapest.result.decision.winner, cheapest.result.tokens) == ("4", "beta", 160)
    stopped = [e for e in events if isinstance(e, ModelStopped)]
    assert [(e.model, e.samples, e.never_started) for e in stopped] == [("alpha", (1, 2), (1, 2))]
    assert "alpha: 2 samples never started: decision settled: beta has at least 3 of 3" in str(
        cheapest.render().renderables[1]
    )  # type: ignore[attr-defined]
    assert [s["never_started"] for s in cheapest.result.to_dict()["early_stop"]["stopped_samples"]] == [True, True]


@st.composite
def recorded_questions(draw):  # type: ignore[no-untyped-def]
    """Two or three members' recorded samples: answers (None = no answer) and lengths in tokens."""
    n, k = draw(st.integers(2, 3)), draw(st.integers(1, 5))
    answer = st.sampled_from(["1", "2", "3", None])
    samples = {f"m{i}": draw(st.lists(st.tuples(answer, st.integers(1, 40)), min_size=k, max_size=k)) for i in range(n)}
    accuracies = draw(st.sampled_from([None, "all"]))
    acc = {m: (draw(st.sampled_from([0.2, 0.5, 0.8])) if accuracies else None) for m in samples}
    return k, samples, acc


@settings(max_examples=300, deadline=None)
@given(recorded_questions(), st.sampled_from(["priority", "cheapest", "staged", "interleave"]))
def test_decision_rule_keeps_winner_answer_and_confidence_exact(question, policy: str) -> None:  # type: ignore[no-untyped-def]
    """The real scheduler.decode through Mux, on recorded streams: under the default stop rule, early stop
    reports the same winner, answer and confidence as full sampling."""
    k, samples, acc = question
    names = list(samples)
    engines = {name: ReplayEngine() for name in names}
    length = {n: sum(t for _, t in samples[n]) / k for n in names}  # the cheapest policy's order
    members = tuple(ProfileModel(n, acc[n], tokens_per_sample=length[n]) for n in names)
    profile = Profile("r", "number", members, Sampling(k=k, max_tokens=64, seed=1))
    catalog = _FakeCatalog(names)

    def ask(options: LoadOptions) -> tuple[str | None, str | None, float]:
        with Mux(profile, catalog=catalog, load=options, engine_factory=lambda spec, *_: engines[spec.name]) as mux:  # type: ignore[arg-type, return-value]
            for name, recorded in samples.items():
                texts = ["no answer" if a is None else f"\\boxed{{{a}}}" for a, _ in recorded]
                engines[name].play(texts, [t for _, t in recorded])
            result = mux.ask("q")
        return result.answer, result.decision.winner, result.decision.confidence

    full = ask(LoadOptions(policy="interleave", early_stop=False))
    assert ask(LoadOptions(policy=policy, early_stop=True, stop_rule="decision")) == full


class _FakeCatalog:
    """Names that need no manifest: the replay engine never reads a file."""

    def __init__(self, names: list[str]) -> None:
        from edgemux.specs import LocalSource, ModelSpec

        self.specs = {
            n: ModelSpec(n, n, "f", "llama", 0.1, "Q4_0", 4096, "", "chat", LocalSource(f"/{n}.gguf")) for n in names
        }

    def get(self, name: str):  # type: ignore[no-untyped-def]
        return self.specs[name]
