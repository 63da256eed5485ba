"""``edgemux profile show --plot``: accuracy against tokens per answer for every (subset, k) the profile's
search scored, one line per subset, the chosen setup marked. matplotlib is optional (``edgemux[plot]``)."""

from __future__ import annotations

from pathlib import Path

from .errors import InvalidRequestError
from .profiles import Profile

__all__ = ["plot_curve"]


def plot_curve(profile: Profile, path: Path) -> None:
    curve = profile.measured.get("curve")
    if not curve:
        raise InvalidRequestError(
            f"profile {profile.name} has no measured curve (only `edgemux profile build` writes one)"
        )
    try:
        import matplotlib

        matplotlib.use("Agg")  # files only: no display needed
        import matplotlib.pyplot as plt
    except ImportError:
        raise InvalidRequestError("plotting needs matplotlib: pip install 'edgemux[plot]'") from None

    lines: dict[str, list[tuple[float, float, int]]] = {}
    for point in curve:
        lines.setdefault(str(point["models"]), []).append(
            (float(point["tokens"]), 100 * float(point["accuracy"]), int(point["k"]))
        )
    fig, ax = plt.subplots(figsize=(9, 5.5), dpi=120)
    for label, points in sorted(lines.items(), key=lambda item: -max(p[1] for p in item[1])):
        points.sort()
        ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", markersize=3, linewidth=1, label=label)
    chosen = " + ".join(profile.model_names)
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
    fig.tight_layout()
    try:
        fig.savefig(path, format="png")
    except OSError as e:
        raise InvalidRequestError(f"cannot write {path}: {e}") from None
    finally:
        plt.close(fig)
