"""``edgemux profile build``: turn a search over collected runs into a selection profile.

Every (subset, k) the search scored is a candidate; those whose resident set does not fit the budget (the
memory estimate from the GGUF headers) are dropped. Of the rest, the most accurate is the reference, and
the profile takes the *cheapest* candidate (estimated seconds per answer on the machine that collected)
whose simulated MUX accuracy is within ``tolerance`` points of it: accuracy per unit of compute, without
chasing differences smaller than one or two questions. The profile records the models with their measured
accuracies (the tie-break order), k and the sampling settings the runs used, the prompt, and what was
measured, including where a single model's self-consistency or the pooled vote does as well.
"""

from __future__ import annotations

import datetime
import json
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import yaml

from ..answers.strategies import parse_member
from ..catalog.catalog import Catalog
from ..decide.calibration import Calibrated
from ..decide.confidence import VoteRule
from ..decide.mux import COUNT
from ..decide.stoprules import Agreement
from ..errors import BudgetError, InvalidRequestError
from ..memory.memory import format_bytes, plan
from ..schedule.planning import shape_of
from ..types import Sampling
from .search import SearchResult, Spread
from .stopsearch import EarlyStop, StopChoice, StopScore
from .votesearch import VoteCandidate

__all__ = ["Candidate", "candidates", "choose", "curve_document", "profile_document", "write_profile"]


@dataclass(frozen=True)
class Candidate:
    models: tuple[str, ...]
    k: int
    mux: Spread  # simulated accuracy of exactly this setup
    pooled: Spread  # the pooled vote of the same samples
    best_single: Spread  # the best of these models alone, self-consistency at this k
    best_single_model: str
    tokens: float  # per answer
    seconds: float  # per answer, estimated from the measured seconds per token
    resident_bytes: int  # memory estimate with k samples
    fits: bool
    vote: VoteRule = COUNT  # how each member's samples are weighed; mux is held out for a fitted rule
    count_mux: Spread | None = None  # a weighted or filtered candidate: the count rule on the same setup

    @property
    def label(self) -> str:
        vote = "" if self.vote.vote == "count" else f", {self.vote.vote} vote"
        return f"{' + '.join(self.models)} at k={self.k}{vote}"


def candidates(
    result: SearchResult,
    budget_bytes: int,
    *,
    allow_single: bool = False,
    only: Sequence[str] | None = None,
    catalog: Catalog | None = None,
    votes: Sequence[VoteCandidate] = (),
) -> list[Candidate]:
    """Every (subset, k) the search scored, with its cost and memory, and the same setups under each vote of
    ``votes`` (votesearch: same tokens, held-out accuracy); ``only``: just that set of models, at every k
    (one model: its self-consistency). The search must have covered subsets that large."""
    allow_single = allow_single or (only is not None and len(only) == 1)
    catalog = catalog or Catalog()
    model_of = {m.model: parse_member(m.model).model for m in result.models}  # members -> the model each loads
    shapes = {name: shape_of(catalog.get(name)) for name in set(model_of.values())}  # unknown models fail here
    settings = result.settings
    n_ctx, max_tokens = int(settings.get("n_ctx", 4096)), int(settings.get("max_tokens", Sampling().max_tokens))
    stats = {m.model: m for m in result.models}

    def memory(members: tuple[str, ...], k: int) -> tuple[int, bool]:
        models = dict.fromkeys(model_of[m] for m in members)  # a model serving two members is loaded once
        p = plan([(m, shapes[m]) for m in models], budget_bytes=budget_bytes, k=k, n_ctx=n_ctx, max_tokens=max_tokens)
        return p.total_bytes, p.fits

    out = []
    for s in result.subsets:
        for k, at in s.by_k.items():
            best = max(s.models, key=lambda m: stats[m].self_consistency[k].mean)
            out.append(
                Candidate(
                    s.models, k, at.mux, at.pooled, at.best_single, best, at.tokens, at.seconds, *memory(s.models, k)
                )
            )
    if allow_single:
        for m in result.models:
            for k, sc in m.self_consistency.items():
                tokens = m.tokens_per_sample * k
                out.append(
                    Candidate(
                        (m.model,), k, sc, sc, sc, m.model, tokens, tokens * m.seconds_per_token, *memory((m.model,), k)
                    )
                )
    by_setup = {(c.models, c.k): c for c in out}
    out += [replace(by_setup[v.models, v.k], vote=v.vote, mux=v.mux, count_mux=by_setup[v.models, v.k].mux)
            for v in votes if (v.models, v.k) in by_setup]  # fmt: skip
    return out if only is None else [c for c in out if set(c.models) == set(only)]


def choose(found: list[Candidate], tolerance_points: float = 1.0) -> tuple[Candidate, str]:
    """The cheapest candidate within ``tolerance_points`` of the most accurate one that fits, and why.

    An ensemble needs k ≥ 2: with one sample every answering model is 100 % confident, the tie-break
    decides, and the ensemble is its favourite alone plus the others' wasted tokens."""
    fitting = [c for c in found if c.fits and (len(c.models) == 1 or c.k >= 2)]
    if not fitting and any(c.fits for c in found):
        raise InvalidRequestError("an ensemble needs k ≥ 2 samples per model; collect runs with -k 2 or more")
    if not fitting:
        smallest = min(found, key=lambda c: c.resident_bytes)
        raise BudgetError(
            f"no subset fits the budget: the smallest, {smallest.label}, needs {format_bytes(smallest.resident_bytes)}; "
            "raise --budget or collect runs with a shorter max_tokens"
        )
    top = max(fitting, key=lambda c: (c.mux.mean, -c.seconds))
    near = [c for c in fitting if c.mux.mean >= top.mux.mean - tolerance_points / 100]
    # at equal cost counting wins: it keeps exact early stop live, a confidence vote draws every sample
    chosen = min(near, key=lambda c: (c.seconds, c.vote.vote != "count", -c.mux.mean))
    why = f"{chosen.label}: simulated MUX accuracy {100 * chosen.mux.mean:.1f}% at ~{chosen.seconds:.0f} s per answer"
    if chosen is top:
        why += "; the most accurate setup that fits the budget"
    else:
        why += (
            f"; the most accurate that fits, {top.label} ({100 * top.mux.mean:.1f}%), costs "
            f"{top.seconds / max(chosen.seconds, 1e-9):.1f}× as much for {100 * (top.mux.mean - chosen.mux.mean):.1f} points"
        )
    return chosen, why


def _verdict(c: Candidate, best_ensemble_vs_single: tuple[float, float]) -> str:
    lines = []
    gap_single = 100 * (c.mux.mean - c.best_single.mean)
    gap_pooled = 100 * (c.mux.mean - c.pooled.mean)
    if len(c.models) > 1:
        lines.append(
            f"MUX {'≥' if gap_single >= 0 else '<'} the best single model ({c.best_single_model}) with self-consistency "
            f"at k={c.k}: {gap_single:+.1f} points"
        )
        lines.append(
            f"MUX {'>' if gap_pooled > 0 else '≤'} the pooled vote of the same samples: {gap_pooled:+.1f} points"
        )
    best_ensemble, best_single = best_ensemble_vs_single
    if best_single > best_ensemble:
        lines.append(
            f"on these runs no ensemble beats the best single model with self-consistency "
            f"({100 * best_single:.1f}% vs {100 * best_ensemble:.1f}% at best)"
        )
    return "; ".join(lines)


def _tie_order(chosen: Candidate, result: SearchResult) -> list[str]:
    """The chosen members in tie-break order: best measured accuracy first."""
    return sorted(chosen.models, key=lambda m: -result.model(m).accuracy)


def _members_document(ordered: Sequence[str], result: SearchResult) -> list[dict[str, Any]]:
    """The members' entries: measured accuracy (the tie-break), mean sample length (the ``cheapest``
    policy's order); the best one stays resident."""
    return [
        {
            "name": m,
            "validation_accuracy": round(result.model(m).accuracy, 4),
            **({"resident": True} if i == 0 else {}),
            "tokens_per_sample": round(result.model(m).tokens_per_sample, 1),
        }
        for i, m in enumerate(ordered)
    ]


def profile_document(
    name: str,
    chosen: Candidate,
    why: str,
    result: SearchResult,
    found: list[Candidate],
    *,
    runs: str,
    budget: str | None,
    description: str | None,
    calibration: Sequence[Calibrated] = (),
    auto: bool = False,
    stop: StopChoice | None = None,
) -> str:
    """The profile's YAML. ``auto``: the profile answers any question (``kind: auto``); what was measured
    is its numeric kind (``measured.kind``), the one computations are answered as."""
    settings = result.settings
    stop = stop or StopChoice()
    ordered = _tie_order(chosen, result)
    doc: dict[str, Any] = {
        "name": name,
        "description": description or f"{', '.join(ordered)} at k={chosen.k}, chosen by `edgemux profile build`",
        "kind": "auto" if auto else result.kind,
        "models": _members_document(ordered, result),
        "sampling": {
            "k": chosen.k,
            **{f: settings[f] for f in Sampling.field_names() if f not in ("k", "seed") and f in settings},
        },
        "prompt": {"instruction": settings.get("instruction")}
        | ({"system": settings["system"]} if settings.get("system") else {}),
        "n_ctx": settings.get("n_ctx", 4096),
        **({"vote": vote_document(chosen.vote)} if chosen.vote.vote != "count" else {}),
        **({"stop": stop_document(stop.rule)} if stop.rule is not None else {}),
        **({"kill": stop.kill.to_dict()} if stop.kill is not None else {}),
        **({"budget": budget} if budget else {}),
        "measured": {
            **({"kind": result.kind} if auto else {}),
            "runs": runs,
            "tasks": result.tasks,
            "collected_k": result.k,
            "date": datetime.date.today().isoformat(),
            "why": why,
            **_measured(chosen, result, found),
            **({"stop_rules": [_stop_measured(score) for score in stop.scores]} if stop.scores else {}),
            # how often answers were right at each level of agreement (what `ask` says with an answer)
            "calibration": [level.to_dict() for level in calibration],
        },
    }
    header = (
        f"# Built by `edgemux profile build` from {runs} ({result.tasks} tasks, k={result.k}).\n# {why}.\n"
        f"# Every setup the search scored: {name}.curve.json beside this file (`edgemux profile show --plot`).\n"
    )
    body: str = yaml.dump(doc, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=120)
    return header + body


def _measured(chosen: Candidate, result: SearchResult, found: Sequence[Candidate]) -> dict[str, Any]:
    """What the chosen setup scored, beside the best single model and the pooled vote."""
    ensembles = [c.mux.mean for c in found if len(c.models) > 1]
    singles = [m.self_consistency[k].mean for m in result.models for k in m.self_consistency]
    return {
        "verdict": _verdict(chosen, (max(ensembles, default=0.0), max(singles, default=0.0))),
        "mux_accuracy": round(chosen.mux.mean, 4),
        "mux_accuracy_std": round(chosen.mux.std, 4),
        "best_single": {"model": chosen.best_single_model, "self_consistency": round(chosen.best_single.mean, 4)},
        "pooled_vote_accuracy": round(chosen.pooled.mean, 4),
        "tokens_per_answer": round(chosen.tokens),
        "seconds_per_answer": round(chosen.seconds, 1),
        "resident_bytes": chosen.resident_bytes,
        **({"vote": _vote_measured(chosen)} if chosen.count_mux is not None else {}),
    }


def curve_document(found: Sequence[Candidate]) -> str:
    """Every (subset, k, vote) scored: accuracy against tokens per answer, one JSON object per line."""
    rows = [
        {"models": " + ".join(c.models) + ("" if c.vote.vote == "count" else f" ({c.vote.vote} vote)"), "k": c.k,
         "accuracy": round(c.mux.mean, 4), "tokens": round(c.tokens)}
        for c in found
    ]  # fmt: skip
    return "[\n" + ",\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n]\n"


def vote_document(rule: VoteRule) -> dict[str, Any]:
    """A rule as the profile's ``vote:`` mapping (the parameters its family uses)."""
    doc: dict[str, Any] = {"rule": rule.vote, "measure": rule.measure}
    if rule.measure != "mean_logprob":
        doc["window"] = rule.window
    doc["temperature" if rule.vote == "weighted" else "keep"] = (
        rule.temperature if rule.vote == "weighted" else rule.keep
    )
    return doc


def stop_document(rule: EarlyStop) -> dict[str, Any]:
    """An early stop rule (confident, with its bars, or agree) as the profile's ``stop:`` mapping."""
    if isinstance(rule, Agreement):
        return {"rule": "agree", "need": rule.need, "dissent": rule.dissent}
    return {"rule": "confident", "measure": rule.measure, "window": rule.window, "precision": rule.precision,
            "bars": {m: round(b, 4) for m, b in rule.bars.items()}}  # fmt: skip


def _stop_measured(score: StopScore) -> dict[str, Any]:
    """One stop rule replayed on the runs (stopsearch.py): tokens per answer and accuracy, held out."""
    row = {"rule": score.rule, "tokens_per_answer": round(score.tokens), "accuracy": round(score.accuracy, 4)}
    if score.ended_early:  # what `ask` says of an answer the rule ended early
        row |= {"ended_early": score.ended_early, "right_when_ended_so": score.right_when_early}
    return row


def _vote_measured(c: Candidate) -> dict[str, Any]:
    assert c.count_mux is not None
    return {
        "held_out_accuracy": round(c.mux.mean, 4),
        "count_accuracy": round(c.count_mux.mean, 4),
        "how": "each half of the questions scored by the rule fitted on the other half (edgemux/selection/votesearch.py); "
               "the rule above is fitted on all of them",
    }  # fmt: skip


class _Dumper(yaml.SafeDumper):  # type: ignore[misc]
    """Multi-line strings (the prompt) as literal blocks, readable and editable as written."""


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)


def write_profile(path: Path, text: str, *, force: bool) -> None:
    """Write atomically (a crash leaves the old file or none, never half a profile)."""
    if path.exists() and not force:
        raise InvalidRequestError(f"{path} exists already; pass --force to replace it")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
