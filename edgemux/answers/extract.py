"""Canonical answers per task kind (pure; ../shared/SLM-MUX.md §3). Two samples vote together exactly
when their canonical strings are equal, so everything that should not split a vote is normalised away.

- ``number``: the last ``#### n``, else the last ``\\boxed{}``, else the last number; commas, ``$``, units,
  trailing ``.0`` and leading zeros dropped.
- ``math``: the last ``\\boxed{...}`` (nested braces), LaTeX normalised; plain rationals in one form.
- ``choice``: the letter from ``Answer: X``, ``##Answer: X##``, ``\\boxed{X}``, a line holding only the
  letter, or ``(X)``.
- ``text``: the line after ``Answer:`` (else the last line), case and spacing folded.
- ``code``: with the task's tests, the program's behaviour on their inputs (``code.signature``, run in a
  subprocess); without tests, the program's text with comments and layout normalised away.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Callable, Sequence
from fractions import Fraction

from .opentext import extract_open

__all__ = ["canonical_reference", "extract", "last_boxed", "normalize_math", "normalize_number"]

_NUMBER = re.compile(r"-?\d{1,3}(?:,\d{3})+(?:\.\d+)?|-?\d+(?:\.\d+)?|-?\.\d+")
_HASHES = re.compile(r"####\s*\$?\s*(-?[\d,]*\.?\d+)")
_SIMPLE_FRAC = re.compile(r"^(-?)\\frac\{(-?\d+)\}\{(-?\d+)\}$")
_SCIENTIFIC = re.compile(r"(-?\d+(?:\.\d+)?)\s*(?:\\times|\\cdot|\*|x|×)\s*10\s*\^\s*\{?\s*(-?\d+)\s*\}?")


def last_boxed(text: str) -> str | None:
    """Contents of the last ``\\boxed{...}`` or ``\\fbox{...}``, nested braces respected."""
    start = max(text.rfind("\\boxed"), text.rfind("\\fbox"))
    if start < 0:
        return None
    i = text.find("{", start)
    if i < 0:
        # "\boxed 5" (no braces) is valid LaTeX too
        m = re.match(r"\\boxed\s+(\S+)", text[start:])
        return m.group(1).rstrip(".$") if m else None
    depth = 0
    for j in range(i, len(text)):
        if text[j] == "{":
            depth += 1
        elif text[j] == "}":
            depth -= 1
            if depth == 0:
                return text[i + 1 : j]
    return None  # unbalanced: the sample was cut off inside the box


def _canonical_fraction(value: Fraction) -> str:
    if value.denominator == 1:
        return str(value.numerator)
    # Terminating decimals are written as decimals ("2.5"), others as p/q.
    d = value.denominator
    while d % 2 == 0:
        d //= 2
    while d % 5 == 0:
        d //= 5
    if d == 1:
        return format(value.numerator / value.denominator, ".10g")
    return f"{value.numerator}/{value.denominator}"


def normalize_number(raw: str) -> str | None:
    """'$1,000.00' -> '1000'; '007' -> '7'; '-0' -> '0'; '\\frac{1}{2}' and '1/2' -> '0.5';
    '1.5\\times10^3' -> '1500'; '400 - 20 = 380' -> '380' (the result); None if no number."""
    s = _plain_minus(raw).replace("\\!", "").replace("\\,", "").replace("{,}", "").strip()
    if "=" in s:  # a worked equation in the box: its result is what is on the right
        s = s.rsplit("=", 1)[1]
    if m := re.search(r"(-?)\\[dt]?frac\{(-?\d+)\}\{(-?\d+)\}", s):
        sign = -1 if m.group(1) else 1
        num, den = int(m.group(2)), int(m.group(3))
        return _canonical_fraction(sign * Fraction(num, den)) if den else None
    if m := _SCIENTIFIC.search(s):
        return _canonical_fraction(Fraction(m.group(1).replace(",", "")) * Fraction(10) ** int(m.group(2)))
    if m := re.fullmatch(r"\s*(-?\d+)\s*/\s*(\d+)\s*", s):
        return _canonical_fraction(Fraction(int(m.group(1)), int(m.group(2)))) if int(m.group(2)) else None
    numbers = _NUMBER.findall(s)
    if not numbers:
        return None
    return _canonical_fraction(Fraction(numbers[0].replace(",", "")))


def _plain_minus(text: str) -> str:
    """Unicode minus signs (−, –) before a digit are minus signs: '−7' is -7, not 7."""
    return re.sub(r"[\u2212\u2013](?=\s?\d)", "-", text)


def _extract_number(text: str) -> str | None:
    text = _plain_minus(text)
    hashes = _HASHES.findall(text)
    if hashes:
        return normalize_number(hashes[-1])
    boxed = last_boxed(text)
    if boxed is not None and boxed.strip():  # an empty \\boxed{} is the instruction echoed, not an answer
        return normalize_number(boxed)
    numbers = _NUMBER.findall(text.replace("\\boxed{}", ""))
    return normalize_number(numbers[-1]) if numbers else None


# -- competition math -------------------------------------------------------------------------------------


def _fix_fracs(s: str) -> str:
    # \frac12 -> \frac{1}{2}, \frac1b -> \frac{1}{b}
    parts = s.split("\\frac")
    out = parts[0]
    for part in parts[1:]:
        out += "\\frac"
        if part.startswith("{") or len(part) < 2:
            out += part
            continue
        a, b, rest = part[0], part[1], part[2:]
        if b == "{":
            out += "{" + a + "}" + b + rest
        else:
            out += "{" + a + "}{" + b + "}" + rest
    return out


def _fix_sqrt(s: str) -> str:
    return re.sub(r"\\sqrt(\w)", r"\\sqrt{\1}", s)


def normalize_math(answer: str) -> str:
    """Normalise a MATH answer so equivalent spellings compare equal (after Hendrycks et al.'s strip_string)."""
    s = answer.replace("\n", "").replace("\\!", "").replace("\\\\", "\\")
    s = s.replace("tfrac", "frac").replace("dfrac", "frac")
    s = s.replace("\\left", "").replace("\\right", "")
    s = s.replace("^{\\circ}", "").replace("^\\circ", "").replace("°", "")
    s = s.replace("\\$", "").replace("$", "")
    s = re.sub(r"(?<=\S)\s*\\(?:text|textbf|mbox|mathrm)\{\s*[a-zA-Z ]*\}\s*$", "", s)  # trailing units
    s = re.sub(r"\\(?:text|textbf|mbox|mathrm)\{([^{}]*)\}", r"\1", s)
    s = s.replace("\\%", "").replace("%", "")
    s = re.sub(r"\\[,;:]", "", s)
    s = s.replace(" .", " 0.").replace("{.", "{0.")
    if s.startswith("."):
        s = "0" + s
    if re.match(r"^\s*[a-zA-Z]\s*=", s) and len(s.split("=")[0].strip()) <= 2:
        s = s.split("=", 1)[1]  # "x = 5" -> "5"
    s = _fix_sqrt(s)
    s = s.replace(" ", "")
    s = _fix_fracs(s)
    if re.fullmatch(r"-?\d+/\d+", s):
        num, den = s.split("/")
        s = f"\\frac{{{num}}}{{{den}}}"
    s = s.rstrip(".")
    return _canonical_rational(s)


def _canonical_rational(s: str) -> str:
    """Plain rationals in one spelling: '0.5', '\\frac{1}{2}', '1/2' -> '\\frac{1}{2}'; '2.0' -> '2'."""
    value: Fraction | None = None
    if re.fullmatch(r"-?\d{1,3}(,\d{3})+(\.\d+)?|-?\d+(\.\d+)?", s):
        value = Fraction(s.replace(",", ""))
    elif m := _SIMPLE_FRAC.match(s):
        if int(m.group(3)) != 0:
            value = Fraction(int(m.group(2)), int(m.group(3))) * (-1 if m.group(1) else 1)
    if value is None:
        return s
    if value.denominator == 1:
        return str(value.numerator)
    sign = "-" if value < 0 else ""
    return f"{sign}\\frac{{{abs(value.numerator)}}}{{{value.denominator}}}"


def _extract_math(text: str) -> str | None:
    boxed = last_boxed(text)
    if boxed is None:
        m = re.findall(r"answer is[:\s]*\$?([^$\n]+?)\$?\s*(?:\.|$)", text, flags=re.IGNORECASE | re.MULTILINE)
        if not m:
            return None
        boxed = m[-1]
    s = normalize_math(boxed)
    return s or None


# -- multiple choice --------------------------------------------------------------------------------------

_LETTERS = "ABCDEFGHIJ"
# After the letter: the end, a line end, punctuation, or "A. text" — not another word ("Answer: A human …"
# is an echoed question, not the choice A).
_LETTER_END = r"(?=\s*$|\s*[.,;:!)*#\]]|\s*\n)"
_CHOICE_PATTERNS = (
    re.compile(r"(?i:answer)\s*(?:(?i:is)|:)?\s*[:\-]?\s*\**\s*\(?\s*([A-J])" + _LETTER_END, re.MULTILINE),
    re.compile(r"\\boxed\{\s*(?:\\text\{)?\s*\(?([A-J])\)?"),
    re.compile(r"^\s*\**\(?([A-J])[).:]?\**\s*$", re.MULTILINE),
    # "(C)" — unless it abbreviates the word before it ("Carbon (C)", "Celsius (C)"): see _is_abbreviation
    re.compile(r"(\w*)\W{0,2}\(([A-J])\)"),
    # "A. Put the objects in groups.": a reply that starts with a choice, written the way the prompt lists them
    re.compile(r"\A\s*\**([A-J])[.)]\s+\S"),
)
_OPTION_LINE = re.compile(r"^\s*([A-J])[.)]\s+\S.*$", re.MULTILINE)


def _without_echoed_options(text: str) -> str:
    """Drop an echoed option list ('A. …', 'B. …' lines, two or more): repeating the choices is not choosing."""
    letters = [m.group(1) for m in _OPTION_LINE.finditer(text)]
    if len(letters) >= 2 and "".join(letters[:2]) in _LETTERS:  # consecutive letters: the list itself
        return _OPTION_LINE.sub("", text)
    return text


def _extract_choice(text: str, n_choices: int | None = None, choices: Sequence[str] | None = None) -> str | None:
    allowed = _LETTERS[: n_choices or (len(choices) if choices else len(_LETTERS))]
    text = _without_echoed_options(text)
    for pattern in _CHOICE_PATTERNS:
        found = [_letter(m) for m in pattern.findall(text)]
        found = [letter for letter in found if letter is not None and letter in allowed]
        if found:
            return found[-1]
    return _choice_by_text(text, choices) if choices else None


def _fold(text: str) -> str:
    return re.sub(r"[\W_]+", " ", text).strip().casefold()


def _choice_by_text(text: str, choices: Sequence[str]) -> str | None:
    """A one-line reply that is exactly one choice's text ('fog', 'Answer: fog') is that choice."""
    lines = [line for line in text.strip().splitlines() if line.strip()]
    if len(lines) != 1:
        return None
    reply = _fold(re.sub(r"(?i)^\s*answer\s*[:\-]?\s*", "", lines[0]))
    hits = [i for i, choice in enumerate(choices) if reply and _fold(choice) == reply]
    return _LETTERS[hits[0]] if len(hits) == 1 else None


def _letter(match: str | tuple[str, str]) -> str | None:
    if isinstance(match, tuple):  # (word before, letter): "Carbon (C)" names a symbol, not a choice
        before, letter = match
        return None if before[:1].upper() == letter.upper() else letter.upper()
    return match.upper()


# -- free text --------------------------------------------------------------------------------------------


def _extract_text(text: str) -> str | None:
    m = re.findall(r"answer\s*(?:is|:)\s*(.+)", text, flags=re.IGNORECASE)
    candidate = m[-1] if m else next((line for line in reversed(text.splitlines()) if line.strip()), "")
    s = re.sub(r"\s+", " ", candidate).strip().strip("*\"'`").strip().rstrip(".!").strip().lower()
    return s or None


_EXTRACTORS: dict[str, Callable[[str], str | None]] = {
    "number": _extract_number,
    "math": _extract_math,
    "text": _extract_text,
    "open": extract_open,
}


def _extract_code(text: str, tests: Sequence[str] | None) -> str | None:
    from . import code  # runs programs in subprocesses: only loaded for code tasks

    if tests:
        return code.signature(text, tests)
    program = code.extract_program(text)
    return ast.unparse(ast.parse(program)) if program is not None else None


def extract(
    kind: str,
    text: str,
    *,
    n_choices: int | None = None,
    tests: Sequence[str] | None = None,
    choices: Sequence[str] | None = None,
) -> str | None:
    """The canonical answer in ``text`` for a task of ``kind``, or None when there is none to find. With the
    choices' texts, a reply that gives a choice's text instead of its letter is that choice."""
    if kind == "choice":
        return _extract_choice(text, n_choices, choices)
    if kind == "code":
        return _extract_code(text, tests)
    try:
        return _EXTRACTORS[kind](text)
    except KeyError:
        raise ValueError(f"unknown task kind {kind!r}") from None


def canonical_reference(kind: str, answer: str, tests: Sequence[str] | None = None) -> str | None:
    """A dataset's reference answer in the same canonical form as ``extract`` gives model answers, so the
    two compare by equality (a MATH reference is LaTeX, a GSM8K one a plain number, ARC's a letter, an
    MBPP one a program: its behaviour on the tests)."""
    if kind == "code":
        from . import code

        return code.signature(answer, tests, is_program=True) if tests else None
    if kind == "number":
        return normalize_number(answer)
    if kind == "math":
        return _extract_math(f"\\boxed{{{answer}}}")
    if kind == "choice":
        letter = answer.strip().upper()
        return letter if len(letter) == 1 and letter.isalpha() else None
    return extract(kind, f"Answer: {answer}")
