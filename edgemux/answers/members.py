"""What a member's sample answers: the text's answer for ``cot``, the printed value of its program run in
the sandbox for ``pot``, the program's output over the text's for ``mix`` (``strategies`` says what the
strategies are)."""

from __future__ import annotations

from collections.abc import Sequence

from ..sandbox.runner import ProgramRun, run_python
from ..types import Sample
from .extract import canonical_reference, extract
from .strategies import Member, parse_member

__all__ = ["RUN_PROGRAMS_NEEDED", "answer_of", "canonical_output", "program_in", "recorded_answer", "run_program_of"]


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
