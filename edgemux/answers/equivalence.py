"""Answers compared by meaning (MATH; open answers by similarity, see ``opentext``): two LaTeX answers vote together when they are the same value or the
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
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

__all__ = ["Reference", "Unifier", "math_key", "reference_of"]

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
        found = parse(f"${answer}$", parsing_timeout=None)
    return found[0] if found else None


class Unifier:
    """One question's answers: each answer is replaced by the first one seen with the same meaning — for
    MATH the same value or expression; for open answers the most similar cluster leader at or above the
    measure's threshold (``opentext``: clusters never merge, so counts bound exactly)."""

    def __init__(self, kind: str, measure: str = "lexical", question: str | None = None) -> None:
        from .opentext import MEASURES

        if measure not in MEASURES:
            raise ValueError(f"unknown similarity measure {measure!r}; known: {', '.join(MEASURES)}")
        self.kind = kind
        self.measure = measure
        self._measure = MEASURES[measure]
        self.threshold = self._measure.threshold
        self.question = question or ""  # its words restate the question, they are not the answer
        self._first: dict[str, str] = {}
        self.clusters: dict[str, int] = {}  # open answers: leader -> answers it stands for, in order seen

    def __call__(self, answer: str | None) -> str | None:
        if answer is None:
            return None
        if self.kind == "math":
            return self._first.setdefault(math_key(answer), answer)
        if self.kind == "open":
            leader = self._leader(answer)
            self.clusters[leader] = self.clusters.get(leader, 0) + 1
            return leader
        return answer

    def prepare(self, answers: Sequence[str | None]) -> None:
        """Answers about to be unified, known together (all of a member's samples, a recorded question's):
        the measure may compute what it needs for them at once (embeddings, in one batch)."""
        if self.kind == "open":
            self._measure.prepare([a for a in answers if a is not None], self.question)

    def _leader(self, answer: str) -> str:
        if answer in self.clusters:
            return answer
        best, best_similarity = answer, self.threshold
        for leader in self.clusters:  # first seen first: on a tie the older cluster keeps the answer
            similarity = self._measure.similarity(answer, leader, self.question)
            if similarity > best_similarity or (similarity == best_similarity and best == answer):
                best, best_similarity = leader, similarity
        return best


@dataclass(frozen=True)
class Reference:
    """A question's reference answer and how an answer is judged against it: equal to the canonical
    (and unified) reference; for open questions an exact match, after normalisation, of any alias."""

    answer: str
    kind: str
    accepted: tuple[str, ...] = ()

    def is_right(self, answer: str | None) -> bool:
        if answer is None:
            return False
        if self.kind == "open":
            from .opentext import exact_match

            return exact_match(answer, self.accepted)
        return answer == self.answer


def reference_of(kind: str, reference: str | None, tests: Sequence[str] | None, aliases: Sequence[str] | None,
                 unify: Unifier) -> Reference | None:  # fmt: skip
    """The reference of one question, or None when it has no usable one. A MATH reference is unified first
    (answers equal to it in meaning take its spelling); an open one is not: its answers are scored by exact
    match, not by being similar to it."""
    from .extract import canonical_reference

    canonical = canonical_reference(kind, reference, tests) if reference is not None else None
    if canonical is None:
        return None
    if kind == "open":
        return Reference(canonical, kind, tuple(aliases or ()) + (reference,))  # type: ignore[operator]
    unified = unify(canonical)
    return Reference(unified, kind) if unified is not None else None
