"""``kind: auto`` — what kind of question this is, decided for each question (the default of ``ask``).

The rule, in order (``--kind`` overrides it; ``--json`` says which kind was used and why):

1. choices given → ``choice``;
2. a question that asks for a computation — it has digits, LaTeX math, or words such as "how many",
   "how much", "calculate" — → the profile's numeric kind (``number``, or ``math`` for a profile measured
   on MATH; LaTeX in the question means ``math`` too);
3. otherwise → ``open``: answers in words, compared by similarity (``opentext``).

Then the samples decide: when a question was taken for a computation but no member's samples end in a
number (or ``\\boxed{}``), the same samples are read again as open answers — nothing is decoded twice.
Members that answer with programs (``:pot``, ``:mix``) sit out open questions.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

__all__ = ["AUTO_RULE", "ends_in_number", "looks_numeric", "resolve_kind"]

AUTO_RULE = (
    "auto: choices → choice; a computation (digits, LaTeX, 'how many/much', 'calculate') → the profile's "
    "numeric kind; anything else → open (answers in words, compared by similarity); a computation whose "
    "samples end in no number is read again as open"
)

_LATEX = re.compile(r"\$|\\(frac|sqrt|cdot|times|pi|boxed|left|right)\b|\^\{?\d")
_COMPUTATION = re.compile(
    r"\b(how (many|much|long|far|old)|calculate|compute|solve|evaluate|simplify|sum|product|total|percent|"
    r"average|remainder|divided|times|plus|minus)\b",
    re.IGNORECASE,
)


def looks_numeric(question: str) -> bool:
    return bool(re.search(r"\d", question) or _LATEX.search(question) or _COMPUTATION.search(question))


def resolve_kind(question: str, choices: Sequence[str] | None, numeric_kind: str = "number") -> tuple[str, str]:
    """The kind ``auto`` gives this question, and why (in words, for ``--json`` and ``--explain``)."""
    if choices:
        return "choice", "the question has choices"
    if _LATEX.search(question):
        return "math", "the question is written in LaTeX"
    if looks_numeric(question):
        return numeric_kind, "the question asks for a computation (numbers or 'how many' in it)"
    return "open", "a question in words: answers compared by similarity"


_FINAL_NUMBER = re.compile(r"(\\boxed\{|####\s*-?\$?\d|-?\$?\d[\d,]*(\.\d+)?\s*(%|\\%)?\s*[.!)*$]*\s*$)")


def ends_in_number(text: str) -> bool:
    """A reply that gives a number as its answer: a ``\\boxed{}``, a ``#### N`` line, or a number at its
    very end (a year in the middle of a sentence is not an answer)."""
    return bool(_FINAL_NUMBER.search(text.strip()))
