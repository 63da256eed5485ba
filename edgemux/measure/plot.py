"""``edgemux profile show --plot``: accuracy against tokens per answer for every (subset, k) the profile's
search scored, one line per subset, the chosen setup marked. matplotlib is optional (``edgemux[plot]``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..errors import InvalidRequestError
from ..profiles import Profile, curve_path
from .evaluate import EvalReport

__all__ = ["available", "plot_curve", "plot_eval"]


def available() -> bool:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def _pyplot() -> Any:
    try:
        import matplotlib

        matplotlib.use("Agg")  # files only: no display needed
        import matplotlib.pyplot as plt
    except ImportError:
        raise InvalidRequestError("plotting needs matplotlib: pip install 'edgemux[plot]'") from None
    return plt


def _save(fig: Any, path: Path, plt: Any) -> None:
    fig.tight_layout()
    try:
        fig.savefig(path, format="png")
    except OSError as e:
        raise InvalidRequestError(f"cannot write {path}: {e}") from None
    finally:
        plt.close(fig)


def _sidecar_curve(profile: Profile) -> list[dict[str, Any]] | None:
    if profile.path is None or not curve_path(profile.path).is_file():
        return None
    rows: list[dict[str, Any]] = json.loads(curve_path(profile.path).read_text(encoding="utf-8"))
    return rows


def plot_curve(profile: Profile, path: Path) -> None:
    curve = profile.measured.get("curve") or _sidecar_curve(profile)  # profiles built before the sidecar: inline
    if not curve:
        raise InvalidRequestError(
            f"profile {profile.name} has no measured curve (only `edgemux profile build` writes one)"
        )
    plt = _pyplot()

    lines: dict[str, list[tuple[float, float, int]]] = {}
    for point in curve:
        lines.setdefault(str(point["models"]), []).append(
            (float(point["tokens"]), 100 * float(point["accuracy"]), int(point["k"]))
        )
    fig, ax = plt.subplots(figsize=(9, 5.5), dpi=120)
    for label, points in sorted(lines.items(), key=lambda item: -max(p[1] for p in item[1])):
        points.sort()
        ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", markersize=3, linewidth=1, label=label)
    chosen = " + ".join(profile.member_names)
    measured = profile.measured
    if "mux_accuracy" in measured and "tokens_per_answer" in measured:
        ax.scatter([measured["tokens_per_answer"]], [100 * measured["mux_accuracy"]], s=120, facecolors="none",
                   edgecolors="black", linewidths=1.5, zorder=5, label=f"chosen: {chosen}, k={profile.sampling.k}")  # fmt: skip
    ax.set_xlabel("tokens per answer (all models, all samples)")
    ax.set_ylabel("simulated MUX accuracy (%)")
    ax.set_title(
        f"profile {profile.name}: accuracy vs compute ({measured.get('tasks')} tasks, k = 1..{measured.get('collected_k')})"
    )
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    _save(fig, path, plt)


def plot_eval(report: EvalReport, path: Path) -> None:
    """Accuracy (with its 95 % interval) against tokens per question, one point per method."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 5), dpi=120)
    for m in report.methods:
        d = m.to_dict()
        low, high = m.interval
        tokens = float(d["tokens_per_question"])  # type: ignore[arg-type]
        ax.errorbar([tokens], [100 * m.accuracy], yerr=[[100 * (m.accuracy - low)], [100 * (high - m.accuracy)]],
                    fmt="o", capsize=3, label=m.method)  # fmt: skip
    ax.set_xlabel("generated tokens per question")
    ax.set_ylabel("accuracy (%), 95 % interval")
    ax.set_title(f"profile {report.profile}: {len(report.questions)} questions, k = {report.k}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    _save(fig, path, plt)


def plot_risk_coverage(report: EvalReport, path: Path) -> None:
    """SLM-MUX accuracy of the answered questions against the share answered, one point per threshold."""
    plt = _pyplot()
    points = report.risk_coverage()
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    xs = [100 * p.coverage for p in points]
    ys = [100 * (p.accuracy or 0.0) for p in points]
    ax.plot(xs, ys, marker="o")
    for p, x, y in zip(points, xs, ys, strict=True):
        ax.annotate(f"≥{p.threshold:.2f}", (x, y), textcoords="offset points", xytext=(4, 4), fontsize=7)
    ax.set_xlabel("questions answered (%)")
    ax.set_ylabel("accuracy of the answered (%)")
    ax.set_title(f"profile {report.profile}: risk–coverage ({len(report.questions)} questions, k = {report.k})")
    ax.grid(alpha=0.3)
    _save(fig, path, plt)
