"""Prompts per task kind and prompt style (pure).

Chat models get the profile's instruction (with ``{question}``) as one user turn, rendered later by the
model's own chat template. Completion-only base models (e.g. Gemma 3 270M) get a few-shot raw prompt in
the ``Question: … Answer: … #### n`` form they follow, and stop at the next ``Question:``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["DEFAULT_INSTRUCTIONS", "Prompt", "build_prompt", "format_question"]

DEFAULT_INSTRUCTIONS = {
    # "in plain words; no code": the Qwen coders otherwise answer word problems with Python they cannot run
    "number": (
        "Solve the problem step by step in plain words; do not write any code. "
        "End with the final answer as a number in \\boxed{}.\n\n{question}"
    ),
    "math": "Solve the problem step by step. Put the final answer in \\boxed{}.\n\n{question}",
    "choice": (
        "Answer the multiple-choice question. Think briefly, then end with a line of the form "
        "'Answer: X', where X is the letter of the correct choice.\n\n{question}"
    ),
    "text": "Answer the question briefly. End with a line of the form 'Answer: ...'.\n\n{question}",
    # open: the reply is printed whole; its first line (the answer in a few words) is what votes
    "open": (
        "Answer the question. Give the answer itself, in a few words, on the first line; then, if it helps, "
        "explain in one or two sentences.\n\n{question}"
    ),
    "code": "Write a Python function for the task below. Reply with the code in one ```python block.\n\n{question}",
}

_FEW_SHOT = {
    "number": (
        ("Tom has 3 apples and buys 5 more. How many apples does he have now?", "Tom has 3 + 5 = 8 apples. #### 8"),
        ("A box holds 12 pencils. How many pencils are in 4 boxes?", "4 boxes hold 4 * 12 = 48 pencils. #### 48"),
    ),
    "math": (
        (
            "What is $\\frac{1}{2} + \\frac{1}{3}$?",
            "$\\frac{3}{6} + \\frac{2}{6} = \\frac{5}{6}$. The answer is $\\boxed{\\frac{5}{6}}$.",
        ),
        ("Solve for $x$: $2x + 3 = 11$.", "$2x = 8$, so $x = 4$. The answer is $\\boxed{4}$."),
    ),
    "choice": (
        (
            "Which gas do plants take in from the air to make food?\nA. oxygen\nB. carbon dioxide\nC. nitrogen\nD. helium",
            "Plants use carbon dioxide in photosynthesis. Answer: B",
        ),
        ("What is 7 times 6?\nA. 36\nB. 48\nC. 42\nD. 13", "7 * 6 = 42. Answer: C"),
    ),
    "text": (
        ("What is the capital of France?", "Answer: Paris"),
        ("Which planet is closest to the Sun?", "Answer: Mercury"),
    ),
    "open": (
        ("What is the capital of France?", "Paris\nParis has been the capital of France since the 10th century."),
        ("Who wrote the play Hamlet?", "William Shakespeare\nHe wrote it around 1600."),
    ),
    "code": (
        (
            "Write a function to add two numbers.\nYour code should pass these tests:\nassert add(2, 3) == 5",
            "```python\ndef add(a, b):\n    return a + b\n```",
        ),
        (
            "Write a function to reverse a string.\nYour code should pass these tests:\nassert rev('ab') == 'ba'",
            "```python\ndef rev(s):\n    return s[::-1]\n```",
        ),
    ),
}


@dataclass(frozen=True)
class Prompt:
    """Either chat messages (rendered by the model's template) or raw completion text, plus stop strings."""

    messages: tuple[tuple[str, str], ...] = ()
    text: str = ""
    stop: tuple[str, ...] = ()


def format_question(question: str, choices: Sequence[str] | None = None, tests: Sequence[str] | None = None) -> str:
    """Append lettered choices ('A. …' lines) or, for code, the tests the answer must pass (they name the
    function and its signature, as MBPP prompts do)."""
    if tests:
        return question + "\nYour code should pass these tests:\n" + "\n".join(tests)
    if not choices:
        return question
    letters = "ABCDEFGHIJ"
    return question + "\n" + "\n".join(f"{letters[i]}. {c}" for i, c in enumerate(choices))


def build_prompt(
    question: str,
    kind: str,
    style: str,
    instruction: str | None = None,
    system: str | None = None,
) -> Prompt:
    if style == "completion":
        shots = "".join(f"Question: {q}\nAnswer: {a}\n\n" for q, a in _FEW_SHOT[kind])
        return Prompt(text=f"{shots}Question: {question}\nAnswer:", stop=("\nQuestion:", "\n\n\n"))
    template = instruction or DEFAULT_INSTRUCTIONS[kind]
    user = template.replace("{question}", question)
    messages = ((("system", system),) if system else ()) + (("user", user),)
    return Prompt(messages=messages)
