"""Plans for real profiles: where each model's shape comes from (its cached GGUF header, else the
manifest's ``shape:``), and which budget applies (--budget, then EDGEMUX_BUDGET, then the profile's
``budget:``, then a safe share of free memory)."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence

from ..answers.strategies import parse_member
from ..catalog import fetch
from ..catalog.catalog import Catalog
from ..catalog.gguf import read_header
from ..errors import ConfigError, EdgemuxError, InvalidRequestError
from ..memory.memory import ModelShape, Plan, estimate, kv_cells, parse_bytes, plan
from ..memory.osmemory import available_bytes
from ..profiles import Profile
from ..specs import ModelSpec

__all__ = [
    "BudgetSource",
    "default_budget_bytes",
    "estimated_bytes_of",
    "model_bytes",
    "plan_profile",
    "resolve_budget",
    "shape_of",
]

BudgetSource = str  # "--budget", "EDGEMUX_BUDGET", "profile", "default"


def shape_of(spec: ModelSpec) -> ModelShape:
    """The model's shape without loading it: exact from the cached file's header, else from the manifest."""
    path = fetch.cached_path(spec)
    if path.is_file():
        return ModelShape.from_header(read_header(path))
    if spec.shape:
        return ModelShape.from_summary(dict(spec.shape))
    raise InvalidRequestError(
        f"{spec.name} is not cached and its manifest has no shape: run `edgemux models pull {spec.name}` to plan with it"
    )


def default_budget_bytes() -> int:
    """A safe share of what is free now: leave room for the OS, the app and page-cache churn."""
    return int(available_bytes() * 0.8)


def resolve_budget(cli_value: str | None, profile: Profile) -> tuple[int, BudgetSource]:
    for value, source in (
        (cli_value, "--budget"),
        (os.environ.get("EDGEMUX_BUDGET"), "EDGEMUX_BUDGET"),
        (profile.budget, "profile"),
    ):
        if value:
            try:
                budget = parse_bytes(value)
            except InvalidRequestError as e:
                if source == "profile":
                    raise ConfigError(f"{profile.path}: budget: {e}") from None
                raise InvalidRequestError(f"{source}: {e}") from None
            if budget <= 0:
                raise InvalidRequestError(f"{source}: the budget must be positive")
            return budget, source
    return default_budget_bytes(), "default"


def plan_profile(profile: Profile, budget_bytes: int, n_gpu_layers: int = 0, catalog: Catalog | None = None) -> Plan:
    catalog = catalog or Catalog()
    remote = tuple(n for n in profile.model_names if catalog.get(n).is_remote)
    models = [(name, shape_of(catalog.get(name))) for name in profile.model_names if name not in remote]
    s = profile.sampling
    return plan(
        models,
        remote=remote,
        budget_bytes=budget_bytes,
        k=s.k,
        n_ctx=profile.n_ctx,
        max_tokens=s.max_tokens,
        n_gpu_layers=n_gpu_layers,
    )


def model_bytes(catalog: Catalog, name: str, *, cells: int, k: int, n_gpu_layers: int = 0) -> int | None:
    """One model's estimated resident bytes with ``cells`` KV cells and k sequences (None: shape unknown;
    0 for a remote model, which holds nothing here)."""
    try:
        if catalog.get(name).is_remote:
            return 0
        return estimate(name, shape_of(catalog.get(name)), cells=cells, k=k, n_gpu_layers=n_gpu_layers).total_bytes
    except (EdgemuxError, ValueError):
        return None


def estimated_bytes_of(profile: Profile, catalog: Catalog | None = None) -> Callable[[Sequence[str]], int | None]:
    """Resident bytes of some of a profile's members at its k and context, from the memory estimate (None
    when a model's shape is unknown). A model that serves several members counts once."""
    catalog = catalog or Catalog()
    s = profile.sampling
    cells = kv_cells(profile.n_ctx, s.k, s.max_tokens)

    def size(names: Sequence[str]) -> int | None:
        models = dict.fromkeys(parse_member(n).model for n in names)
        sizes = [model_bytes(catalog, n, cells=cells, k=s.k) for n in models]
        return None if None in sizes else sum(n for n in sizes if n is not None)

    return size
