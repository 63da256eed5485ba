"""Markdown reports of ``edgemux eval`` (tables people paste into issues and READMEs)."""

from __future__ import annotations

import datetime
import json
from pathlib import Path

from .evaluate import EvalReport
from .memory import format_bytes

__all__ = ["eval_markdown", "write_report"]


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
    if report.left_out:
        lines.append("Left out: " + "; ".join(f"{n} {why}" for why, n in report.left_out.items()) + ".")
    if plot is not None:
        lines += ["", f"![accuracy vs tokens per question]({plot.name})"]
    return "\n".join(lines) + "\n"


def write_report(report: EvalReport, out: Path, *, source: str) -> None:
    """report.md, report.json and (with matplotlib) accuracy_vs_tokens.png under ``out``."""
    from . import plot

    out.mkdir(parents=True, exist_ok=True)
    png = out / "accuracy_vs_tokens.png" if plot.available() else None
    if png is not None:
        plot.plot_eval(report, png)
    (out / "report.md").write_text(eval_markdown(report, source=source, plot=png), encoding="utf-8")
    (out / "report.json").write_text(json.dumps(report.to_dict(), indent=2), encoding="utf-8")
