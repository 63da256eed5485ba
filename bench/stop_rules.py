"""Stop rules that accept a measured accuracy loss, replayed on recorded runs (issue 26).

Every question's recorded samples (token counts, answers, token signals) are decoded again on paper in
waves: the samples of one wave decode as a batch, and after each sample finishes the stop rule looks at
the finished ones; when it fires, the running samples are cancelled (they cost the tokens they had drawn)
and nothing else starts. The answer is always the SLM-MUX rule over the samples that finished (the tie
order is the profile's); only *when to stop* differs between rules:

- ``none``: every sample (the profile without early stop);
- ``exact``: the answer-settled bound of decide/earlystop.py (no answer can change); the profile's own
  replay of the shipped rules (``decision``, ``confident``) is edgemux/selection/stopsearch.py, which
  `profile build` runs;
- ``agree N/D``: N finished samples, pooled over the members, give SLM-MUX's current answer and at most D
  others dissent (the shipped ``agree`` rule, stoprules.Agreement);
- ``confident P``: a finished sample whose confidence is at least its member's bar answers, if it is the
  current SLM-MUX answer; the bar is the lowest score above which that member's samples were right at
  least P of the time on the *other* half of the questions;
- ``kill Q`` (with any of the above): a running sample whose 16-token window confidence falls below the
  Q-th percentile of its member's lowest window on the other half stops at once and gives no answer
  (DeepConf's online filter).

Schedules: ``priority`` (each member's k samples as one wave, favourite first: today's default) and
``cheap`` (the member with the shortest samples draws 2, every other member 1, then the rest: the
cheapest informative samples first). Thresholds are fitted on one half of the questions
(votesearch.half_of) and scored on the other, then the halves swap; nothing is fitted on the question
being answered.

    python bench/stop_rules.py --runs bench/runs/gsm8k-dev-k5.rescored.jsonl.gz,bench/runs/gsm8k-dev-pot-k5.rescored.jsonl.gz \\
        --profile default [--json]
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Sequence

import numpy as np

from edgemux.decide.confidence import sample_score
from edgemux.decide.earlystop import ModelProgress, outlook
from edgemux.decide.replay import Drawn
from edgemux.decide.replay import mux_decision as decide_on
from edgemux.decide.stoprules import KILL_WINDOW, Agreement, TraceKill, fit_bar
from edgemux.measure.evaluate import wilson
from edgemux.profiles import load_profile
from edgemux.selection.runs import read_runs_files
from edgemux.selection.search import RunTable, build_table
from edgemux.selection.votesearch import half_of

Rule = Callable[[list[Drawn], Drawn, int], bool]  # finished samples, the one that just finished, k


def mux_decision(finished: Sequence[Drawn], n_members: int, k: int) -> tuple[int, bool]:
    """(answer, right) of SLM-MUX over the finished samples (decide/replay.py)."""
    return decide_on(finished, n_members, k)[1:]


def agree(need: int, dissent: int, n_members: int) -> Rule:
    """The shipped agree rule (stoprules.Agreement): the agreed answer must be SLM-MUX's current one."""
    agreement = Agreement(need, dissent)

    def rule(finished: list[Drawn], last: Drawn, k: int) -> bool:
        agreed = agreement.agreed([d.answer if d.answer >= 0 else None for d in finished])
        return agreed is not None and mux_decision(finished, n_members, k)[0] == agreed

    return rule


def confident(bars: Sequence[float], n_members: int) -> Rule:
    def rule(finished: list[Drawn], last: Drawn, k: int) -> bool:
        return (
            last.answer >= 0
            and last.score >= bars[last.member]
            and mux_decision(finished, n_members, k)[0] == last.answer
        )

    return rule


def exact(n_members: int, total: Sequence[int]) -> Rule:
    """The answer-settled rule: stop once no outcome of the samples still to come changes the answer."""

    def rule(finished: list[Drawn], last: Drawn, k: int) -> bool:
        progress = {}
        for m in range(n_members):
            mine = [d for d in finished if d.member == m]
            answers = [str(d.answer) if d.answer >= 0 else None for d in mine]
            progress[str(m)] = ModelProgress(k, answers, running=total[m] - len(mine))
        return outlook(progress, {str(m): m for m in range(n_members)}).answer is not None

    return rule


def either(*rules: Rule) -> Rule:
    return lambda finished, last, k: any(r(finished, last, k) for r in rules)


def replay(waves: Sequence[Sequence[Drawn]], rule: Rule | None, n_members: int, k: int) -> tuple[int, bool]:
    """Tokens spent and whether the answer was right, decoding ``waves`` in order under ``rule``."""
    finished: list[Drawn] = []
    spent = 0
    for wave in waves:
        for d in sorted(wave, key=lambda d: d.tokens):
            finished.append(d)
            if rule is not None and rule(finished, d, k):
                spent += sum(min(o.tokens, d.tokens) for o in wave)
                return spent, mux_decision(finished, n_members, k)[1]
        spent += sum(d.tokens for d in wave)
    return spent, mux_decision(finished, n_members, k)[1]


class Question:
    """One question's samples for the profile's members, read from the table."""

    def __init__(self, table: RunTable, rows: Sequence[int], q: int, k: int) -> None:
        self.table, self.rows, self.q, self.k = table, rows, q, k

    def drawn(self, measure: str, window: int, kill_bars: Sequence[float] | None) -> list[list[Drawn]]:
        """[member][index] samples, each cut at its kill point when ``kill_bars`` are given."""
        t, q = self.table, self.q
        out = []
        for m, row in enumerate(self.rows):
            mine = []
            for j in range(self.k):
                signals = t.signals[row][q][j]
                score = sample_score(signals, measure, window) if signals is not None else -np.inf
                tokens, answer = int(t.tokens[row, q, j]), int(t.answers[row, q, j])
                right = bool(t.correct[row, q, j])
                if kill_bars is not None and signals is not None:
                    cut = TraceKill(KILL_WINDOW).kill_point(signals.confidences, kill_bars[m])
                    if cut is not None:
                        tokens, answer, right = cut, -1, False
                mine.append(Drawn(m, j, tokens, answer, right, score))
            out.append(mine)
        return out


def lowest_window(confidences: Sequence[float]) -> float:
    c = np.asarray(confidences, dtype=np.float64)
    if len(c) < KILL_WINDOW:
        return float(c.mean()) if len(c) else np.inf
    return float(np.convolve(c, np.ones(KILL_WINDOW) / KILL_WINDOW, mode="valid").min())


def schedule(samples: list[list[Drawn]], name: str, cheap: int) -> list[list[Drawn]]:
    if name == "priority":
        return samples
    first = [samples[cheap][:2]] + [[s[0]] for m, s in enumerate(samples) if m != cheap]
    rest = [samples[cheap][2:]] + [s[1:] for m, s in enumerate(samples) if m != cheap]
    return [w for w in first + rest if w]


def fit_bars(questions: Sequence[Question], n_members: int, measure: str, window: int, precision: float) -> list[float]:
    """Per member: its bar (stoprules.fit_bar) on these questions; a member with none never stops one."""
    bars = []
    for m in range(n_members):
        pairs = [(d.score, d.right) for qn in questions for d in qn.drawn(measure, window, None)[m] if d.answer >= 0]
        bar = fit_bar(pairs, precision)
        bars.append(np.inf if bar is None else bar)
    return bars


def fit_kill_bars(questions: Sequence[Question], n_members: int, percentile: float) -> list[float]:
    t = questions[0].table
    bars = []
    for m in range(n_members):
        lows = [
            lowest_window(s.confidences)
            for qn in questions
            for j in range(qn.k)
            if (s := t.signals[qn.rows[m]][qn.q][j]) is not None
        ]
        bars.append(float(np.percentile(lows, percentile)) if lows else -np.inf)
    return bars


SETTINGS: list[tuple[str, str, float | None, float | None]] = [
    # (rule, schedule, confidence precision, kill percentile)
    ("none", "priority", None, None),
    ("exact", "priority", None, None),
    ("exact", "cheap", None, None),
    ("agree 2/0", "cheap", None, None),
    ("agree 3/0", "cheap", None, None),
    ("agree 3/1", "cheap", None, None),
    ("agree 4/1", "cheap", None, None),
    *[("confident", "cheap", p, None) for p in (0.8, 0.9, 0.95)],
    *[("agree 3/1 + confident", "cheap", p, None) for p in (0.8, 0.9, 0.95)],
    *[("agree 3/1 + exact", "cheap", None, q) for q in (None, 5.0, 10.0)],
    *[("none", "priority", None, q) for q in (5.0, 10.0, 20.0)],
]


def make_rule(name: str, bars: list[float] | None, n_members: int, k: int) -> Rule | None:
    parts: list[Rule] = []
    for part in name.split(" + "):
        if part == "none":
            return None
        if part == "exact":
            parts.append(exact(n_members, [k] * n_members))
        elif part.startswith("agree"):
            need, dissent = part.split()[1].split("/")
            parts.append(agree(int(need), int(dissent), n_members))
        elif part == "confident":
            assert bars is not None
            parts.append(confident(bars, n_members))
    return either(*parts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", required=True)
    parser.add_argument("--profile", default="default")
    parser.add_argument("-k", type=int, help="samples per member [the profile's]")
    parser.add_argument("--measure", default="mean_logprob", help="the confidence measure of `confident`")
    parser.add_argument("--window", type=int, default=16)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    profile = load_profile(args.profile)
    k = args.k or profile.sampling.k
    table = build_table(read_runs_files(args.runs))
    rows = [table.models.index(m) for m in profile.member_names]  # the profile's tie order
    n = len(rows)
    questions = [Question(table, rows, q, k) for q in range(len(table.tasks))]
    halves = [[qn for qn in questions if half_of(table.tasks[qn.q]) == h] for h in (0, 1)]
    mean_tokens = [float(table.tokens[r, :, :k].mean()) for r in rows]
    cheap = int(np.argmin(mean_tokens))
    results = []
    for rule_name, schedule_name, precision, kill in SETTINGS:
        spent, right = [], []
        for fit, scored in ((0, 1), (1, 0)):
            bars = fit_bars(halves[fit], n, args.measure, args.window, precision) if precision else None
            kill_bars = fit_kill_bars(halves[fit], n, kill) if kill is not None else None
            rule = make_rule(rule_name, bars, n, k)
            for qn in halves[scored]:
                waves = schedule(qn.drawn(args.measure, args.window, kill_bars), schedule_name, cheap)
                tokens, ok = replay(waves, rule, n, k)
                spent.append(tokens)
                right.append(ok)
        low, high = wilson(sum(right), len(right))
        results.append({
            "rule": rule_name + (f" {precision:g}" if precision else "") + (f", kill p{kill:g}" if kill else ""),
            "schedule": schedule_name, "tokens": round(float(np.mean(spent)), 1),
            "accuracy": round(float(np.mean(right)), 4), "ci95": [round(low, 4), round(high, 4)],
        })  # fmt: skip
    if args.json:
        print(json.dumps({"profile": profile.name, "k": k, "questions": len(questions), "rows": results}, indent=2))
        return
    base = results[0]
    exact_tokens = results[1]["tokens"]
    print(f"profile {profile.name}, k={k}, {len(questions)} questions; thresholds fitted on the other half; "
          f"confidence: {args.measure}; cheapest member: {profile.member_names[cheap]}")  # fmt: skip
    print(f"  {'rule':<34} {'schedule':<9} {'tokens':>7} {'of exact':>8} {'accuracy':>9} {'vs none':>8}")
    for r in results:
        print(f"  {r['rule']:<34} {r['schedule']:<9} {r['tokens']:7.0f} {r['tokens'] / exact_tokens:8.0%} "
              f"{r['accuracy']:9.1%} {100 * (r['accuracy'] - base['accuracy']):+8.1f}")  # fmt: skip


if __name__ == "__main__":
    main()
