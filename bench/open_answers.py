"""Open answers (issue: `ask` answers any question): SLM-MUX over answers in words, two similarity
measures side by side on the same recorded samples.

For each runs file (default: the TriviaQA and NQ-open dev runs of the pool, k = 5) and each measure —
``lexical`` (rapidfuzz token-set ratio of the answers' own words, ≥ 0.8) and ``embedding`` (cosine of
SmolLM2-135M mean-pooled embeddings through llama.cpp, ≥ 0.9) — prints:

- every member alone: one sample and self-consistency at k (exact match against the aliases, SQuAD-normalised);
- the best subsets: SLM-MUX, pooled vote, oracle, and the best any rule that sees only the members' majority
  shares could do (the bound on what SLM-MUX's tie-breaks or a calibration of its shares could gain), and
  such a calibration measured held out; and against the targets: SLM-MUX ≥ the best member's one
  sample + 3 points, and ≥ its self-consistency under the same clustering;
- each member on its own words: exact match per sample, and the questions where some sample is right
  (of any member: the ceiling of any rule);
- token F1 of the SLM-MUX answer, and the calibration of open answers (accuracy by the winner's cluster share);
- what clustering costs: the seconds to cluster one question's samples (all members), one answer at a time
  as a live decode meets them and prepared together (one embedding batch), against the seconds the members
  took to answer it (their recorded batch times), median over questions.

    python bench/open_answers.py [--runs bench/runs/triviaqa-dev-k5.jsonl.gz] [--measures lexical,embedding] [--json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np
from runfiles import committed_runs

from edgemux.answers.equivalence import Reference, Unifier, reference_of
from edgemux.answers.members import recorded_answer
from edgemux.answers.opentext import token_f1
from edgemux.measure.evaluate import MUX, score_runs
from edgemux.profiles import Profile, ProfileModel
from edgemux.selection.calibrate import measure as calibration_of
from edgemux.selection.runs import Record, read_runs_files
from edgemux.selection.search import RunTable, accuracy_ranks, build_table, majority, mux_pick, search
from edgemux.types import Sampling

DEFAULT = ("triviaqa-dev-k5", "nq-open-dev-k5")


def clustering_cost(records: list[Record], measure: str) -> tuple[float, float, float]:
    """Median seconds to cluster one question's samples (all members) one answer at a time, as a live
    decode meets them; the same with the answers prepared together first (embedded in one batch, as
    eval, search and a re-read do); and median seconds the members took to answer it."""
    by_task: dict[str, list[Record]] = {}
    for r in records:
        by_task.setdefault(r.task, []).append(r)
    one_s, together_s, answer_s = [], [], []
    for per in by_task.values():
        answers = [recorded_answer("open", r.model, s, n_choices=None, tests=None) for r in per for s in r.samples]
        for together, times in ((False, one_s), (True, together_s)):
            if measure == "embedding":
                from edgemux.engine.embeddings import clear_cache

                clear_cache()  # each question's answers embedded afresh (the model stays loaded, as in a server)
            start = time.perf_counter()
            unify = Unifier("open", measure, question=per[0].question)
            if together:
                unify.prepare(answers)
            for a in answers:
                unify(a)
            times.append(time.perf_counter() - start)
        answer_s.append(sum(max(s.seconds for s in r.samples) for r in per))
    return statistics.median(one_s), statistics.median(together_s), statistics.median(answer_s)


def _reference(record: Record) -> Reference:
    """The question's reference as the search and eval judge it (exact match of any alias)."""
    reference = reference_of("open", record.reference, None, record.aliases, Unifier("open"))
    if reference is None:
        raise SystemExit(f"{record.task}: no reference answer to score against")
    return reference


def own_text_scores(records: list[Record]) -> dict[str, dict[str, float]]:
    """Each member judged sample by sample, no clustering: the percent of its samples whose answer is an
    exact match of an alias, and of questions where some sample is (of any member: the ceiling of any rule
    that picks one of the recorded answers)."""
    right: dict[str, set[str]] = {}
    samples: dict[str, list[bool]] = {}
    for r in records:
        reference = _reference(r)
        hits = [reference.is_right(recorded_answer("open", r.model, s, n_choices=None, tests=None)) for s in r.samples]
        samples.setdefault(r.model, []).extend(hits)
        if any(hits):
            right.setdefault(r.model, set()).add(r.task)
            right.setdefault("any member", set()).add(r.task)
    tasks = len({r.task for r in records})
    return {
        "sample_exact_match": {m: round(100 * statistics.mean(h), 1) for m, h in samples.items()},
        "some_sample_right": {m: round(100 * len(right.get(m, ())) / tasks, 1) for m in (*samples, "any member")},
    }


def _majorities(table: RunTable, models: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Per member of ``models`` and question ([S, T] each): its majority share, and whether that majority is right."""
    rows = [table.models.index(m) for m in models]
    return majority(table.answers[rows], table.correct[rows])


def _rate_at(share: float, shares: np.ndarray, right: np.ndarray) -> float:
    """How often a member's majority was right at this share over the fitted questions (smoothed toward 1/2)."""
    at = shares == share
    return float((right[at].sum() + 0.5) / (at.sum() + 1))


def share_rule_ceiling(table: RunTable, models: tuple[str, ...]) -> float:
    """The best accuracy any rule could reach that, like SLM-MUX, sees only each member's majority share and
    answers with one member's majority answer: questions grouped by their tuple of shares, each group given,
    with hindsight, to the member whose majority is right most often in it. What SLM-MUX, or any tie-break or
    per-member calibration of it, can gain over the best member is bounded by this."""
    confidence, right = _majorities(table, models)
    groups: dict[tuple[float, ...], list[int]] = {}
    for t in range(len(table.tasks)):
        groups.setdefault(tuple(confidence[:, t]), []).append(t)
    best = sum(max(int(right[s, ts].sum()) for s in range(len(models))) for ts in groups.values())
    return best / len(table.tasks)


def calibrated_selection(table: RunTable, models: tuple[str, ...], splits: int = 50) -> tuple[float, float, float]:
    """Would a calibration of each member's shares choose better than SLM-MUX? Held out, 2-fold: on one half
    of the questions, each member's accuracy at each share (smoothed); on the other half, the winner is the
    member whose share is the most often right (ties: the higher share, then the better member). Mean over
    ``splits`` random halvings: (SLM-MUX on the held-out halves, the calibrated rule, its spread)."""
    rows = [table.models.index(m) for m in models]
    confidence, right = _majorities(table, models)
    rng = np.random.default_rng(0)
    mux_acc, calibrated_acc = [], []
    for _ in range(splits):
        order = rng.permutation(len(table.tasks))
        halves = (order[: len(order) // 2], order[len(order) // 2 :])
        for fit, held in (halves, halves[::-1]):
            ranks = np.array(accuracy_ranks(table.correct[rows][:, fit]))
            picked = mux_pick(confidence[:, held], list(ranks))
            mux_acc.append(float(right[picked, held].mean()))
            rate = np.array([[_rate_at(c, confidence[s, fit], right[s, fit]) for c in confidence[s, held]]
                             for s in range(len(models))])  # fmt: skip
            picked = (rate * 1e6 + confidence[:, held] * 1e3 - ranks[:, None]).argmax(axis=0)
            calibrated_acc.append(float(right[picked, held].mean()))
    return float(np.mean(mux_acc)), float(np.mean(calibrated_acc)), float(np.std(calibrated_acc))


def measure_one(records: list[Record], measure: str, cost: bool = True) -> dict:
    table = build_table(records, measure=measure)
    result = search(table, max_models=3)
    k = table.k
    members = {m.model: {"one_sample": round(100 * m.accuracy, 1), "self_consistency": round(100 * m.self_consistency[k].mean, 1)}
               for m in result.models}  # fmt: skip
    best_one = max(m["one_sample"] for m in members.values())
    best_sc = max(m["self_consistency"] for m in members.values())
    subsets = sorted(result.subsets, key=lambda s: -s.by_k[k].mux.mean)
    top = subsets[0]
    profile = Profile("bench", "open", tuple(ProfileModel(m, validation_accuracy=result.model(m).accuracy)
                                            for m in top.models), Sampling(k=k))  # fmt: skip
    report = score_runs(records, profile, k=k, measure=measure)
    accepted = {r.task: _reference(r).accepted for r in records}
    f1 = statistics.mean(token_f1(q.answers[MUX], accepted[q.task]) for q in report.questions)
    one_s, together_s, answer_s = clustering_cost(records, measure) if cost else (0.0, 0.0, 0.0)
    held_mux, held_calibrated, held_spread = calibrated_selection(table, top.models)
    mux = round(100 * top.by_k[k].mux.mean, 1)
    return {
        "measure": measure, "tasks": len(table.tasks), "k": k, "members": members,
        "subsets": [{"models": " + ".join(s.models), "mux": round(100 * s.by_k[k].mux.mean, 1),
                     "pooled": round(100 * s.by_k[k].pooled.mean, 1), "oracle": round(100 * s.by_k[k].oracle, 1),
                     "share_rule_ceiling": round(100 * share_rule_ceiling(table, s.models), 1)}
                    for s in subsets[:5]],  # fmt: skip
        "best_subset": " + ".join(top.models), "mux": mux, "mux_token_f1": round(100 * f1, 1),
        "best_one_sample": best_one, "best_self_consistency": best_sc,
        "target_one_sample_plus_3": mux >= best_one + 3, "target_self_consistency": mux >= best_sc,
        "held_out_mux": round(100 * held_mux, 1), "held_out_calibrated": round(100 * held_calibrated, 1),
        "held_out_calibrated_std": round(100 * held_spread, 1),
        "calibration": [lv.to_dict() for lv in calibration_of(table, list(top.models), k)],
        "cluster_seconds_median": round(one_s, 4), "cluster_together_seconds_median": round(together_s, 4),
        "answer_seconds_median": round(answer_s, 2),
        "cluster_share_of_answer": round(one_s / answer_s, 4) if answer_s else None,
        "cluster_together_share_of_answer": round(together_s / answer_s, 4) if answer_s else None,
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", help="comma-separated runs files, each scored alone [the open dev runs]")
    parser.add_argument("--measures", default="lexical,embedding")
    parser.add_argument("--json", action="store_true")
    parser.add_argument(
        "--no-cost", action="store_true", help="accuracy only: skip timing the clustering (slow with embeddings)"
    )
    args = parser.parse_args()
    files = args.runs.split(",") if args.runs else committed_runs(DEFAULT)
    if not files:
        raise SystemExit("no open-answer runs under bench/runs (run bench/collect_runs.sh first)")
    out = {}
    for path in files:
        records = read_runs_files(path)
        out[Path(path).name] = {
            "own_text": own_text_scores(records),
            "measures": [measure_one(records, m, cost=not args.no_cost) for m in args.measures.split(",")],
        }
    if args.json:
        print(json.dumps(out, indent=2))
        return
    for name, file_out in out.items():
        own = file_out["own_text"]
        print(f"{name}, own words, no clusters: sample exact match " + ", ".join(
            f"{m} {v}" for m, v in own["sample_exact_match"].items()) + "; some sample right (the ceiling of any "
            "rule): " + ", ".join(f"{m} {v}" for m, v in own["some_sample_right"].items()))  # fmt: skip
        for r in file_out["measures"]:
            print(f"{name}, {r['measure']}: {r['tasks']} tasks, k={r['k']}")
            for member, m in sorted(r["members"].items(), key=lambda kv: -kv[1]["one_sample"]):
                print(
                    f"  {member:22s} one sample {m['one_sample']:5.1f}  self-consistency {m['self_consistency']:5.1f}"
                )
            for s in r["subsets"]:
                print(
                    f"  {s['models']:62s} MUX {s['mux']:5.1f} pooled {s['pooled']:5.1f} oracle {s['oracle']:5.1f} "
                    f"best share rule {s['share_rule_ceiling']:5.1f}"
                )
            print(f"  SLM-MUX {r['mux']} (token F1 {r['mux_token_f1']}) vs best one sample {r['best_one_sample']} "
                  f"(+3: {r['target_one_sample_plus_3']}), best self-consistency {r['best_self_consistency']} "
                  f"({r['target_self_consistency']})")  # fmt: skip
            print(f"  choosing by calibrated shares instead (fit on half the questions, scored on the other, 50 "
                  f"halvings): {r['held_out_calibrated']} ± {r['held_out_calibrated_std']} against SLM-MUX "
                  f"{r['held_out_mux']} on the same halves")  # fmt: skip
            print(
                f"  clustering one answer at a time {1000 * r['cluster_seconds_median']:.1f} ms per question, "
                f"prepared together {1000 * r['cluster_together_seconds_median']:.1f} ms, against "
                f"{r['answer_seconds_median']:.1f} s to answer it: {100 * (r['cluster_share_of_answer'] or 0):.2f} % "
                f"and {100 * (r['cluster_together_share_of_answer'] or 0):.2f} %"
            )
            print("  calibration: " + ", ".join(f"{c['agreeing']}/{c['k']}: {c['right']}/{c['answered']}"
                                                for c in r["calibration"]))  # fmt: skip


if __name__ == "__main__":
    main()
