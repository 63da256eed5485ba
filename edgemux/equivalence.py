"""Answers compared by meaning (MATH): two LaTeX answers vote together when they are the same value or the
same expression, written differently (``2\\sqrt2`` and ``\\sqrt8``, ``x^2+1`` and ``1+x^2``, ``0.5`` and
``\\frac12``).

Votes stay string equality (``mux.tally``, the search's answer ids, early stop): a ``Unifier`` maps each
answer of one question to the first answer seen with the same *meaning key*, so the rest of edgemux sees
equal strings and prints an answer as a model wrote it. The key comes from math-verify's LaTeX parser
(ANTLR, no ``eval`` of model text): a number's value to 12 significant digits, an expression expanded, a
set or interval as sympy writes it. Guards keep it fast and bounded: long answers, huge integers and high
powers are compared as normalised strings; the parse runs with math-verify's timeouts off (they use
signals, which only work on the main thread, and `ask` decides on a worker thread in the server).
Measured cost: ``python bench/math_equivalence.py``.
"""

from __future__ import annotations

import logging
import warnings
from functools import lru_cache

__all__ = ["Unifier", "math_key"]

log = logging.getLogger("edgemux.equivalence")

_MAX_CHARS = 80  # longer answers: string comparison (a parse of model text must stay cheap)
_MAX_INTEGER = 10**9  # larger integers (2^{2^{100}}): no numeric evaluation, no expansion
_MAX_POWER = 12  # (x+1)^{50} is not expanded


@lru_cache(maxsize=65536)
def math_key(answer: str) -> str:
    """The meaning key of a normalised MATH answer (the answer itself when it cannot be parsed safely)."""
    if len(answer) > _MAX_CHARS or not answer.strip():
        return answer
    try:
        expr = _parse(answer)
    except Exception as e:  # a parser failure on model text is "compare as a string", never an error
        log.debug("math answer %r not parsed (%s): compared as written", answer, e)
        return answer
    if expr is None:
        return answer
    import sympy

    if not isinstance(expr, sympy.Basic):
        return "s:" + str(expr)
    integers = [abs(int(i)) for i in expr.atoms(sympy.Integer)]
    if any(i > _MAX_INTEGER for i in integers):
        return "s:" + str(expr)
    try:
        if expr.is_number:
            value = sympy.N(expr, 12)
            if value.is_real:
                return "n:" + str(sympy.Float(value, 12))
            return "c:" + str(value)
        powers = [p.exp for p in expr.atoms(sympy.Pow) if p.exp.is_Integer and abs(int(p.exp)) > _MAX_POWER]
        if hasattr(expr, "expand") and not powers:
            return "e:" + str(sympy.expand(expr))
    except Exception as e:
        log.debug("math answer %r not simplified (%s): compared as parsed", answer, e)
    return "s:" + str(expr)


def _parse(answer: str) -> object | None:
    from math_verify import parse  # the LaTeX parser (latex2sympy2 on ANTLR); imported only for math answers

    logging.getLogger("math_verify").setLevel(logging.ERROR)  # it warns that its (signal) timeouts are off
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        found = parse(f"${answer}$", parsing_timeout=None)  # type: ignore[arg-type]
    return found[0] if found else None


class Unifier:
    """One question's answers: each answer is replaced by the first one seen with the same meaning."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._first: dict[str, str] = {}

    def __call__(self, answer: str | None) -> str | None:
        if answer is None or self.kind != "math":
            return answer
        return self._first.setdefault(math_key(answer), answer)
