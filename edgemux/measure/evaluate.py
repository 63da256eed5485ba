"""``edgemux eval``: a profile's accuracy against every baseline on the same questions and samples.

Scoring works on recorded samples (a runs file from ``collect``, or the one a live eval writes), so every
method sees exactly the same samples:

- ``<member>, first sample``: each member alone, its first recorded sample;
- ``<model>, majority of k``: self-consistency;
- ``pooled vote``: one majority over all the models' samples (Agent Forest);
- ``SLM-MUX``: the profile's rule (``mux.tally``/``mux.decide``, the code ``ask`` runs);
- ``SLM-MUX + early stop``: live runs only — what ``ask`` decoded and how long it took;
- ``SLM-MUX, <rule> stop (replayed)``: with ``stops``, the exact rule, the profile's confident rule and
  the agree rule replayed on the recorded samples (``selection/stopsearch.py``; seconds scaled from the full batches
  by the share of tokens decoded);
- ``oracle``: some model's majority is right.

Each with accuracy and a 95 % Wilson interval, tokens and seconds per question, and resident memory.
Seconds of recorded samples are those of the batch they were drawn in (the k samples of one model decode
together); a method that uses several models adds their batches up, as the priority scheduler runs them.
"""

from __future__ import annotations

import dataclasses
import math
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace

from ..answers.equivalence import Reference, Unifier, reference_of
from ..answers.members import RUN_PROGRAMS_NEEDED, recorded_answer
from ..decide.calibration import CoveragePoint, risk_coverage
from ..decide.confidence import VoteRule, sample_score
from ..decide.earlystop import tie_ranks
from ..decide.mux import decide, tally
from ..decide.replay import Drawn, cut_by_kill, replay_question
from ..decide.stoprules import Agreement, ConfidenceBars, TraceKill
from ..errors import InvalidRequestError
from ..profiles import Profile
from ..selection.runs import Record
from ..types import Sample

__all__ = ["EvalReport", "MethodScore", "QuestionOutcome", "score_runs", "wilson"]


def wilson(correct: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95 % Wilson score interval for a share (well-behaved at 0, at n and for small n)."""
    if n == 0:
        return 0.0, 0.0
    p = correct / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


@dataclass
class MethodScore:
    method: str
    correct: int = 0
    n: int = 0
    tokens: int = 0
    seconds: float = 0.0
    resident_bytes: int | None = None  # of the models the method needs (measured live, else estimated)

    @property
    def accuracy(self) -> float:
        return self.correct / self.n if self.n else 0.0

    @property
    def interval(self) -> tuple[float, float]:
        return wilson(self.correct, self.n)

    def add(self, right: bool, tokens: int, seconds: float) -> None:
        self.n += 1
        self.correct += right
        self.tokens += tokens
        self.seconds += seconds

    def to_dict(self) -> dict[str, object]:
        low, high = self.interval
        return {
            "method": self.method, "accuracy": self.accuracy, "ci95": [low, high], "correct": self.correct,
            "questions": self.n, "tokens_per_question": self.tokens / self.n if self.n else 0.0,
            "seconds_per_question": self.seconds / self.n if self.n else 0.0, "resident_bytes": self.resident_bytes,
        }  # fmt: skip


@dataclass(frozen=True)
class QuestionOutcome:
    """Per question: each method's answer (for reports and for checking one question by hand)."""

    task: str
    reference: str
    answers: dict[str, str | None]
    mux_confidence: float = 0.0  # the SLM-MUX winner's confidence (for risk–coverage)
    mux_right: bool = False  # judged like every method (an open answer: against any alias)


@dataclass
class EvalReport:
    profile: str
    kind: str
    k: int
    models: list[str]
    methods: list[MethodScore]
    questions: list[QuestionOutcome] = field(default_factory=list)
    left_out: dict[str, int] = field(default_factory=dict)

    def method(self, name: str) -> MethodScore:
        return next(m for m in self.methods if m.method == name)

    def risk_coverage(self) -> list[CoveragePoint]:
        """SLM-MUX answering only at or above each confidence seen: the share answered and its accuracy."""
        return risk_coverage([q.mux_confidence for q in self.questions],
                             [q.mux_right for q in self.questions])  # fmt: skip

    def to_dict(self) -> dict[str, object]:
        return {
            "profile": self.profile, "kind": self.kind, "k": self.k, "models": self.models,
            "questions": len(self.questions), "left_out": self.left_out,
            "methods": [m.to_dict() for m in self.methods],
            "risk_coverage": [dataclasses.asdict(p) for p in self.risk_coverage()],
        }  # fmt: skip


def single_name(model: str) -> str:
    return f"{model}, first sample"


def consistency_name(model: str, k: int) -> str:
    return f"{model}, majority of {k}"


POOLED, MUX, MUX_EARLY, ORACLE = "pooled vote", "SLM-MUX", "SLM-MUX + early stop", "oracle"


def pooled_answer(samples: Sequence[Sample]) -> str | None:
    """One majority over every sample given (in the order given); ties to the answer seen first."""
    counts: dict[str, int] = {}
    for s in samples:
        if s.answer is not None:
            counts[s.answer] = counts.get(s.answer, 0) + 1
    return max(counts, key=lambda a: counts[a]) if counts else None  # max keeps the first of equal counts


def score_runs(
    records: Sequence[Record],
    profile: Profile,
    *,
    k: int | None = None,
    rescore: bool = True,
    resident_bytes: Callable[[Sequence[str]], int | None] | None = None,
    run_programs: bool = False,
    measure: str = "lexical",
    votes: Mapping[str, VoteRule] | None = None,
    stops: bool = False,
) -> EvalReport:
    """Score the profile's members on recorded samples: every method on the same questions. Nothing is
    executed unless ``run_programs`` (code tasks: their reference programs and answers are run). Open
    answers are clustered by ``measure``. Each of ``votes`` adds SLM-MUX with its samples weighed by that
    rule (``confidence.VoteRule``), named ``SLM-MUX (name)``, next to the count rule's. ``stops``: the
    profile's early-stop rules replayed as methods of their own."""
    models = profile.member_names
    by_task, kind, collected = _records_by_task(records, profile, run_programs)
    k = k or min(profile.sampling.k, collected)
    if k > collected:
        raise InvalidRequestError(f"k={k} asked, but some records hold only {collected} samples")
    accuracy = {m.name: m.validation_accuracy for m in profile.models}
    votes = dict(votes or {})
    stop_rules = _stop_rules(profile) if stops else {}
    scores = _method_scores(models, k, resident_bytes, [mux_name(v) for v in votes] + list(stop_rules))
    left_out: Counter[str] = Counter()
    outcomes = []
    for task, per in by_task.items():
        if len(per) < len(models):
            left_out["tasks not run by every model of the profile"] += 1
            continue
        first = per[models[0]]
        # answers that mean the same (MATH) or say the same (open) are one answer; a MATH reference's spelling first
        unify = Unifier(kind, measure, question=first.question)
        ref = reference_of(kind, first.reference, first.tests, first.aliases, unify)
        if ref is None:
            left_out["tasks without a usable reference answer"] += 1
            continue
        read = {m: _first_k(per[m], k, kind, rescore, run_programs) for m in models}
        unify.prepare([s.answer for m in models for s in read[m]])
        samples = {m: [replace(s, answer=unify(s.answer)) for s in read[m]] for m in models}
        outcome = _score_question(task, ref, read, samples, kind, k, accuracy, scores, votes)
        for name, stop in stop_rules.items():
            outcome.answers[name] = _replay_stop(ref, read, samples, kind, k, accuracy, stop, scores[name])
        outcomes.append(outcome)
    if not outcomes:
        reasons = "; ".join(f"{n} {why}" for why, n in left_out.items()) or "no tasks"
        raise InvalidRequestError(f"nothing to score: {reasons}")
    return EvalReport(profile.name, kind, k, models, list(scores.values()), outcomes, dict(left_out))


def _records_by_task(
    records: Sequence[Record], profile: Profile, run_programs: bool
) -> tuple[dict[str, dict[str, Record]], str, int]:
    """Each task's record of every profile member, the one kind they share, and the fewest samples any holds."""
    models = profile.member_names
    by_task: dict[str, dict[str, Record]] = {}
    for r in records:
        if r.model in models:
            by_task.setdefault(r.task, {})[r.model] = r
    missing = sorted(set(models) - {r.model for r in records})
    if missing:
        raise InvalidRequestError(f"the runs have no samples of {', '.join(missing)} (profile {profile.name})")
    kinds = {r.kind for per in by_task.values() for r in per.values()}
    if len(kinds) > 1:
        raise InvalidRequestError(f"the runs mix task kinds ({', '.join(sorted(kinds))})")
    kind = kinds.pop()
    if kind == "code" and not run_programs:
        raise InvalidRequestError(RUN_PROGRAMS_NEEDED)
    return by_task, kind, min(r.k for per in by_task.values() for r in per.values())


def _method_scores(models: Sequence[str], k: int, resident_bytes: Callable[[Sequence[str]], int | None] | None,
                   weighted: Sequence[str] = ()) -> dict[str, MethodScore]:  # fmt: skip
    """An empty score per method, in report order: each member's one sample, each member's majority of k,
    then the pooled vote, SLM-MUX, SLM-MUX under each other vote rule and the oracle (with the bytes each
    keeps resident, when known)."""
    ensemble = [POOLED, MUX, *weighted, ORACLE]
    names = [single_name(m) for m in models] + [consistency_name(m, k) for m in models] + ensemble
    scores = {name: MethodScore(name) for name in names}
    if resident_bytes is not None:
        for m in models:
            scores[single_name(m)].resident_bytes = scores[consistency_name(m, k)].resident_bytes = resident_bytes([m])
        for name in ensemble:
            scores[name].resident_bytes = resident_bytes(models)
    return scores


def _score_question(task: str, ref: Reference, read: Mapping[str, list[Sample]], samples: Mapping[str, list[Sample]],
                    kind: str, k: int, accuracy: Mapping[str, float | None], scores: Mapping[str, MethodScore],
                    votes: Mapping[str, VoteRule]) -> QuestionOutcome:  # fmt: skip
    """Every method's answer to one question (``read``: each member's first k samples as extracted;
    ``samples``: the same with equivalent answers unified), added to ``scores``."""
    models = list(samples)
    batch_seconds = {m: max(s.seconds for s in samples[m]) for m in models}
    batch_tokens = {m: sum(s.tokens for s in samples[m]) for m in models}
    said = _own_words(kind, read, samples)
    answers: dict[str, str | None] = {}
    for m in models:
        one = samples[m][0]
        answers[single_name(m)] = said([m], one.answer)
        scores[single_name(m)].add(ref.is_right(answers[single_name(m)]), one.tokens, one.seconds)
        vote = tally(m, samples[m], accuracy[m])
        answers[consistency_name(m, k)] = said([m], vote.answer)
        scores[consistency_name(m, k)].add(ref.is_right(answers[consistency_name(m, k)]), batch_tokens[m],
                                           batch_seconds[m])  # fmt: skip
    all_tokens, all_seconds = sum(batch_tokens.values()), sum(batch_seconds.values())
    pooled = said(models, pooled_answer([s for m in models for s in samples[m]]))
    decision = decide([tally(m, samples[m], accuracy[m]) for m in models])
    decision = replace(decision, answer=said([decision.winner] if decision.winner else [], decision.answer))
    answers[POOLED], answers[MUX] = pooled, decision.answer
    scores[POOLED].add(ref.is_right(pooled), all_tokens, all_seconds)
    scores[MUX].add(ref.is_right(decision.answer), all_tokens, all_seconds)
    for name, rule in votes.items():
        weighed = decide([tally(m, samples[m], accuracy[m], rule) for m in models])
        answers[mux_name(name)] = said([weighed.winner] if weighed.winner else [], weighed.answer)
        scores[mux_name(name)].add(ref.is_right(answers[mux_name(name)]), all_tokens, all_seconds)
    oracle_right = any(ref.is_right(answers[consistency_name(m, k)]) for m in models)
    answers[ORACLE] = ref.answer if oracle_right else None
    scores[ORACLE].add(oracle_right, all_tokens, all_seconds)
    return QuestionOutcome(task, ref.answer, answers, decision.confidence, ref.is_right(decision.answer))


StopSetting = tuple[str, ConfidenceBars | Agreement | None, TraceKill | None]  # rule, its setting, trace kill


def _stop_rules(profile: Profile) -> dict[str, StopSetting]:
    """The early-stop rules a count-rule profile can replay: the exact one, its confident one if any, agree
    (its own setting, else the default), and its own rule with its trace kill if it has one."""
    if profile.vote.vote != "count":
        return {}  # a confidence vote draws every sample
    agreement = profile.agreement or Agreement()
    rules: dict[str, StopSetting] = {f"{MUX}, exact early stop (replayed)": ("decision", None, None)}
    if profile.bars is not None:
        rules[f"{MUX}, confident stop (replayed)"] = ("confident", profile.bars, None)
    rules[f"{MUX}, agree stop {agreement.need}/{agreement.dissent} (replayed)"] = ("agree", agreement, None)
    if profile.kill is not None:
        own = profile.stop_rule or "decision"
        setting = {"confident": profile.bars, "agree": agreement}.get(own)
        rules[f"{MUX}, {own} stop + trace kill (replayed)"] = (own, setting, profile.kill)
    return rules


def _replay_stop(ref: Reference, read: Mapping[str, list[Sample]], samples: Mapping[str, list[Sample]], kind: str,
                 k: int, accuracy: Mapping[str, float | None], stop: StopSetting, score: MethodScore) -> str | None:  # fmt: skip
    """One question decoded again on paper under ``rule`` (members in tie order); its answer, added to ``score``."""
    ranks = tie_ranks(list(samples), accuracy)
    order = sorted(samples, key=ranks.__getitem__) if ranks is not None else list(samples)
    said = _own_words(kind, read, samples)
    rule, setting, kill = stop
    bars = setting if isinstance(setting, ConfidenceBars) else None
    ids: dict[str, int] = {}
    drawn = [
        [cut_by_kill(Drawn(i, s.index, s.tokens, ids.setdefault(s.answer, len(ids)) if s.answer is not None else -1,
                           ref.is_right(said([m], s.answer)),
                           sample_score(s.signals, bars.measure, bars.window) if bars and s.signals else -math.inf),
                     s.signals.confidences if s.signals else None, kill, kill.floors.get(m) if kill else None)
         for s in samples[m]]
        for i, m in enumerate(order)
    ]  # fmt: skip
    member_bars = [bars.bars.get(m) for m in order] if bars else []
    replayed = replay_question(drawn, k, rule, member_bars, setting if isinstance(setting, Agreement) else None)
    all_tokens = sum(s.tokens for m in order for s in samples[m])
    all_seconds = sum(max(s.seconds for s in samples[m]) for m in order)
    score.add(replayed.right, replayed.tokens, all_seconds * replayed.tokens / max(all_tokens, 1))
    answer = next((a for a, i in ids.items() if i == replayed.answer), None)
    winner = next((m for m in order if any(s.answer == answer for s in samples[m])), None)
    return said([winner] if winner else [], answer)


def mux_name(vote: str) -> str:
    return f"{MUX} ({vote})"


def _own_words(kind: str, read: Mapping[str, list[Sample]], unified: Mapping[str, list[Sample]]
               ) -> Callable[[Sequence[str], str | None], str | None]:  # fmt: skip
    """For open answers, what the members said: a cluster (named by its leader, maybe another member's
    words) stands for the earliest of these members' own answers in it, which is what is scored (the usual
    exact match of a model's words). Other kinds' unified answers are scored as they are."""

    def said(members: Sequence[str], leader: str | None) -> str | None:
        if kind != "open" or leader is None:
            return leader
        return next(r.answer for m in members for r, u in zip(read[m], unified[m], strict=True) if u.answer == leader)

    return said


def _first_k(record: Record, k: int, kind: str, rescore: bool, run_programs: bool) -> list[Sample]:
    ordered = sorted(record.samples, key=lambda s: s.index)[:k]
    if not rescore:
        return ordered
    return [
        replace(s, answer=recorded_answer(kind, record.model, s, n_choices=record.n_choices, tests=record.tests,
                                          run_programs=run_programs, choices=record.choices))
        for s in ordered
    ]  # fmt: skip
