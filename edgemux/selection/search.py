"""``edgemux search``: which models to combine, and with how many samples, judged on collected runs
(../shared/SLM-MUX.md §2 and §4). Pure Python + numpy; nothing is generated.

A runs file becomes a table of answer ids, shape [models, tasks, k]. From it, per model: single-sample
accuracy, majority-vote (self-consistency) accuracy, how often all its samples agree on a wrong answer.
Per subset of models: UnionAcc, Contradiction and the objective O = UnionAcc − λ·Contradiction (the paper's
search), next to what a user would actually get — the simulated MUX accuracy for every k up to the
collected one (k' < k by drawing k' of the k samples, several times, and reporting the spread) — and the
pooled vote (Agent Forest) and the oracle on the same samples.
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ..answers.equivalence import Unifier, reference_of
from ..answers.extract import canonical_reference
from ..answers.members import RUN_PROGRAMS_NEEDED, recorded_answer
from ..decide.confidence import sample_score
from ..errors import InvalidRequestError
from ..types import TokenSignals
from .runs import Record, merged_settings

__all__ = ["RunTable", "SearchResult", "accuracy_ranks", "build_table", "search"]

Bools = NDArray[np.bool_]
Ints = NDArray[np.int64]


@dataclass
class RunTable:
    """Every scorable (task, model) record of a runs file as arrays; ``left_out`` says what was not used."""

    kind: str
    models: list[str]
    tasks: list[str]
    k: int
    answers: Ints  # [M, T, k] answer id per sample (equal ids = equal canonical answers), -1 = no answer
    correct: Bools  # [M, T, k]
    tokens: Ints  # [M, T, k]
    truncated: Bools  # [M, T, k]: the sample hit max_tokens (its answer may be cut off)
    seconds: NDArray[np.float64]  # [M, T] wall time of the model's whole batch of k samples
    settings: dict[str, Any]
    left_out: dict[str, int] = field(default_factory=dict)
    signals: list[list[list[TokenSignals | None]]] = field(default_factory=list)  # [M][T][k]: each sample's tokens
    _scores: dict[tuple[str, int], NDArray[np.float64]] = field(default_factory=dict, repr=False, compare=False)

    def scores(self, measure: str, window: int) -> NDArray[np.float64]:
        """[M, T, k] each sample's confidence under ``measure`` (confidence.sample_score); NaN where a sample
        has no token signals (recorded before the engine kept them). Computed once per measure and window."""
        if (measure, window) not in self._scores:
            out = np.full(self.answers.shape, np.nan)
            for (m, t, j), signals in _indexed(self.signals):
                if signals is not None:
                    out[m, t, j] = sample_score(signals, measure, window)
            self._scores[measure, window] = out
        return self._scores[measure, window]


def build_table(records: Sequence[Record], *, rescore: bool = True, run_programs: bool = False,
                measure: str = "lexical") -> RunTable:  # fmt: skip
    """Arrange records as arrays. ``rescore`` extracts every answer again from its text (a program's from
    its recorded output), so that runs collected before an extractor fix are scored by today's rules.
    Nothing is executed unless ``run_programs``: code tasks need it, to run their reference programs."""
    kind, k = _one_kind_and_k(records, run_programs)
    models = list(dict.fromkeys(r.model for r in records))
    by_task: dict[str, dict[str, Record]] = {}
    for r in records:
        by_task.setdefault(r.task, {})[r.model] = r
    tasks, left_out = _scorable_tasks(by_task, len(models), kind)

    shape = (len(models), len(tasks), k)
    answers = np.full(shape, -1, dtype=np.int64)
    correct = np.zeros(shape, dtype=np.bool_)
    tokens = np.zeros(shape, dtype=np.int64)
    truncated = np.zeros(shape, dtype=np.bool_)
    seconds = np.zeros(shape[:2], dtype=np.float64)
    signals: list[list[list[TokenSignals | None]]] = [[[None] * k for _ in tasks] for _ in models]
    for t, task in enumerate(tasks):
        per_model = by_task[task]
        first = next(iter(per_model.values()))
        # answers that mean the same (MATH) or say the same (open) share an id; a MATH reference's spelling first
        unify = Unifier(kind, measure, question=first.question)
        reference = reference_of(kind, first.reference, _tests(per_model), first.aliases, unify)
        read: dict[tuple[int, int], str | None] = {}
        for m, model in enumerate(models):
            record = per_model[model]
            seconds[m, t] = max(s.seconds for s in record.samples)
            for j, s in enumerate(sorted(record.samples, key=lambda s: s.index)):
                read[m, j] = (
                    recorded_answer(kind, model, s, n_choices=record.n_choices, tests=record.tests, run_programs=True,
                                    choices=record.choices)
                    if rescore else s.answer
                )  # fmt: skip
                tokens[m, t, j] = s.tokens
                signals[m][t][j] = s.signals
                truncated[m, t, j] = s.stop_reason == "length"
        unify.prepare(list(read.values()))
        ids: dict[str, int] = {}
        for (m, j), recorded in read.items():
            answer = unify(recorded)
            if answer is not None:
                answers[m, t, j] = ids.setdefault(answer, len(ids))
                # an open answer is judged on its own words, not its cluster leader's (maybe another
                # member's, worded differently): the usual exact match of what the member said
                judged = recorded if kind == "open" else answer
                correct[m, t, j] = reference is not None and reference.is_right(judged)
    return RunTable(kind, models, tasks, k, answers, correct, tokens, truncated, seconds, merged_settings(records),
                    left_out, signals)  # fmt: skip


def _one_kind_and_k(records: Sequence[Record], run_programs: bool) -> tuple[str, int]:
    """The one kind and k every record shares: a search compares like with like."""
    if not records:
        raise InvalidRequestError("the runs file holds no records")
    kinds = Counter(r.kind for r in records)
    if len(kinds) > 1:
        raise InvalidRequestError(f"the runs mix task kinds ({_counts(kinds)}); search one kind at a time")
    ks = Counter(r.k for r in records)
    if len(ks) > 1:
        raise InvalidRequestError(
            f"the runs mix sample counts ({_counts(ks, 'k=')}); every record needs the same k — collect into "
            "separate files, one per k"
        )
    kind, k = records[0].kind, records[0].k
    if kind == "code" and not run_programs:
        raise InvalidRequestError(RUN_PROGRAMS_NEEDED)
    return kind, k


def _scorable_tasks(
    by_task: dict[str, dict[str, Record]], n_models: int, kind: str
) -> tuple[list[str], dict[str, int]]:
    """The tasks every model ran that have a usable reference, and how many were left out for which reason."""
    left_out: Counter[str] = Counter()
    tasks = []
    for task, per_model in by_task.items():
        given = next(iter(per_model.values())).reference
        if len(per_model) < n_models:
            left_out["tasks not yet run by every model"] += 1
        elif given is None or canonical_reference(kind, given, _tests(per_model)) is None:
            left_out["tasks without a usable reference answer"] += 1
        else:
            tasks.append(task)
    if not tasks:
        reasons = "; ".join(f"{n} {why}" for why, n in left_out.items())
        raise InvalidRequestError(f"nothing to score: {reasons}")
    return tasks, dict(left_out)


def _indexed(
    nested: list[list[list[TokenSignals | None]]],
) -> Iterator[tuple[tuple[int, int, int], TokenSignals | None]]:
    for m, per_task in enumerate(nested):
        for t, per_sample in enumerate(per_task):
            for j, signals in enumerate(per_sample):
                yield (m, t, j), signals


def _tests(per_model: dict[str, Record]) -> tuple[str, ...] | None:
    return next(iter(per_model.values())).tests


def _counts(counter: Counter[Any], prefix: str = "") -> str:
    return ", ".join(f"{prefix}{key}: {n} records" for key, n in counter.most_common())


# -- votes on arrays ----------------------------------------------------------------------------------------


def majority(
    answers: Ints, correct: Bools, weights: NDArray[np.float64] | None = None
) -> tuple[NDArray[np.float64], Bools]:
    """Per row of samples (last axis): the SLM-MUX confidence (majority count / all samples) and whether the
    majority answer is right. Tied answers go to the one that appeared first, as in ``mux.tally``. With
    ``weights`` (as ``confidence.weigh`` gives them, same shape), each sample counts its weight and the
    confidence is the winner's share of all the weight (mux.tally under a weighted or filtered rule)."""
    same = (answers[..., :, None] == answers[..., None, :]) & (answers[..., :, None] >= 0)
    if weights is None:
        mass = same.sum(axis=-1).astype(np.float64)  # for each sample: how many samples share its answer
        total = np.full(answers.shape[:-1], float(answers.shape[-1]))
    else:
        mass = (same * weights[..., None, :]).sum(axis=-1)
        total = weights.sum(axis=-1)
    first = mass.argmax(axis=-1)  # the earliest sample of the heaviest answer
    best = np.take_along_axis(mass, first[..., None], axis=-1)[..., 0]
    right = np.take_along_axis(correct, first[..., None], axis=-1)[..., 0] & (best > 0)
    return np.divide(best, total, out=np.zeros_like(best), where=total > 0), right


def mux_pick(confidence: NDArray[np.float64], ranks: Sequence[int]) -> Ints:
    """Index (within the given models) of each task's MUX winner: highest confidence, exact ties to the best
    rank (0 = best validation accuracy), as ``mux.decide``. confidence: [S, T]."""
    rank = np.asarray(ranks, dtype=np.int64)[:, None]
    tied = confidence == confidence.max(axis=0, keepdims=True)
    return np.where(tied, rank, np.iinfo(np.int64).max).argmin(axis=0)  # type: ignore[no-any-return]


# -- the search -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Spread:
    mean: float
    std: float
    low: float
    high: float

    @classmethod
    def of(cls, values: Sequence[float]) -> Spread:
        a = np.asarray(values, dtype=np.float64)
        return cls(float(a.mean()), float(a.std()), float(a.min()), float(a.max()))

    def percent(self) -> str:
        """'58.7 ± 1.9' (in %), or '60.0' when every draw gave the same (the full k)."""
        return f"{100 * self.mean:.1f}" if self.std == 0 else f"{100 * self.mean:.1f} ± {100 * self.std:.1f}"


@dataclass(frozen=True)
class ModelStats:
    model: str
    accuracy: float  # one sample
    self_consistency: dict[int, Spread]  # majority-vote accuracy at each k
    confidently_wrong: float  # all k samples agree on a wrong answer
    unparsable: float  # share of samples with no answer
    truncated: float  # share of samples that hit max_tokens
    tokens_per_sample: float
    seconds_per_token: float  # measured: batch wall time / tokens in the batch, outlier batches left out


@dataclass(frozen=True)
class AtK:
    """One subset at one k: the simulated MUX accuracy and the baselines on the same samples."""

    k: int
    mux: Spread
    pooled: Spread  # Agent Forest: all samples of all models in one vote
    best_single: Spread  # the subset's best model, self-consistency at this k
    oracle: float  # some model's majority is right
    tokens: float  # per answer, all models' samples
    seconds: float  # per answer, from each model's measured seconds per token


@dataclass(frozen=True)
class SubsetStats:
    models: tuple[str, ...]
    union_accuracy: float
    contradiction: float
    objective: float
    by_k: dict[int, AtK]


@dataclass(frozen=True)
class SearchResult:
    kind: str
    tasks: int
    k: int
    lam: float
    repeats: int
    models: list[ModelStats]
    subsets: list[SubsetStats]  # sorted by the objective, best first
    left_out: dict[str, int]
    settings: dict[str, Any]

    def model(self, name: str) -> ModelStats:
        return next(m for m in self.models if m.model == name)


def search(table: RunTable, *, max_models: int = 3, lam: float = 1.0, repeats: int = 20, seed: int = 0) -> SearchResult:
    """Score every model and every subset of 2..max_models models at every k ≤ the collected k."""
    n_models, n_tasks, k_max = table.answers.shape
    if max_models < 1:
        raise InvalidRequestError("--max-models must be at least 1")

    draws = _draws(table, repeats, np.random.default_rng(seed))
    votes = {k: [majority(a, c) for a, c, _ in draws[k]] for k in draws}  # per draw: ([M,T] conf, [M,T] right)

    accuracy = table.correct.mean(axis=(1, 2))
    ranks = accuracy_ranks(table.correct)
    per_token = _seconds_per_token(table)
    full_right = votes[k_max][0][1]
    all_same = (table.answers == table.answers[..., :1]).all(axis=-1) & (table.answers[..., 0] >= 0)
    confidently_wrong = all_same & ~table.correct[..., 0]  # [M, T]

    models = [
        ModelStats(
            model=name,
            accuracy=float(accuracy[m]),
            self_consistency={k: Spread.of([float(right[m].mean()) for _, right in votes[k]]) for k in votes},
            confidently_wrong=float(confidently_wrong[m].mean()),
            unparsable=float((table.answers[m] < 0).mean()),
            truncated=float(table.truncated[m].mean()),
            tokens_per_sample=float(table.tokens[m].mean()),
            seconds_per_token=float(per_token[m]),
        )
        for m, name in enumerate(table.models)
    ]

    subsets = []
    sizes = range(2, min(max_models, n_models) + 1) if n_models > 1 else range(1, 2)
    for size in sizes:
        for members in itertools.combinations(range(n_models), size):
            idx = list(members)
            right = full_right[idx]
            union = right.any(axis=0)
            contradiction = _contradiction(confidently_wrong[idx], right)
            by_k = {k: _subset_at(k, idx, draws[k], votes[k], [ranks[i] for i in idx], per_token) for k in draws}
            union_acc = float(union.mean())
            subsets.append(
                SubsetStats(
                    tuple(table.models[i] for i in idx),
                    union_acc,
                    float(contradiction.mean()),
                    union_acc - lam * float(contradiction.mean()),
                    by_k,
                )  # fmt: skip
            )
    subsets.sort(key=lambda s: (-s.objective, -s.by_k[k_max].mux.mean, len(s.models)))
    return SearchResult(table.kind, n_tasks, k_max, lam, repeats, models, subsets, table.left_out, table.settings)


def accuracy_ranks(correct: Bools) -> list[int]:
    """Each model's place in the tie-break order from its single-sample accuracy over ``correct``
    ([M, T, k]): 0 = the best; equal accuracies keep the models' order."""
    return [int(r) for r in np.argsort(-correct.mean(axis=(1, 2)), kind="stable").argsort()]


Draw = tuple[Ints, Bools, Ints]  # one subsample's answers, correctness and tokens, each [M, T, k']


def _draws(table: RunTable, repeats: int, rng: np.random.Generator) -> dict[int, list[Draw]]:
    """For each k' < k, ``repeats`` draws of k' of the k samples per (model, task), kept in sample order
    (the order breaks ties inside a model); at k' = k, the samples themselves."""
    n_models, n_tasks, k_max = table.answers.shape
    draws: dict[int, list[Draw]] = {}
    for k in range(1, k_max + 1):
        draws[k] = []
        for _ in range(1 if k == k_max else repeats):
            order = np.sort(rng.random((n_models, n_tasks, k_max)).argsort(axis=-1)[..., :k], axis=-1)
            draws[k].append((
                np.take_along_axis(table.answers, order, axis=-1),
                np.take_along_axis(table.correct, order, axis=-1),
                np.take_along_axis(table.tokens, order, axis=-1),
            ))  # fmt: skip
    return draws


def _seconds_per_token(table: RunTable) -> NDArray[np.float64]:
    """Per model: all batches' seconds over all their tokens (prompt time included, weighted by length),
    leaving out batches more than 3x slower per token than the model's median: slowed by something else
    on the machine, or a collector paused and resumed."""
    batch_tokens = np.maximum(table.tokens.sum(axis=2), 1)
    rate = table.seconds / batch_tokens
    usual = rate <= 3 * np.median(rate, axis=1, keepdims=True)
    return (table.seconds * usual).sum(axis=1) / (batch_tokens * usual).sum(axis=1)  # type: ignore[no-any-return]


def _subset_at(k: int, idx: list[int], draws: list[Draw], votes: list[tuple[NDArray[np.float64], Bools]],
               ranks: list[int], per_token: NDArray[np.float64]) -> AtK:  # fmt: skip
    """One subset (rows ``idx``) at k samples per member: SLM-MUX, the pooled vote and the best member over
    the draws, the oracle, and the tokens and seconds per answer."""
    n_tasks = draws[0][0].shape[1]
    mux, pooled, single = [], [], []
    for (answers, correct, _), (conf, maj) in zip(draws, votes, strict=True):
        pick = mux_pick(conf[idx], ranks)
        mux.append(float(np.take_along_axis(maj[idx], pick[None, :], axis=0).mean()))
        pooled_answers = answers[idx].transpose(1, 0, 2).reshape(n_tasks, -1)
        pooled_correct = correct[idx].transpose(1, 0, 2).reshape(n_tasks, -1)
        pooled.append(float(majority(pooled_answers, pooled_correct)[1].mean()))
        single.append(float(maj[idx].mean(axis=1).max()))
    oracle = float(np.mean([maj[idx].any(axis=0).mean() for _, maj in votes]))
    mean_tokens = np.mean([tok[idx].sum(axis=2).mean(axis=1) for _, _, tok in draws], axis=0)  # [S]
    return AtK(k, Spread.of(mux), Spread.of(pooled), Spread.of(single), oracle,
               float(mean_tokens.sum()), float((mean_tokens * per_token[idx]).sum()))  # fmt: skip


def _contradiction(confidently_wrong: Bools, right: Bools) -> Bools:
    """Per task: some model is confidently wrong while another model of the subset is right."""
    wrong_any = confidently_wrong.any(axis=0)
    right_any = right.any(axis=0)
    return np.asarray(wrong_any & right_any)  # a confidently wrong model is never right, so these are different models
