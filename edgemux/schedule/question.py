"""One question being answered: what the decode loop (``scheduler.decode``) calls to start a member's
samples, to give its model back, and to turn each finished sequence into a sample.

Each member's prompt is made once (a member started again after early stop or a swap reuses it); a model
serving two members decodes for one at a time; answers are unified as they come (MATH answers that mean
the same, and open answers that say the same, vote together). A finished sequence is read as a sample:
its answer extracted (a program member's program run in the sandbox), its token signals kept, and for a
multiple-choice answer the probability of its letter.
"""

from __future__ import annotations

import logging
from collections.abc import Generator, Iterator, Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from ..answers.equivalence import Unifier
from ..answers.members import answer_of, run_program_of
from ..answers.prompts import format_question
from ..answers.strategies import Member
from ..decide.confidence import LETTERS, answer_mass
from ..decide.stoprules import TraceKill
from ..engine.logits import CONFIDENCE_TOP
from ..events import Event, SamplingStarted
from ..profiles import Profile
from ..types import BatchStep, FinishedSequence, Sample, Sampling, TokenLogprobs, TokenSignals
from .prompting import Prompter

if TYPE_CHECKING:
    from .loader import Models

__all__ = ["Question", "kept_alternatives", "read_sample", "with_answer_mass"]


class Question:
    """``question`` (with its ``choices`` or ``tests``) asked of ``profile``'s members at ``sampling``
    (seeded), their models held through ``models``."""

    def __init__(self, models: Models, prompter: Prompter, profile: Profile, sampling: Sampling, question: str,
                 choices: Sequence[str] | None, tests: Sequence[str] | None, kill: TraceKill | None = None) -> None:  # fmt: skip
        self.models, self.prompter, self.profile, self.sampling = models, prompter, profile, sampling
        self.kill = kill  # trace kill's floors, when it is on
        self.choices, self.tests = choices, tests
        self.text = format_question(question, choices, tests)
        self.seeds = sampling.seeds()
        self.members = {m.name: m for m in profile.members}
        self.unify = Unifier(profile.kind, profile.similarity, question=question)
        self._prompts: dict[str, tuple[list[int], tuple[str, ...]]] = {}
        self._letters: dict[str, Mapping[int, str]] = {}  # choice questions: each member's option-letter tokens
        self._busy: set[str] = set()  # models decoding for a member now: another member of the same model waits

    def start(self, name: str, indices: Sequence[int]) -> Generator[Event, None, Iterator[BatchStep] | None]:
        """Start member ``name``'s samples ``indices`` (None: its model is busy or cannot be held now)."""
        member, resident = self.members[name], self.models.resident
        if member.model in self._busy or not resident.can_acquire(member.model):
            return None
        if name not in self._prompts and not resident.is_resident(member.model):
            self._check_before_load(member)
        engine = yield from self.models.hold(member.model)
        first = name not in self._prompts
        if first:
            try:
                self._prompts[name] = self.prompter.tokens(engine, member, self.text, self.profile, self.sampling)
            except BaseException:
                resident.release(member.model)
                raise
        tokens, stop = self._prompts[name]
        if first:
            yield SamplingStarted(name, self.sampling.k, len(tokens))
        self._busy.add(member.model)
        if self.profile.kind == "choice":
            self._letters[name] = self.prompter.letters(member.model, engine)
        seeds = [self.seeds[i] for i in indices]
        at = self.kill.of(name) if self.kill else None
        # asked only when on: an engine written before trace kill (EngineLike) still serves profiles without it
        kill = {"kill": at} if at else {}
        steps: Iterator[BatchStep] = engine.generate(
            tokens, self.sampling, seeds, stop, logprobs=kept_alternatives(self.profile.kind), **kill
        )
        return steps

    def finish(self, name: str) -> None:
        """Member ``name`` stopped decoding: its model is free for another member, or to be swapped out."""
        model = self.members[name].model
        self._busy.discard(model)
        self.models.resident.release(model)

    def make_sample(self, name: str, f: FinishedSequence) -> Sample:
        n_choices = len(self.choices) if self.choices else None
        sample = read_sample(self.members[name], f, self.seeds, self.profile.kind, n_choices, self.tests,
                             self.choices, self._letters.get(name))  # fmt: skip
        return replace(sample, answer=self.unify(sample.answer))

    def _check_before_load(self, member: Member) -> None:
        """A question too long for the context is refused before its model loads (seconds, for nothing)."""
        profile, sampling = self.profile, self.sampling
        instruction = member.instruction(profile.kind, profile.instruction)
        text_bytes = sum(len(t.encode()) for t in (self.text, instruction or "", profile.system or ""))

        def tokens_of(tokenizer: Any) -> list[int]:
            return self.prompter.tokens(tokenizer, member, self.text, profile, sampling, check=False)[0]

        self.models.check_prompt_before_load(member.model, sampling.k, sampling.max_tokens, text_bytes, tokens_of)


log = logging.getLogger("edgemux.runtime")


def kept_alternatives(kind: str) -> int:
    """How many alternatives the engine keeps per token: a multiple-choice answer's letter is weighed
    against the other letters among the top 20 where it was written (confidence.answer_mass)."""
    return CONFIDENCE_TOP if kind == "choice" else 0


def with_answer_mass(signals: TokenSignals, tokens: Sequence[TokenLogprobs], letters: Mapping[int, str],
               answer: str | None, allowed: str) -> TokenSignals:  # fmt: skip
    return replace(signals, answer_mass=answer_mass(tokens, letters, answer, allowed))


def read_sample(
    member: Member,
    f: FinishedSequence,
    seeds: Sequence[int],
    kind: str,
    n_choices: int | None,
    tests: Sequence[str] | None,
    choices: Sequence[str] | None = None,
    letters: Mapping[int, str] | None = None,
) -> Sample:
    """A finished sequence as a sample: its answer extracted, or for a program-of-thought member, its program
    run in the sandbox and the printed value canonicalised (an unparsable sample when it does not run)."""
    if f.stop_reason == "failed":  # a remote request that failed: unparsable, whatever text had arrived
        return Sample(member.name, f.index, seeds[f.index], f.text, None, f.tokens, "failed", f.seconds, note=f.note)
    signals = TokenSignals.of(f.logprobs) if f.logprobs is not None else None
    if f.stop_reason == "killed":  # trace kill: cut where its confidence fell, it does not vote
        return Sample(member.name, f.index, seeds[f.index], f.text, None, f.tokens, "killed", f.seconds,
                      note="its window confidence fell below its member's floor (trace kill)", signals=signals)  # fmt: skip
    program = run_program_of(member, f.text) if member.runs_programs else None
    answer = answer_of(member, kind, f.text, program_stdout=program.stdout if program and program.ok else None,
                       n_choices=n_choices, tests=tuple(tests) if tests else None, choices=choices)  # fmt: skip
    if program is not None and not program.ok:
        log.info("%s sample %d: its program %s (%s)", member.name, f.index, program.status, program.detail)
    if signals is not None and f.logprobs is not None and letters:
        allowed = LETTERS[: n_choices or len(LETTERS)]
        signals = with_answer_mass(signals, f.logprobs, letters, answer, allowed)
    return Sample(member.name, f.index, seeds[f.index], f.text, answer, f.tokens, f.stop_reason, f.seconds, program,
                  f.note, signals)  # fmt: skip
