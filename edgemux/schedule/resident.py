"""The resident set: which models are loaded, never holding more than the byte budget.

One map of loaded models with a reference count each. Callers hold a model through ``lease`` (or
``acquire``/``release``); only models nobody holds can be evicted, pinned ones never. When a model does not
fit, idle models are evicted by one key — least recently used first, then the one whose reload is cheapest
— until it does; if it cannot fit even alone, the error says so with the numbers instead of thrashing.
Loading, sizing and the clock are injected, so the rules are tested without llama.cpp and without sleeps.
Every decision is logged as a sentence with its numbers (``edgemux -v``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from ..errors import BudgetError
from ..memory.memory import TOLERANCE, format_bytes

__all__ = ["ResidentSet"]

log = logging.getLogger("edgemux.resident")


@dataclass
class _Resident:
    name: str
    engine: Any
    nbytes: int
    load_s: float
    last_used: float
    refs: int = 0
    pinned: bool = False


class ResidentSet:
    """Loaded models within ``budget_bytes``.

    ``load(name)`` returns an engine (anything with ``close()``; ``measured_nbytes`` is used if present);
    ``size_of(name)`` is the estimated bytes before loading, or None when only loading can tell: such a
    model is measured once loaded and unloaded again if what it took does not fit.
    """

    def __init__(
        self,
        budget_bytes: int,
        load: Callable[[str], Any],
        size_of: Callable[[str], int | None],
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.budget_bytes = budget_bytes
        self._load = load
        self._size_of = size_of
        self._clock = clock
        self._resident: dict[str, _Resident] = {}
        self.loads: list[str] = []  # every load, in order (for reports and benchmarks)
        self.peak_bytes = 0

    # -- what is loaded --------------------------------------------------------------------------

    @property
    def resident_bytes(self) -> int:
        return sum(r.nbytes for r in self._resident.values())

    def names(self) -> list[str]:
        return list(self._resident)

    def is_resident(self, name: str) -> bool:
        return name in self._resident

    def nbytes(self, name: str) -> int:
        return self._resident[name].nbytes

    def pin(self, name: str) -> None:
        """Never evict ``name`` (a profile's resident models)."""
        self._resident[name].pinned = True

    # -- leases ------------------------------------------------------------------------------------

    @contextmanager
    def lease(self, name: str) -> Iterator[Any]:
        engine = self.acquire(name)
        try:
            yield engine
        finally:
            self.release(name)

    def acquire(self, name: str) -> Any:
        """Hold ``name``, loading it (and evicting idle models) if needed; BudgetError if it cannot fit."""
        engine = self.try_acquire(name)
        if engine is None:
            raise self._no_room(name, self._size_of(name) or 0)
        return engine

    def _no_room(self, name: str, needed: int) -> BudgetError:
        held = ", ".join(f"{r.name} ({'pinned' if r.pinned else 'in use'})" for r in self._resident.values())
        return BudgetError(
            f"{name} needs {format_bytes(needed)} but only "
            f"{format_bytes(self.budget_bytes - self.resident_bytes)} of the {format_bytes(self.budget_bytes)} "
            f"budget is free and every loaded model is held ({held}): raise --budget or use fewer models at once"
        )

    def can_acquire(self, name: str) -> bool:
        """Whether ``name`` is resident or could be loaded now by evicting idle models only (a model of
        unknown size: whether anything is free or evictable; its load then tells)."""
        if name in self._resident:
            return True
        needed = self._size_of(name)
        if needed is None:
            return self.resident_bytes < self.budget_bytes or self._victims(self.budget_bytes) is not None
        self._check_fits_alone(name, needed)
        return self._victims(needed) is not None

    def _check_fits_alone(self, name: str, needed: int) -> None:
        if needed > self.budget_bytes:
            raise BudgetError(
                f"{name} alone needs {format_bytes(needed)}, the budget is {format_bytes(self.budget_bytes)}: "
                "raise --budget, lower -k or --max-tokens, or drop it from the profile"
            )

    def try_acquire(self, name: str) -> Any | None:
        """Like acquire, but None when room could only be made by evicting models that are held."""
        if name in self._resident:
            entry = self._resident[name]
            entry.refs += 1
            entry.last_used = self._clock()
            return entry.engine
        needed = self._size_of(name)
        if needed is None:
            return self._load_unsized(name)
        self._check_fits_alone(name, needed)
        victims = self._victims(needed)
        if victims is None:
            return None
        for victim in victims:
            self._evict(victim, f"to make room for {name} ({format_bytes(needed)})")
        return self._load_now(name, needed).engine

    def _load_unsized(self, name: str) -> Any:
        """Load a model whose size only loading tells, then make room for what it measured (or unload it)."""
        entry = self._load_now(name, None)
        del self._resident[name]  # while deciding: it must not be its own victim
        victims = self._victims(entry.nbytes) if entry.nbytes <= self.budget_bytes else None
        if victims is None:
            entry.engine.close()
            self.loads.pop()
            if entry.nbytes > self.budget_bytes:
                self._check_fits_alone(name, entry.nbytes)
            raise self._no_room(name, entry.nbytes)
        for victim in victims:
            self._evict(victim, f"to make room for {name} ({format_bytes(entry.nbytes)}, measured)")
        self._resident[name] = entry
        self.peak_bytes = max(self.peak_bytes, self.resident_bytes)
        return entry.engine

    def release(self, name: str) -> None:
        entry = self._resident[name]
        entry.refs = max(0, entry.refs - 1)
        entry.last_used = self._clock()

    def close(self) -> None:
        """Unload every model, held or not (the owner is shutting down)."""
        for name in list(self._resident):
            self._evict(name, "on close")

    # -- decisions --------------------------------------------------------------------------------

    def _eviction_key(self, entry: _Resident) -> tuple[float, float]:
        # Least recently used first; among equals, the one that is cheapest to load again.
        return (entry.last_used, entry.load_s)

    def _victims(self, needed: int) -> list[str] | None:
        """The idle models to evict so ``needed`` bytes fit, in eviction order; None if impossible now."""
        free = self.budget_bytes - self.resident_bytes
        if needed <= free:
            return []
        idle = sorted((r for r in self._resident.values() if r.refs == 0 and not r.pinned), key=self._eviction_key)
        victims = []
        for entry in idle:
            victims.append(entry.name)
            free += entry.nbytes
            if needed <= free:
                return victims
        return None

    def _evict(self, name: str, why: str) -> None:
        entry = self._resident.pop(name)
        idle_s = self._clock() - entry.last_used
        log.info("evicting %s (idle %.0f s, %s) %s", name, idle_s, format_bytes(entry.nbytes), why)
        entry.engine.close()

    def _load_now(self, name: str, estimate_bytes: int | None) -> _Resident:
        free = self.budget_bytes - self.resident_bytes
        log.info(
            "loading %s (%s estimated; %s of %s free)",
            name,
            "size not" if estimate_bytes is None else format_bytes(estimate_bytes),
            format_bytes(free),
            format_bytes(self.budget_bytes),
        )
        start = self._clock()
        engine = self._load(name)  # a load that fails half-way frees what it took (Engine closes itself)
        load_s = self._clock() - start
        measured = getattr(engine, "measured_nbytes", None)
        if estimate_bytes is None:
            # Nothing else knows what it took; where the OS cannot say either, its file is the floor.
            nbytes = measured or getattr(engine, "model_nbytes", 0) or 0
        else:
            nbytes = estimate_bytes
            if measured and abs(measured / estimate_bytes - 1) > TOLERANCE:
                log.warning("%s: measured %s resident, estimated %s (off by more than %.0f %%)", name,
                            format_bytes(measured), format_bytes(estimate_bytes), TOLERANCE * 100)  # fmt: skip
            nbytes = max(measured or 0, estimate_bytes)  # account the larger: the budget is a promise
        entry = _Resident(name, engine, nbytes, load_s, self._clock(), refs=1)
        self._resident[name] = entry
        self.loads.append(name)
        self.peak_bytes = max(self.peak_bytes, self.resident_bytes)
        return entry
