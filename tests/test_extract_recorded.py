"""Extraction on real recorded samples (bench/runs/), each case checked by hand: what the sample's author
meant as its answer, or None where it gave none. Tails of the texts, as the models wrote them."""

from __future__ import annotations

import pytest

from edgemux.answers.extract import canonical_reference, extract

GEMMA_ECHO = (
    "llowing?\nA. The appendix\nB. The liver\nC. A lung\nD. A kidney\nAnswer: A human CANNOT survive the loss of "
    "which of the following?\nA. The appendix\nB. The liver\nC. A lung\nD. A kidney\nAnswer: A human CANNOT"
)

CHOICE = [
    # SmolLM2 repeating the option list (259 of its ARC samples): that is not a choice
    ("A. 7 days\nB. 30 days\nC. 90 days\nD. 365 days", None),
    ("A. H, C, I\nB. He, H, Al\nC. He, Ne, Ar\nD. Na, Ca, Al", None),
    ("A. amount of garlic\nB. amount of light\nC. amount of garlic", None),
    (
        "A. Height of players\nB. Color of the baseballs thrown\nC. Order in which the players threw\nD. Spot from which players threw",
        None,
    ),
    (
        "nfluenced the breeding preferences.\nC. Predators in the pond influenced the breeding preferences.\n"
        "D. Reproductive isolation influenced the breeding preferences.",
        None,
    ),
    # gemma3-270m echoing the question after "Answer:"
    (GEMMA_ECHO, None),
    # cut-off prose naming chemical symbols, not choices
    (
        "  - Sulfur (S)\n   - Chlorophyll (Cl2)\n   - Beryllium (Be)\n   - Boron (B)\n   - Iodine (I)\n   - Thorium (",
        None,
    ),
    (
        "Similar properties: Similar to carbon (C), has similar properties to hydrogen (H), and similar to aluminum (Al).",
        None,
    ),
    (
        "- Hydrogen (H) is a nonmetal with a very low melting point (4.27°C) and a very high boiling point (207°C).",
        None,
    ),
    # answers as the models give them
    ("Answer: D", "D"),
    ("Answer: A. having a scar", "A"),
    ("the most difficult to replicate is option B: making sure the same foods are eaten.\n\nAnswer: B", "B"),
    (" B\n", "B"),
    ("The correct answer is A. light energy from the light bulb.", "A"),
    ("B. weathering", "B"),  # SmolLM2 replying with the choice line itself
    ("Therefore, the correct answer is:\nAnswer: A", "A"),
    ("I pick (C) because it conducts", "C"),
]

NUMBER = [
    (
        "Therefore, the total number of letters in the words they've spelled after the ten rounds is \\boxed{650}.",
        "650",
    ),
    ("\\[ 650 - 382 = 268 \\]\nSo, Henry will have \\(\\boxed{268}\\) wheels left.", "268"),
    (" 10 starfish, 6 sea horses, and 3 clownfish. #### 10\n", "10"),
    ("Steve's son's wife is 3 years younger than Steve's son's wife.\n\nThe answer is 3.", "3"),
    # a worked equation in the box: the result, not its first number
    ("The total number of leftover burritos is \\boxed{400 - 20 = 380}.", "380"),
    # the instruction echoed (an empty box) must not stop the fallback to the last number
    (
        "End with the final answer as a number in \\boxed{}.\n\nSo, Madeline used up 12 grapes. The final answer is 1.",
        "1",
    ),
    ("The temperature drops to −7 degrees. \\boxed{−7}", "-7"),
    ("\\boxed{1/2}", "0.5"),
    ("so the distance is \\boxed{1.5\\times10^3} meters", "1500"),
    ("\\boxed{2.5 \\times 10^{-2}}", "0.025"),
]

MATH = [
    ("The winner is \\boxed{\\text{Evelyn}}.", "Evelyn"),
    ("so the length is \\boxed{12\\text{ cm}}", "12"),
    ("Thus \\boxed{\\frac{3}{4}}", "\\frac{3}{4}"),
    ("\\boxed{0.75}", "\\frac{3}{4}"),
]


@pytest.mark.parametrize(("text", "expected"), CHOICE)
def test_choice_on_recorded_samples(text: str, expected: str | None) -> None:
    assert extract("choice", text, n_choices=4) == expected


@pytest.mark.parametrize(("text", "expected"), NUMBER)
def test_number_on_recorded_samples(text: str, expected: str | None) -> None:
    assert extract("number", text) == expected


@pytest.mark.parametrize(("text", "expected"), MATH)
def test_math_answers(text: str, expected: str | None) -> None:
    assert extract("math", text) == expected


def test_a_text_reference_is_its_own_answer() -> None:
    assert canonical_reference("math", "\\text{Evelyn}") == extract("math", "\\boxed{\\text{Evelyn}}") == "Evelyn"


def test_there_are_at_least_thirty_hand_checked_cases() -> None:
    assert len(CHOICE) + len(NUMBER) + len(MATH) >= 30


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("fog", "A"),  # gemma3-270m answering with the choice's text (real sample)
        ("Answer: Shady areas increased.", "B"),
        ("gas\nAnswer: liquid\nAnswer: solid", None),  # listing the choices is not choosing one
        ("rain or fog", None),
    ],
)
def test_a_reply_that_is_a_choices_text(text: str, expected: str | None) -> None:
    choices = ["fog", "Shady areas increased.", "solid", "liquid"]
    assert extract("choice", text, choices=choices) == expected
