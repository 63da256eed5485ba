"""How many tokens could *any* exact early stop save? A clairvoyant lower bound on recorded runs.

Early stop is exact when it stops only once no outcome of the samples still undecoded could change the
answer. Whatever order a scheduler decodes samples in, it must finish some set of samples whose answers
already settle the decision; the cheapest such set, chosen knowing every sample's answer and length in
advance, is a lower bound on the tokens any exact online policy decodes (the policy also pays for samples
it starts and cancels, and does not know the lengths). This script finds that set for every question of a
runs file and prints the share of tokens it saves against full sampling — the most any exact rule can save
with these models, this k and this tie-break order (issue: memory budget and scheduler, target ≥ 30 %).

    python bench/early_stop_bound.py --runs bench/runs/gsm8k-dev-k5.jsonl.gz \
        --models qwen2.5-coder-1.5b,qwen2.5-coder-0.5b -k 3

With --orders it also scores every fixed decoding order (samples one at a time, no batch waste; samples of
one model are exchangeable, so an order is an interleaving of the models' sample sequences), stopping as
soon as the decoded samples settle the answer: the best of them, chosen in hindsight, is the most any
non-adaptive exact schedule can save.

A set settles the answer when every completion of the other samples — each one any answer already seen,
a new answer, or no answer — leaves the SLM-MUX answer unchanged (mux.tally / mux.decide, the same rule
`edgemux ask` uses). Models are given in tie-break order (best validation accuracy first).
"""

from __future__ import annotations

import argparse
import itertools
import json
from collections.abc import Iterator
from pathlib import Path

from edgemux.answers.extract import extract
from edgemux.decide.mux import decide, tally
from edgemux.selection.runs import read_runs
from edgemux.selection.search import build_table
from edgemux.types import Sample

HERE = Path(__file__).parent
Slot = tuple[int, int]  # (model position, sample index)


def final_answer(
    answers: dict[Slot, str | None], models: list[str], k: int, accuracy: list[float | None]
) -> str | None:
    votes = []
    for m, name in enumerate(models):
        samples = [Sample(name, i, i, "", answers[(m, i)], 0, "eos", 0.0) for i in range(k)]
        votes.append(tally(name, samples, accuracy[m]))
    return decide(votes).answer


def settles(known: dict[Slot, str | None], unknown: list[Slot], models: list[str], k: int,
            accuracy: list[float | None], answer: str | None) -> bool:  # fmt: skip
    """Does every completion of ``unknown`` give ``answer``? Fresh answers are distinct new symbols."""
    seen = sorted({a for a in known.values() if a is not None})
    alphabet: list[str | None] = [*seen, None, *(f"\0new{j}" for j in range(len(unknown)))]
    for values in itertools.product(alphabet, repeat=len(unknown)):
        if final_answer({**known, **dict(zip(unknown, values, strict=True))}, models, k, accuracy) != answer:
            return False
    return True


def cheapest_certificate(answers: dict[Slot, str | None], tokens: dict[Slot, int], models: list[str], k: int,
                         accuracy: list[float | None]) -> tuple[int, tuple[Slot, ...]]:  # fmt: skip
    """The cheapest set of samples (by tokens) whose answers settle the SLM-MUX answer, and its cost."""
    full = final_answer(answers, models, k, accuracy)
    slots = sorted(answers)
    subsets = sorted(
        (s for n in range(len(slots) + 1) for s in itertools.combinations(slots, n)),
        key=lambda s: sum(tokens[x] for x in s),
    )
    for subset in subsets:
        known = {x: answers[x] for x in subset}
        if settles(known, [x for x in slots if x not in known], models, k, accuracy, full):
            return sum(tokens[x] for x in subset), subset
    raise AssertionError("the full set always settles the answer")


def interleavings(models: int, k: int) -> Iterator[tuple[Slot, ...]]:
    """Every order of decoding k samples of each model, sample i of a model always before sample i + 1."""
    for owners in set(itertools.permutations([m for m in range(models) for _ in range(k)])):
        seen = [0] * models
        order = []
        for m in owners:
            order.append((m, seen[m]))
            seen[m] += 1
        yield tuple(order)


def order_cost(order: tuple[Slot, ...], answers: dict[Slot, str | None], tokens: dict[Slot, int], models: list[str],
               k: int, accuracy: list[float | None], cache: dict[frozenset[Slot], bool]) -> int:  # fmt: skip
    """Tokens decoded when samples are decoded one at a time in ``order`` until they settle the answer."""
    full = final_answer(answers, models, k, accuracy)
    known: dict[Slot, str | None] = {}
    cost = 0
    for slot in order:
        known[slot] = answers[slot]
        cost += tokens[slot]
        key = frozenset(known)
        if key not in cache:
            cache[key] = settles(known, [s for s in answers if s not in known], models, k, accuracy, full)
        if cache[key]:
            break
    return cost


def question_slots(
    per_model: dict[str, object], models: list[str], k: int
) -> tuple[dict[Slot, str | None], dict[Slot, int]]:
    """Each model's first k recorded samples of one question: answers (extracted again) and token counts."""
    answers: dict[Slot, str | None] = {}
    tokens: dict[Slot, int] = {}
    for m, name in enumerate(models):
        record = per_model[name]
        for i, s in enumerate(sorted(record.samples, key=lambda s: s.index)[:k]):  # type: ignore[attr-defined]
            answers[(m, i)] = extract(record.kind, s.text, n_choices=record.n_choices, tests=record.tests)  # type: ignore[attr-defined]
            tokens[(m, i)] = s.tokens
    return answers, tokens


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", default=str(HERE / "runs" / "gsm8k-dev-k5.jsonl.gz"))
    parser.add_argument("--models", default="qwen2.5-coder-1.5b,qwen2.5-coder-0.5b",
                        help="comma-separated, in tie-break order")  # fmt: skip
    parser.add_argument("-k", type=int, default=3)
    parser.add_argument("--orders", action="store_true", help="also score every fixed decoding order")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    models = args.models.split(",")
    records = read_runs(Path(args.runs))
    table = build_table(records)
    accuracy = [float(table.correct[table.models.index(m)].mean()) for m in models]
    by_task: dict[str, dict[str, object]] = {}
    for r in records:
        by_task.setdefault(r.task, {})[r.model] = r
    tasks = [t for t, per in by_task.items() if all(m in per for m in models)]

    full_tokens = bound_tokens = favourite_only = 0
    orders = list(interleavings(len(models), args.k)) if args.orders else []
    order_tokens = dict.fromkeys(orders, 0)
    for task in tasks:
        answers, tokens = question_slots(by_task[task], models, args.k)
        cache: dict[frozenset[Slot], bool] = {}
        for order in orders:
            order_tokens[order] += order_cost(order, answers, tokens, models, args.k, accuracy, cache)
        cost, _ = cheapest_certificate(answers, tokens, models, args.k, accuracy)
        full_tokens += sum(tokens.values())
        bound_tokens += cost
        favourite_only += sum(v for (m, _), v in tokens.items() if m == 0)

    out = {
        "runs": args.runs, "models": models, "k": args.k, "questions": len(tasks),
        "validation_accuracy": dict(zip(models, accuracy, strict=True)),
        "full_tokens_per_question": full_tokens / len(tasks),
        "bound_tokens_per_question": bound_tokens / len(tasks),
        "most_any_exact_rule_saves": 1 - bound_tokens / full_tokens,
        "favourite_alone_saves": 1 - favourite_only / full_tokens,
    }  # fmt: skip
    if orders:
        best = min(orders, key=lambda o: order_tokens[o])
        out["best_fixed_order"] = [f"{models[m]}#{i}" for m, i in best]
        out["best_fixed_order_saves"] = 1 - order_tokens[best] / full_tokens
    if args.json:
        print(json.dumps(out, indent=2))
        return
    print(f"{len(tasks)} questions, {' + '.join(models)} (ties in this order), k={args.k}")
    print(f"  full sampling          {out['full_tokens_per_question']:7.0f} tokens/question")
    print(f"  clairvoyant exact stop {out['bound_tokens_per_question']:7.0f} tokens/question"
          f"  -> at most {100 * out['most_any_exact_rule_saves']:.1f}% saved by any exact rule")  # fmt: skip
    print(f"  (the favourite's k samples alone would be {100 * out['favourite_alone_saves']:.1f}% fewer tokens)")
    if orders:
        print(f"  best of {len(orders)} fixed decoding orders, chosen in hindsight: {', '.join(out['best_fixed_order'])}"
              f" -> {100 * out['best_fixed_order_saves']:.1f}% saved")  # fmt: skip


if __name__ == "__main__":
    main()
