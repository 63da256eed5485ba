"""Tables and views a command was asked for: votes, models, plans, search, profiles, eval, bench."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.console import Group
from rich.table import Table
from rich.text import Text

from ..decide.calibration import levels_of
from ..decide.stoprules import rule_label
from ..memory.memory import format_bytes
from ..specs import RemoteSource

if TYPE_CHECKING:  # what the tables draw; the ui builds none of it
    from ..measure.benchmark import EnsembleRow, ScalingRow, ThroughputRow
    from ..measure.evaluate import EvalReport
    from ..memory.memory import Plan
    from ..profiles import Profile
    from ..selection.search import SearchResult
    from ..specs import ModelSpec
    from ..types import MuxResult


def _short(answer: str | None, width: int = 40) -> str:
    if answer is None:
        return "∅"
    return answer if len(answer) <= width else answer[: width - 1] + "…"


def vote_table(result: MuxResult) -> Table:
    d = result.decision
    kind = f"{result.kind}, {result.kind_reason}" if result.kind_reason else result.kind
    clusters = f"; clusters: {result.similarity}" if result.similarity else ""
    rules = sorted({v.vote for v in d.votes})
    title = f"SLM-MUX vote ({kind}, k={result.sampling.k}{clusters}, {'/'.join(rules)} rule)"
    table = Table(title=title, header_style="bold")
    table.add_column("member", no_wrap=True, min_width=max(len(v.model) for v in d.votes))
    for column in ("answers (count)", "unparsable", "majority", "confidence", "val. acc.", "sample confidence", ""):
        table.add_column(column)
    for v in d.votes:
        counts = ", ".join(f"{_short(a)} ({c})" for a, c in v.counts) or "—"
        acc = f"{v.validation_accuracy:.3f}" if v.validation_accuracy is not None else "—"
        mark = "[bold green]winner[/]" if v.model == d.winner else ""
        # each sample's token-confidence score, by the answer it gave (the weights of a weighted vote)
        scored = [f"{_short(s.answer)}: {x:.1f}" for s, x in zip(v.samples, v.scores, strict=False)
                  if x is not None and x != float("-inf")]  # fmt: skip
        table.add_row(v.model, counts, str(v.unparsable), _short(v.answer), f"{v.confidence:.2f}", acc,
                      ", ".join(scored) or "—", mark)  # fmt: skip
    table.caption = d.reason
    return table


def models_table(rows: list[tuple[ModelSpec, bool]]) -> Table:
    table = Table(header_style="bold")
    # Names are what users type next: never truncate them, let the other columns wrap instead.
    table.add_column("name", no_wrap=True, min_width=max((len(spec.name) for spec, _ in rows), default=4))
    for column in ("params", "quant", "size", "source", "prompt", "cached"):
        table.add_column(column)
    for spec, cached in rows:
        if isinstance(spec.source, RemoteSource):  # its size and shape are the server's business
            table.add_row(spec.name, "-", "-", "-", f"remote: {spec.source.model} at {spec.source.url}",
                          spec.prompt_style, "-")  # fmt: skip
            continue
        table.add_row(
            spec.name, f"{spec.params_billions:g} B", spec.quant, format_bytes(spec.file_nbytes) if spec.file_nbytes else "?",
            spec.source_kind, spec.prompt_style, "[green]yes[/]" if cached else "no",
        )  # fmt: skip
    return table


def plan_table(plan: Plan, profile: Profile, budget_source: str) -> Table:
    s = profile.sampling
    title = f"memory plan: {profile.name}, k={s.k}, n_ctx={profile.n_ctx}, max_tokens={s.max_tokens}"
    table = Table(title=title, header_style="bold")
    names = [e.model for e in plan.estimates] + list(plan.remote)
    table.add_column("model", no_wrap=True, min_width=max(map(len, names), default=5))
    gpu = any(e.gpu_bytes for e in plan.estimates)
    for column in ("KV cells", "weights", "KV cache", "compute", "total") + (("GPU",) if gpu else ()):
        table.add_column(column, justify="right", no_wrap=True)
    for e in plan.estimates:
        sizes = (e.weights_bytes, e.kv_bytes, e.compute_bytes + e.other_bytes, e.total_bytes) + (
            (e.gpu_bytes,) if gpu else ()
        )
        table.add_row(e.model, str(e.cells), *(format_bytes(b) for b in sizes))
    for name in plan.remote:
        table.add_row(name, "remote", *["-"] * (4 + gpu))
    verdict = "[bold green]fits[/]" if plan.fits else f"[bold red]does not fit[/]: {plan.advice}"
    spare = f", {format_bytes(plan.budget_bytes - plan.total_bytes)} to spare" if plan.fits else ""
    table.caption = (
        f"all resident: {format_bytes(plan.total_bytes)} of a {format_bytes(plan.budget_bytes)} budget "
        f"({budget_source}){spare} — {verdict}"
    )
    return table


def plan_dict(plan: Plan, profile: Profile, budget_source: str) -> dict[str, object]:
    return {
        "profile": profile.name,
        "k": profile.sampling.k,
        "n_ctx": profile.n_ctx,
        "max_tokens": profile.sampling.max_tokens,
        "budget_bytes": plan.budget_bytes,
        "budget_source": budget_source,
        "total_bytes": plan.total_bytes,
        "fits": plan.fits,
        "advice": plan.advice,
        "models": [
            {"name": e.model, "cells": e.cells, "weights_bytes": e.weights_bytes, "kv_bytes": e.kv_bytes,
             "compute_bytes": e.compute_bytes, "other_bytes": e.other_bytes, "total_bytes": e.total_bytes,
             "gpu_bytes": e.gpu_bytes}
            for e in plan.estimates
        ],
        "remote": list(plan.remote),
    }  # fmt: skip


def _pct(x: float) -> str:
    return f"{100 * x:.1f}"


def search_tables(result: SearchResult, top: int = 3) -> list[Table]:
    """Per model, per subset (by the objective) and, for the best subsets, per k. Accuracies in %."""
    k = result.k
    models = Table(title=f"models ({result.tasks} tasks, {result.kind}, k={k})", header_style="bold")
    names = (
        "member",
        "one sample (mean)",
        f"majority@{k}",
        "conf. wrong",
        "no answer",
        "cut off",
        "tokens/sample",
        "ms/token",
    )
    for name in names:
        models.add_column(name, justify="left" if name == "model" else "right", no_wrap=name == "model")
    for m in sorted(result.models, key=lambda m: -m.accuracy):
        models.add_row(
            m.model, _pct(m.accuracy), m.self_consistency[k].percent(), _pct(m.confidently_wrong), _pct(m.unparsable), _pct(m.truncated),
            f"{m.tokens_per_sample:.0f}", f"{1000 * m.seconds_per_token:.0f}",
        )  # fmt: skip

    subsets = Table(
        title=f"subsets, best objective first (O = UnionAcc − {result.lam:g}·Contradiction)", header_style="bold"
    )
    for name in ("models", "UnionAcc", "Contra.", "O", f"MUX@{k}", f"pooled@{k}", f"best single@{k}", "tokens/answer"):
        subsets.add_column(name, justify="left" if name == "models" else "right", no_wrap=name == "models")
    for s in result.subsets:
        at = s.by_k[k]
        subsets.add_row(
            " + ".join(s.models), _pct(s.union_accuracy), _pct(s.contradiction), _pct(s.objective),
            at.mux.percent(), at.pooled.percent(), at.best_single.percent(), f"{at.tokens:.0f}",
        )  # fmt: skip

    scaling = Table(title=f"test-time scaling, top {min(top, len(result.subsets))} subsets (k' < {k}: mean ±std over {result.repeats} draws)", header_style="bold")  # fmt: skip
    for name in ("models", "k", "MUX", "pooled", "best single", "oracle", "tokens/answer", "est. s/answer"):
        scaling.add_column(name, justify="left" if name == "models" else "right", no_wrap=name == "models")
    for s in result.subsets[:top]:
        for kk, at in s.by_k.items():
            scaling.add_row(
                " + ".join(s.models) if kk == 1 else "", str(kk), at.mux.percent(), at.pooled.percent(),
                at.best_single.percent(), _pct(at.oracle), f"{at.tokens:.0f}", f"{at.seconds:.1f}",
                end_section=kk == k,
            )  # fmt: skip
    return [models, subsets, scaling]


# -- profiles ----------------------------------------------------------------------------------------------


def profile_dict(profile: Profile) -> dict[str, object]:
    return {
        "name": profile.name,
        "kind": profile.kind,
        "description": profile.description,
        "models": [
            {"name": m.name, "validation_accuracy": m.validation_accuracy, "resident": m.resident}
            for m in profile.models
        ],
        "sampling": {f: getattr(profile.sampling, f) for f in profile.sampling.field_names()},
        "instruction": profile.instruction,
        "system": profile.system,
        "n_ctx": profile.n_ctx,
        "budget": profile.budget,
        "abstain_below": profile.abstain_below,
        "stop_rule": profile.stop_rule,
        "kill": None if profile.kill is None else profile.kill.to_dict(),
        "measured": profile.measured,
        "path": str(profile.path) if profile.path else None,
    }


def _stops_line(profile: Profile) -> str:
    """The stop rule `ask` uses with this profile, and trace kill's floors if it has them."""
    rule = rule_label(profile.stop_rule, profile.bars, profile.agreement) if profile.stop_rule else "decision (exact)"
    if profile.kill is None:
        return f"stop rule: {rule}; no trace kill"
    floors = ", ".join(f"{m} {f:.2f}" for m, f in profile.kill.floors.items())
    return f"stop rule: {rule}; {profile.kill.describe()}: {floors}"


def profile_view(profile: Profile) -> Group:
    s = profile.sampling
    models = Table(title=f"profile {profile.name} ({profile.kind})", header_style="bold", caption=profile.description)
    for name in ("member", "validation accuracy", "resident"):
        models.add_column(name, justify="left" if name == "member" else "right")
    for model in profile.models:
        accuracy = "—" if model.validation_accuracy is None else f"{100 * model.validation_accuracy:.1f}%"
        models.add_row(model.name, accuracy, "pinned" if model.resident else "")
    lines = [
        Text(f"k={s.k}, temperature {s.temperature}, top_p {s.top_p}, top_k {s.top_k}, min_p {s.min_p}, "
             f"max {s.max_tokens} tokens, context {profile.n_ctx}" + (f", budget {profile.budget}" if profile.budget else "")),
        Text("prompt: " + (profile.instruction or "the default for the kind").replace("\n", "⏎ ")),
        Text(_stops_line(profile)),
    ]  # fmt: skip
    measured = profile.measured
    if measured:
        lines.append(
            Text(
                f"measured on {measured.get('tasks')} tasks of {measured.get('runs')} ({measured.get('date')}):",
                style="bold",
            )
        )
        lines.append(Text(f"  simulated MUX accuracy {_pct(measured.get('mux_accuracy', 0.0))}% (±{_pct(measured.get('mux_accuracy_std', 0.0))}), "
                          f"best single {measured.get('best_single', {}).get('model')} {_pct(measured.get('best_single', {}).get('self_consistency', 0.0))}%, "
                          f"pooled vote {_pct(measured.get('pooled_vote_accuracy', 0.0))}%"))  # fmt: skip
        lines.append(Text(f"  {measured.get('tokens_per_answer')} tokens and ~{measured.get('seconds_per_answer')} s per answer, "
                          f"{format_bytes(measured.get('resident_bytes', 0))} resident"))  # fmt: skip
        for key in ("why", "verdict"):
            if measured.get(key):
                lines.append(Text(f"  {key}: {measured[key]}"))
        for vote in dict.fromkeys(("count", profile.vote.vote)):
            levels = levels_of(measured, s.k, vote)
            if levels:
                cells = [f"{lv.short()}: {'—' if lv.accuracy is None else f'{100 * lv.accuracy:.0f}%'} of {lv.answered}"
                         for lv in levels]  # fmt: skip
                what = "the winner's samples agree" if vote == "count" else f"the winner's share of its {vote} vote"
                lines.append(Text(f"  calibration (right when {what}): " + ", ".join(cells)))
    if profile.abstain_below is not None:
        lines.append(Text(f"abstains below confidence {profile.abstain_below:g} (ask exits 10)"))
    return Group(models, *lines)


# -- eval --------------------------------------------------------------------------------------------------


def eval_table(report: EvalReport) -> Table:
    table = Table(
        title=f"profile {report.profile}: {len(report.questions)} questions, {report.kind}, k={report.k}",
        header_style="bold",
    )
    for name in ("method", "accuracy", "95% CI", "tokens/q", "s/q", "resident"):
        table.add_column(name, justify="left" if name == "method" else "right", no_wrap=name == "method")
    best = max(m.accuracy for m in report.methods if m.method != "oracle")
    for m in report.methods:
        low, high = m.interval
        d = m.to_dict()
        style = "bold green" if m.accuracy == best and m.method != "oracle" else "dim" if m.method == "oracle" else None
        table.add_row(
            m.method, f"{100 * m.accuracy:.1f}%", f"{100 * low:.1f}–{100 * high:.1f}", f"{d['tokens_per_question']:.0f}",
            f"{d['seconds_per_question']:.1f}", format_bytes(m.resident_bytes) if m.resident_bytes else "—", style=style,
        )  # fmt: skip
    return table


def risk_coverage_table(report: EvalReport) -> Table:
    """SLM-MUX answering only at or above each confidence: what share it answers, and how accurately."""
    table = Table(title="risk–coverage of SLM-MUX (answer only at or above the confidence)", header_style="bold")
    for name in ("confidence ≥", "answered", "coverage", "accuracy"):
        table.add_column(name, justify="right")
    for p in report.risk_coverage():
        accuracy = "—" if p.accuracy is None else f"{100 * p.accuracy:.1f}%"
        table.add_row(f"{p.threshold:.2f}", str(p.answered), f"{100 * p.coverage:.1f}%", accuracy)
    return table


def bench_tables(rows: list[ThroughputRow], scaling: list[ScalingRow], ensemble: EnsembleRow | None) -> list[Table]:
    tables = []
    main = Table(header_style="bold")
    for name in ("model", "size", "params", "backend", "ngl", "threads", "test", "t/s"):
        main.add_column(name, justify="left" if name in ("model", "backend", "test") else "right")
    for r in rows:
        params = f"{r.params_billions:.2f} B" if r.params_billions else "—"
        main.add_row(
            r.model,
            format_bytes(r.nbytes),
            params,
            r.backend,
            str(r.n_gpu_layers),
            str(r.threads),
            r.test,
            str(r.tokens_per_s),
        )
    tables.append(main)
    if scaling:
        t = Table(title="k parallel sequences over one shared prompt (llama-batched-bench form)", header_style="bold")
        for name in ("model", "PP", "TG", "B", "T_PP s", "T_TG s", "S_TG t/s", "S t/s"):
            t.add_column(name, justify="left" if name == "model" else "right")
        for s in scaling:
            t.add_row(s.model, str(s.prompt_tokens), str(s.tokens_per_sequence), str(s.k), f"{s.prompt_s.mean:.3f}",
                      f"{s.generation_s.mean:.3f}", str(s.generation_tokens_per_s), str(s.total_tokens_per_s))  # fmt: skip
        tables.append(t)
    if ensemble:
        t = Table(
            title=f"ensemble: profile {ensemble.profile}, k={ensemble.k}, {ensemble.questions} fixed questions",
            header_style="bold",
        )
        for name in ("models", "answers/min", "tokens/answer", "s/answer", "peak RSS"):
            t.add_column(name, justify="left" if name == "models" else "right")
        t.add_row(" + ".join(ensemble.models), f"{ensemble.answers_per_minute:.2f}", f"{ensemble.tokens_per_answer:.0f}",
                  f"{ensemble.seconds_per_answer:.1f}", format_bytes(ensemble.peak_rss_bytes))  # fmt: skip
        tables.append(t)
    return tables
