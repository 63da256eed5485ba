"""The resident set's rules, with injected loads, sizes and clock (no llama.cpp, no sleeps)."""

from __future__ import annotations

import pytest

from edgemux.errors import BudgetError, EngineError
from edgemux.schedule.resident import ResidentSet

GiB = 2**30


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def tick(self, seconds: float = 1.0) -> None:
        self.now += seconds


class Engine:
    def __init__(self, name: str, measured: int | None = None) -> None:
        self.name, self.closed, self.measured_nbytes = name, False, measured

    def close(self) -> None:
        self.closed = True


SIZES = {"a-1g": 1 * GiB, "b-2g": 2 * GiB, "c-2g": 2 * GiB, "huge-9g": 9 * GiB}


def resident_set(
    budget: int = 4 * GiB, fail: set[str] | None = None
) -> tuple[ResidentSet, Clock, dict[str, list[Engine]]]:
    clock = Clock()
    made: dict[str, list[Engine]] = {}

    def load(name: str) -> Engine:
        clock.tick(SIZES[name] / GiB)  # bigger models take longer to load
        if fail and name in fail:
            raise EngineError(f"{name}: load failed half-way")
        engine = Engine(name)
        made.setdefault(name, []).append(engine)
        return engine

    return ResidentSet(budget, load, SIZES.__getitem__, clock=clock), clock, made


def test_loads_on_demand_and_reuses() -> None:
    rs, _, made = resident_set()
    with rs.lease("a-1g") as first:
        pass
    with rs.lease("a-1g") as again:
        assert again is first
    assert rs.loads == ["a-1g"] and len(made["a-1g"]) == 1


def test_evicts_least_recently_used_idle_model() -> None:
    rs, clock, made = resident_set()
    for name in ("b-2g", "c-2g"):
        with rs.lease(name):
            clock.tick()
    with rs.lease("a-1g"):  # 4 GiB full: b (used longest ago) goes
        assert rs.names() == ["c-2g", "a-1g"]
    assert made["b-2g"][0].closed and not made["c-2g"][0].closed
    assert rs.resident_bytes <= rs.budget_bytes and rs.peak_bytes <= rs.budget_bytes


def test_equal_recency_evicts_the_cheapest_reload() -> None:
    rs, clock, made = resident_set(budget=4 * GiB)
    rs.acquire("a-1g")  # loads in 1 s
    rs.acquire("b-2g")  # loads in 2 s
    clock.now = 100.0
    rs.release("a-1g")
    rs.release("b-2g")  # both last used at t=100; 1 GiB free
    with rs.lease("c-2g"):  # needs 2 GiB: evicting either one is enough; a-1g is cheaper to bring back
        pass
    assert rs.names() == ["b-2g", "c-2g"] and made["a-1g"][0].closed


def test_never_evicts_a_held_model() -> None:
    rs, _, made = resident_set()
    rs.acquire("b-2g")
    rs.acquire("c-2g")
    assert rs.try_acquire("a-1g") is None  # no room, and both are in use
    with pytest.raises(BudgetError, match=r"every loaded model is held \(b-2g \(in use\), c-2g \(in use\)\)"):
        rs.acquire("a-1g")
    assert not made["b-2g"][0].closed and not made["c-2g"][0].closed


def test_pinned_models_stay() -> None:
    rs, clock, made = resident_set()
    with rs.lease("b-2g"):
        rs.pin("b-2g")
    clock.tick()
    with rs.lease("c-2g"):
        pass
    clock.tick()
    with rs.lease("a-1g"):  # must evict c (idle), not b (pinned, and older)
        pass
    assert "b-2g" in rs.names() and made["c-2g"][0].closed


def test_a_model_that_cannot_fit_alone_fails_with_numbers() -> None:
    rs, _, made = resident_set()
    with pytest.raises(BudgetError, match=r"huge-9g alone needs 9.00 GiB, the budget is 4.00 GiB"):
        rs.acquire("huge-9g")
    assert "huge-9g" not in made and rs.loads == []


def test_failed_load_leaves_the_others_working() -> None:
    rs, _, _ = resident_set(fail={"c-2g"})
    with rs.lease("a-1g"):
        pass
    with pytest.raises(EngineError):
        rs.acquire("c-2g")
    assert rs.names() == ["a-1g"] and rs.resident_bytes == 1 * GiB
    with rs.lease("a-1g"):
        pass


def test_measured_bytes_replace_a_low_estimate() -> None:
    clock = Clock()
    rs = ResidentSet(4 * GiB, lambda name: Engine(name, measured=3 * GiB), lambda name: 2 * GiB, clock=clock)
    with rs.lease("b-2g"):
        assert rs.nbytes("b-2g") == 3 * GiB


def test_close_unloads_everything() -> None:
    rs, _, made = resident_set()
    rs.acquire("a-1g")
    rs.close()
    assert rs.names() == [] and made["a-1g"][0].closed


def test_a_three_model_rotation_loads_once_per_turn() -> None:
    # Room for two of three 2 GiB models: asking for all three in turn, round after round, must load
    # exactly the missing one each time, never the model that was just used.
    rs, clock, _ = resident_set(budget=4 * GiB)
    for _ in range(5):
        for name in ("a-1g", "b-2g", "c-2g"):
            with rs.lease(name):
                clock.tick()
    assert rs.peak_bytes <= 4 * GiB
    assert all(x != y for x, y in zip(rs.loads, rs.loads[1:], strict=False))


def unsized_set(measured: dict[str, int], budget: int = 4 * GiB) -> tuple[ResidentSet, dict[str, Engine]]:
    """Models whose size only loading tells (no shape before download: the estimate is None)."""
    made: dict[str, Engine] = {}

    def load(name: str) -> Engine:
        made[name] = Engine(name, measured=measured[name])
        return made[name]

    return ResidentSet(budget, load, lambda name: SIZES.get(name)), made


def test_a_model_of_unknown_size_is_measured_once_loaded_not_counted_as_zero() -> None:
    rs, made = unsized_set({"a-1g": GiB, "mystery": 2 * GiB})
    rs.acquire("a-1g")
    rs.release("a-1g")
    assert rs.can_acquire("mystery")
    rs.acquire("mystery")
    assert rs.nbytes("mystery") == 2 * GiB and rs.resident_bytes == 3 * GiB
    rs.release("mystery")


def test_a_model_of_unknown_size_that_does_not_fit_is_unloaded_again() -> None:
    rs, made = unsized_set({"a-1g": GiB, "b-2g": 2 * GiB, "mystery": 3 * GiB})
    rs.acquire("a-1g")
    rs.acquire("b-2g")  # both held: nothing can be evicted
    with pytest.raises(BudgetError, match="mystery needs 3.00 GiB"):
        rs.acquire("mystery")
    assert made["mystery"].closed and not rs.is_resident("mystery") and rs.loads == ["a-1g", "b-2g"]
    rs.release("b-2g")  # now b can go to make room: it is evicted for what mystery measured
    rs.acquire("mystery")
    assert rs.names() == ["a-1g", "mystery"] and rs.resident_bytes == 4 * GiB


def test_a_model_of_unknown_size_larger_than_the_budget_says_so() -> None:
    rs, made = unsized_set({"mystery": 5 * GiB})
    with pytest.raises(BudgetError, match="alone needs 5.00 GiB, the budget is 4.00 GiB"):
        rs.acquire("mystery")
    assert made["mystery"].closed and rs.resident_bytes == 0
