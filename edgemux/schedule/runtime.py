"""Mux: ties the catalog, fetching, the resident set, the decode loop and the MUX rule together.

``stream(question)`` yields typed events (model loaded, decode progress, sample finished, model stopped,
model finished, decision); ``ask(question)`` consumes that stream and returns the MuxResult. Models are
held through the resident set (within the memory budget) and decoded by ``scheduler.decode``; the rest
goes to the MUX rule.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Generator, Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from ..answers.autokind import ends_in_number
from ..answers.equivalence import Unifier
from ..answers.members import answer_of
from ..answers.opentext import central, extract_open
from ..answers.prompts import format_question
from ..answers.strategies import parse_member
from ..catalog import fetch
from ..catalog.catalog import Catalog
from ..decide.calibration import Calibrated, level_of, sentence
from ..decide.confidence import LETTERS
from ..decide.earlystop import tie_ranks
from ..decide.mux import decide, tally
from ..decide.stoprules import EARLY_RULES, TraceKill, early_stop_calibration
from ..errors import BudgetError, InvalidRequestError
from ..events import DecisionMade, Event, ModelStopped
from ..memory.memory import kv_cells
from ..profiles import Profile, adhoc_profile, load_profile
from ..types import Decision, ModelVote, MuxResult, Sample, Sampling, TokenSignals
from .loader import ContextShape, EngineFactory, EngineLike, LoadOptions, Models
from .planning import resolve_budget
from .prompting import Prompter
from .question import Question, kept_alternatives, read_sample, with_answer_mass
from .scheduler import DEFAULT_STOP_RULE, POLICIES, STOP_RULES, decode

log = logging.getLogger("edgemux.runtime")

__all__ = ["EngineLike", "LoadOptions", "Mux"]  # EngineLike and LoadOptions live in loader


class Mux:
    """Several models answering one question together. Use as a context manager, or call ``close()``."""

    def __init__(
        self,
        profile: Profile,
        *,
        catalog: Catalog | None = None,
        load: LoadOptions | None = None,
        engine_factory: EngineFactory | None = None,
        fetch_progress: Callable[[], fetch.Progress] | None = None,
        models: Models | None = None,
    ) -> None:
        self.profile = profile
        self.options = load or (models.options if models is not None else LoadOptions())
        if self.options.policy not in POLICIES:
            raise InvalidRequestError(f"unknown policy {self.options.policy!r}; use one of {', '.join(POLICIES)}")
        self._stop_rule(profile)  # an unknown rule, or confident without bars, fails here
        self._kill(profile)  # and trace kill asked of a profile without floors
        self.catalog = models.catalog if models is not None else catalog or Catalog()
        self.specs = {name: self.catalog.get(name) for name in profile.model_names}  # unknown names fail here
        self.budget_bytes, self.budget_source = resolve_budget(self.options.budget, profile)
        # A shared Models (the server's, one for every profile and model it serves) has its own budget and
        # context shape; otherwise this Mux has its own, sized for its profile: k samples share the prompt.
        s = profile.sampling
        self.models = models or Models(
            self.catalog, self.options, self.budget_bytes, ContextShape(kv_cells(profile.n_ctx, s.k, s.max_tokens), s.k),
            engine_factory=engine_factory, fetch_progress=fetch_progress,
        )  # fmt: skip
        if models is not None:
            self.budget_bytes, self.budget_source = models.budget_bytes, "server"
        self.resident = self.models.resident
        self._owns_models = models is None
        self.prompter = Prompter(self.specs)
        self._fetch_progress = fetch_progress or fetch.NullProgress

    @classmethod
    def from_profile(cls, name_or_path: str = "default", **kwargs: Any) -> Mux:
        return cls(load_profile(name_or_path), **kwargs)

    @classmethod
    def from_models(
        cls, models: list[str], kind: str = "number", sampling: Sampling | None = None, **kwargs: Any
    ) -> Mux:
        return cls(adhoc_profile(models, kind, sampling), **kwargs)

    # -- lifecycle ------------------------------------------------------------------------------------

    def __enter__(self) -> Mux:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Unload every model (of its own Models; a shared one is closed by its owner)."""
        if self._owns_models:
            self.models.close()

    def pull(self) -> list[Path]:
        """Fetch every model of the profile that is not cached yet."""
        return [fetch.pull(spec, self._fetch_progress()) for spec in self.specs.values() if not spec.is_remote]

    def preload(self) -> Iterator[Event]:
        """Load the profile's models now, those marked ``resident`` first (and pinned), then the others in
        profile order while the budget holds them, so the first question pays no silent cold start."""
        pinned = {parse_member(m.name).model for m in self.profile.models if m.resident}
        for name in sorted(self.profile.model_names, key=lambda n: n not in pinned):
            if not self.resident.is_resident(name):
                if not self.resident.can_acquire(name):
                    if name in pinned:
                        raise BudgetError(
                            f"{name} is marked resident but does not fit next to the other resident models"
                        )
                    continue
                yield from self.models.hold(name)
                self.resident.release(name)
            if name in pinned:
                self.resident.pin(name)

    # -- answering ----------------------------------------------------------------------------------

    def ask(self, question: str, **kwargs: Any) -> MuxResult:
        """Answer ``question``; keyword arguments as for ``stream``."""
        for event in self.stream(question, **kwargs):
            if isinstance(event, DecisionMade):
                return event.result
        raise RuntimeError("the event stream ended without a decision")  # a bug, not a user error

    def stream(
        self,
        question: str,
        *,
        sampling: Sampling | None = None,
        kind: str | None = None,
        choices: Sequence[str] | None = None,
        tests: Sequence[str] | None = None,
        min_confidence: float | None = None,
    ) -> Iterator[Event]:
        """Yield events while the members answer ``question``; the last event is DecisionMade. Below
        ``min_confidence`` (default: the profile's ``abstain_below``) the result is marked abstained: its
        answer is a best guess."""
        question = question.strip()
        if not question:
            raise InvalidRequestError("the question is empty")
        threshold = self.profile.abstain_below if min_confidence is None else min_confidence
        if threshold is not None and not 0.0 <= threshold <= 1.0:
            raise InvalidRequestError(f"min_confidence must be between 0 and 1, got {threshold}")
        profile, kind_reason = self.profile.with_overrides(kind=kind).for_question(question, choices)
        for name in self.profile.member_names:
            if name not in profile.member_names:  # a program member sitting out an open question
                yield ModelStopped(name, "programs answer computations; this question is answered in words", ())
        sampling = (sampling or profile.sampling).validated().seeded()
        self._fit_context(profile, sampling)
        started = time.perf_counter()
        ranks = tie_ranks(profile.member_names, {m.name: m.validation_accuracy for m in profile.models})
        asked = Question(self.models, self.prompter, profile, sampling, question, choices, tests, self._kill(profile))
        early_stops: list[ModelStopped] = []
        votes = yield from _noting_early_stops(self._decode(profile, sampling, asked, ranks), early_stops)
        if kind_reason and profile.kind in ("number", "math") and not _gave_numbers(profile, votes):
            # the samples decide: a question taken for a computation whose samples end in no number
            profile, votes, asked.unify = self._read_again_as_open(profile, votes, question)
            kind_reason = "no member's samples ended in a number: read again as answers in words"
        decision = decide([votes[name] for name in profile.member_names])
        result = self._result(question, profile, sampling, decision, time.perf_counter() - started, threshold)
        result = replace(result, kind_reason=kind_reason)
        if early_stops and decision.answer is not None:  # its confidence counts undrawn samples as no answer
            calibration, text = early_stop_calibration(profile.measured, early_stops[0].rule)
            result = replace(result, calibration=calibration, calibration_text=text)
        if profile.kind == "open":
            unify = asked.unify
            result = replace(result, similarity=f"{unify.measure} ≥ {unify.threshold:g}",
                             clusters=tuple(sorted(unify.clusters.items(), key=lambda c: -c[1])))  # fmt: skip
        yield DecisionMade(result)

    def _decode(self, profile: Profile, sampling: Sampling, asked: Question, ranks: dict[str, int] | None
                ) -> Generator[Event, None, dict[str, ModelVote]]:  # fmt: skip
        """The scheduler's decode loop for one question, with this Mux's policy and stop rule."""
        return decode(
            self._order(profile, ranks),
            k=sampling.k,
            start=asked.start,
            finish=asked.finish,
            make_sample=asked.make_sample,
            validation_accuracy=profile.validation_accuracy,
            ranks=ranks,
            policy=self.options.policy,
            early_stop=self._early_stop(profile),
            stop_rule=self.stop_rule,
            remote=frozenset(m.name for m in profile.members if self.specs[m.model].is_remote),
            rule=profile.vote,
            bars=profile.bars,
            agreement=profile.agreement,
            tokens_per_sample=profile.tokens_per_sample,
        )

    def _read_again_as_open(self, profile: Profile, votes: dict[str, ModelVote], question: str
                            ) -> tuple[Profile, dict[str, ModelVote], Unifier]:  # fmt: skip
        """The same samples read as open answers (``kind: auto`` when no number came); program members sit out."""
        unify = Unifier("open", profile.similarity, question=question)
        words = profile.words_members()
        if not words:
            return profile, votes, unify
        again = {}
        answers = {m.name: [extract_open(s.text) for s in votes[m.name].samples] for m in words}
        unify.prepare([a for m in words for a in answers[m.name]])
        for m in words:
            samples = [replace(s, answer=unify(a)) for s, a in zip(votes[m.name].samples, answers[m.name], strict=True)]
            again[m.name] = tally(m.name, samples, m.validation_accuracy, profile.vote)
        return replace(profile, kind="open", models=words), again, unify

    def _result(self, question: str, profile: Profile, sampling: Sampling, decision: Decision, seconds: float,
                threshold: float | None) -> MuxResult:  # fmt: skip
        """The decision as the answer a user gets: the winner's text, its calibration, abstention."""
        winning_text = ""
        if decision.winner is not None:
            vote = decision.vote_of(decision.winner)
            texts = [s.text for s in vote.samples if s.answer == decision.answer]
            # an open answer is printed as the most central reply of the winning cluster, whole
            winning_text = texts[central(texts, question, profile.similarity)] if profile.kind == "open" else texts[0]
        level = self._calibration(profile, sampling.k, decision)
        return MuxResult(
            question=question,
            kind=profile.kind,
            profile=profile.name,
            sampling=sampling,
            decision=decision,
            text=winning_text,
            seconds=seconds,
            policy=self.options.policy,
            early_stop=self._early_stop(profile),
            stop_rule=self.stop_rule,
            calibration=None if level is None else level.to_dict(),
            calibration_text="" if level is None else sentence(level, profile.measured),
            min_confidence=threshold,
            abstained=threshold is not None and decision.answer is not None and decision.confidence < threshold,
        )

    @property
    def stop_rule(self) -> str:
        """The early-stop rule questions are decoded under (the options may be changed between questions)."""
        return self._stop_rule(self.profile)

    def _stop_rule(self, profile: Profile) -> str:
        """--stop-rule, else the profile's, else the exact default; the confident rule needs the profile's bars."""
        rule = self.options.stop_rule or profile.stop_rule or DEFAULT_STOP_RULE
        if rule not in STOP_RULES:
            raise InvalidRequestError(f"unknown stop rule {rule!r}; use one of {', '.join(STOP_RULES)}")
        if rule == "confident" and profile.bars is None:
            raise InvalidRequestError(
                f"profile {profile.name} has no confidence bars, which the confident stop rule needs: rebuild it "
                "with `edgemux profile build` from runs recorded with token signals, or use --stop-rule decision"
            )
        return rule

    def _kill(self, profile: Profile) -> TraceKill | None:
        """Trace kill's floors when it is on: --trace-kill, else where the profile has them."""
        if self.options.trace_kill is False or (self.options.trace_kill is None and profile.kill is None):
            return None
        if profile.kill is None:
            raise InvalidRequestError(
                f"profile {profile.name} has no trace-kill floors: rebuild it with `edgemux profile build` from runs "
                "recorded with token signals, or leave out --trace-kill"
            )
        return profile.kill

    def _early_stop(self, profile: Profile) -> bool:
        """Exact early stop reasons about counts; under a weighted vote one sample still running could
        outweigh all the others, so every sample is drawn."""
        return self.options.early_stop and profile.vote.vote == "count"

    def _fit_context(self, profile: Profile, sampling: Sampling) -> None:
        """A Mux with its own models sizes their contexts for the samples asked (an API call may ask for more
        than the profile's k or max_tokens); a shared one (the server's) keeps its shape and refuses what
        does not fit, with the numbers."""
        if not self._owns_models:
            return
        shape = self.models.shape
        cells = kv_cells(profile.n_ctx, sampling.k, sampling.max_tokens)
        if cells > shape.cells or sampling.k > shape.sequences:
            self.models.reshape(ContextShape(max(cells, shape.cells), max(sampling.k, shape.sequences)))

    def _calibration(self, profile: Profile, k: int, decision: Decision) -> Calibrated | None:
        """The profile's validation accuracy at this answer's agreement, when it was measured for exactly
        these members at this k, kind and vote: a ``kind: auto`` profile's levels hold for the questions read
        as the kind it was measured on (a -k or --vote override, or another kind, is not calibrated)."""
        measured_kind = profile.measured.get("kind", self.profile.kind)
        if decision.answer is None or profile.kind != measured_kind:
            return None
        return level_of(profile.measured, k, profile.vote.vote, decision.confidence)

    def draw(
        self,
        name: str,
        question: str,
        *,
        sampling: Sampling,
        choices: Sequence[str] | None = None,
        tests: Sequence[str] | None = None,
    ) -> tuple[list[Sample], int]:
        """All k samples of one member, each decoded to its end (no early stop, no vote), and the prompt's
        length in tokens: what ``edgemux collect`` records. ``sampling.seed`` must be set."""
        if sampling.seed is None:
            raise InvalidRequestError("draw() needs a seed, so that the samples can be drawn again")
        seeds = sampling.seeds()
        n_choices = len(choices) if choices else None
        member = parse_member(name)
        engine = self.resident.acquire(member.model)
        try:
            tokens, stop = self.prompter.tokens(
                engine, member, format_question(question, choices, tests), self.profile, sampling
            )
            steps = engine.generate(tokens, sampling, seeds, stop, logprobs=kept_alternatives(self.profile.kind))
            finished = [f for step in steps for f in step.finished]
            letters = self.prompter.letters(member.model, engine) if self.profile.kind == "choice" else None
        finally:
            self.resident.release(member.model)
        samples = [
            read_sample(member, f, seeds, self.profile.kind, n_choices, tests, choices, letters) for f in finished
        ]
        return sorted(samples, key=lambda s: s.index), len(tokens)

    def score_samples(
        self,
        name: str,
        question: str,
        texts: Sequence[str],
        *,
        choices: Sequence[str] | None = None,
        tests: Sequence[str] | None = None,
    ) -> list[TokenSignals | None]:
        """The token signals recorded samples would have had (``Engine.score``: teacher-forced, at prompt
        speed), for runs collected before the engine kept them. A text whose tokens do not extend the
        prompt's (a tokenizer that merges across the boundary) gets None."""
        member = parse_member(name)
        engine = self.resident.acquire(member.model)
        try:
            if not hasattr(engine, "score"):
                raise InvalidRequestError(f"{member.model} is not a local llama.cpp model: it cannot be scored here")
            text, _ = self.prompter.text(engine, member, format_question(question, choices, tests), self.profile)
            prompt = engine.tokenize(text)
            continuations = []
            for sample_text in texts:
                full = engine.tokenize(text + sample_text)
                continuations.append(full[len(prompt) :] if full[: len(prompt)] == prompt else [])
            scored = engine.score(prompt, continuations, keep=kept_alternatives(self.profile.kind))
            if self.profile.kind != "choice":
                return [TokenSignals.of(tokens) if tokens else None for tokens in scored]
            letters = self.prompter.letters(member.model, engine)
            allowed = LETTERS[: len(choices) if choices else len(LETTERS)]
            return [
                with_answer_mass(TokenSignals.of(tokens), tokens, letters, answer_of(member, "choice", t, choices=choices), allowed)
                if tokens else None
                for tokens, t in zip(scored, texts, strict=True)
            ]  # fmt: skip
        finally:
            self.resident.release(member.model)

    def _order(self, profile: Profile, ranks: dict[str, int] | None) -> list[str]:
        names = profile.member_names
        if self.options.policy in ("priority", "cheapest") and ranks is not None:
            return sorted(names, key=ranks.__getitem__)  # the member that wins ties goes first
        # Models already loaded go first, so a tight budget swaps each model in at most once per question.
        return sorted(names, key=lambda n: not self.resident.is_resident(parse_member(n).model))


def _noting_early_stops(events: Generator[Event, None, dict[str, ModelVote]],
                        into: list[ModelStopped]) -> Generator[Event, None, dict[str, ModelVote]]:  # fmt: skip
    """Pass ``events`` through, keeping the stops an early rule (confident, agree) caused; return what
    ``events`` returns."""
    try:
        while True:
            try:
                event = next(events)
            except StopIteration as done:
                votes: dict[str, ModelVote] = done.value
                return votes
            if isinstance(event, ModelStopped) and event.rule in EARLY_RULES:
                into.append(event)
            yield event
    finally:
        events.close()  # the caller walked away: the scheduler cancels what still decodes


def _gave_numbers(profile: Profile, votes: dict[str, ModelVote]) -> bool:
    """Whether any member answered with numbers: a program that printed one, or a reply ending in one."""
    for m in profile.members:
        samples = votes[m.name].samples
        if any(s.answer is not None and (m.runs_programs or ends_in_number(s.text)) for s in samples):
            return True
    return False
