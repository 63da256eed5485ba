"""Answer extraction, table-driven. The long cases are real outputs of the pool's models."""

from __future__ import annotations

import pytest

from edgemux.answers.extract import extract, last_boxed, normalize_math

QWEN_GSM8K = (
    "In April, Natalia sold 48 clips.\n\nIn May, she sold half as many clips as in April, so she sold "
    "\\( \\frac{48}{2} = 24 \\) clips.\n\nTo find the total, we add: \\( 48 + 24 = 72 \\).\n\n"
    "Therefore, Natalia sold \\(\\boxed{72}\\) clips altogether in April and May."
)
SMOLLM_LOOP = "12 + 30 = 32\n\nThis is a classic example of how math can be used to solve seemingly complex problems."
GEMMA_FEWSHOT = " She sold 48 / 2 = 24 clips in May. Altogether 48 + 24 = 72 clips. #### 72"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (QWEN_GSM8K, "72"),
        (SMOLLM_LOOP, "32"),  # no box, no ####: the last number... is the last number in the text
        (GEMMA_FEWSHOT, "72"),
        ("The answer is $1,234.", "1234"),
        ("#### 007", "7"),
        ("#### 18.0", "18"),
        ("so \\boxed{\\$18.00} in total", "18"),
        ("\\boxed{18 \\text{ vacuum cleaners}}", "18"),
        ("\\boxed{\\frac{1}{2}}", "0.5"),
        ("It is -3 degrees, then 5 after #### -3", "-3"),
        ("first #### 4 then #### 5", "5"),
        ("#### 5 but boxed \\boxed{6}", "5"),  # #### wins over \boxed, as the spec orders them
        ("I think 2.50 dollars", "2.5"),
        ("There are 1, 2, 3 apples", "3"),
        ("no digits here at all", None),
        ("", None),
    ],
)
def test_number(text: str, expected: str | None) -> None:
    assert extract("number", text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("so the answer is $\\boxed{\\dfrac{2a+b}{2}}$.", "\\frac{2a+b}{2}"),
        ("\\boxed{\\left( 3, \\frac{\\pi}{2} \\right)}", "(3,\\frac{\\pi}{2})"),
        ("\\boxed{0.5}", "\\frac{1}{2}"),
        ("\\boxed{\\frac12}", "\\frac{1}{2}"),
        ("\\boxed{1/2}", "\\frac{1}{2}"),
        ("\\boxed{90^\\circ}", "90"),
        ("\\boxed{x = 5}", "5"),
        ("\\boxed{5.0}", "5"),
        ("\\boxed{10\\%}", "10"),
        ("\\boxed{\\sqrt2}", "\\sqrt{2}"),
        ("\\boxed{\\text{(C)}}", "(C)"),
        ("\\boxed{\\{1,2\\}} and nested \\boxed{\\frac{\\sqrt{3}}{2}}", "\\frac{\\sqrt{3}}{2}"),
        ("The final answer is $17$.", "17"),
        ("cut off inside \\boxed{\\frac{1}{", None),
        ("nothing boxed", None),
    ],
)
def test_math(text: str, expected: str | None) -> None:
    assert extract("math", text) == expected


def test_math_equivalent_spellings_vote_together() -> None:
    spellings = ["\\dfrac{1}{2}", "\\frac{1}{2}", "0.5", "1/2", "\\tfrac12", " \\frac{1}{2} "]
    assert len({normalize_math(s) for s in spellings}) == 1


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Plants use carbon dioxide.\nAnswer: B", "B"),
        ("##Answer: C##", "C"),
        ("**Answer:** (D)", "D"),
        ("The answer is A.", "A"),
        ("Reasoning...\nB\n", "B"),
        ("I pick (C) because", "C"),
        ("\\boxed{D}", "D"),
        ("Answer: All of the above are wrong", None),  # 'A' of 'All' is not a letter answer
        ("The answer is a mystery", None),
        ("Answer: E", None),  # out of range for four choices
        ("first Answer: A, on reflection Answer: C", "C"),
        ("A. Put the objects in groups.", "A"),  # SmolLM2 replies with the choice line itself
        ("A student would say so.", None),  # the article, not a choice
    ],
)
def test_choice(text: str, expected: str | None) -> None:
    assert extract("choice", text, n_choices=4) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("The capital is Paris.\nAnswer: Paris.", "paris"),
        ("Answer:   The   Eiffel Tower ", "the eiffel tower"),
        ("just one line", "just one line"),
        ("", None),
    ],
)
def test_text(text: str, expected: str | None) -> None:
    assert extract("text", text) == expected


def test_last_boxed_respects_nesting() -> None:
    assert last_boxed("\\boxed{a} then \\boxed{\\frac{1}{\\sqrt{2}}}") == "\\frac{1}{\\sqrt{2}}"


def test_unknown_kind() -> None:
    with pytest.raises(ValueError, match="unknown task kind"):
        extract("poetry", "x")
