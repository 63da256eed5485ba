"""Members: a model with a strategy. Members are the voters of SLM-MUX; models are what is loaded.

``MODEL:STRATEGY`` names a member everywhere (command line, profiles, runs files, the API); a bare model
name means ``cot``. One model may serve several members: it is loaded and budgeted once, and each member
decodes its own prompt as its own batch.

- ``cot``: reasoning in words; the answer is extracted from the text (``extract``).
- ``pot``: program of thought — the model writes a Python program that prints the answer; edgemux runs it
  in the sandbox and the printed value, canonicalised by the task kind, is the sample's answer. A program
  that fails, times out or prints nothing is an unparsable sample.
- ``mix``: reasoning in words with a program in the same reply; the program's *real* output replaces the
  answer the model wrote. A reply without a program, or whose program fails or prints nothing, keeps the
  answer read from its text (``bench/mixed_strategy.py`` measures it against the other two).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ..errors import InvalidRequestError
from ..sandbox import ProgramRun, run_python
from ..types import Sample
from .extract import canonical_reference, extract

__all__ = [
    "STRATEGIES",
    "Member",
    "answer_of",
    "canonical_output",
    "parse_member",
    "parse_members",
    "program_in",
    "recorded_answer",
    "run_program_of",
]

STRATEGIES: dict[str, str] = {
    "cot": "chain of thought: reasoning in words, the answer read from the text",
    "pot": "program of thought: a Python program edgemux runs in a sandbox; what it prints is the answer",
    "mix": "words and code in one reply: the code's real output replaces the answer written, else the text's",
}

# The program-of-thought instruction per task kind (chat models). MATH answers are LaTeX; sympy keeps them
# exact and prints them in that form.
POT_INSTRUCTIONS = {
    "number": (
        "Write a short Python program that solves the problem and prints only the final answer as a number. "
        "Reply with the program in one ```python block and nothing else.\n\n{question}"
    ),
    "math": (
        "Write a short Python program that solves the problem and prints only the final answer. Use exact "
        "arithmetic (fractions, or sympy for roots, pi and algebra) and print the answer with "
        "sympy.latex() when it is not a whole number. Reply with the program in one ```python block and "
        "nothing else.\n\n{question}"
    ),
    "choice": (
        "Write a short Python program that works out the answer to the multiple-choice question and prints "
        "only the letter of the correct choice. Reply with the program in one ```python block and nothing "
        "else.\n\n{question}"
    ),
    "text": (
        "Write a short Python program that works out the answer and prints only the answer. Reply with the "
        "program in one ```python block and nothing else.\n\n{question}"
    ),
}

# The mixed strategy asks for both in one reply; what the program prints wins over what the text says.
MIX_INSTRUCTION = (
    "Solve the problem step by step in words. Do the calculations in one short Python program in a ```python "
    "block that prints only the final answer; it will be run and its real output used. End with the line "
    "'The answer is ...'.\n\n{question}"
)


@dataclass(frozen=True)
class Member:
    """One voter: ``model`` decoding with ``strategy``. ``name`` is how it is written (``model:strategy``,
    or the bare model name for ``cot``, so runs and profiles from before members keep their names)."""

    model: str
    strategy: str = "cot"

    @property
    def name(self) -> str:
        return self.model if self.strategy == "cot" else f"{self.model}:{self.strategy}"

    @property
    def runs_programs(self) -> bool:
        return self.strategy in ("pot", "mix")

    def instruction(self, kind: str, cot_instruction: str | None) -> str | None:
        """The user turn this member asks with (None: the kind's default chain-of-thought instruction)."""
        if self.runs_programs and kind == "code":
            raise InvalidRequestError(
                f"code tasks already answer with programs: use a plain model, not :{self.strategy}"
            )
        if self.runs_programs and kind == "open":
            raise InvalidRequestError(f"open questions are answered in words: use a plain model, not :{self.strategy}")
        if self.strategy == "pot":
            return POT_INSTRUCTIONS[kind]
        if self.strategy == "mix":
            return MIX_INSTRUCTION
        return cot_instruction


def parse_member(spec: str) -> Member:
    """``qwen2.5-coder-1.5b:pot`` -> Member; a bare name is ``cot``; an unknown strategy names the known ones."""
    spec = spec.strip()
    model, sep, strategy = spec.rpartition(":")
    if not sep:
        model, strategy = spec, "cot"
    if not model:
        raise InvalidRequestError(f"{spec!r}: expected MODEL or MODEL:STRATEGY")
    if strategy not in STRATEGIES:
        known = "; ".join(f"{s} ({why})" for s, why in STRATEGIES.items())
        raise InvalidRequestError(f"{spec!r}: unknown strategy {strategy!r}; the strategies are: {known}")
    return Member(model, strategy)


def parse_members(specs: list[str], where: str = "--models") -> list[Member]:
    members = [parse_member(s) for s in specs]
    seen: set[str] = set()
    for m in members:
        if m.name in seen:
            raise InvalidRequestError(f"{where}: member {m.name!r} is named twice")
        seen.add(m.name)
    return members


def canonical_output(kind: str, stdout: str) -> str | None:
    """A program's printed answer in the kind's canonical form: its last non-empty line. Floats that are a
    rounding error away from a simpler value (18.000000000000004) are that value."""
    line = next((ln.strip() for ln in reversed(stdout.splitlines()) if ln.strip()), "")
    if not line:
        return None
    if kind == "number":
        try:
            value = float(line.replace(",", "").lstrip("$").rstrip("%"))
        except ValueError:
            return canonical_reference(kind, line)
        if value != value or value in (float("inf"), float("-inf")):
            return None
        rounded = round(value, 6)
        return canonical_reference(kind, str(int(rounded)) if rounded == int(rounded) else repr(rounded))
    if kind == "math":
        return canonical_reference(kind, line.strip("$"))
    return canonical_reference(kind, line)


def answer_of(member: Member | None, kind: str, text: str, *, program_stdout: str | None = None,
              n_choices: int | None = None, tests: tuple[str, ...] | None = None,
              choices: Sequence[str] | None = None) -> str | None:  # fmt: skip
    """A sample's canonical answer. For ``pot`` members that is the recorded output of its program (None
    when it did not run cleanly); for ``mix`` members that output when there is one, else the text's answer.
    Nothing is executed here."""
    if member is not None and member.runs_programs:
        printed = canonical_output(kind, program_stdout) if program_stdout is not None else None
        if printed is not None or member.strategy == "pot":
            return printed
    return extract(kind, text, n_choices=n_choices, tests=tests, choices=choices)


RUN_PROGRAMS_NEEDED = (
    "scoring code answers runs the task's reference programs and the recorded programs again; "
    "pass --run-programs if you trust this runs file"
)


def recorded_answer(record_kind: str, member_name: str, sample: Sample, *, n_choices: int | None,
                    tests: tuple[str, ...] | None, run_programs: bool = False,
                    choices: Sequence[str] | None = None) -> str | None:  # fmt: skip
    """A recorded sample's answer by today's rules, for re-scoring a runs file. Programs are never run
    here unless ``run_programs`` (the user asked): a program-of-thought sample is scored from its recorded
    output, and a code answer (MBPP) keeps the behaviour recorded when it was collected."""
    if record_kind == "code" and not run_programs:
        return sample.answer
    program = sample.program
    return answer_of(parse_member(member_name), record_kind, sample.text,
                     program_stdout=program.stdout if program is not None and program.ok else None,
                     n_choices=n_choices, tests=tests, choices=choices)  # fmt: skip


def program_in(member: Member, text: str) -> str | None:
    """The program a member's reply holds: its last ```python block, else (``pot`` only: the whole reply is
    meant to be code) the reply itself when it parses. A ``mix`` reply's prose never runs as a program."""
    from .code import extract_program

    if member.strategy == "mix" and "```" not in text:
        return None
    return extract_program(text)


def run_program_of(member: Member, text: str) -> ProgramRun:
    """Run the program in a member's reply in the sandbox. A reply with no program is a failed run (for
    ``pot`` an unparsable sample; ``mix`` then keeps its text's answer)."""
    program = program_in(member, text)
    if program is None:
        return ProgramRun("error", "", "no Python program in the reply", 0.0)
    return run_python(program)
