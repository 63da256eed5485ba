"""Members: a model with a strategy. Members are the voters of SLM-MUX; models are what is loaded.

``MODEL:STRATEGY`` names a member everywhere (command line, profiles, runs files, the API); a bare model
name means ``cot``. One model may serve several members: it is loaded and budgeted once, and each member
decodes its own prompt as its own batch.

- ``cot``: reasoning in words; the answer is extracted from the text (``extract``).
- ``pot``: program of thought — the model writes a Python program that prints the answer; edgemux runs it
  in the sandbox and the printed value, canonicalised by the task kind, is the sample's answer. A program
  that fails, times out or prints nothing is an unparsable sample.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from .errors import InvalidRequestError
from .extract import canonical_reference, extract
from .sandbox import ProgramRun, run_python
from .types import Sample

__all__ = [
    "STRATEGIES", "Member", "answer_of", "canonical_output", "parse_member", "parse_members", "recorded_answer",
    "run_program_of",
]

STRATEGIES: dict[str, str] = {
    "cot": "chain of thought: reasoning in words, the answer read from the text",
    "pot": "program of thought: a Python program edgemux runs in a sandbox; what it prints is the answer",
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
        return self.strategy == "pot"

    def instruction(self, kind: str, cot_instruction: str | None) -> str | None:
        """The user turn this member asks with (None: the kind's default chain-of-thought instruction)."""
        if self.strategy == "pot":
            if kind == "code":
                raise InvalidRequestError("code tasks already answer with programs: use a plain model, not :pot")
            return POT_INSTRUCTIONS[kind]
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
    when it did not run cleanly); nothing is executed here."""
    if member is not None and member.runs_programs:
        return canonical_output(kind, program_stdout) if program_stdout is not None else None
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


def run_program_of(text: str) -> ProgramRun:
    """Run the program in a reply (its last ```python block, else the reply itself when it parses) in the
    sandbox. A reply with no program is a failed run, so the sample counts as unparsable."""
    from .code import extract_program

    program = extract_program(text)
    if program is None:
        return ProgramRun("error", "", "no Python program in the reply", 0.0)
    return run_python(program)
