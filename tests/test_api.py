"""The public API: __all__ matches what the package really exports; Mux on the real model."""

from __future__ import annotations

from pathlib import Path

import pytest

import edgemux
from edgemux import DecisionMade, ModelLoaded, Mux, SampleFinished, Sampling


def test_all_matches_exports() -> None:
    # Every exported name resolves (they are imported on first use), and nothing else is lazily exported.
    assert all(getattr(edgemux, name) is not None for name in edgemux.__all__)
    assert set(edgemux.__all__) == set(edgemux._HOME)
    assert sorted(edgemux.__all__) == edgemux.__all__
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        edgemux.Nope  # noqa: B018


@pytest.mark.usefixtures("smollm2_in_home")
def test_mux_on_the_real_model() -> None:
    with Mux.from_models(["smollm2-135m"], sampling=Sampling(k=3, max_tokens=32, seed=4)) as mux:
        events = list(mux.stream("What is 2 + 2?"))
        assert isinstance(events[1], ModelLoaded)
        assert sum(isinstance(e, SampleFinished) for e in events) == 3
        result = events[-1].result if isinstance(events[-1], DecisionMade) else None
        assert result is not None and len(result.decision.votes[0].samples) == 3
        again = mux.ask("What is 2 + 2?", sampling=Sampling(k=3, max_tokens=32, seed=4))
        assert [s.text for s in again.decision.votes[0].samples] == [s.text for s in result.decision.votes[0].samples]


def test_from_profile_unknown(home: Path) -> None:
    with pytest.raises(edgemux.NotFoundError):
        Mux.from_profile("nope")
