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

from dataclasses import dataclass

from ..errors import InvalidRequestError

__all__ = ["MIX_INSTRUCTION", "POT_INSTRUCTIONS", "STRATEGIES", "Member", "parse_member", "parse_members"]

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
