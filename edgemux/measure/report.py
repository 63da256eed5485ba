"""Markdown reports of ``edgemux eval`` (tables people paste into issues and READMEs)."""

from __future__ import annotations

import datetime
import json
from pathlib import Path

from ..memory.memory import format_bytes
from ..selection.search import SearchResult
from .evaluate import EvalReport

__all__ = ["eval_markdown", "search_markdown", "write_report"]


def _row(cells: list[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def eval_markdown(report: EvalReport, *, source: str, plot: Path | None = None) -> str:
    lines = [
        f"# edgemux eval: profile `{report.profile}`",
        "",
        f"{len(report.questions)} questions from `{source}`, kind `{report.kind}`, k = {report.k}, models: "
        + ", ".join(f"`{m}`" for m in report.models)
        + f". {datetime.date.today().isoformat()}.",
        "",
        _row(["method", "accuracy", "95 % CI", "tokens / question", "s / question", "resident"]),
        _row(["---", "---:", "---:", "---:", "---:", "---:"]),
    ]
    for m in report.methods:
        low, high = m.interval
        d = m.to_dict()
        lines.append(
            _row(
                [
                    m.method,
                    f"{100 * m.accuracy:.1f} %",
                    f"{100 * low:.1f}–{100 * high:.1f}",
                    f"{d['tokens_per_question']:.0f}",
                    f"{d['seconds_per_question']:.1f}",
                    format_bytes(m.resident_bytes) if m.resident_bytes else "—",
                ]
            )  # fmt: skip
        )
    lines += ["", "Seconds are those of each model's batch of k samples, added up over the models a method uses."]
    lines += [
        "",
        "Risk–coverage of SLM-MUX: answer only when the winner's confidence is at least the threshold.",
        "",
        _row(["threshold", "answered", "coverage", "accuracy of the answered"]),
        _row(["---:", "---:", "---:", "---:"]),
    ]
    for p in report.risk_coverage():
        accuracy = "—" if p.accuracy is None else f"{100 * p.accuracy:.1f} %"
        lines.append(_row([f"≥ {p.threshold:.2f}", f"{p.answered}", f"{100 * p.coverage:.1f} %", accuracy]))
    if report.left_out:
        # after a blank line: a line right under a table would be read as one more row
        lines += ["", "Left out: " + "; ".join(f"{n} {why}" for why, n in report.left_out.items()) + "."]
    if plot is not None:
        lines += ["", f"![accuracy vs tokens per question]({plot.name})"]
    return "\n".join(lines) + "\n"


def write_report(report: EvalReport, out: Path, *, source: str) -> None:
    """report.md, report.json and (with matplotlib) accuracy_vs_tokens.png under ``out``."""
    from . import plot

    out.mkdir(parents=True, exist_ok=True)
    png = out / "accuracy_vs_tokens.png" if plot.available() else None
    coverage_png = out / "risk_coverage.png" if plot.available() else None
    if png is not None and coverage_png is not None:
        plot.plot_eval(report, png)
        plot.plot_risk_coverage(report, coverage_png)
    text = eval_markdown(report, source=source, plot=png)
    if coverage_png is not None:
        text += f"\n![accuracy against the share answered]({coverage_png.name})\n"
    (out / "report.md").write_text(text, encoding="utf-8")
    (out / "report.json").write_text(json.dumps(report.to_dict(), indent=2), encoding="utf-8")


def search_markdown(result: SearchResult, *, top: int = 3) -> str:
    """The search's three tables as Markdown: models, subsets by the objective, scaling of the best."""
    k = result.k
    lines = [
        f"{result.tasks} questions, kind `{result.kind}`, k = {k} collected; accuracies in %.",
        "",
        _row(
            [
                "member",
                "one sample (mean)",
                f"majority of {k}",
                "confidently wrong",
                "no answer",
                "cut off",
                "tokens / sample",
            ]
        ),
        _row(["---", "---:", "---:", "---:", "---:", "---:", "---:"]),
    ]
    for m in sorted(result.models, key=lambda m: -m.accuracy):
        lines.append(_row([f"`{m.model}`", f"{100 * m.accuracy:.1f}", m.self_consistency[k].percent(),
                           f"{100 * m.confidently_wrong:.1f}", f"{100 * m.unparsable:.1f}", f"{100 * m.truncated:.1f}",
                           f"{m.tokens_per_sample:.0f}"]))  # fmt: skip
    lines += [
        "",
        _row(
            [
                "models",
                "UnionAcc",
                "Contradiction",
                f"O (λ = {result.lam:g})",
                f"MUX@{k}",
                f"pooled@{k}",
                f"best single@{k}",
                "oracle",
                "tokens / answer",
            ]
        ),  # fmt: skip
        _row(["---", *["---:"] * 8]),
    ]
    for s in result.subsets:
        at = s.by_k[k]
        lines.append(_row([" + ".join(f"`{m}`" for m in s.models), f"{100 * s.union_accuracy:.1f}",
                           f"{100 * s.contradiction:.1f}", f"{100 * s.objective:.1f}", at.mux.percent(), at.pooled.percent(),
                           at.best_single.percent(), f"{100 * at.oracle:.1f}", f"{at.tokens:.0f}"]))  # fmt: skip
    lines += [
        "",
        _row(["models", "k", "MUX", "pooled", "best single", "tokens / answer"]),
        _row(["---", *["---:"] * 5]),
    ]
    for s in result.subsets[:top]:
        for kk, at in s.by_k.items():
            lines.append(_row([" + ".join(f"`{m}`" for m in s.models) if kk == 1 else "", str(kk), at.mux.percent(),
                               at.pooled.percent(), at.best_single.percent(), f"{at.tokens:.0f}"]))  # fmt: skip
    return "\n".join(lines) + "\n"
