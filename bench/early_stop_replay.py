"""Early stop replayed on recorded runs: the real scheduler and MUX rule, driven by samples that
`edgemux collect` recorded, so the token savings can be measured on every collected question in seconds
(issue: memory budget and scheduler). The live benchmark (bench/early_stop.py) measures time on fewer
questions; this one measures tokens and answers on all of them.

For every task that all the profile's models ran, each model's first k recorded samples are played back
(sample i finishes after its recorded number of tokens, with its recorded text) under every setting:
full (no early stop), and each policy (priority, interleave, staged, cheapest) with each stop rule
(decision, answer, confident, agree). It checks that early stop gave the same answer as full sampling on every
question and prints the share of tokens saved, then the clairvoyant bound (bench/early_stop_bound.py): the most any exact rule
could save on the same samples.

    python bench/early_stop_replay.py --runs bench/runs/gsm8k-dev-k5.jsonl.gz --profile default -k 3
    python bench/early_stop_replay.py --runs bench/runs/gsm8k-dev-k5.jsonl.gz,bench/runs/gsm8k-dev-pot-k5.jsonl.gz

Program-of-thought members' recorded programs run again in the sandbox (each program once: later
replays of the same program reuse its run).
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import sys
from pathlib import Path

from early_stop_bound import cheapest_certificate, question_slots

from edgemux.answers.extract import canonical_reference
from edgemux.answers.strategies import parse_member
from edgemux.profiles import ProfileModel, load_profile
from edgemux.schedule import question
from edgemux.schedule.runtime import LoadOptions, Mux
from edgemux.selection.runs import read_runs_files
from edgemux.selection.search import build_table
from edgemux.testing import ReplayEngine

HERE = Path(__file__).parent
SETTINGS = {
    "full": LoadOptions(policy="interleave", early_stop=False),
    "priority": LoadOptions(policy="priority", early_stop=True, stop_rule="decision"),
    "interleave": LoadOptions(policy="interleave", early_stop=True, stop_rule="decision"),
    "priority+answer": LoadOptions(policy="priority", early_stop=True, stop_rule="answer"),
    "interleave+answer": LoadOptions(policy="interleave", early_stop=True, stop_rule="answer"),
    "staged": LoadOptions(policy="staged", early_stop=True, stop_rule="decision"),
    "staged+answer": LoadOptions(policy="staged", early_stop=True, stop_rule="answer"),
    # the profile's calibrated bars (`profile build`): stops on a sure sample, may change answers
    "priority+confident": LoadOptions(policy="priority", early_stop=True, stop_rule="confident"),
    # the shortest samples first (the profile's tokens_per_sample): 2 of the cheapest member, 1 of each other
    "cheapest": LoadOptions(policy="cheapest", early_stop=True, stop_rule="decision"),
    "cheapest+confident": LoadOptions(policy="cheapest", early_stop=True, stop_rule="confident"),
    "staged+confident": LoadOptions(policy="staged", early_stop=True, stop_rule="confident"),
    # finished samples agreeing on the current answer (the profile's need/dissent, else 3 with 1 dissenting)
    "priority+agree": LoadOptions(policy="priority", early_stop=True, stop_rule="agree"),
    "cheapest+agree": LoadOptions(policy="cheapest", early_stop=True, stop_rule="agree"),
    "staged+agree": LoadOptions(policy="staged", early_stop=True, stop_rule="agree"),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", default=str(HERE / "runs" / "gsm8k-dev-k5.jsonl.gz"))
    parser.add_argument("--profile", default="default")
    parser.add_argument("-k", type=int, default=None, help="samples per model [the profile's]")
    parser.add_argument("--measured-ties", action="store_true",
                        help="break ties by each model's accuracy on these runs (what `profile build` writes)")  # fmt: skip
    parser.add_argument("--settings", default=",".join(SETTINGS),
                        help="which of full,priority,interleave,...+answer,staged[+answer] to replay (full is always)")  # fmt: skip
    parser.add_argument("--no-bound", action="store_true",
                        help="skip the clairvoyant bound (an exhaustive search: minutes per question at k = 5)")  # fmt: skip
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    chosen = {"full", *[s.strip() for s in args.settings.split(",") if s.strip()]}
    unknown = chosen - set(SETTINGS)
    if unknown:
        sys.exit(f"unknown settings: {', '.join(sorted(unknown))}; choose from {', '.join(SETTINGS)}")
    settings = {name: options for name, options in SETTINGS.items() if name in chosen}
    if any(name.endswith("+confident") for name in settings) and load_profile(args.profile).bars is None:
        sys.exit(f"profile {args.profile} has no confidence bars: build it from runs with token signals")
    early_names = [name for name in settings if name != "full"]

    profile = load_profile(args.profile)
    k = args.k or profile.sampling.k
    records = read_runs_files(args.runs)
    question.run_program_of = functools.lru_cache(maxsize=None)(question.run_program_of)  # each program runs once
    if args.measured_ties:
        table = build_table(records)
        accuracy = {m: float(table.correct[i].mean()) for i, m in enumerate(table.models)}
        profile = dataclasses.replace(
            profile, models=tuple(ProfileModel(m.name, accuracy[m.name]) for m in profile.models)
        )
    profile = profile.with_overrides(sampling={"k": k, "seed": 1})
    if profile.kind == "auto":  # replayed as the kind its runs were measured as (numbers for `default`)
        profile = dataclasses.replace(profile, kind=profile.measured.get("kind", "number"))
    by_task: dict[str, dict[str, object]] = {}
    for r in records:
        by_task.setdefault(r.task, {})[r.model] = r
    members = profile.member_names
    tasks = [t for t, per in by_task.items() if all(m in per for m in members)]
    if not tasks:
        sys.exit(f"no task in {args.runs} was run by all of {', '.join(members)}")
    # each member's recording is picked by a piece of its own prompt (members of one model differ in it)
    marker = {m: parse_member(m).instruction(profile.kind, profile.instruction) or "" for m in members}
    marker = {m: text.split("{question}")[0][:60] for m, text in marker.items()}

    engines: dict[str, ReplayEngine] = {}

    def factory(spec, path, n_ctx, n_seq_max, options):  # type: ignore[no-untyped-def]
        return engines.setdefault(spec.name, ReplayEngine())

    totals = {name: {"tokens": 0, "correct": 0, "same": 0, "same_confidence": 0} for name in settings}
    accuracy = [m.validation_accuracy for m in profile.models]
    bound_tokens = 0
    for task in tasks:
        per = by_task[task]
        first = next(iter(per.values()))
        reference = canonical_reference(first.kind, first.reference) if first.reference else None  # type: ignore[attr-defined]
        answers, confidences = {}, {}
        for name, options in settings.items():
            with Mux(profile, load=options, engine_factory=factory) as mux:
                for member in members:
                    samples = sorted(per[member].samples, key=lambda s: s.index)[:k]  # type: ignore[attr-defined]
                    engines.setdefault(parse_member(member).model, ReplayEngine()).play(
                        [s.text for s in samples],
                        [s.tokens for s in samples],
                        prompt_has=marker[member],
                        signals=[s.signals for s in samples],
                    )
                result = mux.ask(f"replay of {task}", kind=first.kind)  # type: ignore[attr-defined]
            answers[name], confidences[name] = result.answer, result.decision.confidence
            totals[name]["tokens"] += result.tokens
            totals[name]["same_confidence"] += confidences[name] == confidences["full"]
            totals[name]["correct"] += result.answer is not None and result.answer == reference
            totals[name]["same"] += result.answer == answers["full"]
        if not args.no_bound:
            slot_answers, slot_tokens = question_slots(per, members, k)
            bound_tokens += cheapest_certificate(slot_answers, slot_tokens, members, k, accuracy)[0]
    n = len(tasks)
    out = {
        "runs": args.runs, "profile": profile.name, "models": members, "k": k, "questions": n,
        "tie_break": "measured accuracy" if args.measured_ties else "profile",
        **{name: {"tokens_per_question": t["tokens"] / n, "accuracy": t["correct"] / n, "same_answer_as_full": t["same"] / n,
                  "confidence_differs_from_full": n - t["same_confidence"]}
           for name, t in totals.items()},
        **{f"{name}_tokens_saved": 1 - totals[name]["tokens"] / totals["full"]["tokens"] for name in early_names},
        **({} if args.no_bound else {
            "clairvoyant_bound_tokens_per_question": bound_tokens / n,
            "most_any_exact_rule_saves": 1 - bound_tokens / totals["full"]["tokens"],
        }),
    }  # fmt: skip
    if args.json:
        print(json.dumps(out, indent=2))
        return
    print(f"{n} questions, {' + '.join(members)}, k={k}, ties by {out['tie_break']}")
    for name in settings:
        r = out[name]
        print(f"  {name:<18} {r['tokens_per_question']:7.0f} tokens/question  accuracy {100 * r['accuracy']:5.1f}%  "
              f"same answer as full {100 * r['same_answer_as_full']:5.1f}%  "
              f"confidence differs on {r['confidence_differs_from_full']}")  # fmt: skip
    for name in early_names:
        print(f"  {name} early stop saves {100 * out[f'{name}_tokens_saved']:.1f}% of the tokens")
    if args.no_bound:
        return
    print(f"  no exact rule can save more than {100 * out['most_any_exact_rule_saves']:.1f}% "
          f"(clairvoyant bound, bench/early_stop_bound.py: {out['clairvoyant_bound_tokens_per_question']:.0f} tokens/question)")  # fmt: skip


if __name__ == "__main__":
    main()
