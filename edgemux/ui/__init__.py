"""Terminal rendering with rich (the only package that imports it): progress and live views on stderr,
tables on stdout. Commands use ``ui.<name>``; the pieces live one module per job."""

from .console import stderr, stdout, wide_stdout
from .live import LiveView, decision_line, follow
from .progress import DownloadBar, follow_loads, steps_bar, track_collection
from .tables import (
    bench_tables,
    eval_table,
    models_table,
    plan_dict,
    plan_table,
    profile_dict,
    profile_view,
    risk_coverage_table,
    search_tables,
    vote_table,
)

__all__ = [
    "DownloadBar", "LiveView", "bench_tables", "decision_line", "eval_table", "follow", "follow_loads",
    "models_table", "plan_dict", "plan_table", "profile_dict", "profile_view", "risk_coverage_table", "search_tables", "stderr", "stdout",
    "steps_bar", "track_collection", "vote_table", "wide_stdout",
]  # fmt: skip
