"""Votes that use token confidence against the count rule, on recorded runs (issue 25).

For one runs file recorded with token signals (``lp``/``tc``: bench/collect_runs.sh's ``*-conf-*`` files),
every method is scored on the same questions, side by side (and each confidence measure's power to tell a
right sample from a wrong one, as an AUROC): each member's first sample and its majority
of k (self-consistency), the pooled vote, SLM-MUX with the count rule, SLM-MUX with CISC weights, SLM-MUX
with the DeepConf filter, and the oracle, with 95 % Wilson intervals.

The weighted and filtered rules have parameters (measure, window, softmax temperature, share kept), and a
rule fitted on the questions it is scored on flatters itself. So the questions are split in two halves by
a hash of their id; each rule's parameters are chosen on one half (the best SLM-MUX accuracy, ties to the
simplest: a longer window, a higher temperature, a larger share kept) and scored on the other, and then the
halves swap: every question is scored once, by a rule fitted without it. The members' validation accuracy
(the tie-break) is also taken from the fitting half.

Two more views of the same runs: accuracy against samples per member (k = 1 .. collected, the count rule
beside each family's held-out accuracy, with tokens per answer: can a vote reach the count rule's accuracy
with fewer samples?), and the expected calibration error of the confidence `ask` reports (each half's
levels measured on the other half; count levels, and the share bins of each family's fitted rule).

    python bench/confidence_votes.py --runs bench/runs/gsm8k-dev-conf-k8.jsonl -k 8 [--json]
"""

from __future__ import annotations

import argparse
import itertools
import json
from collections.abc import Sequence
from dataclasses import replace

import numpy as np

from edgemux.decide.calibration import Calibrated
from edgemux.decide.confidence import MEASURES, VoteRule
from edgemux.measure.evaluate import MUX, EvalReport, consistency_name, mux_name, score_runs, wilson
from edgemux.profiles import Profile, adhoc_profile
from edgemux.selection.runs import Record, read_runs_files
from edgemux.selection.search import RunTable, build_table
from edgemux.selection.votesearch import GRID, half_of

WINDOWS = (4, 8, 16, 32, 64)  # for the separation table: wider than the grid the votes are fitted over


def candidates() -> dict[str, list[VoteRule]]:
    """Every rule tried (votesearch.GRID, the one `profile build` fits over), simplest last in a family."""
    return {family: list(rules) for family, rules in GRID.items()}


def with_accuracies(profile: Profile, records: Sequence[Record], k: int) -> Profile:
    """The profile with each member's validation accuracy (self-consistency at k) measured on ``records``."""
    report = score_runs(records, profile, k=k)
    by_name = {s.method: s.accuracy for s in report.methods}
    models = tuple(replace(m, validation_accuracy=by_name[consistency_name(m.name, k)]) for m in profile.models)
    return replace(profile, models=models)


def fit(records: Sequence[Record], profile: Profile, k: int, rules: list[VoteRule]) -> tuple[VoteRule, float]:
    report = score_runs(records, profile, k=k, votes={str(i): r for i, r in enumerate(rules)})
    accuracy = {s.method: s.accuracy for s in report.methods}
    best = max(range(len(rules)), key=lambda i: (accuracy[mux_name(str(i))], i))  # ties: the later, simpler
    return rules[best], accuracy[mux_name(str(best))]


def cross_fitted(records: Sequence[Record], members: list[str], kind: str, k: int) -> dict[str, object]:
    halves = [[r for r in records if half_of(r.task) == h] for h in (0, 1)]
    per_half: list[EvalReport] = []
    chosen: list[dict[str, object]] = []
    for fit_on, score_on in ((0, 1), (1, 0)):
        profile = with_accuracies(adhoc_profile(members, kind), halves[fit_on], k)
        rules = {family: fit(halves[fit_on], profile, k, tried) for family, tried in candidates().items()}
        chosen.append({family: {"rule": vars(rule), "fitted_accuracy": acc} for family, (rule, acc) in rules.items()})
        per_half.append(score_runs(halves[score_on], profile, k=k, votes={f: r for f, (r, _) in rules.items()}))
    methods = [s.method for s in per_half[0].methods]
    table = []
    for method in methods:
        parts = [next(s for s in report.methods if s.method == method) for report in per_half]
        correct, n = sum(p.correct for p in parts), sum(p.n for p in parts)
        tokens = sum(p.tokens for p in parts)
        low, high = wilson(correct, n)
        table.append({"method": method, "accuracy": correct / n if n else 0.0, "ci95": [low, high], "correct": correct,
                      "questions": n, "tokens_per_question": tokens / n if n else 0.0})  # fmt: skip
    return {"members": members, "kind": kind, "k": k, "questions": sum(r.methods[0].n for r in per_half),
            "fitted": chosen, "table": table}  # fmt: skip


def separation(records: Sequence[Record], k: int) -> list[dict[str, object]]:
    """How well each measure and window tells a right sample from a wrong one *of the same member on the
    same question* (what a weighted vote needs: CISC found the ranking within a question is what matters):
    the AUROC over those pairs (the chance that the right sample outscores the wrong one; 0.5 = no signal).
    Answers are read as recorded; only (question, member) groups holding both right and wrong samples count."""
    from edgemux.decide.confidence import sample_score

    groups = []
    for r in records:
        reference = r.reference_answer()
        samples = [s for s in sorted(r.samples, key=lambda s: s.index)[:k] if s.signals is not None]
        labelled = [(s.signals, s.answer == reference) for s in samples if reference is not None]
        if any(ok for _, ok in labelled) and not all(ok for _, ok in labelled):
            groups.append(labelled)
    rows = []
    for measure, window in itertools.product(MEASURES, WINDOWS):
        if measure == "mean_logprob" and window != WINDOWS[0]:
            continue  # no window
        wins, pairs = 0.0, 0
        for labelled in groups:
            scored = [(sample_score(signals, measure, window), ok) for signals, ok in labelled]  # type: ignore[arg-type]
            right = [x for x, ok in scored if ok]
            wrong = [x for x, ok in scored if not ok]
            pairs += len(right) * len(wrong)
            wins += sum((a > b) + 0.5 * (a == b) for a in right for b in wrong)
        rows.append({"measure": measure, "window": None if measure == "mean_logprob" else window,
                     "auroc": wins / pairs if pairs else None, "pairs": pairs, "groups": len(groups)})  # fmt: skip
    return rows


def by_k(table: RunTable, members: list[str]) -> list[dict[str, object]]:
    """Per k: tokens per answer, the count rule's SLM-MUX accuracy (mean over draws of k of the samples, as
    `profile build` scores it) and each family's held-out accuracy (votesearch)."""
    from edgemux.selection.search import search
    from edgemux.selection.votesearch import vote_candidates

    subset = next(s for s in search(table, max_models=len(members)).subsets if set(s.models) == set(members))
    votes = vote_candidates(table, [subset.models])
    rows = []
    for k, at in subset.by_k.items():
        row: dict[str, object] = {"k": k, "tokens_per_answer": round(at.tokens), "count": round(at.mux.mean, 4)}
        row |= {v.vote.vote: round(v.mux.mean, 4) for v in votes if v.k == k}
        rows.append(row)
    return rows


def calibration_errors(table: RunTable, members: list[str], k: int, fitted: list[dict[str, object]],
                       draws: int = 4000) -> dict[str, dict[str, float]]:  # fmt: skip
    """ECE of the confidence `ask` reports, each half's levels measured on the other half (and, for a
    family, under the rule fitted on that other half), beside the ECE that sampling noise alone gives on
    halves this size: levels whose true accuracy is the same on both halves (their pooled accuracy),
    each half's count of right answers drawn from it. An ECE at that floor is as calibrated as these
    questions can show."""
    from edgemux.decide.calibration import calibration_error
    from edgemux.selection.calibrate import measure

    rng = np.random.default_rng(0)
    halves = [[i for i, t in enumerate(table.tasks) if half_of(t) == h] for h in (0, 1)]
    out = {}
    for family in ("count", "weighted", "filtered"):
        gap, floor, n = 0.0, 0.0, 0
        for scored, fit_on in ((1, 0), (0, 1)):
            rule = None if family == "count" else VoteRule(**fitted[fit_on][family]["rule"])  # type: ignore[index]
            promised = measure(table, members, k, rule, tasks=halves[fit_on])
            seen = measure(table, members, k, rule, tasks=halves[scored])
            gap += calibration_error(promised, seen) * len(halves[scored])
            floor += _noise_floor(promised, seen, rng, draws) * len(halves[scored])
            n += len(halves[scored])
        out[family] = {"ece": round(gap / n, 4), "noise_floor": round(floor / n, 4)}
    return out


def _noise_floor(promised: Sequence[Calibrated], seen: Sequence[Calibrated], rng: np.random.Generator,
                 draws: int) -> float:  # fmt: skip
    """Mean ECE over ``draws`` of perfectly calibrated levels with these sizes (see calibration_errors)."""
    fit_n = np.array([lv.answered for lv in promised])
    held_n = np.array([lv.answered for lv in seen])
    if not held_n.sum():
        return 0.0
    truth = np.array(
        [(a.right + b.right) / max(a.answered + b.answered, 1) for a, b in zip(promised, seen, strict=True)]
    )
    fit_rate = rng.binomial(fit_n, truth, size=(draws, len(truth))) / np.maximum(fit_n, 1)
    held_rate = rng.binomial(held_n, truth, size=(draws, len(truth))) / np.maximum(held_n, 1)
    gaps = np.where(fit_n > 0, np.abs(fit_rate - held_rate), held_rate)  # an unseen level promises nothing
    return float((gaps * held_n).sum(axis=1).mean() / held_n.sum())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", required=True, help="runs file(s) with token signals, comma-separated")
    parser.add_argument("--models", help="members, comma-separated (default: every model in the runs)")
    parser.add_argument("-k", type=int, help="samples per member (default: as recorded)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    records = read_runs_files(args.runs)
    members = args.models.split(",") if args.models else list(dict.fromkeys(r.model for r in records))
    records = [r for r in records if r.model in members]
    without = sum(1 for r in records for s in r.samples if s.signals is None)
    if without:
        raise SystemExit(f"{without} samples have no token signals: collect them again (bench/collect_runs.sh)")
    k = args.k or min(r.k for r in records)
    out = cross_fitted(records, members, records[0].kind, k)
    out["separation"] = separation(records, k)
    table = build_table(records)  # answers read and unified once for both views
    out["by_k"] = by_k(table, members)
    out["calibration_error"] = calibration_errors(table, members, k, out["fitted"])  # type: ignore[arg-type]
    if args.json:
        print(json.dumps(out, indent=2))
        return
    print(f"{', '.join(members)} at k={k}, {out['questions']} questions ({records[0].kind}); each rule fitted on "
          "the other half of the questions")  # fmt: skip
    print(f"  {'method':<44} {'accuracy':>9}  {'95 % interval':>15}")
    for row in out["table"]:  # type: ignore[attr-defined]
        low, high = row["ci95"]
        mark = "  <- count rule" if row["method"] == MUX else ""
        print(f"  {row['method']:<44} {row['accuracy']:9.1%}  [{low:5.1%}, {high:5.1%}]{mark}")
    print("  how well a sample's score tells right from wrong within a question and member (AUROC; 0.5 = none):")
    for row in out["separation"]:  # type: ignore[attr-defined]
        if row["auroc"] is not None:
            window = f", window {row['window']}" if row["window"] else ""
            print(f"    {row['measure']}{window}: {row['auroc']:.3f} ({row['pairs']} pairs in {row['groups']} groups)")
    print("  SLM-MUX accuracy against samples per member (count: all draws; weighted/filtered: held out):")
    for row in out["by_k"]:  # type: ignore[attr-defined]
        print("    " + ", ".join(f"{key} {value}" for key, value in row.items()))
    print(
        "  expected calibration error of the reported confidence (levels from the other half; in brackets what "
        "sampling noise alone gives on halves this size): "
        + ", ".join(
            f"{family} {e['ece']:.3f} [{e['noise_floor']:.3f}]" for family, e in out["calibration_error"].items()
        )
    )  # type: ignore[attr-defined]
    for h, fitted in enumerate(out["fitted"]):  # type: ignore[arg-type]
        print(f"  fitted on half {h}: " + "; ".join(f"{f}: {v['rule']}" for f, v in fitted.items()))


if __name__ == "__main__":
    main()
