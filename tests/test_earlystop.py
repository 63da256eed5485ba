"""Exact early stop: stopping never changes the decision (property test over random answer streams)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from edgemux.decide.earlystop import ModelProgress, outlook, tie_ranks
from edgemux.decide.mux import decide, tally
from edgemux.types import Sample

ANSWERS = st.sampled_from(["1", "2", "3", None])


def sample(model: str, index: int, answer: str | None, stopped: bool = False) -> Sample:
    return Sample(model, index, index, "", None if stopped else answer, 1, "cancelled" if stopped else "eos", 0.0)


@st.composite
def scenarios(draw):  # type: ignore[no-untyped-def]
    n_models = draw(st.integers(1, 3))
    k = draw(st.integers(1, 5))
    models = [f"m{i}" for i in range(n_models)]
    answers = {m: draw(st.lists(ANSWERS, min_size=k, max_size=k)) for m in models}
    accuracy_mode = draw(st.sampled_from(["none", "all", "mixed"]))
    accuracies = {
        m: None
        if accuracy_mode == "none" or (accuracy_mode == "mixed" and i % 2)
        else draw(st.sampled_from([0.3, 0.5, 0.7]))
        for i, m in enumerate(models)
    }
    order = draw(st.permutations([(m, i) for m in models for i in range(k)]))
    return models, k, answers, accuracies, order


def run_with_early_stop(models, k, answers, accuracies, order, rule="decision"):  # type: ignore[no-untyped-def]
    progress = {m: ModelProgress(k, running=k) for m in models}
    ranks = tie_ranks(models, accuracies)
    finished: dict[str, dict[int, str | None]] = {m: {} for m in models}
    stopped: set[str] = set()
    for m, i in order:
        if m in stopped:
            continue
        finished[m][i] = answers[m][i]
        progress[m].answers.append(answers[m][i])
        progress[m].running -= 1
        view = outlook({n: progress[n] for n in models}, ranks)
        for n in view.hopeless:
            stopped.add(n)
            progress[n].running = 0
        if view.settled is not None or (rule == "answer" and view.answer is not None):
            stopped.update(models)
            break
    votes = []
    for m in models:
        samples = [sample(m, i, finished[m].get(i), stopped=i not in finished[m]) for i in range(k)]
        votes.append(tally(m, samples, accuracies[m]))
    return decide(votes), sum(len(f) for f in finished.values())


@settings(max_examples=3000, deadline=None)
@given(scenarios())
def test_early_stop_never_changes_the_decision(scenario) -> None:  # type: ignore[no-untyped-def]
    models, k, answers, accuracies, order = scenario
    full = decide([tally(m, [sample(m, i, answers[m][i]) for i in range(k)], accuracies[m]) for m in models])
    early, _ = run_with_early_stop(models, k, answers, accuracies, order)
    assert (early.winner, early.answer) == (full.winner, full.answer)
    assert early.confidence <= full.confidence  # a stopped sample counts against: a lower bound


@settings(max_examples=3000, deadline=None)
@given(scenarios())
def test_the_answer_rule_never_changes_the_answer(scenario) -> None:  # type: ignore[no-untyped-def]
    models, k, answers, accuracies, order = scenario
    full = decide([tally(m, [sample(m, i, answers[m][i]) for i in range(k)], accuracies[m]) for m in models])
    early, decoded = run_with_early_stop(models, k, answers, accuracies, order, rule="answer")
    assert early.answer == full.answer
    _, decoded_decision_rule = run_with_early_stop(models, k, answers, accuracies, order)
    assert decoded <= decoded_decision_rule  # it only ever stops sooner


def test_the_answer_settles_when_a_challenger_can_only_agree() -> None:
    # The favourite finished at 2/3 on "7"; the challenger can only win unanimously, and its first sample
    # says "7": whoever wins, the answer is 7.
    progress = {"fav": ModelProgress(3, ["7", "7", "2"], running=0), "ch": ModelProgress(3, ["7"], running=2)}
    view = outlook(progress, tie_ranks(["fav", "ch"], {"fav": 0.6, "ch": 0.4}))
    assert view.settled is None and view.answer == "7"
    progress["ch"] = ModelProgress(3, ["5"], running=2)  # a challenger that could still win with 5
    assert outlook(progress, tie_ranks(["fav", "ch"], {"fav": 0.6, "ch": 0.4})).answer is None


def test_a_unanimous_favourite_settles_before_the_others_finish() -> None:
    models = ["best", "other"]
    answers = {"best": ["7", "7", "7"], "other": ["1", "2", "3"]}
    order = [("best", 0), ("best", 1), ("best", 2)] + [("other", i) for i in range(3)]
    decision, decoded = run_with_early_stop(models, 3, answers, {"best": 0.9, "other": 0.5}, order)
    assert (decision.winner, decision.answer, decoded) == ("best", "7", 3)


def test_a_split_model_becomes_hopeless() -> None:
    a = ModelProgress(3, ["4", "4"], running=1)
    b = ModelProgress(3, ["1", "2"], running=1)  # at most 2/3, and a has at least 2/3 (a ranks first)
    view = outlook({"a": a, "b": b}, tie_ranks(["a", "b"], {}))
    assert view.hopeless == {"b"} and view.settled == "a"
    no_ranks = outlook({"a": a, "b": b}, None)  # tie order unknown: a tie at 2/3 stays possible
    assert no_ranks.hopeless == set() and no_ranks.settled is None


def test_answer_inside_a_model_must_be_fixed() -> None:
    assert ModelProgress(5, ["4", "4", "5"], running=2).fixed_answer() is None  # 5 could still tie
    assert ModelProgress(5, ["4", "4", "4"], running=2).fixed_answer() == "4"
    assert ModelProgress(3, [None, None], running=1).fixed_answer() is None


def test_tie_ranks() -> None:
    assert tie_ranks(["a", "b"], {}) == {"a": 0, "b": 1}
    assert tie_ranks(["a", "b"], {"a": 0.2, "b": 0.8}) == {"b": 0, "a": 1}
    assert tie_ranks(["a", "b"], {"a": 0.2}) is None
