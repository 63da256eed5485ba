"""Exact early stop: stopping never changes the decision (property test over random answer streams, run
through the real decode loop)."""

from __future__ import annotations

from collections.abc import Generator, Iterator, Sequence

from hypothesis import given, settings
from hypothesis import strategies as st

from edgemux.decide.earlystop import ModelProgress, outlook, tie_ranks
from edgemux.decide.mux import decide, tally
from edgemux.events import Event
from edgemux.schedule.scheduler import decode
from edgemux.types import BatchStep, FinishedSequence, Sample

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
    """The real decode loop (``scheduler.decode``, interleave, early stop on) over scripted models whose
    samples finish in exactly the global ``order`` (a model is stepped with nothing new until its turn);
    returns the decision and how many samples were decoded."""
    queue = list(order)
    running: set[str] = set()
    decoded = 0

    def steps(model: str) -> Iterator[BatchStep]:
        nonlocal decoded
        left = k
        while left:
            while queue and queue[0][0] not in running:  # a stopped model's samples never come
                queue.pop(0)
            finished: tuple[FinishedSequence, ...] = ()
            if queue and queue[0][0] == model:
                _, i = queue.pop(0)
                finished = (FinishedSequence(i, "", 1, "eos", 0.0),)
                decoded += 1
                left -= 1
            yield BatchStep(tokens=(1,) * k, finished=finished, prompt_tokens=1, elapsed_s=0.0)

    def start(model: str, indices: Sequence[int]) -> Generator[Event, None, Iterator[BatchStep] | None]:
        running.add(model)
        return steps(model)
        yield  # a generator, as the runtime's start is

    def make_sample(model: str, f: FinishedSequence) -> Sample:
        return sample(model, f.index, answers[model][f.index])

    loop = decode(models, k=k, start=start, finish=running.discard, make_sample=make_sample,
                  validation_accuracy=accuracies.get, ranks=tie_ranks(models, accuracies), policy="interleave",
                  stop_rule=rule)  # fmt: skip
    try:
        while True:
            next(loop)
    except StopIteration as done:
        votes = done.value
    return decide([votes[m] for m in models]), decoded


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


def test_wave_plans_of_each_policy() -> None:
    from edgemux.schedule.scheduler import wave_plan

    order, all3 = ["a", "b", "c"], (0, 1, 2)
    assert wave_plan(order, 3, "priority") == [("a", all3), ("b", all3), ("c", all3)]
    assert wave_plan(order, 3, "interleave") == wave_plan(order, 3, "priority")  # interleave starts them together
    assert wave_plan(order, 2, "staged") == [("a", (0, 1)), ("b", (0,)), ("b", (1,)), ("c", (0,)), ("c", (1,))]
    # cheapest: the shortest samples draw two first, the others one each in order, then everyone the rest
    lengths = {"a": 300.0, "b": 80.0, "c": 150.0}
    assert wave_plan(order, 4, "cheapest", tokens_per_sample=lengths) == [
        ("b", (0, 1)), ("a", (0,)), ("c", (0,)), ("b", (2, 3)), ("a", (1, 2, 3)), ("c", (1, 2, 3)),
    ]  # fmt: skip
    # lengths unknown: the first in order counts as the cheapest; k = 1 leaves nothing for a second round
    assert wave_plan(order, 4, "cheapest")[:3] == [("a", (0, 1)), ("b", (0,)), ("c", (0,))]
    assert wave_plan(["a", "b"], 1, "cheapest", tokens_per_sample=lengths) == [("b", (0,)), ("a", (0,))]
    # a remote member draws everything at once whatever the policy, before the local ones
    assert wave_plan(order, 2, "cheapest", frozenset({"b"}), lengths) == [
        ("b", (0, 1)), ("c", (0, 1)), ("a", (0,)), ("a", (1,)),
    ]  # fmt: skip
